/**
 * The neutral vocabulary (DESIGN §3) → Langfuse's OTLP dialect (DESIGN §6, FACTS.md).
 *
 * `LangfuseMapper.map(batch)` returns the spans to encode: each SDK span with its attributes
 * translated, plus one zero-length child span of type `event` per span event (Langfuse ignores
 * span events). It never mutates its input, and mapping the same batch twice gives the same
 * output (the export loop calls `send` again on retries and on 413 halves): event span ids are
 * derived from the parent span id and the event index.
 *
 * Trace-level attributes (name, user, session, tags, metadata, release, environment) must be on
 * every span Langfuse receives (its real-time path only reads them from the span row itself), so
 * they are gathered per trace from the whole batch, remembered per trace id in a bounded LRU
 * and written onto every span of the trace, including spans in later batches.
 *
 * Values Langfuse would drop silently (the whole observation with them) are repaired or removed,
 * and each repair is reported through `onRepair(reason)` (a closed set: {@link RepairReason}).
 */
import { createHash } from 'node:crypto';
import type { AttributeValue, Attributes, SpanEvent } from '@dspy-o11y/proto';
// The vocabulary alone: the export worker loads this module and has no use for zod's schemas.
import { ATTR, LEVELS, OBSERVATION_TYPES, RESOURCE } from '@dspy-o11y/proto/vocabulary';
import type { Resource } from '../model.js';
import type { EncodableSpan, EncodableSpanRecord } from './otlp-encode.js';

export const LF = {
  observationType: 'langfuse.observation.type',
  input: 'langfuse.observation.input',
  output: 'langfuse.observation.output',
  traceInput: 'langfuse.trace.input',
  traceOutput: 'langfuse.trace.output',
  traceName: 'langfuse.trace.name',
  traceTags: 'langfuse.trace.tags',
  traceMetadataPrefix: 'langfuse.trace.metadata.',
  userId: 'langfuse.user.id',
  sessionId: 'langfuse.session.id',
  usageDetails: 'langfuse.observation.usage_details',
  costDetails: 'langfuse.observation.cost_details',
  modelName: 'langfuse.observation.model.name',
  modelParameters: 'langfuse.observation.model.parameters',
  completionStartTime: 'langfuse.observation.completion_start_time',
  level: 'langfuse.observation.level',
  statusMessage: 'langfuse.observation.status_message',
  promptName: 'langfuse.observation.prompt.name',
  promptVersion: 'langfuse.observation.prompt.version',
  observationMetadataPrefix: 'langfuse.observation.metadata.',
  environment: 'langfuse.environment',
  release: 'langfuse.release',
  version: 'langfuse.version',
  /**
   * What Langfuse's own SDKs set on a span whose parent they do not export (their "app root"):
   * Langfuse names the trace after such a span as after a root (when no trace name is set).
   */
  appRoot: 'langfuse.internal.is_app_root',
} as const;

/** Why a value was changed or removed before export (metric label values: keep the set closed). */
export type RepairReason =
  | 'prompt_version_coerced' // '3' → 3
  | 'prompt_version_invalid' // not an integer: prompt name and version dropped
  | 'prompt_incomplete' // name without version or version without name: both dropped
  | 'prompt_on_non_generation' // prompts link generations only: both dropped
  | 'cost_coerced' // '0.12' → 0.12
  | 'cost_invalid' // not a finite non-negative number: dropped
  | 'usage_coerced' // '12' → 12
  | 'usage_invalid' // negative or not an integer: that key dropped
  | 'completion_start_time_invalid' // not unix ns: dropped
  | 'observation_type_invalid' // not one of Langfuse's types: dropped (Langfuse infers one)
  | 'level_invalid' // not DEBUG/DEFAULT/WARNING/ERROR: dropped
  | 'tags_coerced' // not a string array: made one
  | 'environment_sanitized' // lowercased / invalid characters replaced / cut to 40 / 'default' when nothing valid is left
  | 'version_coerced'; // a resource service.version that is not a string, sent as one (langfuse.version)

export const REPAIR_REASONS: readonly RepairReason[] = [
  'prompt_version_coerced', 'prompt_version_invalid', 'prompt_incomplete', 'prompt_on_non_generation', 'cost_coerced',
  'cost_invalid', 'usage_coerced', 'usage_invalid', 'completion_start_time_invalid', 'observation_type_invalid',
  'level_invalid', 'tags_coerced', 'environment_sanitized', 'version_coerced',
];

/** A batch being translated span by span (`LangfuseMapper.begin`). */
export interface BatchMapping {
  add(item: EncodableSpan): void;
  /** The translated spans (one per input span, plus one per span event); call once. */
  finish(): EncodableSpan[];
}

export interface LangfuseMapperOptions {
  /** Called once per repair. */
  readonly onRepair?: (reason: RepairReason) => void;
  /** Traces whose trace-level attributes are remembered across batches (LRU). Default 10,000. */
  readonly maxTraces?: number;
}

/** OpenTelemetry GenAI's cache counts (the SDK's `Usage.cacheRead` / `cacheWrite`). */
const USAGE_CACHE_READ = 'gen_ai.usage.cache_read.input_tokens';
const USAGE_CACHE_CREATION = 'gen_ai.usage.cache_creation.input_tokens';
/** `gen_ai.request.<parameter>`: every one but the model goes into the model parameters. */
const REQUEST_PREFIX = 'gen_ai.request.';

/**
 * Translated `dspy.*` (and `gen_ai.usage.*`) keys that are NOT forwarded. Langfuse copies every
 * span attribute it does not interpret into the observation's metadata, so forwarding these would:
 * - duplicate the input/output (often the largest values of a span) in metadata;
 * - repeat trace name/tags/metadata on every observation's metadata;
 * - for `gen_ai.usage.*`: let Langfuse fall back to the raw keys when we removed an invalid value
 *   from usage_details/cost_details (re-introducing the value that drops the observation), and
 *   make it interpret cache tokens a second way. usage_details / cost_details carry the same data.
 * Kept (not translated, or useful as-is): `dspy.module`, `dspy.signature`, `gen_ai.provider.name`,
 * `gen_ai.operation.name`, `gen_ai.request.*`, `gen_ai.response.*` (Langfuse reads the model and
 * parameters from our `langfuse.*` keys first), `user.id` and `session.id` (OpenTelemetry keys
 * Langfuse understands itself; small).
 */
const STRIPPED = new Set<string>([
  ATTR.observationType, ATTR.input, ATTR.output, ATTR.level, ATTR.traceName, ATTR.traceTags,
  ATTR.promptName, ATTR.promptVersion, ATTR.completionStartTime, ATTR.appRoot,
  ATTR.usageInputTokens, ATTR.usageOutputTokens, ATTR.usageTotalTokens, ATTR.usageCost,
  USAGE_CACHE_READ, USAGE_CACHE_CREATION, ATTR.usageReasoningTokens,
]);

const OBSERVATION_TYPE_SET = new Set<string>(OBSERVATION_TYPES);
const LEVEL_SET = new Set<string>(LEVELS);
// gen_ai.operation.name → type, as Langfuse infers it when no explicit type is set (FACTS.md).
const GENERATION_OPERATIONS = new Set(['chat', 'completion', 'text_completion', 'generate_content', 'generate']);
const UNIX_NANO = /^[0-9]{1,20}$/;
const INTEGER_STRING = /^-?[0-9]+$/;
const ENV_MAX = 40;

/** Trace-level attributes of one trace, already in Langfuse's keys. */
type TraceAttrs = Record<string, AttributeValue>;

/** What the mapper remembers of a trace between batches, and about what it occupies. */
interface RememberedTrace {
  readonly attrs: TraceAttrs;
  readonly bytes: number;
}

/**
 * Bounds of the trace memory besides its trace count. Trace-level values come from the app
 * (`dspy.trace.metadata.*` can be anything up to a record's size) and are copied onto every later
 * span of their trace: without a byte bound, 16 KiB of metadata per trace made 10,000 remembered
 * traces ~130 MiB of the export worker (over --memory-limit, so the queue dropped spans), and a
 * long trace adding a metadata key per span made every later span, and body, larger than the last.
 * Per trace, values past TRACE_BYTES_MAX (the fixed trace fields first, then metadata in the order
 * it came) stay on the spans that set them but are not copied onto others; in all, the oldest
 * traces are forgotten past REMEMBERED_BYTES_MAX.
 */
export const TRACE_BYTES_MAX = 16 * 1024;
export const REMEMBERED_BYTES_MAX = 16 * 1024 * 1024;

/** About what a value occupies (UTF-16 units of strings, 8 per number or boolean). */
function sizeOf(v: AttributeValue): number {
  if (typeof v === 'string') return v.length;
  if (Array.isArray(v)) {
    let n = 8;
    for (const x of v as readonly unknown[]) n += typeof x === 'string' ? x.length : 8;
    return n;
  }
  return 8;
}

/** `attrs` within TRACE_BYTES_MAX: Langfuse's fixed trace fields first, then the rest in order. */
function remembered(attrs: TraceAttrs): RememberedTrace {
  let bytes = 0;
  for (const k in attrs) bytes += k.length + sizeOf(attrs[k]!);
  if (bytes <= TRACE_BYTES_MAX) return { attrs, bytes };
  // Over (rare): a capped copy, in that order of preference.
  bytes = 0;
  const kept: TraceAttrs = {};
  const keep = (k: string) => {
    const size = k.length + sizeOf(attrs[k]!);
    if (bytes + size > TRACE_BYTES_MAX) return;
    bytes += size;
    kept[k] = attrs[k]!;
  };
  for (const k of TRACE_LEVEL_KEYS) if (k in attrs) keep(k);
  for (const k in attrs) if (!TRACE_LEVEL_KEY_SET.has(k)) keep(k);
  return { attrs: kept, bytes };
}

/** `deployment.environment.name` in Langfuse's alphabet: lowercase `[a-z0-9-_]`, ≤ 40 chars. */
export function sanitizeEnvironment(env: string): string {
  return env
    .trim()
    .toLowerCase()
    .replace(/[^a-z0-9_-]+/g, '-')
    .slice(0, ENV_MAX);
}

/**
 * The environment Langfuse gets for a `deployment.environment.name`: sanitized; none when nothing
 * of it is left (only separators) or when it starts with `langfuse`, which Langfuse reserves
 * (its ingestion schema: `/^(?!langfuse)[a-z0-9-_]+$/`; an observation that fails it is dropped).
 */
export function langfuseEnvironment(env: string): string | undefined {
  const clean = sanitizeEnvironment(env);
  return /[a-z0-9]/.test(clean) && !clean.startsWith('langfuse') ? clean : undefined;
}

/** The resource's environment key before semantic conventions 1.27, which Langfuse reads after `deployment.environment.name`. */
const LEGACY_ENVIRONMENT = 'deployment.environment';

/**
 * A sender's environment as Langfuse reads it from the resource: its own `langfuse.environment`
 * (Langfuse's Python SDK puts it on the resource), else `deployment.environment.name`, else the key
 * of semantic conventions before 1.27 (still common), on which Langfuse drops an observation or
 * score just the same. Not yet sanitized ({@link langfuseEnvironment}).
 */
export function resourceEnvironment(attributes: Attributes): AttributeValue | undefined {
  return attributes[LF.environment] || attributes[RESOURCE.environment] || attributes[LEGACY_ENVIRONMENT];
}

/** Langfuse's environment when none is given. */
export const DEFAULT_ENVIRONMENT = 'default';

/** The span id of the `index`th event of span `parentSpanId`: stable, so a resend does not duplicate. */
export function eventSpanId(parentSpanId: string, index: number): string {
  const id = createHash('sha1').update(`${parentSpanId}:${index}`).digest('hex').slice(0, 16);
  return id === '0000000000000000' ? '0000000000000001' : id;
}

function isLangfuseKey(key: string): boolean {
  return key.charCodeAt(0) === 108 /* l */ && key.startsWith('langfuse.');
}

/**
 * A span of Langfuse's own SDKs (over OTLP): a `langfuse.observation.*` key, which every
 * observation of its JS v4/v5 and Python v3 SDKs carries (`langfuse.observation.type`), and no
 * `dspy.observation.type`, which every span and event of our SDK carries (an SDK span with
 * observation metadata of the app's own passed untranslated otherwise). Other `langfuse.*` keys do
 * not make one: LangfuseSpanProcessor adds `langfuse.environment`, `langfuse.release`,
 * `langfuse.internal.is_app_root` and propagated trace keys to the Vercel AI SDK's spans, which
 * then passed without their input, output, parameters and usage.
 */
function speaksLangfuse(attrs: Attributes): boolean {
  if (Object.hasOwn(attrs, ATTR.observationType)) return false;
  for (const k in attrs) if (k.startsWith(LANGFUSE_OBSERVATION_PREFIX)) return true;
  return false;
}

const LANGFUSE_OBSERVATION_PREFIX = 'langfuse.observation.';
/** Trace-level keys a span may state itself, in Langfuse's dialect (its `langfuse.trace.*` too). */
const isTraceLevelKey = (k: string): boolean => TRACE_LEVEL_KEY_SET.has(k) || k.startsWith(LF.traceMetadataPrefix);

const toJsonString = (v: AttributeValue): string => (typeof v === 'string' ? v : JSON.stringify(v));

/**
 * JSON.stringify(v) for one attribute value, without calling it for numbers and booleans (the
 * usual case: this runs a few times per span, and JSON.stringify of a small object cost as much as
 * the rest of the span's mapping). Finite numbers print the same through String().
 */
function jsonValue(v: AttributeValue): string {
  if (typeof v === 'number') return Number.isFinite(v) ? String(v) : 'null';
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  return JSON.stringify(v);
}

function nsToIso(ns: string): string | undefined {
  const ms = Number(BigInt(ns) / 1_000_000n);
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? undefined : d.toISOString();
}

export class LangfuseMapper implements BatchMapping {
  private readonly onRepair: (reason: RepairReason) => void;
  private readonly maxTraces: number;
  /** traceId → trace-level attributes; Map order is recency (re-inserted on use). */
  private readonly traces = new Map<string, RememberedTrace>();
  /** Sum of the remembered traces' `bytes`. */
  private bytes = 0;
  /** Per daemon Resource: the `langfuse.release` / `langfuse.environment` it implies. */
  private readonly resourceAttrs = new WeakMap<Resource, TraceAttrs>();
  // The batch being mapped (begin/add/finish): the output, and the index in it and trace id of
  // each translated span, for the fill-in pass.
  private out: EncodableSpan[] = [];
  private indexes: number[] = [];
  private traceIds: string[] = [];
  private batchTraces = new Map<string, TraceAttrs>();

  constructor(options: LangfuseMapperOptions = {}) {
    this.onRepair = options.onRepair ?? (() => {});
    this.maxTraces = Math.max(1, options.maxTraces ?? 10_000);
  }

  /** Number of traces remembered (for tests and status). */
  get rememberedTraces(): number {
    return this.traces.size;
  }

  /** About what the remembered trace attributes occupy (bounded by REMEMBERED_BYTES_MAX). */
  get rememberedBytes(): number {
    return this.bytes;
  }

  /** Translate one batch. The output has one entry per input span plus one per span event. */
  map(batch: readonly EncodableSpan[]): EncodableSpan[] {
    this.begin();
    for (let i = 0; i < batch.length; i++) this.add(batch[i]);
    return this.finish();
  }

  /**
   * Translate one batch span by span: `begin`, `add` each span in order, then `finish` (which is
   * what `map` does). Lets a caller drop each input span as soon as it is added: the export worker
   * parses a batch line by line, so parsed records die young instead of living through the whole
   * batch. One batch at a time. (The batch state lives on the mapper rather than in an object per
   * batch: optimized code that had captured a dead per-batch object was thrown away at every GC.)
   */
  begin(): BatchMapping {
    this.out = [];
    this.indexes = [];
    this.traceIds = [];
    this.batchTraces = new Map();
    return this;
  }

  add(item: EncodableSpan): void {
    const out = this.out;
    const span = item.span;
    const attrs = span.attributes;
    if (attrs && speaksLangfuse(attrs)) {
      // Another SDK's span (over OTLP) already speaks Langfuse: pass it unchanged.
      out.push(item);
      return;
    }
    // Trace-level values of this span go to `t` as they are translated; a root span's win over its descendants'.
    let t = this.batchTraces.get(span.traceId);
    if (!t) this.batchTraces.set(span.traceId, (t = {}));
    const mapped = this.translate(span, item.resource, t);
    this.indexes.push(out.length);
    this.traceIds.push(span.traceId);
    out.push({ span: translatedSpan(span, mapped), resource: item.resource });
    const events = span.events;
    if (events && events.length > 0) {
      for (let i = 0; i < events.length; i++) {
        this.indexes.push(out.length);
        this.traceIds.push(span.traceId);
        out.push({ span: eventSpan(span, events[i], i), resource: item.resource });
      }
    }
  }

  finish(): EncodableSpan[] {
    const { out, indexes, traceIds, batchTraces } = this;
    this.out = [];
    this.indexes = [];
    this.traceIds = [];
    this.batchTraces = new Map();
    // Merge with what earlier batches taught us, remember the result, fill every span in.
    for (const [traceId, fromBatch] of batchTraces) {
      const known = this.traces.get(traceId);
      let merged = fromBatch;
      if (known) {
        merged = { ...known.attrs, ...fromBatch };
        this.traces.delete(traceId);
        this.bytes -= known.bytes;
      }
      const kept = remembered(merged);
      this.traces.set(traceId, kept);
      this.bytes += kept.bytes;
      // The spans of this batch get the same (capped) values: what a span set itself, it keeps.
      batchTraces.set(traceId, kept.attrs);
    }
    // The oldest first, with ONE iterator: V8 leaves a hole per deleted Map entry until the next
    // rehash, and a fresh `keys().next()` per eviction walks all of them again (measured: ~7 µs
    // per span when every span starts its own trace, ~0.4 with one iterator per batch).
    let excess = this.traces.size - this.maxTraces;
    if (excess > 0 || this.bytes > REMEMBERED_BYTES_MAX) {
      for (const [oldest, t] of this.traces) {
        this.traces.delete(oldest);
        this.bytes -= t.bytes;
        if (--excess <= 0 && this.bytes <= REMEMBERED_BYTES_MAX) break;
      }
    }
    for (let i = 0; i < indexes.length; i++) {
      const t = batchTraces.get(traceIds[i]);
      if (!t) continue;
      const attrs = out[indexes[i]].span.attributes as Record<string, AttributeValue>;
      for (const k in t) if (!(k in attrs)) attrs[k] = t[k];
    }
    return out;
  }

  /**
   * The `langfuse.*` translation of one span's attributes (a new object). Its trace-level values
   * (see {@link TRACE_LEVEL_KEYS}) are also written to `trace`, in the order they are set, a root
   * span's overriding what the trace already has.
   */
  private translate(span: EncodableSpanRecord, resource: Resource, trace: TraceAttrs): Record<string, AttributeValue> {
    const src = span.attributes ?? {};
    const out: Record<string, AttributeValue> = {};
    const isRoot = !span.parentSpanId;
    // `langfuse.*` keys the span states itself win over what is derived here (Langfuse reads the
    // span's own keys first): its `langfuse.environment` over the resource's.
    let ownLangfuse = false;
    const toTrace = (k: string, v: AttributeValue) => {
      if (ownLangfuse && isLangfuseKey(k) && k in src) v = src[k]!;
      if (isRoot || !(k in trace)) trace[k] = v;
    };

    // Everything not translated passes as-is (Langfuse shows it as metadata). The same pass
    // gathers the model parameters: every request parameter (temperature, max_tokens, top_p,
    // seed, stop_sequences, …), since Langfuse reads no gen_ai.request.* key once
    // model.parameters is set. JSON written by hand: the text JSON.stringify gives, for less.
    let params = '';
    for (const k in src) {
      if (k.charCodeAt(0) === 103 /* g */ && k.startsWith(REQUEST_PREFIX) && k !== ATTR.requestModel) {
        params += `,${JSON.stringify(k.slice(REQUEST_PREFIX.length))}:${jsonValue(src[k]!)}`;
      }
      if (STRIPPED.has(k)) continue;
      if (isLangfuseKey(k)) ownLangfuse = true;
      if (k.charCodeAt(0) === 100 /* d */ && k.startsWith(ATTR.traceMetadataPrefix)) {
        const key = LF.traceMetadataPrefix + k.slice(ATTR.traceMetadataPrefix.length);
        out[key] = src[k];
        toTrace(key, src[k]);
        continue;
      }
      out[k] = src[k];
    }

    // Observation type.
    let type: string | undefined;
    const rawType = src[ATTR.observationType];
    if (rawType !== undefined) {
      if (typeof rawType === 'string' && OBSERVATION_TYPE_SET.has(rawType)) {
        type = rawType;
        out[LF.observationType] = rawType;
      } else this.onRepair('observation_type_invalid');
    }

    // Input / output.
    const input = src[ATTR.input];
    if (input !== undefined) {
      const s = toJsonString(input);
      out[LF.input] = s;
      if (isRoot) out[LF.traceInput] = s;
    }
    const output = src[ATTR.output];
    if (output !== undefined) {
      const s = toJsonString(output);
      out[LF.output] = s;
      if (isRoot) out[LF.traceOutput] = s;
    }

    // The top of the app's part of a trace whose root is elsewhere (only `true` means it).
    if (src[ATTR.appRoot] === true && !isRoot) out[LF.appRoot] = true;

    // Trace-level fields.
    const traceName = src[ATTR.traceName];
    if (traceName !== undefined) toTrace(LF.traceName, (out[LF.traceName] = String(traceName)));
    const tags = src[ATTR.traceTags];
    if (tags !== undefined) {
      const t = this.tags(tags);
      if (t) toTrace(LF.traceTags, (out[LF.traceTags] = t));
    }
    const userId = src[ATTR.userId];
    if (userId !== undefined && userId !== '') toTrace(LF.userId, (out[LF.userId] = String(userId)));
    const sessionId = src[ATTR.sessionId];
    if (sessionId !== undefined && sessionId !== '') toTrace(LF.sessionId, (out[LF.sessionId] = String(sessionId)));
    let fromResource = this.resourceAttrs.get(resource);
    if (!fromResource) {
      fromResource = this.fromResource(resource);
      this.resourceAttrs.set(resource, fromResource);
    }
    // release and environment: trace-level too
    for (const k in fromResource) toTrace(k, (out[k] = fromResource[k]));

    // Model.
    const responseModel = src[ATTR.responseModel];
    const requestModel = src[ATTR.requestModel];
    const model = typeof responseModel === 'string' && responseModel !== '' ? responseModel : requestModel;
    if (typeof model === 'string' && model !== '') out[LF.modelName] = model;
    // JSON objects written by hand: the same text JSON.stringify gives, at a fraction of the cost.
    if (params) out[LF.modelParameters] = `{${params.slice(1)}}`;

    // Usage and cost.
    // Usage counts are safe integers and the cost a finite number: String() prints them as JSON does.
    const inputTokens = this.usage(src[ATTR.usageInputTokens]);
    const outputTokens = this.usage(src[ATTR.usageOutputTokens]);
    // Langfuse shows `total` as the generation's token count; OpenTelemetry GenAI spans carry
    // only input and output, so the total is their sum when the sender gave none.
    const totalTokens = this.usage(src[ATTR.usageTotalTokens]) ?? (inputTokens !== undefined && outputTokens !== undefined ? inputTokens + outputTokens : undefined);
    // Cache counts go under the keys of Langfuse's price table. OpenTelemetry's input includes
    // them, while Langfuse prices `input` at the full rate and these at theirs: `input` is the rest.
    const cacheRead = this.usage(src[USAGE_CACHE_READ]);
    const cacheCreation = this.usage(src[USAGE_CACHE_CREATION]);
    const cached = (cacheRead ?? 0) + (cacheCreation ?? 0);
    // Reasoning likewise: part of OpenTelemetry's output; Langfuse's key (its SDKs' and price
    // table's) is output_reasoning_tokens, priced on its own, so `output` is the rest.
    const reasoning = this.usage(src[ATTR.usageReasoningTokens]);
    let usage = '';
    if (inputTokens !== undefined) usage += `,"input":${inputTokens >= cached ? inputTokens - cached : inputTokens}`;
    if (outputTokens !== undefined) usage += `,"output":${outputTokens >= (reasoning ?? 0) ? outputTokens - (reasoning ?? 0) : outputTokens}`;
    if (totalTokens !== undefined) usage += `,"total":${totalTokens}`;
    if (cacheRead !== undefined) usage += `,"input_cache_read":${cacheRead}`;
    if (cacheCreation !== undefined) usage += `,"input_cache_creation":${cacheCreation}`;
    if (reasoning !== undefined) usage += `,"output_reasoning_tokens":${reasoning}`;
    if (usage) out[LF.usageDetails] = `{${usage.slice(1)}}`;
    const cost = this.cost(src[ATTR.usageCost]);
    if (cost !== undefined) out[LF.costDetails] = `{"total":${cost}}`;

    // Time to first token.
    const cst = src[ATTR.completionStartTime];
    if (cst !== undefined) {
      const ns = typeof cst === 'number' && Number.isSafeInteger(cst) && cst > 0 ? String(cst) : cst;
      const iso = typeof ns === 'string' && UNIX_NANO.test(ns) ? nsToIso(ns) : undefined;
      if (iso) out[LF.completionStartTime] = iso;
      else this.onRepair('completion_start_time_invalid');
    }

    // Level and status message.
    const level = src[ATTR.level];
    if (level !== undefined) {
      const l = typeof level === 'string' ? level.toUpperCase() : '';
      if (LEVEL_SET.has(l)) out[LF.level] = l;
      else this.onRepair('level_invalid');
    }
    if (span.status?.code === 'error' && out[LF.level] === undefined) out[LF.level] = 'ERROR';
    if (span.status?.message) out[LF.statusMessage] = span.status.message;

    // Prompt (generations only; name and version together; version an integer).
    const promptName = src[ATTR.promptName];
    const promptVersion = src[ATTR.promptVersion];
    if (promptName !== undefined || promptVersion !== undefined) {
      const prompt = this.prompt(promptName, promptVersion, effectiveType(type, src));
      if (prompt) {
        out[LF.promptName] = prompt.name;
        out[LF.promptVersion] = prompt.version;
      }
    }
    if (ownLangfuse) {
      for (const k in src) {
        if (!isLangfuseKey(k)) continue;
        out[k] = src[k]!;
        if (isTraceLevelKey(k)) toTrace(k, src[k]!);
      }
    }
    return out;
  }

  /**
   * What a resource implies for each of its spans. Langfuse also reads the resource itself when a
   * span has no `langfuse.environment` / `langfuse.version`, and drops the observation when that
   * value fails its schema, so a resource value Langfuse would refuse is always overridden here.
   */
  private fromResource(resource: Resource): TraceAttrs {
    const out: TraceAttrs = {};
    const version = resource.attributes[RESOURCE.serviceVersion];
    // The resource's own langfuse.release first (Langfuse's Python SDK puts it there): Langfuse
    // reads it, and the span's key derived here would otherwise win over it.
    const release = resource.attributes[LF.release] || version;
    if (release !== undefined && release !== '') out[LF.release] = String(release);
    // Langfuse takes service.version as the observation's version, which must be a string.
    if (version !== undefined && version !== '' && typeof version !== 'string') {
      out[LF.version] = String(version);
      this.onRepair('version_coerced');
    }
    const env = resourceEnvironment(resource.attributes);
    if (env !== undefined && env !== '') {
      const clean = langfuseEnvironment(String(env));
      if (clean !== env) this.onRepair('environment_sanitized');
      out[LF.environment] = clean ?? DEFAULT_ENVIRONMENT;
    }
    return out;
  }

  private tags(v: AttributeValue): string[] | undefined {
    if (Array.isArray(v)) {
      if (v.every((x) => typeof x === 'string')) return v as string[];
      this.onRepair('tags_coerced');
      return v.map((x) => String(x));
    }
    this.onRepair('tags_coerced');
    if (typeof v === 'string') {
      if (v.startsWith('[')) {
        try {
          const parsed: unknown = JSON.parse(v);
          if (Array.isArray(parsed)) return parsed.map((x) => (typeof x === 'string' ? x : JSON.stringify(x)));
        } catch {
          // not JSON: a single tag
        }
      }
      return v === '' ? undefined : [v];
    }
    return [String(v)];
  }

  private usage(v: AttributeValue | undefined): number | undefined {
    if (v === undefined) return undefined;
    if (typeof v === 'number') {
      if (Number.isSafeInteger(v) && v >= 0) return v;
      this.onRepair('usage_invalid');
      return undefined;
    }
    if (typeof v === 'string' && /^[0-9]{1,15}$/.test(v.trim())) {
      this.onRepair('usage_coerced');
      return Number(v.trim());
    }
    this.onRepair('usage_invalid');
    return undefined;
  }

  private cost(v: AttributeValue | undefined): number | undefined {
    if (v === undefined) return undefined;
    if (typeof v === 'number') {
      if (Number.isFinite(v) && v >= 0) return v;
      this.onRepair('cost_invalid');
      return undefined;
    }
    if (typeof v === 'string' && v.trim() !== '') {
      const n = Number(v.trim());
      if (Number.isFinite(n) && n >= 0) {
        this.onRepair('cost_coerced');
        return n;
      }
    }
    this.onRepair('cost_invalid');
    return undefined;
  }

  private prompt(
    name: AttributeValue | undefined,
    version: AttributeValue | undefined,
    type: string,
  ): { name: string; version: number } | undefined {
    if (type !== 'generation') {
      this.onRepair('prompt_on_non_generation');
      return undefined;
    }
    if (typeof name !== 'string' || name === '' || version === undefined) {
      this.onRepair('prompt_incomplete');
      return undefined;
    }
    // Versions count from 1: Langfuse reads 0 as no version, and drops a generation with a prompt name but no version.
    if (typeof version === 'number' && Number.isSafeInteger(version) && version >= 1) return { name, version };
    const parsed = typeof version === 'string' && INTEGER_STRING.test(version.trim()) ? Number(version.trim()) : Number.NaN;
    if (Number.isSafeInteger(parsed) && parsed >= 1) {
      this.onRepair('prompt_version_coerced');
      return { name, version: parsed };
    }
    this.onRepair('prompt_version_invalid');
    return undefined;
  }
}

/**
 * Trace-level keys: copied onto every span of the trace (plus every `langfuse.trace.metadata.*`).
 * `translate` writes each to the trace's values as it sets it.
 */
export const TRACE_LEVEL_KEYS: readonly string[] = [LF.traceName, LF.traceTags, LF.userId, LF.sessionId, LF.release, LF.environment];
const TRACE_LEVEL_KEY_SET = new Set(TRACE_LEVEL_KEYS);

/** The observation type Langfuse will give the span (FACTS.md): explicit type, else inferred. */
function effectiveType(explicit: string | undefined, src: Attributes): string {
  if (explicit) return explicit;
  const op = src[ATTR.operationName];
  if (typeof op === 'string') {
    if (GENERATION_OPERATIONS.has(op)) return 'generation';
    if (op === 'embeddings') return 'embedding';
    if (op === 'invoke_agent' || op === 'create_agent') return 'agent';
    if (op === 'execute_tool') return 'tool';
  }
  if (src[ATTR.requestModel] !== undefined || src[ATTR.responseModel] !== undefined) return 'generation';
  return 'span';
}

/** The span with new attributes and without its events (they become child spans). */
function translatedSpan(span: EncodableSpanRecord, attributes: Attributes): EncodableSpanRecord {
  return {
    traceId: span.traceId,
    spanId: span.spanId,
    parentSpanId: span.parentSpanId,
    name: span.name,
    startTimeUnixNano: span.startTimeUnixNano,
    endTimeUnixNano: span.endTimeUnixNano,
    status: span.status,
    attributes,
  };
}

/** A span event as its own zero-length child observation of type `event`. */
function eventSpan(parent: EncodableSpanRecord, event: SpanEvent, index: number): EncodableSpanRecord {
  const attributes: Record<string, AttributeValue> = { [LF.observationType]: 'event' };
  const src = event.attributes;
  if (src) {
    for (const k in src) {
      const v = src[k];
      if (k === ATTR.input) attributes[LF.input] = toJsonString(v);
      else if (k === ATTR.output) attributes[LF.output] = toJsonString(v);
      else attributes[LF.observationMetadataPrefix + k] = v;
    }
  }
  return {
    traceId: parent.traceId,
    spanId: eventSpanId(parent.spanId, index),
    parentSpanId: parent.spanId,
    name: event.name,
    startTimeUnixNano: event.timeUnixNano,
    endTimeUnixNano: event.timeUnixNano,
    attributes,
  };
}
