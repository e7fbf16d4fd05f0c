/**
 * `Retry-After` (RFC 9110 §10.2.3), one rule for the SDK's transport to the daemon and the daemon's
 * exporter to its backend: the server's ask is a floor under the sender's own backoff, up to a cap.
 */

/** Longest `Retry-After` honoured: a server asking for an hour must not stall a sender that long. */
export const MAX_RETRY_AFTER_MS = 300_000;

/**
 * `Retry-After` → milliseconds from now: delta seconds or an HTTP-date.
 * `undefined` when absent or unreadable; a date in the past gives 0.
 */
export function parseRetryAfter(value: string | string[] | undefined, nowMs: number = Date.now()): number | undefined {
  const v = (Array.isArray(value) ? value[0] : value)?.trim();
  if (!v) return undefined;
  if (/^[0-9]+(\.[0-9]+)?$/.test(v)) return Math.round(Number(v) * 1000);
  const at = Date.parse(v);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - nowMs);
}

/** The delay before a retry: the sender's own `backoffMs`, or the server's `Retry-After` (capped) if longer. */
export function retryAfterFloor(backoffMs: number, retryAfterMs: number | undefined, maxRetryAfterMs: number = MAX_RETRY_AFTER_MS): number {
  return retryAfterMs === undefined ? backoffMs : Math.max(backoffMs, Math.min(retryAfterMs, maxRetryAfterMs));
}
