import { debug } from '../config.js';
import { Transport, type TransportOptions } from './base.js';
import { HttpTransport } from './http.js';
import { UnixTransport } from './unix.js';

export { Transport, counters, type Counters, type TransportOptions } from './base.js';

/** A transport for `unix:///path` or `http(s)://host:port`; undefined (telemetry off) if unusable. */
export function createTransport(endpoint: string, opts: TransportOptions): Transport | undefined {
  // Not a string (configure({ endpoint: 42 })): startsWith below threw inside every send(), and
  // each record was lost uncounted.
  if (typeof endpoint !== 'string') {
    debug('endpoint must be a string; telemetry is off');
    return undefined;
  }
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    // A bare path is accepted as a socket path.
    if (endpoint.startsWith('/')) return new UnixTransport(endpoint, opts);
    debug(`invalid endpoint ${JSON.stringify(endpoint)}; telemetry is off`);
    return undefined;
  }
  if (url.protocol === 'unix:') {
    const path = decodeURIComponent(url.pathname || url.host);
    if (!path) {
      debug(`endpoint ${endpoint} has no socket path; telemetry is off`);
      return undefined;
    }
    return new UnixTransport(path, opts);
  }
  if (url.protocol === 'http:' || url.protocol === 'https:') return new HttpTransport(url, opts);
  debug(`unsupported endpoint scheme ${url.protocol}; telemetry is off`);
  return undefined;
}
