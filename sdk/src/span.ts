/**
 * Spans and generations: a handle collects attributes while the step runs; `end()` builds the
 * NDJSON line ONCE by string concatenation (no intermediate record object, no zod) and hands it
 * to the transport.
 */
import { ATTR, EVENT_NAMES, OBSERVATION_TYPES, keepTrace, type AttributeValue, type Level, type ObservationType } from '@dspy-o11y/proto';
import { anchorAt, monotonicNs } from './clock.js';
import { dispatch, handlersFor, type EventContext } from './events.js';
import { newSpanId, newTraceId } from './ids.js';
import { MAX_NAME_LENGTH, MAX_RECORD_BYTES, TRUNCATION_MARKER, attributeJson, fitsRecord, forEachReadable, memberList, quote, quoteName, recordName, toAttributeValue, toAttributes, toJson, validKey } from './json.js';
import { generationCost } from './cost.js';
import { emitScore, type ScoreValue, type SpanScoreOptions } from './score.js';
import { cfg, countInvalid, countSampledOut, send } from './state.js';

/** Token counts of one LLM call. `input` counts all input tokens, cached ones included. */
export interface Usage {
  input?: number;
  output?: number;
  /** Defaults to input + output. */
  total?: number;
  /** Input tokens read from the provider's prompt cache (part of `input`). */
  cacheRead?: number;
  /** Input tokens written to the provider's prompt cache (part of `input`). */
  cacheWrite?: number;
  /** Of `cacheWrite`, those written with a 1-hour TTL (Anthropic prices them higher): for the cost only. */
  cacheWrite1h?: number;
  /** Output tokens spent on reasoning (part of `output`, and priced with it: never added to it). */
  reasoning?: number;
}

/** A running step. Every method is safe to call at any time and never throws, except as noted. */
export interface SpanHandle {
  readonly traceId: string;
  readonly spanId: string;
  readonly name: string;
  readonly ended: boolean;
  /**
   * Whether this span's trace is sent (`sampleRatio`; false when telemetry is off), e.g. to skip
   * computing a score nobody will see.
   */
  readonly sampled: boolean;
  /** Captured as JSON (capped; cycles and huge values are truncated with a marker). */
  setInput(value: unknown): this;
  setOutput(value: unknown): this;
  /** Objects are JSON-encoded; null/undefined are ignored. */
  setAttribute(key: string, value: unknown): this;
  setAttributes(attributes: Readonly<Record<string, unknown>>): this;
  setLevel(level: Level): this;
  /** The OpenTelemetry status only: the Langfuse level (e.g. ERROR from recordError) is setLevel's. */
  setStatus(code: 'ok' | 'error', message?: string): this;
  /**
   * A point event inside this span; also notifies subscribers, and rethrows a subscriber's error
   * (the deliberate exception to "never throws").
   */
  event(name: string, attributes?: Readonly<Record<string, unknown>>): this;
  /** Error status, message, `error.type`, level ERROR, an `exception` event. */
  recordError(error: unknown): this;
  /** Finish (idempotent). A generation notifies `llm.generate` subscribers here: their error is rethrown. */
  end(): void;
  /**
   * Score this span (an observation of its trace), e.g. an evaluation of its output; also after
   * it ended. See `score()`: never throws, bad input is counted and dropped.
   */
  score(name: string, value: ScoreValue, options?: SpanScoreOptions): this;
}

/** A call to an LLM (observation type `generation`). */
export interface GenerationHandle extends SpanHandle {
  /** The requested model (`gen_ai.request.model`). */
  setModel(model: string): this;
  /** The model that answered (`gen_ai.response.model`), when it differs in name, e.g. a dated snapshot. */
  setResponseModel(model: string): this;
  setProvider(provider: string): this;
  /** temperature, maxTokens/max_tokens, topP/top_p → `gen_ai.request.*`; other keys as `gen_ai.request.<key>`. */
  setParameters(parameters: Readonly<Record<string, unknown>>): this;
  /** Replaces the usage so far. Cost is computed at `end()` from the price table unless set with `setCost`. */
  setUsage(usage: Usage): this;
  setCost(usd: number): this;
  /** First token received (default: now); unix-ns string or epoch milliseconds. */
  setCompletionStart(time?: string | number): this;
  setFinishReasons(reasons: readonly string[]): this;
}

const TYPES = new Set<string>(OBSERVATION_TYPES);
/** Unix-epoch nanoseconds as the wire protocol writes them. */
const UNIX_NANO = /^[1-9][0-9]{0,18}$/;
const MAX_EVENTS_PER_SPAN = 128;
const MAX_ERROR_MESSAGE = 2048;
const MAX_STACK = 8192;

/** Trace-level fields, pre-serialized once per trace as JSON object members (`,"k":v,…`, or ''). */
export interface TraceInfo {
  members: string;
  fields: TraceFields;
}

export interface TraceFields {
  name?: string;
  userId?: string;
  sessionId?: string;
  tags?: readonly string[];
  metadata?: Readonly<Record<string, unknown>>;
}

export const EMPTY_TRACE: TraceInfo = { members: '', fields: {} };

const TRACE_NAME_KEY = `,${JSON.stringify(ATTR.traceName)}:`;
const USER_ID_KEY = `,${JSON.stringify(ATTR.userId)}:`;
const SESSION_ID_KEY = `,${JSON.stringify(ATTR.sessionId)}:`;
const TRACE_TAGS_KEY = `,${JSON.stringify(ATTR.traceTags)}:`;

/**
 * Trace-level members go on every span and event of the trace: past this many characters the
 * rest is left out, so that each record stays under the daemon's line limit and each span's end
 * does not copy (and measure) them again: 10^7 tags, say, cost every span ~120 ms and made every
 * event too long for the daemon.
 */
const MAX_TRACE_MEMBERS = 256 * 1024;
/** Tags of a trace looked at (a sparse array may claim millions). */
const MAX_TAGS = 1024;

/**
 * A trace field as text: a string (cut at `max`), a number or boolean as written; anything else
 * undefined (String() of an app's array or object is unbounded work for '[object Object]' or commas).
 */
function fieldText(v: unknown, max: number): string | undefined {
  if (typeof v === 'string') return v.length > max ? v.slice(0, max) + TRUNCATION_MARKER : v;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  return undefined;
}

/**
 * `tags` as text, of the first {@link MAX_TAGS}, those that fit in `max` characters in all; not an
 * array: none. A tag that does not fit is left out, not cut (a cut tag is another label), and the
 * ones after it are still looked at: one oversized tag used to cost every tag that followed it.
 * Never throws.
 */
export function tagList(tags: unknown, max: number): string[] {
  const out: string[] = [];
  try {
    if (!Array.isArray(tags)) return out;
    let room = max;
    for (let i = 0; i < tags.length && i < MAX_TAGS; i++) {
      const v: unknown = tags[i];
      const t = typeof v === 'string' ? v : fieldText(v, max);
      if (t === undefined || t.length > room) continue;
      room -= t.length;
      out.push(t);
    }
  } catch {
    /* a throwing element or length: the tags read so far */
  }
  return out;
}

export function traceInfo(fields: TraceFields): TraceInfo {
  const max = cfg().maxValueLength;
  let m = '';
  const add = (member: string): void => {
    if (m.length + member.length <= MAX_TRACE_MEMBERS) m += member;
  };
  const name = fieldText(fields.name, MAX_NAME_LENGTH);
  if (name) add(TRACE_NAME_KEY + quoteName(name));
  const userId = fieldText(fields.userId, max);
  if (userId) add(USER_ID_KEY + quote(userId));
  const sessionId = fieldText(fields.sessionId, max);
  if (sessionId) add(SESSION_ID_KEY + quote(sessionId));
  if (fields.tags !== undefined) {
    // Kept cleaned: a nested withTrace adds its own to these.
    fields.tags = tagList(fields.tags, max);
    if (fields.tags.length > 0) add(TRACE_TAGS_KEY + JSON.stringify(fields.tags));
  }
  if (fields.metadata && typeof fields.metadata === 'object') {
    forEachReadable(fields.metadata, (k, value) => {
      const key = ATTR.traceMetadataPrefix + k;
      if (m.length >= MAX_TRACE_MEMBERS || !validKey(key)) return;
      const v = toAttributeValue(value, max);
      if (v !== undefined) add(`,${quoteName(key)}:${attributeJson(v)}`);
    });
  }
  return { members: m, fields };
}

/** What the active context holds: a span, or a trace scope opened by `withTrace`. */
export interface Scope {
  readonly traceId: string;
  /** The parent for new spans (undefined: they are roots). */
  readonly spanId: string | undefined;
  readonly trace: TraceInfo;
  /** Whether the trace is sent (`sampleRatio`): decided when it starts, inherited by everything in it. */
  readonly sampled: boolean;
}

/**
 * The sampling decision for a trace starting here. It is `keepTrace(traceId, ratio)`, the rule of
 * the daemon's `--sample-ratio` too, and nothing else: a trace continued from another service
 * (`traceparent`) is decided again from its id, not from the remote `sampled` flag, so the same
 * trace id gets the same answer in every service and in the daemon (with the same ratio), and a
 * trace is kept or dropped whole.
 */
export function sampleTrace(traceId: string): boolean {
  const ratio = cfg().sampleRatio;
  return ratio >= 1 || keepTrace(traceId, ratio);
}

export class TraceScope implements Scope {
  constructor(
    readonly traceId: string,
    readonly spanId: string | undefined,
    public trace: TraceInfo,
    readonly sampled: boolean,
    /**
     * `spanId` is a span this SDK did not make (the active OpenTelemetry span, a remote
     * `traceparent`): spans made here are the top of the app's part of the trace (`dspy.app_root`).
     */
    readonly external = false,
    /**
     * The SDK span `spanId` is (a `withTrace` inside a running span): still the active span for
     * `getActiveSpan()`, as it was before the `withTrace`.
     */
    readonly span: SpanImpl | undefined = undefined,
  ) {}
}

/** Per-call state of a wrapped LLM client call (attempts, for `llm.retry` events). */
export interface LlmCallState {
  attempts: number;
  lastStatus: number | undefined;
  lastError: string | undefined;
}

/**
 * What a span records while it runs (its fields of the same names): the part of a generation a
 * wrapped client call's attempt fills in, saved and put back whole (`SpanImpl.saveState` /
 * `restoreState`). A field added to that part goes here, the one list of it: the compiler then
 * asks `saveState` for it and `restoreState` puts it back.
 */
interface RecordState {
  slots: (AttributeValue | undefined)[] | undefined;
  attrs: Record<string, AttributeValue> | undefined;
  input: string | undefined;
  output: string | undefined;
  events: string | undefined;
  eventCount: number;
  status: string | undefined;
  usage: Usage | undefined;
  costSet: boolean;
  lastError: unknown;
}

/**
 * A generation's state when a wrapped client call began filling it in (`SpanImpl.markAttempt`):
 * what to go back to if that attempt failed and the module's `llm` tries again.
 */
export interface AttemptMark {
  readonly start: string;
  /** When the attempt failed (undefined: it did not, or not yet). */
  failedAt: string | undefined;
  readonly state: Readonly<RecordState>;
}

const q = JSON.stringify;
/** What `SpanImpl.masked` answers when the configuration keeps a value in the app. */
const NOT_CAPTURED = Symbol('not captured');

/**
 * The attributes the SDK's own setters write (a generation's model, provider, parameters, usage,
 * cost) have fixed slots: set and read by index and written with pre-quoted keys. Other keys go in
 * a plain object. An object keyed by a dozen dotted names sent every access down V8's megamorphic
 * path, and clearing usage counts with `in`/`delete` slowed it further. The slots come first on
 * the wire, in this order.
 */
const SLOT_KEYS = [
  ATTR.requestModel,
  ATTR.responseModel,
  ATTR.providerName,
  ATTR.requestTemperature,
  ATTR.requestMaxTokens,
  ATTR.requestTopP,
  // The six counts of `Usage`, in its order: input, output, total, cacheRead, cacheWrite, reasoning.
  ATTR.usageInputTokens,
  ATTR.usageOutputTokens,
  ATTR.usageTotalTokens,
  'gen_ai.usage.cache_read.input_tokens',
  'gen_ai.usage.cache_creation.input_tokens',
  ATTR.usageReasoningTokens,
  ATTR.usageCost,
  ATTR.completionStartTime,
] as const;
const S_MODEL = 0;
const S_RESPONSE_MODEL = 1;
const S_PROVIDER = 2;
const S_TEMPERATURE = 3;
const S_MAX_TOKENS = 4;
const S_TOP_P = 5;
const S_USAGE = 6;
const S_COST = 12;
const S_COMPLETION_START = 13;
const SLOT_OF = new Map<string, number>(SLOT_KEYS.map((k, i) => [k, i]));
const SLOT_MEMBERS = SLOT_KEYS.map((k) => `,${JSON.stringify(k)}:`);

/** `,"k":v` for each filled slot. */
function slotMembers(slots: readonly (AttributeValue | undefined)[]): string {
  let s = '';
  for (let i = 0; i < slots.length; i++) {
    const v = slots[i];
    if (v !== undefined) s += (SLOT_MEMBERS[i] as string) + attributeJson(v);
  }
  return s;
}

/** The slots of the model parameters with a standard attribute (`setParameters`), by their names. */
const PARAMETER_SLOT = new Map<string, number>([
  ['temperature', S_TEMPERATURE],
  ['maxTokens', S_MAX_TOKENS],
  ['max_tokens', S_MAX_TOKENS],
  ['max_completion_tokens', S_MAX_TOKENS],
  ['max_output_tokens', S_MAX_TOKENS],
  ['topP', S_TOP_P],
  ['top_p', S_TOP_P],
]);
/**
 * A token count as the daemon takes it, a whole number from 0 to 2^53 - 1. Larger ones were kept:
 * two of Number.MAX_VALUE made the total Infinity, written as null, and the daemon refused the span.
 */
const tokens = (x: unknown): number | undefined => {
  const n = typeof x === 'number' ? Math.round(x) : NaN;
  return n >= 0 && Number.isSafeInteger(n) ? n : undefined;
};

/**
 * The counts of `usage` that are whole non-negative numbers, the total derived when it is absent.
 * Reads the caller's object (its getters may throw: callers catch).
 */
function cleanUsage(usage: Usage): Usage {
  const u: Usage = {
    input: tokens(usage.input),
    output: tokens(usage.output),
    total: tokens(usage.total),
    cacheRead: tokens(usage.cacheRead),
    cacheWrite: tokens(usage.cacheWrite),
    reasoning: tokens(usage.reasoning),
  };
  const cacheWrite1h = tokens(usage.cacheWrite1h);
  if (cacheWrite1h !== undefined) u.cacheWrite1h = cacheWrite1h;
  if (u.total === undefined && (u.input !== undefined || u.output !== undefined)) u.total = tokens((u.input ?? 0) + (u.output ?? 0));
  return u;
}

/** A thrown value (or any value) as a message; never throws. */
export function errorMessage(e: unknown): string {
  try {
    if (e instanceof Error) return e.message || e.name;
    if (typeof e === 'string') return e;
    return toJson(e, 512) ?? String(e);
  } catch {
    return 'unknown error';
  }
}

function errorType(e: unknown): string {
  try {
    if (e instanceof Error) return e.constructor?.name && e.constructor.name !== 'Error' ? e.constructor.name : e.name;
    return typeof e;
  } catch {
    return 'unknown';
  }
}

/** The SDK span a scope is, or (a `withTrace` inside a span) is under. */
export function spanOf(s: Scope | undefined): SpanImpl | undefined {
  return s instanceof SpanImpl ? s : s instanceof TraceScope ? s.span : undefined;
}

export class SpanImpl implements GenerationHandle, Scope {
  readonly traceId: string;
  /** Not readonly for `splitFailedAttempt` alone: a module generation's failed attempt keeps it. */
  spanId: string;
  readonly parentSpanId: string | undefined;
  readonly trace: TraceInfo;
  readonly name: string;
  /**
   * False for a sampled-out trace: the span still has ids and a place in the context (children
   * inherit the decision) and still notifies subscribers, but captures no input/output, records
   * no events and sends nothing. A generation keeps its (few) attributes for its subscribers.
   */
  readonly sampled: boolean;
  ended = false;
  /** Module helpers open generations that a wrapped client call inside them fills in. */
  adoptable = false;
  llmCall: LlmCallState | undefined = undefined;
  /** The wrapped client call filling this generation in, as it found it (see `markAttempt`). */
  attempt: AttemptMark | undefined = undefined;
  private type: string;
  /** Its clock's anchor to the wall clock (clock.ts): its parent's, so a child stays inside it. */
  readonly anchor: bigint;
  private readonly start: string;
  private readonly generation: boolean;
  // What it records (RecordState, which lists them: add a field there too).
  /** Attributes with a slot (see SLOT_KEYS), then all others. */
  private slots: (AttributeValue | undefined)[] | undefined = undefined;
  private attrs: Record<string, AttributeValue> | undefined = undefined;
  private input: string | undefined = undefined;
  private output: string | undefined = undefined;
  private events: string | undefined = undefined;
  private eventCount = 0;
  private status: string | undefined = undefined;
  private usage: Usage | undefined = undefined;
  private costSet = false;
  private lastError: unknown = undefined;

  constructor(name: string, type: string | undefined, parent: Scope | undefined, generation: boolean) {
    this.name = recordName(name, 'span');
    this.type = type !== undefined && TYPES.has(type) ? type : generation ? 'generation' : 'span';
    this.generation = generation;
    if (parent) {
      this.traceId = parent.traceId;
      this.parentSpanId = parent.spanId;
      this.trace = parent.trace;
      this.sampled = parent.sampled;
    } else {
      this.traceId = newTraceId();
      this.parentSpanId = undefined;
      this.trace = EMPTY_TRACE;
      this.sampled = sampleTrace(this.traceId);
    }
    this.spanId = newSpanId();
    const now = monotonicNs();
    // Under a withTrace inside a span, that span's clock too: the child stays inside it.
    const clockOf = spanOf(parent);
    this.anchor = clockOf ? clockOf.anchor : anchorAt(now);
    this.start = (this.anchor + now).toString();
    // Its parent lives in another backend (or service): Langfuse would show no root for this part.
    if (parent instanceof TraceScope && parent.external) this.set(ATTR.appRoot, true);
  }

  /** Now on this span's clock, as a unix-ns string. */
  timeNow(): string {
    return (this.anchor + monotonicNs()).toString();
  }

  get isGeneration(): boolean {
    return this.generation;
  }
  get hasOutput(): boolean {
    return this.output !== undefined;
  }

  /** Whether its status is error (a failure the answer reported counts, not only one thrown). */
  get inError(): boolean {
    return this.status !== undefined && this.status.startsWith('{"code":"error"');
  }

  private set(key: string, value: AttributeValue): void {
    const slot = SLOT_OF.get(key);
    if (slot !== undefined) this.setSlot(slot, value);
    else if (this.sampled || this.generation) (this.attrs ??= {})[key] = value;
  }

  /** Sets (or, with undefined, clears) the attribute of a slot. */
  private setSlot(slot: number, value: AttributeValue | undefined): void {
    if (!this.sampled && !this.generation) return;
    (this.slots ??= new Array<AttributeValue | undefined>(SLOT_KEYS.length))[slot] = value;
  }

  /** The attributes as one object (for subscribers). */
  private attributes(): Record<string, AttributeValue> {
    const a: Record<string, AttributeValue> = {};
    const slots = this.slots;
    if (slots !== undefined) {
      for (let i = 0; i < slots.length; i++) {
        const v = slots[i];
        if (v !== undefined) a[SLOT_KEYS[i] as string] = v;
      }
    }
    return Object.assign(a, this.attrs);
  }

  /** `value` as the configuration lets it out of the app (`captureIO`, `mask`), or NOT_CAPTURED. */
  private masked(value: unknown, kind: 'input' | 'output'): unknown {
    const c = cfg();
    if (!c.captureIO || !this.sampled) return NOT_CAPTURED;
    if (!c.mask) return value;
    try {
      return c.mask(value, kind);
    } catch {
      return '[mask threw]';
    }
  }

  private capture(value: unknown, kind: 'input' | 'output'): string | undefined {
    const v = this.masked(value, kind);
    return v === NOT_CAPTURED ? undefined : toJson(v, cfg().maxValueLength);
  }

  setInput(value: unknown): this {
    if (!this.ended) this.input = this.capture(value, 'input');
    return this;
  }

  setOutput(value: unknown): this {
    if (!this.ended) this.output = this.capture(value, 'output');
    return this;
  }

  setAttribute(key: string, value: unknown): this {
    if (this.ended || (!this.sampled && !this.generation) || !validKey(key)) return this;
    if (key === ATTR.input) return this.setInput(value);
    if (key === ATTR.output) return this.setOutput(value);
    if (key === ATTR.observationType) {
      if (typeof value === 'string' && TYPES.has(value)) this.type = value;
      return this;
    }
    try {
      const v = toAttributeValue(value, cfg().maxValueLength);
      if (v !== undefined) this.set(key, v);
    } catch {
      /* never throw */
    }
    return this;
  }

  setAttributes(attributes: Readonly<Record<string, unknown>>): this {
    if (!attributes || typeof attributes !== 'object') return this;
    forEachReadable(attributes, (k, v) => this.setAttribute(k, v));
    return this;
  }

  setLevel(level: Level): this {
    if (typeof level === 'string') this.setAttribute(ATTR.level, level);
    return this;
  }

  setStatus(code: 'ok' | 'error', message?: string): this {
    // Sampled out, a generation keeps it, as recordError's: a failure its answer reported (no
    // exception) still splits off on a module llm's retry (`inError`).
    if (this.ended || (!this.sampled && !this.generation)) return this;
    if (code === 'error') this.status = message ? `{"code":"error","message":${q(errorMessage(message).slice(0, MAX_ERROR_MESSAGE))}}` : '{"code":"error"}';
    else if (code === 'ok') this.status = '{"code":"ok"}';
    return this;
  }

  private addEvent(name: string, attributes: Readonly<Record<string, unknown>> | undefined): void {
    if (this.ended || !this.sampled || this.eventCount >= MAX_EVENTS_PER_SPAN) return;
    try {
      const a = toAttributes(attributes, cfg().maxValueLength);
      const ev = `{"name":${q(recordName(name, 'event'))},"timeUnixNano":"${this.timeNow()}"${a ? `,"attributes":${q(a)}` : ''}}`;
      // Events past the record limit could never be sent (the span would go out without any):
      // not kept, so a span's 128 events cannot hold hundreds of MB until it ends.
      if ((this.events?.length ?? 0) + ev.length > MAX_RECORD_BYTES) return;
      this.events = this.events === undefined ? ev : `${this.events},${ev}`;
      this.eventCount++;
    } catch {
      /* never throw */
    }
  }

  /**
   * @internal `value`, one of a step's inputs or outputs put elsewhere than `dspy.input`/`.output`
   * (a module's event, `tool.input`), as `setInput`/`setOutput` would let it out: masked, or
   * undefined (left out) with `captureIO: false`.
   */
  ioValue(value: unknown, kind: 'input' | 'output'): unknown {
    if (value === undefined) return undefined;
    const v = this.masked(value, kind);
    return v === NOT_CAPTURED ? undefined : v;
  }

  /** @internal `event()` whose attributes under `io` are step contents: recorded through `ioValue`, given to subscribers as they are. */
  ioEvent(name: string, attributes: Readonly<Record<string, unknown>>, io: Readonly<Record<string, 'input' | 'output'>>): this {
    if (!this.ended && this.sampled) {
      const recorded: Record<string, unknown> = { ...attributes };
      for (const k of Object.keys(io)) recorded[k] = this.ioValue(attributes[k], io[k] as 'input' | 'output');
      this.addEvent(name, recorded);
    }
    const hs = handlersFor(name);
    if (hs.length > 0) dispatch(hs, name, attributes, { traceId: this.traceId, spanId: this.spanId });
    return this;
  }

  event(name: string, attributes?: Readonly<Record<string, unknown>>): this {
    this.addEvent(name, attributes);
    const hs = handlersFor(name);
    if (hs.length > 0) dispatch(hs, name, attributes ?? {}, { traceId: this.traceId, spanId: this.spanId });
    return this;
  }

  recordError(error: unknown): this {
    if (this.ended || (error !== undefined && error === this.lastError)) return this;
    this.lastError = error;
    // Sampled out: a generation keeps the error's attributes, for its subscribers.
    if (!this.sampled && !this.generation) return this;
    try {
      const message = errorMessage(error).slice(0, MAX_ERROR_MESSAGE);
      const type = errorType(error);
      this.status = `{"code":"error","message":${q(message)}}`;
      this.set(ATTR.level, 'ERROR');
      this.set('error.type', type);
      const status = (error as { status?: unknown } | null)?.status;
      if (typeof status === 'number' && Number.isFinite(status)) this.set('http.response.status_code', status);
      const stack = error instanceof Error && typeof error.stack === 'string' ? error.stack.slice(0, MAX_STACK) : undefined;
      this.addEvent('exception', { 'exception.type': type, 'exception.message': message, 'exception.stacktrace': stack });
    } catch {
      /* never throw */
    }
    return this;
  }

  // --- generation ---

  setModel(model: string): this {
    if (typeof model === 'string' && model) this.setText(S_MODEL, model);
    return this;
  }

  setResponseModel(model: string): this {
    if (typeof model === 'string' && model) this.setText(S_RESPONSE_MODEL, model);
    return this;
  }

  setProvider(provider: string): this {
    if (typeof provider === 'string' && provider) this.setText(S_PROVIDER, provider);
    return this;
  }

  /** `setAttribute` for a string in a slot: less code to inline. */
  private setText(slot: number, value: string): void {
    if (this.ended) return;
    const max = cfg().maxValueLength;
    this.setSlot(slot, value.length > max ? value.slice(0, max) + TRUNCATION_MARKER : value);
  }

  setParameters(parameters: Readonly<Record<string, unknown>>): this {
    if (!parameters || typeof parameters !== 'object') return this;
    forEachReadable(parameters, (k, v) => {
      if (v === undefined || v === null) return;
      const slot = PARAMETER_SLOT.get(k);
      // The usual case, a number for a standard parameter, needs none of setAttribute's checks.
      if (slot !== undefined && typeof v === 'number' && Number.isFinite(v)) {
        if (!this.ended) this.setSlot(slot, v);
      } else this.setAttribute(slot !== undefined ? (SLOT_KEYS[slot] as string) : `gen_ai.request.${k}`, v);
    });
    return this;
  }

  setUsage(usage: Usage): this {
    if (this.ended || !usage || typeof usage !== 'object') return this;
    let u: Usage;
    try {
      u = cleanUsage(usage);
    } catch {
      return this; // a throwing getter: the usage is not recorded
    }
    this.usage = u;
    if (!this.sampled && !this.generation) return this;
    // A count left out clears its slot: the usage is replaced, not merged. Written here rather
    // than by six setSlot() calls: TurboFan compiled a copy per call of its array allocation.
    const slots = (this.slots ??= new Array<AttributeValue | undefined>(SLOT_KEYS.length));
    slots[S_USAGE] = u.input;
    slots[S_USAGE + 1] = u.output;
    slots[S_USAGE + 2] = u.total;
    slots[S_USAGE + 3] = u.cacheRead;
    slots[S_USAGE + 4] = u.cacheWrite;
    slots[S_USAGE + 5] = u.reasoning;
    return this;
  }

  setCost(usd: number): this {
    if (!this.ended && typeof usd === 'number' && Number.isFinite(usd) && usd >= 0) {
      this.setSlot(S_COST, usd);
      this.costSet = true;
    }
    return this;
  }

  setCompletionStart(time?: string | number): this {
    if (this.ended) return this;
    let ns: string | undefined;
    if (time === undefined) ns = this.timeNow();
    else if (typeof time === 'string') ns = time;
    else if (typeof time === 'number' && Number.isFinite(time) && time > 0) ns = `${Math.round(time)}000000`;
    // Milliseconds of 10^13 and more (nanoseconds given as a number, say) made 20+ digits or
    // `1e+21000000`, not a time: the daemon dropped it.
    if (ns && UNIX_NANO.test(ns)) this.setSlot(S_COMPLETION_START, ns);
    return this;
  }

  setFinishReasons(reasons: readonly string[]): this {
    try {
      if (Array.isArray(reasons)) this.setAttribute(ATTR.responseFinishReasons, reasons.filter((r) => typeof r === 'string'));
    } catch {
      /* a revoked Proxy, a throwing element: not recorded */
    }
    return this;
  }

  score(name: string, value: ScoreValue, options?: SpanScoreOptions): this {
    let o: SpanScoreOptions;
    try {
      o = options && typeof options === 'object' ? { dataType: options.dataType, comment: options.comment, id: options.id } : {};
    } catch {
      countInvalid('invalid_score'); // a throwing getter: bad input, as score() counts it
      return this;
    }
    emitScore(
      { traceId: this.traceId, observationId: this.spanId, sessionId: undefined, name, value, dataType: o.dataType, comment: o.comment, id: o.id },
      this.sampled,
    );
    return this;
  }

  /** @internal A wrapped client call begins filling this generation in: its state now, to go back to. */
  markAttempt(): AttemptMark {
    return { start: this.timeNow(), failedAt: undefined, state: this.saveState() };
  }

  /**
   * @internal The attempt `mark` began failed and the module's `llm` tries again: that attempt
   * becomes a generation of its own beside this one (same parent, from its start to its failure),
   * and this one goes back to its state before it, for the next attempt to fill in. The attempt
   * keeps the id it ran under, which what happened during it names (the HTTP client's
   * OpenTelemetry span, events, a traceparent it sent); this one goes on under a new id.
   * Subscribers hear of the failed attempt as of any failed generation (their error is swallowed:
   * the app's retry goes on).
   */
  splitFailedAttempt(mark: AttemptMark): void {
    if (this.ended || mark.failedAt === undefined) return;
    const attemptId = this.spanId;
    this.spanId = newSpanId();
    // The attempt's record has only the events recorded since it began: the earlier ones stay
    // with this generation (restored below), not sent twice. Events only append to the string.
    const before = mark.state.events;
    if (before !== undefined) {
      this.events = this.events !== undefined && this.events.length > before.length ? this.events.slice(before.length + 1) : undefined;
      this.eventCount -= mark.state.eventCount;
    }
    this.emit(mark.failedAt, attemptId, mark.start);
    try {
      this.notifyGenerated(attemptId);
    } catch {
      /* a subscriber's error: the failed attempt is over, the app's retry goes on */
    }
    this.restoreState(mark.state);
  }

  /** What it recorded so far (see RecordState); the slots and attributes copied, as it goes on writing its own. */
  private saveState(): RecordState {
    return {
      slots: this.slots && [...this.slots],
      attrs: this.attrs && { ...this.attrs },
      input: this.input,
      output: this.output,
      events: this.events,
      eventCount: this.eventCount,
      status: this.status,
      usage: this.usage,
      costSet: this.costSet,
      lastError: this.lastError,
    };
  }

  /** Back to a saved state: every field of it (copied again: the state stays as saved). */
  private restoreState(state: Readonly<RecordState>): void {
    // Object.assign: the fields are plain properties (TypeScript `private`, not `#`).
    Object.assign(this, state);
    this.slots = state.slots && [...state.slots];
    this.attrs = state.attrs && { ...state.attrs };
  }

  /** Error status from `error`, then `end()`, never throwing (the app's error wins). */
  fail(error: unknown): void {
    this.recordError(error);
    try {
      this.end();
    } catch {
      /* a subscriber's error must not replace the app's */
    }
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.emit(this.timeNow(), this.spanId, this.start);
    if (this.generation) this.notifyGenerated(this.spanId);
  }

  /**
   * Sends the record under `spanId`, from `start` to `end` (a generation's cost added first); a
   * sampled-out one is only counted. Never throws.
   */
  private emit(end: string, spanId: string, start: string): void {
    try {
      if (this.generation) this.addCost();
      if (!this.sampled) countSampledOut();
      else {
        const line = this.line(end, spanId, start);
        if (line !== undefined) send(line);
      }
    } catch {
      /* never throw: the record is lost */
    }
  }

  /** Tells `llm.generate` subscribers of this generation, as `spanId`; rethrows a subscriber's error. */
  private notifyGenerated(spanId: string): void {
    const hs = handlersFor(EVENT_NAMES.llmGenerate);
    if (hs.length > 0) dispatch(hs, EVENT_NAMES.llmGenerate, this.attributes(), { traceId: this.traceId, spanId } satisfies EventContext);
  }

  /** Adds the cost from the price table, unless set with `setCost`. */
  private addCost(): void {
    const slots = this.slots;
    if (this.usage && !this.costSet && slots) {
      const model = slots[S_RESPONSE_MODEL] ?? slots[S_MODEL];
      if (typeof model === 'string') {
        let c: number | undefined;
        try {
          c = generationCost(model, this.usage, cfg());
        } catch {
          c = undefined;
        }
        if (c !== undefined) slots[S_COST] = c;
      }
    }
  }

  /** The span record as one NDJSON line (with its newline), or undefined if it cannot be sent. */
  private line(end: string, spanId: string, start: string): string | undefined {
    // Trace and attribute members come pre-quoted with their leading commas (no JSON.stringify of
    // an attributes object, no slicing of its braces).
    const head =
      `{"v":1,"type":"span","traceId":"${this.traceId}","spanId":"${spanId}"` +
      (this.parentSpanId !== undefined ? `,"parentSpanId":"${this.parentSpanId}"` : '') +
      `,"name":${quoteName(this.name)},"startTimeUnixNano":"${start}","endTimeUnixNano":"${end}"` +
      (this.status !== undefined ? `,"status":${this.status}` : '');
    const s = `${head},"attributes":{"dspy.observation.type":"${this.type}"${this.trace.members}`;
    const tail = (this.slots !== undefined ? slotMembers(this.slots) : '') + (this.attrs !== undefined ? memberList(this.attrs) : '');
    const io = (this.input !== undefined ? `,"dspy.input":${q(this.input)}` : '') + (this.output !== undefined ? `,"dspy.output":${q(this.output)}` : '');
    const line = this.events !== undefined ? `${s}${io}${tail}},"events":[${this.events}]}\n` : `${s}${io}${tail}}}\n`;
    if (fitsRecord(line)) return line;
    // Too big for the daemon: keep the span, drop its input/output and events.
    const slim = `${s},"dspy.truncated":true${tail}}}\n`;
    if (fitsRecord(slim)) return slim;
    return `${head},"attributes":{"dspy.observation.type":"${this.type}","dspy.truncated":true}}\n`;
  }
}

const NOOP_ID = '';

/**
 * What `span`/`generation` hand out when telemetry is off: does nothing, except that events (and
 * a generation's usage, see {@link LiteGeneration}) still reach subscribers, so a token budget
 * keeps working with telemetry disabled. One per span: `ended` is the handle's own, as the app
 * reads it when telemetry is on (a shared handle answered false after `end()`).
 */
export class NoopSpan implements GenerationHandle {
  readonly traceId = NOOP_ID;
  readonly spanId = NOOP_ID;
  readonly name: string = '';
  readonly sampled = false;
  #ended = false;
  get ended(): boolean {
    return this.#ended;
  }
  setInput(): this {
    return this;
  }
  setOutput(): this {
    return this;
  }
  setAttribute(): this {
    return this;
  }
  setAttributes(): this {
    return this;
  }
  setLevel(): this {
    return this;
  }
  setStatus(): this {
    return this;
  }
  event(name: string, attributes?: Readonly<Record<string, unknown>>): this {
    const hs = handlersFor(name);
    if (hs.length > 0) dispatch(hs, name, attributes ?? {}, { traceId: undefined, spanId: undefined });
    return this;
  }
  recordError(): this {
    return this;
  }
  end(): void {
    this.#ended = true;
  }
  score(): this {
    return this;
  }
  setModel(_model?: string): this {
    return this;
  }
  setResponseModel(_model?: string): this {
    return this;
  }
  setProvider(_provider?: string): this {
    return this;
  }
  setParameters(): this {
    return this;
  }
  setUsage(_usage?: Usage): this {
    return this;
  }
  setCost(): this {
    return this;
  }
  setCompletionStart(): this {
    return this;
  }
  setFinishReasons(): this {
    return this;
  }
}

/** A disabled-mode generation that only keeps what `llm.generate` subscribers are told. */
export class LiteGeneration extends NoopSpan {
  /** `traceOf`: the trace of the active `withTrace`, told to subscribers (a per-trace budget). */
  constructor(private readonly traceOf: string | undefined = undefined) {
    super();
  }
  private a: Record<string, unknown> = {};
  /** A module's generation, for a wrapped client call inside to fill in (see `SpanImpl.adoptable`). */
  adoptable = false;
  private usage: Usage | undefined;
  override setModel(model?: string): this {
    if (typeof model === 'string') this.a[ATTR.requestModel] = model;
    return this;
  }
  override setResponseModel(model?: string): this {
    if (typeof model === 'string') this.a[ATTR.responseModel] = model;
    return this;
  }
  override setProvider(provider?: string): this {
    if (typeof provider === 'string') this.a[ATTR.providerName] = provider;
    return this;
  }
  override setUsage(usage?: Usage): this {
    // As the recording generation does: counts cleaned (tokens()), a throwing getter swallowed.
    try {
      if (!usage || typeof usage !== 'object') return this;
      const u = cleanUsage(usage);
      this.usage = u;
      this.a[ATTR.usageInputTokens] = u.input;
      this.a[ATTR.usageOutputTokens] = u.output;
      this.a[ATTR.usageTotalTokens] = u.total;
      this.a[SLOT_KEYS[S_USAGE + 3]] = u.cacheRead;
      this.a[SLOT_KEYS[S_USAGE + 4]] = u.cacheWrite;
      this.a[SLOT_KEYS[S_USAGE + 5]] = u.reasoning;
    } catch {
      /* never throw into the app */
    }
    return this;
  }
  override end(): void {
    if (this.ended) return;
    super.end();
    const model = this.a[ATTR.responseModel] ?? this.a[ATTR.requestModel];
    if (this.usage && typeof model === 'string') {
      try {
        const c = generationCost(model, this.usage, cfg());
        if (c !== undefined) this.a[ATTR.usageCost] = c;
      } catch {
        /* never throw */
      }
    }
    const hs = handlersFor(EVENT_NAMES.llmGenerate);
    if (hs.length > 0) dispatch(hs, EVENT_NAMES.llmGenerate, this.a, { traceId: this.traceOf, spanId: undefined });
  }
}

export function isObservationType(t: unknown): t is ObservationType {
  return typeof t === 'string' && TYPES.has(t);
}
