/**
 * The export worker's path for Langfuse over protobuf: a batch of queued span lines (JSON) → one
 * Langfuse-mapped OTLP ExportTraceServiceRequest, reading each line's bytes once.
 *
 * Why: parsing each line into objects, translating those into new objects and encoding them was
 * most of the daemon's CPU per span (scripts/bench-stages.ts: JSON.parse ~2 µs, mapping ~4.9,
 * encoding ~3, plus the garbage all three leave to the GC). A line in the shape the SDK writes —
 * the span's own fields, string / number / boolean attributes, no events — is scanned byte by byte
 * and written straight into protobuf with its Langfuse translation; string values without escapes
 * are copied as they are (a queued line is UTF-8 already). Any other line (events, arrays, values
 * the mapping repairs, keys it treats specially, other SDKs' `langfuse.*` spans, duplicate keys)
 * takes the general path — JSON.parse, LangfuseMapper, the protobuf writer — which writes the same
 * bytes: the tests compare the two on every test vector and on generated spans
 * (daemon/test/langfuse-protobuf.test.ts).
 *
 * Trace-level values (name, user, session, release, environment, metadata) go on every span of a
 * trace, and are known only once the whole batch is read. So each span is first written as its
 * head (ids, name, times, own attributes) and tail (status, flags) into a scratch buffer; the
 * request is assembled at the end, with each span's missing trace-level values written between
 * its head and its tail — where LangfuseMapper.finish appends them.
 */
import { isAscii } from 'node:buffer';
import type { SpanRecord } from '@dspy-o11y/proto';
import { writeLatin1 } from '@dspy-o11y/proto/bytes';
import { ATTR, OBSERVATION_TYPES } from '@dspy-o11y/proto/vocabulary';
import { cleanSpan, type Resource } from '../model.js';
import { LF, eventSpan, isLangfuseSpan, type LangfuseMapper, type TraceAttrs } from './langfuse-map.js';
import type { EncodableSpanRecord, EncodeOptions } from './otlp-encode.js';
import {
  Writer,
  beginResourceGroup,
  endResourceGroup,
  tag,
  varintSize,
  writeAnyValue,
  writeAttribute,
  writeAttributes,
  writeSpanHead,
  writeSpanStatusAndFlags,
  writeSpanTail,
} from './otlp-protobuf.js';

// Wire types.
const VARINT = 0;
const FIXED64 = 1;
const LEN = 2;
const SPAN_KIND_INTERNAL = 1;

// JSON bytes.
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;
const COMMA = 0x2c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;

// What an attribute key is to the mapping.
const PASS = 0; // passed on as it is (Langfuse shows it as metadata)
const PARAM = 1; // gen_ai.request.* but the model: passed on, and one of the model parameters
const TYPE = 2;
const INPUT = 3;
const OUTPUT = 4;
const TRACE_NAME = 5;
const USER = 6; // passed on, and langfuse.user.id
const SESSION = 7; // passed on, and langfuse.session.id
const REQUEST_MODEL = 8; // passed on, and the model name unless a response model is set
const RESPONSE_MODEL = 9;
const USAGE_INPUT = 10;
const USAGE_OUTPUT = 11;
const USAGE_TOTAL = 12;
const COST = 13;
const KNOWN_KINDS = 14;
/** A key the fast path leaves to the general path (the whole span goes there). */
const GENERAL = -1;

// Value kinds.
const STRING = 0;
const ESCAPED_STRING = 1;
const NUMBER = 2;
const TRUE = 3;
const FALSE = 4;

/** Kinds whose attribute is passed on as it is (some translated as well). */
const PASSED_ON = new Uint8Array(KNOWN_KINDS);
for (const kind of [PASS, PARAM, USER, SESSION, REQUEST_MODEL, RESPONSE_MODEL]) PASSED_ON[kind] = 1;
/** Kinds the fast path takes only with a string value. */
const STRING_KINDS = [INPUT, OUTPUT, TRACE_NAME, USER, SESSION, REQUEST_MODEL, RESPONSE_MODEL];

const REQUEST_PREFIX = 'gen_ai.request.';
/** Keys the general path handles (repairs, prompt rules, tags, cache tokens, `__proto__`). */
const GENERAL_KEYS = [
  ATTR.level, ATTR.traceTags, ATTR.promptName, ATTR.promptVersion, ATTR.completionStartTime,
  'gen_ai.usage.cache_read.input_tokens', 'gen_ai.usage.cache_creation.input_tokens', '__proto__',
];
const GENERAL_PREFIXES = [ATTR.traceMetadataPrefix, 'langfuse.'];

const bytesOf = (s: string) => Buffer.from(s, 'utf8');

/** FNV-1a of key bytes: how a scanned key finds its kind without becoming a string. */
function hashBytes(b: Uint8Array, start: number, end: number): number {
  let h = 0x811c9dc5;
  for (let i = start; i < end; i++) h = Math.imul(h ^ b[i], 0x01000193);
  return h;
}

interface KnownKey {
  readonly bytes: Buffer;
  readonly kind: number;
  readonly next: KnownKey | undefined;
}

class KeyTable {
  private readonly byHash = new Map<number, KnownKey>();

  add(key: string, kind: number): void {
    const bytes = bytesOf(key);
    const h = hashBytes(bytes, 0, bytes.length);
    this.byHash.set(h, { bytes, kind, next: this.byHash.get(h) });
  }

  /** The kind of the key in b[start, end), or -2 when it is none of the table's. */
  find(b: Uint8Array, start: number, end: number, h: number): number {
    for (let k = this.byHash.get(h); k; k = k.next) if (sameBytes(b, start, end, k.bytes)) return k.kind;
    return -2;
  }
}

function sameBytes(b: Uint8Array, start: number, end: number, key: Uint8Array): boolean {
  if (end - start !== key.length) return false;
  for (let i = 0; i < key.length; i++) if (b[start + i] !== key[i]) return false;
  return true;
}

function startsWithBytes(b: Uint8Array, start: number, end: number, prefix: Uint8Array): boolean {
  if (end - start < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (b[start + i] !== prefix[i]) return false;
  return true;
}

const ATTRIBUTE_KEYS = new KeyTable();
for (const [key, kind] of [
  [ATTR.observationType, TYPE], [ATTR.input, INPUT], [ATTR.output, OUTPUT], [ATTR.traceName, TRACE_NAME],
  [ATTR.userId, USER], [ATTR.sessionId, SESSION], [ATTR.requestModel, REQUEST_MODEL], [ATTR.responseModel, RESPONSE_MODEL],
  [ATTR.usageInputTokens, USAGE_INPUT], [ATTR.usageOutputTokens, USAGE_OUTPUT], [ATTR.usageTotalTokens, USAGE_TOTAL],
  [ATTR.usageCost, COST],
] as const) {
  ATTRIBUTE_KEYS.add(key, kind);
}
for (const key of GENERAL_KEYS) ATTRIBUTE_KEYS.add(key, GENERAL);
const REQUEST_PREFIX_BYTES = bytesOf(REQUEST_PREFIX);
const GENERAL_PREFIX_BYTES = GENERAL_PREFIXES.map(bytesOf);

// The span record's own fields.
const F_V = 0;
const F_TYPE = 1;
const F_TRACE_ID = 2;
const F_SPAN_ID = 3;
const F_PARENT = 4;
const F_NAME = 5;
const F_START = 6;
const F_END = 7;
const F_STATUS = 8;
const F_ATTRIBUTES = 9;
const FIELDS = new KeyTable();
for (const [key, field] of [
  ['v', F_V], ['type', F_TYPE], ['traceId', F_TRACE_ID], ['spanId', F_SPAN_ID], ['parentSpanId', F_PARENT], ['name', F_NAME],
  ['startTimeUnixNano', F_START], ['endTimeUnixNano', F_END], ['status', F_STATUS], ['attributes', F_ATTRIBUTES],
] as const) {
  FIELDS.add(key, field);
}
const STATUS_FIELDS = new KeyTable();
STATUS_FIELDS.add('code', 0);
STATUS_FIELDS.add('message', 1);
const STATUS_CODES = new KeyTable();
STATUS_CODES.add('unset', 0);
STATUS_CODES.add('ok', 1);
STATUS_CODES.add('error', 2);
const OBSERVATION_TYPE_KEYS = new KeyTable();
OBSERVATION_TYPES.forEach((t, i) => OBSERVATION_TYPE_KEYS.add(t, i));

const nibble = (c: number) => (c >= 48 && c <= 57 ? c - 48 : c - 87); // lowercase hex, validated at ingest

/** The most attributes a span may have on the fast path (more: the general path). */
const MAX_ATTRIBUTES = 256;

/** Thrown inside the scan for a line the fast path does not take; caught per line. */
const NOT_FAST = new Error('not on the fast path');

/** Reads one JSON span line; every position is a byte offset into `b`. */
class LineScan {
  b: Buffer = Buffer.alloc(0);
  p = 0;
  end = 0;
  /** Set by `string()`: the string held a backslash escape. */
  escaped = false;
  /** Set by `key()`: the key's hashBytes. */
  hash = 0;

  // Span fields: [start, end) of each string's contents.
  fields = 0; // bit per field seen
  traceId = 0;
  spanId = 0;
  parent = -1;
  nameStart = 0;
  nameEnd = 0;
  nameEscaped = false;
  startTime = 0;
  startTimeEnd = 0;
  endTime = 0;
  endTimeEnd = 0;
  statusCode = 0;
  messageStart = -1;
  messageEnd = 0;
  messageEscaped = false;

  // Attributes, in order.
  count = 0;
  readonly keyStart = new Int32Array(MAX_ATTRIBUTES);
  readonly keyEnd = new Int32Array(MAX_ATTRIBUTES);
  readonly keyHash = new Int32Array(MAX_ATTRIBUTES);
  readonly valueStart = new Int32Array(MAX_ATTRIBUTES);
  readonly valueEnd = new Int32Array(MAX_ATTRIBUTES);
  readonly valueKind = new Int8Array(MAX_ATTRIBUTES);
  readonly keyKind = new Int8Array(MAX_ATTRIBUTES);
  /** Attribute index of each known kind, -1 when absent. */
  readonly known = new Int32Array(KNOWN_KINDS);

  /** Scans b[start, end); throws NOT_FAST for a line the fast path does not take. */
  scan(b: Buffer, start: number, end: number): void {
    this.b = b;
    this.p = start;
    this.end = end;
    this.fields = 0;
    this.parent = -1;
    this.statusCode = 0;
    this.messageStart = -1;
    this.count = 0;
    this.known.fill(-1);
    this.expect(OPEN_BRACE);
    if (this.peek() === CLOSE_BRACE) throw NOT_FAST;
    for (;;) {
      const keyStart = this.key();
      const keyEnd = this.p - 1;
      this.expect(COLON);
      const field = FIELDS.find(b, keyStart, keyEnd, this.hash);
      if (field < 0 || this.fields & (1 << field)) throw NOT_FAST; // events, unknown fields, a duplicate
      this.fields |= 1 << field;
      switch (field) {
        case F_V:
          this.number();
          break;
        case F_TYPE:
          this.string();
          break;
        case F_TRACE_ID:
          this.traceId = this.id(32);
          break;
        case F_SPAN_ID:
          this.spanId = this.id(16);
          break;
        case F_PARENT:
          this.parent = this.id(16);
          break;
        case F_NAME:
          this.nameStart = this.string() + 1;
          this.nameEnd = this.p - 1;
          this.nameEscaped = this.escaped;
          break;
        case F_START:
          this.startTime = this.string() + 1;
          this.startTimeEnd = this.p - 1;
          if (this.escaped) throw NOT_FAST; // "\u0031…": valid once parsed, but its bytes are not the digits
          break;
        case F_END:
          this.endTime = this.string() + 1;
          this.endTimeEnd = this.p - 1;
          if (this.escaped) throw NOT_FAST;
          break;
        case F_STATUS:
          this.status();
          break;
        case F_ATTRIBUTES:
          this.attributes();
          break;
      }
      const c = this.peek();
      this.p++;
      if (c === CLOSE_BRACE) break;
      if (c !== COMMA) throw NOT_FAST;
    }
    this.ws();
    const required = (1 << F_TRACE_ID) | (1 << F_SPAN_ID) | (1 << F_NAME) | (1 << F_START) | (1 << F_END);
    if (this.p !== end || (this.fields & required) !== required) throw NOT_FAST;
  }

  private ws(): void {
    const b = this.b;
    const end = this.end;
    let p = this.p;
    for (; p < end; p++) {
      const c = b[p];
      if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) break;
    }
    this.p = p;
  }

  private peek(): number {
    this.ws();
    return this.p < this.end ? this.b[this.p] : -1;
  }

  private expect(c: number): void {
    if (this.peek() !== c) throw NOT_FAST;
    this.p++;
  }

  /** A string; returns the position of its opening quote, leaves `p` after the closing one. */
  private string(): number {
    if (this.peek() !== QUOTE) throw NOT_FAST;
    const b = this.b;
    const end = this.end;
    const open = this.p;
    let p = open + 1;
    let escaped = false;
    for (;;) {
      if (p >= end) throw NOT_FAST;
      const c = b[p];
      if (c === QUOTE) break;
      if (c === BACKSLASH) {
        escaped = true;
        p++;
      }
      p++;
    }
    this.p = p + 1;
    this.escaped = escaped;
    return open;
  }

  /**
   * A key: a string without escapes (any other: NOT_FAST), hashed as it is read (hashBytes);
   * returns where its contents start, leaves `p` after the closing quote and the hash in `hash`.
   */
  private key(): number {
    if (this.peek() !== QUOTE) throw NOT_FAST;
    const b = this.b;
    const end = this.end;
    const start = this.p + 1;
    let p = start;
    let h = 0x811c9dc5;
    for (;;) {
      if (p >= end) throw NOT_FAST;
      const c = b[p];
      if (c === QUOTE) break;
      if (c === BACKSLASH) throw NOT_FAST;
      h = Math.imul(h ^ c, 0x01000193);
      p++;
    }
    this.p = p + 1;
    this.hash = h;
    return start;
  }

  /** A hex id of `length` characters; returns where it starts. */
  private id(length: number): number {
    const start = this.string() + 1;
    if (this.escaped || this.p - 1 - start !== length) throw NOT_FAST;
    return start;
  }

  /** A number's text: leaves `p` after it; returns where it starts. */
  private number(): number {
    this.ws();
    const b = this.b;
    const start = this.p;
    let p = start;
    for (;;) {
      const c = b[p];
      // digits, - + . e E
      if ((c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2b || c === 0x2e || c === 0x65 || c === 0x45) p++;
      else break;
    }
    if (p === start) throw NOT_FAST;
    this.p = p;
    return start;
  }

  private status(): void {
    this.expect(OPEN_BRACE);
    if (this.peek() === CLOSE_BRACE) throw NOT_FAST; // code is required
    let seen = 0;
    for (;;) {
      const keyStart = this.key();
      const keyEnd = this.p - 1;
      this.expect(COLON);
      const key = STATUS_FIELDS.find(this.b, keyStart, keyEnd, this.hash);
      if (key < 0 || seen & (1 << key)) throw NOT_FAST;
      seen |= 1 << key;
      const start = this.string() + 1;
      const end = this.p - 1;
      if (key === 0) {
        if (this.escaped) throw NOT_FAST;
        this.statusCode = STATUS_CODES.find(this.b, start, end, hashBytes(this.b, start, end));
        if (this.statusCode < 0) throw NOT_FAST;
      } else {
        this.messageStart = start;
        this.messageEnd = end;
        this.messageEscaped = this.escaped;
      }
      const c = this.peek();
      this.p++;
      if (c === CLOSE_BRACE) break;
      if (c !== COMMA) throw NOT_FAST;
    }
    if (!(seen & 1)) throw NOT_FAST;
  }

  private attributes(): void {
    this.expect(OPEN_BRACE);
    if (this.peek() === CLOSE_BRACE) {
      this.p++;
      return;
    }
    const b = this.b;
    for (;;) {
      const keyStart = this.key();
      const keyEnd = this.p - 1;
      const h = this.hash;
      if (keyEnd === keyStart) throw NOT_FAST;
      this.expect(COLON);
      let valueStart: number;
      let valueEnd: number;
      let valueKind: number;
      const c = this.peek();
      if (c === QUOTE) {
        valueStart = this.string() + 1;
        valueEnd = this.p - 1;
        valueKind = this.escaped ? ESCAPED_STRING : STRING;
      } else if (c === 0x74 /* t */ || c === 0x66 /* f */) {
        valueStart = this.p;
        valueKind = c === 0x74 ? TRUE : FALSE;
        this.p += c === 0x74 ? 4 : 5;
        valueEnd = this.p;
      } else {
        valueStart = this.number();
        valueEnd = this.p;
        valueKind = NUMBER;
      }
      const kind = this.keyKindOf(keyStart, keyEnd, h);
      const i = this.count++;
      if (i === MAX_ATTRIBUTES - 1) throw NOT_FAST;
      if (kind >= 2) {
        if (this.known[kind] >= 0) throw NOT_FAST; // a duplicate key: JSON.parse keeps the last value at the first's place
        this.known[kind] = i;
      } else {
        for (let j = 0; j < i; j++) {
          if (this.keyHash[j] === h && sameBytes(b, keyStart, keyEnd, b.subarray(this.keyStart[j], this.keyEnd[j]))) throw NOT_FAST;
        }
      }
      this.keyStart[i] = keyStart;
      this.keyEnd[i] = keyEnd;
      this.keyHash[i] = h;
      this.valueStart[i] = valueStart;
      this.valueEnd[i] = valueEnd;
      this.valueKind[i] = valueKind;
      this.keyKind[i] = kind;
      const next = this.peek();
      this.p++;
      if (next === CLOSE_BRACE) break;
      if (next !== COMMA) throw NOT_FAST;
    }
  }

  private keyKindOf(start: number, end: number, h: number): number {
    const b = this.b;
    const known = ATTRIBUTE_KEYS.find(b, start, end, h);
    if (known === GENERAL) throw NOT_FAST;
    if (known >= 0) return known;
    if (startsWithBytes(b, start, end, REQUEST_PREFIX_BYTES)) return PARAM;
    for (const prefix of GENERAL_PREFIX_BYTES) if (startsWithBytes(b, start, end, prefix)) throw NOT_FAST;
    // An integer-like key ("7") is enumerated before the others by JavaScript: the general path keeps that order.
    let digits = true;
    for (let i = start; i < end && digits; i++) digits = b[i] >= 0x30 && b[i] <= 0x39;
    if (digits) throw NOT_FAST;
    return PASS;
  }
}

/** Copies src[start, end) to the writer. */
function copyBytes(w: Writer, src: Buffer, start: number, end: number): void {
  const n = end - start;
  w.ensure(n);
  if (n < 64) {
    // A few bytes: a JS loop costs less than a native call.
    const b = w.buf;
    let p = w.pos;
    for (let i = start; i < end; i++) b[p++] = src[i];
  } else {
    w.buf.set(src.subarray(start, end), w.pos); // Buffer#copy validates its arguments in JS first (Node 20)
  }
  w.pos += n;
}

/**
 * The UTF-8 bytes of the JSON string contents src[start, end) with its escapes decoded, as
 * JSON.parse and then Buffer's UTF-8 writer give them (a lone surrogate becomes U+FFFD).
 */
function writeUnescaped(w: Writer, src: Buffer, start: number, end: number): void {
  w.ensure(end - start); // decoded, never longer than escaped
  const b = w.buf;
  let p = w.pos;
  let i = start;
  while (i < end) {
    const c = src[i++];
    if (c !== BACKSLASH) {
      b[p++] = c;
      continue;
    }
    const e = src[i++];
    if (e !== 0x75 /* u */) {
      b[p++] = e === 0x6e ? 0x0a : e === 0x74 ? 0x09 : e === 0x72 ? 0x0d : e === 0x62 ? 0x08 : e === 0x66 ? 0x0c : e; // n t r b f; " \ / as they are
      continue;
    }
    let u = hex4(src, i);
    i += 4;
    if (u >= 0xd800 && u <= 0xdbff && src[i] === BACKSLASH && src[i + 1] === 0x75) {
      const low = hex4(src, i + 2);
      if (low >= 0xdc00 && low <= 0xdfff) {
        i += 6;
        const cp = 0x10000 + ((u - 0xd800) << 10) + (low - 0xdc00);
        b[p++] = 0xf0 | (cp >> 18);
        b[p++] = 0x80 | ((cp >> 12) & 0x3f);
        b[p++] = 0x80 | ((cp >> 6) & 0x3f);
        b[p++] = 0x80 | (cp & 0x3f);
        continue;
      }
    }
    if (u >= 0xd800 && u <= 0xdfff) u = 0xfffd;
    if (u < 0x80) b[p++] = u;
    else if (u < 0x800) {
      b[p++] = 0xc0 | (u >> 6);
      b[p++] = 0x80 | (u & 0x3f);
    } else {
      b[p++] = 0xe0 | (u >> 12);
      b[p++] = 0x80 | ((u >> 6) & 0x3f);
      b[p++] = 0x80 | (u & 0x3f);
    }
  }
  w.pos = p;
}

function hex4(src: Buffer, i: number): number {
  let v = 0;
  for (let k = 0; k < 4; k++) {
    const c = src[i + k];
    v = (v << 4) | (c <= 0x39 ? c - 0x30 : (c | 0x20) - 0x57);
  }
  return v;
}

/** A length-delimited field `field` holding the (escaped or not) JSON string contents src[start, end). */
function writeStringField(w: Writer, field: number, src: Buffer, start: number, end: number, escaped: boolean): void {
  w.uint32(tag(field, LEN));
  if (!escaped) {
    w.uint32(end - start);
    copyBytes(w, src, start, end);
    return;
  }
  const reserve = varintSize(end - start);
  const at = w.begin(reserve);
  writeUnescaped(w, src, start, end);
  w.end(at, reserve);
}

/** A KeyValue (repeated field 9 of Span) with key `key` (bytes) and a string value from src[start, end). */
function writeStringAttribute(w: Writer, key: Buffer, keyStart: number, keyEnd: number, src: Buffer, start: number, end: number, escaped: boolean): void {
  const keyBytes = keyEnd - keyStart;
  w.uint32(tag(9, LEN));
  if (!escaped) {
    const valueBytes = end - start;
    const any = 1 + varintSize(valueBytes) + valueBytes;
    w.uint32(1 + varintSize(keyBytes) + keyBytes + 1 + varintSize(any) + any);
    w.uint32(tag(1, LEN));
    w.uint32(keyBytes);
    copyBytes(w, key, keyStart, keyEnd);
    w.uint32(tag(2, LEN));
    w.uint32(any);
    w.uint32(tag(1, LEN));
    w.uint32(valueBytes);
    copyBytes(w, src, start, end);
    return;
  }
  const reserve = varintSize(keyBytes + (end - start) + 16);
  const kv = w.begin(reserve);
  w.uint32(tag(1, LEN));
  w.uint32(keyBytes);
  copyBytes(w, key, keyStart, keyEnd);
  w.uint32(tag(2, LEN));
  const any = w.begin(reserve);
  writeStringField(w, 1, src, start, end, escaped);
  w.end(any, reserve);
  w.end(kv, reserve);
}

/** A KeyValue with a non-string value (number or boolean). */
function writeValueAttribute(w: Writer, src: Buffer, keyStart: number, keyEnd: number, value: number | boolean): void {
  w.uint32(tag(9, LEN));
  const kv = w.begin();
  w.uint32(tag(1, LEN));
  w.uint32(keyEnd - keyStart);
  copyBytes(w, src, keyStart, keyEnd);
  w.uint32(tag(2, LEN));
  const any = w.begin();
  writeAnyValue(w, value);
  w.end(any);
  w.end(kv);
}

/** A JSON number's value, as JSON.parse gives it. */
function numberAt(src: Buffer, start: number, end: number): number {
  // Plain integers of up to 15 digits (usage counts) without a string; anything else as JSON.parse reads it.
  let i = start;
  const negative = src[i] === 0x2d;
  if (negative) i++;
  if (end - i <= 15) {
    let v = 0;
    for (; i < end; i++) {
      const c = src[i] - 0x30;
      if (c < 0 || c > 9) return Number(src.toString('latin1', start, end));
      v = v * 10 + c;
    }
    return negative ? -v : v;
  }
  return Number(src.toString('latin1', start, end));
}

/** A unix-ns decimal string's digits → the span time, as Writer.unixNano writes it. */
function writeUnixNano(w: Writer, src: Buffer, start: number, end: number): void {
  const split = Math.max(start, end - 9);
  let seconds = 0;
  for (let i = start; i < split; i++) seconds = seconds * 10 + (src[i] - 0x30);
  let nanos = 0;
  for (let i = split; i < end; i++) nanos = nanos * 10 + (src[i] - 0x30);
  w.hrTime(seconds, nanos);
}

function writeId(w: Writer, field: number, src: Buffer, start: number, hexLength: number): void {
  w.uint32(tag(field, LEN));
  const n = hexLength >>> 1;
  w.ensure(1 + n);
  const b = w.buf;
  b[w.pos++] = n;
  for (let i = 0; i < n; i++) b[w.pos++] = (nibble(src[start + 2 * i]) << 4) | nibble(src[start + 2 * i + 1]);
}

const LF_BYTES = {
  input: bytesOf(LF.input),
  traceInput: bytesOf(LF.traceInput),
  output: bytesOf(LF.output),
  traceOutput: bytesOf(LF.traceOutput),
  modelName: bytesOf(LF.modelName),
  modelParameters: bytesOf(LF.modelParameters),
  usageDetails: bytesOf(LF.usageDetails),
};

const INPUT_OUTPUT = [
  [INPUT, LF_BYTES.input, LF_BYTES.traceInput],
  [OUTPUT, LF_BYTES.output, LF_BYTES.traceOutput],
] as const;

/** Own trace-level keys of a span written by the fast path (bit per key); its resource's values are always its own. */
const OWNS_NAME = 1;
const OWNS_USER = 2;
const OWNS_SESSION = 4;

/** The translated trace-level attributes a span may carry itself, in LangfuseMapper.translate's order. */
const TRACE_LEVEL = [
  [TRACE_NAME, LF.traceName, bytesOf(LF.traceName), OWNS_NAME],
  [USER, LF.userId, bytesOf(LF.userId), OWNS_USER],
  [SESSION, LF.sessionId, bytesOf(LF.sessionId), OWNS_SESSION],
] as const;

const USAGE_INPUT_JSON = bytesOf(',"input":');
const USAGE_OUTPUT_JSON = bytesOf(',"output":');
const USAGE_TOTAL_JSON = bytesOf(',"total":');

/** `fragment` then the decimal digits of `n` (a non-negative safe integer). */
function appendCount(w: Writer, fragment: Buffer, n: number): void {
  copyBytes(w, fragment, 0, fragment.length);
  const text = String(n);
  w.ensure(text.length);
  for (let i = 0; i < text.length; i++) w.buf[w.pos++] = text.charCodeAt(i);
}

/** Whole encoded KeyValues (field 9) of attributes, written once and copied per span. */
function encodeAttributes(attributes: TraceAttrs): Buffer {
  const w = new Writer(256);
  for (const k in attributes) writeAttribute(w, 9, k, attributes[k]);
  return Buffer.from(w.buf.subarray(0, w.pos));
}

const TYPE_ATTRIBUTES = OBSERVATION_TYPES.map((t) => encodeAttributes({ [LF.observationType]: t }));
/** A resource's translated values (LangfuseMapper.resourceValues, one object per resource), encoded. */
const resourceAttributes = new WeakMap<TraceAttrs, Buffer>();
function encodedValues(values: TraceAttrs): Buffer {
  let bytes = resourceAttributes.get(values);
  if (!bytes) resourceAttributes.set(values, (bytes = encodeAttributes(values)));
  return bytes;
}

/**
 * Encodes batches of queued span lines for Langfuse (protobuf). One per export worker: it
 * shares the worker's LangfuseMapper (trace memory, repairs) with the general path.
 */
export class LangfuseProtobufEncoder {
  private readonly scan = new LineScan();
  /** Heads and tails of the batch's spans. */
  private readonly parts = new Writer(1 << 20);
  private readonly params = new Writer(256);
  // Per span written, in order:
  private headStart: number[] = [];
  private tailStart: number[] = [];
  private tailEnd: number[] = [];
  private resources: Resource[] = [];
  /** Trace id when trace-level values are filled in (not for spans that already speak Langfuse). */
  private traceIds: (string | undefined)[] = [];
  /** Fast path: OWNS_* bits; general path: the span's attributes. */
  private owned: (number | Readonly<Record<string, unknown>>)[] = [];
  private bytesPerSpan = 1024;
  /** Lines encoded by each path so far (tests, diagnostics). */
  fastLines = 0;
  generalLines = 0;

  constructor(
    private readonly mapper: LangfuseMapper,
    private readonly scope: EncodeOptions['scope'],
  ) {}

  /**
   * One request body (uncompressed) from `count` newline-separated span lines in `lines`, the
   * i-th from `resourceAt(i)`.
   */
  encode(lines: Buffer, count: number, resourceAt: (i: number) => Resource): Uint8Array {
    this.reset(); // also after a batch that failed half-way
    const ascii = isAscii(lines);
    let start = 0;
    for (let i = 0; i < count; i++) {
      let end = lines.indexOf(0x0a, start);
      if (end === -1) end = lines.length;
      const resource = resourceAt(i);
      if (this.fast(lines, start, end, resource)) this.fastLines++;
      else {
        this.generalLines++;
        this.general(lines.toString(ascii ? 'latin1' : 'utf8', start, end), resource);
      }
      start = end + 1;
    }
    return this.assemble();
  }

  /** Whether the line took the fast path (if not, nothing of it was written). */
  private fast(src: Buffer, start: number, end: number, resource: Resource): boolean {
    const s = this.scan;
    try {
      s.scan(src, start, end);
    } catch (err) {
      if (err === NOT_FAST) return false;
      throw err;
    }
    // Values the mapping would repair or treat specially: the general path.
    const known = s.known;
    const kinds = s.valueKind;
    let type = -1;
    if (known[TYPE] >= 0) {
      const i = known[TYPE];
      if (kinds[i] !== STRING) return false;
      type = OBSERVATION_TYPE_KEYS.find(src, s.valueStart[i], s.valueEnd[i], hashBytes(src, s.valueStart[i], s.valueEnd[i]));
      if (type < 0) return false;
    }
    for (const k of STRING_KINDS) {
      const i = known[k];
      if (i >= 0 && kinds[i] !== STRING && kinds[i] !== ESCAPED_STRING) return false;
    }
    const inputTokens = this.count(src, known[USAGE_INPUT]);
    const outputTokens = this.count(src, known[USAGE_OUTPUT]);
    const total = this.count(src, known[USAGE_TOTAL]);
    if (inputTokens === -2 || outputTokens === -2 || total === -2) return false;
    let cost = -1;
    if (known[COST] >= 0) {
      const i = known[COST];
      if (kinds[i] !== NUMBER) return false;
      cost = numberAt(src, s.valueStart[i], s.valueEnd[i]);
      if (!(cost >= 0) || !Number.isFinite(cost)) return false;
    }
    for (let i = 0; i < s.count; i++) if (s.keyKind[i] === PARAM && kinds[i] === ESCAPED_STRING) return false;

    const w = this.parts;
    const traceId = src.toString('latin1', s.traceId, s.traceId + 32);
    const trace = this.mapper.traceValues(traceId);
    const isRoot = s.parent < 0;
    let owns = 0;

    // Head: ids, name, kind, times.
    this.headStart.push(w.pos);
    writeId(w, 1, src, s.traceId, 32);
    writeId(w, 2, src, s.spanId, 16);
    if (s.parent >= 0) writeId(w, 4, src, s.parent, 16);
    writeStringField(w, 5, src, s.nameStart, s.nameEnd, s.nameEscaped);
    w.uint32(tag(6, VARINT));
    w.uint32(SPAN_KIND_INTERNAL);
    w.uint32(tag(7, FIXED64));
    writeUnixNano(w, src, s.startTime, s.startTimeEnd);
    w.uint32(tag(8, FIXED64));
    writeUnixNano(w, src, s.endTime, s.endTimeEnd);

    // Attributes passed on, in their order; then the translated ones, in LangfuseMapper.translate's order.
    for (let i = 0; i < s.count; i++) {
      const kind = s.keyKind[i];
      if (!PASSED_ON[kind]) continue;
      const vk = kinds[i];
      if (vk === STRING || vk === ESCAPED_STRING) writeStringAttribute(w, src, s.keyStart[i], s.keyEnd[i], src, s.valueStart[i], s.valueEnd[i], vk === ESCAPED_STRING);
      else writeValueAttribute(w, src, s.keyStart[i], s.keyEnd[i], vk === NUMBER ? numberAt(src, s.valueStart[i], s.valueEnd[i]) : vk === TRUE);
    }
    if (type >= 0) copyBytes(w, TYPE_ATTRIBUTES[type], 0, TYPE_ATTRIBUTES[type].length);
    for (const [k, own, ofTrace] of INPUT_OUTPUT) {
      const i = known[k];
      if (i < 0) continue;
      writeStringAttribute(w, own, 0, own.length, src, s.valueStart[i], s.valueEnd[i], kinds[i] === ESCAPED_STRING);
      if (isRoot) writeStringAttribute(w, ofTrace, 0, ofTrace.length, src, s.valueStart[i], s.valueEnd[i], kinds[i] === ESCAPED_STRING);
    }
    // Trace-level values: the string itself only when the trace takes it (a root span's, or the first).
    for (const [k, key, keyBytes, bit] of TRACE_LEVEL) {
      const i = known[k];
      if (i < 0 || (k !== TRACE_NAME && s.valueEnd[i] === s.valueStart[i])) continue; // an empty user or session id is none
      writeStringAttribute(w, keyBytes, 0, keyBytes.length, src, s.valueStart[i], s.valueEnd[i], kinds[i] === ESCAPED_STRING);
      if (isRoot || !(key in trace)) trace[key] = this.stringAt(src, i);
      owns |= bit;
    }
    const fromResource = this.mapper.resourceValues(resource);
    const resourceBytes = encodedValues(fromResource);
    copyBytes(w, resourceBytes, 0, resourceBytes.length);
    for (const k in fromResource) if (isRoot || !(k in trace)) trace[k] = fromResource[k];
    const response = known[RESPONSE_MODEL];
    const request = known[REQUEST_MODEL];
    const model = response >= 0 && s.valueEnd[response] > s.valueStart[response] ? response : request;
    if (model >= 0 && s.valueEnd[model] > s.valueStart[model]) {
      const m = LF_BYTES.modelName;
      writeStringAttribute(w, m, 0, m.length, src, s.valueStart[model], s.valueEnd[model], kinds[model] === ESCAPED_STRING);
    }
    this.writeParameters(src);
    // Usage and cost: the JSON text LangfuseMapper.translate builds, written as bytes.
    const totalTokens = total >= 0 ? total : inputTokens >= 0 && outputTokens >= 0 ? inputTokens + outputTokens : -1;
    if (inputTokens >= 0 || outputTokens >= 0 || totalTokens >= 0) {
      const p = this.params;
      p.pos = 0;
      if (inputTokens >= 0) appendCount(p, USAGE_INPUT_JSON, inputTokens);
      if (outputTokens >= 0) appendCount(p, USAGE_OUTPUT_JSON, outputTokens);
      if (totalTokens >= 0) appendCount(p, USAGE_TOTAL_JSON, totalTokens);
      p.buf[0] = OPEN_BRACE; // over the first comma
      p.ensure(1);
      p.buf[p.pos++] = CLOSE_BRACE;
      writeStringAttribute(w, LF_BYTES.usageDetails, 0, LF_BYTES.usageDetails.length, p.buf, 0, p.pos, false);
    }
    if (cost >= 0) writeAttribute(w, 9, LF.costDetails, `{"total":${cost}}`);
    if (s.statusCode === 2) writeAttribute(w, 9, LF.level, 'ERROR');
    let message: string | undefined;
    if (s.messageStart >= 0 && s.messageEnd > s.messageStart) {
      message = s.messageEscaped ? (JSON.parse(src.toString('utf8', s.messageStart - 1, s.messageEnd + 1)) as string) : src.toString('utf8', s.messageStart, s.messageEnd);
      writeAttribute(w, 9, LF.statusMessage, message);
    }

    // Tail.
    this.tailStart.push(w.pos);
    w.uint32(tag(10, VARINT));
    w.uint32(0);
    writeSpanStatusAndFlags(w, s.statusCode, message);
    this.tailEnd.push(w.pos);
    this.resources.push(resource);
    this.traceIds.push(traceId);
    this.owned.push(owns);
    return true;
  }

  /** A usage count: -1 when absent, -2 when not a non-negative safe integer (the general path repairs it). */
  private count(src: Buffer, i: number): number {
    if (i < 0) return -1;
    const s = this.scan;
    if (s.valueKind[i] !== NUMBER) return -2;
    const n = numberAt(src, s.valueStart[i], s.valueEnd[i]);
    return Number.isSafeInteger(n) && n >= 0 ? n : -2;
  }

  private stringAt(src: Buffer, i: number): string {
    const s = this.scan;
    const start = s.valueStart[i];
    const end = s.valueEnd[i];
    return s.valueKind[i] === ESCAPED_STRING ? (JSON.parse(src.toString('utf8', start - 1, end + 1)) as string) : src.toString('utf8', start, end);
  }

  /** `langfuse.observation.model.parameters`: the JSON text LangfuseMapper.translate builds, from the line's bytes. */
  private writeParameters(src: Buffer): void {
    const s = this.scan;
    const p = this.params;
    p.pos = 0;
    for (let i = 0; i < s.count; i++) {
      if (s.keyKind[i] !== PARAM) continue;
      const first = p.pos === 0;
      p.ensure(2);
      p.buf[p.pos++] = first ? OPEN_BRACE : COMMA;
      p.buf[p.pos++] = QUOTE;
      copyBytes(p, src, s.keyStart[i] + REQUEST_PREFIX_BYTES.length, s.keyEnd[i]);
      p.ensure(2);
      p.buf[p.pos++] = QUOTE;
      p.buf[p.pos++] = COLON;
      const vk = s.valueKind[i];
      if (vk === NUMBER) {
        const text = String(numberAt(src, s.valueStart[i], s.valueEnd[i]));
        p.ensure(text.length);
        p.pos += writeLatin1(p.buf, text, p.pos, text.length);
      } else if (vk === STRING) {
        copyBytes(p, src, s.valueStart[i] - 1, s.valueEnd[i] + 1); // with its quotes: no escapes, so JSON.stringify's text
      } else {
        copyBytes(p, src, s.valueStart[i], s.valueEnd[i]); // true / false
      }
    }
    if (p.pos === 0) return;
    p.ensure(1);
    p.buf[p.pos++] = CLOSE_BRACE;
    const key = LF_BYTES.modelParameters;
    writeStringAttribute(this.parts, key, 0, key.length, p.buf, 0, p.pos, false);
  }

  /** A line the fast path does not take: parsed and mapped by LangfuseMapper, encoded by the protobuf writer. */
  private general(line: string, resource: Resource): void {
    const span = cleanSpan(JSON.parse(line) as SpanRecord);
    if (isLangfuseSpan(span)) return this.writeParts(span, resource, undefined);
    this.writeParts(this.mapper.translateOwn(span, resource), resource, span.traceId);
    const events = span.events;
    if (events) for (let i = 0; i < events.length; i++) this.writeParts(eventSpan(span, events[i], i), resource, span.traceId);
  }

  private writeParts(span: EncodableSpanRecord, resource: Resource, traceId: string | undefined): void {
    const w = this.parts;
    this.headStart.push(w.pos);
    writeSpanHead(w, span);
    const attributes = span.attributes ?? {};
    writeAttributes(w, attributes, 9);
    this.tailStart.push(w.pos);
    writeSpanTail(w, span.status, span.events);
    this.tailEnd.push(w.pos);
    this.resources.push(resource);
    this.traceIds.push(traceId);
    this.owned.push(attributes);
  }

  /** The request: spans grouped by resource (first appearance), each with its trace's values it lacks. */
  private assemble(): Uint8Array {
    const traces = this.mapper.settleTraces();
    const { headStart, tailStart, tailEnd, resources, traceIds, owned } = this;
    const n = headStart.length;
    const parts = this.parts.buf;
    const groups = new Map<Resource, number[]>();
    for (let i = 0; i < n; i++) {
      const group = groups.get(resources[i]);
      if (group) group.push(i);
      else groups.set(resources[i], [i]);
    }
    const w = new Writer(Math.max(4096, Math.ceil(n * this.bytesPerSpan * 1.25)));
    for (const [resource, group] of groups) {
      const marks = beginResourceGroup(w, resource, this.scope);
      // Looked up for fast-path spans only (fast() mapped their resource already): a resource whose
      // spans all speak Langfuse is never mapped by LangfuseMapper, so it must not report repairs here.
      let fromResource: TraceAttrs | undefined;
      for (const i of group) {
        w.uint32(tag(2, LEN));
        const at = w.begin(2);
        copyBytes(w, parts, headStart[i], tailStart[i]);
        const traceId = traceIds[i];
        const t = traceId === undefined ? undefined : traces.get(traceId);
        if (t) {
          const own = owned[i];
          if (typeof own === 'number') fromResource ??= this.mapper.resourceValues(resource);
          for (const k in t) {
            if (typeof own === 'number' ? ownsKey(own, fromResource as TraceAttrs, k) : k in own) continue;
            writeAttribute(w, 9, k, t[k]);
          }
        }
        copyBytes(w, parts, tailStart[i], tailEnd[i]);
        w.end(at, 2);
      }
      endResourceGroup(w, marks);
    }
    if (n > 0) this.bytesPerSpan = Math.max(64, Math.ceil(w.pos / n));
    this.reset();
    return w.buf.subarray(0, w.pos);
  }

  private reset(): void {
    this.parts.pos = 0;
    this.headStart = [];
    this.tailStart = [];
    this.tailEnd = [];
    this.resources = [];
    this.traceIds = [];
    this.owned = [];
    this.mapper.begin(); // the mapper's batch state (trace values gathered so far)
  }
}

/** Whether a fast-path span (OWNS_* bits `own`, of a resource implying `fromResource`) has trace-level key `k` itself. */
function ownsKey(own: number, fromResource: TraceAttrs, k: string): boolean {
  if (k === LF.traceName) return (own & OWNS_NAME) !== 0;
  if (k === LF.userId) return (own & OWNS_USER) !== 0;
  if (k === LF.sessionId) return (own & OWNS_SESSION) !== 0;
  return k in fromResource;
}
