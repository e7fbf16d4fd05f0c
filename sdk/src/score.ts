/**
 * Scores (wire record `score`, proto/SCORES.md): an evaluation of a trace, one of its
 * observations, or a session. The input is checked here against what the daemon and Langfuse
 * accept, so a bad score is refused in the app (counted as rejected and dropped, with a debug
 * message) instead of travelling to the daemon to be refused there. Never throws.
 */
import { keepTrace, MAX_SCORE_ID_LENGTH } from '@dspy-o11y/proto';
import { nowUnixNano } from './clock.js';
import { debug } from './config.js';
import { validSpanId, validTraceId } from './ids.js';
import { cfg, countInvalid, countSampledOut, send } from './state.js';

export type ScoreValue = number | string | boolean;
export type ScoreDataType = 'NUMERIC' | 'CATEGORICAL' | 'BOOLEAN';

/** What `SpanHandle.score` takes besides the name and value. */
export interface SpanScoreOptions {
  /** Default: from the value (number → NUMERIC, boolean → BOOLEAN, string → CATEGORICAL). A BOOLEAN score may be given 0 or 1. */
  dataType?: ScoreDataType;
  comment?: string;
  /** Your own id (Langfuse upserts by it): 1 to 800 characters, no carriage return (else the score is dropped). Default: the daemon derives a stable one from the content. */
  id?: string;
}

/** What `score()` takes. */
export interface ScoreOptions extends SpanScoreOptions {
  name: string;
  value: ScoreValue;
  /**
   * The target. With none of `traceId`, `observationId`, `sessionId`: the active span (its trace
   * and its span as the observation), or inside `withTrace` but outside any span, the trace (or
   * inside an OpenTelemetry span only, its trace). An
   * `observationId` alone is taken in the active trace. A `sessionId` alone scores the session.
   */
  traceId?: string;
  /** A span id (16 hex) of the trace. */
  observationId?: string;
  sessionId?: string;
}

/** The score's target and content before checks (values straight from the app). */
export interface ScoreFields {
  traceId: unknown;
  observationId: unknown;
  sessionId: unknown;
  name: unknown;
  value: unknown;
  dataType: unknown;
  comment: unknown;
  id: unknown;
}

const DATA_TYPES = new Set<string>(['NUMERIC', 'CATEGORICAL', 'BOOLEAN']);
/** Stay clear of the daemon's default 1 MiB line limit (as spans do). */
const MAX_RECORD_CHARS = (1024 * 1024 - 4096) / 3;
const MAX_NAME = 1024;

const absent = (v: unknown): boolean => v === undefined || v === null || v === '';

/** Why `f` cannot be sent as a score, or undefined; fills in `dataType` when absent. */
function problem(f: ScoreFields): string | undefined {
  if (typeof f.name !== 'string' || f.name.length === 0 || f.name.length > MAX_NAME) return `name must be a string of 1 to ${MAX_NAME} characters`;
  const v = f.value;
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) return 'a number value must be finite';
  } else if (typeof v === 'string') {
    if (v.length > cfg().maxValueLength) return 'a string value is longer than maxValueLength';
  } else if (typeof v !== 'boolean') return 'value must be a number, a string or a boolean';
  if (f.dataType === undefined) f.dataType = typeof v === 'number' ? 'NUMERIC' : typeof v === 'boolean' ? 'BOOLEAN' : 'CATEGORICAL';
  else if (typeof f.dataType !== 'string' || !DATA_TYPES.has(f.dataType)) return 'dataType must be NUMERIC, CATEGORICAL or BOOLEAN';
  else if (typeof v === 'boolean' && f.dataType !== 'BOOLEAN') return 'a boolean value needs dataType BOOLEAN';
  else if (typeof v === 'string' && f.dataType !== 'CATEGORICAL') return 'a string value needs dataType CATEGORICAL';
  else if (typeof v === 'number' && f.dataType === 'CATEGORICAL') return 'a CATEGORICAL score needs a string value';
  else if (typeof v === 'number' && f.dataType === 'BOOLEAN' && v !== 0 && v !== 1) return 'a BOOLEAN score needs true/false (or 0/1)';
  if (f.traceId !== undefined && !validTraceId(f.traceId)) return 'traceId must be 32 lowercase hex characters, not all zeros';
  if (f.observationId !== undefined && !validSpanId(f.observationId)) return 'observationId must be 16 lowercase hex characters, not all zeros';
  if (f.observationId !== undefined && f.traceId === undefined) return 'an observationId needs the traceId of its trace';
  if (f.sessionId !== undefined && typeof f.sessionId !== 'string') return 'sessionId must be a string';
  if (f.comment !== undefined && typeof f.comment !== 'string') return 'comment must be a string';
  // Langfuse's rule for ids, which the daemon also holds the record to (`invalid_id`).
  if (f.id !== undefined && (typeof f.id !== 'string' || f.id.length === 0 || f.id.length > MAX_SCORE_ID_LENGTH || f.id.includes('\r'))) {
    return `id must be a string of 1 to ${MAX_SCORE_ID_LENGTH} characters without a carriage return`;
  }
  return undefined;
}

/**
 * Checks and sends one score. `sampled` is the decision of the trace it was taken from (the
 * active one); for a trace id given explicitly, the same rule decides: `keepTrace(traceId, ratio)`.
 */
export function emitScore(f: ScoreFields, sampled?: boolean): void {
  try {
    if (cfg().disabled) return;
    for (const k of ['traceId', 'observationId', 'sessionId', 'comment', 'id'] as const) if (absent(f[k])) f[k] = undefined;
    if (typeof f.traceId === 'string') f.traceId = f.traceId.toLowerCase();
    if (typeof f.observationId === 'string') f.observationId = f.observationId.toLowerCase();
    if (f.traceId === undefined && f.sessionId === undefined) {
      debug('score dropped: no traceId or sessionId (score inside a span or withTrace, or give one)');
      countInvalid('score_without_target');
      return;
    }
    const why = problem(f);
    if (why !== undefined) {
      debug(`score dropped: ${why}`);
      countInvalid('invalid_score');
      return;
    }
    if (f.traceId !== undefined && !(sampled ?? keepTrace(f.traceId as string, cfg().sampleRatio))) {
      countSampledOut();
      return;
    }
    let comment = f.comment as string | undefined;
    if (comment !== undefined && comment.length > cfg().maxValueLength) comment = `${comment.slice(0, cfg().maxValueLength)}…`;
    const line = `${JSON.stringify({
      v: 1,
      type: 'score',
      id: f.id,
      traceId: f.traceId,
      observationId: f.observationId,
      sessionId: f.sessionId,
      name: f.name,
      value: f.value,
      dataType: f.dataType,
      comment,
      timeUnixNano: nowUnixNano(),
    })}\n`;
    if (line.length > MAX_RECORD_CHARS && Buffer.byteLength(line) > MAX_RECORD_CHARS * 3) {
      debug('score dropped: too large for the daemon');
      countInvalid('invalid_score');
      return;
    }
    send(line);
  } catch {
    /* never throw */
  }
}
