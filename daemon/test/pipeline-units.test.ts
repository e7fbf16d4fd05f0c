import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SpanQueue } from '../src/queue/span-queue.js';
import { Batcher } from '../src/batch/batcher.js';
import { LineSplitter, PartialLineBudget } from '../src/ingest/line-splitter.js';
import { backoffDelay, deadline } from '../src/export/backoff.js';
import { getEventListeners } from 'node:events';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { resolveConfig, ConfigError } from '../src/config.js';
import { QUEUED_SPAN_OVERHEAD_BYTES, QueuedSpan, setQueueMemoryCeiling, spanOf } from '../src/model.js';
import { MIN_QUEUE_KEPT_BYTES, SLAB_BYTES } from '../src/queue/line-store.js';
import { keepTrace, newTraceId } from '@dspy-o11y/proto';

const resource = { attributes: {} };
/** Span `s<i>` whose queued size (`bytes`: line + fixed overhead) is `bytes`: the line is padded to fit. */
const span = (i: number, bytes = 400): QueuedSpan => {
  const record = { v: 1, type: 'span', traceId: 'a'.repeat(32), spanId: (i + 1).toString(16).padStart(16, '0'), name: `s${i}`, startTimeUnixNano: '1', endTimeUnixNano: '1', pad: '' };
  record.pad = 'x'.repeat(bytes - QUEUED_SPAN_OVERHEAD_BYTES - JSON.stringify(record).length);
  const q = QueuedSpan.fromLine(JSON.stringify(record), resource);
  assert.equal(q.bytes, bytes);
  return q;
};

/** Runs `body` with `q` under a memory ceiling of `maxRssBytes` and that RSS reading; then lifts it and empties `q`. */
function underCeiling(q: SpanQueue, maxRssBytes: number, rss: () => number, body: () => void): void {
  setQueueMemoryCeiling({ maxRssBytes, reclaim: () => q.dropOldestOne(), queuedBytes: () => q.bytes, rss });
  try {
    body();
  } finally {
    setQueueMemoryCeiling(undefined);
    q.drain().forEach((s) => s.release());
  }
}

test('queue drops exactly the oldest when the span bound is reached, and counts them', () => {
  let dropped = 0;
  const q = new SpanQueue({ maxSpans: 100, maxBytes: 1e9 }, (n) => (dropped += n));
  for (let i = 0; i < 1000; i++) q.push(span(i));
  assert.equal(q.spans, 100);
  assert.equal(dropped, 900);
  const names = q.drain().map((s) => spanOf(s).name);
  assert.deepEqual(names, Array.from({ length: 100 }, (_, i) => `s${900 + i}`));
});

test('over the memory ceiling the queue recycles its oldest slab instead of growing: oldest dropped and counted', () => {
  let dropped = 0;
  const q = new SpanQueue({ maxSpans: 1e6, maxBytes: 1e9 }, (n) => (dropped += n));
  // A process "RSS" that grows with every new slab the store takes, as real RSS would.
  let slabsTaken = 0;
  let rssChecks = 0;
  const base = 50 * SLAB_BYTES;
  const perSlab = Math.floor(SLAB_BYTES / 1000); // spans of 1000 bytes per slab
  underCeiling(q, base + 4 * SLAB_BYTES, () => (rssChecks++, base + slabsTaken++ * SLAB_BYTES), () => {
    const n = 20 * perSlab;
    for (let i = 0; i < n; i++) q.push(span(i, 1000));
    assert.ok(rssChecks >= 4, 'the ceiling is checked when the store needs a new slab');
    assert.ok(q.spans < 6 * perSlab, `the queue stopped growing at the ceiling (${q.spans} spans held)`);
    assert.ok(q.spans > 2 * perSlab, `and still holds what fits (${q.spans} spans)`);
    assert.equal(dropped + q.spans, n, 'every span is either queued or counted as dropped');
    const names = q.drain().map((s) => spanOf(s).name);
    assert.deepEqual(names, Array.from({ length: names.length }, (_, i) => `s${n - names.length + i}`), 'the newest are kept, in order');
  });
});

test('a process over the memory ceiling by itself does not empty the queue: it keeps MIN_QUEUE_KEPT_BYTES', () => {
  let dropped = 0;
  const q = new SpanQueue({ maxSpans: 1e6, maxBytes: 1e9 }, (n) => (dropped += n));
  // Node's own RSS is already past the limit: no drop can bring it under.
  underCeiling(q, 10 * SLAB_BYTES, () => 20 * SLAB_BYTES, () => {
    const n = 20 * Math.floor(SLAB_BYTES / 1000);
    for (let i = 0; i < n; i++) q.push(span(i, 1000));
    assert.ok(q.bytes >= MIN_QUEUE_KEPT_BYTES - 1000, `the queue keeps its floor (${q.bytes} bytes held)`);
    assert.ok(q.bytes <= MIN_QUEUE_KEPT_BYTES + 2 * SLAB_BYTES, `and no more over the ceiling (${q.bytes} bytes held)`);
    assert.equal(dropped + q.spans, n, 'every span is either queued or counted as dropped');
  });
});

test('spans in buffers of their own: the ceiling applies to them, and small spans over it drop about a slab per slab, not the queue', () => {
  let dropped = 0;
  const q = new SpanQueue({ maxSpans: 1e6, maxBytes: 1e9 }, (n) => (dropped += n));
  const big = 100_000; // over a quarter slab: a buffer of its own
  for (let i = 0; i < 40; i++) q.push(span(i, big));
  // Now the process is over the ceiling (setting it reads the RSS at the next allocation).
  underCeiling(q, 100 * SLAB_BYTES, () => 200 * SLAB_BYTES, () => {
    // A slab's worth of small spans: at least one new slab, at most two, each dropping about two slabs' worth.
    const small = Math.floor(SLAB_BYTES / 1000) + 1;
    for (let i = 40; i < 40 + small; i++) q.push(span(i, 1000));
    const bigLeft = q.spans - small;
    assert.ok(bigLeft >= 40 - 2 * Math.ceil((2 * SLAB_BYTES) / big), `a slab of small spans dropped ${40 - bigLeft} large ones`);
    const before = q.bytes;
    const end = 40 + small + 40;
    for (let i = 40 + small; i < end; i++) q.push(span(i, big));
    assert.ok(q.bytes <= before + big, `over the ceiling large spans do not grow the queue (${before} -> ${q.bytes} bytes)`);
    assert.equal(dropped + q.spans, end, 'every span is either queued or counted as dropped');
    const names = q.drain().map((s) => spanOf(s).name);
    assert.equal(names.at(-1), `s${end - 1}`, 'the newest are kept');
  });
});

test('far from the memory ceiling the RSS is read once per 16 new slabs, not per slab', () => {
  const q = new SpanQueue({ maxSpans: 1e6, maxBytes: 1e9 }, () => {});
  let rssChecks = 0;
  underCeiling(q, 1e12, () => (rssChecks++, 100 * SLAB_BYTES), () => {
    const perSlab = Math.floor(SLAB_BYTES / 1000);
    for (let i = 0; i < 64 * perSlab; i++) q.push(span(i, 1000));
    assert.ok(rssChecks >= 3 && rssChecks <= 6, `64+ new slabs, ${rssChecks} RSS reads`);
    assert.equal(q.spans, 64 * perSlab, 'nothing dropped');
  });
});

test('queue honours the byte bound, and a span larger than the bound is dropped alone', () => {
  let dropped = 0;
  const q = new SpanQueue({ maxSpans: 1e6, maxBytes: 4000 }, (n) => (dropped += n));
  for (let i = 0; i < 25; i++) q.push(span(i, 400));
  assert.equal(q.spans, 10);
  assert.equal(q.bytes, 4000);
  q.push(span(99, 20_000));
  assert.equal(q.spans, 10, 'the oversized span did not evict the others');
  assert.equal(dropped, 16);
});

test('queue take respects spans and bytes limits, always taking at least one', () => {
  const q = new SpanQueue({ maxSpans: 1e6, maxBytes: 1e9 }, () => undefined);
  for (let i = 0; i < 10; i++) q.push(span(i, 400));
  assert.equal(q.take(3, 1e9).length, 3);
  assert.equal(q.take(100, 1000).length, 2);
  q.push(span(50, 40_000));
  assert.equal(q.take(100, 1).length, 1, 'one span above maxBytes still moves');
  assert.equal(q.spans, 5);
});

test('queue keeps FIFO order across ring growth and wraparound', () => {
  const q = new SpanQueue({ maxSpans: 5000, maxBytes: 1e9 }, () => undefined);
  let next = 0;
  let expected = 0;
  for (let round = 0; round < 20; round++) {
    for (let i = 0; i < 700; i++) q.push(span(next++));
    for (const s of q.take(500, 1e9)) assert.equal(spanOf(s).name, `s${expected++}`);
  }
  for (const s of q.drain()) assert.equal(spanOf(s).name, `s${expected++}`);
  assert.equal(expected, next);
});

test('batcher cuts a full batch at once and a partial one after the flush interval', async () => {
  const q = new SpanQueue({ maxSpans: 1e6, maxBytes: 1e9 }, () => undefined);
  const b = new Batcher(q, { maxSpans: 10, maxBytes: 1e9, flushIntervalMs: 150 });
  for (let i = 0; i < 25; i++) q.push(span(i));
  assert.equal((await b.next()).length, 10);
  assert.equal((await b.next()).length, 10);
  const t0 = Date.now();
  const partial = await b.next();
  assert.equal(partial.length, 5);
  const pending = b.next();
  setTimeout(() => q.push(span(100)), 20);
  assert.equal((await pending).length, 1);
  assert.ok(Date.now() - t0 >= 100, 'the partial batch waited for the interval');
  b.close();
  assert.deepEqual(await b.next(), []);
});

test('batcher: the flush interval is measured on a monotonic clock, so a wall clock stepped back does not hold a partial batch', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  let wall = Date.now();
  let monotonic = 1_000_000; // whole ms: a float sum could fall short of the interval by 1e-10
  t.mock.method(Date, 'now', () => wall);
  t.mock.method(performance, 'now', () => monotonic);
  const q = new SpanQueue({ maxSpans: 1e6, maxBytes: 1e9 }, () => undefined);
  const b = new Batcher(q, { maxSpans: 100, maxBytes: 1e9, flushIntervalMs: 1000 });
  q.push(span(1));
  const batches: QueuedSpan[][] = [];
  void b.next().then((taken) => batches.push(taken));
  const settle = () => new Promise((resolve) => setImmediate(resolve));
  await settle();
  assert.equal(batches.length, 0, 'waiting for the interval');
  // NTP steps the wall clock back an hour while the span waits; the interval still runs out.
  wall -= 3_600_000;
  monotonic += 1000;
  t.mock.timers.tick(1000);
  await settle();
  assert.equal(batches[0]?.length, 1, 'the partial batch is due after the flush interval');
});

test('batcher flush() sends a partial batch without waiting', async () => {
  const q = new SpanQueue({ maxSpans: 1e6, maxBytes: 1e9 }, () => undefined);
  const b = new Batcher(q, { maxSpans: 100, maxBytes: 1e9, flushIntervalMs: 60_000 });
  q.push(span(1));
  const next = b.next();
  b.flush();
  assert.equal((await next).length, 1);
});

test('line splitter frames lines across chunks and skips over-long lines without buffering them', () => {
  const lines: string[] = [];
  let tooLong = 0;
  const s = new LineSplitter(10, (b, st, e) => lines.push(b.toString('utf8', st, e)), () => tooLong++);
  s.push(Buffer.from('abc\r\nde'));
  s.push(Buffer.from('f\n\n0123456789ABCDEF'));
  s.push(Buffer.from('GHIJKLMNOP'.repeat(100)));
  s.push(Buffer.from('QR\nok\n0123456789X\nlast'));
  s.end();
  assert.deepEqual(lines, ['abc', 'def', 'ok', 'last']);
  assert.equal(tooLong, 2);
});

test('line splitter skips blank lines, empty or of spaces, tabs and CRs alone, also across chunks; a line that only starts with whitespace is kept', () => {
  const lines: string[] = [];
  const s = new LineSplitter(100, (b, st, e) => lines.push(b.toString('utf8', st, e)), () => assert.fail('no line is too long'));
  s.push(Buffer.from('a\n\n   \n\t\n \t \r\n\r\n \r \n  {"x":1}\n \tx\n  '));
  s.push(Buffer.from('\t\r'));
  s.push(Buffer.from('\nb\n \t'));
  s.end();
  assert.deepEqual(lines, ['a', '  {"x":1}', ' \tx', 'b']);
});

test('line splitter: the CR of a CRLF does not count toward the line limit, in one chunk or split before the LF', () => {
  const lines: string[] = [];
  let tooLong = 0;
  const s = new LineSplitter(10, (b, st, e) => lines.push(b.toString('utf8', st, e)), () => tooLong++);
  s.push(Buffer.from('0123456789\r\n'));
  s.push(Buffer.from('abcdefghij\r'));
  s.push(Buffer.from('\nABCDEFGHIJ'));
  s.push(Buffer.from('\r\n0123456789\rX\n'));
  s.end();
  assert.deepEqual(lines, ['0123456789', 'abcdefghij', 'ABCDEFGHIJ']);
  assert.equal(tooLong, 1, 'a CR that is not before the LF still counts');
});

test('line splitter: partial lines share a budget across splitters; a line past it is skipped to its newline', () => {
  const budget = new PartialLineBudget(15);
  const seen: string[] = [];
  const causes: string[] = [];
  const split = (name: string) => new LineSplitter(10, (b, st, e) => seen.push(`${name}:${b.toString('utf8', st, e)}`), (cause) => causes.push(`${name}:${cause}`), budget);
  const a = split('a');
  const b = split('b');
  const c = split('c');
  a.push(Buffer.from('aaaaaaaa'));
  b.push(Buffer.from('bbbbbbbb')); // 16 > 15 held: b's line is rejected
  assert.deepEqual(causes, ['b:budget']);
  assert.equal(budget.used, 8);
  b.push(Buffer.from('bb\nok\n'));
  a.push(Buffer.from('aa\n'));
  assert.deepEqual(seen, ['b:ok', 'a:aaaaaaaaaa']);
  assert.equal(budget.used, 0, 'a complete line gives its bytes back');
  c.push(Buffer.from('cccc'));
  c.discard(); // connection closed without a newline
  assert.equal(budget.used, 0);
});

test('line splitter: a UTF-8 BOM before a line is left out (RFC 8259 §8.1), also split across chunks; a BOM alone is a blank line', () => {
  const seen: string[] = [];
  const s = new LineSplitter(100, (b, st, e) => seen.push(b.toString('utf8', st, e)), () => assert.fail('no line is too long'));
  const bom = [0xef, 0xbb, 0xbf];
  s.push(Buffer.from([...bom, ...Buffer.from('{"a":1}\r\n')]));
  s.push(Buffer.from([...bom, 0x0a, bom[0]!, bom[1]!]));
  s.push(Buffer.from([bom[2]!, ...Buffer.from('{"b":2}\n{"c":3}\uFEFF\n')]));
  s.end();
  // Only a leading BOM: one elsewhere in a line is the line's own.
  assert.deepEqual(seen, ['{"a":1}', '{"b":2}', '{"c":3}\uFEFF']);
});

test('line splitter flags ASCII lines (decoded as latin1) and never a line with other bytes', () => {
  const seen: [string, boolean][] = [];
  const s = new LineSplitter(100, (b, st, e, ascii) => seen.push([b.toString('utf8', st, e), ascii]), () => {});
  s.push(Buffer.from('plain\ncafé\n'));
  s.push(Buffer.from('ok\nsplit '));
  s.push(Buffer.from([0xe2, 0x98]));
  s.push(Buffer.from([0x95, 0x0a]));
  s.push(Buffer.from('tail'));
  s.end();
  // A chunk with any non-ASCII byte flags all its lines false (a safe UTF-8 decode); lines joined
  // from parts are checked themselves.
  assert.deepEqual(seen, [['plain', false], ['café', false], ['ok', true], ['split ☕', false], ['tail', true]]);
});

test('backoff: full jitter under an exponential ceiling, Retry-After as a floor', () => {
  const policy = { initialMs: 100, maxMs: 1000, maxRetryAfterMs: 5000 };
  assert.equal(backoffDelay(0, undefined, policy, () => 0.999), 99);
  assert.equal(backoffDelay(3, undefined, policy, () => 0.5), 400);
  assert.equal(backoffDelay(20, undefined, policy, () => 0.999), 999);
  assert.equal(backoffDelay(0, 2000, policy, () => 0.5), 2000);
  assert.equal(backoffDelay(0, 60_000, policy, () => 0.5), 5000);
});

test('request deadline: times out with a TimeoutError, follows the parent, and leaves nothing on the parent once done', async () => {
  const parent = new AbortController();
  const t = deadline(10, parent.signal);
  // Waits for the abort itself, not for a longer sleep. The deadline's timer is unref'd: a ref'd
  // one keeps the process up meanwhile.
  const alive = setTimeout(() => undefined, 60_000);
  await new Promise((r) => t.signal.addEventListener('abort', r, { once: true }));
  clearTimeout(alive);
  assert.ok(t.signal.aborted && t.timedOut);
  assert.equal((t.signal.reason as Error).name, 'TimeoutError');
  t.done();
  const p = deadline(60_000, parent.signal);
  parent.abort(new Error('shutting down'));
  assert.ok(p.signal.aborted && !p.timedOut);
  assert.equal((p.signal.reason as Error).message, 'shutting down');
  p.done();
  assert.ok(deadline(60_000, parent.signal).signal.aborted, 'an aborted parent aborts at once');

  // A parent that lives as long as the daemon: per request, nothing may stay behind on it.
  // (AbortSignal.any([AbortSignal.timeout(ms), parent]) kept a WeakRef per call on Node 20: ~60 bytes each, forever.)
  const stopping = new AbortController();
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  // After a turn of the event loop: cleared timers and removed listeners are let go lazily.
  const heapAfterGc = async () => (await new Promise((r) => setTimeout(r, 50)), gc(), gc(), process.memoryUsage().heapUsed);
  for (let i = 0; i < 1000; i++) deadline(60_000, stopping.signal).done(); // warm-up
  const before = await heapAfterGc();
  for (let i = 0; i < 200_000; i++) deadline(60_000, stopping.signal).done();
  const grown = (await heapAfterGc()) - before;
  assert.equal(getEventListeners(stopping.signal, 'abort').length, 0);
  assert.ok(grown < 2 * 1024 * 1024, `200,000 requests kept ${grown} bytes on the heap`);
});

test('config: numbers are decimal (0x10 and a blank are errors, not 16 and 0; 1e3 and 1000.0, which worked before, are still 1000); an empty variable is unset', () => {
  const bad = (flags: Record<string, string>, env: Record<string, string>, pattern: RegExp) =>
    assert.throws(() => resolveConfig(flags, env), (e: Error) => e instanceof ConfigError && pattern.test(e.message), JSON.stringify({ flags, env }));
  bad({ maxConnections: '0x10' }, {}, /--max-connections "0x10": must be a whole number in decimal digits/);
  bad({ maxConnections: ' ' }, {}, /--max-connections " ": must be a whole number/); // was 0: no limit
  bad({ queueMaxSpans: '1e3.5' }, {}, /--queue-max-spans "1e3\.5": must be a whole number in decimal digits/);
  bad({ queueMaxSpans: '1500.5' }, {}, /--queue-max-spans "1500\.5": must be a whole number$/);
  bad({ queueMaxSpans: '1e400' }, {}, /--queue-max-spans "1e400": Invalid input: expected number, received Infinity/);
  bad({ queueMaxSpans: '1e20' }, {}, /--queue-max-spans "1e20": Too big/);
  // What z.coerce.number() read before and an existing config may hold: still the same number.
  assert.equal(resolveConfig({ queueMaxSpans: '1e5' }).queue.maxSpans, 100_000);
  assert.equal(resolveConfig({}, { DSPY_O11YD_QUEUE_MAX_BYTES: '1e9' }).queue.maxBytes, 1e9);
  assert.equal(resolveConfig({ flushInterval: '1000.0' }).batch.flushIntervalMs, 1000);
  assert.equal(resolveConfig({ nice: '+5' }).nice, 5);
  bad({ nice: '0x5' }, {}, /--nice "0x5"/);
  bad({}, { DSPY_O11YD_SAMPLE_RATIO: ' ' }, /--sample-ratio \(from DSPY_O11YD_SAMPLE_RATIO\) " ": must be a decimal number/); // was 0: every trace dropped
  bad({ sampleRatio: '0x1' }, {}, /--sample-ratio "0x1"/);
  // Only whitespace is an error for every option (README), --otlp-headers too (it was no headers), its text not shown.
  bad({ exporter: 'otlp', otlpEndpoint: 'http://127.0.0.1:9/v1/traces' }, { OTEL_EXPORTER_OTLP_HEADERS: ' \n' }, /^invalid --otlp-headers \(from OTEL_EXPORTER_OTLP_HEADERS\): is blank$/);
  bad({ otlpHeaders: ' ' }, {}, /^invalid --otlp-headers: is blank$/);
  // Surrounding whitespace (a value read from a file) and the usual decimal forms still read.
  assert.equal(resolveConfig({}, { DSPY_O11YD_MAX_CONNECTIONS: ' 12\n' }).maxConnections, 12);
  assert.equal(resolveConfig({ sampleRatio: '.5' }).sampleRatio, 0.5);
  assert.equal(resolveConfig({ sampleRatio: '1e-1' }).sampleRatio, 0.1);
  assert.equal(resolveConfig({ nice: '-5' }).nice, -5);
  // `X=` is X unset, as OpenTelemetry reads its variables: the next variable or the default applies…
  assert.equal(resolveConfig({}, { DSPY_O11YD_QUEUE_MAX_SPANS: '' }).queue.maxSpans, 200_000);
  assert.equal(resolveConfig({}, { LANGFUSE_HOST: '', LANGFUSE_BASE_URL: 'http://127.0.0.1:3000' }).langfuse.host, 'http://127.0.0.1:3000');
  assert.equal(resolveConfig({}, { LANGFUSE_HOST: '' }).langfuse.host, 'https://cloud.langfuse.com');
  // …except where '' means something: a listener disabled.
  assert.equal(resolveConfig({}, { DSPY_O11YD_SOCKET: '' }).socket, undefined);
});

test('config: flag beats env beats default; bad values name the flag', () => {
  const c = resolveConfig({ queueMaxSpans: '50' }, { DSPY_O11YD_QUEUE_MAX_SPANS: '70', DSPY_O11YD_BATCH_MAX_SPANS: '20' });
  assert.equal(c.queue.maxSpans, 50);
  assert.equal(c.batch.maxSpans, 20);
  assert.equal(c.exporter, 'console');
  assert.match(c.exporterNote ?? '', /LANGFUSE_PUBLIC_KEY/);
  assert.equal(resolveConfig({}, { LANGFUSE_PUBLIC_KEY: 'pk', LANGFUSE_SECRET_KEY: 'sk' }).exporter, 'langfuse');
  // An encoding the local sinks do not write is said (they write OTLP/JSON), not silently ignored.
  assert.match(resolveConfig({ exporter: 'file', file: '/tmp/x', encoding: 'protobuf' }, {}).exporterNote ?? '', /--encoding protobuf does not apply to the file exporter/);
  assert.match(resolveConfig({ exporter: 'console' }, { DSPY_O11YD_ENCODING: 'protobuf' }).exporterNote ?? '', /--encoding \(from DSPY_O11YD_ENCODING\) protobuf does not apply/);
  assert.equal(resolveConfig({ exporter: 'console' }, {}).exporterNote, undefined);
  assert.equal(resolveConfig({ exporter: 'file', file: '/tmp/x', encoding: 'json' }, {}).exporterNote, undefined);
  // So is another exporter's destination: without --exporter it was ignored without a word (spans
  // sent to Langfuse, or printed, while the user named a Collector or a file).
  const keys = { LANGFUSE_PUBLIC_KEY: 'pk', LANGFUSE_SECRET_KEY: 'sk' };
  const aside = resolveConfig({ otlpEndpoint: 'http://127.0.0.1:4000/v1/traces', otlpHeaders: 'x-team=blue' }, keys);
  assert.equal(aside.exporter, 'langfuse');
  assert.match(aside.exporterNote ?? '', /--otlp-endpoint, --otlp-headers do not apply to the langfuse exporter \(only to --exporter otlp\)/);
  assert.doesNotMatch(aside.exporterNote ?? '', /blue/, 'header values are never shown');
  assert.match(resolveConfig({}, { DSPY_O11YD_FILE: '/tmp/x' }).exporterNote ?? '', /--file \(from DSPY_O11YD_FILE\) does not apply to the console exporter \(only to --exporter file\)/);
  assert.equal(resolveConfig({ otlpEndpoint: 'http://127.0.0.1:4000/v1/traces', exporter: 'otlp' }, {}).exporterNote, undefined);
  assert.equal(resolveConfig({}, keys).exporterNote, undefined);
  assert.equal(resolveConfig({}, { LANGFUSE_BASE_URL: 'http://127.0.0.1:3000/' }).langfuse.host, 'http://127.0.0.1:3000');
  assert.equal(resolveConfig({ exporter: 'otlp' }, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4000' }).otlp.endpoint, 'http://127.0.0.1:4000/v1/traces');
  assert.throws(() => resolveConfig({ queueMaxSpans: 'lots' }), (e: Error) => e instanceof ConfigError && /--queue-max-spans/.test(e.message));
  // --memory-limit: the queue's bound + 85 MB unless set, at least 200 MB (Node's own RSS under load); 0 turns the ceiling off.
  assert.equal(resolveConfig({ queueMaxBytes: '1000000' }).memoryLimitBytes, 200_000_000);
  assert.equal(resolveConfig({ queueMaxBytes: '200000000' }).memoryLimitBytes, 285_000_000);
  assert.equal(resolveConfig({}, { DSPY_O11YD_MEMORY_LIMIT: '0' }).memoryLimitBytes, 0);
  assert.equal(resolveConfig({}).nice, 0);
  assert.equal(resolveConfig({}, { DSPY_O11YD_NICE: '-5' }).nice, -5);
  assert.equal(resolveConfig({ memoryLimit: '500000000' }).memoryLimitBytes, 500_000_000);
  assert.throws(() => resolveConfig({ memoryLimit: '-1' }), (e: Error) => e instanceof ConfigError && /--memory-limit/.test(e.message));
  assert.throws(() => resolveConfig({}, { DSPY_O11YD_ENCODING: 'xml' }), /--encoding \(from DSPY_O11YD_ENCODING\)/);
  assert.throws(() => resolveConfig({ http: '0.0.0.0:4318' }), /--ingest-token/);
  assert.throws(() => resolveConfig({ exporter: 'langfuse' }), /LANGFUSE_SECRET_KEY/);
  assert.throws(() => resolveConfig({ langfuseHost: 'ftp://x' }), /--langfuse-host/);
  // Langfuse's variables: environment and release become resource defaults, the sample rate our ratio; ours win over theirs.
  assert.deepEqual(resolveConfig({}).resourceDefaults, {});
  const lf = resolveConfig({}, { LANGFUSE_TRACING_ENVIRONMENT: 'staging', LANGFUSE_RELEASE: '2026.11.27', LANGFUSE_SAMPLE_RATE: '0.5' });
  assert.deepEqual(lf.resourceDefaults, { 'deployment.environment.name': 'staging', 'service.version': '2026.11.27' });
  assert.equal(lf.sampleRatio, 0.5);
  assert.equal(resolveConfig({}, { LANGFUSE_TRACING_ENVIRONMENT: 'staging', DSPY_O11YD_ENVIRONMENT: 'qa' }).resourceDefaults['deployment.environment.name'], 'qa');
  assert.equal(resolveConfig({ environment: 'dev_1' }, { DSPY_O11YD_ENVIRONMENT: 'qa' }).resourceDefaults['deployment.environment.name'], 'dev_1');
  assert.equal(resolveConfig({}, { DSPY_O11YD_SAMPLE_RATIO: '0.2', LANGFUSE_SAMPLE_RATE: '0.9' }).sampleRatio, 0.2);
  assert.throws(() => resolveConfig({ environment: 'x'.repeat(41) }), /--environment/);
});

test('config: an invalid --otlp-endpoint / --langfuse-host never shows its password, whatever characters it holds', () => {
  // Tokens pasted raw: base64 has `/` and `+`, some passwords `#`, `?` or a space.
  for (const secret of ['ab/cd+ef==', 'p#ss', 'p?ss', 'pa ss']) {
    for (const [flags, env] of [
      [{ exporter: 'otlp', otlpEndpoint: `grpc://user:${secret}@collector:4317` }, {}],
      [{}, { LANGFUSE_PUBLIC_KEY: 'pk', LANGFUSE_SECRET_KEY: 'sk', LANGFUSE_HOST: `ftp://user:${secret}@langfuse` }],
    ] as const) {
      assert.throws(
        () => resolveConfig(flags, env),
        (e: Error) => e instanceof ConfigError && /\*\*\*@/.test(e.message) && !e.message.includes(secret),
        JSON.stringify({ flags, env }),
      );
    }
  }
});

test('trace-id ratio sampling keeps about the ratio, and decides the same for the same id', () => {
  let kept = 0;
  for (let i = 0; i < 20_000; i++) {
    const id = newTraceId();
    const k = keepTrace(id, 0.25);
    assert.equal(keepTrace(id, 0.25), k);
    if (k) kept++;
  }
  assert.ok(kept > 4500 && kept < 5500, `kept ${kept} of 20000 at 0.25`);
  assert.equal(keepTrace('f'.repeat(32), 1), true);
  assert.equal(keepTrace('0'.repeat(31) + '1', 0), false);
});

test('an idle /v1/tail stream gets a blank heartbeat line every TAIL_HEARTBEAT_MS', { timeout: 20_000 }, async (t) => {
  const { default: Fastify } = await import('fastify');
  const { get } = await import('node:http');
  const { Registry } = await import('prom-client');
  const { registerOpsRoutes, TAIL_HEARTBEAT_MS } = await import('../src/ops/routes.js');
  const tailListeners = new Set<(line: string) => void>();
  const app = Fastify({ forceCloseConnections: true });
  registerOpsRoutes(app, { status: () => ({}) as never, registry: new Registry(), sink: { tailListeners } as never });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  t.mock.timers.enable({ apis: ['setInterval'] });
  // Also when an assertion fails or the test times out: nothing may keep the file's process alive.
  t.after(() => {
    t.mock.timers.reset();
    return app.close();
  });
  const res = await new Promise<import('node:http').IncomingMessage>((resolve) => get(`${url}/v1/tail`, resolve));
  res.setEncoding('utf8');
  let body = '';
  const more = () => new Promise<void>((resolve) => res.once('data', (c: string) => ((body += c), resolve())));
  // The route registers its listener (and its interval) before the headers go out.
  assert.equal(tailListeners.size, 1);
  const first = more();
  t.mock.timers.tick(TAIL_HEARTBEAT_MS);
  await first;
  assert.equal(body, '\n');
  res.destroy();
});

test('spool: written a chunk at a time; past its deadline it keeps the whole lines it wrote (scores first) and says how many', async () => {
  const { mkdtempSync, readFileSync, readdirSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { writeSpool } = await import('../src/queue/spool.js');
  const dir = mkdtempSync(join(tmpdir(), 'spool-unit-'));
  try {
    const resource = { attributes: { 'service.name': 'spool' } };
    const make = () =>
      Array.from({ length: 3000 }, (_, i) =>
        QueuedSpan.fromLine(JSON.stringify({ v: 1, type: 'span', traceId: 'a'.repeat(32), spanId: (i + 1).toString(16).padStart(16, '0'), name: 's', startTimeUnixNano: '1', endTimeUnixNano: '2', attributes: { pad: 'p'.repeat(900) } }), resource),
      );
    const score = { record: { v: 1 as const, type: 'score' as const, traceId: 'a'.repeat(32), name: 'q', value: 1 }, resource };
    const all = await writeSpool(dir, make(), [score]);
    assert.deepEqual({ spans: all?.spans, scores: all?.scores }, { spans: 3000, scores: 1 });
    // A deadline already past: the first chunk (~1 MiB) is written and kept, the rest is not.
    const late = await writeSpool(join(dir, 'late'), make(), [score], { deadlineAt: Date.now() - 1 });
    assert.ok(late && late.scores === 1 && late.spans > 0 && late.spans < 3000, JSON.stringify(late));
    const lines = readFileSync(late.file, 'utf8').split('\n').filter(Boolean);
    for (const l of lines) JSON.parse(l); // whole lines only
    assert.equal(lines.filter((l) => l.includes('"span"')).length, late.spans);
    assert.equal(readdirSync(join(dir, 'late')).filter((f) => f.endsWith('.tmp')).length, 0, 'renamed: no temporary file left');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('spool: a close() the disk refuses (EIO, NFS ENOSPC) leaves no .tmp to replay while the write says it failed', async () => {
  const { mkdtempSync, readdirSync, rmSync } = await import('node:fs');
  const { createRequire, syncBuiltinESMExports } = await import('node:module');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { writeSpool } = await import('../src/queue/spool.js');
  const dir = mkdtempSync(join(tmpdir(), 'spool-close-'));
  const fsp = createRequire(import.meta.url)('node:fs/promises') as typeof import('node:fs/promises');
  const open = fsp.open;
  // The spool's handle: its descriptor is released (as close(2) always does), then the error a
  // delayed write reports there (NFS, a quota).
  fsp.open = (async (...args: Parameters<typeof open>) => {
    const fh = await open(...args);
    if (String(args[0]).endsWith('.tmp')) {
      const close = fh.close.bind(fh);
      fh.close = async () => {
        await close();
        throw Object.assign(new Error('EIO: i/o error, close'), { code: 'EIO' });
      };
    }
    return fh;
  }) as typeof open;
  syncBuiltinESMExports();
  try {
    const resource = { attributes: { 'service.name': 'spool' } };
    const spans = [QueuedSpan.fromLine(JSON.stringify({ v: 1, type: 'span', traceId: 'a'.repeat(32), spanId: '1'.padStart(16, '0'), name: 's', startTimeUnixNano: '1', endTimeUnixNano: '2' }), resource)];
    const written = await writeSpool(dir, spans).then((w) => w, (err: NodeJS.ErrnoException) => err.code);
    // The caller counts a failed write as dropped: nothing may be left that the next start replays.
    assert.equal(written, 'EIO');
    assert.deepEqual(readdirSync(dir), [], 'a failed write leaves nothing behind');
  } finally {
    fsp.open = open;
    syncBuiltinESMExports();
    rmSync(dir, { recursive: true, force: true });
  }
});
