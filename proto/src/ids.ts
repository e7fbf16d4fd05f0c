/** Helpers shared by the SDK and the daemon for W3C trace-context ids and times. */
import { randomBytes } from 'node:crypto';

// One pooled buffer: ids are generated on the SDK's hot path, and a crypto call per id costs more
// than the rest of a span.
const POOL_SIZE = 4096;
let pool = randomBytes(POOL_SIZE);
let offset = 0;

function randomHex(bytes: number): string {
  for (;;) {
    if (offset + bytes > POOL_SIZE) {
      pool = randomBytes(POOL_SIZE);
      offset = 0;
    }
    const hex = pool.toString('hex', offset, offset + bytes);
    offset += bytes;
    if (!/^0+$/.test(hex)) return hex;
  }
}

export const newTraceId = (): string => randomHex(16);
export const newSpanId = (): string => randomHex(8);

/** Nanoseconds since the epoch as a decimal string, with sub-millisecond precision. */
const originNs = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();
export const nowUnixNano = (): string => (originNs + process.hrtime.bigint()).toString();

/** unix-ns string → ISO 8601 with millisecond precision (what Langfuse keeps). */
export const unixNanoToIso = (ns: string): string => new Date(Number(BigInt(ns) / 1_000_000n)).toISOString();

/**
 * Trace-id ratio sampling, the same decision everywhere (SDK, daemon, other services): the last
 * 14 hex digits (56 bits, the "random" part of a W3C trace id) read as a number below
 * ratio × 2^56 keep the trace. A trace is therefore kept or dropped whole.
 */
export function keepTrace(traceId: string, ratio: number): boolean {
  if (ratio >= 1) return true;
  if (ratio <= 0) return false;
  const random = parseInt(traceId.slice(-14), 16);
  return random < ratio * 2 ** 56;
}
