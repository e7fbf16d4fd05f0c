/**
 * Runs the real `dspy-o11yd` CLI as a child process for end-to-end tests, and the small
 * clients the tests use to talk to it (Unix socket, HTTP).
 */
import { after, before } from 'node:test';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { startFakeLangfuse, type FakeLangfuse } from './fake-langfuse.js';

export const CLI = fileURLToPath(new URL('../../src/cli.js', import.meta.url));

// A failed assertion must not leave a daemon running (and the test file waiting on it forever):
// whatever a test file started is killed after its last test.
const children = new Set<ChildProcess>();
after(() => children.forEach((c) => c.kill('SIGKILL')));
function detach(child: ChildProcess): void {
  children.add(child);
  child.once('exit', () => children.delete(child));
}

export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

export class DaemonProcess {
  readonly logs: LogLine[] = [];
  stderr = '';
  stdout = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  httpUrl = '';
  private logWaiters: { match: (l: LogLine) => boolean; resolve: (l: LogLine) => void; fail: () => void }[] = [];

  constructor(readonly child: ChildProcess, readonly socketPath: string | undefined) {
    let pending = '';
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      this.stderr += chunk;
      pending += chunk;
      let nl;
      while ((nl = pending.indexOf('\n')) !== -1) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        let parsed: LogLine;
        try {
          parsed = JSON.parse(line) as LogLine;
        } catch {
          continue;
        }
        this.logs.push(parsed);
        this.logWaiters = this.logWaiters.filter((w) => (w.match(parsed) ? (w.resolve(parsed), false) : true));
      }
    });
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (this.stdout += chunk));
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    // Its output has ended: no line can match any more (and no waiter's timer may hold the test file open).
    child.once('close', () => {
      for (const w of this.logWaiters) w.fail();
      this.logWaiters = [];
    });
  }

  waitForLog(match: (l: LogLine) => boolean, timeoutMs = 10_000): Promise<LogLine> {
    const found = this.logs.find(match);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no matching log line within ${timeoutMs} ms; stderr:\n${this.stderr.slice(-3000)}`)), timeoutMs);
      const fail = () => (clearTimeout(timer), reject(new Error(`the daemon exited without a matching log line; stderr:\n${this.stderr.slice(-3000)}`)));
      this.logWaiters.push({ match, resolve: (l) => (clearTimeout(timer), resolve(l)), fail });
    });
  }

  async status(): Promise<DaemonStatusJson> {
    const res = await fetch(`${this.httpUrl}/v1/status`);
    return (await res.json()) as DaemonStatusJson;
  }

  async metrics(): Promise<string> {
    return (await fetch(`${this.httpUrl}/metrics`)).text();
  }

  /** Value of one Prometheus sample, e.g. metric('dspy_o11yd_spans_dropped_total', { reason: 'queue_overflow' }). */
  async metric(name: string, labels: Record<string, string> = {}): Promise<number> {
    const text = await this.metrics();
    const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
    for (const line of text.split('\n')) {
      if (!line.startsWith(name)) continue;
      const m = /^([a-zA-Z0-9_:]+)(?:\{([^}]*)\})? (\S+)$/.exec(line);
      if (!m || m[1] !== name) continue;
      const have = (m[2] ?? '').split(',').filter(Boolean);
      if (want.every((w) => have.includes(w)) && have.length === want.length) return Number(m[3]);
    }
    return 0;
  }

  /** Poll until `check` passes (for asynchronous delivery), failing with the last error. */
  async eventually(check: () => Promise<void> | void, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        await check();
        return;
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exited;
  }
}

export interface DaemonStatusJson {
  ready: boolean;
  notReadyReason?: string;
  exporter: { kind: string; destination: string; state: string; lastError?: string };
  queue: { spans: number; bytes: number; maxSpans: number; maxBytes: number; inFlightSpans: number };
  connections: { open: number; max: number; refused: number; http: { open: number; max: number; refused: number } };
  tail: { readers: number; max: number };
  spans: { received: number; exported: number; dropped: Record<string, number>; queued: number; inFlight: number };
  records: { received: Record<string, number>; invalid: Record<string, number> };
  export: { requests: Record<string, number>; retries: number };
  scores: { received: number; exported: number; dropped: Record<string, number>; queued: number; inFlight: number; state: string; lastError?: string };
}

export function tempDir(prefix = 'dspy-o11yd-test-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Start the daemon CLI; resolves once it logs its startup line. `nodeArgs` go to node before the CLI (e.g. `--import` a fault). */
export async function startDaemonProcess(args: string[], env: Record<string, string | undefined> = {}, socketPath?: string, nodeArgs: readonly string[] = []): Promise<DaemonProcess> {
  const child = spawn(process.execPath, [...nodeArgs, CLI, 'start', ...args], {
    env: { PATH: process.env.PATH, ...env } as NodeJS.ProcessEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  detach(child);
  const daemon = new DaemonProcess(child, socketPath);
  // Generous: a daemon starting on a loaded machine (several test files at once) takes seconds.
  const startup = daemon.waitForLog((l) => typeof l.msg === 'string' && l.msg.includes('listening on'), 20_000);
  // A daemon that exits has its waiters failed too: then its exit is the answer.
  const ended = () => daemon.child.exitCode !== null || daemon.child.signalCode !== null;
  const result = await Promise.race([startup, daemon.exited]).catch((err: unknown) => (ended() ? daemon.exited : Promise.reject(err)));
  if (!('msg' in result)) throw new Error(`daemon exited (${result.code}) before starting:\n${daemon.stderr}`);
  daemon.httpUrl = String((result as LogLine).http ?? '');
  return daemon;
}

/**
 * Run the CLI to completion (config errors, check, status). The deadline is a hang guard only: a
 * run takes 1-4 s here under load, and CI machines may be slower.
 */
export function runCli(args: string[], env: Record<string, string | undefined> = {}, timeoutMs = 30_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { PATH: process.env.PATH, ...env } as NodeJS.ProcessEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`dspy-o11yd ${args.join(' ')} did not exit within ${timeoutMs} ms`));
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Write lines to the daemon's Unix socket on one connection, then close it. */
export function sendOverSocket(path: string, lines: readonly string[] | string): Promise<void> {
  const payload = typeof lines === 'string' ? lines : lines.map((l) => l + '\n').join('');
  return new Promise((resolve, reject) => {
    const socket = connect(path);
    socket.once('error', reject);
    socket.end(payload);
    socket.once('close', () => resolve());
    socket.resume();
  });
}

export async function postIngest(baseUrl: string, body: string, contentType = 'application/x-ndjson', headers: Record<string, string> = {}): Promise<{ status: number; body: { accepted: number; rejected: number; errors: { index: number; message: string }[] } }> {
  const res = await fetch(`${baseUrl}/v1/ingest`, { method: 'POST', headers: { 'content-type': contentType, ...headers }, body });
  return { status: res.status, body: (await res.json()) as { accepted: number; rejected: number; errors: { index: number; message: string }[] } };
}

/**
 * For one describe block: a fake Langfuse checking `keys`, and the daemon CLI started with `args`
 * exporting to it (before the first test; both stopped after the last). `set` hands them over.
 */
export function useLangfuseDaemon(
  keys: { LANGFUSE_PUBLIC_KEY: string; LANGFUSE_SECRET_KEY: string },
  args: string[],
  set: (fake: FakeLangfuse, daemon: DaemonProcess) => void,
  options: { env?: Record<string, string>; socketPath?: string } = {},
): void {
  let fake: FakeLangfuse;
  let daemon: DaemonProcess;
  before(async () => {
    fake = await startFakeLangfuse({ publicKey: keys.LANGFUSE_PUBLIC_KEY, secretKey: keys.LANGFUSE_SECRET_KEY });
    daemon = await startDaemonProcess(args, { ...keys, LANGFUSE_HOST: fake.url, ...options.env }, options.socketPath);
    set(fake, daemon);
  });
  after(async () => {
    await daemon.stop();
    await fake.close();
  });
}
