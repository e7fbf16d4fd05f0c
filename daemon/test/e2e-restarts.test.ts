/**
 * Several restarts of one daemon on one spool dir, with a disk that misbehaves at a shutdown
 * during a replay: every span is replayed at most once, and each run's last line adds up.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { closeSync, constants, mkdirSync, openSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { setTimeout as delay } from 'node:timers/promises';
import { startFakeLangfuse } from './support/fake-langfuse.js';
import { sendOverSocket, startDaemonProcess, tempDir, type DaemonProcess } from './support/daemon-process.js';

const HUNG_SPOOL_WRITE = fileURLToPath(new URL('./support/hung-spool-write.js', import.meta.url));
const HUNG_SPOOL_READ = fileURLToPath(new URL('./support/hung-spool-read.js', import.meta.url));
const EIO_SPOOL_READ = fileURLToPath(new URL('./support/eio-spool-read.js', import.meta.url));
const UNLINK_FAILS = fileURLToPath(new URL('./support/unlink-fails.js', import.meta.url));
const KEYS = { LANGFUSE_PUBLIC_KEY: 'pk-lf-restart', LANGFUSE_SECRET_KEY: 'sk-lf-restart' };
const spanLine = (id: string) =>
  JSON.stringify({ v: 1, type: 'span', traceId: '7'.repeat(32), spanId: id, name: `s${id}`, startTimeUnixNano: '1732700000000000000', endTimeUnixNano: '1732700000000000001' });
const exitOrHang = (d: DaemonProcess) => Promise.race([d.exited, delay(20_000, 'still running' as const, { ref: false })]);

interface Stopped {
  received: number;
  exported: number;
  dropped: Record<string, number>;
  spooled?: number;
  spoolUnfinished?: number;
}

describe('restarts on one spool dir', () => {
  for (const hangOnly of [undefined, 'spool'] as const) {
    test(`a disk that hangs while a replayed spool is spooled again (${hangOnly ? 'in the new records\' write' : 'in the carried records\' write'}): no span is replayed twice at the next start`, async (t) => {
      if (process.platform !== 'linux') return t.skip('the hung disk is simulated through /proc/self/fd');
      const tmp = tempDir();
      const spool = join(tmp.dir, 'spool');
      mkdirSync(spool);
      // The first run's spool: 5 spans the backend has not taken yet.
      const old = Array.from({ length: 5 }, (_, i) => spanLine(`${'e'.repeat(15)}${i}`));
      writeFileSync(join(spool, 'spool-1-1.ndjson'), [JSON.stringify({ v: 1, type: 'hello', resource: { 'service.name': 'old' } }), ...old, ''].join('\n'));
      const disk = join(tmp.dir, 'disk.fifo');
      execFileSync('mkfifo', [disk]);
      const fake = await startFakeLangfuse({ publicKey: KEYS.LANGFUSE_PUBLIC_KEY, secretKey: KEYS.LANGFUSE_SECRET_KEY });
      fake.mode({ status: 503 });
      const env = { ...KEYS, LANGFUSE_HOST: fake.url };
      const socket = join(tmp.dir, 'd.sock');
      let diskBack = false;
      const bringDiskBack = () => {
        if (diskBack) return;
        diskBack = true;
        closeSync(openSync(disk, constants.O_RDONLY | constants.O_NONBLOCK));
      };
      let second: DaemonProcess | undefined;
      let third: DaemonProcess | undefined;
      try {
        // Second run: replays the 5, gets 50 more, and its shutdown's spool write hangs.
        second = await startDaemonProcess(
          ['--socket', socket, '--http', '127.0.0.1:0', '--flush-interval', '10', '--shutdown-timeout', '2000', '--spool-dir', spool],
          { ...env, DSPY_TEST_HANG_FIFO: disk, ...(hangOnly ? { DSPY_TEST_HANG_ONLY: hangOnly } : {}) },
          socket,
          ['--import', HUNG_SPOOL_WRITE],
        );
        await sendOverSocket(socket, Array.from({ length: 50 }, (_, i) => spanLine((i + 1).toString(16).padStart(16, '0'))));
        const s = second;
        await s.eventually(async () => assert.equal((await s.status()).spans.received, 55));
        second.child.kill('SIGTERM');
        const stopped = (await second.waitForLog((l) => l.msg === 'dspy-o11yd stopped')) as unknown as Stopped;
        const dropped = Object.values(stopped.dropped).reduce((a, b) => a + b, 0);
        assert.equal(stopped.received, stopped.exported + dropped + (stopped.spooled ?? 0) + (stopped.spoolUnfinished ?? 0), JSON.stringify(stopped));
        bringDiskBack();
        assert.deepEqual(await exitOrHang(second), { code: 0, signal: null });

        // Third run: the backend is back; what the spool dir holds is replayed, each span once.
        fake.mode(null);
        third = await startDaemonProcess(['--socket', join(tmp.dir, 'third.sock'), '--http', '127.0.0.1:0', '--flush-interval', '10', '--spool-dir', spool], env);
        const replayed = (await third.status()).spans.received;
        await fake.waitForSpans(replayed);
        const ids = fake.spans.map((sp) => sp.spanId);
        assert.equal(ids.length, new Set(ids).size, `${ids.length} spans replayed, ${new Set(ids).size} of them distinct`);
        for (const id of old.map((l) => (JSON.parse(l) as { spanId: string }).spanId)) assert.ok(ids.includes(id), `old span ${id} kept`);
      } finally {
        bringDiskBack();
        await second?.stop('SIGKILL');
        await third?.stop('SIGKILL');
        await fake.close();
        tmp.cleanup();
      }
    });
  }

  test('a disk that will not remove the replayed files once their records are carried: the spool dir holds each span once', async () => {
    const tmp = tempDir();
    const spool = join(tmp.dir, 'spool');
    mkdirSync(spool);
    const old = Array.from({ length: 5 }, (_, i) => spanLine(`${'f'.repeat(15)}${i}`));
    writeFileSync(join(spool, 'spool-1-1.ndjson'), [JSON.stringify({ v: 1, type: 'hello', resource: { 'service.name': 'old' } }), ...old, ''].join('\n'));
    const fake = await startFakeLangfuse({ publicKey: KEYS.LANGFUSE_PUBLIC_KEY, secretKey: KEYS.LANGFUSE_SECRET_KEY });
    fake.mode({ status: 503 });
    let d: DaemonProcess | undefined;
    try {
      const socket = join(tmp.dir, 'd.sock');
      d = await startDaemonProcess(['--socket', socket, '--http', '127.0.0.1:0', '--flush-interval', '10', '--shutdown-timeout', '1000', '--spool-dir', spool], { ...KEYS, LANGFUSE_HOST: fake.url }, socket, ['--import', UNLINK_FAILS]);
      const running = d;
      await running.eventually(async () => assert.equal((await running.status()).spans.received, 5));
      d.child.kill('SIGTERM');
      assert.deepEqual(await exitOrHang(d), { code: 0, signal: null });
      d = undefined;
      // What the next start would replay: every span line of the spool dir's files.
      const ids = readdirSync(spool)
        .filter((n) => n.endsWith('.ndjson'))
        .flatMap((n) => readFileSync(join(spool, n), 'utf8').split('\n'))
        .filter((l) => l.includes('"type":"span"'))
        .map((l) => (JSON.parse(l) as { spanId: string }).spanId);
      assert.deepEqual(ids.sort(), old.map((l) => (JSON.parse(l) as { spanId: string }).spanId).sort(), readdirSync(spool).join(' '));
    } finally {
      await d?.stop('SIGKILL');
      await fake.close();
      tmp.cleanup();
    }
  });

  test('replayed spool files the disk will not remove once delivered: a warning names them, no line says they are removed', async () => {
    const tmp = tempDir();
    const spool = join(tmp.dir, 'spool');
    mkdirSync(spool);
    writeFileSync(join(spool, 'spool-1-1.ndjson'), [JSON.stringify({ v: 1, type: 'hello', resource: { 'service.name': 'old' } }), spanLine('d'.repeat(16)), ''].join('\n'));
    const fake = await startFakeLangfuse({ publicKey: KEYS.LANGFUSE_PUBLIC_KEY, secretKey: KEYS.LANGFUSE_SECRET_KEY });
    let d: DaemonProcess | undefined;
    try {
      const socket = join(tmp.dir, 'd.sock');
      d = await startDaemonProcess(['--socket', socket, '--http', '127.0.0.1:0', '--flush-interval', '10', '--spool-dir', spool], { ...KEYS, LANGFUSE_HOST: fake.url }, socket, ['--import', UNLINK_FAILS]);
      await fake.waitForSpans(1);
      const warning = await d.waitForLog((l) => /spool/.test(l.msg) && /not removed|could not remove/.test(l.msg));
      assert.deepEqual(warning.files, [join(spool, 'spool-1-1.ndjson')]);
      assert.ok(!d.logs.some((l) => /its files are removed/.test(l.msg)));
    } finally {
      await d?.stop('SIGKILL');
      await fake.close();
      tmp.cleanup();
    }
  });

  test('three shutdowns with the backend down, each during the last one\'s replay: the fourth run delivers every span once', async () => {
    const tmp = tempDir();
    const spool = join(tmp.dir, 'spool');
    const fake = await startFakeLangfuse({ publicKey: KEYS.LANGFUSE_PUBLIC_KEY, secretKey: KEYS.LANGFUSE_SECRET_KEY });
    fake.mode({ status: 503 });
    const env = { ...KEYS, LANGFUSE_HOST: fake.url };
    let d: DaemonProcess | undefined;
    try {
      let kept = 0;
      for (const run of ['a', 'b', 'c']) {
        const socket = join(tmp.dir, `${run}.sock`);
        d = await startDaemonProcess(['--socket', socket, '--http', '127.0.0.1:0', '--flush-interval', '10', '--shutdown-timeout', '1000', '--spool-dir', spool], env, socket);
        const running = d;
        await sendOverSocket(socket, Array.from({ length: 20 }, (_, i) => spanLine(`${run.repeat(14)}${i.toString(16).padStart(2, '0')}`)));
        await running.eventually(async () => assert.equal((await running.status()).spans.received, kept + 20));
        d.child.kill('SIGTERM');
        assert.deepEqual(await exitOrHang(d), { code: 0, signal: null });
        const stopped = d.logs.find((l) => l.msg === 'dspy-o11yd stopped') as unknown as Stopped;
        const dropped = Object.values(stopped.dropped).reduce((a, b) => a + b, 0);
        assert.deepEqual([stopped.received, stopped.exported, dropped, stopped.spooled], [kept + 20, 0, 0, kept + 20], `run ${run}`);
        kept += 20;
        d = undefined;
      }
      fake.mode(null);
      d = await startDaemonProcess(['--socket', join(tmp.dir, 'd.sock'), '--http', '127.0.0.1:0', '--flush-interval', '10', '--spool-dir', spool], env);
      assert.equal((await d.status()).spans.received, 60);
      await fake.waitForSpans(60);
      const ids = fake.spans.map((sp) => sp.spanId);
      assert.deepEqual([ids.length, new Set(ids).size], [60, 60]);
    } finally {
      await d?.stop('SIGKILL');
      await fake.close();
      tmp.cleanup();
    }
  });

  test('a read error partway through a spool file: the next start replays only what was not read, under its resource', async (t) => {
    if (process.platform !== 'linux') return t.skip('the flaky disk is simulated through /proc/self/fd');
    const tmp = tempDir();
    const spool = join(tmp.dir, 'spool');
    mkdirSync(spool);
    // ~3 MB: the replay reads it in 1 MiB chunks, and the disk fails the second read. The resource
    // changes within the first chunk: what follows the failed read is still 'b''s.
    const pad = { pad: 'x'.repeat(2000) };
    const span = (i: number) => JSON.stringify({ ...(JSON.parse(spanLine(i.toString(16).padStart(16, '0'))) as object), attributes: pad });
    const hello = (service: string) => JSON.stringify({ v: 1, type: 'hello', resource: { 'service.name': service } });
    const total = 1500;
    const lines = [hello('a'), ...Array.from({ length: 100 }, (_, i) => span(i + 1)), hello('b'), ...Array.from({ length: total - 100 }, (_, i) => span(i + 101)), ''];
    writeFileSync(join(spool, 'spool-1-1.ndjson'), lines.join('\n'));
    const fake = await startFakeLangfuse({ publicKey: KEYS.LANGFUSE_PUBLIC_KEY, secretKey: KEYS.LANGFUSE_SECRET_KEY });
    const env = { ...KEYS, LANGFUSE_HOST: fake.url };
    let d: DaemonProcess | undefined;
    try {
      d = await startDaemonProcess(['--socket', join(tmp.dir, 'a.sock'), '--http', '127.0.0.1:0', '--flush-interval', '10', '--spool-dir', spool], { ...env, DSPY_TEST_SPOOL_READ_EIO: '1' }, undefined, ['--import', EIO_SPOOL_READ]);
      const firstPart = (await d.status()).spans.received;
      assert.ok(firstPart > 100 && firstPart < total, `${firstPart} spans read before the read error`);
      await fake.waitForSpans(firstPart);
      // Its log says the file stays for its unread rest (not that it was removed).
      const left = await d.waitForLog((l) => typeof l.msg === 'string' && l.msg.startsWith('the replayed spool has left the daemon'));
      assert.equal(left.readInPart, 1, String(left.msg));
      d.child.kill('SIGTERM');
      assert.deepEqual(await exitOrHang(d), { code: 0, signal: null });
      d = undefined;

      // The disk reads again: the next start takes the rest of the file, not its first part again.
      d = await startDaemonProcess(['--socket', join(tmp.dir, 'b.sock'), '--http', '127.0.0.1:0', '--flush-interval', '10', '--spool-dir', spool], env);
      assert.equal((await d.status()).spans.received, total - firstPart);
      await fake.waitForSpans(total);
      const ids = fake.spans.map((sp) => sp.spanId);
      assert.deepEqual([ids.length, new Set(ids).size], [total, total]);
      for (const sp of fake.spans) assert.equal(sp.resource['service.name'], Number.parseInt(sp.spanId, 16) <= 100 ? 'a' : 'b', sp.spanId);
    } finally {
      await d?.stop('SIGKILL');
      await fake.close();
      tmp.cleanup();
    }
  });

  test('a disk that hangs under the replay at start: the daemon listens all the same, and the next start replays the spool once', async (t) => {
    if (process.platform !== 'linux') return t.skip('the hung disk is simulated through /proc/self/fd');
    const tmp = tempDir();
    const spool = join(tmp.dir, 'spool');
    mkdirSync(spool);
    const spans = Array.from({ length: 20 }, (_, i) => spanLine(`${'d'.repeat(14)}${i.toString(16).padStart(2, '0')}`));
    writeFileSync(join(spool, 'spool-1-1.ndjson'), [JSON.stringify({ v: 1, type: 'hello', resource: { 'service.name': 'old' } }), ...spans, ''].join('\n'));
    const disk = join(tmp.dir, 'disk.fifo');
    execFileSync('mkfifo', [disk]);
    let diskBack = false;
    const bringDiskBack = () => {
      if (diskBack) return;
      diskBack = true;
      closeSync(openSync(disk, constants.O_RDONLY | constants.O_NONBLOCK));
    };
    const fake = await startFakeLangfuse({ publicKey: KEYS.LANGFUSE_PUBLIC_KEY, secretKey: KEYS.LANGFUSE_SECRET_KEY });
    const env = { ...KEYS, LANGFUSE_HOST: fake.url };
    let d: DaemonProcess | undefined;
    try {
      const socket = join(tmp.dir, 'a.sock');
      d = await startDaemonProcess(['--socket', socket, '--http', '127.0.0.1:0', '--flush-interval', '10', '--spool-dir', spool], { ...env, DSPY_TEST_HANG_READ_FIFO: disk }, socket, ['--import', HUNG_SPOOL_READ]);
      assert.ok(d.logs.some((l) => l.level === 40 && /spool/.test(l.msg) && /hang|answer/.test(l.msg)), 'a warning names the hung spool');
      // The apps' spans are taken meanwhile.
      await sendOverSocket(socket, [spanLine('f'.repeat(16))]);
      await fake.waitForSpans(1);
      // The disk comes back: what the hung read returns now is not replayed by this run.
      bringDiskBack();
      d.child.kill('SIGTERM');
      assert.deepEqual(await exitOrHang(d), { code: 0, signal: null });
      d = undefined;

      d = await startDaemonProcess(['--socket', join(tmp.dir, 'b.sock'), '--http', '127.0.0.1:0', '--flush-interval', '10', '--spool-dir', spool], env);
      assert.equal((await d.status()).spans.received, 20);
      await fake.waitForSpans(21);
      const ids = fake.spans.map((sp) => sp.spanId);
      assert.deepEqual([ids.length, new Set(ids).size], [21, 21]);
    } finally {
      bringDiskBack();
      await d?.stop('SIGKILL');
      await fake.close();
      tmp.cleanup();
    }
  });
});
