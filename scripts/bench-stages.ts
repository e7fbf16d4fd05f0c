/**
 * Per-stage cost of the daemon's span path, in µs per span, on the daemon benchmark's spans
 * (scripts/lib/spans.ts), each stage run over many batches of distinct spans so that garbage
 * collection is paid as in the daemon (CPU time of the process, so GC helper threads count):
 *
 *   main thread:   JSON.parse of a line · zod validation (validateRecord)
 *   export worker: JSON.parse of the batch · Langfuse mapping · protobuf encoding (ours, and
 *                  otlp-transformer's serializer, which writes the same bytes, for comparison) · gzip
 *   whole worker step (export/prepare.ts `prepareInWorker`, what the worker does per batch)
 *
 *   npm run build && node scripts/dist/bench-stages.js [--spans 40000] [--batch 2048] [--rounds 5] [--gzip-level 1]
 *                                                      [--per-trace 10]  (1: every span the root of its own trace)
 */
import { gzipSync } from 'node:zlib';
import { validateRecord, type SpanRecord } from '@dspy-o11y/proto';
import type { Resource } from 'dspy-o11yd/dist/src/model.js';
import { LangfuseMapper } from 'dspy-o11yd/dist/src/export/langfuse-map.js';
import { encodeTraces, serializeWithOtlpTransformer, type EncodableSpan } from 'dspy-o11yd/dist/src/export/otlp-encode.js';
import { BatchEncoder, prepareInWorker, type PrepareRequest } from 'dspy-o11yd/dist/src/export/prepare.js';
import { benchSpanLines, BENCH_RESOURCE } from './lib/spans.js';
import { median } from './lib/stats.js';

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const SPANS = arg('spans', 40_000);
const BATCH = arg('batch', 2048);
const ROUNDS = arg('rounds', 5);
const GZIP_LEVEL = arg('gzip-level', 1);
const PER_TRACE = arg('per-trace', 10);

const lines = benchSpanLines(SPANS, 0, PER_TRACE);
const batches: string[][] = [];
for (let i = 0; i + BATCH <= lines.length; i += BATCH) batches.push(lines.slice(i, i + BATCH));
const resource: Resource = { attributes: BENCH_RESOURCE };
const scope = { name: 'dspy-o11y', version: '0.1.0' };

/**
 * Runs `fn` over every batch, ROUNDS times; prints the median CPU time (user + system, all of the
 * process's threads: garbage collection included) per span, which a busy machine disturbs less
 * than wall time.
 */
function stage<T>(name: string, input: (b: number) => T, fn: (x: T) => unknown): number {
  const perRound: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    let us = 0;
    let spans = 0;
    for (let b = 0; b < batches.length; b++) {
      const x = input(b);
      const c0 = process.cpuUsage();
      fn(x);
      const c = process.cpuUsage(c0);
      us += c.user + c.system;
      spans += batches[b]!.length;
    }
    perRound.push(us / spans);
  }
  const m = median(perRound);
  console.log(`${name.padEnd(36)} ${m.toFixed(2).padStart(6)} µs/span   (min ${Math.min(...perRound).toFixed(2)})`);
  return m;
}

console.log(`# stages: ${batches.length} batches of ${BATCH} spans (~${Math.round(lines.join('\n').length / lines.length)} bytes), ${ROUNDS} rounds, ${PER_TRACE} per trace, gzip level ${GZIP_LEVEL}, node ${process.version}`);

// Each stage's inputs are built just before it and dropped after it, so that one stage's data
// does not sit in the heap (and in every GC) while the next is measured.
console.log('main thread');
stage('  JSON.parse (per line)', (b) => batches[b]!, (ls) => ls.map((l) => JSON.parse(l)));
let parsed: unknown[][] | undefined = batches.map((ls) => ls.map((l) => JSON.parse(l) as unknown));
stage('  validateRecord (zod)', (b) => parsed![b]!, (ps) => ps.map((p) => validateRecord(p)));
parsed = undefined;

console.log('export worker');
const encoder = new BatchEncoder({ encoding: 'protobuf', compression: 'gzip', scope, langfuse: {} });
const resources = new Map<number, Resource>([[1, resource]]);
const repairs = new Map();
let id = 0;
const ndjson = batches.map((ls) => Buffer.from(ls.join('\n')));
const request = (b: number): PrepareRequest => ({ id: ++id, lines: ndjson[b]!, resourceIds: new Float64Array(batches[b]!.length).fill(1), defs: [], forget: [] });
stage('  prepareInWorker (all of the below)', request, (m) => prepareInWorker(encoder, 'gzip', resources, m, repairs));
const joined = batches.map((ls) => `[${ls.join(',')}]`);
stage('  JSON.parse (the batch as one array)', (b) => joined[b]!, (j) => JSON.parse(j));
const mapper = new LangfuseMapper();
const encodable = (b: number): EncodableSpan[] => (JSON.parse(joined[b]!) as SpanRecord[]).map((span) => ({ span, resource }));
stage('  LangfuseMapper.map', encodable, (spans) => mapper.map(spans));
const mapped = batches.map((_, b) => new LangfuseMapper().map(encodable(b)));
stage('  encodeTraces (protobuf)', (b) => mapped[b]!, (spans) => encodeTraces(spans, { encoding: 'protobuf', scope }));
stage('  (otlp-transformer, same bytes)', (b) => mapped[b]!, (spans) => serializeWithOtlpTransformer(spans, { encoding: 'protobuf', scope }));
const bodies = mapped.map((spans) => encodeTraces(spans, { encoding: 'protobuf', scope }));
stage(`  gzip level ${GZIP_LEVEL}`, (b) => bodies[b]!, (body) => gzipSync(body, { level: GZIP_LEVEL }));
const sizes = bodies.map((body) => [body.length, gzipSync(body, { level: GZIP_LEVEL }).length, gzipSync(body).length]);
const per = (k: number) => (sizes.reduce((t, s) => t + s[k]!, 0) / (batches.length * BATCH)).toFixed(0);
console.log(`body bytes/span: protobuf ${per(0)}, gzip level ${GZIP_LEVEL} ${per(1)}, gzip level 6 ${per(2)}`);
