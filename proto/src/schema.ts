/**
 * Wire protocol v1 (DESIGN §2): one JSON record per NDJSON line. These zod schemas are the
 * single source of truth; the daemon validates with them and the SDK's types come from them.
 */
import { z } from 'zod';
import { OBSERVATION_TYPES } from './vocabulary.js';

export const PROTOCOL_VERSION = 1;
export const MAX_ATTRIBUTE_KEY_LENGTH = 256;

const hexId = (length: number) => {
  // After the format check an all-zero id is exactly this string: one comparison, not a regex.
  const zeros = '0'.repeat(length);
  return z
    .string()
    .regex(new RegExp(`^[0-9a-f]{${length}}$`), `must be ${length} lowercase hex characters`)
    .refine((id) => id !== zeros, 'must not be all zeros');
};

export const TraceId = hexId(32);
export const SpanId = hexId(16);

/** Unix-epoch nanoseconds as a decimal string: JSON numbers cannot hold them exactly. */
const UNIX_NANO = /^[1-9][0-9]{0,18}$/;
/** Enough for the span's time-order refinement: a malformed time has already failed its own field check (the first issue, which names the reason). */
const isText = (v: unknown): v is string => typeof v === 'string';
/**
 * a < b for two well-formed unix-nano strings: without leading zeros, the shorter is the
 * smaller, and equal lengths compare as text (as BigInt would, without allocating two per span).
 */
const nanoBefore = (a: string, b: string) => (a.length !== b.length ? a.length < b.length : a < b);
export const UnixNano = z.string().regex(UNIX_NANO, 'must be unix-epoch nanoseconds as a decimal string');

const Primitive = z.union([z.string(), z.number(), z.boolean()]);
export const AttributeValue = z.union([
  z.string(),
  z.number(),
  z.boolean(),
  z.array(z.string()),
  z.array(z.number()),
  z.array(z.boolean()),
]);
export type AttributeValue = z.infer<typeof AttributeValue>;

/** What {@link AttributeValue} accepts, without a union's per-branch runs and failure issues. */
function isAttributeValue(v: unknown): boolean {
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return true;
    case 'number':
      return Number.isFinite(v); // as z.number(): no NaN or ±Infinity
    case 'object': {
      if (!Array.isArray(v)) return false;
      if (v.length === 0) return true;
      const t = typeof v[0];
      if (t !== 'string' && t !== 'number' && t !== 'boolean') return false;
      for (let i = 0; i < v.length; i++) {
        const x: unknown = v[i];
        if (typeof x !== t || (t === 'number' && !Number.isFinite(x))) return false;
      }
      return true;
    }
    default:
      return false;
  }
}

/**
 * A string-keyed map of attribute values; keys 1 to 256 characters: what
 * `z.record(z.string().min(1).max(256), AttributeValue)` accepts (a test compares them), checked by
 * hand in one pass, because the union made a failure issue per branch tried per value and the
 * object parsing copied the map. Issues have path [key], so the reason is `invalid_attributes` and
 * the message names the key. The output is the input object.
 *
 * `__proto__` keys (own properties from JSON.parse) are deleted from the input, unchecked, as zod's
 * object parsing dropped them: code that copies attributes must not meet them.
 */
export const Attributes = z.custom<Record<string, AttributeValue>>().check((ctx) => {
  const attrs = ctx.value as unknown;
  if (typeof attrs !== 'object' || attrs === null || Array.isArray(attrs)) {
    ctx.issues.push({ code: 'custom', message: 'must be an object', input: attrs });
    return;
  }
  for (const key in attrs) {
    const value: unknown = (attrs as Record<string, unknown>)[key];
    if (key === '__proto__') {
      delete (attrs as Record<string, unknown>)[key];
    } else if (key.length < 1 || key.length > MAX_ATTRIBUTE_KEY_LENGTH) {
      ctx.issues.push({ code: 'custom', message: `keys are 1 to ${MAX_ATTRIBUTE_KEY_LENGTH} characters`, input: key, path: [key] });
    } else if (!isAttributeValue(value)) {
      ctx.issues.push({ code: 'custom', message: 'must be a string, number, boolean or an array of one of those', input: value, path: [key] });
    }
  }
});
export type Attributes = z.infer<typeof Attributes>;

export const SpanStatus = z.object({
  code: z.enum(['unset', 'ok', 'error']),
  message: z.string().optional(),
});
export type SpanStatus = z.infer<typeof SpanStatus>;

export const SpanEvent = z.object({
  name: z.string().min(1),
  timeUnixNano: UnixNano,
  attributes: Attributes.optional(),
});
export type SpanEvent = z.infer<typeof SpanEvent>;

const version = z.literal(PROTOCOL_VERSION);

export const HelloRecord = z.object({
  v: version,
  type: z.literal('hello'),
  resource: Attributes.optional(),
  sdk: z.object({ name: z.string(), version: z.string() }).optional(),
});
export type HelloRecord = z.infer<typeof HelloRecord>;

export const SpanRecord = z
  .object({
    v: version,
    type: z.literal('span'),
    traceId: TraceId,
    spanId: SpanId,
    parentSpanId: SpanId.optional(),
    name: z.string().min(1),
    startTimeUnixNano: UnixNano,
    endTimeUnixNano: UnixNano,
    status: SpanStatus.optional(),
    attributes: Attributes.optional(),
    events: z.array(SpanEvent).optional(),
  })
  // zod runs refinements even after a field failed: compare only strings (a malformed one already
  // failed its field check, whose issue comes first and names the reason).
  .refine((s) => !isText(s.startTimeUnixNano) || !isText(s.endTimeUnixNano) || !nanoBefore(s.endTimeUnixNano, s.startTimeUnixNano), {
    message: 'must not be before startTimeUnixNano',
    path: ['endTimeUnixNano'],
  });
export type SpanRecord = z.infer<typeof SpanRecord>;

export const EventRecord = z.object({
  v: version,
  type: z.literal('event'),
  traceId: TraceId,
  /** Optional: the daemon makes one when absent. */
  spanId: SpanId.optional(),
  parentSpanId: SpanId.optional(),
  name: z.string().min(1),
  timeUnixNano: UnixNano,
  attributes: Attributes.optional(),
});
export type EventRecord = z.infer<typeof EventRecord>;

export const StatsRecord = z.object({
  v: version,
  type: z.literal('stats'),
  droppedRecords: z.number().int().nonnegative(),
  reason: z.string().min(1).max(64),
});
export type StatsRecord = z.infer<typeof StatsRecord>;

/**
 * Langfuse's rule for a score id (its ingestion `idSchema`): 1 to 800 characters (room for its
 * storage key) and no carriage return. Checked here, the record is counted invalid with a reason
 * at ingest instead of coming back as a 400 from Langfuse.
 */
export const MAX_SCORE_ID_LENGTH = 800;
const ScoreId = z
  .string()
  .min(1)
  .max(MAX_SCORE_ID_LENGTH, `must be at most ${MAX_SCORE_ID_LENGTH} characters (Langfuse's limit)`)
  .refine((id) => !id.includes('\r'), 'must not contain a carriage return (Langfuse refuses it)');

/** A Langfuse score (sent by the daemon to `POST /api/public/scores`). */
export const ScoreRecord = z.object({
  v: version,
  type: z.literal('score'),
  id: ScoreId.optional(),
  traceId: TraceId.optional(),
  observationId: SpanId.optional(),
  sessionId: z.string().optional(),
  name: z.string().min(1),
  value: Primitive,
  dataType: z.enum(['NUMERIC', 'CATEGORICAL', 'BOOLEAN']).optional(),
  comment: z.string().optional(),
  timeUnixNano: UnixNano.optional(),
});
export type ScoreRecord = z.infer<typeof ScoreRecord>;

export const WireRecord = z.discriminatedUnion('type', [HelloRecord, SpanRecord, EventRecord, StatsRecord, ScoreRecord]);
export type WireRecord = z.infer<typeof WireRecord>;
export type RecordType = WireRecord['type'];
export const RECORD_TYPES: readonly RecordType[] = ['hello', 'span', 'event', 'stats', 'score'];

export { OBSERVATION_TYPES };
