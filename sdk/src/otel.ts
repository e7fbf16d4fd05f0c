/**
 * Both ways between this SDK and the app's OpenTelemetry context, without depending on
 * `@opentelemetry/api`:
 * - a trace started here continues the request's OpenTelemetry trace, as a child of its active
 *   span ({@link otelParent});
 * - while a dspy-o11y span's callback runs, that span is OpenTelemetry's active span too
 *   ({@link withOtelActive}), so the spans the app's OpenTelemetry instrumentation starts inside
 *   (the HTTP client span of an LLM call, a database query) are its children, and a dspy-o11y
 *   span started inside one of those is that one's child ({@link innermostScope}).
 *
 * What this relies on, as in @opentelemetry/api 1.9.1 (build/src):
 * - internal/global-utils.js: the API's globals are in `globalThis[Symbol.for('opentelemetry.js.api.<major>')]`
 *   (major 1); the registered context manager is its `context` member (api/context.js: API_NAME).
 * - api/context.js: `context.active()` is that manager's `active()`, `context.with(ctx, fn, thisArg, ...args)`
 *   its `with()`, which runs `fn` with `ctx` active (context/types.d.ts: ContextManager).
 * - trace/context-utils.js: the active span is `active().getValue(SPAN_KEY)`, set with
 *   `setValue(SPAN_KEY, span)`, and SPAN_KEY = createContextKey('OpenTelemetry Context Key SPAN');
 *   context/context.js: createContextKey(d) is `Symbol.for(d)`, the same key in every copy of the API.
 * - trace/span.d.ts, trace/span_context.d.ts: `span.spanContext()` is `{ traceId, spanId, traceFlags }`,
 *   hex ids any case (trace/spancontext-utils.js isValidHex); trace/NonRecordingSpan.js is what the
 *   API itself puts in a context for a span context alone (`trace.wrapSpanContext`).
 * Anything missing, throwing or invalid is ignored: the SDK then works as without OpenTelemetry.
 */
import { debug } from './config.js';
import { validSpanId, validTraceId } from './ids.js';
import { EMPTY_TRACE, TraceScope, sampleTrace, type Scope } from './span.js';
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
  if (api === undefined) return undefined;
  const ids = activeIds(api);
  // traceFlags (OpenTelemetry's sampled bit) is not used, as a remote traceparent's is not: the
  // trace is decided by its id (sampleTrace), the same answer here, in other services and the daemon.
  return ids && new TraceScope(ids.traceId, ids.spanId, EMPTY_TRACE, sampleTrace(ids.traceId), true);
}

/**
 * The parent for a span started while `active` (a dspy-o11y span or `withTrace` scope) is active:
 * `active`, unless OpenTelemetry's active span is a sampled span of the same trace started inside it (an
 * OpenTelemetry span around this call, itself a child of ours through {@link withOtelActive}):
 * then that span, so the tree nests as the calls did. Without OpenTelemetry, one property read.
 */
export function innermostScope(active: Scope): Scope {
  const api = (globalThis as Record<symbol, unknown>)[OTEL_API];
  if (api === undefined) return active;
  const ids = activeIds(api);
  // An OpenTelemetry span its sampler dropped (sampled bit 0) is never exported: as a parent, it
  // would orphan the spans under it, so they stay under ours (a sampler that is not ParentBased).
  if (!ids || ids.bridge || !ids.sampled || ids.traceId !== active.traceId || ids.spanId === active.spanId) return active;
  // Under one of our spans it is inside our part of the trace; directly under `withTrace`, it is
  // as external as the trace's own parent (the request's OpenTelemetry span, a remote caller).
  const external = active instanceof TraceScope && active.external;
  return new TraceScope(ids.traceId, ids.spanId, active.trace, active.sampled, external);
}

type OtelContext = { getValue?: (key: symbol) => unknown; setValue?: (key: symbol, value: unknown) => unknown };
type ContextManager = { active?: () => unknown; with?: (ctx: unknown, fn: (arg: never) => unknown, thisArg: undefined, arg: never) => unknown };
type Span = { spanContext?: () => { traceId?: unknown; spanId?: unknown; traceFlags?: unknown; traceState?: unknown } | undefined };

/** The context manager the app registered, if `otelContext` is on (callers catch: a broken global's getter may throw). */
function managerOf(api: unknown): ContextManager | undefined {
  if (!cfg().otelContext) return undefined;
  const manager = (api as { context?: ContextManager } | null)?.context;
  return typeof manager?.active === 'function' ? manager : undefined;
}

/** The active OpenTelemetry span's ids (lower case), whether it is one of ours, and its sampled bit (set when unknown); never throws. */
function activeIds(api: unknown): { traceId: string; spanId: string; bridge: boolean; sampled: boolean } | undefined {
  try {
    const ctx = managerOf(api)?.active?.() as OtelContext | null | undefined;
    if (typeof ctx?.getValue !== 'function') return undefined;
    const span = ctx.getValue(SPAN_KEY) as Span | null | undefined;
    if (span instanceof ActiveSpan) return { traceId: span.ctx.traceId, spanId: span.ctx.spanId, bridge: true, sampled: span.ctx.traceFlags === 1 };
    if (typeof span?.spanContext !== 'function') return undefined;
    // Each id read once: a getter may answer differently the second time (past the check).
    const { traceId, spanId, traceFlags } = span.spanContext() ?? {};
    if (typeof traceId !== 'string' || typeof spanId !== 'string') return undefined;
    // OpenTelemetry takes upper-case hex too (OTLP sends the bytes); W3C and our wire use lower case.
    const t = traceId.toLowerCase();
    const s = spanId.toLowerCase();
    const sampled = typeof traceFlags !== 'number' || (traceFlags & 1) === 1;
    return validTraceId(t) && validSpanId(s) ? { traceId: t, spanId: s, bridge: false, sampled } : undefined;
  } catch {
    debug('the active OpenTelemetry context could not be read; it is not used');
    return undefined;
  }
}

/**
 * Calls `fn(arg)` with `span` as OpenTelemetry's active span as well (see the top of this file),
 * when OpenTelemetry is loaded with a context manager and `otelContext` is on; otherwise just
 * calls it. `fn`'s result and errors pass through unchanged, and `fn` runs exactly once: a context
 * manager that throws before calling it, or does not call it, costs the link, not the call.
 */
export function withOtelActive<A, T>(span: { readonly traceId: string; readonly spanId: string; readonly sampled: boolean }, fn: (arg: A) => T, arg: A): T {
  const api = (globalThis as Record<symbol, unknown>)[OTEL_API];
  if (api === undefined) return fn(arg);
  let manager: ContextManager | undefined;
  let ctx: unknown;
  try {
    manager = managerOf(api);
    const active = manager?.active?.() as OtelContext | null | undefined;
    if (typeof manager?.with === 'function' && typeof active?.setValue === 'function') {
      ctx = active.setValue(SPAN_KEY, new ActiveSpan(span.traceId, span.spanId, span.sampled, traceStateOf(active, span.traceId)));
    }
  } catch {
    ctx = undefined;
  }
  if (ctx === undefined) return fn(arg);
  let called = false;
  const call = (a: A): T => {
    called = true;
    return fn(a);
  };
  let r: unknown;
  try {
    r = manager!.with!(ctx, call as (arg: never) => unknown, undefined, arg as never);
  } catch (e) {
    if (called) throw e;
    debug('the OpenTelemetry context manager failed; the span runs without it');
    return fn(arg);
  }
  return called ? (r as T) : fn(arg);
}

/**
 * The W3C tracestate of the active OpenTelemetry span (ours or the app's) when of trace `traceId`:
 * passed on to our span, as OpenTelemetry passes it to a child, so the spans and `tracestate`
 * headers under ours keep the vendors' entries (W3C: a participant propagates it). Never throws.
 */
function traceStateOf(active: OtelContext, traceId: string): unknown {
  try {
    const sc = (active.getValue?.(SPAN_KEY) as Span | null | undefined)?.spanContext?.();
    // Most spans have none (ours, under ours): no trace id to compare then.
    const traceState = sc?.traceState;
    return traceState !== undefined && traceState !== null && typeof sc?.traceId === 'string' && sc.traceId.toLowerCase() === traceId ? traceState : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A dspy-o11y span as OpenTelemetry sees it: a span context only, as the API's own
 * NonRecordingSpan (what `trace.wrapSpanContext` makes), with the parent's tracestate; the methods that would record are no-ops,
 * since the span is recorded by this SDK. traceFlags carries our sampling decision, so that a
 * ParentBased sampler (OpenTelemetry's default) keeps the children of a trace we keep.
 */
class ActiveSpan {
  readonly ctx: { readonly traceId: string; readonly spanId: string; readonly traceFlags: number; readonly isRemote: false; readonly traceState?: unknown };
  constructor(traceId: string, spanId: string, sampled: boolean, traceState: unknown) {
    const ctx = { traceId, spanId, traceFlags: sampled ? 1 : 0, isRemote: false as const };
    // A traceState key only when there is one, as in OpenTelemetry's own span contexts.
    this.ctx = traceState === undefined || traceState === null ? ctx : { ...ctx, traceState };
  }
  spanContext(): ActiveSpan['ctx'] {
    return this.ctx;
  }
  setAttribute(): this {
    return this;
  }
  setAttributes(): this {
    return this;
  }
  addEvent(): this {
    return this;
  }
  addLink(): this {
    return this;
  }
  addLinks(): this {
    return this;
  }
  setStatus(): this {
    return this;
  }
  updateName(): this {
    return this;
  }
  end(): void {}
  isRecording(): boolean {
    return false;
  }
  recordException(): void {}
}
