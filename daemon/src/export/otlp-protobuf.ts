/**
 * Span records → one OTLP ExportTraceServiceRequest in protobuf, in a single pass.
 *
 * Why not otlp-transformer's `ProtobufTraceSerializer` here: it is the daemon's reference (the
 * tests compare our bytes with its bytes, span shape by span shape) and it still encodes OTLP/JSON,
 * but on the hot path it cost ~7 µs per benchmark span (this writer ~2.7; scripts/bench-stages.ts):
 * it serializes every batch twice (a size-estimating pass, then the real one), copies strings into
 * the buffer one character at a time and allocates per id. This writer makes one pass into a
 * growing Buffer, copies short ASCII strings in JS and the rest with Buffer's UTF-8 writer, and
 * computes the length prefix of a string-valued attribute up front instead of shifting bytes.
 * Short string attributes that recur (most of a telemetry span's) are copied as whole encoded
 * KeyValues from a small bounded cache (SDK benchmark spans: ~4.1 → ~3.2 µs per span).
 *
 * Byte for byte what `ProtobufTraceSerializer.serializeRequest(toReadableSpans(spans))` writes:
 * the same field order, the same always-written zero counts, minimal varints, span flags 0x101.
 */
import type { AttributeValue, Attributes } from '@dspy-o11y/proto';
import { writeUtf8 } from '@dspy-o11y/proto/bytes';
import type { Resource } from '../model.js';
import type { EncodableSpan, EncodableSpanRecord, EncodeOptions } from './otlp-encode.js';

// Wire types.
const VARINT = 0;
const FIXED64 = 1;
const LEN = 2;
const FIXED32 = 5;

const NO_EVENTS: readonly never[] = [];

const tag = (field: number, wire: number) => (field << 3) | wire;

// Span.kind: the SDK's INTERNAL (0) + 1, as otlp-transformer writes it.
const SPAN_KIND_INTERNAL = 1;
// Span.flags: sampled (0x01) | "has is_remote" (0x100); our parents are never remote.
const SPAN_FLAGS = 0x101;
const STATUS_CODE = { unset: 0, ok: 1, error: 2 } as const;
const MIN_INT64 = -(2 ** 63);
const MAX_INT64 = 2 ** 63;
// A string of at most this many UTF-16 units is at most 126 UTF-8 bytes: a one-byte length.
const SHORT_STRING = 42;

const utf8Write = (b: Buffer, s: string, at: number): number => writeUtf8(b, s, at, b.length - at);

/** A hex digit's value (0 for anything that is not one), as otlp-transformer's hexToBinary for valid ids. */
const nibble = (c: number) => (c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : c >= 65 && c <= 70 ? c - 55 : 0);

/**
 * Unix-ns decimal string (1 to 20 digits) → exact [seconds, nanoseconds] (OpenTelemetry's HrTime):
 * the last 9 digits are the nanoseconds, the rest (at most 11 digits, exact in a double) the
 * seconds, without allocating a bigint. One pass over the digits validates and parses (twice per
 * span: a regex test, two slices and two Number() calls cost more). Anything that is not a
 * decimal string (the daemon validates times at ingest) becomes [0, 0].
 */
export function nsToHrTime(ns: string): [number, number] {
  if (typeof ns !== 'string') return [0, 0];
  const len = ns.length;
  if (len === 0 || len > 20) return [0, 0];
  const split = len - 9;
  let seconds = 0;
  let nanos = 0;
  for (let i = 0; i < len; i++) {
    const digit = ns.charCodeAt(i) - 48;
    if (digit < 0 || digit > 9) return [0, 0];
    if (i < split) seconds = seconds * 10 + digit;
    else nanos = nanos * 10 + digit;
  }
  return [seconds, nanos];
}

const varintSize = (v: number) => (v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : v < 0x10000000 ? 4 : 5);
const utf8Length = (s: string) => (s.length <= SHORT_STRING ? -1 : Buffer.byteLength(s, 'utf8'));

/** A protobuf writer over a growing Buffer; lengths of nested messages are back-patched. */
class Writer {
  buf: Buffer;
  pos = 0;

  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size);
  }

  ensure(bytes: number): void {
    if (this.pos + bytes <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + bytes) size *= 2;
    const bigger = Buffer.allocUnsafe(size);
    this.buf.copy(bigger, 0, 0, this.pos);
    this.buf = bigger;
  }

  /** An unsigned varint below 2^32 (tags, lengths, counts). */
  uint32(v: number): void {
    this.ensure(5);
    const b = this.buf;
    while (v > 0x7f) {
      b[this.pos++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    b[this.pos++] = v;
  }

  /** An int64 varint from a JS integer (negatives as 10-byte two's complement). */
  int64(value: number): void {
    if (value >= 0 && value <= 0xffffffff) return this.uint32(value);
    let low: number;
    let high: number;
    const abs = Math.abs(value);
    low = abs >>> 0;
    high = (abs / 0x100000000) >>> 0;
    if (value < 0) {
      low = ~low >>> 0;
      high = ~high >>> 0;
      low = (low + 1) >>> 0;
      if (low === 0) high = (high + 1) >>> 0;
    }
    this.ensure(10);
    const b = this.buf;
    while (high > 0 || low > 0x7f) {
      b[this.pos++] = (low & 0x7f) | 0x80;
      low = ((low >>> 7) | (high << 25)) >>> 0;
      high >>>= 7;
    }
    b[this.pos++] = low & 0x7f;
  }

  fixed32(v: number): void {
    this.ensure(4);
    this.buf.writeUInt32LE(v >>> 0, this.pos);
    this.pos += 4;
  }

  fixed64(low: number, high: number): void {
    this.ensure(8);
    this.buf.writeUInt32LE(low >>> 0, this.pos);
    this.buf.writeUInt32LE(high >>> 0, this.pos + 4);
    this.pos += 8;
  }

  double(v: number): void {
    this.ensure(8);
    this.buf.writeDoubleLE(v, this.pos);
    this.pos += 8;
  }

  /** A length-prefixed UTF-8 string; `bytes` is its UTF-8 length, or -1 when it is short. */
  string(s: string, bytes = utf8Length(s)): void {
    if (bytes < 0) {
      // At most 126 bytes: reserve one length byte, copy ASCII in JS (cheaper than a native call
      // for a few characters), hand anything else to Buffer's UTF-8 writer; then fill the length in.
      this.ensure(1 + 3 * s.length);
      const b = this.buf;
      const at = this.pos++;
      let p = this.pos;
      for (let i = 0; i < s.length; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) {
          p = this.pos + utf8Write(b, s, this.pos);
          break;
        }
        b[p++] = c;
      }
      b[at] = p - this.pos;
      this.pos = p;
      return;
    }
    this.uint32(bytes);
    this.ensure(bytes);
    this.pos += utf8Write(this.buf, s, this.pos);
  }

  /** Hex id → its bytes, length-prefixed (ids are validated lowercase hex at ingest; anything else → zero nibbles). */
  hexBytes(hex: string): void {
    const n = hex.length >>> 1;
    this.ensure(1 + n);
    const b = this.buf;
    b[this.pos++] = n;
    // 8 or 16 bytes: a JS loop costs less than a call into Buffer's hex writer.
    for (let i = 0; i < n; i++) b[this.pos++] = (nibble(hex.charCodeAt(2 * i)) << 4) | nibble(hex.charCodeAt(2 * i + 1));
  }

  /** Starts a nested message: reserves `reserve` bytes for its length; returns where they are. */
  begin(reserve = 1): number {
    this.ensure(reserve);
    const at = this.pos;
    this.pos += reserve;
    return at;
  }

  /** Ends the message begun at `at`: writes its minimal length varint, moving the body if needed. */
  end(at: number, reserve = 1): void {
    const len = this.pos - at - reserve;
    const size = varintSize(len);
    if (size !== reserve) {
      this.ensure(size - reserve);
      this.buf.copy(this.buf, at + size, at + reserve, this.pos);
      this.pos += size - reserve;
    }
    let p = at;
    let v = len;
    while (v > 0x7f) {
      this.buf[p++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    this.buf[p] = v;
  }

  /** Unix-ns decimal string → fixed64, exactly (split at 10^9, no bigint); malformed → 0. */
  unixNano(ns: string): void {
    const [seconds, nanos] = nsToHrTime(ns);
    // seconds * 10^9 + nanos as two 32-bit halves without losing bits above 2^53.
    const lower = (seconds & 0xffff) * 1_000_000_000;
    const upper = ((seconds / 0x10000) >>> 0) * 1_000_000_000;
    const lowSum = (lower >>> 0) + (((upper & 0xffff) * 0x10000) >>> 0) + nanos;
    const high = Math.floor(lower / 0x100000000) + ((upper / 0x10000) >>> 0) + Math.floor(lowSum / 0x100000000);
    this.fixed64(lowSum >>> 0, high >>> 0);
  }
}

function writeAnyValue(w: Writer, value: unknown): void {
  switch (typeof value) {
    case 'string':
      w.uint32(tag(1, LEN));
      w.string(value);
      return;
    case 'boolean':
      w.uint32(tag(2, VARINT));
      w.uint32(value ? 1 : 0);
      return;
    case 'number':
      if (Number.isInteger(value) && value >= MIN_INT64 && value < MAX_INT64) {
        w.uint32(tag(3, VARINT));
        w.int64(value);
      } else {
        w.uint32(tag(4, FIXED64));
        w.double(value);
      }
      return;
    case 'object':
      if (value === null) return;
      if (Array.isArray(value)) {
        w.uint32(tag(5, LEN));
        const list = w.begin();
        for (const item of value as unknown[]) {
          w.uint32(tag(1, LEN));
          const at = w.begin();
          writeAnyValue(w, item);
          w.end(at);
        }
        w.end(list);
        return;
      }
      if (value instanceof Uint8Array) {
        w.uint32(tag(7, LEN));
        w.uint32(value.length);
        w.ensure(value.length);
        w.buf.set(value, w.pos);
        w.pos += value.length;
        return;
      }
      w.uint32(tag(6, LEN));
      {
        const list = w.begin();
        for (const key in value) {
          if (!Object.hasOwn(value, key)) continue;
          w.uint32(tag(1, LEN));
          const kv = w.begin();
          writeKeyValueBody(w, key, (value as Record<string, unknown>)[key]);
          w.end(kv);
        }
        w.end(list);
      }
      return;
    default:
      return; // undefined, functions…: an empty AnyValue, as otlp-transformer writes
  }
}

function writeKeyValueBody(w: Writer, key: string, value: unknown): void {
  w.uint32(tag(1, LEN));
  w.string(key);
  w.uint32(tag(2, LEN));
  const at = w.begin();
  writeAnyValue(w, value);
  w.end(at);
}

// Telemetry repeats most short string attributes span after span (provider, model, observation
// type, trace name, a fixed output…): their whole length-prefixed KeyValue is written once and then
// copied (one Map lookup per key and per value, one memcpy) instead of being encoded field by field.
/** Values (UTF-16 units) and keys cached; longer ones are written each time. */
const CACHED_VALUE_MAX = 64;
/** Distinct values remembered per key; a key with more (ids, counters) stops adding values… */
const CACHED_VALUES_PER_KEY = 16;
/** …and starts afresh after this many misses, in case its frequent values have changed. */
const RELEARN_AFTER_MISSES = 4096;
/** Keys remembered; beyond this no new key is cached (attribute keys are few in practice). */
const CACHED_KEYS_MAX = 1024;

interface KeyEntries {
  values: Map<string, Uint8Array>;
  misses: number;
}
const entryCache = new Map<string, KeyEntries>();
/** Scratch writer for building a cached entry. */
const scratch = new Writer(256);

/** The length-prefixed KeyValue of a short string attribute, if cached (or now cached). */
function cachedEntry(key: string, value: string): Uint8Array | undefined {
  let entries = entryCache.get(key);
  if (!entries) {
    if (key.length > CACHED_VALUE_MAX || entryCache.size >= CACHED_KEYS_MAX) return undefined;
    entryCache.set(key, (entries = { values: new Map(), misses: 0 }));
  }
  const hit = entries.values.get(value);
  if (hit) return hit;
  if (entries.values.size >= CACHED_VALUES_PER_KEY) {
    if (++entries.misses < RELEARN_AFTER_MISSES) return undefined;
    entries.values.clear();
    entries.misses = 0;
  }
  scratch.pos = 0;
  const at = scratch.begin();
  writeKeyValueBody(scratch, key, value);
  scratch.end(at);
  const bytes = new Uint8Array(scratch.buf.subarray(0, scratch.pos)); // a copy (Buffer#slice would share scratch's memory)
  entries.values.set(value, bytes);
  return bytes;
}

/** repeated KeyValue `field`: string values get exact length prefixes, the rest back-patched ones. */
function writeAttributes(w: Writer, attributes: Attributes | Readonly<Record<string, AttributeValue>>, field: number): void {
  for (const key in attributes) {
    if (!Object.hasOwn(attributes, key)) continue;
    const value: unknown = (attributes as Record<string, unknown>)[key];
    w.uint32(tag(field, LEN));
    if (typeof value === 'string' && value.length <= CACHED_VALUE_MAX) {
      const entry = cachedEntry(key, value);
      if (entry) {
        w.ensure(entry.length);
        w.buf.set(entry, w.pos);
        w.pos += entry.length;
        continue;
      }
    }
    if (typeof value === 'string' && key.length + value.length > SHORT_STRING) {
      const keyBytes = Buffer.byteLength(key, 'utf8');
      const valueBytes = Buffer.byteLength(value, 'utf8');
      const any = 1 + varintSize(valueBytes) + valueBytes;
      w.uint32(1 + varintSize(keyBytes) + keyBytes + 1 + varintSize(any) + any);
      w.uint32(tag(1, LEN));
      w.string(key, keyBytes);
      w.uint32(tag(2, LEN));
      w.uint32(any);
      w.uint32(tag(1, LEN));
      w.string(value, valueBytes);
      continue;
    }
    const at = w.begin();
    writeKeyValueBody(w, key, value);
    w.end(at);
  }
}

function writeSpan(w: Writer, span: EncodableSpanRecord): void {
  w.uint32(tag(2, LEN));
  // Most spans are 128 bytes to 16 KiB: a two-byte length, rarely moved.
  const at = w.begin(2);
  w.uint32(tag(1, LEN));
  w.hexBytes(span.traceId);
  w.uint32(tag(2, LEN));
  w.hexBytes(span.spanId);
  if (span.parentSpanId) {
    w.uint32(tag(4, LEN));
    w.hexBytes(span.parentSpanId);
  }
  w.uint32(tag(5, LEN));
  w.string(span.name);
  w.uint32(tag(6, VARINT));
  w.uint32(SPAN_KIND_INTERNAL);
  w.uint32(tag(7, FIXED64));
  w.unixNano(span.startTimeUnixNano);
  w.uint32(tag(8, FIXED64));
  w.unixNano(span.endTimeUnixNano);
  if (span.attributes) writeAttributes(w, span.attributes, 9);
  w.uint32(tag(10, VARINT));
  w.uint32(0);
  for (const event of span.events ?? NO_EVENTS) {
    w.uint32(tag(11, LEN));
    const e = w.begin();
    w.uint32(tag(1, FIXED64));
    w.unixNano(event.timeUnixNano);
    w.uint32(tag(2, LEN));
    w.string(event.name);
    if (event.attributes) writeAttributes(w, event.attributes, 3);
    w.uint32(tag(4, VARINT));
    w.uint32(0);
    w.end(e);
  }
  w.uint32(tag(12, VARINT));
  w.uint32(0);
  w.uint32(tag(14, VARINT));
  w.uint32(0);
  w.uint32(tag(15, LEN));
  const status = w.begin();
  if (span.status?.message) {
    w.uint32(tag(2, LEN));
    w.string(span.status.message);
  }
  w.uint32(tag(3, VARINT));
  w.uint32(span.status ? STATUS_CODE[span.status.code] : STATUS_CODE.unset);
  w.end(status);
  w.uint32(tag(16, FIXED32));
  w.fixed32(SPAN_FLAGS);
  w.end(at, 2);
}

/** Bytes per span of the last request, to size the next one's buffer (one allocation, usually). */
let bytesPerSpan = 1024;

/** Encode spans as one protobuf ExportTraceServiceRequest body (not compressed). */
export function encodeTracesProtobuf(spans: readonly EncodableSpan[], scope: EncodeOptions['scope'], keepScopes = false): Uint8Array {
  // Spans grouped by resource identity, in order of first appearance (as otlp-transformer does).
  const byResource = new Map<Resource, EncodableSpanRecord[]>();
  for (const { span, resource } of spans) {
    const group = byResource.get(resource);
    if (group) group.push(span);
    else byResource.set(resource, [span]);
  }
  const w = new Writer(Math.max(4096, Math.ceil(spans.length * bytesPerSpan * 1.25)));
  for (const [resource, group] of byResource) {
    w.uint32(tag(1, LEN)); // ResourceSpans
    const resourceSpans = w.begin(3);
    w.uint32(tag(1, LEN)); // Resource
    const r = w.begin();
    writeAttributes(w, resource.attributes, 1);
    w.uint32(tag(2, VARINT));
    w.uint32(0);
    w.end(r);
    w.uint32(tag(2, LEN)); // ScopeSpans
    const scopeSpans = w.begin(3);
    w.uint32(tag(1, LEN)); // InstrumentationScope
    const s = w.begin();
    const { name, version, attributes } = (keepScopes && resource.scope) || scope;
    w.uint32(tag(1, LEN));
    w.string(name);
    if (version) {
      w.uint32(tag(2, LEN));
      w.string(version);
    }
    if (attributes) writeAttributes(w, attributes, 3);
    w.end(s);
    for (const span of group) writeSpan(w, span);
    w.end(scopeSpans, 3);
    w.end(resourceSpans, 3);
  }
  if (spans.length > 0) bytesPerSpan = Math.max(64, Math.ceil(w.pos / spans.length));
  return w.buf.subarray(0, w.pos);
}
