/**
 * Turning app values into wire values without ever throwing and without unbounded work:
 * captured inputs/outputs become JSON strings of at most `max` characters (cycles, BigInt,
 * Buffers, Maps, errors handled), attribute values become what the wire protocol accepts.
 */
import { MAX_ATTRIBUTE_KEY_LENGTH, type AttributeValue } from '@dspy-o11y/proto';

export const TRUNCATION_MARKER = '…[truncated]';

/** The daemon's default --max-record-bytes is 1 MiB; records stay clear of it. */
export const MAX_RECORD_BYTES = 1024 * 1024 - 4096;

/** Whether a record line fits {@link MAX_RECORD_BYTES} (cheap test first: 1 char is at most 3 UTF-8 bytes). */
export function fitsRecord(line: string): boolean {
  return line.length * 3 <= MAX_RECORD_BYTES || Buffer.byteLength(line) <= MAX_RECORD_BYTES;
}

/** Span and event names longer than this are cut (with the marker): a name must never cost its record. */
export const MAX_NAME_LENGTH = 4096;

/** `name` as recorded: `fallback` when empty or not a string, cut to {@link MAX_NAME_LENGTH}. */
export function recordName(name: unknown, fallback: string): string {
  if (typeof name !== 'string' || name.length === 0) return fallback;
  return name.length > MAX_NAME_LENGTH ? name.slice(0, MAX_NAME_LENGTH) + TRUNCATION_MARKER : name;
}

/** Thrown inside the serializer when the output budget is spent; never escapes this module. */
class BudgetSpent {}
const BUDGET_SPENT = new BudgetSpent();

const MAX_DEPTH = 32;

/**
 * JSON for `value`, at most `max` characters (plus the marker when cut). Never throws.
 * Cycles become `"[Circular]"`, BigInt a decimal string, functions and symbols are omitted like
 * JSON.stringify does, typed arrays and Buffers a short summary, Maps objects, Sets arrays,
 * Errors `{name,message}`. A value that stringifies to nothing (undefined) gives `undefined`.
 */
export function toJson(value: unknown, max: number): string | undefined {
  switch (typeof value) {
    case 'string':
      return value.length > max ? JSON.stringify(value.slice(0, max) + TRUNCATION_MARKER) : quote(value);
    case 'number':
      return Number.isFinite(value) ? String(value) : 'null';
    case 'boolean':
      return value ? 'true' : 'false';
    case 'bigint':
      return `"${value.toString()}"`;
    case 'undefined':
    case 'function':
    case 'symbol':
      return undefined;
    default:
      break;
  }
  if (value === null) return 'null';
  // Plain data (what LLM messages are): the native serializer, which writes exactly what the
  // writer below would, at a fraction of the cost.
  let s: string | undefined;
  try {
    if (plainBudget(value as object, 0, max) >= 0) s = JSON.stringify(value);
  } catch {
    s = undefined; // a getter threw: the writer records it
  }
  if (s !== undefined && s.length <= max) return s;
  return writeJson(value, max);
}

/** @internal `toJson` of an object by the writer alone (tests compare it with the native path). */
export function writeJson(value: unknown, max: number): string | undefined {
  const w = new Writer(max);
  try {
    w.value(value, 0, undefined);
  } catch (e) {
    if (e !== BUDGET_SPENT) return JSON.stringify(`[unserializable: ${describe(e)}]`);
    return w.out.slice(0, max) + TRUNCATION_MARKER;
  }
  return w.out;
}

const OBJECT_PROTO = Object.prototype;
const ARRAY_PROTO = Array.prototype;
const hasOwn = (o: object, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k);

/**
 * Whether `JSON.stringify(o)` writes exactly what the writer does, and costs little: arrays and
 * plain objects (prototype `Object.prototype` or null, no `toJSON`) less than MAX_DEPTH deep, of
 * strings, finite or not numbers, booleans, null, undefined, functions and symbols (which both
 * serializers skip or write as null alike). Not: BigInt (JSON.stringify throws), cycles (caught
 * by the depth limit), Maps, Sets, Errors, Dates, typed arrays, class instances and anything
 * with `toJSON`: the writer has its own rules for those. Returns what is left of `budget` less an
 * estimate of the output length, or -1 (not plain, or too long: the writer truncates), so the
 * work is bounded by the cap. Values are read here and again by JSON.stringify, so an own getter
 * of a plain object runs twice.
 */
function plainBudget(o: object, depth: number, budget: number): number {
  // One small function (Object.keys, not for-in; no helper per item): TurboFan compiles it in a
  // fifth of the time, which matters as much as its speed for a process's first spans.
  if (depth >= MAX_DEPTH) return -1;
  const array = Array.isArray(o);
  const proto = Object.getPrototypeOf(o) as unknown;
  if ((array ? proto !== ARRAY_PROTO : proto !== OBJECT_PROTO && proto !== null) || 'toJSON' in o) return -1;
  const keys = array ? undefined : Object.keys(o);
  const n = keys === undefined ? (o as unknown[]).length : keys.length;
  budget -= n + 2;
  for (let i = 0; i < n; i++) {
    if (budget < 0) return -1;
    let v: unknown;
    if (keys === undefined) v = (o as unknown[])[i];
    else {
      const k = keys[i] as string;
      budget -= k.length + 3;
      v = (o as Record<string, unknown>)[k];
    }
    const t = typeof v;
    if (t === 'string') budget -= (v as string).length;
    else if (t === 'object') {
      if (v !== null) budget = plainBudget(v as object, depth + 1, budget);
    } else if (t === 'bigint') return -1;
  }
  return budget;
}

// JSON strings without JSON.stringify's per-call cost where that is cheaper: short strings that
// need no escaping are quoted as they are; names and keys chosen by code (span names, attribute
// keys, models) are kept, quoted, in a small bounded cache.
const SCAN_MAX = 64;

/** `JSON.stringify(s)` for a string. */
export function quote(s: string): string {
  if (s.length > SCAN_MAX) return JSON.stringify(s);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    // Control characters, `"`, `\`, and surrogates (a lone one is escaped by JSON.stringify).
    if (c < 0x20 || c === 0x22 || c === 0x5c || (c >= 0xd800 && c <= 0xdfff)) return JSON.stringify(s);
  }
  return `"${s}"`;
}

const QUOTED_MAX = 2048;
const quoted = new Map<string, string>();

/** `JSON.stringify(s)` for a string that recurs (a name or key set by code), cached. */
export function quoteName(s: string): string {
  let q = quoted.get(s);
  if (q === undefined) {
    q = quote(s);
    if (quoted.size < QUOTED_MAX && s.length <= SCAN_MAX) quoted.set(s, q);
  }
  return q;
}

const MEMBER_KEYS_MAX = 2048;
const memberKeys = new Map<string, string>();

/** `,"key":` for an attribute key, cached. */
function memberKey(k: string): string {
  let m = memberKeys.get(k);
  if (m === undefined) {
    m = `,${JSON.stringify(k)}:`;
    if (memberKeys.size < MEMBER_KEYS_MAX) memberKeys.set(k, m);
  }
  return m;
}

/** JSON of an attribute value (what `JSON.stringify` writes for it). */
export function attributeJson(v: AttributeValue): string {
  switch (typeof v) {
    case 'string':
      return quote(v);
    case 'number':
      return Number.isFinite(v) ? `${v}` : 'null';
    case 'boolean':
      return v ? 'true' : 'false';
    default:
      return JSON.stringify(v);
  }
}

/**
 * `,"k":v,"k2":v2` — each member with a leading comma, '' if none — for splicing into a record
 * being built as a string; the same members, in the same order, as `JSON.stringify(attrs)`.
 */
export function memberList(attrs: Record<string, AttributeValue> | undefined): string {
  let s = '';
  if (!attrs) return s;
  for (const k in attrs) {
    if (!hasOwn(attrs, k)) continue;
    const v = attrs[k];
    if (v === undefined) continue;
    s += memberKey(k) + attributeJson(v);
  }
  return s;
}

function describe(e: unknown): string {
  try {
    return e instanceof Error ? e.message : String(e);
  } catch {
    return 'error';
  }
}

class Writer {
  out = '';
  private readonly stack: object[] = [];
  constructor(private readonly max: number) {}

  private put(s: string): void {
    this.out += s;
    if (this.out.length > this.max) throw BUDGET_SPENT;
  }

  private str(s: string): void {
    // Cut long strings before escaping them: escaping a 50 MB string only to drop it is waste.
    const room = this.max - this.out.length;
    this.put(JSON.stringify(s.length > room ? s.slice(0, room + 1) : s));
  }

  /** Writes `v`; returns false when nothing was written (undefined, functions, symbols). */
  value(v: unknown, depth: number, key: string | undefined): boolean {
    switch (typeof v) {
      case 'string':
        this.str(v);
        return true;
      case 'number':
        this.put(Number.isFinite(v) ? String(v) : 'null');
        return true;
      case 'boolean':
        this.put(v ? 'true' : 'false');
        return true;
      case 'bigint':
        this.put(`"${v.toString()}"`);
        return true;
      case 'undefined':
      case 'function':
      case 'symbol':
        return false;
      default:
        break;
    }
    if (v === null) {
      this.put('null');
      return true;
    }
    const o = v as object;
    if (this.stack.includes(o)) {
      this.put('"[Circular]"');
      return true;
    }
    if (depth >= MAX_DEPTH) {
      this.put('"[MaxDepth]"');
      return true;
    }
    const toJSON = (o as { toJSON?: unknown }).toJSON;
    if (typeof toJSON === 'function' && !(o instanceof Uint8Array)) {
      let replaced: unknown;
      try {
        replaced = toJSON.call(o, key ?? '');
      } catch (e) {
        this.str(`[toJSON threw: ${describe(e)}]`);
        return true;
      }
      if (replaced !== o) return this.value(replaced, depth + 1, key);
    }
    if (ArrayBuffer.isView(o)) {
      this.str(`[${o.constructor?.name ?? 'TypedArray'} ${o.byteLength} bytes]`);
      return true;
    }
    if (o instanceof ArrayBuffer) {
      this.str(`[ArrayBuffer ${o.byteLength} bytes]`);
      return true;
    }
    this.stack.push(o);
    try {
      if (Array.isArray(o)) this.array(o, depth);
      else if (o instanceof Map) this.entries(o.entries(), depth);
      else if (o instanceof Set) this.array(o, depth);
      else if (o instanceof Error) this.object({ ...o, name: o.name, message: o.message }, depth);
      else this.object(o as Record<string, unknown>, depth);
    } finally {
      this.stack.pop();
    }
    return true;
  }

  private array(a: Iterable<unknown>, depth: number): void {
    this.put('[');
    let first = true;
    for (const item of a) {
      if (!first) this.put(',');
      first = false;
      if (!this.value(item, depth + 1, undefined)) this.put('null');
    }
    this.put(']');
  }

  /** `"key":value` (after a comma unless first); a value that writes nothing takes its key back out. */
  private member(key: string, item: unknown, depth: number, first: boolean): boolean {
    const mark = this.out.length;
    this.put(first ? '' : ',');
    this.str(key);
    this.put(':');
    if (this.value(item, depth + 1, key)) return true;
    this.out = this.out.slice(0, mark);
    return false;
  }

  private entries(it: Iterable<[unknown, unknown]>, depth: number): void {
    this.put('{');
    let first = true;
    for (const [k, item] of it) {
      const key = typeof k === 'string' ? k : String(k);
      if (this.member(key, item, depth, first)) first = false;
    }
    this.put('}');
  }

  private object(o: Record<string, unknown>, depth: number): void {
    this.put('{');
    let first = true;
    for (const key in o) {
      if (!Object.prototype.hasOwnProperty.call(o, key)) continue;
      let item: unknown;
      try {
        item = o[key];
      } catch (e) {
        item = `[getter threw: ${describe(e)}]`;
      }
      if (this.member(key, item, depth, first)) first = false;
    }
    this.put('}');
  }
}

/**
 * A value the wire protocol accepts as an attribute value, or undefined to skip it: strings
 * (capped), finite numbers, booleans, homogeneous arrays of those; anything else JSON-encoded.
 */
export function toAttributeValue(v: unknown, max: number): AttributeValue | undefined {
  switch (typeof v) {
    case 'string':
      return v.length > max ? v.slice(0, max) + TRUNCATION_MARKER : v;
    case 'number':
      return Number.isFinite(v) ? v : String(v);
    case 'boolean':
      return v;
    case 'bigint':
      return v.toString();
    case 'undefined':
    case 'function':
    case 'symbol':
      return undefined;
    default:
      break;
  }
  if (v === null) return undefined;
  if (Array.isArray(v)) {
    const arr = homogeneous(v, max);
    if (arr) return arr;
  }
  return toJson(v, max);
}

function homogeneous(a: unknown[], max: number): AttributeValue | undefined {
  if (a.length === 0) return [] as string[];
  const t = typeof a[0];
  if (t !== 'string' && t !== 'number' && t !== 'boolean') return undefined;
  let budget = max;
  for (const x of a) {
    if (typeof x !== t) return undefined;
    if (t === 'number' && !Number.isFinite(x as number)) return undefined;
    if (t === 'string') {
      budget -= (x as string).length;
      if (budget < 0) return undefined;
    }
  }
  return a.slice() as AttributeValue;
}

export const validKey = (k: string): boolean => typeof k === 'string' && k.length > 0 && k.length <= MAX_ATTRIBUTE_KEY_LENGTH;

/**
 * `fn(key, value)` for each own enumerable key of an app object. A value whose getter throws is
 * skipped, and a Proxy whose keys throw ends the walk: reading the app's object never throws.
 */
export function forEachReadable(o: Readonly<Record<string, unknown>>, fn: (key: string, value: unknown) => void): void {
  let keys: string[];
  try {
    keys = Object.keys(o);
  } catch {
    return;
  }
  for (const k of keys) {
    let v: unknown;
    try {
      v = o[k];
    } catch {
      continue;
    }
    fn(k, v);
  }
}

/** Sanitized copy of `attrs` (invalid keys and empty values skipped). */
export function toAttributes(attrs: Readonly<Record<string, unknown>> | undefined, max: number): Record<string, AttributeValue> | undefined {
  // A string is no map: for-in gave one attribute per character (2 MB: 2 million, seconds per event).
  if (!attrs || typeof attrs !== 'object') return undefined;
  let out: Record<string, AttributeValue> | undefined;
  for (const k in attrs) {
    if (!Object.prototype.hasOwnProperty.call(attrs, k) || !validKey(k)) continue;
    let v: AttributeValue | undefined;
    try {
      v = toAttributeValue(attrs[k], max);
    } catch {
      v = undefined;
    }
    if (v === undefined) continue;
    (out ??= {})[k] = v;
  }
  return out;
}

