/**
 * Turning an untrusted line or value into a typed record, with a short machine-readable reason
 * when it fails. Reasons are a closed, low-cardinality set: they become metric labels.
 */
import { z } from 'zod';
import { EventRecord, HelloRecord, PROTOCOL_VERSION, RECORD_TYPES, ScoreRecord, SpanRecord, StatsRecord, type WireRecord } from './schema.js';

// Dispatch on `type` by hand: zod's discriminated union costs a third more per record, and this
// runs for every record the daemon receives.
const SCHEMAS = { hello: HelloRecord, span: SpanRecord, event: EventRecord, stats: StatsRecord, score: ScoreRecord } as const;
type Schema = (typeof SCHEMAS)[keyof typeof SCHEMAS];

/**
 * z.compile generates one flat function per schema for the valid case, several times cheaper than
 * zod's parser; what it refuses is parsed again by that parser, so failures and their reasons are
 * the plain schema's. Compiled on first use: it takes milliseconds, which importers that never
 * validate (the SDK) should not pay. A schema zod cannot compile is returned as is (a test checks).
 */
const compiled: { [type: string]: Schema } = {};

export type InvalidReason =
  | 'invalid_json'
  | 'not_an_object'
  | 'unsupported_version'
  | 'unknown_type'
  | 'too_large'
  | `invalid_${string}`;

export type ValidationResult =
  | { ok: true; record: WireRecord }
  | { ok: false; reason: InvalidReason; message: string };

const camelToSnake = (s: string) => s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

function reasonFor(error: z.ZodError): { reason: InvalidReason; message: string } {
  const issue = error.issues[0];
  const field = issue?.path[0];
  const where = issue?.path.length ? issue.path.join('.') : 'record';
  const message = `${where}: ${issue?.message ?? 'invalid'}`;
  if (typeof field === 'string') return { reason: `invalid_${camelToSnake(field)}`, message };
  return { reason: 'invalid_record', message };
}

/**
 * A primitive as JSON, an object or array by its kind: never JSON.stringify of a value from the
 * wire, which recurses, so a `v` nested a few thousand levels deep (20 KB, within a line's limit)
 * threw RangeError out of the socket's data handler and killed the daemon.
 */
function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (typeof value !== 'object' || value === null) return JSON.stringify(value);
  return Array.isArray(value) ? 'an array' : 'an object';
}

/** Validate an already-parsed value. */
export function validateRecord(value: unknown): ValidationResult {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { ok: false, reason: 'not_an_object', message: 'a record must be a JSON object' };
  }
  const { v, type } = value as { v?: unknown; type?: unknown };
  if (v !== PROTOCOL_VERSION) {
    return { ok: false, reason: 'unsupported_version', message: `v must be ${PROTOCOL_VERSION}, got ${describeValue(v)}` };
  }
  if (typeof type !== 'string' || !Object.hasOwn(SCHEMAS, type)) {
    return { ok: false, reason: 'unknown_type', message: `type must be one of ${RECORD_TYPES.join(', ')}` };
  }
  const schema = (compiled[type] ??= z.compile(SCHEMAS[type as keyof typeof SCHEMAS]));
  const parsed = schema.safeParse(value);
  if (parsed.success) return { ok: true, record: parsed.data as WireRecord };
  return { ok: false, ...reasonFor(parsed.error) };
}

/** Parse and validate one NDJSON line (without its newline). */
export function parseLine(line: string): ValidationResult {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (err) {
    return { ok: false, reason: 'invalid_json', message: `not JSON: ${(err as Error).message}` };
  }
  return validateRecord(value);
}
