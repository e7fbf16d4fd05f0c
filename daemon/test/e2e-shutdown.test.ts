/**
 * Shutdown and exporters that get stuck: the daemon must honour --export-timeout and
 * --shutdown-timeout whatever the exporter or the disk does, keep (spool) or count what it could
 * not deliver, and exit 0.
 */
import { afterEach, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { join } from 'node:path';
import { connect } from 'node:net';
import { closeSync, constants, mkdirSync, openSync, readdirSync, readFileSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { setTimeout as delay } from 'node:timers/promises';
import { startFakeLangfuse, type FakeLangfuse } from './support/fake-langfuse.js';
import { CLI, DaemonProcess, sendOverSocket, startDaemonProcess, tempDir } from './support/daemon-process.js';

/** Preload that hangs the spool write like a stuck disk (see the file). */
const HUNG_SPOOL_WRITE = fileURLToPath(new URL('./support/hung-spool-write.js', import.meta.url));
/** Preload that fails the spool's writes with ENOSPC after its first chunk (see the file). */
const ENOSPC_SPOOL_WRITE = fileURLToPath(new URL('./support/enospc-spool-write.js', import.meta.url));

const KEYS = { LANGFUSE_PUBLIC_KEY: 'pk-lf-shut', LANGFUSE_SECRET_KEY: 'sk-lf-shut' };
const spanLine = (i: number) =>
  JSON.stringify({ v: 1, type: 'span', traceId: '7'.repeat(32), spanId: (i + 1).toString(16).padStart(16, '0'), name: `s${i}`, startTimeUnixNano: '1732700000000000000', endTimeUnixNano: '1732700000000000001' });
const lines = (n: number) => Array.from({ length: n }, (_, i) => spanLine(i));

/** The daemon's exit, or 'still running' when it has not exited long after its shutdown timeout. */
const exitOrHang = (d: DaemonProcess) => Promise.race([d.exited, delay(20_000, 'still running' as const, { ref: false })]);
const spooledSpans = (dir: string) => readdirSync(dir).flatMap((f) => readFileSync(join(dir, f), 'utf8').split('\n')).filter((l) => l.includes('"span"')).length;

describe('shutdown with stuck exporters', () => {
  let tmp: ReturnType<typeof tempDir>;
  let socket: string;
  let daemon: DaemonProcess | undefined;
  let fake: FakeLangfuse | undefined;

  beforeEach(() => {
    tmp = tempDir();
    socket = join(tmp.dir, 'd.sock');
  });
  afterEach(async () => {
    await daemon?.stop('SIGKILL');
    daemon = undefined;
    await fake?.close();
    fake = undefined;
    tmp.cleanup();
  });

  const fifoDaemon = async (fifo: string, spool: string) =>
    (daemon = await startDaemonProcess(
      ['--socket', socket, '--http', '127.0.0.1:0', '--exporter', 'file', '--file', fifo, '--flush-interval', '10', '--export-timeout', '300', '--shutdown-timeout', '500', '--spool-dir', spool],
      {},
      socket,
    ));

  test('file exporter on a FIFO without reader: the export fails (not hangs), SIGTERM spools and exits 0', async () => {
    const fifo = join(tmp.dir, 'out.fifo');
    execFileSync('mkfifo', [fifo]);
    const spool = join(tmp.dir, 'spool');
    const d = await fifoDaemon(fifo, spool);
    await sendOverSocket(socket, lines(10));
    await d.eventually(async () => assert.ok((await d.status()).exporter.lastError));
    d.child.kill('SIGTERM');
    assert.deepEqual(await exitOrHang(d), { code: 0, signal: null });
    assert.equal(spooledSpans(spool), 10);
  });

  test('file exporter on a FIFO whose reader stalls: the export timeout applies, SIGTERM spools and exits 0', async () => {
    const fifo = join(tmp.dir, 'out.fifo');
    execFileSync('mkfifo', [fifo]);
    const spool = join(tmp.dir, 'spool');
    // A reader that never reads: the pipe fills up and writes block.
    const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    try {
      const d = await fifoDaemon(fifo, spool);
      await sendOverSocket(socket, lines(3000));
      await d.eventually(async () => assert.match((await d.status()).exporter.lastError ?? '', /timed out/));
      d.child.kill('SIGTERM');
      assert.deepEqual(await exitOrHang(d), { code: 0, signal: null });
      const stopped = d.logs.find((l) => l.msg === 'dspy-o11yd stopped') as { received: number; exported: number } | undefined;
      assert.equal(stopped?.received, 3000);
      assert.equal(spooledSpans(spool), 3000 - stopped.exported);
    } finally {
      closeSync(reader);
    }
  });

  test('console exporter whose reader is gone (EPIPE: `start | head` once head exits): the daemon lives on and retries, SIGTERM spools and exits 0', async () => {
    const spool = join(tmp.dir, 'spool');
    const d = (daemon = await startDaemonProcess(
      ['--socket', socket, '--http', '127.0.0.1:0', '--exporter', 'console', '--flush-interval', '10', '--shutdown-timeout', '500', '--spool-dir', spool],
      {},
      socket,
    ));
    d.child.stdout!.destroy(); // the only reader of the daemon's stdout closes its end of the pipe
    await sendOverSocket(socket, lines(10));
    await d.waitForLog((l) => /will retry/.test(l.msg) && /EPIPE/.test(String(l.reason)));
    d.child.kill('SIGTERM');
    assert.deepEqual(await exitOrHang(d), { code: 0, signal: null });
    assert.equal(spooledSpans(spool), 10);
  });

  test('a spool dir that cannot be written in time: the spans are counted as dropped and the daemon exits 0', async () => {
    fake = await startFakeLangfuse({ publicKey: KEYS.LANGFUSE_PUBLIC_KEY, secretKey: KEYS.LANGFUSE_SECRET_KEY });
    fake.mode({ hang: true });
    // The spool dir is fine at start (start checks it), then its parent becomes a link into
    // /proc, where Node's recursive mkdir never returns: the spool write must not hold the exit.
    const link = join(tmp.dir, 'link');
    mkdirSync(join(tmp.dir, 'real'));
    symlinkSync(join(tmp.dir, 'real'), link);
    const d = (daemon = await startDaemonProcess(
      ['--socket', socket, '--http', '127.0.0.1:0', '--flush-interval', '10', '--export-timeout', '60000', '--shutdown-timeout', '300', '--spool-dir', join(link, 'spool')],
      { ...KEYS, LANGFUSE_HOST: fake.url },
      socket,
    ));
    await sendOverSocket(socket, lines(50));
    await fake.waitForRequests(1);
    unlinkSync(link);
    symlinkSync('/proc', link);
    d.child.kill('SIGTERM');
    assert.deepEqual(await exitOrHang(d), { code: 0, signal: null });
    assert.ok(d.logs.some((l) => /could not write the spool/.test(l.msg)));
    const stopped = d.logs.find((l) => l.msg === 'dspy-o11yd stopped') as { dropped: Record<string, number> } | undefined;
    assert.equal(stopped?.dropped.shutdown, 50);
  });

  test('a stderr nobody reads (a stalled log collector) does not hold the exit: SIGTERM delivers what is queued and exits 0', async () => {
    fake = await startFakeLangfuse({ publicKey: KEYS.LANGFUSE_PUBLIC_KEY, secretKey: KEYS.LANGFUSE_SECRET_KEY });
    const logPipe = join(tmp.dir, 'stderr.fifo');
    execFileSync('mkfifo', [logPipe]);
    const held = openSync(logPipe, constants.O_RDWR); // open, never read: its 64 KiB buffer fills
    const stderr = openSync(logPipe, constants.O_WRONLY);
    const child = spawn(process.execPath, [CLI, 'start', '--socket', socket, '--http', '', '--flush-interval', '10', '--shutdown-timeout', '2000', '--log-level', 'debug'], {
      env: { PATH: process.env.PATH, ...KEYS, LANGFUSE_HOST: fake.url },
      stdio: ['ignore', 'ignore', stderr],
    });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    try {
      // Its stderr is not read, so no startup line: wait until a connection is accepted. The file
      // alone is not enough: it appears at bind(), a moment before listen(), and a send in between
      // was refused (ECONNREFUSED, 1 run in 10 under load). Up to 20 s, as startDaemonProcess
      // allows: a daemon takes seconds to start on a loaded machine (1-1.5 s here with the suite
      // and a CPU burner running; this waited 10 s).
      const accepts = () =>
        new Promise<boolean>((resolve) => {
          const probe = connect(socket);
          probe.once('connect', () => (probe.destroy(), resolve(true)));
          probe.once('error', () => resolve(false));
        });
      for (const end = Date.now() + 20_000; !(readdirSync(tmp.dir).includes('d.sock') && (await accepts())); await delay(25)) {
        assert.ok(child.exitCode === null && Date.now() < end, `the daemon listens on ${socket} (exit code ${child.exitCode})`);
      }
      // At debug level each invalid record is a line: ~2 MB of log lines, far past the pipe's buffer.
      await sendOverSocket(socket, [...lines(5), ...Array.from({ length: 10_000 }, () => '{"v":1,"type":"span"}')]);
      await fake.waitForSpans(5);
      child.kill('SIGTERM');
      const exit = await Promise.race([exited, delay(20_000, 'still running' as const, { ref: false })]);
      // pino wrote its waiting lines synchronously at exit, blocked on the full pipe for good.
      assert.deepEqual(exit, { code: 0, signal: null });
    } finally {
      // A failed step must not leave the daemon running (nor this file waiting on it).
      child.kill('SIGKILL');
      closeSync(stderr);
      closeSync(held);
    }
  });

  test('a spool write still going when the shutdown gives up keeps the dir locked: a daemon started meanwhile is refused, not replaying the .tmp', async (t) => {
    if (process.platform !== 'linux') return t.skip('the hung disk is simulated through /proc/self/fd');
    fake = await startFakeLangfuse({ publicKey: KEYS.LANGFUSE_PUBLIC_KEY, secretKey: KEYS.LANGFUSE_SECRET_KEY });
    fake.mode({ status: 503 });
    const spool = join(tmp.dir, 'spool');
    const disk = join(tmp.dir, 'disk.fifo');
    execFileSync('mkfifo', [disk]);
    const env = { ...KEYS, LANGFUSE_HOST: fake.url };
    // --shutdown-timeout 2000 keeps 400 ms (+ 250 grace) for the spool: time enough to reach its
    // first write, where the disk hangs, before the shutdown gives up on it, even under load.
    const d = (daemon = await startDaemonProcess(
      ['--socket', socket, '--http', '127.0.0.1:0', '--flush-interval', '10', '--shutdown-timeout', '2000', '--spool-dir', spool],
      { ...env, DSPY_TEST_HANG_FIFO: disk },
      socket,
      ['--import', HUNG_SPOOL_WRITE],
    ));
    let diskBack = false;
    const bringDiskBack = () => {
      if (diskBack) return;
      diskBack = true;
      closeSync(openSync(disk, constants.O_RDONLY | constants.O_NONBLOCK)); // the blocked open returns
    };
    let second: DaemonProcess | undefined;
    try {
      await sendOverSocket(socket, lines(50));
      await d.eventually(async () => assert.equal((await d.status()).spans.received, 50));
      d.child.kill('SIGTERM');
      await d.waitForLog((l) => l.msg === 'dspy-o11yd stopped');
      assert.ok(d.logs.some((l) => /could not write the spool/.test(l.msg)), 'the shutdown gave up on the spool write');
      // All 50 were in the write the disk had not finished: neither surely kept nor surely lost.
      const stopped = d.logs.find((l) => l.msg === 'dspy-o11yd stopped') as { dropped: Record<string, number>; spooled: number; spoolUnfinished?: number } | undefined;
      assert.deepEqual([stopped?.dropped.shutdown ?? 0, stopped?.spooled, stopped?.spoolUnfinished], [0, 0, 50]);
      // Its write is stuck in the kernel, and so is its exit: the process is still there.
      assert.equal(d.child.exitCode, null);
      const [tmpName, ...more] = readdirSync(spool).filter((f) => f.endsWith('.tmp'));
      assert.ok(tmpName && more.length === 0, readdirSync(spool).join(', '));
      const written = readFileSync(join(spool, tmpName));

      const next = await startDaemonProcess(['--socket', join(tmp.dir, 'second.sock'), '--http', '', '--spool-dir', spool], env).then(
        (started) => started,
        (err: Error) => err,
      );
      if (!(next instanceof Error)) {
        second = next;
        assert.fail(`a second daemon took the spool dir while the first was still writing it: ${next.stderr}`);
      }
      assert.match(next.message, new RegExp(`daemon exited \\(1\\).*another dspy-o11yd \\(pid ${d.child.pid}\\) uses the spool dir`, 's'));
      assert.deepEqual(readFileSync(join(spool, tmpName)), written, 'the .tmp is left to its writer');

      // The disk comes back: the write ends with the process, which leaves a stale lock and the
      // .tmp, taken at the next start like any write cut short.
      bringDiskBack();
      assert.deepEqual(await exitOrHang(d), { code: 0, signal: null });
      fake.mode(null);
      const spans = written.toString().split('\n').filter((l) => l.includes('"span"')).length;
      assert.ok(spans > 0 && spans < 50, `${spans} spans written before the disk hung`);
      second = await startDaemonProcess(['--socket', join(tmp.dir, 'second.sock'), '--http', '127.0.0.1:0', '--flush-interval', '10', '--spool-dir', spool], env);
      await fake.waitForSpans(spans);
      assert.equal(new Set(fake.spans.map((s) => s.spanId)).size, spans);
      // No span both counted as dropped and replayed.
      assert.ok((stopped?.dropped.shutdown ?? 0) + spans <= 50);
      assert.ok(second.logs.some((l) => /temporary files left by a write cut short/.test(l.msg) && (l as { recovered?: number }).recovered === 1));
    } finally {
      bringDiskBack();
      await second?.stop('SIGKILL');
    }
  });
});

describe('file exporter when the disk refuses part of a write', () => {
  test('a short write is cut off: the file only ever holds whole lines', async (t) => {
    if (process.platform !== 'linux') return t.skip('uses RLIMIT_FSIZE through sh ulimit');
    const tmp = tempDir();
    const socket = join(tmp.dir, 'd.sock');
    const out = join(tmp.dir, 'out.jsonl');
    // File size limit 1 KiB (sh counts 512-byte blocks): a batch that crosses it is written in
    // part, then the write fails (EFBIG), like a disk filling up. No retries: a retry's own
    // partial write (cut back in turn) must not be what the file is read in the middle of.
    const child = spawn('sh', ['-c', 'ulimit -f 2 && exec "$0" "$@"', process.execPath, CLI, 'start', '--socket', socket, '--http', '127.0.0.1:0', '--exporter', 'file', '--file', out, '--flush-interval', '10', '--max-retries', '0'], {
      env: { PATH: process.env.PATH },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const d = new DaemonProcess(child, socket);
    try {
      // 20 s, as startDaemonProcess allows a start on a loaded machine (the default is 10 s).
      d.httpUrl = String((await d.waitForLog((l) => /listening on/.test(l.msg), 20_000)).http);
      await sendOverSocket(socket, lines(1));
      await d.eventually(async () => assert.equal((await d.status()).spans.exported, 1));
      await sendOverSocket(socket, lines(20));
      await d.eventually(async () => assert.equal((await d.status()).spans.dropped.retries_exhausted, 20));
      assert.match((await d.status()).exporter.lastError ?? '', /EFBIG/);
      const content = readFileSync(out, 'utf8');
      assert.ok(content.endsWith('\n'), 'no torn line at the end');
      assert.equal(content.split('\n').filter(Boolean).map((l) => JSON.parse(l) as unknown).length, 1);
    } finally {
      await d.stop('SIGKILL');
      tmp.cleanup();
    }
  });
});

describe('spool when the disk fills up', () => {
  test('a spool write the disk takes only in part keeps whole lines, and counts the rest as dropped', async (t) => {
    if (process.platform !== 'linux') return t.skip('uses RLIMIT_FSIZE through sh ulimit');
    const tmp = tempDir();
    const socket = join(tmp.dir, 'd.sock');
    const spool = join(tmp.dir, 'spool');
    const fake = await startFakeLangfuse({ publicKey: KEYS.LANGFUSE_PUBLIC_KEY, secretKey: KEYS.LANGFUSE_SECRET_KEY });
    fake.mode({ status: 503 });
    // File size limit 2 KiB (sh counts 512-byte blocks), like a disk that fills up: a spool of 30
    // spans (~6 KB, one chunk) is taken only in part, and the write call says so without an error.
    const child = spawn('sh', ['-c', 'ulimit -f 4 && exec "$0" "$@"', process.execPath, CLI, 'start', '--socket', socket, '--http', '127.0.0.1:0', '--flush-interval', '10', '--shutdown-timeout', '500', '--spool-dir', spool], {
      env: { PATH: process.env.PATH, ...KEYS, LANGFUSE_HOST: fake.url },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const d = new DaemonProcess(child, socket);
    try {
      d.httpUrl = String((await d.waitForLog((l) => /listening on/.test(l.msg), 20_000)).http);
      await sendOverSocket(socket, lines(30));
      await d.eventually(async () => assert.equal((await d.status()).spans.received, 30));
      child.kill('SIGTERM');
      assert.deepEqual(await exitOrHang(d), { code: 0, signal: null });
      const content = readdirSync(spool).filter((f) => !f.startsWith('.')).map((f) => readFileSync(join(spool, f), 'utf8')).join('');
      assert.ok(content.endsWith('\n'), 'no torn line at the end of the spool');
      const kept = content.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { type: string }).filter((r) => r.type === 'span').length;
      assert.ok(kept > 0 && kept < 30, `${kept} spans kept`);
      const stopped = d.logs.find((l) => l.msg === 'dspy-o11yd stopped') as { dropped: Record<string, number> } | undefined;
      assert.equal(stopped?.dropped.shutdown, 30 - kept, 'what the disk did not take is counted as dropped');
    } finally {
      await d.stop('SIGKILL');
      await fake.close();
      tmp.cleanup();
    }
  });

  test('a disk full at a chunk boundary (ENOSPC): the chunks it took are replayed, and only the rest is counted as dropped', async (t) => {
    if (process.platform !== 'linux') return t.skip('the full disk is simulated through /proc/self/fd');
    const tmp = tempDir();
    const socket = join(tmp.dir, 'd.sock');
    const spool = join(tmp.dir, 'spool');
    const fake = await startFakeLangfuse({ publicKey: KEYS.LANGFUSE_PUBLIC_KEY, secretKey: KEYS.LANGFUSE_SECRET_KEY });
    fake.mode({ status: 503 });
    const env = { ...KEYS, LANGFUSE_HOST: fake.url };
    // ~600 bytes a span: 3000 of them are two spool chunks (1 MiB each), the second refused.
    const total = 3000;
    const padded = Array.from({ length: total }, (_, i) => spanLine(i).replace('"name"', `"attributes":{"pad":"${'p'.repeat(500)}"},"name"`));
    const d = await startDaemonProcess(
      ['--socket', socket, '--http', '127.0.0.1:0', '--flush-interval', '10', '--shutdown-timeout', '3000', '--spool-dir', spool],
      { ...env, DSPY_TEST_SPOOL_ENOSPC: '1' },
      socket,
      ['--import', ENOSPC_SPOOL_WRITE],
    );
    let second: DaemonProcess | undefined;
    try {
      await sendOverSocket(socket, padded);
      await d.eventually(async () => assert.equal((await d.status()).spans.received, total));
      d.child.kill('SIGTERM');
      assert.deepEqual(await exitOrHang(d), { code: 0, signal: null });
      assert.match(d.stderr, /ENOSPC/, 'the disk refused a write');
      const stopped = d.logs.find((l) => l.msg === 'dspy-o11yd stopped') as { dropped: Record<string, number> } | undefined;
      const dropped = stopped?.dropped.shutdown ?? 0;
      fake.mode(null);
      second = await startDaemonProcess(['--socket', join(tmp.dir, 'second.sock'), '--http', '127.0.0.1:0', '--flush-interval', '10', '--spool-dir', spool], env);
      // The replay is queued before the daemon listens: all of it is received already.
      const replayed = (await second.status()).spans.received;
      assert.ok(replayed > 0, 'the chunk the disk took is replayed');
      assert.equal(dropped + replayed, total, `each span dropped or replayed, never both (dropped ${dropped}, replayed ${replayed})`);
      await fake.waitForSpans(replayed);
    } finally {
      await d.stop('SIGKILL');
      await second?.stop('SIGKILL');
      await fake.close();
      tmp.cleanup();
    }
  });

  test('a new spool that holds the replayed spool but not all the rest: each span is replayed once at the next start', async (t) => {
    if (process.platform !== 'linux') return t.skip('the full disk is simulated through /proc/self/fd');
    const tmp = tempDir();
    const socket = join(tmp.dir, 'd.sock');
    const spool = join(tmp.dir, 'spool');
    mkdirSync(spool);
    // The last run's spool: 5 spans the backend has not taken yet.
    const old = Array.from({ length: 5 }, (_, i) => spanLine(i).replace(/"spanId":"[0-9a-f]+"/, `"spanId":"${'e'.repeat(15)}${i}"`));
    writeFileSync(join(spool, 'spool-1-1.ndjson'), [JSON.stringify({ v: 1, type: 'hello', resource: { 'service.name': 'old' } }), ...old, ''].join('\n'));
    const fake = await startFakeLangfuse({ publicKey: KEYS.LANGFUSE_PUBLIC_KEY, secretKey: KEYS.LANGFUSE_SECRET_KEY });
    fake.mode({ status: 503 });
    const env = { ...KEYS, LANGFUSE_HOST: fake.url };
    // Two spool chunks, the second refused (ENOSPC): the new spool holds the old 5 and part of the rest.
    const total = 3000;
    const padded = Array.from({ length: total }, (_, i) => spanLine(i).replace('"name"', `"attributes":{"pad":"${'p'.repeat(500)}"},"name"`));
    const d = await startDaemonProcess(
      ['--socket', socket, '--http', '127.0.0.1:0', '--flush-interval', '10', '--shutdown-timeout', '3000', '--spool-dir', spool],
      { ...env, DSPY_TEST_SPOOL_ENOSPC: '1' },
      socket,
      ['--import', ENOSPC_SPOOL_WRITE],
    );
    let second: DaemonProcess | undefined;
    try {
      await sendOverSocket(socket, padded);
      await d.eventually(async () => assert.equal((await d.status()).spans.received, total + old.length));
      d.child.kill('SIGTERM');
      assert.deepEqual(await exitOrHang(d), { code: 0, signal: null });
      const stopped = d.logs.find((l) => l.msg === 'dspy-o11yd stopped') as { dropped: Record<string, number>; spooled: number } | undefined;
      const dropped = stopped?.dropped.shutdown ?? 0;
      assert.ok(dropped > 0 && (stopped?.spooled ?? 0) > old.length, `part of the rest is kept (${JSON.stringify(stopped)})`);
      fake.mode(null);
      second = await startDaemonProcess(['--socket', join(tmp.dir, 'second.sock'), '--http', '127.0.0.1:0', '--flush-interval', '10', '--spool-dir', spool], env);
      const replayed = (await second.status()).spans.received;
      assert.equal(dropped + replayed, total + old.length, `each span dropped or replayed once (dropped ${dropped}, replayed ${replayed})`);
      await fake.waitForSpans(replayed);
    } finally {
      await d.stop('SIGKILL');
      await second?.stop('SIGKILL');
      await fake.close();
      tmp.cleanup();
    }
  });
});

describe('spool of a full queue', () => {
  test('the batch in flight at shutdown is spooled with a full queue, and the replay drops none of it', async () => {
    const tmp = tempDir();
    const socket = join(tmp.dir, 'd.sock');
    const spool = join(tmp.dir, 'spool');
    const fake = await startFakeLangfuse({ publicKey: KEYS.LANGFUSE_PUBLIC_KEY, secretKey: KEYS.LANGFUSE_SECRET_KEY });
    fake.mode({ status: 503 });
    const env = { ...KEYS, LANGFUSE_HOST: fake.url };
    const bounds = ['--queue-max-spans', '20', '--batch-max-spans', '5', '--flush-interval', '10', '--spool-dir', spool];
    const d = await startDaemonProcess(['--socket', socket, '--http', '127.0.0.1:0', '--shutdown-timeout', '1000', ...bounds], env, socket);
    let next: DaemonProcess | undefined;
    try {
      const all = lines(40);
      // A batch waits for its retry (503)…
      await sendOverSocket(socket, all.slice(0, 10));
      await d.eventually(async () => assert.equal((await d.status()).exporter.state, 'backoff'));
      // …while the queue fills up: 20 queued, the oldest dropped.
      await sendOverSocket(socket, all.slice(10));
      await d.eventually(async () => {
        const s = await d.status();
        assert.equal(s.spans.received, 40);
        assert.equal(s.spans.queued, 20, JSON.stringify(s.spans));
        assert.ok(s.spans.inFlight > 0);
      });
      d.child.kill('SIGTERM');
      assert.deepEqual(await exitOrHang(d), { code: 0, signal: null });
      const kept = spooledSpans(spool);
      assert.ok(kept > 20, `${kept} spans spooled: the queue and the batch in flight`);
      fake.mode(null);
      next = await startDaemonProcess(['--socket', join(tmp.dir, 'next.sock'), '--http', '127.0.0.1:0', ...bounds], env);
      const s = await next.status();
      assert.equal(s.spans.received, kept);
      assert.equal(s.spans.dropped.queue_overflow ?? 0, 0, 'what the bounds held at shutdown is not dropped at the replay');
      await fake.waitForSpans(kept);
    } finally {
      await d.stop('SIGKILL');
      await next?.stop('SIGKILL');
      await fake.close();
      tmp.cleanup();
    }
  });
});
