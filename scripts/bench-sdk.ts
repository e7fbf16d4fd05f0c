/**
 * SDK benchmark: what telemetry costs the app. Each contender creates the same LLM generation
 * (`llm.generate`, 12 attributes, ~200-char JSON input) `--spans` times, `--burst` per macrotask
 * (setImmediate, back to back: an app under load), in its own child process ("app",
 * scripts/lib/sdk-app.ts), with that SDK's default settings:
 *
 *   floor      JSON.stringify of the span + one batched socket write per tick, to a reader that discards
 *   dspy-o11y  this SDK → Unix socket → a real dspy-o11yd (langfuse exporter, protobuf+gzip) → backend
 *   otel       OpenTelemetry JS: BasicTracerProvider + BatchSpanProcessor + OTLPTraceExporter (JSON) → backend
 *   langfuse   Langfuse JS v5: LangfuseSpanProcessor (a BatchSpanProcessor + OTLP JSON) → backend
 *   dspy-o11y-direct   (diagnostic) this SDK writing to the floor's discard reader: its cost when the daemon keeps up
 *
 * all exporting to one local Langfuse-shaped counting backend, which answers at once, then in
 * 20 ms (as a remote Langfuse does). Per contender: app CPU per span (user + system, from the
 * first span to the end of the flush), its ratio to the floor, event-loop delay p99 (while it emits), peak RSS,
 * and spans delivered (counted by the backend, or by the floor's reader). The daemon's own CPU per
 * span it delivered is shown too: it is not app-side. Contenders run one after the other, `--rounds` times
 * interleaved; the table gives medians (CPU with its min–max), because the machine is shared.
 *
 *   npm run bench:sdk -- [--spans 100000] [--burst 100] [--rounds 3] [--delays 0,20]
 *                        [--only floor,dspy-o11y,otel,langfuse] [--profile dspy-o11y]
 *                        [--daemon-wrap "chrt --idle 0"]
 *
 * `--daemon-wrap` runs the daemon under a command, e.g. Linux's SCHED_IDLE policy (`chrt --idle 0`:
 * it runs only on CPU time nothing else wants), to see what the app pays for sharing its cores.
 * `--profile c1,c2` adds one run of each named contender under `node --cpu-prof` per delay and
 * prints its top functions by self and inclusive time within the emission + flush window.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { startCountingBackend, type CountingBackend } from './lib/counting-backend.js';
import { runDaemon, type DaemonChild } from './lib/run-daemon.js';
import { cpuMsOf, spawnLines, type LineChild } from './lib/proc.js';
import { formatProfile, summariseProfile } from './lib/cpuprofile.js';
import { fmt, goals, LABEL, summarise, table, type Run, type Verdict } from './lib/sdk-report.js';
import type { AppConfig, AppResult, Contender } from './lib/sdk-app.js';
import { ELD_RESOLUTION_MS } from './lib/app-measure.js';

const argValue = (name: string): string | undefined => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const SPANS = Number(argValue('spans') ?? 100_000);
const BURST = Number(argValue('burst') ?? 100);
const ROUNDS = Number(argValue('rounds') ?? 3);
const DELAYS = (argValue('delays') ?? '0,20').split(',').map(Number);
const CONTENDERS: readonly Contender[] = ['floor', 'dspy-o11y', 'otel', 'langfuse', 'dspy-o11y-direct'];
const contenders = (list: string | undefined, dflt: Contender[]): Contender[] => {
  const cs = list === undefined ? dflt : list.split(',').filter(Boolean);
  for (const c of cs) if (!CONTENDERS.includes(c as Contender)) throw new Error(`unknown contender ${c}; one of ${CONTENDERS.join(', ')}`);
  return cs as Contender[];
};
const ONLY = contenders(argValue('only'), ['floor', 'dspy-o11y', 'otel', 'langfuse', 'dspy-o11y-direct']);
const PROFILE = contenders(argValue('profile'), []);
const DAEMON_WRAP = (argValue('daemon-wrap') ?? '').split(' ').filter(Boolean);
/** After the app exits, delivery is final when the count reaches the spans, or stops growing for this long (the daemon batches for up to 1 s)… */
const quietMs = (c: Contender) => (c === 'dspy-o11y' ? 3000 : 1000);
/** …and at the latest this long after the app exits. */
const SETTLE_MAX_MS = 30_000;

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const APP = here('./lib/sdk-app.js');
const READER = here('./lib/discard-reader.js');

/** Every child this process started; killed at the end whatever happens. */
const children = new Set<ChildProcess>();
function track<T extends { child: ChildProcess }>(c: T): T {
  children.add(c.child);
  c.child.once('exit', () => children.delete(c.child));
  return c;
}
function killAll(): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    killAll();
    process.exit(130);
  });
}

/** Which code is measured: the commit, and whether sdk/, daemon/ or proto/ have uncommitted changes. */
function revision(): string {
  try {
    const git = (...args: string[]) => execFileSync('git', args, { cwd: here('../..'), encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const dirty = git('status', '--porcelain', '--', 'sdk', 'daemon', 'proto') !== '';
    return `${git('rev-parse', '--short', 'HEAD')}${dirty ? ' + uncommitted changes in sdk/ daemon/ proto/' : ''}`;
  } catch {
    return 'unknown revision';
  }
}

const load = () => loadavg().map((x) => x.toFixed(1)).join(' ');

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function exited(child: ChildProcess, timeoutMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve();
    }, timeoutMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** Polls `count` until it reaches `expected`, stops growing for `quiet` ms, or SETTLE_MAX_MS pass. */
async function settle(count: () => Promise<number>, expected: number, quiet: number): Promise<number> {
  const start = Date.now();
  let last = await count();
  let lastChange = Date.now();
  while (last < expected && Date.now() - lastChange < quiet && Date.now() - start < SETTLE_MAX_MS) {
    await sleep(100);
    const n = await count();
    if (n !== last) {
      last = n;
      lastChange = Date.now();
    }
  }
  return last;
}

async function stopDaemon(daemon: DaemonChild): Promise<void> {
  await Promise.race([daemon.stop(), sleep(15_000)]);
  if (daemon.child.exitCode === null && daemon.child.signalCode === null) {
    daemon.child.kill('SIGKILL');
    await exited(daemon.child, 5_000);
  }
}

/** The app's line starting with `prefix`; fails at once, with its stderr, if the app exits first. */
function lineOrExit(app: LineChild, prefix: string, timeoutMs: number): Promise<string> {
  const died = new Promise<never>((_, reject) => {
    const fail = () => setTimeout(() => reject(new Error(`app exited (${app.child.exitCode ?? app.child.signalCode}) before "${prefix}":\n${app.stderr().slice(-3000)}`)), 200);
    if (app.child.exitCode !== null || app.child.signalCode !== null) fail();
    else app.child.once('exit', fail);
  });
  died.catch(() => undefined);
  return Promise.race([app.line(prefix, timeoutMs), died]);
}

let tags = 0;
async function readerCount(reader: LineChild): Promise<number> {
  const tag = `c${++tags}`;
  reader.child.stdin!.write(`${tag}\n`);
  return Number((await reader.line(`${tag} `, 10_000)).split(' ')[1]);
}

async function runContender(contender: Contender, backend: CountingBackend, dir: string, profileDir?: string): Promise<Run> {
  const socket = join(dir, `${contender}.sock`);
  rmSync(socket, { force: true });
  let reader: LineChild | undefined;
  let daemon: DaemonChild | undefined;
  let target = backend.url;
  if (contender === 'floor' || contender === 'dspy-o11y-direct') {
    reader = track(spawnLines([READER, socket], { PATH: process.env.PATH }));
    await reader.line('ready', 30_000);
    target = socket;
  } else if (contender === 'dspy-o11y') {
    daemon = track(
      await runDaemon(
        socket,
        ['--http', '', '--log-level', 'warn'],
        {
          LANGFUSE_PUBLIC_KEY: 'pk-lf-bench',
          LANGFUSE_SECRET_KEY: 'sk-lf-bench',
          LANGFUSE_HOST: backend.url,
        },
        // Profiled along with the app; the profile is written when it exits.
        profileDir ? ['--cpu-prof', `--cpu-prof-dir=${join(profileDir, 'daemon')}`] : [],
        DAEMON_WRAP,
      ),
    );
    target = socket;
  }
  try {
    const config: AppConfig = { contender, spans: SPANS, burst: BURST, target };
    const nodeFlags = profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [];
    // A clean environment: no OTEL_*, LANGFUSE_* or DSPY_O11Y_* from the caller's shell changes the defaults.
    const app = track(spawnLines([...nodeFlags, APP, JSON.stringify(config)], { PATH: process.env.PATH }));
    await lineOrExit(app, 'ready', 60_000);
    backend.reset();
    const daemonCpu0 = daemon ? cpuMsOf(daemon.child.pid!) : 0;
    app.child.stdin!.write('go\n');
    const result = JSON.parse((await lineOrExit(app, 'result ', 300_000)).slice('result '.length)) as AppResult;
    await exited(app.child, 30_000);
    // The reader counts spans: the direct SDK run's `hello` and any `stats` lines are not among them.
    // The backend counts distinct span ids, so a retried batch does not hide lost spans; no cap, so
    // that an over-count (e.g. a reader counting a record sent twice) shows as more than 100 %.
    const count = reader ? () => readerCount(reader!) : () => Promise.resolve(backend.spans);
    const delivered = await settle(count, SPANS, quietMs(contender));
    const settledUs = Number(process.hrtime.bigint() / 1000n);
    const daemonCpuMs = daemon ? cpuMsOf(daemon.child.pid!) - daemonCpu0 : undefined;
    let profile: string | undefined;
    let daemonProfile: string | undefined;
    if (profileDir) {
      const file = readdirSync(profileDir).find((f) => f.endsWith('.cpuprofile'));
      const focus = contender.startsWith('dspy-o11y') ? / (sdk|proto)\/src\// : undefined;
      if (file) profile = formatProfile(summariseProfile(join(profileDir, file), result.windowUs, focus));
      if (daemon) {
        await stopDaemon(daemon);
        const dir = join(profileDir, 'daemon');
        const dfile = existsSync(dir) ? readdirSync(dir).find((f) => f.endsWith('.cpuprofile')) : undefined;
        // hrtime is the machine's monotonic clock, the same in every process: the app's "go" to the end of delivery.
        if (dfile) daemonProfile = formatProfile(summariseProfile(join(dir, dfile), [result.windowUs[0], settledUs]));
      }
    }
    return { contender, app: result, delivered, duplicates: reader ? 0 : backend.duplicates, daemonCpuMs, profile, daemonProfile };
  } finally {
    if (daemon) await stopDaemon(daemon);
    if (reader) {
      reader.child.stdin!.end();
      await exited(reader.child, 5_000);
    }
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-sdk-'));
  const started = Date.now();
  const verdicts: Verdict[] = [];
  try {
    console.log(
      `# SDK benchmark at ${revision()}: ${SPANS} spans per contender and run, ${BURST} per macrotask (setImmediate, back to back), ${ROUNDS} round(s), ` +
        `node ${process.version}, ${cpus().length} CPUs; event-loop delay (while emitting) = monitorEventLoopDelay(resolution ${ELD_RESOLUTION_MS} ms) interval − ${ELD_RESOLUTION_MS} ms; default settings everywhere` +
        (DAEMON_WRAP.length ? `; the daemon runs under \`${DAEMON_WRAP.join(' ')}\`` : ''),
    );
    for (const delay of DELAYS) {
      const backend = await startCountingBackend();
      backend.delayMs = delay;
      const loadStart = load();
      try {
        const runs = new Map<Contender, Run[]>(ONLY.map((c) => [c, []]));
        for (let round = 1; round <= ROUNDS; round++) {
          for (const c of ONLY) {
            const run = await runContender(c, backend, dir);
            runs.get(c)!.push(run);
            const a = run.app;
            const sdk = a.stats ? ` sdkStats ${JSON.stringify(a.stats)}` : '';
            console.error(
              `  [${delay} ms, round ${round}] ${c}: ${fmt(a.cpuUs / a.spans)} µs/span, p99 ${fmt(a.eld.p99Ms, 2)} ms (${a.eld.samples} samples, ` +
                `${a.preempted} involuntary context switches), delivered ${run.delivered}${run.duplicates ? ` (+${run.duplicates} duplicates)` : ''}, flush ${a.flushOk ? 'ok' : 'NOT ok'}${sdk}`,
            );
          }
        }
        const rows = ONLY.map((c) => summarise(runs.get(c)!));
        console.log(`\n## backend answers in ${delay} ms (load average ${loadStart} at the start, ${load()} at the end)\n`);
        console.log(table(rows));
        const g = goals(rows);
        if (g.length) {
          console.log('');
          for (const v of g) console.log(`- ${v.ok ? 'met' : 'MISSED'}: ${v.text}`);
          verdicts.push(...g.map((v) => ({ ...v, text: `[${delay} ms] ${v.text}` })));
        }
        for (const c of PROFILE) {
          const profileDir = mkdtempSync(join(dir, `prof-${c}-`));
          const run = await runContender(c, backend, dir, profileDir);
          console.log(
            `\n### profile: ${LABEL[c]}, backend ${delay} ms (emission + flush window; under --cpu-prof: ${fmt(run.app.cpuUs / run.app.spans)} µs/span, delivered ${run.delivered})\n`,
          );
          console.log(run.profile ?? '(no profile written)');
          if (run.daemonProfile) console.log(`\n#### the daemon in that run (from the app's first span to the end of delivery)\n\n${run.daemonProfile}`);
        }
      } finally {
        await backend.close();
      }
    }
    if (verdicts.length) {
      const missed = verdicts.filter((v) => !v.ok);
      console.log(`\n${missed.length === 0 ? 'all goals met' : `goals missed:\n${missed.map((v) => `- ${v.text}`).join('\n')}`}`);
    }
    console.log(`\n(${((Date.now() - started) / 1000).toFixed(0)} s)`);
  } finally {
    killAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
