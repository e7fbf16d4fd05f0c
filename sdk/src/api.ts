/**
 * The tracing API (DESIGN §4). The active span lives in AsyncLocalStorage, so concurrent requests
 * each see their own trace. Callbacks always run and their results and errors pass through
 * unchanged; with telemetry disabled every call is a cheap no-op around the callback.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { Level, ObservationType } from '@dspy-o11y/proto';
import { nowUnixNano } from './clock.js';
import { debug } from './config.js';
import { dispatch, handlersFor, hasSubscribers } from './events.js';
import { newSpanId, newTraceId, validSpanId, validTraceId } from './ids.js';
import { fitsRecord, forEachReadable, memberList, quoteName, recordName, toAttributes } from './json.js';
import {
  EMPTY_TRACE,
  LiteGeneration,
  NoopSpan,
  SpanImpl,
  TraceScope,
  sampleTrace,
  spanOf,
  tagList,
  traceInfo,
  type GenerationHandle,
  type Scope,
  type SpanHandle,
  type TraceFields,
} from './span.js';
import { innermostScope, otelParent, withOtelActive } from './otel.js';
import { emitScore, type ScoreOptions } from './score.js';
import { cfg, countInvalid, countSampledOut, isDisabled, send } from './state.js';
import { formatTraceparent, parseTraceparent, type HeaderCarrier, type TraceContext } from './traceparent.js';

const als = new AsyncLocalStorage<Scope>();
/**
 * Telemetry off: the module generation (`adoptable`) that a wrapped client call inside fills in,
 * as `SpanImpl.adoptable` does when on (else subscribers heard of one call twice); undefined
 * inside another generation, whose wrapped calls are their own.
 */
const liteAls = new AsyncLocalStorage<LiteGeneration | undefined>();

export interface SpanOptions {
  /** Observation type (DESIGN §3); default `span`. */
  type?: ObservationType;
  input?: unknown;
  attributes?: Readonly<Record<string, unknown>>;
  /** Module class (`dspy.module`) and signature name (`dspy.signature`). */
  module?: string;
  signature?: string;
  level?: Level;
  /**
   * Parent: a span handle, a remote context from `extractTraceparent`, or null for a new trace.
   * Default: the active span, else the active OpenTelemetry span (`configure({ otelContext })`).
   */
  parent?: SpanHandle | TraceContext | null;
}

export interface GenerationOptions extends Omit<SpanOptions, 'type'> {
  /** Requested model, e.g. `gpt-4o-mini`: enables the cost computation. */
  model?: string;
  /** `gen_ai.provider.name`, e.g. `openai`, `anthropic`. */
  provider?: string;
  /** temperature, maxTokens, topP, … (see `GenerationHandle.setParameters`). */
  parameters?: Readonly<Record<string, unknown>>;
  /** Link to a managed prompt: `dspy.prompt.name` and integer `dspy.prompt.version`. */
  prompt?: { name: string; version: number };
  /** `gen_ai.operation.name`, e.g. `chat`. */
  operation?: string;
}

/** Trace-level fields; they go on every span of the trace (`dspy.trace.*`, `user.id`, `session.id`). */
export interface TraceOptions extends TraceFields {
  /** Continue a trace from another service: a `traceparent` header value or an extracted context. */
  traceparent?: string | TraceContext;
  /** Use this trace id (32 lowercase hex) instead of a new one. */
  traceId?: string;
}

/** Handed to the `withTrace` callback. */
export interface TraceHandle {
  readonly traceId: string;
  /** Add or change trace-level fields for the spans that end from now on. */
  update(fields: TraceFields): void;
}

/** An object to merge (a string would spread into one key per character). */
const isObject = (v: unknown): v is Readonly<Record<string, unknown>> => typeof v === 'object' && v !== null;

/** `o[k]`, or undefined when the app's getter throws. */
function readOption<K extends keyof TraceOptions>(o: TraceOptions, k: K): TraceOptions[K] | undefined {
  try {
    return o[k];
  } catch {
    return undefined;
  }
}

/**
 * `base` with the readable keys of `more` over it (metadata, and update()'s fields). Not a spread:
 * one throwing getter in the app's object threw out of it, and withTrace lost its whole trace
 * (update() all its fields).
 */
function mergeReadable(base: Readonly<Record<string, unknown>> | undefined, more: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  forEachReadable(more, (k, v) => {
    // Defined, as a spread does: assigned, a "__proto__" key (JSON.parse makes one) set the prototype.
    Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true });
  });
  return out;
}

/**
 * The scope a span without an explicit parent joins: the active dspy-o11y span or trace (or an
 * OpenTelemetry span started inside it), else the app's active OpenTelemetry span (a new trace of
 * ours would split the request's trace in two).
 */
const ambientScope = (): Scope | undefined => {
  const active = als.getStore();
  return active === undefined ? otelParent() : innermostScope(active);
};

function parentScope(parent: SpanOptions['parent']): Scope | undefined {
  if (parent === undefined) return ambientScope();
  if (parent === null) return undefined;
  if (isSpan(parent)) return parent;
  // Each id read once: a getter may answer differently the second time (past the check).
  let traceId: unknown;
  let spanId: unknown;
  try {
    ({ traceId, spanId } = parent as Partial<TraceContext>);
  } catch {
    return ambientScope(); // a throwing getter, a revoked Proxy: not a parent
  }
  if (validTraceId(traceId) && validSpanId(spanId)) {
    const active = als.getStore();
    // A remote parent's `sampled` flag is not used: see sampleTrace().
    return active && active.traceId === traceId
      ? new TraceScope(traceId, spanId, active.trace, active.sampled)
      : new TraceScope(traceId, spanId, EMPTY_TRACE, sampleTrace(traceId), true);
  }
  return ambientScope();
}

function applyOptions(s: SpanImpl, o: SpanOptions | undefined): void {
  if (!o) return;
  if (o.module !== undefined) s.setAttribute('dspy.module', o.module);
  if (o.signature !== undefined) s.setAttribute('dspy.signature', o.signature);
  if (o.level !== undefined) s.setLevel(o.level);
  if (o.attributes) s.setAttributes(o.attributes);
  if (o.input !== undefined) s.setInput(o.input);
}

function applyGenerationOptions(g: SpanImpl, o: GenerationOptions | undefined): void {
  applyOptions(g, o);
  if (!o) return;
  if (o.model) g.setModel(o.model);
  if (o.provider) g.setProvider(o.provider);
  if (o.operation) g.setAttribute('gen_ai.operation.name', o.operation);
  if (o.parameters) g.setParameters(o.parameters);
  if (o.prompt && typeof o.prompt.name === 'string') {
    g.setAttribute('dspy.prompt.name', o.prompt.name);
    if (Number.isInteger(o.prompt.version)) g.setAttribute('dspy.prompt.version', o.prompt.version);
  }
}

function newSpan(name: string, opts: SpanOptions | undefined): SpanImpl {
  const s = new SpanImpl(name, opts?.type, parentScope(opts?.parent), false);
  applyOptions(s, opts);
  return s;
}

function newGeneration(name: string, opts: GenerationOptions | undefined): SpanImpl {
  const g = new SpanImpl(name, 'generation', parentScope(opts?.parent), true);
  applyGenerationOptions(g, opts);
  return g;
}

/**
 * Only real promises are awaited: calling `.then` on a lazy thenable (a query builder, say) would
 * run it early and hand back a different object, which is not ours to do. A callback returning
 * one is timed like a synchronous callback.
 */
function isThenable(v: unknown): v is Promise<unknown> {
  try {
    return v instanceof Promise;
  } catch {
    return false; // a revoked Proxy (its getPrototypeOf throws): the callback's value, returned as it is
  }
}

/** Whether `v` is one of our spans; never throws (a revoked Proxy's getPrototypeOf does). */
function isSpan(v: unknown): v is SpanImpl {
  try {
    return v instanceof SpanImpl;
  } catch {
    return false;
  }
}

/** Runs `fn` with `s` active (for OpenTelemetry too); ends `s` when `fn` returns or settles; errors pass through unchanged. */
function run<H, T>(s: SpanImpl, fn: (handle: H) => T): T {
  let r: T;
  try {
    r = als.run(s, withOtelActive, s, fn as (h: SpanImpl) => T, s);
  } catch (e) {
    s.fail(e);
    throw e;
  }
  return whenSettled(r, s, endSpan);
}

const endSpan = (s: SpanImpl, failed: boolean, error: unknown): void => (failed ? s.fail(error) : s.end());

/** `fn` with a no-op handle of its own (telemetry off), ended when its run ends, as a recorded span is. */
function runOff<T>(fn: (handle: NoopSpan) => T): T {
  const s = new NoopSpan();
  let r: T;
  try {
    r = fn(s);
  } catch (e) {
    s.end();
    throw e;
  }
  return whenSettled(r, s, endNoop);
}
const endNoop = (s: NoopSpan): void => s.end();
/**
 * A lite generation ends whether the call failed or not (subscribers hear of its usage either
 * way); for a failed call, a subscriber's error is swallowed (see failLite).
 */
const endLite = (g: LiteGeneration, failed: boolean): void => (failed ? failLite(g) : g.end());

/** Ends a failed call's lite generation: a subscriber's error must not replace the app's (as `SpanImpl.fail`). */
function failLite(g: LiteGeneration): void {
  try {
    g.end();
  } catch {
    /* the app's error wins */
  }
}

/**
 * `r` as it came, with `end(x, failed, error)` called once it settles if it is a thenable (the
 * caller gets a promise for the same value or rejection), at once otherwise. A thenable whose
 * `then` throws (a subclass's own; a Proxy of a promise: "incompatible receiver") goes back as it
 * came, as without telemetry, and `x` ends now, as for a value.
 */
function whenSettled<T, X>(r: T, x: X, end: (x: X, failed: boolean, error: unknown) => void): T {
  if (isThenable(r)) {
    try {
      return r.then(
        (v) => {
          end(x, false, undefined);
          return v;
        },
        (e: unknown) => {
          end(x, true, e);
          throw e;
        },
      ) as T;
    } catch {
      /* returned as it came, below */
    }
  }
  end(x, false, undefined);
  return r;
}

/**
 * Runs `fn` in a new span (child of the active one) and returns its result. If `fn` returns a
 * promise, a promise for the same value is returned and the span ends when it settles.
 */
export function span<T>(name: string, fn: (span: SpanHandle) => T): T;
export function span<T>(name: string, options: SpanOptions, fn: (span: SpanHandle) => T): T;
export function span<T>(name: string, a: SpanOptions | ((span: SpanHandle) => T), b?: (span: SpanHandle) => T): T {
  const fn = (typeof a === 'function' ? a : b) as (span: SpanHandle) => T;
  const opts = typeof a === 'function' ? undefined : a;
  if (isDisabled()) return runOff(fn);
  let s: SpanImpl;
  try {
    s = newSpan(name, opts);
  } catch {
    return runOff(fn);
  }
  return run(s, fn);
}

/** Like `span`, for one LLM call (observation type `generation`). Notifies `llm.generate` subscribers when it ends. */
export function generation<T>(name: string, fn: (generation: GenerationHandle) => T): T;
export function generation<T>(name: string, options: GenerationOptions, fn: (generation: GenerationHandle) => T): T;
export function generation<T>(name: string, a: GenerationOptions | ((g: GenerationHandle) => T), b?: (g: GenerationHandle) => T): T {
  const fn = (typeof a === 'function' ? a : b) as (g: GenerationHandle) => T;
  const opts = typeof a === 'function' ? undefined : a;
  return runGeneration(name, opts, fn, false);
}

/** @internal `adoptable`: a wrapped client call made inside fills this generation in instead of nesting one. */
export function runGeneration<T>(name: string, opts: GenerationOptions | undefined, fn: (g: GenerationHandle) => T, adoptable: boolean): T {
  if (isDisabled()) {
    if (!hasSubscribers()) return runOff(fn);
    return runLite(opts, fn, adoptable);
  }
  let g: SpanImpl;
  try {
    g = newGeneration(name, opts);
    g.adoptable = adoptable;
  } catch {
    return runOff(fn);
  }
  return run(g, fn);
}

function runLite<T>(opts: GenerationOptions | undefined, fn: (g: GenerationHandle) => T, adoptable: boolean): T {
  const g = liteGeneration(opts);
  g.adoptable = adoptable;
  let r: T;
  try {
    r = adoptable || liteAls.getStore() !== undefined ? liteAls.run(adoptable ? g : undefined, fn, g) : fn(g);
  } catch (e) {
    // A call that failed may have spent tokens: subscribers (budgets) hear of it, as when enabled.
    failLite(g);
    throw e;
  }
  return whenSettled(r, g, endLite);
}

/** Starts a span that you end yourself (streams, callbacks). It is not made active: see `withActiveSpan`. */
export function startSpan(name: string, options?: SpanOptions): SpanHandle {
  if (isDisabled()) return new NoopSpan();
  try {
    return newSpan(name, options);
  } catch {
    return new NoopSpan();
  }
}

/** Starts a generation that you end yourself. */
export function startGeneration(name: string, options?: GenerationOptions): GenerationHandle {
  if (isDisabled()) return hasSubscribers() ? liteGeneration(options) : new NoopSpan();
  try {
    return newGeneration(name, options);
  } catch {
    return new NoopSpan();
  }
}

/** A disabled-mode generation with the model and provider of `options` (a throwing getter leaves them out). */
function liteGeneration(options: GenerationOptions | undefined): LiteGeneration {
  const g = new LiteGeneration(als.getStore()?.traceId);
  try {
    if (options?.model) g.setModel(options.model);
    if (options?.provider) g.setProvider(options.provider);
  } catch {
    /* never throw into the app */
  }
  return g;
}

/** Runs `fn` with `span` as the active span (for spans from `startSpan`/`startGeneration`). */
export function withActiveSpan<T>(span: SpanHandle, fn: () => T): T {
  if (!isSpan(span)) return fn();
  return als.run(span, withOtelActive, span, fn, undefined);
}

/** The active span, if any: inside a `withTrace` that runs inside a span, that span. */
export function getActiveSpan(): SpanHandle | undefined {
  return spanOf(als.getStore());
}

/** @internal Telemetry off: the module generation a wrapped client call fills in, if it is still to be filled (taken: no longer adoptable). */
export function adoptLiteGeneration(): LiteGeneration | undefined {
  const g = liteAls.getStore();
  if (!g || !g.adoptable || g.ended) return undefined;
  g.adoptable = false;
  return g;
}

/** @internal the active scope (span or `withTrace` scope). */
export function activeScope(): Scope | undefined {
  return als.getStore();
}

/** @internal runs `fn` with `s` active. */
export function runWithSpan<T>(s: SpanImpl, fn: () => T): T {
  return als.run(s, withOtelActive, s, fn, undefined);
}

/**
 * Runs `fn` in a trace: spans created inside (at any depth, across awaits) belong to it and
 * carry its trace-level fields. Inside an existing trace, the fields are merged into it.
 */
export function withTrace<T>(options: TraceOptions, fn: (trace: TraceHandle) => T): T {
  if (isDisabled()) return withTraceOff(options, fn);
  let scope: TraceScope;
  try {
    const active = als.getStore();
    // Each option read once: a getter may answer differently the second time, past its check
    // (an invalid trace id on every span of the trace). One that throws is skipped: destructured,
    // it lost the whole trace.
    const traceparent = readOption(options, 'traceparent');
    const givenTraceId = readOption(options, 'traceId');
    const name = readOption(options, 'name');
    const userId = readOption(options, 'userId');
    const sessionId = readOption(options, 'sessionId');
    const tags = readOption(options, 'tags');
    const metadata = readOption(options, 'metadata');
    const { traceId, parentId, external } = traceStart(traceparent, givenTraceId, active, true);
    const inherited = active && active.traceId === traceId ? active.trace.fields : {};
    const fields: TraceFields = { ...inherited };
    if (name !== undefined) fields.name = name;
    if (userId !== undefined) fields.userId = userId;
    if (sessionId !== undefined) fields.sessionId = sessionId;
    if (tags !== undefined) fields.tags = [...(inherited.tags ?? []), ...tagList(tags, cfg().maxValueLength)];
    if (isObject(metadata)) fields.metadata = mergeReadable(inherited.metadata, metadata);
    // A trace already active keeps its decision; a new one (or one continued from a remote
    // `traceparent`, whose `sampled` flag is not used) is decided here: see sampleTrace().
    const sampled = active && active.traceId === traceId ? active.sampled : sampleTrace(traceId);
    // Under the active span (or the span a withTrace around this one is under): that span stays the active one.
    const enclosing = active && parentId !== undefined && parentId === active.spanId ? spanOf(active) : undefined;
    scope = new TraceScope(traceId, parentId, traceInfo(fields), sampled, external, enclosing);
  } catch {
    return fn(NOOP_TRACE);
  }
  return als.run(scope, fn, new TraceHandleImpl(scope));
}

/**
 * Where a `withTrace` starts: a remote `traceparent`, else a given trace id (unless it is the
 * active trace's own: that goes on under the active span), else the active trace, else (with
 * `joinOtel`) the active OpenTelemetry span's trace as its child, else a new trace; `external`:
 * the parent is not one of ours (a remote caller outside an active trace of the same id, the
 * OpenTelemetry span).
 */
function traceStart(
  traceparent: TraceOptions['traceparent'],
  givenTraceId: unknown,
  active: Scope | undefined,
  joinOtel: boolean,
): { traceId: string; parentId: string | undefined; external: boolean } {
  const remote = typeof traceparent === 'string' ? parseTraceparent(traceparent) : traceparent;
  const { traceId: remoteTraceId, spanId: remoteSpanId } = remote ?? {};
  if (validTraceId(remoteTraceId) && validSpanId(remoteSpanId)) {
    return { traceId: remoteTraceId, parentId: remoteSpanId, external: !(active && active.traceId === remoteTraceId) };
  }
  // The active trace's own id goes on under the active span, as without it: its spans were a second root.
  if (validTraceId(givenTraceId) && !(active && active.traceId === givenTraceId)) return { traceId: givenTraceId, parentId: undefined, external: false };
  if (active) return { traceId: active.traceId, parentId: active.spanId, external: active instanceof TraceScope && active.external };
  const otel = joinOtel ? otelParent() : undefined;
  return otel ? { traceId: otel.traceId, parentId: otel.spanId, external: true } : { traceId: newTraceId(), parentId: undefined, external: false };
}

/** A class rather than an object literal with a closure: one allocation per `withTrace`. */
class TraceHandleImpl implements TraceHandle {
  readonly traceId: string;
  readonly #scope: TraceScope;
  constructor(scope: TraceScope) {
    this.traceId = scope.traceId;
    this.#scope = scope;
  }
  update(fields: TraceFields): void {
    try {
      // Objects only: a string spreads into one key per character (2 MB: 2 million keys, seconds).
      if (!fields || typeof fields !== 'object') return;
      const t = this.#scope.trace;
      // The readable fields: spread, one throwing getter lost the whole update.
      const given = mergeReadable(undefined, fields as Readonly<Record<string, unknown>>) as TraceFields;
      const { metadata } = given;
      const next = traceInfo({ ...t.fields, ...given, metadata: isObject(metadata) ? mergeReadable(t.fields.metadata, metadata) : t.fields.metadata });
      // In place: the spans already open in this trace (a request's root span, its children)
      // hold this object, and end after the update (a user known only once authenticated).
      if (t === EMPTY_TRACE) this.#scope.trace = next;
      else {
        t.members = next.members;
        t.fields = next.fields;
      }
    } catch {
      /* never throw */
    }
  }
}

const NOOP_TRACE: TraceHandle = { traceId: '', update: () => undefined };

/**
 * `withTrace` with telemetry off: nothing is recorded, but the trace keeps an id in the context,
 * so that subscribers hear which trace a generation belongs to. With '' and no context, a
 * per-trace `TokenBudget` (its `traceId` from this handle) never counted and never stopped a run.
 */
function withTraceOff<T>(options: TraceOptions, fn: (trace: TraceHandle) => T): T {
  let scope: TraceScope;
  try {
    // Each option read on its own, as with telemetry on: destructured, one throwing getter (or no
    // options object) threw, and the trace lost its id.
    const active = als.getStore();
    const { traceId, parentId } = traceStart(readOption(options, 'traceparent'), readOption(options, 'traceId'), active, false);
    scope = new TraceScope(traceId, parentId, EMPTY_TRACE, active && active.traceId === traceId ? active.sampled : sampleTrace(traceId));
  } catch {
    return fn(NOOP_TRACE);
  }
  return als.run(scope, fn, { traceId: scope.traceId, update: () => undefined });
}

/**
 * A point event: recorded as an `event` record (child of the active span) and delivered to
 * subscribers. A subscriber's error is rethrown here after the event is recorded.
 */
export function event(name: string, attributes?: Readonly<Record<string, unknown>>): void {
  const scope = isDisabled() ? undefined : ambientScope();
  if (!isDisabled()) sendEvent(name, attributes, scope);
  const hs = handlersFor(name);
  // Telemetry off: the trace of the active `withTrace`, for per-trace subscribers.
  if (hs.length > 0) dispatch(hs, name, attributes ?? {}, scope ? { traceId: scope.traceId, spanId: scope.spanId } : { traceId: als.getStore()?.traceId, spanId: undefined });
}

/** The `event` record, unless its trace (the active one, else a new one of its own) is sampled out. */
function sendEvent(name: string, attributes: Readonly<Record<string, unknown>> | undefined, scope: Scope | undefined): void {
  try {
    const traceId = scope?.traceId ?? newTraceId();
    if (!(scope ? scope.sampled : sampleTrace(traceId))) {
      countSampledOut();
      return;
    }
    const a = toAttributes(attributes, cfg().maxValueLength);
    const traceMembers = scope?.trace.members ?? '';
    // Both lists are `,"k":v,…`: drop the first comma.
    const members = traceMembers + memberList(a);
    let s = `{"v":1,"type":"event","traceId":"${traceId}","spanId":"${newSpanId()}"`;
    if (scope?.spanId) s += `,"parentSpanId":"${scope.spanId}"`;
    s += `,"name":${quoteName(recordName(name, 'event'))},"timeUnixNano":"${spanOf(scope)?.timeNow() ?? nowUnixNano()}"`;
    const line = members ? `${s},"attributes":{${members.slice(1)}}}\n` : `${s}}\n`;
    // Each value is capped, their number is not: too big for the daemon, the event keeps its trace's attributes only (as a span would).
    send(fitsRecord(line) ? line : `${s},"attributes":{${(traceMembers + ',"dspy.truncated":true').slice(1)}}}\n`);
  } catch {
    /* never throw */
  }
}

/**
 * Records a score (an evaluation: a number, a category, a boolean) of a trace, one of its
 * observations, or a session; the daemon sends it to Langfuse's scores API.
 *
 * Target: `traceId`/`observationId`/`sessionId` when given. With none of them, the active span
 * (its trace, and the span itself as `observationId`; inside a `withTrace` inside a span, that span),
 * or inside `withTrace` but outside any
 * span, the trace alone, or inside an OpenTelemetry span only (`otelContext`), its trace alone. An `observationId` alone is taken in the active trace; a `sessionId`
 * alone scores the session (the active trace is not added). `dataType` defaults from the value:
 * number → NUMERIC, boolean → BOOLEAN, string → CATEGORICAL.
 *
 * Never throws. A no-op when telemetry is off. A score with bad input, or with no trace or session
 * to attach to, is dropped and counted (`sdkStats()`: `rejected`, and `dropped` by reason
 * `invalid_score` / `score_without_target`), with a message under `DSPY_O11Y_DEBUG=1`. A score of a
 * sampled-out trace is skipped (`sampledOut`).
 */
export function score(options: ScoreOptions): void {
  if (isDisabled()) return;
  try {
    const o: Partial<ScoreOptions> = options && typeof options === 'object' ? options : {};
    let traceId: unknown = o.traceId;
    let observationId: unknown = o.observationId;
    let sampled: boolean | undefined;
    const none = (v: unknown): boolean => v === undefined || v === null || v === '';
    if (none(traceId) && (!none(observationId) || none(o.sessionId))) {
      const scope = als.getStore();
      if (scope) {
        traceId = scope.traceId;
        sampled = scope.sampled;
        // The active span: inside a withTrace that runs inside a span, that span (see getActiveSpan).
        if (none(observationId)) observationId = spanOf(scope)?.spanId;
      } else {
        // Inside an OpenTelemetry span only: its trace, not the span as the observation (the app's
        // OpenTelemetry spans may go to another backend than Langfuse).
        const otel = otelParent();
        if (otel) {
          traceId = otel.traceId;
          sampled = otel.sampled;
        }
      }
    }
    emitScore(
      { traceId, observationId, sessionId: o.sessionId, name: o.name, value: o.value, dataType: o.dataType, comment: o.comment, id: o.id },
      sampled,
    );
  } catch {
    countInvalid('invalid_score'); // reading `options` threw (a getter, a Proxy): bad input
  }
}

/**
 * Writes `traceparent` for the active span (or `from`; an OpenTelemetry span started inside the
 * active span's callback when it is active, as for a span started there) into `carrier` (a `Headers`, or a plain
 * object) and returns the value; undefined outside any span. A carrier that does not take it
 * (frozen, sealed, a read-only `traceparent`, a Proxy or `set()` that throws) is left as it is,
 * and the value is still returned. Never throws.
 */
export function injectTraceparent(carrier?: HeaderCarrier, from?: SpanHandle): string | undefined {
  try {
    // Without `from`, the parent a span started here would have: an OpenTelemetry span of the
    // trace started inside the active span (see innermostScope) is the caller, not ours.
    const active = als.getStore();
    const s: Scope | undefined = isSpan(from) ? from : active && innermostScope(active);
    if (!s || !s.spanId) return undefined;
    const value = formatTraceparent({ traceId: s.traceId, spanId: s.spanId, sampled: s.sampled });
    if (carrier) {
      // On its own: a carrier that refused the write made this return undefined inside a span,
      // so the app lost the value it could still send another way.
      try {
        const setter = (carrier as { set?: unknown }).set;
        if (typeof setter === 'function') (carrier as { set(n: string, v: string): unknown }).set('traceparent', value);
        else (carrier as Record<string, unknown>).traceparent = value;
      } catch {
        debug('injectTraceparent: the carrier did not take traceparent (frozen, sealed or read-only); the value is returned only');
      }
    }
    return value;
  } catch {
    return undefined;
  }
}
