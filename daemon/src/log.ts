/**
 * pino logger (JSON to stderr: stdout belongs to the console exporter). The Langfuse secret key
 * is redacted everywhere: by path for structured fields, and by value in any string a log call
 * carries, including the Basic auth form it is sent in.
 */
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string, secrets: readonly (string | undefined)[] = []): Logger {
  const values = secrets.filter((s): s is string => typeof s === 'string' && s.length >= 4);
  const scrub = (s: string) => values.reduce((acc, secret) => acc.split(secret).join('[REDACTED]'), s);
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
    pino.destination({ fd: 2, sync: false }),
  );
}
