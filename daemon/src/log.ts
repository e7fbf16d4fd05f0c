/**
 * pino logger (JSON to stderr: stdout belongs to the console exporter). The Langfuse secret key
 * is redacted everywhere: by path for structured fields, and by value in any string a log call
 * carries, including the Basic auth form it is sent in.
 */
import { pino, type DestinationStream, type Logger } from 'pino';

/** The part of pino's async destination (sonic-boom) that closeLog uses. */
type SonicBoom = DestinationStream & { end(): void; destroy(): void; readonly destroyed: boolean; once(event: 'close', fn: () => void): void };

export type { Logger };

/**
 * Bytes of log lines waiting to be written to stderr, at most; past it, new lines are dropped
 * (pino's async destination emits `drop` for each). Without a bound the destination buffered every
 * line for as long as stderr was not read (a stalled pipe, a log collector slower than the daemon):
 * 100,000 `stats` records from a client held ~17 MiB more heap, for good, on the way to OOM.
 */
export const LOG_BUFFER_MAX_BYTES = 4 * 1024 * 1024;

/** How long, at exit, the log lines still waiting may take to be written before they are abandoned. */
export const LOG_EXIT_WAIT_MS = 1000;

/**
 * A gate that opens at most once per `ms` (the first call included), for warnings a client can
 * cause as fast as it writes: the caller sums what happened meanwhile and says it when it opens.
 */
export function oncePer(ms: number): () => boolean {
  let openedAt = -Infinity;
  return () => {
    const now = Date.now();
    if (now - openedAt < ms) return false;
    openedAt = now;
    return true;
  };
}

/**
 * Writes out the log lines still waiting, then closes the destination; resolves once it has, or
 * after `waitMs` (the lines then abandoned: stderr is not being read). Call before `process.exit`:
 * otherwise pino writes the rest synchronously at exit, which on a stderr nobody reads (a stalled
 * pipe, a stopped log collector) blocked the process for good, long after its shutdown timeout.
 */
export function closeLog(logger: Logger, waitMs = LOG_EXIT_WAIT_MS): Promise<void> {
  const dest = (logger as unknown as Record<symbol, unknown>)[pino.symbols.streamSym] as SonicBoom | undefined;
  if (!dest || typeof dest.end !== 'function' || dest.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      dest.destroy(); // what could not be written is dropped, so nothing is left for the exit handler
      resolve();
    }, waitMs);
    dest.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
    try {
      dest.end();
    } catch {
      clearTimeout(timer);
      resolve();
    }
  });
}

/** Secrets of at least this length are cut from text; shorter ones would cut common words. */
export const MIN_SECRET_LENGTH = 4;

/**
 * The `secrets` (of {@link MIN_SECRET_LENGTH} or more) cut out of a text as `[REDACTED]`, longest
 * first (a secret containing another is cut whole). Returns them too, in that order.
 */
export function secretScrubber(secrets: Iterable<string | undefined>): { secrets: readonly string[]; scrub: (text: string) => string } {
  const values = [...new Set(secrets)].filter((s): s is string => typeof s === 'string' && s.length >= MIN_SECRET_LENGTH).sort((a, b) => b.length - a.length);
  return { secrets: values, scrub: (text) => values.reduce((acc, secret) => acc.split(secret).join('[REDACTED]'), text) };
}

/** `destination`: a file descriptor or path (stderr by default). */
export function createLogger(level: string, secrets: readonly (string | undefined)[] = [], destination: number | string = 2): Logger {
  const { secrets: values, scrub } = secretScrubber(secrets);
  const scrubDeep = (v: unknown, depth = 0): unknown => {
    if (typeof v === 'string') return scrub(v);
    if (depth > 4 || v === null || typeof v !== 'object') return v;
    if (v instanceof Error) return { type: v.name, message: scrub(v.message), stack: v.stack && scrub(v.stack) };
    if (Array.isArray(v)) return v.map((x) => scrubDeep(x, depth + 1));
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, scrubDeep(x, depth + 1)]));
  };
  return pino(
    {
      name: 'dspy-o11yd',
      level,
      base: { pid: process.pid },
      redact: {
        paths: ['secretKey', '*.secretKey', 'authorization', '*.authorization', 'headers.authorization', '*.headers.authorization'],
        censor: '[REDACTED]',
      },
      hooks: {
        logMethod(args, method) {
          method.apply(this, (values.length ? args.map((a) => scrubDeep(a)) : args) as Parameters<typeof method>);
        },
      },
    },
    pino.destination({ dest: destination, sync: false, maxLength: LOG_BUFFER_MAX_BYTES }),
  );
}
