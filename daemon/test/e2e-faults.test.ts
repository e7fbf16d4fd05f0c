/**
 * The backend misbehaves; the daemon must deliver everything it could keep once the backend
 * recovers, drop exactly the oldest when it must, and stay within its bounds.
 */
import { after, afterEach, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { execFileSync, spawn } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { startFakeLangfuse, type FakeLangfuse } from './support/fake-langfuse.js';
import { runCli, sendOverSocket, startDaemonProcess, tempDir, type DaemonProcess } from './support/daemon-process.js';

const KEYS = { LANGFUSE_PUBLIC_KEY: 'pk-lf-faults', LANGFUSE_SECRET_KEY: 'sk-lf-faults' };
const TRACE = '9'.repeat(32);

const spanLine = (i: number) =>
  JSON.stringify({ v: 1, type: 'span', traceId: TRACE, spanId: (i + 1).toString(16).padStart(16, '0'), name: `s${i}`, startTimeUnixNano: '1732700000000000000', endTimeUnixNano: '1732700000000000001', attributes: { i } });
/** Spool files (not the daemon's `.lock`). */
const spoolFilesIn = (dir: string) => readdirSync(dir).filter((f) => f.endsWith('.ndjson'));
const lines = (from: number, to: number) => Array.from({ length: to - from }, (_, k) => spanLine(from + k));

describe('faults', () => {
  let fake: FakeLangfuse;
  let daemon: DaemonProcess | undefined;
  let tmp: ReturnType<typeof tempDir>;
  let socket: string;

  const start = (args: string[] = [], env: Record<string, string> = {}) =>
    startDaemonProcess(['--socket', socket, '--http', '127.0.0.1:0', ...args], { ...KEYS, LANGFUSE_HOST: fake.url, ...env }, socket).then((d) => (daemon = d));

  const invariant = async (d: DaemonProcess) => {
    const s = await d.status();
    const dropped = Object.entries(s.spans.dropped).reduce((t, [r, n]) => (r === 'client_buffer' ? t : t + n), 0);
    assert.equal(s.spans.received, s.spans.exported + dropped + s.spans.queued + s.spans.inFlight, JSON.stringify(s.spans));
    return s;
  };
  const uniqueIds = () => new Set(fake.spans.map((s) => s.spanId));

  beforeEach(async () => {
    tmp = tempDir();
    socket = join(tmp.dir, 'd.sock');
    fake = await startFakeLangfuse({ publicKey: KEYS.LANGFUSE_PUBLIC_KEY, secretKey: KEYS.LANGFUSE_SECRET_KEY });
  });
  afterEach(async () => {
    await daemon?.stop('SIGKILL');
    daemon = undefined;
    await fake.close();
    tmp.cleanup();
  });
  after(() => undefined);

  test('500s, then recovery: everything delivered once, retries counted', async () => {
    fake.fail({ status: 500 }, 3);
    const d = await start(['--flush-interval', '20']);
    await sendOverSocket(socket, lines(0, 300));
    await fake.waitForSpans(300, 15_000);
    assert.equal(uniqueIds().size, 300);
    assert.equal(fake.spans.length, 300, 'no duplicates');
    assert.ok((await d.metric('dspy_o11yd_export_retries_total')) >= 3);
    assert.equal(await d.metric('dspy_o11yd_export_requests_total', { outcome: 'retryable' }), 3);
    await invariant(d);
  });

  test('429 with Retry-After is honoured before the retry', async () => {
    fake.fail({ status: 429, retryAfterSeconds: 1 }, 1);
    const d = await start(['--flush-interval', '20']);
    await sendOverSocket(socket, lines(0, 10));
    await fake.waitForSpans(10, 15_000);
    const [first, second] = fake.requests;
    assert.equal(first!.status, 429);
    assert.ok(second!.receivedAt - first!.receivedAt >= 950, `retried after ${second!.receivedAt - first!.receivedAt} ms`);
    await invariant(d);
  });

  test('a hanging backend hits the export timeout, and the batch is delivered after recovery', async () => {
    fake.fail({ hang: true }, 2);
    const d = await start(['--flush-interval', '20', '--export-timeout', '300']);
    await sendOverSocket(socket, lines(0, 50));
    await fake.waitForSpans(50, 15_000);
    assert.equal(fake.spans.length, 50);
    const s = await invariant(d);
    assert.match(s.exporter.lastError ?? '', /timed out/);
  });

  test('a reset connection is retried', async () => {
    fake.fail({ reset: true }, 2);
    const d = await start(['--flush-interval', '20']);
    await sendOverSocket(socket, lines(0, 40));
    await fake.waitForSpans(40, 15_000);
    assert.equal(fake.spans.length, 40);
    await invariant(d);
  });

  test('413 splits the batch until it fits', async () => {
    fake.mode({ tooLargeAboveSpans: 60 });
    const d = await start(['--flush-interval', '2000', '--batch-max-spans', '256']);
    await sendOverSocket(socket, lines(0, 256));
    await fake.waitForSpans(256, 15_000);
    assert.equal(uniqueIds().size, 256);
    assert.ok(fake.requests.filter((r) => r.status === 413).length >= 2);
    await invariant(d);
  });

  test('a single span refused with 413 is dropped as rejected, logged once with the answer, and shown in lastError', async () => {
    fake.mode({ tooLargeAboveSpans: 0 });
    const d = await start(['--flush-interval', '20']);
    await sendOverSocket(socket, lines(0, 1));
    await d.eventually(async () => assert.equal((await d.status()).spans.dropped.rejected, 1));
    await sendOverSocket(socket, lines(1, 2));
    await d.eventually(async () => assert.equal((await d.status()).spans.dropped.rejected, 2));
    const logged = d.logs.filter((l) => l.level >= 40 && /413/.test(l.msg));
    assert.equal(logged.length, 1, 'logged once');
    assert.match(String(logged[0]!.answer), /Too Large/);
    assert.match((await d.status()).exporter.lastError ?? '', /^413: .*Too Large/);
    await invariant(d);
  });

  test('401 is permanent: batch dropped as rejected, logged once, /readyz 503 with the reason', async () => {
    const d = await start(['--flush-interval', '20'], { LANGFUSE_SECRET_KEY: 'sk-wrong' });
    await sendOverSocket(socket, lines(0, 10));
    await d.eventually(async () => assert.equal(await d.metric('dspy_o11yd_spans_dropped_total', { reason: 'rejected' }), 10));
    await sendOverSocket(socket, lines(10, 20));
    await d.eventually(async () => assert.equal(await d.metric('dspy_o11yd_spans_dropped_total', { reason: 'rejected' }), 20));
    const ready = await fetch(`${d.httpUrl}/readyz`);
    assert.equal(ready.status, 503);
    assert.match(((await ready.json()) as { reason: string }).reason, /401/);
    assert.equal(d.logs.filter((l) => /refused/.test(l.msg)).length, 1, 'logged once');
    assert.ok(!d.stderr.includes('sk-wrong'));
    await invariant(d);
  });

  test('a flood against a dead backend stays bounded and drops exactly the oldest', async () => {
    fake.mode({ status: 503 });
    // First batch (spans 0..99) is taken and held for retry; the queue keeps the newest 1000.
    const d = await start(['--queue-max-spans', '1000', '--batch-max-spans', '100', '--flush-interval', '60000', '--max-retries', '1000']);
    await sendOverSocket(socket, lines(0, 100));
    await d.eventually(async () => assert.equal((await d.status()).spans.inFlight, 100));
    await sendOverSocket(socket, lines(100, 20_000));
    await d.eventually(async () => assert.equal((await d.status()).spans.received, 20_000));
    const s = await invariant(d);
    assert.equal(s.queue.spans, 1000);
    assert.equal(s.spans.dropped.queue_overflow, 20_000 - 100 - 1000);
    assert.ok(s.queue.bytes <= s.queue.maxBytes);
    fake.mode(null);
    await fake.waitForSpans(1100, 20_000);
    const got = [...uniqueIds()].map((id) => parseInt(id, 16) - 1).sort((a, b) => a - b);
    const expected = [...Array.from({ length: 100 }, (_, i) => i), ...Array.from({ length: 1000 }, (_, i) => 19_000 + i)];
    assert.deepEqual(got, expected);
    await invariant(d);
  });

  test('a span counts the resource it is the first to hold: a large hello or OTLP resource per span stays within --queue-max-bytes', async () => {
    fake.mode({ status: 503 });
    const d = await start(['--queue-max-bytes', String(1024 * 1024), '--max-record-bytes', String(256 * 1024), '--batch-max-spans', '1', '--flush-interval', '60000', '--max-retries', '1000']);
    // Each resource is 100 KB that the spans' lines (~200 bytes) did not count: spans of 60 such
    // resources were "20 KB" of queue holding 6 MB (and so on, without bound).
    const pad = (i: number) => String(i).padStart(100_000, 'r');
    const hello = (i: number) => JSON.stringify({ v: 1, type: 'hello', resource: { 'service.name': 'big', pad: pad(i) } });
    const socketLines: string[] = [];
    for (let i = 0; i < 40; i++) socketLines.push(hello(i), spanLine(i));
    await sendOverSocket(socket, socketLines);
    for (let i = 40; i < 60; i++) {
      const span = { traceId: TRACE, spanId: (i + 1).toString(16).padStart(16, '0'), name: `s${i}`, startTimeUnixNano: '1732700000000000000', endTimeUnixNano: '1732700000000000001' };
      const body = { resourceSpans: [{ resource: { attributes: [{ key: 'pad', value: { stringValue: pad(i) } }] }, scopeSpans: [{ spans: [span] }] }] };
      const res = await fetch(`${d.httpUrl}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      assert.equal(res.status, 200);
    }
    // JSON bodies: a record's bytes there are its share of the body, not the hello's own size.
    for (let i = 60; i < 80; i++) {
      const body = `[${hello(i)},${[0, 1, 2, 3].map((k) => spanLine(100 + 4 * i + k)).join(',')}]`;
      const res = await fetch(`${d.httpUrl}/v1/ingest`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      assert.equal(res.status, 202);
    }
    await d.eventually(async () => assert.equal((await d.status()).spans.received, 40 + 20 + 80));
    const s = await invariant(d);
    assert.ok(s.queue.bytes <= s.queue.maxBytes && s.queue.bytes >= 10 * 100_000, `${s.queue.bytes} bytes counted for ${s.queue.spans} spans`);
    // What the queue held, delivered once the backend is back: spans of at most 10 resources of
    // 100 KB (1 MiB), plus the oldest one's if only its first span was dropped, plus the one in flight.
    fake.mode(null);
    await fake.waitForSpans(s.queue.spans + s.spans.inFlight, 30_000);
    const resources = new Set(fake.spans.map((x) => x.resource.pad));
    assert.ok(resources.size <= 12, `spans of ${resources.size} distinct 100 KB resources were queued at once`);
    assert.ok(resources.has(pad(79)), 'the newest were kept');
    await invariant(d);
  });

  test('partial lines of hung clients share one budget (16 × --max-record-bytes): a line past it is rejected, its connection lives on', async () => {
    const d = await start(['--max-record-bytes', '65536']);
    // 24 clients each hold 60,000 bytes without a newline: 17 fit in 16 × 65,536, the rest do not.
    const clients: Socket[] = [];
    try {
      for (let i = 0; i < 24; i++) {
        const c = connect(socket);
        await once(c, 'connect');
        c.write('x'.repeat(60_000));
        clients.push(c);
      }
      const tooLarge = () => d.metric('dspy_o11yd_records_invalid_total', { transport: 'uds', reason: 'too_large' });
      await d.eventually(async () => assert.ok((await tooLarge()) >= 24 - 17, `too_large ${await tooLarge()}`));
      assert.ok(d.logs.some((l) => /partial lines of all connections over their budget/.test(l.msg)));
      // Every connection still delivers the record after its newline.
      await Promise.all(clients.map((c, i) => new Promise<void>((resolve) => c.end('\n' + spanLine(i) + '\n', resolve))));
      await d.eventually(async () => assert.equal((await d.status()).spans.received, 24));
      const rejected = (await tooLarge()) + (await d.metric('dspy_o11yd_records_invalid_total', { transport: 'uds', reason: 'invalid_json' }));
      assert.equal(rejected, 24, 'each held line is rejected once: too_large if it did not fit, else invalid_json (x…x)');
    } finally {
      clients.forEach((c) => c.destroy());
    }
  });

  test('a client that hangs in the middle of a line over --max-record-bytes (being skipped) is closed after --partial-line-timeout too, counted once as too_large', async () => {
    const d = await start(['--partial-line-timeout', '300', '--max-record-bytes', '64']);
    const hung = connect(socket);
    try {
      await once(hung, 'connect');
      // Past the limit at once: the daemon skips to the newline, holding nothing, and the client never sends it.
      hung.write(spanLine(1) + '\n' + 'x'.repeat(500));
      const closed = once(hung, 'close');
      hung.resume();
      await closed;
      const invalid = (reason: string) => d.metric('dspy_o11yd_records_invalid_total', { transport: 'uds', reason });
      assert.equal(await invalid('too_large'), 2, 'the span line (over 64 bytes) and the skipped one');
      assert.equal(await invalid('incomplete'), 0, 'the skipped line was counted already');
      assert.equal((await d.status()).connections.open, 0);
    } finally {
      hung.destroy();
    }
  });

  test('a client that sends part of a record and then nothing is closed after --partial-line-timeout; idle clients between records are not', async () => {
    const d = await start(['--partial-line-timeout', '300']);
    const hung = connect(socket);
    const idle = connect(socket);
    try {
      await Promise.all([once(hung, 'connect'), once(idle, 'connect')]);
      hung.write(spanLine(1) + '\n' + spanLine(2).slice(0, 40));
      idle.write(spanLine(3) + '\n');
      const closed = once(hung, 'close');
      hung.resume(); // the daemon never writes; read so 'end' and 'close' are seen
      await closed;
      const incomplete = await d.metric('dspy_o11yd_records_invalid_total', { transport: 'uds', reason: 'incomplete' });
      assert.equal(incomplete, 1);
      assert.ok(d.logs.some((l) => /sent part of a record and then nothing/.test(l.msg)));
      // The idle client (nothing held) was idle just as long and still delivers.
      await d.eventually(async () => assert.equal((await d.status()).spans.received, 2));
      assert.ok(!idle.destroyed);
      await new Promise<void>((resolve) => idle.end(spanLine(4) + '\n', resolve));
      await d.eventually(async () => assert.equal((await d.status()).spans.received, 3));
      await invariant(d);
    } finally {
      hung.destroy();
      idle.destroy();
    }
  });

  test('SIGTERM flushes what is queued, then exits 0', async () => {
    const d = await start(['--flush-interval', '600000', '--batch-max-spans', '5000']);
    await sendOverSocket(socket, lines(0, 500));
    await d.eventually(async () => assert.equal((await d.status()).spans.queued, 500));
    assert.equal(fake.spans.length, 0);
    const exit = await d.stop('SIGTERM');
    assert.equal(exit.code, 0);
    assert.equal(fake.spans.length, 500);
  });

  /** A run against a backend answering 503 that gets `n` spans of `service` and is stopped (SIGTERM, so it spools them); returns the spool dir. The backend stays down. */
  const spoolWithBackendDown = async (name: string, service: string, n: number): Promise<string> => {
    const spool = join(tmp.dir, name);
    fake.mode({ status: 503 });
    const d = await start(['--flush-interval', '20', '--shutdown-timeout', '300', '--spool-dir', spool]);
    await sendOverSocket(socket, [JSON.stringify({ v: 1, type: 'hello', resource: { 'service.name': service } }), ...lines(0, n)]);
    await d.eventually(async () => assert.equal((await d.status()).spans.received, n));
    assert.equal((await d.stop('SIGTERM')).code, 0);
    // The last line adds up: every span received is exported, dropped or spooled.
    const stopped = d.logs.find((l) => l.msg === 'dspy-o11yd stopped') as { received: number; exported: number; dropped: Record<string, number>; spooled?: number } | undefined;
    const dropped = Object.values(stopped?.dropped ?? {}).reduce((t, c) => t + c, 0);
    assert.equal(stopped?.spooled, n);
    assert.equal(stopped.received, stopped.exported + dropped + stopped.spooled);
    return spool;
  };

  test('with --spool-dir, what the shutdown timeout could not deliver is kept and sent by the next run', async () => {
    const spool = await spoolWithBackendDown('spool', 'spooled', 200);
    assert.equal(readdirSync(spool).length, 1);
    fake.mode(null);
    const d2 = await start(['--flush-interval', '20', '--spool-dir', spool]);
    await fake.waitForSpans(200, 15_000);
    assert.equal(uniqueIds().size, 200);
    assert.ok(fake.spans.every((s) => s.resource['service.name'] === 'spooled'));
    // Removed once what it held has left the daemon (delivered here), not when it was read.
    await d2.eventually(() => assert.equal(spoolFilesIn(spool).length, 0));
    await invariant(d2);
  });

  test('a spool is kept until what it held is delivered: a crash during its replay loses nothing', async () => {
    const spool = await spoolWithBackendDown('spool-crash', 'crash', 100);
    // The next run replays it while the backend is still down, and is killed (OOM, a crash).
    const d2 = await start(['--flush-interval', '20', '--spool-dir', spool]);
    await d2.eventually(async () => assert.equal((await d2.status()).spans.received, 100));
    await new Promise((r) => setTimeout(r, 1_500)); // past the daemon's check of the replayed spool
    assert.equal(spoolFilesIn(spool).length, 1, 'still there: nothing of it was delivered');
    assert.equal((await d2.stop('SIGKILL')).signal, 'SIGKILL');
    fake.mode(null);
    const d3 = await start(['--flush-interval', '20', '--spool-dir', spool]);
    await fake.waitForSpans(100, 15_000);
    assert.equal(uniqueIds().size, 100);
    await d3.eventually(() => assert.equal(spoolFilesIn(spool).length, 0));
    await invariant(d3);
  });

  test('a spool is kept while its spans are in flight, however many newer spans the queue drops meanwhile: a crash then loses nothing', async () => {
    const spool = await spoolWithBackendDown('spool-overflow', 'overflow', 100);
    // The next run replays it into one batch, retried while the backend is still down…
    const d2 = await start(['--flush-interval', '20', '--spool-dir', spool, '--queue-max-spans', '100', '--batch-max-spans', '100']);
    await d2.eventually(async () => assert.equal((await d2.status()).spans.inFlight, 100));
    // …while the apps go on sending: the queue is full, and drops its oldest (none of them spooled).
    await sendOverSocket(socket, lines(1000, 1200));
    await d2.eventually(async () => assert.equal((await d2.status()).spans.dropped.queue_overflow, 100));
    await new Promise((r) => setTimeout(r, 1_500)); // past the daemon's check of the replayed spool
    assert.equal(spoolFilesIn(spool).length, 1, 'still there: its spans are in flight, not delivered');
    assert.equal((await d2.stop('SIGKILL')).signal, 'SIGKILL');
    fake.mode(null);
    const d3 = await start(['--flush-interval', '20', '--spool-dir', spool]);
    await fake.waitForSpans(100, 15_000);
    assert.deepEqual(new Set(fake.spans.map((s) => s.spanId)), new Set(lines(0, 100).map((l) => (JSON.parse(l) as { spanId: string }).spanId)));
    await d3.eventually(() => assert.equal(spoolFilesIn(spool).length, 0));
    await invariant(d3);
  });

  test('a replayed spool counts each resource once, as the run that wrote it did: spans of several connections interleaved fit the same queue', async () => {
    const spool = join(tmp.dir, 'spool-resources');
    fake.mode({ status: 503 });
    const args = ['--flush-interval', '20', '--shutdown-timeout', '300', '--queue-max-bytes', '40000', '--spool-dir', spool];
    const d = await start(args);
    // Two workers of one app (the same 2 KB resource), their spans interleaved in the queue: the
    // spool has a `hello` at each change of connection.
    const hello = JSON.stringify({ v: 1, type: 'hello', resource: { 'service.name': 'workers', 'host.labels': 'l'.repeat(2000) } });
    const conns = await Promise.all([0, 1].map(async () => {
      const c = connect(socket);
      await once(c, 'connect');
      c.write(hello + '\n');
      return c;
    }));
    try {
      for (let round = 0; round < 20; round++) {
        conns[round % 2]!.write(lines(round * 3, round * 3 + 3).map((l) => l + '\n').join(''));
        await d.eventually(async () => assert.equal((await d.status()).spans.received, round * 3 + 3));
      }
    } finally {
      conns.forEach((c) => c.destroy());
    }
    assert.equal((await d.status()).spans.dropped.queue_overflow, 0, 'they fit the queue');
    assert.equal((await d.stop('SIGTERM')).code, 0);
    const d2 = await start(args);
    await d2.eventually(async () => assert.equal((await d2.status()).spans.received, 60));
    const s = await invariant(d2);
    assert.equal(s.spans.dropped.queue_overflow, 0, 'the spool fits the same queue');
    assert.equal(s.spans.queued + s.spans.inFlight, 60);
  });

  test('one daemon per spool dir: a second one is refused with the first one\'s pid; the dir is free again once it stops', async () => {
    const spool = join(tmp.dir, 'spool-locked');
    const d = await start(['--spool-dir', spool]);
    const second = await runCli(['start', '--socket', join(tmp.dir, 'second.sock'), '--http', '', '--spool-dir', spool], { LANGFUSE_PUBLIC_KEY: 'pk', LANGFUSE_SECRET_KEY: 'sk', LANGFUSE_HOST: fake.url });
    assert.equal(second.code, 1);
    assert.match(second.stderr, new RegExp(`another dspy-o11yd \\(pid ${d.child.pid}\\) uses the spool dir`));
    assert.equal((await d.stop('SIGTERM')).code, 0);
    assert.deepEqual(readdirSync(spool), [], 'the lock is released');
    const again = await start(['--spool-dir', spool]);
    assert.equal((await again.stop('SIGTERM')).code, 0);
  });

  test('a spool dir lock whose pid is now another process (the daemon crashed, the machine rebooted) is taken over, not a refusal at every start', async (t) => {
    if (process.platform !== 'linux') return t.skip('process start times come from /proc');
    const spool = join(tmp.dir, 'spool-reused-pid');
    // A daemon holds the dir: its lock as it writes it.
    const first = await start(['--spool-dir', spool]);
    const lock = readFileSync(join(spool, '.lock'), 'utf8');
    assert.equal((await first.stop('SIGKILL')).signal, 'SIGKILL'); // gone without releasing it
    // After the reboot its pid is another process's (here a process started later, given that pid in the lock).
    const other = spawn('sleep', ['60'], { stdio: 'ignore' });
    try {
      writeFileSync(join(spool, '.lock'), lock.replace(/^\d+/, String(other.pid)));
      const d = await start(['--spool-dir', spool]);
      assert.equal((await d.stop('SIGTERM')).code, 0);
    } finally {
      other.kill('SIGKILL');
    }
  });

  test('a spool entry that cannot be read is skipped with a warning; a spooled record over --max-record-bytes still replays', async () => {
    const spool = join(tmp.dir, 'spool-odd');
    mkdirSync(join(spool, 'spool-0-1.ndjson'), { recursive: true }); // a directory with a spool's name
    execFileSync('mkfifo', [join(spool, 'spool-0-2.ndjson')]); // reading a FIFO would block the start
    // Accepted live (an OTLP span has only the body limit), so its spool line may be longer than --max-record-bytes.
    const big = JSON.stringify({ v: 1, type: 'span', traceId: TRACE, spanId: 'b'.repeat(16), name: 'big', startTimeUnixNano: '1', endTimeUnixNano: '2', attributes: { 'dspy.input': 'x'.repeat(6000) } });
    writeFileSync(join(spool, 'spool-0-3.ndjson'), `${JSON.stringify({ v: 1, type: 'hello', resource: { 'service.name': 'odd' } })}\n${big}\n${lines(0, 3).join('\n')}\n`);
    const d = await start(['--flush-interval', '20', '--spool-dir', spool, '--max-record-bytes', '4096']);
    await fake.waitForSpans(4, 10_000);
    assert.ok(fake.span('b'.repeat(16)), 'the long spooled line replayed');
    assert.equal(d.logs.filter((l) => /spool file could not be read/.test(l.msg)).length, 2);
    await d.eventually(() => assert.deepEqual(spoolFilesIn(spool).sort(), ['spool-0-1.ndjson', 'spool-0-2.ndjson'], 'the unreadable ones stay, the read one goes once delivered'));
    await invariant(d);
  });

  test('a spool .tmp left by a write cut short (SIGKILL, crash): its whole records are replayed, the rest removed, with one warning', async () => {
    const spool = join(tmp.dir, 'spool-tmp');
    mkdirSync(spool);
    const hello = (service: string) => JSON.stringify({ v: 1, type: 'hello', resource: { 'service.name': service } });
    const id = (i: number) => (i + 1).toString(16).padStart(16, '0');
    const leftovers: Record<string, string> = {
      // Killed mid-line: five whole spans, then a torn one.
      'spool-1700000000000-4242.tmp': `${hello('killed')}\n${lines(0, 5).join('\n')}\n${spanLine(5).slice(0, 60)}`,
      // The machine died before a page was written back (zeros): nothing after it is trusted, not even a whole line with its own hello.
      'spool-1700000000001-4243.tmp': `${hello('lost-page')}\n${lines(10, 12).join('\n')}\n${'\0'.repeat(4096)}\n${hello('other')}\n${lines(12, 14).join('\n')}\n`,
      // Not one whole line: nothing to replay.
      'spool-1700000000002-4244.tmp': '{"v":1,"type":"hel',
      // A carried spool cut short: it only repeats spool files its writer kept, so it is removed, not replayed.
      'carry-1700000000003-4245.tmp': `${hello('carried')}\n${lines(20, 22).join('\n')}\n`,
    };
    for (const [name, content] of Object.entries(leftovers)) writeFileSync(join(spool, name), content);
    // Not of the daemon's naming: not its to remove.
    writeFileSync(join(spool, 'notes.tmp'), 'mine');
    writeFileSync(join(spool, 'spool-x-1.tmp'), 'mine too');
    const d = await start(['--flush-interval', '20', '--spool-dir', spool]);
    const warned = d.logs.filter((l) => /temporary files left by a write cut short/.test(l.msg)) as { level: number; files?: number; bytes?: number; recovered?: number }[];
    assert.equal(warned.length, 1, 'one warning line');
    const bytes = Object.values(leftovers).reduce((t, c) => t + Buffer.byteLength(c), 0);
    assert.deepEqual({ level: warned[0]!.level, files: warned[0]!.files, bytes: warned[0]!.bytes, recovered: warned[0]!.recovered }, { level: 40, files: 4, bytes, recovered: 2 });
    assert.deepEqual(readdirSync(spool).filter((f) => f.endsWith('.tmp')).sort(), ['notes.tmp', 'spool-x-1.tmp'], 'our .tmp files are gone, the others stay');
    await fake.waitForSpans(7, 10_000);
    // Removed once what they held has left the daemon, like any spool file.
    await d.eventually(() => assert.deepEqual(spoolFilesIn(spool), []));
    assert.deepEqual(fake.spans.map((s) => `${s.resource['service.name']}:${s.spanId}`).sort(), [...[0, 1, 2, 3, 4].map((i) => `killed:${id(i)}`), `lost-page:${id(10)}`, `lost-page:${id(11)}`].sort());
    const s = await invariant(d);
    assert.deepEqual(Object.keys(s.records.invalid).filter((k) => k.startsWith('spool/')), [], 'the torn tail was cut off, not replayed as an invalid record');
  });

  test('with --spool-dir, scores the shutdown could not deliver are kept and sent by the next run, same bodies', async () => {
    const spool = join(tmp.dir, 'spool');
    fake.failScores({ status: 503 }, 1_000);
    const d = await start(['--flush-interval', '20', '--shutdown-timeout', '300', '--spool-dir', spool]);
    const scoreLine = (i: number) => JSON.stringify({ v: 1, type: 'score', traceId: TRACE, name: `q${i}`, value: i, comment: `c${i}`, timeUnixNano: '1732700000123456789' });
    await sendOverSocket(socket, [
      JSON.stringify({ v: 1, type: 'hello', resource: { 'service.name': 'scorer', 'deployment.environment.name': 'Staging' } }),
      ...[0, 1, 2].map(scoreLine),
      ...lines(0, 5),
    ]);
    await fake.waitForSpans(5);
    await d.eventually(async () => assert.equal((await d.status()).scores.received, 3));
    await d.eventually(async () => assert.ok(fake.scoreRequests.length >= 1));
    const firstAttempt = fake.scoreRequests[0]!.body;
    assert.equal((await d.stop('SIGTERM')).code, 0);
    assert.ok(d.logs.some((l) => /spooled what was not delivered/.test(l.msg) && (l as { scores?: number }).scores === 3));
    const [file] = readdirSync(spool);
    assert.equal(readFileSync(join(spool, file!), 'utf8').split('\n').filter((l) => l.includes('"score"')).length, 3);

    fake.clearFaults();
    fake.reset();
    const d2 = await start(['--flush-interval', '20', '--spool-dir', spool]);
    const stored = await fake.waitForScores(3);
    assert.deepEqual(stored.map((s) => (s.body as { name: string }).name), ['q0', 'q1', 'q2']);
    // The body Langfuse gets after the restart is the one the first run tried to send: same id (no duplicate), environment, timestamp.
    assert.deepEqual(stored[0]!.body, firstAttempt);
    assert.equal((stored[2]!.body as { environment?: string }).environment, 'staging');
    await d2.eventually(() => assert.equal(spoolFilesIn(spool).length, 0));
    const s = await d2.status();
    assert.deepEqual({ received: s.scores.received, exported: s.scores.exported }, { received: 3, exported: 3 });
  });

  test('a spool is kept while its scores are unsent, whatever scores of the apps are refused meanwhile: a crash then loses nothing', async () => {
    const spool = join(tmp.dir, 'spool-scores');
    fake.failScores({ status: 503 }, 1_000);
    const d = await start(['--flush-interval', '20', '--shutdown-timeout', '300', '--spool-dir', spool]);
    await sendOverSocket(socket, [JSON.stringify({ v: 1, type: 'score', traceId: TRACE, name: 'kept', value: 1 })]);
    await d.eventually(async () => assert.equal((await d.status()).scores.received, 1));
    assert.equal((await d.stop('SIGTERM')).code, 0);
    assert.equal(spoolFilesIn(spool).length, 1);
    // The next run replays it while Langfuse still refuses scores, and an app sends scores Langfuse
    // would refuse (no trace or session), dropped at once as invalid.
    const d2 = await start(['--flush-interval', '20', '--spool-dir', spool]);
    await d2.eventually(async () => assert.equal((await d2.status()).scores.inFlight, 1));
    await sendOverSocket(socket, [0, 1].map((i) => JSON.stringify({ v: 1, type: 'score', name: `orphan${i}`, value: i })));
    await d2.eventually(async () => assert.equal((await d2.status()).scores.dropped.invalid, 2));
    await new Promise((r) => setTimeout(r, 1_500)); // past the daemon's check of the replayed spool
    assert.equal(spoolFilesIn(spool).length, 1, 'still there: its score is not delivered');
    assert.equal((await d2.stop('SIGKILL')).signal, 'SIGKILL');
    fake.clearFaults();
    const d3 = await start(['--flush-interval', '20', '--spool-dir', spool]);
    const stored = await fake.waitForScores(1);
    assert.deepEqual(stored.map((s) => (s.body as { name: string }).name), ['kept']);
    await d3.eventually(() => assert.equal(spoolFilesIn(spool).length, 0));
  });

  test('with --spool-dir, scores still retrying leave the spool its share of --shutdown-timeout: the exit comes before the timeout, with spans and scores spooled', { timeout: 40_000 }, async () => {
    const spool = join(tmp.dir, 'spool-in-time');
    fake.mode({ status: 503 });
    fake.failScores({ status: 503 }, 1_000);
    // 10 s: its last fifth, 2 s, is the spool's. An orchestrator whose grace period is the timeout kills at 10 s.
    const timeoutMs = 10_000;
    const d = await start(['--flush-interval', '20', '--shutdown-timeout', String(timeoutMs), '--spool-dir', spool]);
    await sendOverSocket(socket, [...lines(0, 3), JSON.stringify({ v: 1, type: 'score', traceId: TRACE, name: 'late', value: 1 })]);
    await d.eventually(async () => {
      const s = await d.status();
      assert.equal(s.scores.received, 1);
      assert.ok(fake.scoreRequests.length >= 1 && fake.requests.length >= 1, 'both are being retried');
    });
    d.child.kill('SIGTERM');
    const exit = await Promise.race([d.exited, new Promise<'not yet'>((r) => setTimeout(() => r('not yet'), timeoutMs).unref())]);
    assert.deepEqual(exit, { code: 0, signal: null }, 'exited within --shutdown-timeout');
    const spooled = spoolFilesIn(spool).flatMap((f) => readFileSync(join(spool, f), 'utf8').split('\n'));
    assert.equal(spooled.filter((l) => l.includes('"type":"span"')).length, 3);
    assert.equal(spooled.filter((l) => l.includes('"type":"score"')).length, 1);
  });

  test('without --spool-dir, scores the shutdown could not deliver are counted and logged as dropped', async () => {
    fake.failScores({ status: 503 }, 1_000);
    const d = await start(['--flush-interval', '20', '--shutdown-timeout', '300']);
    await sendOverSocket(socket, [0, 1].map((i) => JSON.stringify({ v: 1, type: 'score', traceId: TRACE, name: `q${i}`, value: i })));
    await d.eventually(async () => assert.equal((await d.status()).scores.received, 2));
    assert.equal((await d.stop('SIGTERM')).code, 0);
    const dropped = d.logs.find((l) => /dropped what was not delivered/.test(l.msg)) as { level: number; scores?: number } | undefined;
    assert.ok(dropped && dropped.level === 40 && dropped.scores === 2, JSON.stringify(d.logs.slice(-5)));
  });

  test('a second SIGTERM during the flush does not kill the daemon: it spools what is in flight and exits 0', async () => {
    const spool = join(tmp.dir, 'spool');
    fake.mode({ hang: true });
    const d = await start(['--flush-interval', '20', '--export-timeout', '60000', '--shutdown-timeout', '60000', '--spool-dir', spool]);
    await sendOverSocket(socket, lines(0, 100));
    await fake.waitForRequests(1);
    d.child.kill('SIGTERM');
    await d.waitForLog((l) => /shutting down/.test(l.msg));
    d.child.kill('SIGTERM');
    const exit = await d.exited;
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.ok(d.logs.some((l) => l.level >= 40 && /already in progress/.test(l.msg)), 'the repeat is logged');
    const stopped = d.logs.find((l) => l.msg === 'dspy-o11yd stopped');
    assert.ok(stopped, 'the stopped line was logged');
    assert.equal(readdirSync(spool).length, 1, 'the in-flight spans were spooled');
    assert.equal(readFileSync(join(spool, readdirSync(spool)[0]!), 'utf8').split('\n').filter((l) => l.includes('"span"')).length, 100);
  });

  test('never more than one export request in flight, even with a backlog and a slow backend', async () => {
    fake.mode({ delayMs: 30 });
    await start(['--flush-interval', '5', '--batch-max-spans', '50']);
    await Promise.all([sendOverSocket(socket, lines(0, 1000)), sendOverSocket(socket, lines(1000, 2000))]);
    await fake.waitForSpans(2000, 20_000);
    assert.ok(fake.requests.length >= 40);
    assert.equal(fake.maxInFlight, 1);
  });
});
