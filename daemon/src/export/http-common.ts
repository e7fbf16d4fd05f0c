/**
 * What every HTTP client of the backend shares (the exporters, scores.ts, `check`, config.ts): the
 * OTLP headers' format, an answer mapped to an outcome and read within a limit, why a request
 * failed, URL paths and credentials, and the scrubbing of credentials out of what is shown.
 */
import { parseRetryAfter } from '@dspy-o11y/proto';
import type { Dispatcher } from 'undici';
import { MIN_SECRET_LENGTH, secretScrubber } from '../log.js';
import type { ExportOutcome } from './types.js';

/** Refused answers are kept to this many bytes (one log line). */
export const MAX_ERROR_BODY_BYTES = 1024;

/**
 * `OTEL_EXPORTER_OTLP_HEADERS` format: `k=v,k2=v2`, values URL-decoded (keys too), whitespace
 * around items trimmed, keys lowercased, malformed items skipped.
 */
export function parseOtlpHeaders(value: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of value.split(',')) {
    const eq = item.indexOf('=');
    if (eq <= 0) continue;
    const key = decode(item.slice(0, eq).trim()).toLowerCase();
    if (key === '') continue;
    out[key] = decode(item.slice(eq + 1).trim());
  }
  return out;
}

function decode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** Map an HTTP answer to an outcome (the body is only used for `refused`). */
export function outcomeForStatus(status: number, headers: Record<string, string | string[] | undefined>, body: string): ExportOutcome {
  if (status >= 200 && status < 300) return { kind: 'delivered' };
  if (status === 413) return body ? { kind: 'too_large', body } : { kind: 'too_large' };
  if (status === 408 || status === 429 || status >= 500) {
    const retryAfterMs = parseRetryAfter(headers['retry-after']);
    return retryAfterMs === undefined
      ? { kind: 'retryable', reason: `http_${status}`, status }
      : { kind: 'retryable', reason: `http_${status}`, status, retryAfterMs };
  }
  if (status >= 300 && status < 400) {
    // Not followed (credentials would go wherever it points), but said: the log's one line for
    // this status then tells which host to set (an ingress's http → https redirect, say).
    const location = headers.location;
    // Shown as our destination is, without credentials or query string: a redirect echoes the
    // query it was sent (an API key there), and this lands in the logs, /v1/status and /readyz.
    // A relative Location holds no credentials: only its query goes.
    const shown = typeof location !== 'string' ? '' : URL.canParse(location) ? safeDestination(new URL(location)) : location.replace(/[?#][\s\S]*$/, '');
    const where = shown !== '' ? ` to ${shown.slice(0, 500)}` : ' (no location given)';
    const fix = where.startsWith(' to') ? ': set the host or endpoint to it' : '';
    return { kind: 'refused', status, body: `redirected${where}, which dspy-o11yd does not follow${fix}${body ? ` (answer: ${body})` : ''}` };
  }
  return { kind: 'refused', status, body };
}

/** Read at most `limit` bytes of a body as text, then discard the rest (the body is always consumed). */
export async function readLimited(body: Dispatcher.ResponseData['body'], limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    const buf = chunk as Buffer;
    if (size < limit) chunks.push(buf.subarray(0, limit - size));
    size += buf.length;
    // Past the limit: stop reading; leaving the loop destroys the stream (and that connection).
    if (size >= limit) break;
  }
  const text = Buffer.concat(chunks).toString('utf8');
  return size > limit ? `${text}…` : text;
}

/** `timeout` (the request's deadline passed) or `aborted` (shutdown): also the local sinks' word. */
export function abortReason(signal: AbortSignal): string {
  const r: unknown = signal.reason;
  return r instanceof Error && r.name === 'TimeoutError' ? 'timeout' : 'aborted';
}

/** Why a request failed, for logs and status: `timeout`, `aborted`, or `network_<code>: <message>`. */
export function networkReason(err: unknown, signal: AbortSignal): string {
  if (signal.aborted) return abortReason(signal);
  const e = err as { code?: unknown; name?: unknown; message?: unknown };
  const code = typeof e?.code === 'string' ? e.code : typeof e?.name === 'string' ? e.name : 'error';
  // undici's messages name the host and the failure, never headers: safe to show.
  const message = typeof e?.message === 'string' && e.message !== '' ? `: ${e.message.slice(0, 200)}` : '';
  return `network_${code}${message}`;
}

/**
 * `path` appended to the path of the base URL `base`: a path prefix (Langfuse behind
 * `https://example.com/langfuse`) is kept and trailing slashes are not doubled. Not string
 * concatenation, which put the path inside a query string (`…/langfuse?x=1/api/…`, sent to
 * `/langfuse`) or after a fragment (never sent at all): the query string is kept where it belongs,
 * the fragment dropped.
 */
export function appendUrlPath(base: string, path: string): string {
  const url = new URL(base);
  url.pathname = `${url.pathname.replace(/\/+$/, '')}${path}`;
  url.hash = '';
  return url.href;
}

/**
 * The `Basic` authorization of credentials in a URL (`https://user:pass@host/…`), or undefined:
 * undici sends none itself, so the exporter (and `check`, which must agree with it) move them here.
 */
export function urlCredentials(url: URL): string | undefined {
  if (!url.username && !url.password) return undefined;
  return `Basic ${Buffer.from(`${decode(url.username)}:${decode(url.password)}`).toString('base64')}`;
}

/**
 * Cuts the credentials of `headers` out of a backend's answer. An answer may echo what it was sent
 * (a proxy's error page, a verbose 401), and answers are shown in the logs, `/v1/status` and the
 * open `/readyz`. Each value is cut, as is its part after the scheme (`Bearer x`: x) and, for Basic,
 * the decoded `user:password` and password (a Langfuse secret key, URL credentials).
 */
export function credentialScrubber(headers: Readonly<Record<string, string | undefined>>): (text: string) => string {
  const values = new Set<string>();
  for (const value of Object.values(headers)) {
    if (value === undefined) continue;
    values.add(value);
    const m = /^(\S+) +(\S+)$/.exec(value.trim());
    if (!m) continue;
    values.add(m[2]!);
    if (m[1]!.toLowerCase() !== 'basic') continue;
    const decoded = Buffer.from(m[2]!, 'base64').toString('utf8');
    values.add(decoded);
    if (decoded.includes(':')) values.add(decoded.slice(decoded.indexOf(':') + 1));
  }
  const { secrets, scrub } = secretScrubber(values);
  return (text) => {
    const out = scrub(text);
    if (!out.endsWith('…')) return out;
    // readLimited cut the answer (its `…`), maybe inside an echoed secret: that secret's start goes too.
    const kept = out.slice(0, -1);
    for (const secret of secrets) {
      for (let n = secret.length - 1; n >= MIN_SECRET_LENGTH; n--) if (kept.endsWith(secret.slice(0, n))) return `${kept.slice(0, -n)}[REDACTED]…`;
    }
    return out;
  };
}

/** `destination`: origin and path only (no credentials, no query string). */
export function safeDestination(url: URL): string {
  return `${url.origin}${url.pathname}`;
}
