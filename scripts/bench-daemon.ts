/**
 * Daemon benchmark (issue: "Measure"). Two figures, each against a peer measured in the same run:
 *
 * 1. Throughput: spans per second one daemon ingests over its Unix socket and exports
 *    (protobuf, gzip) to a local Langfuse-shaped backend, end to end — against the floor, a bare
 *    Node process that only reads, splits and JSON.parses the same lines from a socket.
 * 2. Memory: the daemon's peak RSS during a 1,000,000-span flood with the backend down,
 *    against its queue byte bound + 100 MB.
 *
 *   npm run bench:daemon -- [--spans 300000] [--flood 1000000] [--rounds 3]
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { newSpanId, newTraceId } from '@dspy-o11y/proto';
import { startCountingBackend } from './lib/counting-backend.js';
import { mib, rssOf, spawnLines } from './lib/proc.js';

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const SPANS = arg('spans', 300_000);
const FLOOD = arg('flood', 1_000_000);
const ROUNDS = arg('rounds', 3);
const QUEUE_MAX_BYTES = arg('queue-max-bytes', 256 * 1024 * 1024);

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const CLI = here('../../daemon/dist/src/cli.js');
const BLAST = here('./lib/blast.js');
const FLOOR = here('./lib/floor-reader.js');

/** A realistic LLM span as the SDK sends it: a generation with model, usage, cost, input and output. */
function spanLines(n: number): string {
  const out: string[] = [JSON.stringify({ v: 1, type: 'hello', resource: { 'service.name': 'bench', 'service.version': '1.0.0' }, sdk: { name: 'dspy-o11y', version: '0.1.0' } })];
  let traceId = newTraceId();
  const t0 = BigInt(Date.now()) * 1_000_000n;
  for (let i = 0; i < n; i++) {
    if (i % 10 === 0) traceId = newTraceId();
    const start = t0 + BigInt(i) * 1000n;
    out.push(
      JSON.stringify({
        v: 1, type: 'span', traceId, spanId: newSpanId(), parentSpanId: newSpanId(), name: 'llm.generate',
        startTimeUnixNano: start.toString(), endTimeUnixNano: (start + 250_000_000n).toString(), status: { code: 'ok' },
        attributes: {
          'dspy.observation.type': 'generation', 'gen_ai.provider.name': 'openai', 'gen_ai.request.model': 'gpt-4o-mini',
          'gen_ai.request.temperature': 0.2, 'gen_ai.usage.input_tokens': 120 + (i % 50), 'gen_ai.usage.output_tokens': 30, 'gen_ai.usage.total_tokens': 150 + (i % 50),
          'gen_ai.usage.cost': 0.0000366, 'dspy.input': JSON.stringify([{ role: 'user', content: `What is on the menu today? customer ${i}` }]),
          'dspy.output': '"Latte, mocha and a cold brew."', 'dspy.trace.name': 'coffee-order', 'user.id': `u-${i % 100}`,
        },
      }),
    );
  }
  return out.join('\n') + '\n';
}

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
  const d = spawnLines([CLI, 'start', '--socket', socket, '--http', '', '--log-level', 'warn', ...extra], {
    PATH: process.env.PATH, LANGFUSE_PUBLIC_KEY: 'pk-bench', LANGFUSE_SECRET_KEY: 'sk-bench', LANGFUSE_HOST: backendUrl,
  });
  // The startup line is logged at info; with --log-level warn we wait for the socket instead.
  for (let i = 0; i < 200; i++) {
    try {
      const { statSync } = await import('node:fs');
      if (statSync(socket).isSocket()) break;
    } catch {
      /* not yet */
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return { d, socket };
}

async function daemonRate(dir: string, file: string, n: number): Promise<number> {
  const backend = await startCountingBackend();
  const { d, socket } = await startDaemon(dir, backend.url);
  const b = await blast(socket, file);
  const t0 = b.go();
  const t1 = await backend.waitFor(n, 300_000);
  d.child.kill('SIGTERM');
  await new Promise((r) => d.child.once('exit', r));
  await backend.close();
  return n / ((t1 - t0) / 1000);
}

async function flood(dir: string, file: string, n: number): Promise<{ peakRss: number; baseRss: number }> {
  const backend = await startCountingBackend();
  backend.failWith = 503;
  const { d, socket } = await startDaemon(dir, backend.url, ['--queue-max-bytes', String(QUEUE_MAX_BYTES), '--queue-max-spans', String(10 * n)]);
  const pid = d.child.pid!;
  const baseRss = rssOf(pid);
  let peakRss = baseRss;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, rssOf(pid))), 20);
  const b = await blast(socket, file);
  b.go();
  await b.sent;
  await new Promise((r) => setTimeout(r, 2000)); // let the daemon finish reading what the socket holds
  clearInterval(sampler);
  peakRss = Math.max(peakRss, rssOf(pid));
  d.child.kill('SIGKILL');
  await backend.close();
  return { peakRss, baseRss };
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'bench-daemon-'));
  try {
    const file = join(dir, 'spans.ndjson');
    const data = spanLines(SPANS);
    writeFileSync(file, data);
    console.log(`# daemon benchmark: ${SPANS} spans of ~${Math.round(data.length / SPANS)} bytes, ${ROUNDS} rounds, node ${process.version}`);
    const floors: number[] = [];
    const daemons: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      floors.push(await floorRate(dir, file, SPANS));
      daemons.push(await daemonRate(dir, file, SPANS));
      console.log(`round ${r + 1}: floor ${Math.round(floors[r]!)} lines/s, daemon end-to-end ${Math.round(daemons[r]!)} spans/s (${((100 * daemons[r]!) / floors[r]!).toFixed(0)} %)`);
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
    const f = median(floors);
    const dm = median(daemons);
    console.log(`throughput (median): floor ${Math.round(f)}/s, daemon ${Math.round(dm)}/s = ${((100 * dm) / f).toFixed(0)} % of the floor (goal ≥ 40 %)`);

    const floodFile = join(dir, 'flood.ndjson');
    writeFileSync(floodFile, spanLines(FLOOD));
    const { peakRss, baseRss } = await flood(dir, floodFile, FLOOD);
    const bound = QUEUE_MAX_BYTES + 100 * 1024 * 1024;
    console.log(`flood: ${FLOOD} spans, backend down: peak RSS ${mib(peakRss)} MiB (idle ${mib(baseRss)} MiB), bound ${mib(bound)} MiB = queue ${mib(QUEUE_MAX_BYTES)} + 100 → ${peakRss <= bound ? 'within' : 'OVER'}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
