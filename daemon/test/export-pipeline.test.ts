/**
 * The export pipeline's moving parts: queued spans in reused slabs, putting a batch back in the
 * queue, the export loop preparing the next batch while one is in flight (once per batch, kept
 * across retries, handed back to the queue during a backoff), and the worker-thread preparer
 * giving the same bodies as the in-thread one.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { gunzipSync } from 'node:zlib';
import { pino } from 'pino';
import type { SpanRecord } from '@dspy-o11y/proto';
import { Batcher } from '../src/batch/batcher.js';
import { ExportLoop } from '../src/export/export-loop.js';
import { BatchEncoder, LocalPreparer, WorkerPreparer, prepareInWorker, type PrepareOptions, type PrepareRequest } from '../src/export/prepare.js';
import type { ExportOutcome, PreparedBatch, SpanExporter } from '../src/export/types.js';
import { QueuedSpan, queuedSpan, spanOf, type Resource } from '../src/model.js';
import { Stats } from '../src/ops/stats.js';
import { LineStore, SLAB_BYTES } from '../src/queue/line-store.js';
import { SpanQueue } from '../src/queue/span-queue.js';

const resource: Resource = { attributes: { 'service.name': 'pipeline', 'service.version': '2.0.0', 'deployment.environment.name': 'Prod Env' } };
const other: Resource = { attributes: { 'service.name': 'other' } };
const quiet = pino({ level: 'silent' });

let n = 0;
function record(extra: Partial<SpanRecord> = {}): SpanRecord {
  n++;
  return {
    v: 1,
    type: 'span',
    traceId: (Math.floor(n / 3) + 1).toString(16).padStart(32, 'a'),
    spanId: n.toString(16).padStart(16, '0'),
    parentSpanId: n % 3 === 0 ? undefined : 'ffffffffffffffff',
    name: `span-${n}`,
    startTimeUnixNano: '1732700000123456789',
    endTimeUnixNano: '1732700000223456789',
    attributes: { 'dspy.observation.type': 'generation', 'gen_ai.usage.input_tokens': n, 'dspy.trace.name': `trace-${Math.floor(n / 3)}`, 'gen_ai.usage.cost': '0.5' },
    ...extra,
  };
}
const spans = (count: number, r: Resource = resource) => Array.from({ length: count }, () => queuedSpan(record(), r));

describe('queued spans and their slabs', () => {
  test('a line round-trips through its slab, UTF-8 included, and the bytes count line + overhead', () => {
    const line = JSON.stringify(record({ name: 'café ☕ 😀' }));
    const q = QueuedSpan.fromLine(line, resource);
    assert.equal(q.line, line);
    assert.equal(spanOf(q).name, 'café ☕ 😀');
    assert.equal(q.length, Buffer.byteLength(line));
    assert.equal(QueuedSpan.fromLine(line, resource).line, line);
    // An ASCII line (as the splitter flags it) is copied as latin1: the same bytes as UTF-8.
    const ascii = JSON.stringify(record({ name: 'plain ascii' }));
    const a = QueuedSpan.fromLine(ascii, resource, true);
    assert.equal(a.line, ascii);
    assert.equal(a.length, Buffer.byteLength(ascii));
    assert.equal(a.bytes, QueuedSpan.fromLine(ascii, resource).bytes);
  });

  test('a wire line with invalid UTF-8 is queued as decoded (U+FFFD), not cut to its wire length', () => {
    const wire = Buffer.concat([Buffer.from('{"name":"a'), Buffer.from([0xff, 0xfe]), Buffer.from('b"}')]);
    const line = wire.toString('utf8');
    const q = QueuedSpan.fromLine(line, resource);
    assert.equal(q.line, line);
    assert.deepEqual(JSON.parse(q.line), { name: 'a\ufffd\ufffdb' });
  });

  test('joinLines gives the batch as NDJSON (no trailing newline), across slabs and out of order', () => {
    const qs = spans(600);
    const lines = qs.map((q) => q.line);
    assert.equal(QueuedSpan.joinLines(qs).toString(), lines.join('\n'));
    const mixed = [qs[5]!, qs[6]!, qs[2]!, qs[599]!, qs[3]!];
    assert.equal(QueuedSpan.joinLines(mixed).toString(), mixed.map((q) => q.line).join('\n'));
    assert.equal(QueuedSpan.joinLines([]).length, 0);
  });

  test('release is idempotent; a released span cannot be read', () => {
    const q = queuedSpan(record(), resource);
    q.release();
    q.release();
    assert.throws(() => q.line, /after release/);
  });

  test('spanOf drops __proto__ attribute keys, as the schema does', () => {
    const q = QueuedSpan.fromLine(JSON.stringify(record()).replace('"attributes":{', '"attributes":{"__proto__":["x"],'), resource);
    const s = spanOf(q);
    assert.equal(Object.getPrototypeOf(s.attributes), Object.prototype);
    assert.ok(!Object.hasOwn(s.attributes!, '__proto__'));
  });

  test('a slab whose lines are all released is written again; long lines get their own buffer', () => {
    const store = new LineStore();
    const first = store.alloc(1000);
    const fill: ReturnType<LineStore['alloc']>[] = [];
    while (fill.length < SLAB_BYTES / 1000) fill.push(store.alloc(1000)); // past the first slab
    assert.notEqual(fill.at(-1)!.slab, first.slab);
    store.release(first.slab);
    for (const f of fill) if (f.slab === first.slab) store.release(f.slab);
    let reused = false;
    for (let i = 0; i < SLAB_BYTES / 1000 + 1 && !reused; i++) reused = store.alloc(1000).slab === first.slab;
    assert.ok(reused, 'the emptied slab came back from the free list');
    const big = store.alloc(SLAB_BYTES);
    assert.equal(big.offset, 0);
    assert.equal(big.slab.buf.length, SLAB_BYTES);
    assert.notEqual(big.slab, first.slab);
  });

  test('putBack returns spans to the front in order; over a bound the oldest (those) go first', () => {
    let dropped = 0;
    const q = new SpanQueue({ maxSpans: 5, maxBytes: 1e9 }, (k) => (dropped += k));
    const all = spans(7);
    const names = all.map((s) => spanOf(s).name);
    for (const s of all.slice(0, 3)) q.push(s);
    const taken = q.take(2, 1e9);
    for (const s of all.slice(3)) q.push(s);
    assert.equal(q.spans, 5);
    q.putBack(taken);
    assert.equal(q.spans, 5);
    assert.equal(dropped, 2);
    assert.deepEqual(q.drain().map((s) => spanOf(s).name), names.slice(2));
  });
});

/** An exporter that records calls and answers from a script. */
class ScriptedExporter implements SpanExporter {
  readonly kind = 'otlp' as const;
  readonly destination = 'test';
  readonly encoding = 'json' as const;
  readonly prepared: string[][] = [];
  readonly sent: { names: string[]; prepared: PreparedBatch | undefined }[] = [];
  inFlight = 0;
  maxInFlight = 0;
  constructor(private readonly answer: (attempt: number) => ExportOutcome | Promise<ExportOutcome>) {}

  async prepare(batch: readonly QueuedSpan[]): Promise<PreparedBatch> {
    const names = batch.map((q) => spanOf(q).name);
    this.prepared.push(names);
    return { body: Buffer.from(names.join(',')) };
  }

  async send(batch: readonly QueuedSpan[], _signal: AbortSignal, prepared?: PreparedBatch): Promise<ExportOutcome> {
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      this.sent.push({ names: batch.map((q) => spanOf(q).name), prepared });
      return await this.answer(this.sent.length);
    } finally {
      this.inFlight--;
    }
  }

  async close(): Promise<void> {}
}

function pipeline(exporter: SpanExporter, batchSpans: number) {
  const stats = new Stats();
  const queue = new SpanQueue({ maxSpans: 1e6, maxBytes: 1e9 }, (k) => stats.drop('queue_overflow', k));
  const batcher = new Batcher(queue, { maxSpans: batchSpans, maxBytes: 1e9, flushIntervalMs: 10 });
  const loop = new ExportLoop(batcher, exporter, stats, quiet, { exportTimeoutMs: 5_000, maxRetries: 5, backoff: { initialMs: 30, maxMs: 30, maxRetryAfterMs: 30 } });
  const push = (qs: QueuedSpan[]) => {
    for (const q of qs) {
      stats.spansReceived++;
      queue.push(q);
    }
  };
  const invariant = () => {
    assert.equal(stats.spansReceived, stats.spansExported + stats.droppedInDaemon() + queue.spans + loop.inFlightSpans);
  };
  return { stats, queue, loop, push, invariant };
}

// Up to 10 s: the suite's files run in parallel on 2 cores, and this once failed at 2.5 s under load.
const until = async (cond: () => boolean, what: string) => {
  for (let i = 0; i < 2000 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(cond(), what);
};
/**
 * `until` for tests whose timers are mocked: checked between turns of the event loop (setImmediate,
 * not mocked), so every promise chain that could run has run when `cond` is read.
 */
const settled = async (cond: () => boolean, what: string) => {
  const deadline = Date.now() + 10_000;
  while (!cond() && Date.now() < deadline) await new Promise((r) => setImmediate(r));
  assert.ok(cond(), what);
};

describe('export loop, pipelined one batch deep', () => {
  test('the next batch is prepared while the current request is in flight; one request at a time', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const exporter = new ScriptedExporter(async (attempt) => {
      if (attempt === 1) await gate;
      return { kind: 'delivered' };
    });
    const p = pipeline(exporter, 4);
    p.push(spans(8));
    p.loop.start();
    await until(() => exporter.sent.length === 1 && exporter.prepared.length === 2, 'batch 2 prepared during request 1');
    assert.equal(p.loop.inFlightSpans, 8, 'both batches count as in flight');
    p.invariant();
    release();
    await until(() => p.stats.spansExported === 8, 'all delivered');
    assert.equal(exporter.maxInFlight, 1);
    assert.deepEqual(exporter.sent.map((s) => String((s.prepared as { body: Buffer }).body)), exporter.prepared.map((names) => names.join(',')));
    p.invariant();
    await p.loop.stop(1000, () => p.queue.drain());
  });

  test('a retried batch is prepared once; during its backoff the next batch waits in the queue', async (t) => {
    // The backoffs' clock is the test's: each lasts until ticked, so the queue is looked at during
    // it. With real timers a 0–29 ms jitter could let all retries and the next batch go first.
    t.mock.timers.enable({ apis: ['setTimeout'] });
    t.after(() => t.mock.timers.reset());
    const exporter = new ScriptedExporter((attempt) => (attempt <= 3 ? { kind: 'retryable', reason: 'http_503', status: 503 } : { kind: 'delivered' }));
    const p = pipeline(exporter, 4);
    p.push(spans(8));
    p.loop.start();
    for (let attempt = 1; attempt <= 3; attempt++) {
      await settled(() => exporter.sent.length === attempt && p.loop.state === 'backoff', `backoff after attempt ${attempt}`);
      p.invariant();
      assert.equal(p.loop.inFlightSpans, 4, 'only the batch being retried is held');
      assert.equal(p.queue.spans, 4, 'the next batch is back in the queue');
      t.mock.timers.tick(30); // the policy's longest backoff
    }
    await settled(() => p.stats.spansExported === 8, 'all delivered');
    t.mock.timers.reset();
    assert.equal(exporter.sent.length, 5);
    const first = exporter.sent.slice(0, 4);
    assert.ok(first.every((s) => s.prepared === first[0]!.prepared), 'every attempt sent the same prepared body');
    assert.equal(exporter.prepared.filter((names) => names[0] === first[0]!.names[0]).length, 1, 'batch 1 prepared once for its 4 attempts');
    assert.equal(exporter.maxInFlight, 1);
    p.invariant();
    await p.loop.stop(1000, () => p.queue.drain());
  });

  test('413 splits into halves, each prepared anew; invariant holds throughout', async () => {
    const exporter = new ScriptedExporter((attempt) => (attempt === 1 ? { kind: 'too_large' } : { kind: 'delivered' }));
    const p = pipeline(exporter, 4);
    p.push(spans(4));
    p.loop.start();
    await until(() => p.stats.spansExported === 4, 'halves delivered');
    assert.deepEqual(exporter.sent.map((s) => s.names.length), [4, 2, 2]);
    assert.deepEqual(exporter.prepared.map((names) => names.length), [4, 2, 2]);
    p.invariant();
    await p.loop.stop(1000, () => p.queue.drain());
  });
});

describe('worker-thread preparation', () => {
  const options: PrepareOptions = { encoding: 'protobuf', compression: 'gzip', scope: { name: 'dspy-o11y', version: '1.0.0' }, langfuse: {} };

  test('gives the same bodies, repairs and trace memory as preparing in-thread', async () => {
    const localRepairs: string[] = [];
    const workerRepairs: string[] = [];
    const local = new LocalPreparer(options, (r) => localRepairs.push(r));
    const worker = new WorkerPreparer(options, (r) => workerRepairs.push(r));
    try {
      const withEvents = record({ events: [{ name: 'retry', timeUnixNano: '1732700000150000000', attributes: { attempt: 2, 'dspy.input': 'x' } }] });
      const batches = [
        [...spans(5), queuedSpan(withEvents, other), ...spans(3, other)],
        [...spans(4), queuedSpan(record({ attributes: { 'langfuse.observation.type': 'span' } }), resource)],
        // Non-ASCII lines (the worker decodes all-ASCII batches as latin1, the rest as UTF-8).
        [...spans(2), queuedSpan(record({ name: 'café ☕ 😀', attributes: { 'dspy.input': 'Grüße, 日本語' } }), resource)],
      ];
      for (const batch of batches) {
        const [a, b] = await Promise.all([local.prepare(batch), worker.prepare(batch)]);
        assert.ok('body' in a && 'body' in b);
        assert.deepEqual(gunzipSync(b.body), gunzipSync(a.body));
      }
      assert.deepEqual(workerRepairs.sort(), localRepairs.sort());
      assert.ok(localRepairs.length > 0);
      assert.equal(worker.rememberedTraces, local.rememberedTraces);
      // Prepared on the worker, not by the in-thread fallback a dead worker leaves behind.
      const internals = worker as unknown as { worker?: unknown; local?: unknown };
      assert.ok(internals.worker && !internals.local, 'the worker is still alive');
    } finally {
      await worker.close();
    }
  });

  test('the worker transfers a buffer holding exactly the body (zlib output is a view into a pool that must not be detached)', () => {
    for (const compression of ['gzip', 'none'] as const) {
      const encoder = new BatchEncoder({ ...options, compression });
      const batch = spans(3);
      const m: PrepareRequest = { id: 1, lines: QueuedSpan.joinLines(batch), resourceIds: new Float64Array(batch.length).fill(1), defs: [[1, resource]], forget: [] };
      const { response, transfer } = prepareInWorker(encoder, compression, new Map(), m, new Map());
      assert.ok('body' in response, JSON.stringify(response));
      assert.equal(transfer.length, 1);
      assert.equal(transfer[0], response.body.buffer);
      assert.equal(response.body.byteOffset, 0);
      assert.equal(response.body.buffer.byteLength, response.body.byteLength, `${compression}: the transferred buffer is the body's alone`);
    }
  });

  test('resource ids past 2^31 still name their resource (ids are never reused: a daemon running for weeks gets there)', async () => {
    const worker = new WorkerPreparer(options);
    try {
      // As after 2^31 resources since the start (one per OTLP request's resource, per body or connection with a hello).
      (worker as unknown as { nextResourceId: number }).nextResourceId = 2 ** 31 - 1;
      for (let b = 0; b < 3; b++) {
        const batch = [...spans(2, { attributes: { 'service.name': `a${b}` } }), ...spans(2, { attributes: { 'service.name': `b${b}` } })];
        const prepared = await worker.prepare(batch);
        assert.ok('body' in prepared, `batch ${b}: ${'error' in prepared ? prepared.error : ''}`);
        const body = gunzipSync(prepared.body).toString('latin1');
        assert.ok(body.includes(`a${b}`) && body.includes(`b${b}`), `batch ${b}: both resources are in the body`);
      }
      const internals = worker as unknown as { worker?: unknown; local?: unknown };
      assert.ok(internals.worker && !internals.local, 'prepared on the worker');
    } finally {
      await worker.close();
    }
  });

  test('a dead worker does not lose batches: they are prepared in-thread from then on', async () => {
    const local = new LocalPreparer(options);
    const worker = new WorkerPreparer(options);
    const originalEmit = process.emitWarning;
    const warnings: string[] = [];
    process.emitWarning = ((w: string | Error) => void warnings.push(String(w))) as typeof process.emitWarning;
    try {
      const batch = spans(3);
      const first = await worker.prepare(batch);
      assert.ok('body' in first);
      await (worker as unknown as { worker: { terminate(): Promise<number> } }).worker.terminate();
      const again = await worker.prepare(batch);
      const expected = await local.prepare(batch);
      assert.ok('body' in again && 'body' in expected);
      assert.ok(gunzipSync(again.body).length > 0);
      assert.equal(warnings.length, 1);
      assert.match(warnings[0]!, /export worker/);
    } finally {
      process.emitWarning = originalEmit;
      await worker.close();
    }
  });
});

describe('export loop, refusals in the log', () => {
  test("a proxy's 407 is logged as the proxy's refusal, not the backend's", async () => {
    const lines: string[] = [];
    const log = pino({ level: 'error' }, { write: (line: string) => void lines.push(line) });
    const exporter = new ScriptedExporter(async () => ({ kind: 'refused', status: 407, body: 'the proxy refused its credentials' }));
    const stats = new Stats();
    const queue = new SpanQueue({ maxSpans: 100, maxBytes: 1e9 }, (k) => stats.drop('queue_overflow', k));
    const loop = new ExportLoop(new Batcher(queue, { maxSpans: 1, maxBytes: 1e9, flushIntervalMs: 10 }), exporter, stats, log, { exportTimeoutMs: 5_000, maxRetries: 0 });
    stats.spansReceived++;
    queue.push(spans(1)[0]!);
    loop.start();
    await until(() => lines.length > 0, 'the refusal is logged');
    await loop.stop(1000, () => queue.drain());
    const { msg, status } = JSON.parse(lines[0]!) as { msg: string; status: number };
    assert.equal(status, 407);
    assert.match(msg, /^the proxy refused a batch/);
  });
});
