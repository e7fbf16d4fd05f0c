/**
 * Connection caps: --max-connections on the Unix socket (a client that leaks connections must not
 * run the daemon out of descriptors), and the cap on /v1/tail readers.
 */
import { afterEach, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { MAX_TAIL_READERS } from '../src/ops/routes.js';
import { startFakeLangfuse, type FakeLangfuse } from './support/fake-langfuse.js';
import { CLI, runCli, startDaemonProcess, tempDir, type DaemonProcess, type DaemonStatusJson } from './support/daemon-process.js';

const KEYS = { LANGFUSE_PUBLIC_KEY: 'pk-lf-conn', LANGFUSE_SECRET_KEY: 'sk-lf-conn' };
const spanLine = (i: number, name: string) =>
  JSON.stringify({ v: 1, type: 'span', traceId: 'c'.repeat(32), spanId: (i + 1).toString(16).padStart(16, '0'), name, startTimeUnixNano: '1732700000000000000', endTimeUnixNano: '1732700000000000001' }) + '\n';

/** `p`, or a failure naming `what` after a generous `ms` (a loaded machine is slow, never this slow). */
function within<T>(p: Promise<T>, what: string, ms = 20_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)));
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** Status `connections` without the HTTP connections open now: the client's keep-alive pool decides those. */
const capsOf = ({ http, ...uds }: DaemonStatusJson['connections']) => ({ ...uds, http: { max: http.max, refused: http.refused } });

describe('connection caps', () => {
  let fake: FakeLangfuse;
  let daemon: DaemonProcess | undefined;
  let tmp: ReturnType<typeof tempDir>;
  let socket: string;
  const clients: Socket[] = [];

  /** A raw connection that stays open; `ended` is true once the daemon sent EOF (false if the connection failed instead). */
  const open = async (onConnect?: (c: Socket) => void) => {
    const c = connect(socket);
    clients.push(c);
    const ended = once(c, 'end').then(() => true, () => false);
    c.on('error', () => undefined);
    c.resume();
    await within(once(c, 'connect'), 'connect');
    onConnect?.(c);
    return { c, ended };
  };

  beforeEach(async () => {
    tmp = tempDir();
    socket = join(tmp.dir, 'd.sock');
    fake = await startFakeLangfuse({ publicKey: KEYS.LANGFUSE_PUBLIC_KEY, secretKey: KEYS.LANGFUSE_SECRET_KEY });
  });
  afterEach(async () => {
    clients.splice(0).forEach((c) => c.destroy());
    await daemon?.stop('SIGKILL');
    daemon = undefined;
    await fake.close();
    tmp.cleanup();
  });

  test('--max-connections 3: a 4th connection gets EOF at once (what it wrote first is still read), counted in the metric and status with one warning; the 3 deliver; once one closes, a new one is accepted', async () => {
    const d = (daemon = await startDaemonProcess(['--socket', socket, '--http', '127.0.0.1:0', '--max-connections', '3', '--flush-interval', '20'], { ...KEYS, LANGFUSE_HOST: fake.url }, socket));
    const held = [await open(), await open(), await open()];
    await d.eventually(async () => assert.equal((await d.status()).connections.open, 3), 20_000);

    // The 4th writes a record as soon as it is connected, as the SDK does, before it can see the EOF.
    const fourth = await open((c) => c.write(spanLine(100, 'written-before-eof')));
    assert.equal(await within(fourth.ended, 'EOF to the 4th connection'), true, 'EOF, not a reset');
    await within(once(fourth.c, 'close'), 'the 4th connection closed');
    await d.eventually(async () => assert.equal(await d.metric('dspy_o11yd_connections_refused_total', { transport: 'uds' }), 1), 20_000);
    assert.deepEqual(capsOf((await d.status()).connections), { open: 3, max: 3, refused: 1, http: { max: 256, refused: 0 } });
    assert.equal(await d.metric('dspy_o11yd_connections', { transport: 'uds' }), 3);
    const warning = await d.waitForLog((l) => /--max-connections \(3\)/.test(l.msg), 20_000);
    assert.equal(warning.level, 40);
    assert.equal(warning.maxConnections, 3);

    // The 3 held connections were left alone and still deliver; the refused one's record arrived too.
    held.forEach((h, i) => h.c.write(spanLine(i, `held-${i}`)));
    await fake.waitForSpans(4, 20_000);
    assert.deepEqual(fake.spans.map((s) => s.name).sort(), ['held-0', 'held-1', 'held-2', 'written-before-eof']);

    // One leaves: its slot is free again.
    held[0]!.c.end();
    await d.eventually(async () => assert.equal((await d.status()).connections.open, 2), 20_000);
    const fifth = await open((c) => c.write(spanLine(200, 'after-a-slot-freed')));
    await fake.waitForSpans(5, 20_000);
    // Refused or not is decided when a connection is accepted, before its record is read.
    assert.deepEqual(capsOf((await d.status()).connections), { open: 3, max: 3, refused: 1, http: { max: 256, refused: 0 } });
    assert.ok(!fifth.c.readableEnded, 'the 5th connection got no EOF');
    fifth.c.write(spanLine(201, 'still-open'));
    held[1]!.c.write(spanLine(202, 'still-open'));
    await fake.waitForSpans(7, 20_000);
    assert.equal((await d.status()).connections.refused, 1);
  });

  test('--http-max-connections 2: a 3rd HTTP connection is closed unanswered, counted under transport http with a warning naming the flag; once one closes, requests are served again', async () => {
    const d = (daemon = await startDaemonProcess(['--socket', '', '--http', '127.0.0.1:0', '--exporter', 'console', '--http-max-connections', '2'], {}));
    const { hostname, port } = new URL(d.httpUrl);
    /** A raw TCP connection to the HTTP listener, and everything it receives until it closes. */
    const tcp = async () => {
      const c = connect(Number(port), hostname);
      clients.push(c);
      let received = '';
      c.setEncoding('utf8').on('data', (chunk: string) => (received += chunk));
      c.on('error', () => undefined);
      // A reset or an EOF, either way closed ('close' comes after 'error', which once() would reject on).
      const closed = new Promise<string>((resolve) => c.once('close', () => resolve(received)));
      await within(once(c, 'connect'), 'connect');
      return { c, closed };
    };
    // Two that send nothing (a leaking client, or a slow-loris one) hold both slots.
    const held = [await tcp(), await tcp()];
    const third = await tcp();
    third.c.write(`GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
    assert.equal(await within(third.closed, 'the 3rd connection closed'), '', 'closed without an answer');
    held.forEach((h) => h.c.destroy());
    await d.eventually(async () => assert.equal((await fetch(`${d.httpUrl}/healthz`)).status, 200), 20_000);
    // /v1/status shows the HTTP listener's own connections and refusals, apart from the socket's.
    const http = (await d.status()).connections.http;
    assert.equal(http?.max, 2);
    assert.ok(http.refused >= 1 && http.open >= 1, JSON.stringify(http));
    assert.equal((await d.status()).connections.refused, 0);
    // At least the 3rd: a request above may have come before the daemon saw the two close.
    assert.ok((await d.metric('dspy_o11yd_connections_refused_total', { transport: 'http' })) >= 1);
    assert.equal(await d.metric('dspy_o11yd_connections_refused_total', { transport: 'uds' }), 0);
    const warning = await d.waitForLog((l) => /--http-max-connections \(2\)/.test(l.msg), 20_000);
    assert.equal(warning.level, 40);
  });

  test('/metrics has connections{transport="http"}: the HTTP connections open now, as /v1/status shows them', async () => {
    const d = (daemon = await startDaemonProcess(['--socket', '', '--http', '127.0.0.1:0', '--exporter', 'console'], {}));
    const { hostname, port } = new URL(d.httpUrl);
    for (let i = 0; i < 2; i++) {
      const c = connect(Number(port), hostname);
      clients.push(c);
      c.on('error', () => undefined);
      await within(once(c, 'connect'), 'connect');
    }
    const sample = (text: string) => /^dspy_o11yd_connections\{transport="http"\} (\d+)$/m.exec(text)?.[1];
    // The two held ones and the scrape's own (the client's keep-alive pool may add one).
    await d.eventually(async () => {
      const open = sample(await d.metrics());
      assert.ok(open !== undefined && Number(open) >= 3, `connections{transport="http"} is ${open}`);
    }, 20_000);
    assert.equal(await d.metric('dspy_o11yd_connections', { transport: 'uds' }), 0);
  });

  test('--max-connections 0 (here from its env twin) is no limit; the default is 512', async () => {
    const d = (daemon = await startDaemonProcess(['--socket', socket, '--http', '127.0.0.1:0', '--exporter', 'console'], { DSPY_O11YD_MAX_CONNECTIONS: '0' }, socket));
    const all = await Promise.all(Array.from({ length: 8 }, () => open()));
    await d.eventually(async () => assert.deepEqual(capsOf((await d.status()).connections), { open: 8, max: 0, refused: 0, http: { max: 256, refused: 0 } }), 20_000);
    assert.ok(all.every((a) => !a.c.readableEnded));
    await d.stop();
    const byDefault = (daemon = await startDaemonProcess(['--socket', socket, '--http', '127.0.0.1:0', '--exporter', 'console'], {}, socket));
    assert.equal((await byDefault.status()).connections.max, 512);
  });

  test(`/v1/tail takes ${MAX_TAIL_READERS} readers; the next gets 503 with a JSON error, and \`dspy-o11yd tail\` prints it on one line and exits 1`, { timeout: 120_000 }, async () => {
    const d = (daemon = await startDaemonProcess(['--socket', socket, '--http', '127.0.0.1:0', '--exporter', 'console'], {}, socket));
    const readers: Response[] = [];
    try {
      for (let i = 0; i < MAX_TAIL_READERS; i++) {
        const res = await fetch(`${d.httpUrl}/v1/tail`);
        assert.equal(res.status, 200, `reader ${i + 1}`);
        readers.push(res);
      }
      assert.deepEqual((await d.status()).tail, { readers: MAX_TAIL_READERS, max: MAX_TAIL_READERS });
      assert.equal(await d.metric('dspy_o11yd_tail_readers'), MAX_TAIL_READERS);
      const refused = await fetch(`${d.httpUrl}/v1/tail`);
      assert.equal(refused.status, 503);
      const body = (await refused.json()) as { error: string };
      assert.match(body.error, new RegExp(`too many /v1/tail readers: ${MAX_TAIL_READERS} connected, ${MAX_TAIL_READERS} at most`));

      const host = d.httpUrl.replace('http://', '');
      const cli = await runCli(['tail', '--http', host], {}, 20_000);
      assert.equal(cli.code, 1, cli.stderr);
      assert.equal(cli.stdout, '');
      const lines = cli.stderr.trim().split('\n');
      assert.equal(lines.length, 1, cli.stderr);
      assert.match(lines[0]!, /^dspy-o11yd: http:\/\/[^ ]+\/v1\/tail answered 503: too many \/v1\/tail readers: 16 connected, 16 at most/);

      // A reader that leaves frees its place: `tail` is served again.
      await readers.pop()!.body!.cancel();
      await d.eventually(async () => assert.equal((await d.status()).tail.readers, MAX_TAIL_READERS - 1), 20_000);
      const tail = spawn(process.execPath, [CLI, 'tail', '--http', host], { env: { PATH: process.env.PATH }, stdio: ['ignore', 'pipe', 'pipe'] });
      try {
        await d.eventually(async () => assert.equal((await d.status()).tail.readers, MAX_TAIL_READERS), 20_000);
        assert.equal(tail.exitCode, null, 'tail is reading');
      } finally {
        tail.kill();
      }
    } finally {
      await Promise.all(readers.map((r) => r.body?.cancel()));
    }
  });
});
