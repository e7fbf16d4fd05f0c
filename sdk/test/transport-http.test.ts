import { test } from 'node:test';
import assert from 'node:assert/strict';
import { configure, flush, sdkStats, shutdown, span } from '../src/index.js';
import { HttpTransport } from '../src/transport/http.js';
import { HttpReceiver, sleep } from './support/receiver.js';
import { runApp } from './support/child.js';

test('http://: batched NDJSON POSTs to /v1/ingest with the bearer token; hello first in every body', async () => {
  const r = await HttpReceiver.create();
  configure({ endpoint: r.endpoint, ingestToken: 'tok-123', serviceName: 'http-app' });
  for (let i = 0; i < 500; i++) span(`s${i}`, { input: { i } }, () => i);
  assert.equal(await flush(), true);
  await r.waitForSpans(500);
  assert.equal(r.requests.length, 1, 'one turn of records → one request');
  assert.deepEqual(r.requests[0], { path: '/v1/ingest', contentType: 'application/x-ndjson', authorization: 'Bearer tok-123', lines: 501, status: 202 });
  assert.equal(r.records[0]?.type, 'hello');
  assert.equal(r.hellos()[0]?.resource?.['service.name'], 'http-app');
  for (let i = 0; i < 3; i++) {
    span(`later${i}`, () => i);
    assert.equal(await flush(), true);
  }
  assert.equal(r.requests.length, 4);
  assert.equal(r.hellos().length, 4, 'a hello in each body');
  assert.deepEqual(r.invalid, []);
  await r.close();
});

test('the token can come from DSPY_O11Y_INGEST_TOKEN', async () => {
  const r = await HttpReceiver.create();
  process.env.DSPY_O11Y_INGEST_TOKEN = 'from-env';
  try {
    configure({ endpoint: r.endpoint, ingestToken: undefined });
    span('x', () => 1);
    assert.equal(await flush(), true);
  } finally {
    delete process.env.DSPY_O11Y_INGEST_TOKEN;
  }
  assert.equal(r.requests[0]?.authorization, 'Bearer from-env');
  await r.close();
});

test('a token with a trailing newline (a mounted secret) or padded with spaces is sent trimmed, from DSPY_O11Y_INGEST_TOKEN and from ingestToken', async () => {
  const r = await HttpReceiver.create();
  try {
    process.env.DSPY_O11Y_INGEST_TOKEN = 'from-secret-file\n';
    try {
      configure({ endpoint: r.endpoint, ingestToken: undefined });
      span('env', () => 1);
      assert.equal(await flush(), true);
    } finally {
      delete process.env.DSPY_O11Y_INGEST_TOKEN;
    }
    configure({ endpoint: r.endpoint, ingestToken: ' \tfrom-option\r\n' });
    span('option', () => 1);
    assert.equal(await flush(), true);
    assert.deepEqual(r.requests.map((q) => q.authorization), ['Bearer from-secret-file', 'Bearer from-option']);
    assert.deepEqual(r.spans().map((s) => s.name), ['env', 'option']);
  } finally {
    configure({ endpoint: undefined, ingestToken: undefined });
    await r.close();
  }
  // An app given the token as a mounted secret reads it (with its newline) through the environment.
  const app = await HttpReceiver.create();
  const run = await runApp({ DSPY_O11Y_ENDPOINT: app.endpoint, DSPY_O11Y_INGEST_TOKEN: 's3cret-app\n', FIXTURE_SPANS: '10' });
  await app.close();
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.report?.stats.droppedByReason.invalid_ingest_token, undefined);
  assert.equal(run.report?.stats.dropped, 0);
  assert.ok(app.requests.length > 0 && app.requests.every((q) => q.authorization === 'Bearer s3cret-app'));
});

test('a token no HTTP header carries as is (a line break, a control character, a non-ASCII character, only whitespace, not a string): telemetry off, records dropped as invalid_ingest_token, never retried', async () => {
  const r = await HttpReceiver.create();
  const reason = (): number => sdkStats().droppedByReason.invalid_ingest_token ?? 0;
  try {
    // é and U+0080 fit in a header byte, but its meaning depends on the client's encoding (Latin-1 or
    // UTF-8), and the daemon refuses such a token at start: no daemon could accept these records.
    for (const token of ['s3cret\nX-Injected: 1', 's3cret\rX', 'a\u0000b', 'price\u20ac', 'caf\u00e9', 's3cret\u0080', ' \n', 10n as never, Symbol('t') as never]) {
      const [before, failures] = [reason(), sdkStats().failures];
      configure({ endpoint: r.endpoint, ingestToken: token });
      span('s', () => 1);
      span('t', () => 2);
      // Counted at once, nothing buffered for retries: node:http threw on every request, taken for
      // a network error and retried for ever (never delivered, never dropped).
      assert.equal(reason() - before, 2, String(token));
      assert.equal(sdkStats().buffered + sdkStats().inFlight, 0);
      assert.equal(await flush(100), true);
      await sleep(50);
      assert.equal(sdkStats().failures, failures, 'no request attempted');
    }
    assert.equal(r.requests.length, 0);
    // A good token again: delivered.
    configure({ ingestToken: 'tok-ok' });
    span('after', () => 1);
    assert.equal(await flush(), true);
    await r.waitForSpans(1);
    assert.equal(r.requests[0]?.authorization, 'Bearer tok-ok');
  } finally {
    configure({ endpoint: undefined, ingestToken: undefined });
    await r.close();
  }
  // One line through DSPY_O11Y_DEBUG, without the token; an app run with it exits with every record counted.
  const app = await HttpReceiver.create();
  const run = await runApp({ DSPY_O11Y_ENDPOINT: app.endpoint, DSPY_O11Y_INGEST_TOKEN: 's3cret\nvalue', DSPY_O11Y_DEBUG: '1', FIXTURE_SPANS: '10' });
  await app.close();
  assert.equal(run.code, 0, run.stderr);
  assert.deepEqual(run.stderr.trim().split('\n'), [
    '[dspy-o11y] ingestToken (or DSPY_O11Y_INGEST_TOKEN) holds a character other than visible ASCII, space or tab (a line break, another control character, or a non-ASCII one), which an HTTP header cannot carry as is; telemetry is off',
  ]);
  assert.doesNotMatch(run.stderr, /s3cret/);
  const s = run.report?.stats;
  assert.equal(s?.droppedByReason.invalid_ingest_token, 12);
  assert.equal(s?.enqueued, s?.dropped);
  assert.equal(app.requests.length, 0);
});

test('5xx answers are retried with backoff; every record arrives exactly once', async () => {
  const r = await HttpReceiver.create();
  configure({ endpoint: r.endpoint });
  await flush();
  r.failNext = 2;
  r.failStatus = 503;
  for (let i = 0; i < 100; i++) span(`s${i}`, () => i);
  await r.waitForSpans(100, 15_000);
  assert.deepEqual(
    r.requests.map((q) => q.status),
    [503, 503, 202],
  );
  const ids = new Set(r.spans().map((s) => s.spanId));
  assert.equal(ids.size, 100);
  assert.equal(r.spans().length, 100);
  await r.close();
});

/** A receiver the SDK is configured for (connected), whose next answers are `status` with these `Retry-After` values, one each. */
async function pausingReceiver(status: number, retryAfter: string[]): Promise<HttpReceiver> {
  const r = await HttpReceiver.create();
  configure({ endpoint: r.endpoint });
  await flush();
  r.failNext = retryAfter.length;
  r.failStatus = status;
  r.failRetryAfter = retryAfter;
  return r;
}

test('a 503 with Retry-After: 1 is retried no sooner than 1 s after the answer, a flush() meanwhile included; every record arrives once', async () => {
  const r = await pausingReceiver(503, ['1']);
  try {
    for (let i = 0; i < 100; i++) span(`s${i}`, () => i);
    await r.waitFor(() => r.requests.length > 0);
    // A flush skips the backoff, but not the pause the daemon asked for: the retry used to come ~0.1 s later.
    assert.equal(await flush(10_000), true);
    assert.deepEqual(r.requests.map((q) => q.status), [503, 202]);
    const gap = r.times[1]!.arrived - r.times[0]!.answered;
    assert.ok(gap >= 980, `retried ${gap} ms after the 503 that said Retry-After: 1`);
    assert.equal(new Set(r.spans().map((s) => s.spanId)).size, 100);
    assert.equal(r.spans().length, 100);
  } finally {
    await r.close();
  }
});

test('a 429 with Retry-After as an HTTP-date is retried no sooner than that date', async () => {
  // Whole seconds only: 2 to 3 s from now.
  const date = new Date(Date.now() + 3000).toUTCString();
  const r = await pausingReceiver(429, [date]);
  try {
    for (let i = 0; i < 10; i++) span(`s${i}`, () => i);
    assert.equal(await flush(10_000), true);
    assert.deepEqual(r.requests.map((q) => q.status), [429, 202]);
    const early = Date.parse(date) - r.times[1]!.arrived;
    assert.ok(early <= 20, `retried ${early} ms before ${date}`);
    assert.equal(r.spans().length, 10);
  } finally {
    await r.close();
  }
});

test('an invalid, negative or past Retry-After falls back to the normal backoff', async () => {
  const r = await pausingReceiver(503, ['soon', '-5', '1e3', 'Wed, 21 Oct 2015 07:28:00 GMT']);
  try {
    for (let i = 0; i < 10; i++) span(`s${i}`, () => i);
    // Liveness only: read as a pause, any of them would hold the retry for minutes (up to the 5 min cap).
    assert.equal(await flush(10_000), true);
    assert.deepEqual(r.requests.map((q) => q.status), [503, 503, 503, 503, 202]);
    assert.equal(r.spans().length, 10);
  } finally {
    await r.close();
  }
});

test('a Retry-After longer than the flush timeout: flush() answers false at its timeout, and the retry still waits for the pause', async () => {
  const r = await HttpReceiver.create();
  r.failNext = 1;
  r.failStatus = 503;
  r.failRetryAfter = ['2'];
  const hello = JSON.stringify({ v: 1, type: 'hello', resource: { 'service.name': 'retry-after' } }) + '\n';
  const t = new HttpTransport(new URL(r.endpoint), { hello, maxBufferRecords: 1000, maxBufferBytes: 1 << 20 });
  try {
    for (let i = 0; i < 10; i++) {
      t.send(JSON.stringify({ v: 1, type: 'span', traceId: 'a'.repeat(32), spanId: (i + 1).toString(16).padStart(16, '0'), name: `t${i}`, startTimeUnixNano: '1', endTimeUnixNano: '2' }) + '\n');
    }
    await r.waitFor(() => r.requests.length > 0);
    // false: its own timeout ended it, not a delivery after the pause.
    assert.equal(await t.flush(300), false);
    assert.equal(r.requests.length, 1, 'no retry before the pause ends');
    await r.waitForSpans(10, 10_000);
    const gap = r.times[1]!.arrived - r.times[0]!.answered;
    assert.ok(gap >= 1980, `retried ${gap} ms after the 503 that said Retry-After: 2`);
    assert.equal(await t.flush(5000), true);
  } finally {
    t.close();
    await r.close();
  }
});

test('a finished app waits out a Retry-After that ends within flushTimeoutMs at exit (also one answering the exit flush itself), and does not wait for a longer one', async () => {
  const r = await HttpReceiver.create();
  r.failNext = 1;
  r.failStatus = 503;
  r.failRetryAfter = ['2'];
  try {
    // The 503 comes while the app still reads stdin; the pause ends after it finished, within the exit flush.
    const run = await runApp({ DSPY_O11Y_ENDPOINT: r.endpoint, FIXTURE_SPANS: '100', FIXTURE_READ_STDIN: '1', FIXTURE_FLUSH_TIMEOUT: '8000' }, 15_000, 500);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.report?.stats.dropped, 0, JSON.stringify(run.report?.stats));
    assert.deepEqual(r.requests.map((q) => q.status), [503, 202]);
    const gap = r.times[1]!.arrived - r.times[0]!.answered;
    assert.ok(gap >= 1980, `retried ${gap} ms after the 503 that said Retry-After: 2`);
  } finally {
    await r.close();
  }
  // The app ends at once: the 503 answers the exit flush's own first request, and is retried too.
  for (const retryAfter of [['1'], []]) {
    const atExit = await HttpReceiver.create();
    atExit.failNext = 1;
    atExit.failStatus = 503;
    atExit.failRetryAfter = retryAfter;
    try {
      const run = await runApp({ DSPY_O11Y_ENDPOINT: atExit.endpoint, FIXTURE_SPANS: '100', FIXTURE_FLUSH_TIMEOUT: '8000' }, 15_000);
      assert.equal(run.code, 0, run.stderr);
      assert.deepEqual(run.report?.stats.droppedByReason, {}, `Retry-After ${retryAfter.join()}: ${JSON.stringify(run.report?.stats)}`);
      assert.deepEqual(atExit.requests.map((q) => q.status), [503, 202]);
      if (retryAfter.length) assert.ok(atExit.times[1]!.arrived - atExit.times[0]!.answered >= 980, 'not before the Retry-After');
    } finally {
      await atExit.close();
    }
  }
  const paused = await HttpReceiver.create();
  paused.failNext = 1;
  paused.failStatus = 503;
  paused.failRetryAfter = ['60'];
  try {
    const run = await runApp({ DSPY_O11Y_ENDPOINT: paused.endpoint, FIXTURE_SPANS: '100', FIXTURE_READ_STDIN: '1', FIXTURE_FLUSH_TIMEOUT: '1000' }, 15_000, 500);
    assert.notEqual(run.code, null, 'the process exited by itself');
    assert.equal(run.code, 0, run.stderr);
    const s = run.report?.stats;
    assert.ok((s?.droppedByReason.exit ?? 0) > 0, JSON.stringify(s));
    assert.equal(s?.enqueued, (s?.sent ?? 0) + (s?.dropped ?? 0));
    assert.equal(paused.requests.length, 1, 'no retry before the pause ends');
  } finally {
    await paused.close();
  }
});

test('a permanent refusal (400) drops that batch, counted; later records still go', async () => {
  const r = await HttpReceiver.create();
  try {
    configure({ endpoint: r.endpoint });
    await flush();
    const before = sdkStats();
    r.failNext = 1;
    r.failStatus = 400;
    for (let i = 0; i < 10; i++) span(`refused${i}`, () => i);
    assert.equal(await flush(), false, 'the records were not accepted');
    span('after', () => 1);
    assert.equal(await flush(), true);
    await r.waitForSpans(1);
    assert.deepEqual(r.spans().map((s) => s.name), ['after']);
    assert.equal((sdkStats().droppedByReason.http_400 ?? 0) - (before.droppedByReason.http_400 ?? 0), 10);
    await r.waitFor(() => r.stats().length > 0);
    assert.deepEqual(r.stats(), [{ v: 1, type: 'stats', droppedRecords: 10, reason: 'http_400' }]);
  } finally {
    await r.close();
  }
});

test('flush() answers false when the daemon refused records for good (401, 403), also when later ones were accepted; true again once records are', async () => {
  const r = await HttpReceiver.create();
  try {
    configure({ endpoint: r.endpoint, ingestToken: 'tok-wrong' });
    await flush();
    for (const status of [401, 403]) {
      const before = sdkStats().droppedByReason[`http_${status}`] ?? 0;
      r.failNext = 1;
      r.failStatus = status;
      for (let i = 0; i < 10; i++) span(`refused${status}-${i}`, () => i);
      // "written" over HTTP is a 2xx: these are counted dropped (http_401), not sent, and retrying cannot help.
      assert.equal(await flush(), false, `after a ${status}`);
      assert.equal((sdkStats().droppedByReason[`http_${status}`] ?? 0) - before, 10);
      span(`after${status}`, () => 1);
      assert.equal(await flush(), true, `the next records, accepted, after a ${status}`);
    }
    // One flush waiting for a refused batch and a later accepted one: not everything it waited for got in.
    r.failNext = 1;
    r.failStatus = 401;
    for (let i = 0; i < 10; i++) span(`first${i}`, () => i);
    await new Promise((resolve) => setImmediate(resolve)); // that batch's request is under way
    assert.equal(sdkStats().inFlight, 10);
    for (let i = 0; i < 10; i++) span(`second${i}`, () => i);
    assert.equal(await flush(), false);
    await r.waitForSpans(12);
    assert.deepEqual(r.spans().map((s) => s.name).slice(2), Array.from({ length: 10 }, (_, i) => `second${i}`));
    assert.deepEqual(r.requests.map((q) => q.status).slice(-2), [401, 202]);
  } finally {
    configure({ endpoint: undefined, ingestToken: undefined });
    await r.close();
  }
});

test('413 from a body limit far below the batch size: batches shrink until they pass; every record arrives once', async () => {
  const r = await HttpReceiver.create();
  configure({ endpoint: r.endpoint });
  await flush();
  r.maxBodyBytes = 1500; // a few records (hello + ~250-byte spans)
  const before = sdkStats();
  for (let i = 0; i < 60; i++) span(`s${i}`, { input: 'x'.repeat(100) }, () => i);
  assert.equal(await flush(10_000), true);
  await r.waitForSpans(60);
  assert.equal(new Set(r.spans().map((s) => s.spanId)).size, 60);
  assert.equal(sdkStats().dropped - before.dropped, 0, 'nothing dropped');
  assert.ok(r.requests.length < 100, `a bounded number of requests (${r.requests.length}), not a loop`);
  // A record that alone is over the limit is dropped as too large; the others still go.
  const requests = r.requests.length;
  span('huge', { input: 'h'.repeat(4000) }, () => 1);
  span('small', () => 1);
  assert.equal(await flush(10_000), false, 'one of the records it waited for was refused');
  await r.waitForSpans(61);
  assert.equal(r.spans().at(-1)?.name, 'small');
  assert.equal((sdkStats().droppedByReason.record_too_large ?? 0) - (before.droppedByReason.record_too_large ?? 0), 1);
  assert.ok(r.requests.length - requests < 10);
  await r.close();
});

test('daemon down: records buffer up to the bound, the rest are dropped and reported when it is back', async () => {
  const first = await HttpReceiver.create();
  const port = first.port;
  configure({ endpoint: first.endpoint, maxBufferRecords: 10 });
  span('up', () => 1);
  assert.equal(await flush(), true);
  await first.close();
  const before = sdkStats();
  for (let i = 0; i < 30; i++) span(`down${i}`, () => i);
  assert.equal(await flush(1000), false, 'nothing can be delivered');
  assert.equal((sdkStats().droppedByReason.buffer_full ?? 0) - (before.droppedByReason.buffer_full ?? 0), 20);
  const back = await HttpReceiver.create(port);
  await back.waitForSpans(10, 20_000);
  await back.waitFor(() => back.stats().length > 0);
  assert.deepEqual(
    back.spans().map((s) => s.name),
    Array.from({ length: 10 }, (_, i) => `down${20 + i}`),
  );
  assert.deepEqual(back.stats(), [{ v: 1, type: 'stats', droppedRecords: 20, reason: 'buffer_full' }]);
  await back.close();
});

test('a finished app whose HTTP daemon answers slowly exits within the flush timeout, the rest counted as dropped', async () => {
  const r = await HttpReceiver.create();
  r.answerDelayMs = 500;
  try {
    // ~30 MB waiting, a request at a time, each answered in 500 ms: an exit flush that went on
    // while requests succeeded held the app for as many half-seconds as there were batches.
    const run = await runApp({ DSPY_O11Y_ENDPOINT: r.endpoint, FIXTURE_SPANS: '30000', FIXTURE_INPUT_BYTES: '1024' }, 10_000);
    assert.notEqual(run.code, null, 'the process exited by itself (within the liveness bound)');
    assert.equal(run.code, 0, run.stderr);
    const s = run.report?.stats;
    assert.ok(s && s.sent > 0 && (s.droppedByReason.exit ?? 0) > 0, `some delivered, what was left at the deadline counted: ${JSON.stringify(s)}`);
    assert.equal(s?.enqueued, (s?.sent ?? 0) + (s?.dropped ?? 0));
  } finally {
    await r.close();
  }
});

test('a transient failure during shutdown() is retried within the flush timeout: nothing buffered is lost', async () => {
  const r = await HttpReceiver.create();
  configure({ endpoint: r.endpoint, maxBufferRecords: 100_000 });
  await flush();
  const before = sdkStats();
  r.failNext = 1;
  r.failStatus = 503;
  for (let i = 0; i < 100; i++) span(`s${i}`, () => i);
  // One 503 used to resolve every flush waiter with false, and shutdown() then dropped the lot.
  assert.equal(await shutdown(), true);
  assert.deepEqual(r.requests.map((q) => q.status), [503, 202]);
  assert.equal(r.spans().length, 100);
  assert.equal(sdkStats().dropped - before.dropped, 0);
  await r.close();
});

test('the request deadline counts the whole request: an answer trickling in byte by byte is abandoned and the batch retried', async () => {
  const r = await HttpReceiver.create();
  // A byte every 100 ms: an idle timeout (req.setTimeout) of 300 ms never fired.
  r.trickleNext = 1;
  r.trickleMs = 100;
  const hello = JSON.stringify({ v: 1, type: 'hello', resource: { 'service.name': 'trickle' } }) + '\n';
  const t = new HttpTransport(new URL(r.endpoint), { hello, maxBufferRecords: 1000, maxBufferBytes: 1 << 20, writeTimeoutMs: 300 });
  try {
    for (let i = 0; i < 10; i++) {
      t.send(JSON.stringify({ v: 1, type: 'span', traceId: 'a'.repeat(32), spanId: (i + 1).toString(16).padStart(16, '0'), name: `t${i}`, startTimeUnixNano: '1', endTimeUnixNano: '2' }) + '\n');
    }
    assert.equal(await t.flush(5000), true, 'delivered by the retry');
    assert.deepEqual(r.requests.map((q) => q.status), [0, 202]);
    assert.equal(r.spans().length, 10);
  } finally {
    t.close();
    await r.close();
  }
});

test('sdkStats() adds up as soon as shutdown() returns, with a request still unanswered', async () => {
  const r = await HttpReceiver.create();
  configure({ endpoint: r.endpoint });
  await flush();
  r.trickleNext = 1;
  for (let i = 0; i < 100; i++) span(`s${i}`, () => i);
  // Nothing to read while the transport is still flushing in the background either.
  const during = sdkStats();
  assert.equal(during.enqueued, during.sent + during.dropped + during.buffered + during.inFlight);
  assert.equal(await shutdown(300), false);
  const s = sdkStats();
  assert.equal(s.enqueued, s.sent + s.dropped + s.buffered + s.inFlight, JSON.stringify(s));
  assert.equal(s.buffered + s.inFlight, 0);
  configure({ endpoint: r.endpoint });
  await r.close();
});

test('a finished app whose HTTP daemon trickles its answer exits within the flush timeout; one answering in 1.5 s gets the time flushTimeoutMs allows', async () => {
  const r = await HttpReceiver.create();
  r.trickleNext = 1000;
  r.trickleMs = 200;
  try {
    const run = await runApp({ DSPY_O11Y_ENDPOINT: r.endpoint, FIXTURE_SPANS: '100' }, 10_000);
    assert.notEqual(run.code, null, 'the process exited by itself');
    assert.equal(run.code, 0, run.stderr);
    const s = run.report?.stats;
    assert.equal(s?.enqueued, (s?.sent ?? 0) + (s?.dropped ?? 0));
  } finally {
    await r.close();
  }
  const slow = await HttpReceiver.create();
  slow.answerDelayMs = 1500;
  try {
    // Each request of the exit flush was cut at 1 s whatever flushTimeoutMs said.
    const run = await runApp({ DSPY_O11Y_ENDPOINT: slow.endpoint, FIXTURE_SPANS: '100', FIXTURE_FLUSH_TIMEOUT: '5000' }, 15_000);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.report?.stats.dropped, 0, JSON.stringify(run.report?.stats));
    await slow.waitForSpans(100, 15_000);
  } finally {
    await slow.close();
  }
});

test('switching endpoints while old transports still flush adds no process listeners (no MaxListenersExceededWarning in the app)', async () => {
  const slow = await HttpReceiver.create();
  slow.answerDelayMs = 1500;
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(w.name);
  process.on('warning', onWarning);
  const before = process.listenerCount('beforeExit') + process.listenerCount('exit');
  try {
    // Each switch leaves the old transport flushing its unanswered request in the background.
    for (let i = 0; i < 15; i++) {
      configure({ endpoint: slow.endpoint, serviceName: `switch-${i}` });
      span(`s${i}`, () => i);
      await new Promise((r) => setImmediate(r));
    }
    await new Promise((r) => setTimeout(r, 50));
    assert.ok(process.listenerCount('beforeExit') + process.listenerCount('exit') <= Math.max(before, 2), 'one listener of each for all transports');
    assert.deepEqual(warnings.filter((w) => w === 'MaxListenersExceededWarning'), []);
    assert.equal(await flush(5000), true);
  } finally {
    process.off('warning', onWarning);
    configure({ serviceName: undefined });
    await slow.close();
  }
});
