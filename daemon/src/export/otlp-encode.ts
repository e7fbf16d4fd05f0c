/**
 * Spans → one OTLP ExportTraceServiceRequest (protobuf or OTLP/JSON). OTLP/JSON comes from the
 * official serializer of `@opentelemetry/otlp-transformer`; protobuf from our single-pass writer
 * (otlp-protobuf.ts), which writes the same bytes as that library's protobuf serializer — the
 * reference it is tested against (`serializeWithOtlpTransformer`) — at a fraction of the cost.
 *
 * The serializers take SDK `ReadableSpan`s; we hand them lightweight views over our span records
 * (one small object per span, methods on the prototype, no per-span closures). What they read,
 * from `otlp-transformer/build/esm/trace/{protobuf/trace-serializer,internal}.js`:
 * spanContext() {traceId, spanId, traceFlags, traceState?, isRemote?}, parentSpanContext?.spanId,
 * name, kind, startTime, endTime, attributes, droppedAttributesCount, events [{time, name,
 * attributes, droppedAttributesCount}], droppedEventsCount, links, droppedLinksCount,
 * status {code, message}, resource (grouped by identity, reads .attributes/.schemaUrl),
 * instrumentationScope (protobuf groups by identity, JSON by name@version; reads .attributes too).
 *
 * Numbers: the serializers write integers as intValue and everything else as doubleValue, so an
 * attribute keeps the type JavaScript gives it (12 → int, 0.7 → double).
 */
import { createRequire } from 'node:module';
import type { SpanKind, SpanStatusCode, Attributes as OtelAttributes, HrTime, SpanContext, SpanStatus as OtelSpanStatus } from '@opentelemetry/api';
import type { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import type { Resource as OtelResource } from '@opentelemetry/resources';
import type { Attributes, SpanEvent, SpanStatus } from '@dspy-o11y/proto';
import type { Resource, Scope } from '../model.js';
import { encodeTracesProtobuf, nsToHrTime } from './otlp-protobuf.js';

export { nsToHrTime };

/** The SDK span shape the serializers consume (derived, so no dependency on sdk-trace itself). */
type ReadableSpan = Parameters<typeof ProtobufTraceSerializer.serializeRequest>[0][number];
type TimedEvent = ReadableSpan['events'][number];
type InstrumentationScope = ReadableSpan['instrumentationScope'];

/** The parts of a span record the encoder reads; a `SpanRecord` is one. */
export interface EncodableSpanRecord {
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId?: string;
  readonly name: string;
  readonly startTimeUnixNano: string;
  readonly endTimeUnixNano: string;
  readonly status?: SpanStatus;
  readonly attributes?: Attributes;
  readonly events?: readonly SpanEvent[];
}

/** A span and the resource it came with; a `QueuedSpan` is one. */
export interface EncodableSpan {
  readonly span: EncodableSpanRecord;
  readonly resource: Resource;
}

export type OtlpEncoding = 'protobuf' | 'json';

export interface EncodeOptions {
  readonly encoding: OtlpEncoding;
  /** Instrumentation scope of every span (with `keepScopes`, of those without one). Never starts with `langfuse-sdk` (Langfuse treats those specially). */
  readonly scope: Scope;
  /** Instead, a span whose resource has a scope (OTLP ingest) goes under that one; never for Langfuse (DESIGN §6). */
  readonly keepScopes?: boolean;
}

/**
 * otlp-transformer and @opentelemetry/resources are loaded on first use: only the OTLP/JSON
 * encoding (console, file, `--otlp-encoding json`) and the tests need them, and each costs the
 * daemon and its export worker ~15 MB of RSS that the protobuf path would carry for nothing.
 */
const require = createRequire(import.meta.url);
let otel: { transformer: typeof import('@opentelemetry/otlp-transformer'); resources: typeof import('@opentelemetry/resources') } | undefined;
const loadOtel = () =>
  (otel ??= {
    transformer: require('@opentelemetry/otlp-transformer') as typeof import('@opentelemetry/otlp-transformer'),
    resources: require('@opentelemetry/resources') as typeof import('@opentelemetry/resources'),
  });

// The API's enum values (stable in the OTLP spec), without loading the API for them.
const SPAN_KIND_INTERNAL = 0 as SpanKind.INTERNAL;
const STATUS_CODE_UNSET = 0 as SpanStatusCode.UNSET;
const STATUS_CODE_OK = 1 as SpanStatusCode.OK;
const STATUS_CODE_ERROR = 2 as SpanStatusCode.ERROR;

// W3C trace flags: sampled.
const TRACE_FLAGS_SAMPLED = 1;
const NO_ATTRIBUTES: OtelAttributes = Object.freeze({}) as OtelAttributes;
const NO_EVENTS: TimedEvent[] = [];
const NO_LINKS: ReadableSpan['links'] = [];
const STATUS_UNSET: OtelSpanStatus = Object.freeze({ code: STATUS_CODE_UNSET });
const STATUS_OK: OtelSpanStatus = Object.freeze({ code: STATUS_CODE_OK });
const STATUS_ERROR: OtelSpanStatus = Object.freeze({ code: STATUS_CODE_ERROR });
function hrDiff(end: HrTime, start: HrTime): HrTime {
  let s = end[0] - start[0];
  let n = end[1] - start[1];
  if (n < 0) {
    s -= 1;
    n += 1_000_000_000;
  }
  return s < 0 ? [0, 0] : [s, n];
}

function toOtelStatus(status: SpanStatus | undefined): OtelSpanStatus {
  if (!status) return STATUS_UNSET;
  const code = status.code === 'error' ? STATUS_CODE_ERROR : status.code === 'ok' ? STATUS_CODE_OK : STATUS_CODE_UNSET;
  if (status.message) return { code, message: status.message };
  return code === STATUS_CODE_ERROR ? STATUS_ERROR : code === STATUS_CODE_OK ? STATUS_OK : STATUS_UNSET;
}

function toTimedEvents(events: readonly SpanEvent[] | undefined): TimedEvent[] {
  if (!events || events.length === 0) return NO_EVENTS;
  const out: TimedEvent[] = new Array(events.length);
  for (let i = 0; i < events.length; i++) {
    const e = events[i];
    out[i] = { time: nsToHrTime(e.timeUnixNano), name: e.name, attributes: e.attributes ?? NO_ATTRIBUTES, droppedAttributesCount: 0 };
  }
  return out;
}

// One OpenTelemetry Resource per daemon Resource (one per `hello`): the serializers group spans by
// resource identity, so the spans of one hello end up under one ResourceSpans.
const resources = new WeakMap<Resource, OtelResource>();

export function otelResourceOf(resource: Resource): OtelResource {
  let r = resources.get(resource);
  if (!r) {
    r = loadOtel().resources.resourceFromAttributes(resource.attributes);
    resources.set(resource, r);
  }
  return r;
}

// Scopes must be identical objects for the protobuf serializer to group spans under one ScopeSpans.
const scopes = new Map<string, InstrumentationScope>();

function scopeOf(name: string, version: string): InstrumentationScope {
  const key = `${name}@${version}`;
  let s = scopes.get(key);
  if (!s) {
    s = Object.freeze({ name, version });
    scopes.set(key, s);
  }
  return s;
}

/** A ReadableSpan view over one span record. */
class SpanView implements ReadableSpan {
  readonly name: string;
  readonly kind: SpanKind = SPAN_KIND_INTERNAL;
  readonly parentSpanContext: SpanContext | undefined;
  readonly startTime: HrTime;
  readonly endTime: HrTime;
  readonly status: OtelSpanStatus;
  readonly attributes: OtelAttributes;
  readonly links: ReadableSpan['links'] = NO_LINKS;
  readonly events: TimedEvent[];
  readonly ended = true;
  readonly resource: OtelResource;
  readonly instrumentationScope: InstrumentationScope;
  readonly droppedAttributesCount = 0;
  readonly droppedEventsCount = 0;
  readonly droppedLinksCount = 0;
  private readonly context: SpanContext;

  constructor(span: EncodableSpanRecord, resource: OtelResource, scope: InstrumentationScope) {
    this.name = span.name;
    this.context = { traceId: span.traceId, spanId: span.spanId, traceFlags: TRACE_FLAGS_SAMPLED };
    this.parentSpanContext = span.parentSpanId
      ? { traceId: span.traceId, spanId: span.parentSpanId, traceFlags: TRACE_FLAGS_SAMPLED, isRemote: false }
      : undefined;
    this.startTime = nsToHrTime(span.startTimeUnixNano);
    this.endTime = nsToHrTime(span.endTimeUnixNano);
    this.status = toOtelStatus(span.status);
    this.attributes = span.attributes ?? NO_ATTRIBUTES;
    this.events = toTimedEvents(span.events);
    this.resource = resource;
    this.instrumentationScope = scope;
  }

  spanContext(): SpanContext {
    return this.context;
  }

  /** Not read by the serializers: computed only if someone asks. */
  get duration(): HrTime {
    return hrDiff(this.endTime, this.startTime);
  }
}

/** Our spans as ReadableSpans (exported for tests and other serializers). */
export function toReadableSpans(spans: readonly EncodableSpan[], scope: Scope, keepScopes = false): ReadableSpan[] {
  const s = scopeOf(scope.name, scope.version);
  const out: ReadableSpan[] = new Array(spans.length);
  for (let i = 0; i < spans.length; i++) {
    const q = spans[i];
    // A resource's own scope is one object, shared by its spans: they are grouped under one ScopeSpans.
    out[i] = new SpanView(q.span, otelResourceOf(q.resource), (keepScopes && q.resource.scope) || s);
  }
  return out;
}

/** Encode spans as one ExportTraceServiceRequest body (not compressed). */
export function encodeTraces(spans: readonly EncodableSpan[], options: EncodeOptions): Uint8Array {
  if (options.encoding === 'protobuf') return encodeTracesProtobuf(spans, options.scope, options.keepScopes);
  return serializeWithOtlpTransformer(spans, options);
}

/** The same body through otlp-transformer's serializers (OTLP/JSON; the protobuf reference). */
export function serializeWithOtlpTransformer(spans: readonly EncodableSpan[], options: EncodeOptions): Uint8Array {
  const readable = toReadableSpans(spans, options.scope, options.keepScopes);
  const body =
    options.encoding === 'json'
      ? loadOtel().transformer.JsonTraceSerializer.serializeRequest(readable)
      : loadOtel().transformer.ProtobufTraceSerializer.serializeRequest(readable);
  if (!body) throw new Error(`the OTLP ${options.encoding} serializer produced no body`);
  return options.encoding === 'json' ? jsonInt64s(body) : body;
}

/** An `intValue` as otlp-transformer writes it: `{"intValue":<JSON number>}` (never inside a string, where quotes are escaped). */
const INT_VALUE = /\{"intValue":(-?[0-9][0-9.eE+-]*)\}/g;

/**
 * otlp-transformer writes every integral number as an `intValue` JSON number: 2^63 as
 * `9223372036854776000`, 1e21 as `1e+21`, which a Collector (protojson) refuses as int64, and with
 * it the whole batch. As in the protobuf encoding, an integer within int64 stays one (exact, as the
 * decimal string proto3 JSON gives int64), and one beyond is a double.
 */
function jsonInt64s(body: Uint8Array): Uint8Array {
  const text = Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8');
  let changed = false;
  const fixed = text.replace(INT_VALUE, (match, literal: string) => {
    const n = Number(literal);
    if (Number.isSafeInteger(n)) return match;
    changed = true;
    return n >= -(2 ** 63) && n < 2 ** 63 ? `{"intValue":"${BigInt(n)}"}` : `{"doubleValue":${literal}}`;
  });
  return changed ? Buffer.from(fixed, 'utf8') : body;
}
