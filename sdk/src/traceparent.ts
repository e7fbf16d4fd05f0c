/**
 * W3C trace-context `traceparent` propagation, so a trace continues across services:
 * `injectTraceparent(headers)` on the way out, `extractTraceparent(req.headers)` on the way in,
 * then `withTrace({ traceparent: ctx }, …)` or `span(name, { parent: ctx }, …)`.
 */

/** A span in another process: what `traceparent` carries. */
export interface TraceContext {
  traceId: string;
  spanId: string;
  sampled: boolean;
}

/** Anything headers live in: a `Headers`, Node's `IncomingHttpHeaders`, a plain object. */
export type HeaderCarrier =
  | { get(name: string): string | null | undefined }
  | { set(name: string, value: string): unknown }
  | Record<string, string | string[] | number | undefined>;

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

/** Parses a `traceparent` value; undefined when malformed (per W3C: all-zero ids, version ff, …). */
export function parseTraceparent(value: string | undefined | null): TraceContext | undefined {
  if (typeof value !== 'string') return undefined;
  // W3C: ids and flags are lowercase hex, and a header that is not valid is ignored (not repaired).
  const m = TRACEPARENT.exec(value.trim());
  if (!m) return undefined;
  const [, version, traceId, spanId, flags, rest] = m as unknown as [string, string, string, string, string, string | undefined];
  if (version === 'ff' || (version === '00' && rest !== undefined)) return undefined;
  if (/^0+$/.test(traceId) || /^0+$/.test(spanId)) return undefined;
  return { traceId, spanId, sampled: (parseInt(flags, 16) & 1) === 1 };
}

/**
 * `sampled: false` (a trace `sampleRatio` drops) writes trace flags `00`, so that other tracers
 * honouring the flag drop it too; this SDK itself ignores the flag and decides by trace id.
 */
export function formatTraceparent(ctx: { traceId: string; spanId: string; sampled?: boolean }): string {
  return `00-${ctx.traceId}-${ctx.spanId}-${ctx.sampled === false ? '00' : '01'}`;
}

/** The remote context in `carrier` (headers or a `traceparent` string), if any. */
export function extractTraceparent(carrier: HeaderCarrier | string | undefined | null): TraceContext | undefined {
  try {
    if (carrier === undefined || carrier === null) return undefined;
    if (typeof carrier === 'string') return parseTraceparent(carrier);
    const getter = (carrier as { get?: unknown }).get;
    if (typeof getter === 'function') return parseTraceparent((carrier as { get(n: string): string | null | undefined }).get('traceparent'));
    const rec = carrier as Record<string, unknown>;
    let v = rec.traceparent ?? rec.Traceparent ?? rec.TRACEPARENT;
    if (Array.isArray(v)) v = v[0];
    return typeof v === 'string' ? parseTraceparent(v) : undefined;
  } catch {
    return undefined;
  }
}
