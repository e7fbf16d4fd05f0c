/**
 * Decoding an OTLP/HTTP trace export (ExportTraceServiceRequest) from protobuf or OTLP/JSON into
 * one normalized, typed shape.
 *
 * Used by the tests' fake Langfuse (to see exactly what an exporter sent) and by the daemon's own
 * OTLP ingest (`POST /v1/traces`), so it is written for untrusted input: every malformed body
 * throws an {@link OtlpDecodeError} with a short message; nothing here can hang (all loops are
 * bounded by the input) and nesting is capped so a hostile body cannot blow the stack unnoticed.
 *
 * Normalized shape:
 * - ids are lowercase hex (trace 32, span 16 chars); an empty parent id becomes `undefined`. A
 *   span without a valid trace or span id, or with a parent id of the wrong length, makes the
 *   whole request invalid (that is what Langfuse and the OpenTelemetry Collector do);
 * - times are unix-epoch nanoseconds as decimal strings, exact (fixed64 is read as a Long);
 * - attributes stay `KeyValue[]` with the OTLP `AnyValue` kept typed (`int` vs `double`, …);
 *   {@link flattenAttributes} and {@link attributeTypes} turn them into plain records.
 */
import protobuf from 'protobufjs';

// ---------------------------------------------------------------------------------------------
// Types

export type AnyValueType = 'string' | 'bool' | 'int' | 'double' | 'array' | 'kvlist' | 'bytes' | 'empty';

export type AnyValue =
  | { readonly type: 'string'; readonly value: string }
  | { readonly type: 'bool'; readonly value: boolean }
  /** int64: a number when it is a safe integer, else an exact bigint. */
  | { readonly type: 'int'; readonly value: number | bigint }
  | { readonly type: 'double'; readonly value: number }
  | { readonly type: 'array'; readonly values: readonly AnyValue[] }
  | { readonly type: 'kvlist'; readonly values: readonly KeyValue[] }
  | { readonly type: 'bytes'; readonly value: Uint8Array }
  | { readonly type: 'empty' };

export interface KeyValue {
  readonly key: string;
  readonly value: AnyValue;
}

/** OTLP status codes: 0 unset, 1 ok, 2 error. */
export type StatusCode = 0 | 1 | 2;

export interface DecodedStatus {
  readonly code: StatusCode;
  /** `undefined` when empty. */
  readonly message?: string;
}

export interface DecodedEvent {
  readonly timeUnixNano: string;
  readonly name: string;
  readonly attributes: readonly KeyValue[];
  readonly droppedAttributesCount: number;
}

export interface DecodedLink {
  readonly traceId: string;
  readonly spanId: string;
  readonly traceState?: string;
  readonly attributes: readonly KeyValue[];
  readonly droppedAttributesCount: number;
  readonly flags: number;
}

export interface DecodedSpan {
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId?: string;
  readonly traceState?: string;
  readonly flags: number;
  readonly name: string;
  /** OTLP SpanKind: 0 unspecified, 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  readonly kind: number;
  readonly startTimeUnixNano: string;
  readonly endTimeUnixNano: string;
  readonly attributes: readonly KeyValue[];
  readonly droppedAttributesCount: number;
  readonly events: readonly DecodedEvent[];
  readonly droppedEventsCount: number;
  readonly links: readonly DecodedLink[];
  readonly droppedLinksCount: number;
  readonly status: DecodedStatus;
}

export interface DecodedScope {
  readonly name: string;
  readonly version: string;
  readonly attributes: readonly KeyValue[];
  readonly droppedAttributesCount: number;
}

export interface DecodedScopeSpans {
  readonly scope: DecodedScope;
  readonly spans: readonly DecodedSpan[];
  readonly schemaUrl?: string;
}

export interface DecodedResource {
  readonly attributes: readonly KeyValue[];
  readonly droppedAttributesCount: number;
}

export interface DecodedResourceSpans {
  readonly resource: DecodedResource;
  readonly scopeSpans: readonly DecodedScopeSpans[];
  readonly schemaUrl?: string;
}

export interface DecodedTraceRequest {
  readonly resourceSpans: readonly DecodedResourceSpans[];
}

export type OtlpEncoding = 'protobuf' | 'json';

export interface JsonDecodeOptions {
  /**
   * Reject proto field names (`resource_spans`, `trace_id`, …) instead of accepting them as
   * aliases. OTLP/JSON requires lowerCamelCase; Langfuse silently reads a snake_case body as
   * empty. Default false: the protobuf JSON mapping lets parsers accept both.
   */
  readonly strictFieldNames?: boolean;
}

/** Every decoding failure: the message says what is wrong and where, never echoes the body. */
export class OtlpDecodeError extends Error {
  override readonly name: string = 'OtlpDecodeError';
}

/**
 * A body that holds more than {@link MAX_REQUEST_ELEMENTS} messages: refused before it is
 * decoded (OTLP/HTTP answers 413), since each costs ~100 bytes of heap however few bytes it took.
 */
export class OtlpTooLargeError extends OtlpDecodeError {
  override readonly name: string = 'OtlpTooLargeError';
}

/**
 * Messages (resource and scope spans, spans, events, links, attributes and their values, …) or,
 * in OTLP/JSON, objects and arrays one request may hold. Decoded, each costs ~100 bytes of heap
 * while encoded it may take 2 bytes (an empty attribute `4a 00`), so without a cap a body within
 * the size limit could cost gigabytes and block the event loop for a minute. 1M is ~30 times an
 * OpenTelemetry Collector's default batch (8192 spans) of typical spans.
 */
export const MAX_REQUEST_ELEMENTS = 1_000_000;

/** AnyValue nesting (arrays / kvlists in arrays …) deeper than this is refused. */
export const MAX_ANY_VALUE_DEPTH = 32;

// ---------------------------------------------------------------------------------------------
// Protobuf

// The subset of opentelemetry-proto (common/v1, resource/v1, trace/v1, collector/trace/v1) this
// decoder reads. Field numbers and types are exactly those of opentelemetry-proto; fields left
// out (Resource.entity_refs, …) are skipped as unknown fields.
const OTLP_TRACE_PROTO = `
syntax = "proto3";
package opentelemetry.proto.common.v1;
message AnyValue {
  oneof value {
    string string_value = 1;
    bool bool_value = 2;
    int64 int_value = 3;
    double double_value = 4;
    ArrayValue array_value = 5;
    KeyValueList kvlist_value = 6;
    bytes bytes_value = 7;
  }
}
message ArrayValue { repeated AnyValue values = 1; }
message KeyValueList { repeated KeyValue values = 1; }
message KeyValue { string key = 1; AnyValue value = 2; }
message InstrumentationScope {
  string name = 1;
  string version = 2;
  repeated KeyValue attributes = 3;
  uint32 dropped_attributes_count = 4;
}
`;
const OTLP_RESOURCE_PROTO = `
syntax = "proto3";
package opentelemetry.proto.resource.v1;
message Resource {
  repeated opentelemetry.proto.common.v1.KeyValue attributes = 1;
  uint32 dropped_attributes_count = 2;
}
`;
const OTLP_TRACE_V1_PROTO = `
syntax = "proto3";
package opentelemetry.proto.trace.v1;
message ResourceSpans {
  opentelemetry.proto.resource.v1.Resource resource = 1;
  repeated ScopeSpans scope_spans = 2;
  string schema_url = 3;
}
message ScopeSpans {
  opentelemetry.proto.common.v1.InstrumentationScope scope = 1;
  repeated Span spans = 2;
  string schema_url = 3;
}
message Span {
  bytes trace_id = 1;
  bytes span_id = 2;
  string trace_state = 3;
  bytes parent_span_id = 4;
  fixed32 flags = 16;
  string name = 5;
  enum SpanKind {
    SPAN_KIND_UNSPECIFIED = 0;
    SPAN_KIND_INTERNAL = 1;
    SPAN_KIND_SERVER = 2;
    SPAN_KIND_CLIENT = 3;
    SPAN_KIND_PRODUCER = 4;
    SPAN_KIND_CONSUMER = 5;
  }
  SpanKind kind = 6;
  fixed64 start_time_unix_nano = 7;
  fixed64 end_time_unix_nano = 8;
  repeated opentelemetry.proto.common.v1.KeyValue attributes = 9;
  uint32 dropped_attributes_count = 10;
  message Event {
    fixed64 time_unix_nano = 1;
    string name = 2;
    repeated opentelemetry.proto.common.v1.KeyValue attributes = 3;
    uint32 dropped_attributes_count = 4;
  }
  repeated Event events = 11;
  uint32 dropped_events_count = 12;
  message Link {
    bytes trace_id = 1;
    bytes span_id = 2;
    string trace_state = 3;
    repeated opentelemetry.proto.common.v1.KeyValue attributes = 4;
    uint32 dropped_attributes_count = 5;
    fixed32 flags = 6;
  }
  repeated Link links = 13;
  uint32 dropped_links_count = 14;
  Status status = 15;
}
message Status {
  reserved 1;
  string message = 2;
  enum StatusCode {
    STATUS_CODE_UNSET = 0;
    STATUS_CODE_OK = 1;
    STATUS_CODE_ERROR = 2;
  }
  StatusCode code = 3;
}
`;
const OTLP_TRACE_SERVICE_PROTO = `
syntax = "proto3";
package opentelemetry.proto.collector.trace.v1;
message ExportTraceServiceRequest {
  repeated opentelemetry.proto.trace.v1.ResourceSpans resource_spans = 1;
}
`;

/** The raw protobufjs message shapes (camelCase, as protobufjs decodes them). */
interface LongLike {
  low: number;
  high: number;
  unsigned: boolean;
  toString(radix?: number): string;
  toNumber(): number;
}
type Int64 = number | LongLike;
interface PbAnyValue {
  value?: string;
  stringValue?: string;
  boolValue?: boolean;
  intValue?: Int64;
  doubleValue?: number;
  arrayValue?: { values?: PbAnyValue[] };
  kvlistValue?: { values?: PbKeyValue[] };
  bytesValue?: Uint8Array;
}
interface PbKeyValue {
  key?: string;
  value?: PbAnyValue | null;
}
interface PbEvent {
  timeUnixNano?: Int64;
  name?: string;
  attributes?: PbKeyValue[];
  droppedAttributesCount?: number;
}
interface PbLink {
  traceId?: Uint8Array;
  spanId?: Uint8Array;
  traceState?: string;
  attributes?: PbKeyValue[];
  droppedAttributesCount?: number;
  flags?: number;
}
interface PbSpan {
  traceId?: Uint8Array;
  spanId?: Uint8Array;
  traceState?: string;
  parentSpanId?: Uint8Array;
  flags?: number;
  name?: string;
  kind?: number;
  startTimeUnixNano?: Int64;
  endTimeUnixNano?: Int64;
  attributes?: PbKeyValue[];
  droppedAttributesCount?: number;
  events?: PbEvent[];
  droppedEventsCount?: number;
  links?: PbLink[];
  droppedLinksCount?: number;
  status?: { message?: string; code?: number } | null;
}
interface PbScopeSpans {
  scope?: { name?: string; version?: string; attributes?: PbKeyValue[]; droppedAttributesCount?: number } | null;
  spans?: PbSpan[];
  schemaUrl?: string;
}
interface PbResourceSpans {
  resource?: { attributes?: PbKeyValue[]; droppedAttributesCount?: number } | null;
  scopeSpans?: PbScopeSpans[];
  schemaUrl?: string;
}
interface PbRequest {
  resourceSpans?: PbResourceSpans[];
}

let requestType: protobuf.Type | undefined;

const EMPTY: AnyValue = Object.freeze({ type: 'empty' });

/** The ExportTraceServiceRequest protobufjs type, built once from the embedded definitions. */
export function exportTraceServiceRequestType(): protobuf.Type {
  if (requestType) return requestType;
  const root = new protobuf.Root();
  for (const source of [OTLP_TRACE_PROTO, OTLP_RESOURCE_PROTO, OTLP_TRACE_V1_PROTO, OTLP_TRACE_SERVICE_PROTO]) {
    protobuf.parse(source, root, { keepCase: false });
  }
  root.resolveAll();
  requestType = root.lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest');
  return requestType;
}

const HEX: string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

function bytesToHex(bytes: Uint8Array): string {
  let out = '';
  for (let i = 0; i < bytes.length; i++) out += HEX[bytes[i]];
  return out;
}

function pbId(bytes: Uint8Array | undefined, length: number, what: string, required: boolean): string | undefined {
  const n = bytes ? bytes.length : 0;
  if (n === 0) {
    if (required) throw new OtlpDecodeError(`${what} is missing`);
    return undefined;
  }
  if (n !== length) throw new OtlpDecodeError(`${what} must be ${length} bytes, got ${n}`);
  return bytesToHex(bytes as Uint8Array);
}

const TWO_32 = 4294967296n;

function isLong(v: Int64): v is LongLike {
  return typeof v === 'object' && v !== null && typeof v.low === 'number' && typeof v.high === 'number';
}

/** fixed64 → exact unsigned decimal string. */
function pbUnixNano(v: Int64 | undefined): string {
  if (v === undefined || v === null) return '0';
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) throw new OtlpDecodeError('a fixed64 time was not read exactly (protobufjs without Long support)');
    return String(v);
  }
  if (isLong(v)) {
    if (v.high === 0) return String(v.low >>> 0);
    return (BigInt(v.high >>> 0) * TWO_32 + BigInt(v.low >>> 0)).toString();
  }
  throw new OtlpDecodeError('invalid fixed64 time');
}

/** int64 → number when safe, else exact bigint. */
function pbInt64(v: Int64 | undefined): number | bigint {
  if (v === undefined || v === null) return 0;
  if (typeof v === 'number') return v;
  if (!isLong(v)) throw new OtlpDecodeError('invalid int64 value');
  const hi = v.high | 0;
  // -2^21 < hi < 2^21 keeps |value| below 2^53.
  if (hi >= -0x200000 && hi < 0x200000) return hi * 4294967296 + (v.low >>> 0);
  return (BigInt(hi) << 32n) + BigInt(v.low >>> 0);
}

function pbAnyValue(v: PbAnyValue | null | undefined, depth: number): AnyValue {
  if (!v) return EMPTY;
  switch (v.value) {
    case 'stringValue':
      return { type: 'string', value: v.stringValue ?? '' };
    case 'boolValue':
      return { type: 'bool', value: v.boolValue === true };
    case 'intValue':
      return { type: 'int', value: pbInt64(v.intValue) };
    case 'doubleValue':
      return { type: 'double', value: v.doubleValue ?? 0 };
    case 'arrayValue': {
      if (depth >= MAX_ANY_VALUE_DEPTH) throw new OtlpDecodeError(`attribute values nest deeper than ${MAX_ANY_VALUE_DEPTH}`);
      const src = v.arrayValue?.values ?? [];
      const values: AnyValue[] = new Array(src.length);
      for (let i = 0; i < src.length; i++) values[i] = pbAnyValue(src[i], depth + 1);
      return { type: 'array', values };
    }
    case 'kvlistValue': {
      if (depth >= MAX_ANY_VALUE_DEPTH) throw new OtlpDecodeError(`attribute values nest deeper than ${MAX_ANY_VALUE_DEPTH}`);
      return { type: 'kvlist', values: pbKeyValues(v.kvlistValue?.values, depth + 1) };
    }
    case 'bytesValue':
      return { type: 'bytes', value: Uint8Array.from(v.bytesValue ?? []) };
    default:
      return EMPTY;
  }
}

function pbKeyValues(kvs: PbKeyValue[] | undefined, depth: number): KeyValue[] {
  if (!kvs || kvs.length === 0) return [];
  const out: KeyValue[] = new Array(kvs.length);
  for (let i = 0; i < kvs.length; i++) {
    const kv = kvs[i];
    out[i] = { key: kv.key ?? '', value: pbAnyValue(kv.value, depth) };
  }
  return out;
}

function pbStatusCode(code: number | undefined): StatusCode {
  const c = code ?? 0;
  if (c === 0 || c === 1 || c === 2) return c;
  throw new OtlpDecodeError(`status.code must be 0, 1 or 2, got ${c}`);
}

function pbSpan(s: PbSpan): DecodedSpan {
  const traceId = pbId(s.traceId, 16, 'span.traceId', true) as string;
  const spanId = pbId(s.spanId, 8, 'span.spanId', true) as string;
  const parentSpanId = pbId(s.parentSpanId, 8, 'span.parentSpanId', false);
  const events: DecodedEvent[] = [];
  for (const e of s.events ?? []) {
    events.push({
      timeUnixNano: pbUnixNano(e.timeUnixNano),
      name: e.name ?? '',
      attributes: pbKeyValues(e.attributes, 0),
      droppedAttributesCount: e.droppedAttributesCount ?? 0,
    });
  }
  const links: DecodedLink[] = [];
  for (const l of s.links ?? []) {
    links.push({
      traceId: pbId(l.traceId, 16, 'link.traceId', true) as string,
      spanId: pbId(l.spanId, 8, 'link.spanId', true) as string,
      traceState: l.traceState || undefined,
      attributes: pbKeyValues(l.attributes, 0),
      droppedAttributesCount: l.droppedAttributesCount ?? 0,
      flags: l.flags ?? 0,
    });
  }
  return {
    traceId,
    spanId,
    parentSpanId,
    traceState: s.traceState || undefined,
    flags: s.flags ?? 0,
    name: s.name ?? '',
    kind: s.kind ?? 0,
    startTimeUnixNano: pbUnixNano(s.startTimeUnixNano),
    endTimeUnixNano: pbUnixNano(s.endTimeUnixNano),
    attributes: pbKeyValues(s.attributes, 0),
    droppedAttributesCount: s.droppedAttributesCount ?? 0,
    events,
    droppedEventsCount: s.droppedEventsCount ?? 0,
    links,
    droppedLinksCount: s.droppedLinksCount ?? 0,
    status: { code: pbStatusCode(s.status?.code), message: s.status?.message || undefined },
  };
}

// Wire-format check before protobufjs decodes: protobufjs reads a length or tag varint as its
// low 32 bits and skips a long varint's last 5 bytes unread (so a length of 2^32 + n is read as n,
// and a corrupt body decodes as something else), reads a known field by its declared type
// whatever its wire type, and allocates every message before we can count them.

interface WireField {
  readonly wireType: number;
  readonly message?: WireMessage;
}
type WireMessage = { readonly name: string; readonly fields: Map<number, WireField> };

let requestWire: WireMessage | undefined;

const SCALAR_WIRE_TYPES: Record<string, number> = {
  double: 1, fixed64: 1, sfixed64: 1,
  float: 5, fixed32: 5, sfixed32: 5,
  string: 2, bytes: 2,
  int32: 0, int64: 0, uint32: 0, uint64: 0, sint32: 0, sint64: 0, bool: 0,
};

function wireMessage(type: protobuf.Type, memo: Map<protobuf.Type, WireMessage>): WireMessage {
  const known = memo.get(type);
  if (known) return known;
  const fields = new Map<number, WireField>();
  const message: WireMessage = { name: type.name, fields };
  memo.set(type, message);
  for (const field of type.fieldsArray) {
    field.resolve();
    const rt = field.resolvedType;
    if (rt instanceof protobuf.Type) fields.set(field.id, { wireType: 2, message: wireMessage(rt, memo) });
    else if (rt instanceof protobuf.Enum) fields.set(field.id, { wireType: 0 });
    else fields.set(field.id, { wireType: SCALAR_WIRE_TYPES[field.type] ?? -1 });
  }
  return message;
}

/** Message nesting deeper than this is refused (protobufjs' and protoc's default recursion limit). */
const MAX_MESSAGE_DEPTH = 100;

class WireScanner {
  private pos = 0;
  elements = 0;

  constructor(private readonly buf: Uint8Array) {}

  /** A base-128 varint of at most 10 bytes; exact up to 2^53 (enough to compare with lengths). */
  private varint(): number {
    const buf = this.buf;
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= buf.length) throw new OtlpDecodeError(`malformed OTLP protobuf: truncated varint at offset ${this.pos}`);
      const b = buf[this.pos++]!;
      value += (b & 0x7f) * scale;
      if (b < 0x80) return value;
      scale *= 128;
    }
    throw new OtlpDecodeError(`malformed OTLP protobuf: varint longer than 10 bytes at offset ${this.pos}`);
  }

  private skip(n: number, end: number, what: string): void {
    if (n > end - this.pos) throw new OtlpDecodeError(`malformed OTLP protobuf: ${what} at offset ${this.pos} runs past the end of its message`);
    this.pos += n;
  }

  scan(message: WireMessage, end: number, depth: number): void {
    if (depth > MAX_MESSAGE_DEPTH) throw new OtlpDecodeError('malformed OTLP protobuf: maximum nesting depth exceeded');
    while (this.pos < end) {
      const at = this.pos;
      const tag = this.varint();
      if (this.pos > end) throw new OtlpDecodeError(`malformed OTLP protobuf: tag at offset ${at} runs past the end of its message`);
      const wireType = tag % 8;
      const fieldNumber = Math.floor(tag / 8);
      if (fieldNumber === 0 || fieldNumber > 0x1fffffff) throw new OtlpDecodeError(`malformed OTLP protobuf: invalid field number ${fieldNumber} at offset ${at}`);
      const field = message.fields.get(fieldNumber);
      if (field && field.wireType !== wireType) {
        throw new OtlpDecodeError(`malformed OTLP protobuf: ${message.name} field ${fieldNumber} has wire type ${wireType}, expected ${field.wireType} (offset ${at})`);
      }
      switch (wireType) {
        case 0: {
          const start = this.pos;
          this.varint();
          if (this.pos > end) throw new OtlpDecodeError(`malformed OTLP protobuf: varint at offset ${start} runs past the end of its message`);
          break;
        }
        case 1:
          this.skip(8, end, 'fixed64');
          break;
        case 5:
          this.skip(4, end, 'fixed32');
          break;
        case 2: {
          const length = this.varint();
          if (length > end - this.pos) throw new OtlpDecodeError(`malformed OTLP protobuf: length ${length} at offset ${at} runs past the end of its message`);
          if (field?.message) {
            if (++this.elements > MAX_REQUEST_ELEMENTS) {
              throw new OtlpTooLargeError(`request holds more than ${MAX_REQUEST_ELEMENTS} spans, attributes, values and other messages: send smaller batches`);
            }
            this.scan(field.message, this.pos + length, depth + 1);
          } else this.pos += length;
          break;
        }
        default:
          // 3/4 are proto2 groups (none in OTLP), 6/7 do not exist.
          throw new OtlpDecodeError(`malformed OTLP protobuf: invalid wire type ${wireType} at offset ${at}`);
      }
    }
  }
}

/**
 * Check a protobuf body's wire format strictly and count its messages, without allocating any.
 * Throws {@link OtlpDecodeError} (or {@link OtlpTooLargeError}).
 */
export function checkTraceRequestWire(body: Uint8Array): void {
  requestWire ??= wireMessage(exportTraceServiceRequestType(), new Map());
  new WireScanner(body).scan(requestWire, body.length, 0);
}

/** Decode a protobuf ExportTraceServiceRequest. Throws {@link OtlpDecodeError} when malformed. */
export function decodeTraceRequestProtobuf(body: Uint8Array): DecodedTraceRequest {
  checkTraceRequestWire(body);
  let raw: PbRequest;
  try {
    raw = exportTraceServiceRequestType().decode(body) as unknown as PbRequest;
  } catch (err) {
    throw new OtlpDecodeError(`malformed OTLP protobuf: ${(err as Error).message}`);
  }
  try {
    const resourceSpans: DecodedResourceSpans[] = [];
    for (const rs of raw.resourceSpans ?? []) {
      const scopeSpans: DecodedScopeSpans[] = [];
      for (const ss of rs.scopeSpans ?? []) {
        const spans: DecodedSpan[] = [];
        for (const s of ss.spans ?? []) spans.push(pbSpan(s));
        scopeSpans.push({
          scope: {
            name: ss.scope?.name ?? '',
            version: ss.scope?.version ?? '',
            attributes: pbKeyValues(ss.scope?.attributes, 0),
            droppedAttributesCount: ss.scope?.droppedAttributesCount ?? 0,
          },
          spans,
          schemaUrl: ss.schemaUrl || undefined,
        });
      }
      resourceSpans.push({
        resource: {
          attributes: pbKeyValues(rs.resource?.attributes, 0),
          droppedAttributesCount: rs.resource?.droppedAttributesCount ?? 0,
        },
        scopeSpans,
        schemaUrl: rs.schemaUrl || undefined,
      });
    }
    return { resourceSpans };
  } catch (err) {
    if (err instanceof OtlpDecodeError) throw err;
    throw new OtlpDecodeError(`malformed OTLP protobuf: ${(err as Error).message}`);
  }
}

// ---------------------------------------------------------------------------------------------
// OTLP/JSON

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonObject = { [k: string]: Json };

class JsonReader {
  constructor(private readonly strict: boolean) {}

  /** Read `camel` (or its snake_case alias, unless strict) from an object. */
  field(obj: JsonObject, camel: string, snake: string | undefined, where: string): Json | undefined {
    const v = obj[camel];
    if (snake !== undefined && Object.prototype.hasOwnProperty.call(obj, snake)) {
      if (this.strict) throw new OtlpDecodeError(`${where}: OTLP/JSON field names are lowerCamelCase: got "${snake}", expected "${camel}"`);
      if (v === undefined) return obj[snake];
    }
    return v;
  }

  object(v: Json | undefined, where: string): JsonObject | undefined {
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'object' || Array.isArray(v)) throw new OtlpDecodeError(`${where} must be an object`);
    return v;
  }

  array(v: Json | undefined, where: string): Json[] {
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v)) throw new OtlpDecodeError(`${where} must be an array`);
    return v;
  }

  string(v: Json | undefined, where: string): string {
    if (v === undefined || v === null) return '';
    if (typeof v !== 'string') throw new OtlpDecodeError(`${where} must be a string`);
    return v;
  }

  uint(v: Json | undefined, where: string): number {
    if (v === undefined || v === null) return 0;
    const n = typeof v === 'string' && /^[0-9]{1,10}$/.test(v) ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new OtlpDecodeError(`${where} must be a uint32`);
    return n;
  }

  enumValue(v: Json | undefined, names: readonly string[], where: string): number {
    if (v === undefined || v === null) return 0;
    if (typeof v === 'string') {
      const i = names.indexOf(v);
      if (i >= 0) return i;
    }
    if (typeof v === 'number' && Number.isInteger(v) && v >= 0) return v;
    throw new OtlpDecodeError(`${where} must be an enum value`);
  }

  /** fixed64 time: decimal string or JSON number → canonical decimal string. */
  unixNano(v: Json | undefined, where: string): string {
    if (v === undefined || v === null) return '0';
    if (typeof v === 'string') {
      if (!/^[0-9]{1,20}$/.test(v)) throw new OtlpDecodeError(`${where} must be unix nanoseconds (a decimal string)`);
      const b = BigInt(v);
      if (b >= 1n << 64n) throw new OtlpDecodeError(`${where} does not fit in 64 bits`);
      return b.toString();
    }
    if (typeof v === 'number' && Number.isInteger(v) && v >= 0) {
      if (v >= 2 ** 64) throw new OtlpDecodeError(`${where} does not fit in 64 bits`);
      return BigInt(v).toString();
    }
    throw new OtlpDecodeError(`${where} must be unix nanoseconds (a decimal string)`);
  }

  int64(v: Json | undefined, where: string): number | bigint {
    if (typeof v === 'number' && Number.isInteger(v)) {
      if (Number.isSafeInteger(v)) return v;
      // Beyond ±2^53 the exact value as a bigint, as the protobuf path gives it.
      if (v >= -(2 ** 63) && v < 2 ** 63) return BigInt(v);
      throw new OtlpDecodeError(`${where} does not fit in int64`);
    }
    if (typeof v === 'string' && /^-?[0-9]{1,20}$/.test(v)) {
      const b = BigInt(v);
      if (b < -(1n << 63n) || b >= 1n << 63n) throw new OtlpDecodeError(`${where} does not fit in int64`);
      const n = Number(b);
      return Number.isSafeInteger(n) ? n : b;
    }
    throw new OtlpDecodeError(`${where} must be an int64 (integer or decimal string)`);
  }

  id(v: Json | undefined, length: number, where: string, required: boolean): string | undefined {
    if (v === undefined || v === null || v === '') {
      if (required) throw new OtlpDecodeError(`${where} is missing`);
      return undefined;
    }
    if (typeof v !== 'string' || v.length !== length || !/^[0-9a-fA-F]+$/.test(v)) {
      throw new OtlpDecodeError(`${where} must be ${length} hex characters`);
    }
    return v.toLowerCase();
  }

  anyValue(v: Json | undefined, where: string, depth: number): AnyValue {
    const o = this.object(v, where);
    if (!o) return EMPTY;
    // proto3 JSON: a null member is an absent one. The official JS exporter writes NaN and
    // ±Infinity as `doubleValue: null` (JSON.stringify): refusing it cost the whole batch.
    const member = (camel: string, snake: string) => this.field(o, camel, snake, where) ?? undefined;
    let x = member('stringValue', 'string_value');
    if (x !== undefined) return { type: 'string', value: this.string(x, `${where}.stringValue`) };
    x = member('boolValue', 'bool_value');
    if (x !== undefined) {
      if (typeof x !== 'boolean') throw new OtlpDecodeError(`${where}.boolValue must be a boolean`);
      return { type: 'bool', value: x };
    }
    x = member('intValue', 'int_value');
    if (x !== undefined) {
      // The official JS JSON exporter writes every integral number, 1e300 too, as intValue; its
      // protobuf exporter writes one beyond int64 as a double: so do we, not refuse the request.
      if (typeof x === 'number' && Number.isInteger(x) && (x < -(2 ** 63) || x >= 2 ** 63)) return { type: 'double', value: x };
      return { type: 'int', value: this.int64(x, `${where}.intValue`) };
    }
    x = member('doubleValue', 'double_value');
    if (x !== undefined) {
      if (typeof x === 'number') return { type: 'double', value: x };
      if (x === 'NaN' || x === 'Infinity' || x === '-Infinity') return { type: 'double', value: Number(x) };
      if (typeof x === 'string' && x.trim() !== '' && Number.isFinite(Number(x))) return { type: 'double', value: Number(x) };
      throw new OtlpDecodeError(`${where}.doubleValue must be a number`);
    }
    x = member('arrayValue', 'array_value');
    if (x !== undefined) {
      if (depth >= MAX_ANY_VALUE_DEPTH) throw new OtlpDecodeError(`${where}: attribute values nest deeper than ${MAX_ANY_VALUE_DEPTH}`);
      const arr = this.object(x, `${where}.arrayValue`);
      const src = arr ? this.array(arr.values, `${where}.arrayValue.values`) : [];
      const values: AnyValue[] = new Array(src.length);
      for (let i = 0; i < src.length; i++) values[i] = this.anyValue(src[i], `${where}.arrayValue.values[${i}]`, depth + 1);
      return { type: 'array', values };
    }
    x = member('kvlistValue', 'kvlist_value');
    if (x !== undefined) {
      if (depth >= MAX_ANY_VALUE_DEPTH) throw new OtlpDecodeError(`${where}: attribute values nest deeper than ${MAX_ANY_VALUE_DEPTH}`);
      const kvl = this.object(x, `${where}.kvlistValue`);
      return { type: 'kvlist', values: this.keyValues(kvl?.values, `${where}.kvlistValue.values`, depth + 1) };
    }
    x = member('bytesValue', 'bytes_value');
    if (x !== undefined) {
      const s = this.string(x, `${where}.bytesValue`);
      if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(s)) throw new OtlpDecodeError(`${where}.bytesValue must be base64`);
      return { type: 'bytes', value: new Uint8Array(Buffer.from(s, 'base64')) };
    }
    return EMPTY;
  }

  keyValues(v: Json | undefined, where: string, depth: number): KeyValue[] {
    const arr = this.array(v, where);
    const out: KeyValue[] = new Array(arr.length);
    for (let i = 0; i < arr.length; i++) {
      const w = `${where}[${i}]`;
      const kv = this.object(arr[i], w);
      if (!kv) throw new OtlpDecodeError(`${w} must be an object`);
      out[i] = { key: this.string(kv.key, `${w}.key`), value: this.anyValue(kv.value, `${w}.value`, depth) };
    }
    return out;
  }

  span(v: Json, where: string): DecodedSpan {
    const s = this.object(v, where);
    if (!s) throw new OtlpDecodeError(`${where} must be an object`);
    const f = (camel: string, snake?: string) => this.field(s, camel, snake, where);
    const traceId = this.id(f('traceId', 'trace_id'), 32, `${where}.traceId`, true) as string;
    const spanId = this.id(f('spanId', 'span_id'), 16, `${where}.spanId`, true) as string;
    const parentSpanId = this.id(f('parentSpanId', 'parent_span_id'), 16, `${where}.parentSpanId`, false);
    const events: DecodedEvent[] = [];
    const rawEvents = this.array(f('events'), `${where}.events`);
    for (let i = 0; i < rawEvents.length; i++) {
      const w = `${where}.events[${i}]`;
      const e = this.object(rawEvents[i], w);
      if (!e) throw new OtlpDecodeError(`${w} must be an object`);
      events.push({
        timeUnixNano: this.unixNano(this.field(e, 'timeUnixNano', 'time_unix_nano', w), `${w}.timeUnixNano`),
        name: this.string(e.name, `${w}.name`),
        attributes: this.keyValues(e.attributes, `${w}.attributes`, 0),
        droppedAttributesCount: this.uint(this.field(e, 'droppedAttributesCount', 'dropped_attributes_count', w), `${w}.droppedAttributesCount`),
      });
    }
    const links: DecodedLink[] = [];
    const rawLinks = this.array(f('links'), `${where}.links`);
    for (let i = 0; i < rawLinks.length; i++) {
      const w = `${where}.links[${i}]`;
      const l = this.object(rawLinks[i], w);
      if (!l) throw new OtlpDecodeError(`${w} must be an object`);
      links.push({
        traceId: this.id(this.field(l, 'traceId', 'trace_id', w), 32, `${w}.traceId`, true) as string,
        spanId: this.id(this.field(l, 'spanId', 'span_id', w), 16, `${w}.spanId`, true) as string,
        traceState: this.string(this.field(l, 'traceState', 'trace_state', w), `${w}.traceState`) || undefined,
        attributes: this.keyValues(l.attributes, `${w}.attributes`, 0),
        droppedAttributesCount: this.uint(this.field(l, 'droppedAttributesCount', 'dropped_attributes_count', w), `${w}.droppedAttributesCount`),
        flags: this.uint(l.flags, `${w}.flags`),
      });
    }
    const status = this.object(f('status'), `${where}.status`);
    const code = status ? this.enumValue(status.code, ['STATUS_CODE_UNSET', 'STATUS_CODE_OK', 'STATUS_CODE_ERROR'], `${where}.status.code`) : 0;
    if (code > 2) throw new OtlpDecodeError(`${where}.status.code must be 0, 1 or 2`);
    return {
      traceId,
      spanId,
      parentSpanId,
      traceState: this.string(f('traceState', 'trace_state'), `${where}.traceState`) || undefined,
      flags: this.uint(f('flags'), `${where}.flags`),
      name: this.string(f('name'), `${where}.name`),
      kind: this.enumValue(
        f('kind'),
        ['SPAN_KIND_UNSPECIFIED', 'SPAN_KIND_INTERNAL', 'SPAN_KIND_SERVER', 'SPAN_KIND_CLIENT', 'SPAN_KIND_PRODUCER', 'SPAN_KIND_CONSUMER'],
        `${where}.kind`,
      ),
      startTimeUnixNano: this.unixNano(f('startTimeUnixNano', 'start_time_unix_nano'), `${where}.startTimeUnixNano`),
      endTimeUnixNano: this.unixNano(f('endTimeUnixNano', 'end_time_unix_nano'), `${where}.endTimeUnixNano`),
      attributes: this.keyValues(f('attributes'), `${where}.attributes`, 0),
      droppedAttributesCount: this.uint(f('droppedAttributesCount', 'dropped_attributes_count'), `${where}.droppedAttributesCount`),
      events,
      droppedEventsCount: this.uint(f('droppedEventsCount', 'dropped_events_count'), `${where}.droppedEventsCount`),
      links,
      droppedLinksCount: this.uint(f('droppedLinksCount', 'dropped_links_count'), `${where}.droppedLinksCount`),
      status: {
        code: code as StatusCode,
        message: (status && this.string(status.message, `${where}.status.message`)) || undefined,
      },
    };
  }

  request(root: Json): DecodedTraceRequest {
    if (typeof root !== 'object' || root === null || Array.isArray(root)) throw new OtlpDecodeError('an OTLP/JSON request must be a JSON object');
    const req = root;
    const resourceSpans: DecodedResourceSpans[] = [];
    const rawRs = this.array(this.field(req, 'resourceSpans', 'resource_spans', 'request'), 'resourceSpans');
    for (let r = 0; r < rawRs.length; r++) {
      const rw = `resourceSpans[${r}]`;
      const rs = this.object(rawRs[r], rw);
      if (!rs) throw new OtlpDecodeError(`${rw} must be an object`);
      const res = this.object(rs.resource, `${rw}.resource`);
      const scopeSpans: DecodedScopeSpans[] = [];
      const rawSs = this.array(this.field(rs, 'scopeSpans', 'scope_spans', rw), `${rw}.scopeSpans`);
      for (let i = 0; i < rawSs.length; i++) {
        const sw = `${rw}.scopeSpans[${i}]`;
        const ss = this.object(rawSs[i], sw);
        if (!ss) throw new OtlpDecodeError(`${sw} must be an object`);
        const scope = this.object(ss.scope, `${sw}.scope`);
        const rawSpans = this.array(ss.spans, `${sw}.spans`);
        const spans: DecodedSpan[] = new Array(rawSpans.length);
        for (let j = 0; j < rawSpans.length; j++) spans[j] = this.span(rawSpans[j], `${sw}.spans[${j}]`);
        scopeSpans.push({
          scope: {
            name: scope ? this.string(scope.name, `${sw}.scope.name`) : '',
            version: scope ? this.string(scope.version, `${sw}.scope.version`) : '',
            attributes: scope ? this.keyValues(scope.attributes, `${sw}.scope.attributes`, 0) : [],
            droppedAttributesCount: scope
              ? this.uint(this.field(scope, 'droppedAttributesCount', 'dropped_attributes_count', sw), `${sw}.scope.droppedAttributesCount`)
              : 0,
          },
          spans,
          schemaUrl: this.string(this.field(ss, 'schemaUrl', 'schema_url', sw), `${sw}.schemaUrl`) || undefined,
        });
      }
      resourceSpans.push({
        resource: {
          attributes: res ? this.keyValues(res.attributes, `${rw}.resource.attributes`, 0) : [],
          droppedAttributesCount: res
            ? this.uint(this.field(res, 'droppedAttributesCount', 'dropped_attributes_count', rw), `${rw}.resource.droppedAttributesCount`)
            : 0,
        },
        scopeSpans,
        schemaUrl: this.string(this.field(rs, 'schemaUrl', 'schema_url', rw), `${rw}.schemaUrl`) || undefined,
      });
    }
    return { resourceSpans };
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const OPEN_BRACKET = 0x5b;

/**
 * Objects and arrays in a JSON text (`{` and `[` outside strings), counted before JSON.parse
 * allocates them: `{},` takes 3 bytes and costs ~100 once parsed and decoded. Throws
 * {@link OtlpTooLargeError} past {@link MAX_REQUEST_ELEMENTS}.
 */
function checkJsonElements(text: string): void {
  let elements = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
    } else if (c === QUOTE) inString = true;
    else if ((c === OPEN_BRACE || c === OPEN_BRACKET) && ++elements > MAX_REQUEST_ELEMENTS) {
      throw new OtlpTooLargeError(`request holds more than ${MAX_REQUEST_ELEMENTS} JSON objects and arrays: send smaller batches`);
    }
  }
}

/**
 * Decode an OTLP/JSON ExportTraceServiceRequest from its bytes, its text or an already parsed
 * value. Throws {@link OtlpDecodeError} when malformed.
 */
export function decodeTraceRequestJson(body: unknown, options: JsonDecodeOptions = {}): DecodedTraceRequest {
  let value: unknown = body;
  if (body instanceof Uint8Array || typeof body === 'string') {
    let text: string;
    try {
      text = typeof body === 'string' ? body : utf8.decode(body);
    } catch {
      throw new OtlpDecodeError('OTLP/JSON body is not valid UTF-8');
    }
    checkJsonElements(text);
    try {
      value = JSON.parse(text);
    } catch (err) {
      throw new OtlpDecodeError(`OTLP/JSON body is not JSON: ${(err as Error).message}`);
    }
  }
  try {
    return new JsonReader(options.strictFieldNames === true).request(value as Json);
  } catch (err) {
    if (err instanceof OtlpDecodeError) throw err;
    // e.g. a RangeError from a pathological structure: still a clear, typed error.
    throw new OtlpDecodeError(`malformed OTLP/JSON: ${(err as Error).message}`);
  }
}

// In its own module so that routes can tell the encoding without loading protobufjs.
export { encodingOfContentType } from './content-type.js';

/** Decode a (decompressed) body in the given encoding. */
export function decodeTraceRequest(body: Uint8Array, encoding: OtlpEncoding, options: JsonDecodeOptions = {}): DecodedTraceRequest {
  return encoding === 'json' ? decodeTraceRequestJson(body, options) : decodeTraceRequestProtobuf(body);
}

// ---------------------------------------------------------------------------------------------
// Helpers

/** Number of spans in a decoded request. */
export function countSpans(request: DecodedTraceRequest): number {
  let n = 0;
  for (const rs of request.resourceSpans) for (const ss of rs.scopeSpans) n += ss.spans.length;
  return n;
}

export type FlatValue = string | number | boolean | null | readonly FlatValue[] | { readonly [key: string]: FlatValue };

/**
 * An AnyValue as a plain value: ints beyond ±2^53 become decimal strings (exact), bytes base64,
 * kvlists objects, empty values `null`.
 */
export function anyValueToFlat(v: AnyValue): FlatValue {
  switch (v.type) {
    case 'string':
    case 'bool':
    case 'double':
      return v.value;
    case 'int':
      return typeof v.value === 'bigint' ? v.value.toString() : v.value;
    case 'array':
      return v.values.map(anyValueToFlat);
    case 'kvlist':
      return flattenAttributes(v.values);
    case 'bytes':
      return Buffer.from(v.value).toString('base64');
    case 'empty':
      return null;
  }
}

/** `KeyValue[]` → `{ key: plain value }` (the last one wins on duplicate keys). */
export function flattenAttributes(kvs: readonly KeyValue[]): Record<string, FlatValue> {
  const out: Record<string, FlatValue> = {};
  for (const kv of kvs) {
    // An own property: assigning `__proto__` would replace the object's prototype and lose the value.
    if (kv.key === '__proto__') Object.defineProperty(out, kv.key, { value: anyValueToFlat(kv.value), enumerable: true, writable: true, configurable: true });
    else out[kv.key] = anyValueToFlat(kv.value);
  }
  return out;
}

/** `KeyValue[]` → `{ key: OTLP value type }`, e.g. to assert `int` vs `double`. */
export function attributeTypes(kvs: readonly KeyValue[]): Record<string, AnyValueType> {
  const out: Record<string, AnyValueType> = {};
  for (const kv of kvs) out[kv.key] = kv.value.type;
  return out;
}

/** The OTLP type of one attribute, `undefined` when absent. */
export function attributeType(kvs: readonly KeyValue[], key: string): AnyValueType | undefined {
  let t: AnyValueType | undefined;
  for (const kv of kvs) if (kv.key === key) t = kv.value.type;
  return t;
}

/** For an array attribute: the OTLP types of its elements (e.g. `['string','string']`). */
export function arrayElementTypes(v: AnyValue): AnyValueType[] {
  return v.type === 'array' ? v.values.map((x) => x.type) : [];
}
