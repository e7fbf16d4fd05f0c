import { parseIngestToken } from '@dspy-o11y/proto';
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
    // unix:///abs/path, unix:/abs/path or unix:relative/path (gRPC's forms). A host before a path
    // is refused: unix://tmp/d.sock (a slash short) read `tmp` as a host and connected to /d.sock
    // for ever. A host alone, unix://d.sock, is the relative path it always was read as.
    if (url.host && url.pathname) {
      debug(`endpoint ${endpoint} names a host (${url.host}): a socket path is unix:///absolute/path or unix:relative/path; telemetry is off`);
      return 'invalid_endpoint';
    }
    let path: string;
    try {
      path = decodeURIComponent(url.pathname || url.host);
    } catch {
      // A broken percent-encoding (%E0) threw inside every send(): each record lost, uncounted.
      debug(`invalid endpoint ${JSON.stringify(endpoint)}; telemetry is off`);
      return 'invalid_endpoint';
    }
    if (!path) {
      debug(`endpoint ${endpoint} has no socket path; telemetry is off`);
      return 'invalid_endpoint';
    }
    return new UnixTransport(path, opts);
  }
  if (url.protocol === 'http:' || url.protocol === 'https:') {
    const token = ingestToken(opts.ingestToken);
    if (!token.ok) {
      // The value is a secret: never shown.
      debug(`ingestToken (or DSPY_O11Y_INGEST_TOKEN) ${token.problem}; telemetry is off`);
      return 'invalid_ingest_token';
    }
    return new HttpTransport(url, { ...opts, ingestToken: token.token });
  }
  debug(`unsupported endpoint scheme ${url.protocol}; telemetry is off`);
  return 'invalid_endpoint';
}

/**
 * The bearer token as sent (trimmed: a mounted secret's trailing newline), or what makes it
 * unusable: the daemon's rule (parseIngestToken). A token node:http refuses in a header made every
 * request throw, taken for a network error and retried for ever, so nothing was delivered and
 * nothing counted dropped; one the daemon cannot be started with could only be refused.
 */
function ingestToken(token: unknown): { ok: true; token: string | undefined } | { ok: false; problem: string } {
  // No token, as the transport reads it (it sends none for any falsy value).
  if (!token) return { ok: true, token: undefined };
  if (typeof token !== 'string') return { ok: false, problem: 'must be a string' };
  return parseIngestToken(token);
}
