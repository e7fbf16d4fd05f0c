/**
 * A decoded OTLP span (otlp/decode.ts) → an unvalidated wire-protocol span record (DESIGN §2),
 * which the record sink then validates with the proto schema like any other record.
 *
 * - ids stay lowercase hex; an all-zero parent id means "no parent" (as in the Collector);
 * - times stay exact unix-ns decimal strings;
 * - status code 0/1/2 → `unset`/`ok`/`error` (omitted when unset without a message);
 * - attributes become the wire protocol's value types: string, finite number, boolean, or a
 *   homogeneous array of one of those. int64 beyond ±2^53 becomes its decimal string, a
 *   non-finite double its name (`NaN`, `Infinity`), bytes base64, and kvlists, mixed or nested
 *   arrays a JSON string (objects, base64 bytes, big ints as strings). Empty values are dropped;
 * - attribute keys the wire protocol cannot carry (empty, longer than 256 characters) and
 *   `__proto__` (which the schema drops on every other path) are left out, not the span;
 * - an empty span or event name, "equivalent to an unknown span name" in OTLP, becomes `unknown`;
 * - events are kept (with dialects normalized, GenAI message events become the input / output:
 *   otlp-dialects.ts); span kind and links are not part of the record;
 * - the instrumentation scope is not either: it travels with the span's Resource (`withScope`).
 */
import { MAX_ATTRIBUTE_KEY_LENGTH, type AttributeValue } from '@dspy-o11y/proto';
import type { Resource } from '../model.js';
import { anyValueToFlat, flattenAttributes, type AnyValue, type DecodedResource, type DecodedScope, type DecodedSpan, type KeyValue } from '../otlp/decode.js';
import { messagesFromEvents, normalizeDialects, type MutableAttributes, type WireEvent } from './otlp-dialects.js';

const STATUS_CODES = ['unset', 'ok', 'error'] as const;
const ZERO_SPAN_ID = '0000000000000000';

/** One OTLP AnyValue as a wire attribute value; `undefined` for an empty value. */
export function toWireValue(v: AnyValue): AttributeValue | undefined {
  switch (v.type) {
    case 'string':
    case 'bool':
      return v.value;
    case 'int':
      return typeof v.value === 'bigint' ? v.value.toString() : v.value;
    case 'double':
      return Number.isFinite(v.value) ? v.value : String(v.value);
    case 'bytes':
      return Buffer.from(v.value).toString('base64');
    case 'kvlist':
      return JSON.stringify(flattenAttributes(v.values));
    case 'array':
      return homogeneous(v.values) ?? JSON.stringify(v.values.map(anyValueToFlat));
    case 'empty':
      return undefined;
  }
}

/** An array of only strings, only booleans or only (safe) numbers as that array; else `undefined`. */
function homogeneous(values: readonly AnyValue[]): AttributeValue | undefined {
  if (values.length === 0) return [];
  const first = values[0]!.type;
  if (first === 'string') {
    const out: string[] = [];
    for (const x of values) {
      if (x.type !== 'string') return undefined;
      out.push(x.value);
    }
    return out;
  }
  if (first === 'bool') {
    const out: boolean[] = [];
    for (const x of values) {
      if (x.type !== 'bool') return undefined;
      out.push(x.value);
    }
    return out;
  }
  if (first === 'int' || first === 'double') {
    const out: number[] = [];
    for (const x of values) {
      if ((x.type !== 'int' && x.type !== 'double') || typeof x.value !== 'number' || !Number.isFinite(x.value)) return undefined;
      out.push(x.value);
    }
    return out;
  }
  return undefined;
}

/**
 * `KeyValue[]` → wire attributes (the last of duplicate keys wins; empty values dropped). Keys the
 * wire protocol cannot carry (empty, longer than 256 characters) and `__proto__` are left out:
 * one odd attribute must not cost its span.
 */
export function toWireAttributes(kvs: readonly KeyValue[]): MutableAttributes {
  const out: MutableAttributes = {};
  for (const kv of kvs) {
    const k = kv.key;
    if (k.length === 0 || k.length > MAX_ATTRIBUTE_KEY_LENGTH || k === '__proto__') continue;
    const v = toWireValue(kv.value);
    if (v !== undefined) out[k] = v;
  }
  return out;
}

/** OTLP: an empty name "is equivalent to an unknown span name"; the wire protocol needs one. */
const nameOrUnknown = (name: string) => (name === '' ? 'unknown' : name);

/** An OTLP resource → a daemon Resource (one per ResourceSpans, shared by its spans). */
export function toResource(resource: DecodedResource): Resource {
  const attributes = toWireAttributes(resource.attributes);
  const name = attributes['telemetry.sdk.name'];
  const version = attributes['telemetry.sdk.version'];
  return typeof name === 'string' && typeof version === 'string' ? { attributes, sdk: { name, version } } : { attributes };
}

/** `resource` of the spans of one ScopeSpans: its scope as sent (name, version, attributes if any). */
export function withScope(resource: Resource, scope: DecodedScope): Resource {
  const attributes = toWireAttributes(scope.attributes);
  const { name, version } = scope;
  return { ...resource, scope: Object.keys(attributes).length > 0 ? { name, version, attributes } : { name, version } };
}

export interface ConvertOptions {
  /** Rewrite GenAI / OpenInference / Vercel AI SDK keys into the neutral vocabulary (see otlp-dialects.ts). */
  readonly normalizeDialects: boolean;
}

/** A decoded span → a wire span record, not yet validated (the record sink does that). */
export function toSpanRecord(s: DecodedSpan, options: ConvertOptions): Record<string, unknown> {
  const record: Record<string, unknown> = {
    v: 1,
    type: 'span',
    traceId: s.traceId,
    spanId: s.spanId,
    name: nameOrUnknown(s.name),
    startTimeUnixNano: s.startTimeUnixNano,
    endTimeUnixNano: s.endTimeUnixNano,
  };
  if (s.parentSpanId !== undefined && s.parentSpanId !== ZERO_SPAN_ID) record.parentSpanId = s.parentSpanId;
  if (s.status.code !== 0 || s.status.message !== undefined) {
    record.status = s.status.message === undefined ? { code: STATUS_CODES[s.status.code] } : { code: STATUS_CODES[s.status.code], message: s.status.message };
  }
  let attributes = toWireAttributes(s.attributes);
  let events: readonly WireEvent[] = s.events.map((e) => {
    const attrs = toWireAttributes(e.attributes);
    const name = nameOrUnknown(e.name);
    return Object.keys(attrs).length > 0 ? { name, timeUnixNano: e.timeUnixNano, attributes: attrs } : { name, timeUnixNano: e.timeUnixNano };
  });
  if (options.normalizeDialects) {
    attributes = normalizeDialects(attributes);
    events = messagesFromEvents(attributes, events);
  }
  if (Object.keys(attributes).length > 0) record.attributes = attributes;
  if (events.length > 0) record.events = events;
  return record;
}
