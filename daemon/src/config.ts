/**
 * Daemon configuration: every `start` flag has an env twin (DESIGN §5). Precedence is
 * flag > env > default; the merged strings are validated by zod, and a bad value becomes one
 * clear line naming the flag (and the env variable it came from), then exit code 2.
 */
import { accessSync, closeSync, constants, mkdirSync, openSync, rmdirSync, statSync, unlinkSync, type Stats } from 'node:fs';
import { isIP } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { z } from 'zod';
import { DECIMAL_NUMBER, parseIngestToken, type Attributes } from '@dspy-o11y/proto';
import { RESOURCE } from '@dspy-o11y/proto/vocabulary';
import { appendUrlPath, safeDestination } from './export/http-common.js';
import type { Compression } from './export/http-exporter.js';
import type { Outbound } from './export/outbound.js';
import { proxyFor } from './export/proxy-choice.js';
import { isProblem, resolveOutbound } from './config-outbound.js';

export type Encoding = 'protobuf' | 'json';
export type ExporterChoice = 'langfuse' | 'otlp' | 'console' | 'file';

/** One option: its flag, the env variables that set it (the first one set and not empty wins), its default and its help. */
export interface OptionSpec {
  readonly key: keyof RawConfig;
  readonly flag: string;
  readonly env: readonly string[];
  /**
   * OpenTelemetry's exporter variables, read after `env` and only with `--exporter otlp`: an app's
   * own (a sidecar often shares its environment) must not configure, or stop, another exporter.
   */
  readonly otlpEnv?: readonly string[];
  readonly help: string;
  readonly default?: string;
}

/**
 * A whole number written as a decimal number (surrounding whitespace ignored): `1000`, and the
 * `1e3` or `1000.0` that `z.coerce.number()` took before, so such a config keeps working. Not
 * `z.coerce.number()` itself: it read `' '` as 0 (for --max-connections: no limit) and `0x10` as 16.
 */
const int = (min: number, max = Number.MAX_SAFE_INTEGER, maxMessage?: string) =>
  z
    .string()
    .trim()
    .regex(DECIMAL_NUMBER, 'must be a whole number in decimal digits')
    .transform(Number)
    // Bounds first: 1e20 is too big, not "not whole" (.int() also refuses past 2^53).
    .pipe(z.number().min(min).max(max, maxMessage).refine(Number.isInteger, 'must be a whole number'));
/** The longest delay a Node timer takes (2^31 - 1 ms): a longer one fires after 1 ms, with a warning each time. */
export const TIMER_MAX_MS = 2_147_483_647;
/**
 * A time in ms that a timer waits for. Past TIMER_MAX_MS, --export-timeout timed every export out
 * at once (each resent, then dropped), --flush-interval woke the batcher every ms (a warning line
 * each time) and --shutdown-timeout cut the flush short at once; --partial-line-timeout (a socket
 * timeout, which Node caps itself) printed a plain-text TimeoutOverflowWarning into the JSON log.
 */
const ms = (min: number) => int(min, TIMER_MAX_MS, `must be at most ${TIMER_MAX_MS} ms (about 24.8 days), the longest a timer can wait`);
/** A decimal number (`0.25`, `.5`, `1e-2`); `' '` was 0 (a sample ratio that dropped every trace). */
const decimal = z
  .string()
  .trim()
  .regex(DECIMAL_NUMBER, 'must be a decimal number')
  .transform(Number);
/**
 * Strings are trimmed: a value from an env file or a mounted file often ends with a newline or
 * spaces, which made a socket path, a file name or a release differ from the one meant and a URL
 * post to `/path%20/…`. A value of only whitespace is an error (as for numbers), not unset.
 */
const text = (what = 'must not be blank') => z.string().trim().min(1, what);
/** `''` disables a listener; a blank value is refused rather than read as `''`. */
const listener = (what: string) =>
  z
    .string()
    .refine((v) => v === '' || v.trim() !== '', `is blank: give ${what}, or '' to disable it`)
    .transform((v) => v.trim());
/** An enum, read in any case as OpenTelemetry reads its enum variables (`--log-level INFO`). */
const oneOf = <const T extends readonly [string, ...string[]]>(values: T) => z.string().trim().toLowerCase().pipe(z.enum(values));
const hostPort = listener('host:port').superRefine((v, ctx) => {
  if (v === '' || parseHostPort(v) !== undefined) return;
  // Go's (and the Collector's) `:4318` means every interface; here the host is said, as start requires a token for it.
  const message = /^:\d+$/.test(v)
    ? 'has no host: 127.0.0.1:4318 for this machine only, 0.0.0.0:4318 for every interface (with --ingest-token)'
    : 'must be host:port (e.g. 127.0.0.1:4318) or empty to disable';
  ctx.addIssue({ code: 'custom', message });
});
const url = z.string().trim().refine((v) => {
  try {
    const u = new URL(v);
    return u.protocol === 'http:' || u.protocol === 'https:';
  } catch {
    return false;
  }
}, 'must be an http:// or https:// URL');

/**
 * `scheme://user:pass@host…` (or `user:pass@host…`) with the credentials shown as `***`: all up to
 * the last `@`, since a raw password may hold `/`, `?`, `#` or a space (base64 tokens do), which
 * would otherwise end the match before its `@` and show it whole. A path's `@` is masked too.
 */
const maskUrlCredentials = (v: string) => v.replace(/^(\s*(?:[a-z][a-z0-9+.-]*:)?\/\/|\s*).*@/is, '$1***@');

/** An HTTP header name (RFC 9110 token): undici refuses anything else on every request. */
const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const decodeLoose = (s: string): string => {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
};
/**
 * Why an `--otlp-headers` value (`k=v,k2=v2`, percent-encoded, read as parseOtlpHeaders reads
 * it) could not be sent, or undefined. Checked at start: a malformed entry was dropped silently
 * (`Authorization: Bearer x`) or made every export fail (`invalid header key`) until the batch
 * was dropped, instead of one line at start.
 */
export function otlpHeadersProblem(value: string): string | undefined {
  // Header values are often credentials: a problem names the entry by position, never its text.
  const items = value.split(',');
  for (let i = 0; i < items.length; i++) {
    const item = items[i]!;
    if (item.trim() === '') continue;
    const eq = item.indexOf('=');
    const key = eq > 0 ? decodeLoose(item.slice(0, eq).trim()) : '';
    if (!HEADER_NAME.test(key)) return `entry ${i + 1} is not name=value with a valid header name (expected k=v,k2=v2, percent-encoded)`;
    const name = key.toLowerCase();
    const headerValue = decodeLoose(item.slice(eq + 1).trim());
    if (/[\r\n\0]/.test(headerValue)) return `the value of entry ${i + 1} (${key}) holds a line break or NUL`;
    if (CLIENT_OWNED_HEADERS.has(name)) return `entry ${i + 1} (${name}) is a header the HTTP client sets itself and refuses to be given (every export would fail): remove it`;
    if (name === 'connection' && !headerValue.split(',').every((token) => HEADER_NAME.test(token.trim()))) {
      return `entry ${i + 1} (connection) must be a list of header names separated by commas (as close), which the HTTP client checks on every export`;
    }
  }
  return undefined;
}

/**
 * Headers undici refuses in a request (measured with undici 7: it throws before sending, on every
 * export, each retried until the batch was dropped). `content-length` is the body's; a given one
 * never matches every batch. `host` and `connection: close` are sent.
 */
const CLIENT_OWNED_HEADERS = new Set(['transfer-encoding', 'keep-alive', 'upgrade', 'expect', 'content-length']);

/**
 * Why the otlp exporter's headers cannot be sent to `endpoint` with `outbound`, or undefined:
 * through a proxy, undici takes Proxy-Authorization from the proxy's URL only and refuses it
 * in a request (every export failed); sent directly it is an ordinary header.
 */
function otlpProxyHeaderProblem(headers: string, endpoint: string, outbound: Outbound): string | undefined {
  const entry = headers.split(',').findIndex((item) => decodeLoose(item.slice(0, Math.max(item.indexOf('='), 0)).trim()).toLowerCase() === 'proxy-authorization');
  if (entry === -1 || !proxyFor(new URL(endpoint).origin, outbound.proxy)) return undefined;
  const variable = new URL(endpoint).protocol === 'https:' ? 'HTTPS_PROXY' : 'HTTP_PROXY';
  return `entry ${entry + 1} (proxy-authorization) cannot be sent through the proxy of ${variable}: put the proxy's credentials in its URL (http://user:password@proxy:3128), or name the endpoint's host in NO_PROXY`;
}
/**
 * `--ingest-token` as the daemon compares it (trimmed), or an issue: parseIngestToken is the
 * SDK's rule too. A token no request could carry or match got a 401 on every request, which
 * `start` gave no sign of. An issue never shows the token.
 */
const ingestToken = z.string().transform((v, ctx) => {
  const t = parseIngestToken(v);
  if (t.ok) return t.token;
  ctx.issues.push({ code: 'custom', message: t.problem, input: v });
  return z.NEVER;
});

const otlpHeaders = z.string().superRefine((v, ctx) => {
  // The rule for every value: only whitespace (an empty secret file) is a mistake, not "no headers".
  const problem = v.trim() === '' ? 'is blank' : otlpHeadersProblem(v);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});

const ConfigSchema = z.object({
  socket: listener('a path'),
  http: hostPort,
  exporter: oneOf(['langfuse', 'otlp', 'console', 'file']).optional(),
  langfuseHost: url,
  otlpEndpoint: url.optional(),
  otlpHeaders: otlpHeaders.optional(),
  otlpCompression: oneOf(['gzip', 'none']),
  file: text('is blank').optional(),
  encoding: z
    .string()
    .trim()
    .toLowerCase()
    // OTEL_EXPORTER_OTLP_PROTOCOL's values: the same two encodings over HTTP, and gRPC, which we do not speak.
    .transform((v) => (v === 'http/protobuf' ? 'protobuf' : v === 'http/json' ? 'json' : v))
    .refine((v) => v !== 'grpc', 'the otlp exporter sends OTLP/HTTP: http/protobuf or http/json (a Collector takes it on port 4318), not grpc')
    .pipe(z.enum(['protobuf', 'json'])),
  queueMaxSpans: int(1),
  queueMaxBytes: int(1024),
  memoryLimit: int(0).optional(),
  batchMaxSpans: int(1),
  batchMaxBytes: int(1024),
  flushInterval: ms(1),
  exportTimeout: ms(1),
  maxRetries: int(0),
  spoolDir: text('is blank').optional(),
  shutdownTimeout: ms(0),
  maxRecordBytes: int(64),
  partialLineTimeout: ms(0),
  maxConnections: int(0),
  httpMaxConnections: int(0),
  httpReadTimeout: int(1),
  ingestToken: ingestToken.optional(),
  logLevel: oneOf(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
  sampleRatio: decimal.pipe(z.number().min(0).max(1)),
  // Langfuse's rule for an environment (FACTS.md): checked here, not sanitized, since it is ours to get right.
  environment: z
    .string()
    .trim()
    .regex(/^[a-z0-9_-]{1,40}$/, 'must be 1 to 40 characters of a-z, 0-9, - and _ (what Langfuse accepts as an environment)')
    .refine((v) => !v.startsWith('langfuse'), 'must not start with "langfuse" (reserved by Langfuse)')
    .optional(),
  release: text('is blank').max(1024).optional(),
  nice: int(-20, 19),
});
export type RawConfig = { [K in keyof z.input<typeof ConfigSchema>]?: string };

/**
 * `--max-connections` by default. Descriptors are what a leaking client (a connection per request,
 * never closed) exhausts, and then the exporter cannot open its own. Node raises its soft
 * RLIMIT_NOFILE to the hard limit at start (measured: a shell's soft 1024 became the hard 20000),
 * so the budget is the hard limit, 1024 at its lowest (`ulimit -n 1024`). 512, plus at most
 * REFUSED_MAX_OPEN (64) refused connections being closed, leaves the other half for the exporter,
 * HTTP clients, the spool, logs and the daemon itself (23 when idle); an app process needs one.
 */
export const DEFAULT_MAX_CONNECTIONS = 512;

/**
 * `--http-max-connections` by default: a cap of its own (a shared count would let HTTP clients
 * refuse socket apps). HTTP connections go after seconds (idle keep-alive, --http-read-timeout),
 * but a client opening them faster than that held as many descriptors as it liked. 256 with the
 * socket's 512 + 64 leaves ~190 of the lowest usual hard limit (1024) for the exporter, the
 * spool, logs and the daemon itself.
 */
const DEFAULT_HTTP_MAX_CONNECTIONS = 256;

export const OPTIONS: readonly OptionSpec[] = [
  { key: 'socket', flag: '--socket', env: ['DSPY_O11YD_SOCKET'], default: '/tmp/dspy-o11yd.sock', help: "Unix socket to listen on ('' disables)" },
  { key: 'http', flag: '--http', env: ['DSPY_O11YD_HTTP'], default: '127.0.0.1:4318', help: "HTTP host:port for /v1/ingest, /v1/traces and ops ('' disables)" },
  { key: 'exporter', flag: '--exporter', env: ['DSPY_O11YD_EXPORTER'], help: 'langfuse | otlp | console | file (default: langfuse when both Langfuse keys are set, else console)' },
  // LANGFUSE_BASE_URL first: Langfuse's SDKs read it before LANGFUSE_HOST, which they deprecate.
  { key: 'langfuseHost', flag: '--langfuse-host', env: ['LANGFUSE_BASE_URL', 'LANGFUSE_HOST'], default: 'https://cloud.langfuse.com', help: 'Langfuse base URL' },
  { key: 'otlpEndpoint', flag: '--otlp-endpoint', env: [], otlpEnv: ['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', 'OTEL_EXPORTER_OTLP_ENDPOINT'], help: 'OTLP/HTTP traces endpoint for --exporter otlp' },
  { key: 'otlpHeaders', flag: '--otlp-headers', env: [], otlpEnv: ['OTEL_EXPORTER_OTLP_TRACES_HEADERS', 'OTEL_EXPORTER_OTLP_HEADERS'], help: 'headers for --exporter otlp, as k=v,k2=v2' },
  // gzip by default (OpenTelemetry's default is none): every Collector and OTLP backend takes it.
  { key: 'otlpCompression', flag: '--otlp-compression', env: [], otlpEnv: ['OTEL_EXPORTER_OTLP_TRACES_COMPRESSION', 'OTEL_EXPORTER_OTLP_COMPRESSION'], default: 'gzip', help: 'gzip | none: the body encoding of --exporter otlp' },
  { key: 'file', flag: '--file', env: ['DSPY_O11YD_FILE'], help: 'path for --exporter file (OTLP JSON lines)' },
  { key: 'encoding', flag: '--encoding', env: ['DSPY_O11YD_ENCODING'], otlpEnv: ['OTEL_EXPORTER_OTLP_TRACES_PROTOCOL', 'OTEL_EXPORTER_OTLP_PROTOCOL'], default: 'protobuf', help: 'protobuf | json (also http/protobuf | http/json, as OTEL_EXPORTER_OTLP_PROTOCOL)' },
  { key: 'queueMaxSpans', flag: '--queue-max-spans', env: ['DSPY_O11YD_QUEUE_MAX_SPANS'], default: '200000', help: 'queue bound in spans; overflow drops the oldest' },
  { key: 'queueMaxBytes', flag: '--queue-max-bytes', env: ['DSPY_O11YD_QUEUE_MAX_BYTES'], default: String(256 * 1024 * 1024), help: 'queue bound in bytes of memory; overflow drops the oldest' },
  { key: 'memoryLimit', flag: '--memory-limit', env: ['DSPY_O11YD_MEMORY_LIMIT'], help: 'RSS in bytes past which the queue stops growing and drops its oldest instead (default: --queue-max-bytes + 85 MB, at least 200 MB; 0 disables)' },
  { key: 'batchMaxSpans', flag: '--batch-max-spans', env: ['DSPY_O11YD_BATCH_MAX_SPANS'], default: '2048', help: 'spans per export request at most' },
  { key: 'batchMaxBytes', flag: '--batch-max-bytes', env: ['DSPY_O11YD_BATCH_MAX_BYTES'], default: String(4 * 1024 * 1024), help: 'record bytes per export request at most' },
  { key: 'flushInterval', flag: '--flush-interval', env: ['DSPY_O11YD_FLUSH_INTERVAL'], default: '1000', help: 'ms a span may wait for a fuller batch' },
  { key: 'exportTimeout', flag: '--export-timeout', env: ['DSPY_O11YD_EXPORT_TIMEOUT'], otlpEnv: ['OTEL_EXPORTER_OTLP_TRACES_TIMEOUT', 'OTEL_EXPORTER_OTLP_TIMEOUT'], default: '10000', help: 'ms before an export request is abandoned (then retried)' },
  { key: 'maxRetries', flag: '--max-retries', env: ['DSPY_O11YD_MAX_RETRIES'], default: '20', help: 'retries of one batch before it is dropped' },
  { key: 'spoolDir', flag: '--spool-dir', env: ['DSPY_O11YD_SPOOL_DIR'], help: 'directory where spans still queued at shutdown are saved and reloaded at start' },
  { key: 'shutdownTimeout', flag: '--shutdown-timeout', env: ['DSPY_O11YD_SHUTDOWN_TIMEOUT'], default: '10000', help: 'ms to flush on SIGTERM/SIGINT' },
  { key: 'maxRecordBytes', flag: '--max-record-bytes', env: ['DSPY_O11YD_MAX_RECORD_BYTES'], default: String(1024 * 1024), help: 'longest accepted record line' },
  { key: 'partialLineTimeout', flag: '--partial-line-timeout', env: ['DSPY_O11YD_PARTIAL_LINE_TIMEOUT'], default: '60000', help: 'ms a socket connection may hold part of a record without sending more; then it is closed and the part counted invalid (incomplete); 0 disables' },
  { key: 'maxConnections', flag: '--max-connections', env: ['DSPY_O11YD_MAX_CONNECTIONS'], default: String(DEFAULT_MAX_CONNECTIONS), help: 'Unix socket connections open at once at most (an app holds one); past it a new one gets EOF at once, what it already wrote is still read, and it is counted in connections_refused_total; 0: no limit' },
  { key: 'httpMaxConnections', flag: '--http-max-connections', env: ['DSPY_O11YD_HTTP_MAX_CONNECTIONS'], default: String(DEFAULT_HTTP_MAX_CONNECTIONS), help: 'HTTP connections open at once at most (keep-alive ones included); past it a new one is closed unanswered (the client retries) and counted in connections_refused_total{transport="http"}; 0: no limit' },
  { key: 'httpReadTimeout', flag: '--http-read-timeout', env: ['DSPY_O11YD_HTTP_READ_TIMEOUT'], default: '30000', help: 'ms an HTTP request may take to arrive whole; a slower one is answered 408 and closed (a client that stalls mid-body must not hold its memory)' },
  { key: 'ingestToken', flag: '--ingest-token', env: ['DSPY_O11YD_INGEST_TOKEN'], help: "bearer token required on HTTP ingest (/v1/ingest, /v1/traces; Langfuse's OTLP path also takes the daemon's Langfuse keys), /v1/status and /v1/tail (required when --http is not loopback)" },
  { key: 'logLevel', flag: '--log-level', env: ['DSPY_O11YD_LOG_LEVEL'], default: 'info', help: 'fatal | error | warn | info | debug | trace | silent' },
  { key: 'nice', flag: '--nice', env: ['DSPY_O11YD_NICE'], default: '0', help: 'CPU scheduling priority of the daemon\'s threads, -20..19 (higher yields more, e.g. 10: the app comes first when CPU is short)' },
  { key: 'sampleRatio', flag: '--sample-ratio', env: ['DSPY_O11YD_SAMPLE_RATIO', 'LANGFUSE_SAMPLE_RATE'], default: '1', help: 'fraction of traces kept (decided by trace id)' },
  { key: 'environment', flag: '--environment', env: ['DSPY_O11YD_ENVIRONMENT', 'LANGFUSE_TRACING_ENVIRONMENT'], help: 'deployment.environment.name (the Langfuse environment) of spans and scores whose sender sets none' },
  { key: 'release', flag: '--release', env: ['DSPY_O11YD_RELEASE', 'LANGFUSE_RELEASE'], help: 'service.version (the Langfuse release) of spans and scores whose sender sets none' },
];

export interface DaemonConfig {
  socket: string | undefined;
  http: { host: string; port: number } | undefined;
  exporter: ExporterChoice;
  /** Why the exporter was chosen, for the startup line (e.g. a warning that keys are missing). */
  exporterNote?: string;
  langfuse: { host: string; publicKey?: string; secretKey?: string };
  otlp: { endpoint?: string; headers?: string; compression: Compression };
  /** Proxy from HTTPS_PROXY / HTTP_PROXY / NO_PROXY, for every request to the backend (traces, scores, check); for otlp, TLS files too. */
  outbound: Outbound;
  file?: string;
  encoding: Encoding;
  queue: { maxSpans: number; maxBytes: number };
  /** RSS ceiling in bytes (0: none). */
  memoryLimitBytes: number;
  batch: { maxSpans: number; maxBytes: number; flushIntervalMs: number };
  exportTimeoutMs: number;
  maxRetries: number;
  spoolDir?: string;
  shutdownTimeoutMs: number;
  maxRecordBytes: number;
  /** ms a socket connection may hold a partial line without sending more (0: no limit). */
  partialLineTimeoutMs: number;
  /** Unix socket connections open at once at most (0: no limit). */
  maxConnections: number;
  /** HTTP connections open at once at most (0: no limit); counted apart from the socket's. */
  httpMaxConnections: number;
  /** ms an HTTP request may take to arrive whole (Fastify's requestTimeout). */
  httpReadTimeoutMs: number;
  ingestToken?: string;
  logLevel: string;
  sampleRatio: number;
  /**
   * Resource attributes a sender's resource gets when it lacks them (`--environment`,
   * `--release`): what LANGFUSE_TRACING_ENVIRONMENT and LANGFUSE_RELEASE do in Langfuse's SDKs.
   */
  resourceDefaults: Attributes;
  nice: number;
  /** Where each value came from, as error messages name it: `--spool-dir (from DSPY_O11YD_SPOOL_DIR)`. */
  origin?: Partial<Record<keyof RawConfig, string>>;
}

export class ConfigError extends Error {}

/**
 * `--memory-limit` by default: the queue's bound + 85 MB for the process itself (~85 MiB idle
 * RSS, ~45 of it Node's own binary). The ceiling stops the queue's slabs, not V8's heaps, so RSS
 * can pass it by a few MB (≤ 8 MiB measured in a 1,000,000-span flood): 85 keeps the peak under
 * the queue's bound + 100 MB.
 */
export const DEFAULT_MEMORY_HEADROOM_BYTES = 85_000_000;
/**
 * …but never under 200 MB: under load Node's own RSS is ~135 MiB whatever the queue holds (V8's
 * young generation, the worker, batches in flight; measured 152 MiB with a full 16 MiB queue), so
 * with a small queue bound + 85 MB the ceiling would hold the queue near empty.
 */
export const MIN_DEFAULT_MEMORY_LIMIT_BYTES = 200_000_000;

export function parseHostPort(v: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9a-fA-F:]+)\]|([^:\s]+)):(\d{1,5})$/.exec(v);
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  return { host: m[1] ?? m[2]!, port };
}

// Host names are not case-sensitive: LOCALHOST is loopback too.
export const isLoopback = (host: string) =>
  host.toLowerCase() === 'localhost' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));

/**
 * Merge flags (already parsed by commander, as strings) with the environment and defaults,
 * validate, and derive the final config. Throws ConfigError with one line naming the flag.
 */
export function resolveConfig(flags: RawConfig, env: NodeJS.ProcessEnv = process.env): DaemonConfig {
  const raw: Record<string, string | undefined> = {};
  const origin: Record<string, string> = {};
  /** Options set by neither a flag nor the environment. */
  const defaulted = new Set<string>();
  const exporterSet = flags.exporter || OPTIONS.find((o) => o.key === 'exporter')!.env.map((name) => env[name]).find(Boolean);
  const otlp = exporterSet?.trim().toLowerCase() === 'otlp';
  for (const o of OPTIONS) {
    // An empty value is no value (as OpenTelemetry reads its variables: \`X=\` is X unset), except
    // where '' has a meaning (disable a listener): the next variable, else the default, applies.
    const unset = (v: string | undefined) => v === undefined || (v === '' && o.key !== 'socket' && o.key !== 'http');
    const fromFlag = unset(flags[o.key]) ? undefined : flags[o.key];
    const envName = (otlp && o.otlpEnv ? [...o.env, ...o.otlpEnv] : o.env).find((name) => !unset(env[name]));
    if (fromFlag !== undefined) {
      raw[o.key] = fromFlag;
      origin[o.key] = o.flag;
    } else if (envName !== undefined) {
      raw[o.key] = env[envName];
      origin[o.key] = `${o.flag} (from ${envName})`;
    } else {
      raw[o.key] = o.default;
      origin[o.key] = o.flag;
      defaulted.add(o.key);
    }
  }
  const parsed = ConfigSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const key = String(issue.path[0]);
    const option = OPTIONS.find((o) => o.key === key);
    // Secrets are not echoed: the token, the headers' values (usually an Authorization header),
    // and a URL's credentials (`user:pass@`, masked by pattern: the value may not parse as a URL).
    const value = key === 'otlpEndpoint' || key === 'langfuseHost' ? maskUrlCredentials(raw[key] ?? '') : raw[key];
    const shown = key === 'otlpHeaders' || key === 'ingestToken' ? '' : ` ${JSON.stringify(value)}`;
    throw new ConfigError(`invalid ${origin[key] ?? option?.flag ?? key}${shown}: ${issue.message}`);
  }
  const c = parsed.data;
  // Trimmed, as the ingest token is: a key read from a mounted secret ends with a newline, which
  // went into the Basic credentials (401 on every export). Langfuse's keys never hold whitespace.
  const publicKey = env.LANGFUSE_PUBLIC_KEY?.trim() || undefined;
  const secretKey = env.LANGFUSE_SECRET_KEY?.trim() || undefined;

  let exporter: ExporterChoice;
  /** What start warns about in one line (config.exporterNote), in this order. */
  const notes: string[] = [];
  if (c.exporter) exporter = c.exporter;
  else if (publicKey && secretKey) exporter = 'langfuse';
  else {
    exporter = 'console';
    notes.push('LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY are not both set: printing spans to stdout instead of sending them to Langfuse');
  }
  if (exporter === 'langfuse' && !(publicKey && secretKey)) {
    throw new ConfigError('invalid --exporter langfuse: LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY must both be set (keys are read from the environment only)');
  }
  if (exporter === 'otlp' && !c.otlpEndpoint) {
    throw new ConfigError('invalid --exporter otlp: needs --otlp-endpoint (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT)');
  }
  if (exporter === 'file' && !c.file) throw new ConfigError('invalid --exporter file: needs --file PATH');
  // Said, not refused: the setting is harmless, but a user who asked for protobuf should know.
  if ((exporter === 'console' || exporter === 'file') && !defaulted.has('encoding') && c.encoding !== 'json') {
    const note = `${origin.encoding} ${c.encoding} does not apply to the ${exporter} exporter, which writes OTLP/JSON lines`;
    notes.push(note);
  }
  // Another exporter's destination, given while this one was chosen (no --exporter: the default
  // applied): said too, or spans go to Langfuse or stdout while the user named a Collector or a file.
  for (const owner of ['otlp', 'file'] as const) {
    const keys = owner === 'otlp' ? (['otlpEndpoint', 'otlpHeaders', 'otlpCompression'] as const) : (['file'] as const);
    const given = keys.filter((k) => !defaulted.has(k)).map((k) => origin[k]);
    if (exporter === owner || given.length === 0) continue;
    const note = `${given.join(', ')} ${given.length > 1 ? 'do' : 'does'} not apply to the ${exporter} exporter (only to --exporter ${owner})`;
    notes.push(note);
  }

  const outbound = resolveOutbound(env, exporter);
  if (isProblem(outbound)) throw new ConfigError(`invalid ${outbound.variable} ${JSON.stringify(maskUrlCredentials(outbound.value))}: ${outbound.problem}`);
  const proxyHeaderProblem = exporter === 'otlp' && c.otlpHeaders ? otlpProxyHeaderProblem(c.otlpHeaders, c.otlpEndpoint!, outbound) : undefined;
  if (proxyHeaderProblem) throw new ConfigError(`invalid ${origin.otlpHeaders}: ${proxyHeaderProblem}`);

  const http = c.http === '' ? undefined : parseHostPort(c.http);
  if (http && !isLoopback(http.host) && !c.ingestToken) {
    throw new ConfigError(`invalid --http ${c.http}: a non-loopback address needs --ingest-token (or DSPY_O11YD_INGEST_TOKEN)`);
  }
  if (c.socket === '' && !http) throw new ConfigError('invalid --socket and --http: both are disabled, nothing could send spans');
  if (c.socket !== '') {
    const bad = (why: string) => new ConfigError(`invalid ${origin.socket} ${JSON.stringify(c.socket)}: ${why}`);
    // Linux's sun_path holds 108 bytes with the NUL: a longer path is silently cut by bind().
    const bytes = Buffer.byteLength(c.socket);
    if (bytes > MAX_SOCKET_PATH_BYTES) throw bad(`${bytes} bytes, longer than the ${MAX_SOCKET_PATH_BYTES} a Unix socket path may have`);
    const parent = dirname(c.socket);
    let isDir: boolean;
    try {
      isDir = statSync(parent).isDirectory();
    } catch {
      // Only a shell expands ~; from an env file or a unit file it is a directory named ~.
      throw bad(`directory ${parent} does not exist${c.socket.startsWith('~') ? ' (~ is not expanded: a shell does that, an env file does not; give the full path)' : ''}`);
    }
    if (!isDir) throw bad(`${parent} is not a directory`);
  }
  if (c.batchMaxSpans > c.queueMaxSpans) {
    throw new ConfigError(`invalid --batch-max-spans ${c.batchMaxSpans}: larger than --queue-max-spans ${c.queueMaxSpans}`);
  }

  // OTEL_EXPORTER_OTLP_ENDPOINT is a base URL: the spec appends the signal path to its path (the
  // flag and the TRACES variable are used as they are). Decided by where the value came from: an
  // empty flag is unset, and then the base URL was used as a full one.
  let otlpEndpoint = c.otlpEndpoint;
  if (otlpEndpoint && origin.otlpEndpoint?.endsWith('(from OTEL_EXPORTER_OTLP_ENDPOINT)')) {
    // The spec's rule, kept; but a full URL given as the base is a common slip, and every export
    // would be refused (404) without a word at start.
    if (/\/v1\/traces\/*$/.test(new URL(otlpEndpoint).pathname)) {
      const note = 'OTEL_EXPORTER_OTLP_ENDPOINT is a base URL: /v1/traces is appended to it (…/v1/traces/v1/traces); for a full URL set OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or --otlp-endpoint';
      notes.push(note);
    }
    otlpEndpoint = appendUrlPath(otlpEndpoint, '/v1/traces');
  } else if (otlpEndpoint && exporter === 'otlp' && new URL(otlpEndpoint).pathname === '/') {
    // The spec's rule again (a full URL is used as it is, so spans go to /), kept; but `http://collector:4318`
    // is usually meant as the base URL, and a Collector answers 404 on / to every export.
    const shown = safeDestination(new URL(otlpEndpoint));
    const note = `${origin.otlpEndpoint} ${shown} has no path: spans are posted to / (a full URL is used as it is, as the OpenTelemetry spec says); a Collector takes them at ${safeDestination(new URL(appendUrlPath(otlpEndpoint, '/v1/traces')))}`;
    notes.push(note);
  }

  return {
    socket: c.socket === '' ? undefined : c.socket,
    http,
    exporter,
    exporterNote: notes.length > 0 ? notes.join('; ') : undefined,
    langfuse: { host: c.langfuseHost.replace(/\/+$/, ''), publicKey, secretKey },
    otlp: { endpoint: otlpEndpoint, headers: c.otlpHeaders, compression: c.otlpCompression },
    outbound,
    file: c.file,
    encoding: c.encoding,
    queue: { maxSpans: c.queueMaxSpans, maxBytes: c.queueMaxBytes },
    memoryLimitBytes: c.memoryLimit ?? Math.max(c.queueMaxBytes + DEFAULT_MEMORY_HEADROOM_BYTES, MIN_DEFAULT_MEMORY_LIMIT_BYTES),
    batch: { maxSpans: c.batchMaxSpans, maxBytes: c.batchMaxBytes, flushIntervalMs: c.flushInterval },
    exportTimeoutMs: c.exportTimeout,
    maxRetries: c.maxRetries,
    spoolDir: c.spoolDir,
    shutdownTimeoutMs: c.shutdownTimeout,
    maxRecordBytes: c.maxRecordBytes,
    partialLineTimeoutMs: c.partialLineTimeout,
    maxConnections: c.maxConnections,
    httpMaxConnections: c.httpMaxConnections,
    httpReadTimeoutMs: c.httpReadTimeout,
    ingestToken: c.ingestToken,
    logLevel: c.logLevel,
    sampleRatio: c.sampleRatio,
    resourceDefaults: {
      ...(c.environment !== undefined && { [RESOURCE.environment]: c.environment }),
      ...(c.release !== undefined && { [RESOURCE.serviceVersion]: c.release }),
    },
    nice: c.nice,
    origin,
  };
}

/**
 * mkdir -p one level at a time: Node's `recursive: true` loops forever where a parent keeps
 * answering ENOENT (e.g. under /proc), which would hang the start instead of failing it.
 */
function makeDirs(dir: string, created: string[] = []): void {
  const missing: string[] = [];
  for (let d = resolve(dir); ; d = dirname(d)) {
    try {
      statSync(d);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || dirname(d) === d) throw err;
      missing.push(d);
    }
  }
  for (const d of missing.reverse()) {
    mkdirSync(d);
    created.push(d);
  }
}

/** sun_path is 108 bytes on Linux, the last for the terminating NUL. */
export const MAX_SOCKET_PATH_BYTES = 107;

/**
 * For `start`, before anything listens: create `--spool-dir` and prove it writable, and open
 * `--file` for append. A path that cannot work fails now with one line naming the flag, not at
 * the first export or at shutdown (where the spans it was meant to keep would be lost).
 * `keep: false` (for `check`): the same test, then what it created is removed again.
 */
export function preparePaths(config: DaemonConfig, { keep = true }: { keep?: boolean } = {}): void {
  const name = (key: keyof RawConfig, flag: string) => config.origin?.[key] ?? flag;
  const reason = (err: unknown) => (err as NodeJS.ErrnoException).code ?? (err as Error).message;
  if (config.spoolDir) {
    const probe = join(config.spoolDir, `.write-probe-${process.pid}`);
    const created: string[] = [];
    try {
      makeDirs(config.spoolDir, created);
      closeSync(openSync(probe, 'w', 0o600));
      unlinkSync(probe);
    } catch (err) {
      throw new ConfigError(`invalid ${name('spoolDir', '--spool-dir')} ${JSON.stringify(config.spoolDir)}: cannot create or write the directory (${reason(err)})`);
    } finally {
      if (!keep) for (const d of created.reverse()) rmdirSync(d);
    }
  }
  if (config.exporter === 'file' && config.file) {
    try {
      let existing: Stats | undefined;
      try {
        existing = statSync(config.file);
      } catch {
        existing = undefined;
      }
      // A FIFO (or device) is only checked for write permission: opening a FIFO blocks until a reader comes.
      if (existing && (existing.isFIFO() || existing.isCharacterDevice())) accessSync(config.file, constants.W_OK);
      else {
        closeSync(openSync(config.file, 'a', 0o600)); // owner-only, as the exporter creates it
        if (!keep && !existing) unlinkSync(config.file);
      }
    } catch (err) {
      throw new ConfigError(`invalid ${name('file', '--file')} ${JSON.stringify(config.file)}: cannot open it for append (${reason(err)})`);
    }
  }
}
