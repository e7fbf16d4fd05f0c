import { validateHeaderValue } from 'node:http';
import { debug } from '../config.js';
import { Transport, type TransportOptions } from './base.js';
import { HttpTransport } from './http.js';
import { UnixTransport } from './unix.js';

export { Transport, counters, type Counters, type TransportOptions } from './base.js';

/** Why a configuration has no transport: the reason its records are counted dropped under in `sdkStats()`. */
export type Unusable = 'invalid_endpoint' | 'invalid_ingest_token';

/** A transport for `unix:///path` or `http(s)://host:port`; if unusable (telemetry off), why. */
export function createTransport(endpoint: string, opts: TransportOptions): Transport | Unusable {
  // Not a string (configure({ endpoint: 42 })): startsWith below threw inside every send(), and
  // each record was lost uncounted.
  if (typeof endpoint !== 'string') {
    debug('endpoint must be a string; telemetry is off');
    return 'invalid_endpoint';
  }
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    // A bare path is accepted as a socket path.
    if (endpoint.startsWith('/')) return new UnixTransport(endpoint, opts);
    debug(`invalid endpoint ${JSON.stringify(endpoint)}; telemetry is off`);
    return 'invalid_endpoint';
  }
  if (url.protocol === 'unix:') {
    const path = decodeURIComponent(url.pathname || url.host);
    if (!path) {
      debug(`endpoint ${endpoint} has no socket path; telemetry is off`);
      return 'invalid_endpoint';
    }
    return new UnixTransport(path, opts);
  }
  if (url.protocol === 'http:' || url.protocol === 'https:') {
    const problem = tokenProblem(opts.ingestToken);
    if (problem) {
      // The value is a secret: never shown.
      debug(`ingestToken (or DSPY_O11Y_INGEST_TOKEN) ${problem}; telemetry is off`);
      return 'invalid_ingest_token';
    }
    return new HttpTransport(url, opts);
  }
  debug(`unsupported endpoint scheme ${url.protocol}; telemetry is off`);
  return 'invalid_endpoint';
}

/**
 * What makes the bearer token unusable, if anything. node:http refuses a header value with a line
 * break, another control character or one past U+00FF: every request threw, was taken for a
 * network error and retried for ever, so nothing was delivered and nothing counted dropped.
 */
function tokenProblem(token: unknown): string | undefined {
  // No token, as the transport reads it (it sends none for any falsy value).
  if (!token) return undefined;
  if (typeof token !== 'string') return 'must be a string';
  try {
    validateHeaderValue('authorization', `Bearer ${token}`);
  } catch {
    return 'holds a character an HTTP header cannot carry (a line break, another control character, or one past U+00FF)';
  }
  return undefined;
}
