/**
 * Daemon benchmark (issue: "Measure"). Two figures, each against a peer measured in the same run:
 *
 * 1. Throughput: spans per second one daemon ingests over its Unix socket and exports
 *    (protobuf, gzip) to a local Langfuse-shaped backend, end to end — against the floor, a bare
 *    Node process that only reads, splits and JSON.parses the same lines from a socket.
 * 2. Memory: the daemon's peak RSS during a 1,000,000-span flood with the backend down,
 *    against its queue byte bound + 100 MB. The byte bound and --memory-limit are the defaults;
 *    the span bound (default 200,000, ~150 MiB of these spans) is lifted so that the byte bound
 *    is the one the queue reaches: the harder case.
 *
 *   npm run bench:daemon -- [--spans 300000] [--flood 1000000] [--rounds 3] [--queue-max-bytes N]
 *                           [--daemon-args '--batch-max-spans 2048 …'] (extra daemon flags, both runs)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startCountingBackend } from './lib/counting-backend.js';
import { mib, peakRssOf, rssOf, spawnLines } from './lib/proc.js';
import { accepts } from './lib/run-daemon.js';
import { median, medianRatio } from './lib/stats.js';
import { writeBenchFile } from './lib/spans.js';

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const SPANS = arg('spans', 300_000);
const FLOOD = arg('flood', 1_000_000);
const ROUNDS = arg('rounds', 3);
const QUEUE_MAX_BYTES = arg('queue-max-bytes', 256 * 1024 * 1024);
const DAEMON_ARGS = (() => {
  const i = process.argv.indexOf('--daemon-args');
  return i > 0 ? process.argv[i + 1]!.split(' ').filter(Boolean) : [];
})();

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const CLI = here('../../daemon/dist/src/cli.js');
const BLAST = here('./lib/blast.js');
const FLOOR = here('./lib/floor-reader.js');

async function blast(socket: string, file: string): Promise<{ go: () => number; sent: Promise<string> }> {
  const b = spawnLines([BLAST, socket, file]);
  await b.line('ready');
  return {
    go: () => {
      b.child.stdin!.write('go\n');
      return performance.now();
    },
    sent: b.line('sent'),
  };
}

async function floorRate(dir: string, file: string, n: number): Promise<number> {
  const socket = join(dir, 'floor.sock');
  rmSync(socket, { force: true });
  const floor = spawnLines([FLOOR, socket, String(n + 1)]);
  await floor.line('ready');
  const b = await blast(socket, file);
  const t0 = b.go();
  await floor.line('done');
  return n / ((performance.now() - t0) / 1000);
}

async function startDaemon(dir: string, backendUrl: string, extra: string[] = []) {
  const socket = join(dir, 'd.sock');
  const d = spawnLines([CLI, 'start', '--socket', socket, '--http', '', '--log-level', 'warn', ...DAEMON_ARGS, ...extra], {
    PATH: process.env.PATH, LANGFUSE_PUBLIC_KEY: 'pk-bench', LANGFUSE_SECRET_KEY: 'sk-bench', LANGFUSE_HOST: backendUrl,
  });
  // The startup line is logged at info; with --log-level warn we wait until the socket accepts.
  for (const deadline = Date.now() + 30_000; !(await accepts(socket)); ) {
    if (Date.now() > deadline) throw new Error(`dspy-o11yd did not start:\n${d.stderr()}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  return { d, socket };
}

async function daemonRate(dir: string, file: string, n: number, fileBytes: number): Promise<number> {
  const backend = await startCountingBackend();
  // Bounds the run cannot reach: ingest outpaces export here, so the whole file may sit in the
  // queue, and a drop (default bounds: 200,000 spans, 256 MiB, RSS 256 MiB + 85 MB) would leave the
  // backend waiting for spans that never come. Memory under a flood is the second figure's job.
  const { d, socket } = await startDaemon(dir, backend.url, ['--queue-max-spans', String(2 * n), '--queue-max-bytes', String(2 * fileBytes + 64 * 1024 * 1024), '--memory-limit', '0']);
  const b = await blast(socket, file);
  const t0 = b.go();
  const t1 = await backend.waitFor(n, 300_000);
  d.child.kill('SIGTERM');
  await new Promise((r) => d.child.once('exit', r));
  await backend.close();
  return n / ((t1 - t0) / 1000);
}

/** A free loopback port (for the flood daemon's status endpoint). */
async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

interface FloodResult {
  peakRss: number;
  baseRss: number;
  /** From the daemon's /v1/status at the end: what the queue holds and counts. */
  queue: { spans: number; bytes: number; inFlightSpans: number; memoryLimit: number };
}

/** The flood's span bound, × its spans: out of reach, so that the byte bound is the one reached. */
const FLOOD_SPAN_BOUND = 10;

async function flood(dir: string, file: string, n: number): Promise<FloodResult> {
  const backend = await startCountingBackend();
  backend.failWith = 503;
  const http = `127.0.0.1:${await freePort()}`;
  const { d, socket } = await startDaemon(dir, backend.url, ['--queue-max-bytes', String(QUEUE_MAX_BYTES), '--queue-max-spans', String(FLOOD_SPAN_BOUND * n), '--http', http]);
  const pid = d.child.pid!;
  const baseRss = rssOf(pid);
  const b = await blast(socket, file);
  b.go();
  await b.sent;
  await new Promise((r) => setTimeout(r, 2000)); // let the daemon finish reading what the socket holds
  // The kernel's high-water mark, not the largest of VmRSS samples every 20 ms: a peak shorter
  // than the sampling interval (a young-generation GC, a batch being gzipped) counts too.
  const peakRss = peakRssOf(pid);
  const status = (await (await fetch(`http://${http}/v1/status`)).json()) as { queue: FloodResult['queue'] };
  d.child.kill('SIGKILL');
  await backend.close();
  return { peakRss, baseRss, queue: status.queue };
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'bench-daemon-'));
  try {
    const file = join(dir, 'spans.ndjson');
    const bytes = writeBenchFile(file, SPANS);
    console.log(`# daemon benchmark: ${SPANS} spans of ~${Math.round(bytes / SPANS)} bytes, ${ROUNDS} rounds, node ${process.version}`);
    const floors: number[] = [];
    const daemons: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      floors.push(await floorRate(dir, file, SPANS));
      daemons.push(await daemonRate(dir, file, SPANS, bytes));
      console.log(`round ${r + 1}: floor ${Math.round(floors[r]!)} lines/s, daemon end-to-end ${Math.round(daemons[r]!)} spans/s (${((100 * daemons[r]!) / floors[r]!).toFixed(0)} %)`);
    }
    const f = median(floors);
    const dm = median(daemons);
    // Each round's daemon against the floor measured next to it, then the median of those ratios.
    const pct = 100 * medianRatio(daemons, floors);
    console.log(`throughput (median): floor ${Math.round(f)}/s, daemon ${Math.round(dm)}/s; daemon = ${pct.toFixed(0)} % of the floor (median of the rounds' ratios; goal ≥ 40 %)`);

    if (FLOOD > 0) {
      const floodFile = join(dir, 'flood.ndjson');
      writeBenchFile(floodFile, FLOOD);
      const { peakRss, baseRss, queue } = await flood(dir, floodFile, FLOOD);
      const bound = QUEUE_MAX_BYTES + 100_000_000; // + 100 MB (not MiB), the stricter reading
      console.log(`flood: ${FLOOD} spans, backend down: peak RSS ${mib(peakRss)} MiB (idle ${mib(baseRss)} MiB), bound ${mib(bound)} MiB = queue ${mib(QUEUE_MAX_BYTES)} MiB + 100 MB → ${peakRss <= bound ? 'within' : 'OVER'}`);
      console.log(
        `flood: queue at the end ${queue.spans} spans, ${mib(queue.bytes)} MiB counted against --queue-max-bytes, ${queue.inFlightSpans} spans in flight; ` +
          `--memory-limit ${queue.memoryLimit ? `${mib(queue.memoryLimit)} MiB` : 'off'}; --queue-max-spans ${FLOOD_SPAN_BOUND * FLOOD} (not the default 200000)`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
