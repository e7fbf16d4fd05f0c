/**
 * The app's active OpenTelemetry span, read without depending on `@opentelemetry/api`, so that a
 * trace started here continues the request's OpenTelemetry trace (a child of its active span).
 *
 * What this relies on, as in @opentelemetry/api 1.9.1 (build/src):
 * - internal/global-utils.js: the API's globals are in `globalThis[Symbol.for('opentelemetry.js.api.<major>')]`
 *   (major 1); the registered context manager is its `context` member (api/context.js: API_NAME).
 * - api/context.js: `context.active()` is that manager's `active()`.
 * - trace/context-utils.js: the active span is `active().getValue(SPAN_KEY)`, with
 *   SPAN_KEY = createContextKey('OpenTelemetry Context Key SPAN'), and context/context.js:
 *   createContextKey(d) is `Symbol.for(d)`, the same key in every copy of the API.
 * - trace/span.d.ts, trace/span_context.d.ts: `span.spanContext()` is `{ traceId, spanId, traceFlags }`,
 *   hex ids any case (trace/spancontext-utils.js isValidHex).
 * Anything missing, throwing or invalid is ignored: a new trace, as without OpenTelemetry.
 */
import { debug } from './config.js';
import { validSpanId, validTraceId } from './ids.js';
import { EMPTY_TRACE, TraceScope, sampleTrace } from './span.js';
import { cfg } from './state.js';

const OTEL_API = Symbol.for('opentelemetry.js.api.1');
const SPAN_KEY = Symbol.for('OpenTelemetry Context Key SPAN');

/**
 * The active OpenTelemetry span as a parent scope, if OpenTelemetry is loaded, has a context
 * manager and a valid active span, and `otelContext` is on. Without OpenTelemetry, one property
 * read (root spans are the SDK's hot path). Never throws.
 */
export function otelParent(): TraceScope | undefined {
  const api = (globalThis as Record<symbol, unknown>)[OTEL_API];
  return api === undefined ? undefined : fromOtel(api);
}

type Span = { spanContext?: () => { traceId?: unknown; spanId?: unknown } | undefined };

function fromOtel(api: unknown): TraceScope | undefined {
  try {
    if (!cfg().otelContext) return undefined;
    const manager = (api as { context?: { active?: () => unknown } } | null)?.context;
    if (typeof manager?.active !== 'function') return undefined;
    const ctx = manager.active() as { getValue?: (key: symbol) => unknown } | null | undefined;
    if (typeof ctx?.getValue !== 'function') return undefined;
    const span = ctx.getValue(SPAN_KEY) as Span | null | undefined;
    if (typeof span?.spanContext !== 'function') return undefined;
    // Each id read once: a getter may answer differently the second time (past the check).
    const { traceId, spanId } = span.spanContext() ?? {};
    if (typeof traceId !== 'string' || typeof spanId !== 'string') return undefined;
    // OpenTelemetry takes upper-case hex too (OTLP sends the bytes); W3C and our wire use lower case.
    const t = traceId.toLowerCase();
    const s = spanId.toLowerCase();
    if (!validTraceId(t) || !validSpanId(s)) return undefined;
    // traceFlags (OpenTelemetry's sampled bit) is not used, as a remote traceparent's is not: the
    // trace is decided by its id (sampleTrace), the same answer here, in other services and the daemon.
    return new TraceScope(t, s, EMPTY_TRACE, sampleTrace(t), true);
  } catch {
    debug('the active OpenTelemetry context could not be read; a new trace is started');
    return undefined;
  }
}
