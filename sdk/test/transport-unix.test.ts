import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { readdirSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { configure, flush, sdkStats, shutdown, span } from '../src/index.js';
import { runApp } from './support/child.js';
import { resolveConfig } from '../src/config.js';
import { TRUNCATION_MARKER } from '../src/json.js';
import { UnixReceiver, sleep, tempDir, within } from './support/receiver.js';

const delta = (before: ReturnType<typeof sdkStats>) => {
  const now = sdkStats();
  return {
    enqueued: now.enqueued - before.enqueued,
    sent: now.sent - before.sent,
    dropped: now.dropped - before.dropped,
    bufferFull: (now.droppedByReason.buffer_full ?? 0) - (before.droppedByReason.buffer_full ?? 0),
    now,
  };
};

/** Every record enqueued is sent, dropped, buffered or in flight. */
function assertConservation(): void {
  const s = sdkStats();
  assert.equal(s.enqueued, s.sent + s.dropped + s.buffered + s.inFlight, JSON.stringify(s));
}

/** A receiver the SDK is connected to (one span delivered), that then stops reading. */
async function stalledReceiver(buffer: { maxBufferRecords: number; maxBufferBytes?: number }): Promise<UnixReceiver> {
  const r = await UnixReceiver.create();
  configure({ endpoint: r.endpoint, ...buffer });
  span('first', () => 1);
  assert.equal(await flush(), true);
  await r.waitForSpans(1);
  r.stopReading();
  return r;
}

async function settleTransport(): Promise<void> {
  await flush();
  await sleep(20);
}

test('records of one event-loop turn go out in ONE socket write; hello first on the connection', async () => {
  const r = await UnixReceiver.create();
  configure({ endpoint: r.endpoint, serviceName: 'coalesce', resource: { 'service.version': '1.2.3' } });
  span('warm-up', () => 1);
  assert.equal(await flush(), true);
  await r.waitForSpans(1);
  assert.equal(r.records[0]?.type, 'hello', 'hello is the first record on a connection');
  assert.deepEqual(r.hellos()[0]?.resource, { 'service.name': 'coalesce', 'service.version': '1.2.3' });
  assert.equal(r.hellos()[0]?.sdk?.name, 'dspy-o11y');

  const write = net.Socket.prototype.write;
  let writes = 0;
  net.Socket.prototype.write = function (this: net.Socket, ...args: Parameters<typeof write>) {
    writes++;
    return write.apply(this, args);
  } as typeof write;
  try {
    for (let i = 0; i < 1000; i++) span(`s${i}`, { input: { i } }, () => i);
    assert.equal(writes, 0, 'nothing is written synchronously on the hot path');
    assert.equal(await flush(), true);
  } finally {
    net.Socket.prototype.write = write;
  }
  assert.equal(writes, 1, '1000 spans in one turn → one write');
  await r.waitForSpans(1001);
  assert.deepEqual(r.invalid, []);
  assert.equal(r.connections, 1, 'one persistent socket');
  assertConservation();
  await r.dispose();
});

test('resource values the wire protocol does not take are left out of hello and long ones cut, so the daemon keeps the service name (a BigInt one sent nothing at all)', async () => {
  const r = await UnixReceiver.create();
  const holes: number[] = [];
  holes[10_000_000] = 1;
  const resource = { ok: 'yes', list: ['a', 'b'], long: 'l'.repeat(2_000_000), nested: { a: 1 }, nan: NaN, none: null, mixed: [1, 'a'], holes, ['k'.repeat(300)]: 1, big: 10n };
  configure({ endpoint: r.endpoint, serviceName: 'svc', serviceVersion: null as never, environment: NaN as never, resource: resource as never });
  try {
    span('s', () => 1);
    assert.equal(await flush(), true);
    await r.waitForSpans(1);
    assert.deepEqual(r.invalid, []);
    assert.deepEqual(r.hellos()[0]?.resource, { ok: 'yes', list: ['a', 'b'], long: 'l'.repeat(32 * 1024) + TRUNCATION_MARKER, 'service.name': 'svc' });
    assert.equal(resolveConfig({ serviceName: {} as never }, {}).resource['service.name'], 'unknown_service:node');
  } finally {
    configure({ serviceVersion: undefined, environment: undefined, resource: undefined });
    await r.dispose();
  }
});

test('a daemon whose queue of connections waiting to be accepted is full (EAGAIN) is there: flush() waits for it, not false at once', async () => {
  const path = join(tempDir(), 'busy.sock');
  // A daemon that is there but does not accept for a while (busy): backlog 1, its event loop held
  // for 1.5 s, then it counts the span lines it reads.
  const daemon = spawn(process.execPath, ['-e', `
    const net = require('node:net');
    let spans = 0;
    net.createServer((c) => {
      let rest = '';
      c.on('data', (d) => { const lines = (rest + d).split('\\n'); rest = lines.pop(); spans += lines.filter((l) => l.includes('"span"')).length; });
    }).listen({ path: ${JSON.stringify(path)}, backlog: 1 }, () => {
      process.stdout.write('ready\\n');
      const until = Date.now() + 1500;
      while (Date.now() < until);
    });
    process.stdin.on('data', () => process.stdout.write('spans ' + spans + '\\n'));`], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines: string[] = [];
  daemon.stdout!.setEncoding('utf8').on('data', (d: string) => lines.push(...d.split('\n').filter(Boolean)));
  const fillers: net.Socket[] = [];
  try {
    for (const end = Date.now() + 20_000; !lines.includes('ready'); ) {
      assert.ok(Date.now() < end, 'the busy daemon listens');
      await sleep(10);
    }
    // Two connections fill a backlog of 1: the SDK's own connect is then refused with EAGAIN.
    for (let i = 0; i < 2; i++) fillers.push(await new Promise<net.Socket>((resolve, reject) => { const c = net.connect(path, () => resolve(c)); c.on('error', reject); }));
    configure({ endpoint: `unix://${path}` });
    for (let i = 0; i < 10; i++) span(`busy${i}`, () => i);
    assert.equal(await flush(20_000), true, `flushed once the daemon accepted: ${JSON.stringify(sdkStats())}`);
    // Written is not yet read: ask until the daemon has read all ten.
    for (const end = Date.now() + 15_000; lines.at(-1) !== 'spans 10'; ) {
      assert.ok(Date.now() < end, `the busy daemon reads the ten spans: ${lines.at(-1)}`);
      daemon.stdin!.write('count\n');
      await sleep(50);
    }
  } finally {
    for (const c of fillers) c.destroy();
    await shutdown();
    daemon.kill();
  }
});

test('a daemon that ends a connection at once (past its --max-connections) still reads what came before its EOF: the records still waiting go out on a later connection, none is written after the EOF and dropped', async () => {
  const r = await UnixReceiver.create();
  r.endNext = 3;
  const before = sdkStats();
  configure({ endpoint: r.endpoint, maxBufferRecords: 10_000, maxBufferBytes: 64 * 1024 * 1024 });
  try {
    // 3 MB: many writes, so some are due after an EOF has arrived.
    const input = 'x'.repeat(1000);
    for (let i = 0; i < 3000; i++) span(`ended-${i}`, { input }, () => i);
    assert.equal(await flush(20_000), true);
    const d = delta(before);
    assert.equal(d.dropped, 0, `dropped: ${JSON.stringify(d.now.droppedByReason)}`);
    await r.waitForSpans(3000);
    assert.equal(new Set(r.spans().map((s) => s.name)).size, 3000);
    assert.ok(r.connections >= 4, `${r.connections} connections: the 3 ended ones, then one that stays`);
    assert.equal(r.endNext, 0);
    assertConservation();
  } finally {
    await r.dispose();
  }
});

test('a daemon that keeps ending connections at once (full): the SDK backs off as after failed attempts, instead of reconnecting every 50-100 ms; once it accepts, everything arrives', async () => {
  const r = await UnixReceiver.create();
  r.endNext = 1_000_000;
  const before = sdkStats();
  configure({ endpoint: r.endpoint });
  let i = 0;
  // Records keep coming (each one would trigger a reconnect once the backoff allows it).
  const producer = setInterval(() => span(`full-${i++}`, () => i), 20);
  try {
    await sleep(2500);
    // With the backoff growing 100, 200, 400… ms (jittered down to half), at most ~6 attempts fit
    // in 2.5 s; resetting it on every accepted connect made ~25-50. A slower machine makes fewer.
    assert.ok(r.connections <= 12, `${r.connections} connections in 2.5 s against a daemon that ends each at once`);
    assert.ok(r.connections >= 2, 'the SDK did reconnect');
    clearInterval(producer);
    r.endNext = 0;
    assert.equal(await flush(20_000), true);
    const d = delta(before);
    assert.equal(d.dropped, 0, `dropped: ${JSON.stringify(d.now.droppedByReason)}`);
    await r.waitForSpans(i);
    assert.equal(new Set(r.spans().map((s) => s.name)).size, i);
    assertConservation();
  } finally {
    clearInterval(producer);
    await r.dispose();
  }
});

test('an endpoint that is not a string: records are counted as dropped (invalid_endpoint), not lost uncounted', async () => {
  const dropped = (): number => sdkStats().droppedByReason.invalid_endpoint ?? 0;
  const [enqueued, before] = [sdkStats().enqueued, dropped()];
  configure({ endpoint: 42 as never });
  try {
    span('s', () => 1);
    assert.equal(sdkStats().enqueued - enqueued, 1);
    assert.equal(dropped() - before, 1);
  } finally {
    configure({ endpoint: undefined });
  }
});

test('sizes under 1 (maxBufferRecords: 0.5) keep their defaults: rounded down to 0, the ring lost every record and sdkStats() stopped adding up', async () => {
  const r = await UnixReceiver.create();
  configure({ endpoint: r.endpoint, maxBufferRecords: 0.5, maxBufferBytes: 0.5 });
  try {
    for (let i = 0; i < 5; i++) span(`s${i}`, () => 1);
    await sleep(1);
    for (let i = 5; i < 10; i++) span(`s${i}`, () => 1);
    assert.equal(await flush(), true);
    await r.waitForSpans(10);
    assertConservation();
    assert.equal(resolveConfig({ maxBufferRecords: 0.5, maxValueLength: 0.9 }, {}).maxBufferRecords, 100_000);
    assert.equal(resolveConfig({ maxValueLength: 0.9 }, {}).maxValueLength, 32 * 1024);
  } finally {
    configure({ maxBufferRecords: undefined, maxBufferBytes: undefined });
    await r.dispose();
  }
});

test('a backlog built while a write waited goes out in bounded writes, not in one', async () => {
  const r = await stalledReceiver({ maxBufferRecords: 100_000, maxBufferBytes: 64 * 1024 * 1024 });
  const input = 'b'.repeat(2000);
  // ~2.4 MB over 40 turns: the first writes fill the socket buffers, the rest wait in the ring.
  for (let t = 0; t < 40; t++) {
    for (let i = 0; i < 30; i++) span(`s${t * 30 + i}`, { input }, () => i);
    await sleep(1);
  }
  assert.ok(sdkStats().buffered > 500, `backlog: ${sdkStats().buffered} records`);
  const write = net.Socket.prototype.write;
  const sizes: number[] = [];
  net.Socket.prototype.write = function (this: net.Socket, ...args: Parameters<typeof write>) {
    const chunk = args[0] as string | Uint8Array;
    sizes.push(typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length);
    return write.apply(this, args);
  } as typeof write;
  try {
    r.resumeReading();
    assert.equal(await flush(10_000), true);
  } finally {
    net.Socket.prototype.write = write;
  }
  await r.waitForSpans(1201, 10_000);
  assert.deepEqual(r.invalid, []);
  // Nothing new arrives meanwhile: each write takes at most 128 KiB of the backlog (and one more record).
  assert.ok(sizes.length >= 10, `${sizes.length} writes`);
  assert.ok(Math.max(...sizes) <= 128 * 1024 + 2100, `largest write ${Math.max(...sizes)} bytes`);
  assertConservation();
  await r.dispose();
});

test('flush(): true once written; false when the daemon is absent or not reading; never rejects', async () => {
  assert.equal(await flush(), true, 'nothing buffered');
  const dir = tempDir();
  configure({ endpoint: `unix://${join(dir, 'absent.sock')}` });
  span('lost', () => 1);
  const absent = await within(flush(60_000), 10_000, 'hung');
  assert.equal(absent, false, 'a failed connection attempt resolves flush at once, with false');
  // That record can never be written: dropped here, else the next flush() waits for it too (false).
  assert.equal(await shutdown(0), false);

  const r = await stalledReceiver({ maxBufferRecords: 100_000, maxBufferBytes: 64 * 1024 * 1024 });
  const big = 'z'.repeat(32 * 1024);
  for (let i = 0; i < 400; i++) span(`big${i}`, { input: big }, () => i); // ~13 MB: more than the socket buffers hold
  assert.equal(await flush(300), false, 'timed out: the daemon is not reading');
  r.resumeReading();
  assert.equal(await flush(10_000), true);
  await r.waitForSpans(401, 10_000);
  assert.deepEqual(r.invalid, []);
  await r.dispose();
});

test('a daemon that starts late gets everything buffered meanwhile (nothing dropped under the bound)', async () => {
  const r = await UnixReceiver.create({ listen: false });
  configure({ endpoint: r.endpoint, maxBufferRecords: 1000 });
  await settleTransport();
  const before = sdkStats();
  for (let i = 0; i < 50; i++) span(`early${i}`, () => i);
  await sleep(150); // connection attempts fail meanwhile
  assert.equal(sdkStats().connected, false);
  await r.listen();
  assert.equal(await flush(5000), true);
  await r.waitForSpans(50);
  const d = delta(before);
  assert.equal(d.dropped, 0);
  assert.equal(d.sent, 50);
  assert.equal(r.records[0]?.type, 'hello');
  assert.deepEqual(
    r.spans().map((s) => s.name),
    Array.from({ length: 50 }, (_, i) => `early${i}`),
  );
  await r.dispose();
});

test('daemon killed and restarted mid-run: buffered records arrive, drops are exact and reported in a stats record', async () => {
  const r = await UnixReceiver.create();
  configure({ endpoint: r.endpoint, maxBufferRecords: 100 });
  for (let i = 0; i < 10; i++) span(`before${i}`, () => i);
  assert.equal(await flush(), true);
  await r.waitForSpans(10);

  await r.close(); // kill: connections dropped, socket file gone
  await r.waitFor(() => !sdkStats().connected, 15_000, 'the SDK to notice');
  const before = sdkStats();
  for (let i = 0; i < 300; i++) {
    span(`down${i}`, () => i);
    if (i % 50 === 0) await sleep(5); // a run that goes on while the daemon is away
  }
  const d = delta(before);
  assert.equal(d.enqueued, 300);
  assert.equal(d.bufferFull, 200, 'exactly the records beyond the bound of 100 were dropped');
  assert.equal(d.now.buffered, 100);

  r.reset();
  await r.listen(); // restarted
  assert.equal(await flush(5000), true);
  await r.waitForSpans(100);
  await r.waitFor(() => r.stats().length > 0, 15_000, 'stats record');
  assert.equal(r.records[0]?.type, 'hello', 'a hello first on the new connection');
  assert.deepEqual(r.stats(), [{ v: 1, type: 'stats', droppedRecords: 200, reason: 'buffer_full' }]);
  assert.deepEqual(
    r.spans().map((s) => s.name),
    Array.from({ length: 100 }, (_, i) => `down${200 + i}`),
    'the OLDEST records were dropped, the newest 100 delivered in order',
  );
  assertConservation();
  await r.dispose();
});

test('daemon killed while a write waits for it to read: that write is counted dropped (connection_lost) and reported, not sent', async () => {
  const r = await stalledReceiver({ maxBufferRecords: 10_000 });
  const before = sdkStats();
  const input = 'i'.repeat(20_000);
  for (let i = 0; i < 100; i++) span(`s${i}`, { input }, () => i);
  await r.waitFor(() => sdkStats().inFlight > 0, 15_000, 'a write in flight');
  const inFlight = sdkStats().inFlight;
  // Kill with the write unread: the connection is reset (ECONNRESET on our read side first).
  await r.close();
  await r.waitFor(() => sdkStats().inFlight === 0 && !sdkStats().connected, 15_000, 'the SDK to notice');
  const lost = (sdkStats().droppedByReason.connection_lost ?? 0) - (before.droppedByReason.connection_lost ?? 0);
  assert.equal(delta(before).sent, 0, `nothing of it reached the daemon: ${JSON.stringify(sdkStats())}`);
  assert.equal(lost, inFlight, 'the write cut short is counted lost');
  assertConservation();

  r.reset();
  r.resumeReading();
  await r.listen();
  assert.equal(await flush(5000), true);
  await r.waitFor(() => r.stats().some((x) => x.reason === 'connection_lost'), 15_000, 'stats record');
  assert.deepEqual(r.stats(), [{ v: 1, type: 'stats', droppedRecords: inFlight, reason: 'connection_lost' }]);
  await r.dispose();
});

test('a flush waiting for a write the connection lost answers false, even once the rest is written on a new connection', async () => {
  const r = await stalledReceiver({ maxBufferRecords: 10_000 });
  const before = sdkStats();
  const input = 'i'.repeat(20_000);
  for (let i = 0; i < 100; i++) span(`s${i}`, { input }, () => i);
  await r.waitFor(() => sdkStats().inFlight > 0, 15_000, 'a write in flight');
  const pending = flush(15_000);
  // The daemon is killed with the write unread and restarted at once.
  r.resumeReading();
  r.dropConnections();
  await r.waitFor(() => r.stats().length > 0, 15_000, 'the reconnect');
  const lost = (sdkStats().droppedByReason.connection_lost ?? 0) - (before.droppedByReason.connection_lost ?? 0);
  assert.ok(lost > 0, 'records were lost with the connection');
  assert.equal(await pending, false, 'not everything it waited for was written');
  assert.equal(delta(before).sent + lost, 100);
  assert.equal(await flush(), true, 'true again once records are written');
  await r.dispose();
});

test('a daemon that accepts but stops reading: the app keeps running, the buffer stays bounded, drops are counted', async () => {
  const r = await UnixReceiver.create();
  configure({ endpoint: r.endpoint, maxBufferRecords: 200 });
  span('connect', () => 1);
  assert.equal(await flush(), true);
  await r.waitForSpans(1);
  await settleTransport();
  r.reset();
  r.stopReading();
  const before = sdkStats();
  let ticks = 0;
  const heartbeat = setInterval(() => ticks++, 1);
  const input = 'p'.repeat(10 * 1024);
  let maxBuffered = 0;
  let sum = 0;
  for (let t = 0; t < 40; t++) {
    for (let i = 0; i < 100; i++) sum += span(`s${t * 100 + i}`, { input }, () => 1);
    maxBuffered = Math.max(maxBuffered, sdkStats().buffered);
    await sleep(2);
  }
  clearInterval(heartbeat);
  assert.equal(sum, 4000, 'the app did all its work');
  assert.ok(ticks > 0, 'the event loop kept turning');
  const d = delta(before);
  assert.equal(d.enqueued, 4000);
  assert.ok(maxBuffered <= 200, `buffer bounded (${maxBuffered})`);
  assert.ok(d.bufferFull > 0, 'drops counted');
  assertConservation();

  r.resumeReading();
  assert.equal(await flush(10_000), true);
  const sent = sdkStats().sent - before.sent;
  await r.waitFor(() => r.spans().length >= sent, 10_000, `${sent} spans`);
  await r.waitFor(() => r.stats().reduce((n, s) => n + s.droppedRecords, 0) >= d.bufferFull, 15_000, 'stats');
  assert.equal(r.spans().length, sent, 'every record counted as sent arrived');
  assert.equal(sent + (sdkStats().dropped - before.dropped), 4000, 'sent + dropped = produced');
  assert.equal(
    r.stats().reduce((n, s) => n + s.droppedRecords, 0),
    sdkStats().dropped - before.dropped,
    'the daemon is told exactly how many were dropped',
  );
  assert.deepEqual(r.invalid, []);
  await r.dispose();
});

test('no daemon at all: the app runs, drops are exact, and the process exits by itself with telemetry pending', async () => {
  const dir = tempDir();
  const run = await runApp({ DSPY_O11Y_ENDPOINT: `unix://${join(dir, 'nobody.sock')}`, FIXTURE_SPANS: '250', FIXTURE_MAX_BUFFER: '100' });
  assert.notEqual(run.code, null, 'the process exited by itself');
  assert.equal(run.code, 0, run.stderr);
  assert.deepEqual(run.report?.result, { sum: (249 * 250) / 2, gen: 'generated', budget: 'not tested' });
  const s = run.report?.stats;
  // 250 spans + 1 generation + 1 event, with room for 100
  assert.equal(s?.enqueued, 252);
  assert.equal(s?.sent, 0);
  assert.equal(s?.droppedByReason.buffer_full, 152);
  assert.equal(s?.droppedByReason.exit, 100, 'what was still buffered at exit');
});

test('DSPY_O11Y_DEBUG=1 with no daemon: one diagnostic naming the socket (as the HTTP transport gives one); none when it connects', async () => {
  const dir = tempDir();
  const path = join(dir, 'nobody.sock');
  const run = await runApp({ DSPY_O11Y_ENDPOINT: `unix://${path}`, DSPY_O11Y_DEBUG: '1', FIXTURE_SPANS: '250', FIXTURE_MAX_BUFFER: '100' });
  assert.equal(run.code, 0, run.stderr);
  const said = run.stderr.split('\n').filter((l) => l.startsWith('[dspy-o11y] cannot connect'));
  assert.deepEqual(said, [`[dspy-o11y] cannot connect to ${path} (ENOENT): is dspy-o11yd running? retrying with backoff`]);
  const r = await UnixReceiver.create();
  const ok = await runApp({ DSPY_O11Y_ENDPOINT: r.endpoint, DSPY_O11Y_DEBUG: '1', FIXTURE_SPANS: '10' });
  assert.equal(ok.code, 0, ok.stderr);
  assert.doesNotMatch(ok.stderr, /cannot connect/);
  await r.dispose();
});

test('at exit, pending records are delivered without any flush() call; resource from OTEL_* env', async () => {
  const r = await UnixReceiver.create();
  const run = await runApp({
    DSPY_O11Y_ENDPOINT: r.endpoint,
    FIXTURE_SPANS: '500',
    OTEL_SERVICE_NAME: 'svc-from-env',
    OTEL_RESOURCE_ATTRIBUTES: 'service.name=loses-to-OTEL_SERVICE_NAME,deployment.environment.name=staging,team=a%20b,broken',
  });
  assert.equal(run.code, 0, run.stderr);
  await r.waitFor(() => r.spans().length >= 501 && r.events().length >= 1, 15_000, 'all records');
  assert.deepEqual(r.hellos()[0]?.resource, { 'service.name': 'svc-from-env', 'deployment.environment.name': 'staging', team: 'a b' });
  assert.equal(run.report?.stats.sent, 502);
  assert.equal(run.report?.stats.dropped, 0);
  assert.deepEqual(r.invalid, []);
  await r.dispose();
});

test("Langfuse's variables: LANGFUSE_TRACING_ENVIRONMENT and LANGFUSE_RELEASE set the resource, LANGFUSE_TRACING_ENABLED=false turns telemetry off", async () => {
  const r = await UnixReceiver.create();
  const run = await runApp({
    DSPY_O11Y_ENDPOINT: r.endpoint,
    FIXTURE_SPANS: '10',
    OTEL_SERVICE_NAME: 'svc',
    // Langfuse's own variables win over the generic resource attributes, as in Langfuse's SDKs.
    OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=staging,service.version=0.0.1',
    LANGFUSE_TRACING_ENVIRONMENT: 'qa',
    LANGFUSE_RELEASE: '1.2.3',
  });
  assert.equal(run.code, 0, run.stderr);
  await r.waitFor(() => r.spans().length >= 11, 15_000, 'all records');
  assert.deepEqual(r.hellos()[0]?.resource, { 'service.name': 'svc', 'deployment.environment.name': 'qa', 'service.version': '1.2.3' });
  const off = await runApp({ DSPY_O11Y_ENDPOINT: r.endpoint, FIXTURE_SPANS: '10', LANGFUSE_TRACING_ENABLED: 'false' });
  assert.equal(off.code, 0, off.stderr);
  assert.equal(off.report?.stats.enqueued, 0, 'nothing recorded');
  assert.equal(r.hellos().length, 1, 'no second connection');
  await r.dispose();
  // configure() still beats both.
  const c = resolveConfig({ environment: 'dev', serviceVersion: '2.0.0' }, { LANGFUSE_TRACING_ENVIRONMENT: 'qa', LANGFUSE_RELEASE: '1.2.3' });
  assert.equal(c.resource['deployment.environment.name'], 'dev');
  assert.equal(c.resource['service.version'], '2.0.0');
  assert.equal(resolveConfig({}, { LANGFUSE_TRACING_ENABLED: 'true' }).disabled, false);
  assert.equal(resolveConfig({ disabled: false }, { LANGFUSE_TRACING_ENABLED: 'false' }).disabled, false);
});

test('a daemon that stops reading never keeps a finished app alive', async () => {
  const r = await UnixReceiver.create();
  r.stopReading();
  const run = await runApp({ DSPY_O11Y_ENDPOINT: r.endpoint, FIXTURE_SPANS: '400', FIXTURE_INPUT_BYTES: String(32 * 1024) });
  assert.notEqual(run.code, null, 'the process exited by itself');
  assert.equal(run.code, 0, run.stderr);
  const s = run.report?.stats;
  assert.ok(s && (s.droppedByReason.write_timeout ?? 0) > 0, `the stuck write was abandoned: ${JSON.stringify(s)}`);
  assert.equal(s?.enqueued, (s?.sent ?? 0) + (s?.dropped ?? 0));
  await r.dispose();
});

test('a finished app whose daemon stopped reading exits within the flush timeout, the rest counted as dropped', async () => {
  const r = await UnixReceiver.create();
  r.stopReading();
  // ~30 MB waiting: each new connection takes a socket buffer's worth before it stalls, so an exit
  // flush that went on while it "made progress" held the app for tens of seconds.
  try {
    const run = await runApp({ DSPY_O11Y_ENDPOINT: r.endpoint, FIXTURE_SPANS: '30000', FIXTURE_INPUT_BYTES: '1024' }, 15_000);
    assert.notEqual(run.code, null, 'the process exited by itself (within the liveness bound)');
    assert.equal(run.code, 0, run.stderr);
    const s = run.report?.stats;
    assert.ok(s && (s.droppedByReason.exit ?? 0) > 0, `what was left at the deadline counted: ${JSON.stringify(s)}`);
    assert.equal(s?.enqueued, (s?.sent ?? 0) + (s?.dropped ?? 0));
  } finally {
    await r.dispose();
  }
});

test('a finished app whose daemon is slow to read for a while gets the exit flush\'s time (flushTimeoutMs): nothing is dropped', async () => {
  const r = await UnixReceiver.create();
  r.stopReading();
  try {
    // ~1 MB: more than the socket buffers hold, so a write waits for the daemon, and the app is
    // done while it waits. The write was given up on 250 to 500 ms later (write_timeout), whatever
    // flushTimeoutMs said: a daemon busy for half a second cost a finished app its last records.
    const app = runApp({ DSPY_O11Y_ENDPOINT: r.endpoint, FIXTURE_SPANS: '500', FIXTURE_INPUT_BYTES: '2000', FIXTURE_FLUSH_TIMEOUT: '20000' }, 40_000);
    await r.waitFor(() => r.connections > 0, 20_000, 'the app to connect');
    await sleep(3000); // the app does its work, is done, and waits for the daemon meanwhile
    r.resumeReading();
    const run = await app;
    assert.equal(run.code, 0, run.stderr);
    const s = run.report?.stats;
    assert.deepEqual(s?.droppedByReason, {}, `nothing given up on: ${JSON.stringify(s)}`);
    assert.equal(s?.sent, 502);
    await r.waitFor(() => r.spans().length >= 501, 10_000, 'all spans');
    assert.equal(r.spans().length, 501);
    assert.equal(r.connections, 1, 'the write was waited for, not cut and sent again on a new connection');
  } finally {
    await r.dispose();
  }
});

test('configure() and shutdown() close the old connection even when the daemon stopped reading', { skip: process.platform !== 'linux' && 'counts /proc/self/fd' }, async () => {
  // The daemon that never reads runs in its own process, so this process's descriptors are the SDK's alone.
  const path = join(tempDir(), 'never-reads.sock');
  const daemon = spawn(process.execPath, ['-e', `require('node:net').createServer((c) => { c.pause(); process.stdout.write('+'); }).listen(${JSON.stringify(path)}, () => process.stdout.write('ready'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  daemon.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
  const until = async (pred: () => boolean, what: string) => {
    for (const end = Date.now() + 15_000; !pred(); await sleep(10)) if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
  };
  const connections = () => out.split('+').length - 1;
  try {
    await until(() => out.startsWith('ready'), 'the daemon');
    const openFds = () => readdirSync('/proc/self/fd').length;
    configure({ endpoint: `unix://${path}`, serviceName: 'fd-0' });
    span('s0', () => 0);
    await until(() => connections() === 1, 'connected');
    await sleep(50);
    const before = openFds();
    // A new serviceName is a new resource, so a new transport and connection each time; every
    // other round ends with shutdown() instead.
    for (let i = 1; i <= 20; i++) {
      if (i % 2 === 0) await shutdown();
      configure({ endpoint: `unix://${path}`, serviceName: `fd-${i}` });
      span(`s${i}`, () => i);
      await until(() => connections() === i + 1, `connection ${i + 1}`);
    }
    // The old connections were half-closed and waited for the daemon's end, which a daemon that
    // does not read never sends: one descriptor (and transport, buffer included) kept per round.
    await until(() => openFds() <= before, `old connections closed (fds ${openFds()}, before ${before})`);
    await shutdown();
  } finally {
    daemon.kill();
  }
});

test('an app waiting for stdin is not done: a write the daemon is slow to read is kept, not abandoned', async () => {
  const r = await UnixReceiver.create();
  r.stopReading();
  // ~1.6 MB: more than the socket buffers hold, so a write waits for the daemon.
  const app = runApp({ DSPY_O11Y_ENDPOINT: r.endpoint, FIXTURE_SPANS: '200', FIXTURE_INPUT_BYTES: '8000', FIXTURE_READ_STDIN: '1' }, 20_000, 2500);
  await sleep(1500);
  r.resumeReading();
  const run = await app;
  assert.equal(run.code, 0, run.stderr);
  const s = run.report?.stats;
  assert.deepEqual(s?.droppedByReason, {}, `nothing abandoned: ${JSON.stringify(s)}`);
  assert.equal(s?.sent, 202);
  await r.waitFor(() => r.spans().length >= 201, 15_000, 'all spans');
  assert.equal(r.spans().length, 201);
  await r.dispose();
});

test('shutdown() while a write is stuck: the write is counted dropped (shutdown), not sent; flush waiters hear false', async () => {
  const r = await stalledReceiver({ maxBufferRecords: 10_000 });
  const before = sdkStats();
  const input = 'i'.repeat(20_000);
  for (let i = 0; i < 300; i++) span(`s${i}`, { input }, () => i);
  await r.waitFor(() => sdkStats().inFlight > 0, 15_000, 'a write in flight');
  const pending = flush(60_000);
  const first = shutdown(300);
  assert.equal(await shutdown(), false, 'a second shutdown() answers with the first one\'s outcome');
  assert.equal(await first, false);
  assert.equal(await pending, false, 'the flush did not complete');
  const d = delta(before);
  assert.equal(d.enqueued, 300);
  assert.ok((d.now.droppedByReason.shutdown ?? 0) - (before.droppedByReason.shutdown ?? 0) > 0);
  assert.equal(d.sent + d.dropped, 300, JSON.stringify(d.now));
  assertConservation();
  r.resumeReading();
  // Read to the end of the cut connection (a fixed sleep could end before that on a loaded machine).
  await r.waitFor(() => r.openConnections === 0, 15_000, 'the cut connection read to its end');
  // What arrived whole is at least what was counted sent (the cut write may have delivered a part).
  const whole = r.spans().length - 1;
  assert.ok(whole >= d.sent, `${whole} arrived, ${d.sent} counted sent`);
  assert.ok(whole < 300, 'the stuck write did not count as sent');
  await r.dispose();
});

test('flush(Infinity) and other timeouts past what a timer can hold wait instead of giving up at once', async () => {
  const r = await stalledReceiver({ maxBufferRecords: 10_000 });
  const input = 'i'.repeat(20_000);
  for (let i = 0; i < 200; i++) span(`s${i}`, { input }, () => i);
  let settled: boolean | undefined;
  const pending = flush(Infinity).then((ok) => (settled = ok));
  const pending2 = flush(2 ** 40);
  await sleep(200);
  assert.equal(settled, undefined, 'still waiting for the daemon');
  r.resumeReading();
  assert.equal(await pending, true);
  assert.equal(await pending2, true);
  assert.equal(await flush(-5), true, 'nothing left: true at once');
  await r.dispose();
});

test('configure() to another endpoint: drops the old transport could not report are reported by the new one', async () => {
  const dir = tempDir();
  configure({ endpoint: `unix://${join(dir, 'nobody.sock')}`, maxBufferRecords: 10 });
  const before = sdkStats();
  for (let i = 0; i < 30; i++) span(`lost${i}`, () => i);
  assert.equal(delta(before).bufferFull, 20);
  const r = await UnixReceiver.create();
  configure({ endpoint: r.endpoint, maxBufferRecords: 100_000 });
  span('new', () => 1);
  assert.equal(await flush(), false, 'the old transport still held 10 records nobody could take');
  const reported = () => r.stats().filter((x) => x.reason === 'buffer_full').reduce((n, x) => n + x.droppedRecords, 0);
  await r.waitFor(() => reported() >= 20, 15_000, 'the old drops reported');
  await sleep(100);
  assert.equal(reported(), 20);
  assert.deepEqual(r.spans().map((x) => x.name), ['new']);
  await r.dispose();
});

test('shutdown() then configure(): drops the closed transport could not report are reported by the next one', async () => {
  const dir = tempDir();
  configure({ endpoint: `unix://${join(dir, 'nobody.sock')}`, maxBufferRecords: 10 });
  const before = sdkStats();
  for (let i = 0; i < 30; i++) span(`lost${i}`, () => i);
  assert.equal(delta(before).bufferFull, 20);
  assert.equal(await shutdown(), false, 'nobody listens');
  const r = await UnixReceiver.create();
  configure({ endpoint: r.endpoint, maxBufferRecords: 100_000 });
  span('new', () => 1);
  assert.equal(await flush(), true);
  await r.waitForSpans(1);
  const reported = () => r.stats().filter((x) => x.reason === 'buffer_full').reduce((n, x) => n + x.droppedRecords, 0);
  assert.equal(reported(), 20, 'reported with the first write');
  assert.deepEqual(r.spans().map((x) => x.name), ['new']);
  await r.dispose();
});

test('DSPY_O11Y_DISABLED=1: callbacks run and return, nothing is sent, subscribers (budgets) still work', async () => {
  const r = await UnixReceiver.create();
  const run = await runApp({ DSPY_O11Y_ENDPOINT: r.endpoint, DSPY_O11Y_DISABLED: '1', FIXTURE_SPANS: '100', FIXTURE_BUDGET: '500' });
  assert.equal(run.code, 0, run.stderr);
  assert.deepEqual(run.report?.result, { sum: 4950, gen: 'generated', budget: 'thrown' });
  assert.equal(run.report?.stats.enqueued, 0);
  await sleep(100);
  assert.equal(r.connections, 0, 'not even a connection');
  await r.dispose();
});

test('shutdown(): flushes, closes the connection; later records are dropped (counted) until configure()', async () => {
  const r = await UnixReceiver.create();
  configure({ endpoint: r.endpoint });
  for (let i = 0; i < 20; i++) span(`s${i}`, () => i);
  assert.equal(await shutdown(), true);
  await r.waitForSpans(20);
  await r.waitFor(() => r.openConnections === 0, 15_000, 'connection closed');
  const before = sdkStats();
  assert.equal(span('after-shutdown', () => 'still runs'), 'still runs');
  assert.equal((sdkStats().droppedByReason.shutdown ?? 0) - (before.droppedByReason.shutdown ?? 0), 1);
  assert.equal(await shutdown(), true, 'idempotent');
  configure({ endpoint: r.endpoint });
  span('reconfigured', () => 1);
  assert.equal(await flush(), true);
  await r.waitForSpans(21);
  assert.equal(r.spans().at(-1)?.name, 'reconfigured');
  assertConservation();
  await r.dispose();
});

test('flush() and shutdown() wait for the records of a transport configure() replaced: they answered true at once while those were still on their way', async () => {
  const r = await stalledReceiver({ maxBufferRecords: 10_000 });
  try {
    const input = 'i'.repeat(20_000);
    for (let i = 0; i < 200; i++) span(`old${i}`, { input }, () => i);
    await r.waitFor(() => sdkStats().inFlight > 0, 15_000, 'a write in flight');
    // A new resource is a new transport: the old one is flushed (and then closed) in the background.
    configure({ endpoint: r.endpoint, serviceName: 'replaced-1', flushTimeoutMs: 30_000 });
    assert.ok(sdkStats().buffered + sdkStats().inFlight > 0, 'the old transport still holds records');
    assert.equal(await flush(300), false, 'the daemon is not reading: those records are not written');
    assert.equal(await shutdown(300), false, 'nor at shutdown()');
    r.resumeReading();
    assert.equal(await flush(30_000), true);
    const s = sdkStats();
    assert.equal(s.buffered + s.inFlight, 0, JSON.stringify(s));
    await r.waitForSpans(201);
    assert.equal(r.spans().filter((x) => x.name.startsWith('old')).length, 200);
    assertConservation();

    // The same through shutdown() alone: true only once the old transport's records are written.
    r.stopReading();
    configure({ endpoint: r.endpoint, serviceName: 'replaced-2', flushTimeoutMs: 30_000 });
    for (let i = 0; i < 200; i++) span(`again${i}`, { input }, () => i);
    await r.waitFor(() => sdkStats().inFlight > 0, 15_000, 'a write in flight');
    configure({ endpoint: r.endpoint, serviceName: 'replaced-3', flushTimeoutMs: 30_000 });
    const done = shutdown(30_000);
    r.resumeReading();
    assert.equal(await done, true);
    assert.equal(sdkStats().buffered + sdkStats().inFlight, 0);
    await r.waitFor(() => r.spans().filter((x) => x.name.startsWith('again')).length === 200, 15_000, 'every record');
    assertConservation();
  } finally {
    r.resumeReading();
    await r.dispose();
  }
});

test('a socket path over the 107 bytes a Unix socket address holds: one clear diagnostic (not a bare ENOENT), and the app goes on', async () => {
  const dir = tempDir();
  const long = join(dir, `${'é'.repeat(60)}.sock`); // over 107 bytes, though not 107 characters
  const write = process.stderr.write;
  const said: string[] = [];
  process.env.DSPY_O11Y_DEBUG = '1';
  process.stderr.write = ((chunk: string | Uint8Array) => (said.push(String(chunk)), true)) as typeof process.stderr.write;
  try {
    for (let i = 0; i < 2; i++) {
      configure({ endpoint: `unix://${long}` });
      assert.equal(span('s', () => 41) + 1, 42);
      assert.equal(await flush(1000), false, 'nobody there');
      configure({ endpoint: undefined });
    }
  } finally {
    process.stderr.write = write;
    delete process.env.DSPY_O11Y_DEBUG;
    configure({ endpoint: undefined });
  }
  const tooLong = said.filter((l) => /too long/.test(l));
  assert.equal(tooLong.length, 1, said.join(''));
  assert.match(tooLong[0] as string, /107 bytes/);
});
