#!/usr/bin/env node
/**
 * `dspy-o11yd start | status | tail | check`. Bad configuration prints one line naming the flag
 * and exits 2; a running daemon stops gracefully on SIGTERM/SIGINT and exits 0.
 */
import { Command, CommanderError, Option } from 'commander';
import { setPriority } from 'node:os';
import { parseIngestToken } from '@dspy-o11y/proto';
import { ConfigError, OPTIONS, parseHostPort, preparePaths, resolveConfig, type DaemonConfig, type RawConfig } from './config.js';
import { startDaemon, type RunningDaemon } from './daemon.js';
import { closeLog, createLogger } from './log.js';
import { checkCredentials } from './check.js';
import { proxySecrets } from './export/outbound.js';
import { VERSION } from './version.js';

const EXIT_CONFIG = 2;

/** Why a request to the daemon failed: fetch says only 'fetch failed'; the reason (ECONNREFUSED, …) is its cause. */
function whyUnreachable(err: unknown): string {
  const cause = (err as { cause?: { code?: unknown; message?: unknown } }).cause;
  if (typeof cause?.code === 'string') return cause.code;
  if (typeof cause?.message === 'string') return cause.message;
  return (err as Error).message;
}

function fail(message: string, code = EXIT_CONFIG): never {
  process.stderr.write(`dspy-o11yd: ${message}\n`);
  process.exit(code);
}

function loadConfig(flags: RawConfig, paths: 'create' | 'test'): DaemonConfig {
  try {
    const config = resolveConfig(flags);
    // `check` tests the paths as `start` would, leaving nothing behind: it says "ok" only where start would run.
    preparePaths(config, { keep: paths === 'create' });
    return config;
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message);
    throw err;
  }
}

/** How long `status` (the whole answer) and `tail` (its headers) wait for the daemon. */
const ANSWER_TIMEOUT_MS = 10_000;

/**
 * Where `status` and `tail` find a running daemon: --http, else DSPY_O11YD_HTTP, else the
 * default, read as `start` reads it (trimmed; host:port or [v6]:port), or an http(s) URL. Anything
 * else was pasted after `http://`: a bare port became a host (`--http 4318` asked 0.0.16.238).
 * Empty is start's "HTTP disabled", so there is no address to ask (it was `http:///v1/status`).
 */
function daemonUrl(http: string | undefined): string {
  const raw = http ?? process.env.DSPY_O11YD_HTTP ?? '127.0.0.1:4318';
  const name = http === undefined && process.env.DSPY_O11YD_HTTP !== undefined ? '--http (from DSPY_O11YD_HTTP)' : '--http';
  const value = raw.trim();
  if (value === '') fail(`invalid ${name} "": the daemon's HTTP listener is disabled; status and tail need it (give --http host:port)`);
  if (/^https?:\/\//i.test(value)) {
    try {
      const url = new URL(value);
      return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
    } catch {
      fail(`invalid ${name} ${JSON.stringify(raw)}: not a valid URL`);
    }
  }
  const hp = parseHostPort(value);
  if (!hp) fail(`invalid ${name} ${JSON.stringify(raw)}: must be host:port (e.g. 127.0.0.1:4318) or an http:// URL`);
  return `http://${hp.host.includes(':') ? `[${hp.host}]` : hp.host}:${hp.port}`;
}

/** One line for a request to the daemon that failed, then exit 1. */
function unreachable(url: string, err: unknown): never {
  fail(timedOut(err) ? `no answer from ${url} within ${ANSWER_TIMEOUT_MS / 1000} s` : `no daemon answers at ${url}: ${whyUnreachable(err)}`, 1);
}

/** fetch's and undici's words for "nothing answered in time". */
function timedOut(err: unknown): boolean {
  const e = err as { name?: unknown; code?: unknown; cause?: { code?: unknown } };
  return e?.name === 'TimeoutError' || e?.code === 'UND_ERR_HEADERS_TIMEOUT' || e?.cause?.code === 'UND_ERR_HEADERS_TIMEOUT';
}

const program = new Command('dspy-o11yd')
  .description('dspy-o11y sidecar: receives telemetry records and delivers them to Langfuse (or any OTLP backend)')
  .version(VERSION)
  .exitOverride()
  .configureOutput({ writeErr: (s) => process.stderr.write(s) });

const start = program.command('start').description('run the daemon in the foreground');
for (const o of OPTIONS) {
  // The default is in the help text, not given to commander: a commander default would fill the
  // flag and so beat the env twin (precedence is flag > env > default, resolved in config.ts).
  const def = o.default === undefined ? '' : ` (default: ${o.default === '' ? "''" : o.default})`;
  const env = [...o.env, ...(o.otlpEnv ?? []).map((name) => `${name} (with --exporter otlp)`)];
  start.addOption(new Option(`${o.flag} <value>`, `${o.help}${def}${env.length ? ` [env: ${env.join(', ')}]` : ''}`));
}
start.action(async (flags: RawConfig) => {
  const config = loadConfig(flags, 'create');
  const secrets = [config.langfuse.secretKey];
  if (config.langfuse.publicKey && config.langfuse.secretKey) {
    secrets.push(Buffer.from(`${config.langfuse.publicKey}:${config.langfuse.secretKey}`).toString('base64'));
  }
  if (config.ingestToken) secrets.push(config.ingestToken);
  // A proxy URL's credentials (HTTPS_PROXY=http://user:pass@proxy:3128), in every form an error could carry them.
  secrets.push(...proxySecrets(config.outbound.proxy));
  const log = createLogger(config.logLevel, secrets);
  // Before any thread is started: Linux niceness is per thread, and new threads (the export
  // worker, libuv's pool) inherit the creating thread's.
  try {
    setPriority(0, config.nice);
  } catch (err) {
    log.warn({ err, nice: config.nice }, 'could not set the CPU priority (--nice); running at the default');
  }
  // Handlers first: the startup line tells supervisors (and tests) the daemon is up, and a
  // SIGTERM sent right after it must flush, not kill. One that arrives while starting waits.
  let daemon: RunningDaemon | undefined;
  let pendingSignal: string | undefined;
  let shuttingDown = false;
  const shutdown = (signal: string) => {
    if (!daemon) return void (pendingSignal ??= signal);
    // `on`, not `once`: a repeated signal (impatient operator, supervisor retrying) must not hit
    // Node's default handler and kill us mid-flush, losing what is in flight and the spool.
    if (shuttingDown) {
      log.warn({ signal }, 'shutdown already in progress: cutting the flush short; undelivered spans go to the spool (or are counted as dropped)');
      daemon.hurry();
      return;
    }
    shuttingDown = true;
    log.info({ signal }, 'shutting down: closing listeners and flushing');
    void daemon.stop().then(
      () => closeLog(log).then(() => process.exit(0)),
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        return closeLog(log).then(() => process.exit(1));
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  try {
    daemon = await startDaemon(config, log);
  } catch (err) {
    log.flush();
    fail((err as Error).message, 1);
  }
  if (pendingSignal) shutdown(pendingSignal);
});

/** The daemon's --ingest-token guards /v1/status and /v1/tail: same flag, same env twin. */
const TOKEN_HELP = 'bearer token of a daemon started with --ingest-token [env: DSPY_O11YD_INGEST_TOKEN]';
function authHeaders(token: string | undefined): Record<string, string> {
  const value = token ?? process.env.DSPY_O11YD_INGEST_TOKEN;
  if (!value) return {};
  // Trimmed and checked as `start` does; a token no header can carry is a config error, as for
  // `start` (fetch's own error quoted it).
  const t = parseIngestToken(value);
  if (!t.ok) fail(`invalid --ingest-token${token === undefined ? ' (from DSPY_O11YD_INGEST_TOKEN)' : ''}: ${t.problem}`);
  return { authorization: `Bearer ${t.token}` };
}
/** The daemon's `{"error": "…"}` from an answer's body, on one line; undefined if there is none. */
async function errorIn(body: () => Promise<string>): Promise<string | undefined> {
  try {
    const error = (JSON.parse(await body()) as { error?: unknown }).error;
    return typeof error === 'string' && error ? error.replace(/\s+/g, ' ').slice(0, 500) : undefined;
  } catch {
    return undefined;
  }
}
async function failOnStatus(url: string, status: number, flags: { ingestToken?: string }, body: () => Promise<string>): Promise<void> {
  if (status === 401) {
    const given = flags.ingestToken !== undefined ? '--ingest-token' : process.env.DSPY_O11YD_INGEST_TOKEN ? 'DSPY_O11YD_INGEST_TOKEN' : undefined;
    fail(`${url} answered 401: ${given ? `the token from ${given} is wrong` : 'the daemon needs --ingest-token (or DSPY_O11YD_INGEST_TOKEN)'}`, 1);
  }
  // E.g. tail's 503 past its readers cap: the daemon's reason, not the bare status.
  if (status !== 200) {
    const error = await errorIn(body);
    fail(`${url} answered ${status}${error ? `: ${error}` : ''}`, 1);
  }
}

program
  .command('status')
  .description("print a running daemon's counters and exporter state (GET /v1/status)")
  .option('--http <host:port>', 'address of the daemon [env: DSPY_O11YD_HTTP]')
  .option('--ingest-token <token>', TOKEN_HELP)
  .option('--json', 'print the raw JSON')
  .action(async (flags: { http?: string; ingestToken?: string; json?: boolean }) => {
    const url = `${daemonUrl(flags.http)}/v1/status`;
    let body: Record<string, unknown>;
    let res: Response;
    // Something that accepts connections and never answers (a wrong port) held status for ever.
    const signal = AbortSignal.timeout(ANSWER_TIMEOUT_MS);
    try {
      res = await fetch(url, { headers: authHeaders(flags.ingestToken), signal });
    } catch (err) {
      unreachable(url, err);
    }
    await failOnStatus(url, res.status, flags, () => res.text());
    try {
      body = (await res.json()) as Record<string, unknown>;
    } catch (err) {
      unreachable(url, err);
    }
    process.stdout.write(JSON.stringify(body, null, flags.json ? 0 : 2) + '\n');
  });

program
  .command('tail')
  .description('print the live record stream of a running daemon, one JSON record per line')
  .option('--http <host:port>', 'address of the daemon [env: DSPY_O11YD_HTTP]')
  .option('--ingest-token <token>', TOKEN_HELP)
  .action(async (flags: { http?: string; ingestToken?: string }) => {
    const url = `${daemonUrl(flags.http)}/v1/tail`;
    const { Agent, request } = await import('undici');
    let res: Awaited<ReturnType<typeof request>>;
    try {
      // The stream may stay idle for long (a quiet app): no body timeout. Its headers come at once.
      res = await request(url, { headers: authHeaders(flags.ingestToken), dispatcher: new Agent({ bodyTimeout: 0, headersTimeout: ANSWER_TIMEOUT_MS }) });
    } catch (err) {
      unreachable(url, err);
    }
    await failOnStatus(url, res.statusCode, flags, () => res.body.text());
    // A reader that stops (`tail | head -5`, `grep -m1`) closes the pipe: that ends tail quietly,
    // as it ends other Unix tools, not with an unhandled EPIPE stack trace and exit 1.
    process.stdout.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE') process.exit(0);
      fail(`cannot write to stdout: ${err.message}`, 1);
    });
    let partial = '';
    try {
      for await (const chunk of res.body.setEncoding('utf8')) {
        // Blank lines are the daemon's heartbeats: not records.
        const lines = (partial + (chunk as string)).split('\n');
        partial = lines.pop()!;
        const out = lines.filter((l) => l !== '');
        if (out.length) process.stdout.write(out.join('\n') + '\n');
      }
    } catch (err) {
      fail(`the stream from ${url} broke: ${(err as Error).message}`, 1);
    }
    process.stderr.write('dspy-o11yd tail: the daemon ended the stream (a daemon shutting down ends it)\n');
  });

const check = program
  .command('check')
  .description('validate the configuration and try the exporter (for langfuse: the credentials)')
  // The options are start's, hidden here so that the list is not printed twice: say where it is.
  .addHelpText('after', '\nTakes the same options and environment variables as `start` (see `dspy-o11yd start --help`).');
for (const o of OPTIONS) check.addOption(new Option(`${o.flag} <value>`, o.help).hideHelp());
check.action(async (flags: RawConfig) => {
  const config = loadConfig(flags, 'test');
  const result = await checkCredentials(config);
  process.stdout.write(`${result.ok ? 'ok' : 'FAILED'}: ${result.message}\n`);
  process.exit(result.ok ? 0 : 1);
});

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // --help and --version end here too, with exit code 0.
    process.exit(err.exitCode === 0 ? 0 : EXIT_CONFIG);
  }
  throw err;
}
