/**
 * Trace and span ids on the SDK's hot path: the same values as `newTraceId` / `newSpanId` of
 * @dspy-o11y/proto (random lowercase hex, never all zeros) at less cost (no call into C++ per
 * id), since a root span needs both.
 */
import { randomBytes } from 'node:crypto';

// Random bytes hex-encoded 4 KiB at a time; an id is cut from that string without a call into
// C++. The all-zero id is invalid in W3C trace context: drawn again (chance 2^-64 or less).
const POOL_BYTES = 4096;
let hex = '';
let at = 0;

/**
 * Cut in pieces under 13 characters, which V8 copies, joined: a slice of 13 and more is a view
 * that keeps the whole 8 KiB pool alive, so each id an app kept (a trace id, to score the trace
 * later) held ~3 KB of heap.
 */
function randomHex(chars: number): string {
  if (at + chars > hex.length) {
    hex = randomBytes(POOL_BYTES).toString('hex');
    at = 0;
  }
  const a = at;
  at += chars;
  return chars === 32
    ? hex.slice(a, a + 11) + hex.slice(a + 11, a + 22) + hex.slice(a + 22, a + 32)
    : hex.slice(a, a + 8) + hex.slice(a + 8, a + 16);
}

const ZERO_TRACE = '0'.repeat(32);
const ZERO_SPAN = '0'.repeat(16);
// An id is a slice, never the same string as the constant, so `===` compares their characters in
// a call into C++ every time; a first digit other than 0 (15 times in 16) settles it at once.
const ZERO = 48;

/** 32 random lowercase hex digits, not all zero. */
export function newTraceId(): string {
  let id = randomHex(32);
  while (id.charCodeAt(0) === ZERO && id === ZERO_TRACE) id = randomHex(32);
  return id;
}

/** 16 random lowercase hex digits, not all zero. */
export function newSpanId(): string {
  let id = randomHex(16);
  while (id.charCodeAt(0) === ZERO && id === ZERO_SPAN) id = randomHex(16);
  return id;
}

const TRACE_ID = /^[0-9a-f]{32}$/;
const SPAN_ID = /^[0-9a-f]{16}$/;
/** 32 lowercase hex digits, not all zero (W3C trace context). */
export const validTraceId = (id: unknown): id is string => typeof id === 'string' && TRACE_ID.test(id) && !/^0+$/.test(id);
/** 16 lowercase hex digits, not all zero. */
export const validSpanId = (id: unknown): id is string => typeof id === 'string' && SPAN_ID.test(id) && !/^0+$/.test(id);
