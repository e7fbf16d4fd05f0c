/** The CLI contract: bad config is one clear line and exit 2; start/status/tail/check behave. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawn, spawnSync } from 'node:child_process';
import { createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { VERSION } from '../src/version.js';
import { startFakeLangfuse } from './support/fake-langfuse.js';
import { CLI, postIngest, runCli, sendOverSocket, startDaemonProcess, tempDir } from './support/daemon-process.js';

const RENDEZVOUS = fileURLToPath(new URL('./support/stale-socket-rendezvous.js', import.meta.url));
const span = (id: string, name = 'cli') =>
  JSON.stringify({ v: 1, type: 'span', traceId: 'b'.repeat(32), spanId: id, name, startTimeUnixNano: '1732700000000000000', endTimeUnixNano: '1732700000000000005' });

/** Each case: the CLI exits 2 with one line on stderr matching the pattern. */
async function assertConfigErrors(cases: readonly [string[], Record<string, string>, RegExp][]): Promise<void> {
  for (const [args, env, pattern] of cases) {
    const r = await runCli(args, env);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, `one line for ${args.join(' ')}: ${r.stderr}`);
    assert.match(lines[0]!, pattern);
  }
}

describe('cli', () => {
  test('bad configuration: one line naming the flag, exit code 2', async () => {
    const cases: [string[], Record<string, string>, RegExp][] = [
      [['start', '--queue-max-spans', 'lots'], {}, /--queue-max-spans/],
      [['start', '--exporter', 'kafka'], {}, /--exporter/],
      [['start', '--http', '0.0.0.0:4318'], {}, /--ingest-token/],
      [['start', '--http', 'nonsense'], {}, /--http/],
      [['start'], { DSPY_O11YD_FLUSH_INTERVAL: '-5' }, /--flush-interval \(from DSPY_O11YD_FLUSH_INTERVAL\)/],
      [['start', '--exporter', 'langfuse'], {}, /LANGFUSE_PUBLIC_KEY/],
      [['start', '--no-such-flag'], {}, /unknown option/],
      // Langfuse's own variables are checked like ours: an environment Langfuse would refuse is a config error, not a silent rename.
      [['start'], { LANGFUSE_TRACING_ENVIRONMENT: 'Production' }, /--environment \(from LANGFUSE_TRACING_ENVIRONMENT\) "Production": must be 1 to 40 characters/],
      [['start', '--environment', 'langfuse-prod'], {}, /--environment "langfuse-prod": must not start with "langfuse"/],
      [['start'], { LANGFUSE_SAMPLE_RATE: '2' }, /--sample-ratio \(from LANGFUSE_SAMPLE_RATE\)/],
      // 0 is "no limit" (like --memory-limit and --partial-line-timeout); below it, or not a whole number, is an error.
      [['start', '--max-connections', '-1'], {}, /^dspy-o11yd: invalid --max-connections "-1": .*>=0/],
      [['start', '--max-connections', '2.5'], {}, /^dspy-o11yd: invalid --max-connections "2\.5": must be a whole number/],
      [['start', '--max-connections', '0x10'], {}, /^dspy-o11yd: invalid --max-connections "0x10": must be a whole number in decimal digits/],
      [['start', '--max-connections', 'lots'], {}, /^dspy-o11yd: invalid --max-connections "lots"/],
      [['start'], { DSPY_O11YD_MAX_CONNECTIONS: '-8' }, /^dspy-o11yd: invalid --max-connections \(from DSPY_O11YD_MAX_CONNECTIONS\) "-8"/],
    ];
    await assertConfigErrors(cases);
  });

  test('a time in ms longer than a timer can wait (2^31 - 1 ms, about 24.8 days) is a config error: Node would fire it after 1 ms', async () => {
    const check = ['check', '--socket', '', '--http', '127.0.0.1:0', '--exporter', 'console'];
    await assertConfigErrors([
      [[...check, '--export-timeout', '2147483648'], {}, /^dspy-o11yd: invalid --export-timeout "2147483648": must be at most 2147483647 ms/],
      [[...check, '--flush-interval', '3000000000'], {}, /^dspy-o11yd: invalid --flush-interval "3000000000": must be at most 2147483647 ms/],
      [[...check, '--partial-line-timeout', '2147483648'], {}, /^dspy-o11yd: invalid --partial-line-timeout "2147483648": must be at most 2147483647 ms/],
      [check, { DSPY_O11YD_SHUTDOWN_TIMEOUT: '99999999999' }, /^dspy-o11yd: invalid --shutdown-timeout \(from DSPY_O11YD_SHUTDOWN_TIMEOUT\) "99999999999": must be at most 2147483647 ms/],
      [['check', '--socket', '', '--http', '127.0.0.1:0', '--exporter', 'otlp', '--otlp-endpoint', 'http://127.0.0.1:9/v1/traces'], { OTEL_EXPORTER_OTLP_TIMEOUT: '2147483648' }, /^dspy-o11yd: invalid --export-timeout \(from OTEL_EXPORTER_OTLP_TIMEOUT\) "2147483648": must be at most/],
    ]);
    const longest = await runCli([...check, '--export-timeout', '2147483647', '--flush-interval', '2147483647', '--shutdown-timeout', '2147483647', '--partial-line-timeout', '2147483647']);
    assert.equal(longest.code, 0, longest.stderr);
  });

  test('--otlp-headers: an entry that is not name=value is a config error (not dropped, not a failing export), its text never shown', async () => {
    const otlp = ['start', '--socket', '', '--http', '127.0.0.1:0', '--exporter', 'otlp', '--otlp-endpoint', 'http://127.0.0.1:9/v1/traces'];
    await assertConfigErrors([
      [[...otlp, '--otlp-headers', 'Authorization: Bearer s3cret'], {}, /^dspy-o11yd: invalid --otlp-headers: entry 1 is not name=value/],
      [otlp, { OTEL_EXPORTER_OTLP_HEADERS: 'authorization=Bearer%20s3cret,s3cret' }, /^dspy-o11yd: invalid --otlp-headers \(from OTEL_EXPORTER_OTLP_HEADERS\): entry 2 /],
      [[...otlp, '--otlp-headers', 'x-key=s3cret%0d%0aX-Injected: 1'], {}, /^dspy-o11yd: invalid --otlp-headers: the value of entry 1 \(x-key\) holds a line break/],
      [['check', '--exporter', 'otlp', '--otlp-endpoint', 'http://127.0.0.1:9/v1/traces', '--otlp-headers', '=s3cret'], {}, /^dspy-o11yd: invalid --otlp-headers: entry 1/],
    ]);
    for (const headers of ['Authorization: Bearer s3cret', '=s3cret']) {
      const r = await runCli([...otlp, '--otlp-headers', headers]);
      assert.ok(!r.stderr.includes('s3cret'), r.stderr);
    }
    // Well-formed ones (a trailing comma, percent-encoded values) still start.
    const fake = await startFakeLangfuse({ publicKey: 'pk-h', secretKey: 'sk-h' });
    const ok = await runCli(['check', '--exporter', 'otlp', '--otlp-endpoint', `${fake.url}/api/public/otel/v1/traces`, '--otlp-headers', `authorization=${encodeURIComponent(fake.authorization)},x-team=blue,`]);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    await fake.close();
  });

  test('--otlp-headers: a header undici refuses to send (on every request, retried until dropped) is a config error at start naming it', async () => {
    const endpoint = ['--exporter', 'otlp', '--otlp-endpoint', 'http://127.0.0.1:9/v1/traces'];
    const check = ['check', ...endpoint];
    const refused = (entry: number, name: string) => new RegExp(`^dspy-o11yd: invalid --otlp-headers: entry ${entry} \\(${name}\\) is a header the HTTP client sets itself`);
    const closed = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const { port } = s.address() as AddressInfo;
        s.close(() => resolve(port));
      });
    });
    await assertConfigErrors([
      [check, { OTEL_EXPORTER_OTLP_HEADERS: 'authorization=Bearer%20s3cret,Keep-Alive=timeout%3D5' }, /^dspy-o11yd: invalid --otlp-headers \(from OTEL_EXPORTER_OTLP_HEADERS\): entry 2 \(keep-alive\) is a header/],
      [[...check, '--otlp-headers', 'upgrade=websocket'], {}, refused(1, 'upgrade')],
      [[...check, '--otlp-headers', 'x-a=1,expect=100-continue'], {}, refused(2, 'expect')],
      [[...check, '--otlp-headers', 'content-length=10'], {}, refused(1, 'content-length')],
      [[...check, '--otlp-headers', 'connection=keep alive'], {}, /^dspy-o11yd: invalid --otlp-headers: entry 1 \(connection\) must be a list of header names/],
      // Through a proxy undici takes Proxy-Authorization from the proxy's URL only (the proxy is never reached here).
      [['check', '--exporter', 'otlp', '--otlp-endpoint', 'http://collector.invalid:4318/v1/traces', '--otlp-headers', 'Proxy-Authorization=Bearer%20s3cret'], { HTTP_PROXY: `http://127.0.0.1:${closed}` }, /^dspy-o11yd: invalid --otlp-headers: entry 1 \(proxy-authorization\) cannot be sent through the proxy of HTTP_PROXY: put the proxy's credentials in its URL/],
      // start, as check: refused at start, not on every export.
      [['start', '--socket', '', '--http', '127.0.0.1:0', ...endpoint, '--otlp-headers', 'Transfer-Encoding=chunked'], {}, refused(1, 'transfer-encoding')],
    ]);
    // What undici does send: connection: close, and Proxy-Authorization to a destination reached directly (loopback).
    const fake = await startFakeLangfuse({ publicKey: 'pk-h', secretKey: 'sk-h' });
    try {
      const ok = await runCli(['check', '--exporter', 'otlp', '--otlp-endpoint', `${fake.url}/api/public/otel/v1/traces`, '--otlp-headers', `authorization=${encodeURIComponent(fake.authorization)},connection=close,proxy-authorization=x`], { HTTP_PROXY: `http://127.0.0.1:${closed}` });
      assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    } finally {
      await fake.close();
    }
  });

  test('an invalid URL with credentials in it (--otlp-endpoint, --langfuse-host): one line naming the flag, the credentials masked', async () => {
    const otlp = ['check', '--socket', '', '--exporter', 'otlp'];
    const keys = { LANGFUSE_PUBLIC_KEY: 'pk-u', LANGFUSE_SECRET_KEY: 'sk-u' };
    const cases: [string[], Record<string, string>, RegExp][] = [
      [otlp, { OTEL_EXPORTER_OTLP_ENDPOINT: 'grpc://user:s3cret@collector:4317' }, /^dspy-o11yd: invalid --otlp-endpoint \(from OTEL_EXPORTER_OTLP_ENDPOINT\) "grpc:\/\/\*\*\*@collector:4317": must be an http/],
      [[...otlp, '--otlp-endpoint', 'user:s3cret@collector:4318/v1/traces'], {}, /^dspy-o11yd: invalid --otlp-endpoint "\*\*\*@collector:4318\/v1\/traces": must be an http/],
      [['check', '--socket', '', '--langfuse-host', 'https://user:s3cret@[bad/'], keys, /^dspy-o11yd: invalid --langfuse-host "https:\/\/\*\*\*@\[bad\/": must be an http/],
    ];
    await assertConfigErrors(cases);
    for (const [args, env] of cases) assert.ok(!(await runCli(args, env)).stderr.includes('s3cret'));
    // Without credentials the value is shown as it was given.
    await assertConfigErrors([[[...otlp, '--otlp-endpoint', 'grpc://collector:4317'], {}, /^dspy-o11yd: invalid --otlp-endpoint "grpc:\/\/collector:4317": must be an http/]]);
  });

  test('start --help shows each default; the env twin still beats the default and the flag the env', async () => {
    const help = await runCli(['start', '--help']);
    assert.equal(help.code, 0);
    for (const [flag, def] of [['--socket', '/tmp/dspy-o11yd.sock'], ['--http', '127.0.0.1:4318'], ['--queue-max-spans', '200000'], ['--encoding', 'protobuf'], ['--log-level', 'info'], ['--max-connections', '512']]) {
      assert.match(help.stdout.replace(/\s+/g, ' '), new RegExp(`${flag} <value> .*?\\(default: ${def.replace(/\./g, '\\.')}\\)`), `${flag} shows its default`);
    }
    assert.match(help.stdout.replace(/\s+/g, ' '), /--ingest-token <value> bearer token required on HTTP ingest \(\/v1\/ingest, \/v1\/traces; Langfuse's OTLP path also takes the daemon's Langfuse keys\), \/v1\/status and \/v1\/tail/);
    // check takes start's options without listing them: its help says so.
    const checkHelp = await runCli(['check', '--help']);
    assert.equal(checkHelp.code, 0);
    assert.match(checkHelp.stdout, /same options and environment variables as `start`/);
    const fromEnv = await runCli(['start', '--socket', ''], { DSPY_O11YD_HTTP: 'env-value' });
    assert.equal(fromEnv.code, 2);
    assert.match(fromEnv.stderr, /invalid --http \(from DSPY_O11YD_HTTP\) "env-value"/);
    const fromFlag = await runCli(['start', '--socket', '', '--http', 'flag-value'], { DSPY_O11YD_HTTP: 'env-value' });
    assert.equal(fromFlag.code, 2);
    assert.match(fromFlag.stderr, /invalid --http "flag-value"/);
  });

  test('unusable --socket, --spool-dir and --file paths: one line naming the flag, exit code 2, nothing left behind', async () => {
    const tmp = tempDir();
    const { writeFileSync } = await import('node:fs');
    const aFile = join(tmp.dir, 'a-file');
    writeFileSync(aFile, '');
    const long = join(tmp.dir, 'x'.repeat(120) + '.sock');
    const cases: [string[], Record<string, string>, RegExp][] = [
      [['start', '--socket', long], {}, /^dspy-o11yd: invalid --socket ".*": \d+ bytes, longer than the 107/],
      [['start', '--socket', join(tmp.dir, 'missing', 'd.sock')], {}, /^dspy-o11yd: invalid --socket .*: directory .*missing does not exist$/],
      [['start'], { DSPY_O11YD_SOCKET: join(tmp.dir, 'missing', 'd.sock') }, /invalid --socket \(from DSPY_O11YD_SOCKET\).*does not exist/],
      [['start', '--socket', join(aFile, 'd.sock')], {}, /invalid --socket .*is not a directory/],
      [['start', '--socket', '', '--http', '127.0.0.1:0', '--spool-dir', join(aFile, 'spool')], {}, /invalid --spool-dir .*cannot create or write/],
      [['start', '--socket', '', '--http', '127.0.0.1:0'], { DSPY_O11YD_SPOOL_DIR: join(aFile, 'spool') }, /invalid --spool-dir \(from DSPY_O11YD_SPOOL_DIR\)/],
      // Where mkdir keeps answering ENOENT (Node's recursive mkdir loops forever there).
      ...(process.platform === 'linux' ? [[['start', '--socket', '', '--http', '127.0.0.1:0', '--spool-dir', '/proc/no-such-dir/spool'], {}, /invalid --spool-dir .*ENOENT/] as [string[], Record<string, string>, RegExp]] : []),
      [['start', '--socket', '', '--http', '127.0.0.1:0', '--exporter', 'file', '--file', join(tmp.dir, 'missing', 'out.jsonl')], {}, /invalid --file .*cannot open it for append \(ENOENT\)/],
      [['start', '--socket', '', '--http', '127.0.0.1:0', '--exporter', 'file', '--file', join(aFile, 'out.jsonl')], {}, /invalid --file .*ENOTDIR/],
      [['start', '--socket', '', '--http', '127.0.0.1:0', '--exporter', 'file', '--file', tmp.dir], {}, /invalid --file .*EISDIR/],
    ];
    await assertConfigErrors(cases);
    // `check` validates the configuration `start` would run with: the same paths fail it the same way.
    await assertConfigErrors(cases.map(([args, env, pattern]) => [['check', ...args.slice(1)], env, pattern]));
    // bind() would have cut the long path at 107 bytes and left a socket file there.
    assert.deepEqual(readdirSync(tmp.dir), ['a-file']);
    // And where they work, `check` says ok without creating the spool dir or the file (start does).
    const ok = await runCli(['check', '--exporter', 'file', '--file', join(tmp.dir, 'out.jsonl'), '--spool-dir', join(tmp.dir, 'new', 'spool')]);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, /^ok: configuration valid; exporter file/);
    assert.deepEqual(readdirSync(tmp.dir), ['a-file']);
    tmp.cleanup();
  });

  test('a stale socket file is replaced; a live daemon on it is a clear error', async () => {
    const tmp = tempDir();
    const socket = join(tmp.dir, 'd.sock');
    // A socket file whose server died without removing it (killed: no cleanup ran).
    const { spawnSync } = await import('node:child_process');
    spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(socket)}, () => process.kill(process.pid, 'SIGKILL'))`]);
    assert.ok(existsSync(socket), 'the stale socket file is there');
    const d = await startDaemonProcess(['--socket', socket, '--http', ''], {}, socket);
    await sendOverSocket(socket, [span('b000000000000001')]);
    const second = await runCli(['start', '--socket', socket, '--http', '']);
    assert.equal(second.code, 1);
    assert.match(second.stderr, /already listening on/);
    assert.equal((await d.stop()).code, 0);
    tmp.cleanup();
  });

  test('two daemons starting at once on a spool dir with a stale lock: exactly one takes it, the other exits 1 with a clear line', async () => {
    const tmp = tempDir();
    const spool = join(tmp.dir, 'spool');
    const rendezvous = join(tmp.dir, 'rendezvous');
    mkdirSync(spool);
    mkdirSync(rendezvous);
    // A dead daemon's lock (no process has this pid).
    writeFileSync(join(spool, '.lock'), '2147483646');
    // Both judge the lock stale before either removes it: each removed it, and the second the first's fresh one.
    const env = { DSPY_TEST_RENDEZVOUS_DIR: rendezvous, DSPY_TEST_RENDEZVOUS_LOCK: join(spool, '.lock') };
    const start = (name: string) => startDaemonProcess(['--socket', join(tmp.dir, name), '--http', '', '--spool-dir', spool], env, join(tmp.dir, name), ['--import', RENDEZVOUS]);
    const [a, b] = await Promise.allSettled([start('a.sock'), start('b.sock')]);
    const started = [a, b].filter((r) => r.status === 'fulfilled').map((r) => r.value);
    const failed = [a, b].filter((r) => r.status === 'rejected').map((r) => String(r.reason));
    try {
      assert.equal(started.length, 1, `exactly one holds the spool dir (${started.length} started)`);
      assert.match(failed[0]!, /daemon exited \(1\)/);
      assert.match(failed[0]!, /uses the spool dir/);
    } finally {
      for (const d of started) assert.equal((await d.stop()).code, 0);
      tmp.cleanup();
    }
  });

  test('two daemons starting at once on a stale socket file: exactly one serves, the other exits 1 with a clear line', async () => {
    const tmp = tempDir();
    const socket = join(tmp.dir, 'd.sock');
    const rendezvous = join(tmp.dir, 'rendezvous');
    mkdirSync(rendezvous);
    spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(socket)}, () => process.kill(process.pid, 'SIGKILL'))`]);
    assert.ok(existsSync(socket), 'the stale socket file is there');
    // Both judge the file stale before either removes it: each removed it, and the second the first's live one.
    const env = { DSPY_TEST_RENDEZVOUS_DIR: rendezvous, DSPY_TEST_RENDEZVOUS_SOCKET: socket };
    const start = () => startDaemonProcess(['--socket', socket, '--http', ''], env, socket, ['--import', RENDEZVOUS]);
    const [a, b] = await Promise.allSettled([start(), start()]);
    const started = [a, b].filter((r) => r.status === 'fulfilled').map((r) => r.value);
    const failed = [a, b].filter((r) => r.status === 'rejected').map((r) => String(r.reason));
    try {
      assert.equal(started.length, 1, `exactly one serves (${started.length} started)`);
      assert.match(failed[0]!, /daemon exited \(1\)/);
      assert.match(failed[0]!, /already listening on|starting on/);
      // The socket file is the one that serves: records sent there arrive.
      await sendOverSocket(socket, [span('b000000000000002')]);
      await started[0]!.eventually(() => assert.ok(started[0]!.stdout.includes('b000000000000002')));
    } finally {
      for (const d of started) assert.equal((await d.stop()).code, 0);
      tmp.cleanup();
    }
  });

  test('the socket lock is per socket file, not per path text: the same path naming another directory (PrivateTmp, a remounted or moved directory) takes a daemon', async () => {
    const tmp = tempDir();
    const dir = join(tmp.dir, 'run');
    mkdirSync(dir);
    const socket = join(dir, 'd.sock');
    const first = await startDaemonProcess(['--socket', socket, '--http', ''], {}, socket);
    // The first daemon's directory moves away (it keeps serving there); the path text now names a
    // new, empty directory: another socket file, which no daemon holds, as in another /tmp.
    renameSync(dir, join(tmp.dir, 'moved'));
    mkdirSync(dir);
    let second: Awaited<ReturnType<typeof startDaemonProcess>> | undefined;
    try {
      second = await startDaemonProcess(['--socket', socket, '--http', ''], {}, socket);
      await sendOverSocket(socket, [span('b000000000000003')]);
      await second.eventually(() => assert.ok(second!.stdout.includes('b000000000000003')));
    } finally {
      // The second first: the first's shutdown removes its configured path, by then the second's no more.
      if (second) assert.equal((await second.stop()).code, 0);
      assert.equal((await first.stop()).code, 0);
      tmp.cleanup();
    }
  });

  test('an --http port another process holds: one line naming the flag, exit 1, no socket file left', async () => {
    const tmp = tempDir();
    const socket = join(tmp.dir, 'd.sock');
    const { createServer } = await import('node:net');
    const holder = createServer();
    await new Promise<void>((r) => holder.listen(0, '127.0.0.1', r));
    const port = (holder.address() as { port: number }).port;
    const res = await runCli(['start', '--socket', socket, '--http', `127.0.0.1:${port}`]);
    await new Promise((r) => holder.close(r));
    assert.equal(res.code, 1);
    assert.match(res.stderr, new RegExp(`--http 127\\.0\\.0\\.1:${port}: .*EADDRINUSE.*another process listens there`));
    assert.ok(!existsSync(socket), 'the socket it had opened is closed and removed');
    tmp.cleanup();
  });

  test('a start that fails (socket taken by a live daemon) leaves the spool in place', async () => {
    const tmp = tempDir();
    const socket = join(tmp.dir, 'd.sock');
    const spool = join(tmp.dir, 'spool');
    mkdirSync(spool);
    const file = join(spool, 'spool-1-1.ndjson');
    const content = [JSON.stringify({ v: 1, type: 'hello', resource: { 'service.name': 'spooled' } }), span('c000000000000001')].join('\n') + '\n';
    writeFileSync(file, content);
    const d = await startDaemonProcess(['--socket', socket, '--http', ''], {}, socket);
    const second = await runCli(['start', '--socket', socket, '--http', '', '--spool-dir', spool]);
    assert.equal(second.code, 1);
    assert.match(second.stderr, /already listening on/);
    assert.equal(readFileSync(file, 'utf8'), content, 'the spool was not consumed');
    assert.equal((await d.stop()).code, 0);
    tmp.cleanup();
  });

  test('a live daemon whose accept backlog is full (EAGAIN) keeps its socket: a second start fails', { timeout: 60_000 }, async (t) => {
    if (process.platform !== 'linux') return t.skip('EAGAIN on a full Unix socket backlog is Linux behaviour');
    const tmp = tempDir();
    const socket = join(tmp.dir, 'd.sock');
    const { spawn } = await import('node:child_process');
    const { connect } = await import('node:net');
    // A listener that stops accepting (as a daemon under a CPU stall): paused with SIGSTOP.
    const holder = spawn(process.execPath, ['-e', `require('net').createServer().listen({ path: ${JSON.stringify(socket)}, backlog: 1 }, () => console.log('up'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
    t.after(() => {
      holder.kill('SIGCONT');
      holder.kill('SIGKILL');
    });
    await new Promise((r) => holder.stdout.once('data', r));
    holder.kill('SIGSTOP');
    const queued: import('node:net').Socket[] = [];
    let full = false;
    for (let i = 0; i < 1000 && !full; i++) {
      await new Promise<void>((resolve) => {
        const s = connect(socket);
        s.once('connect', () => (queued.push(s), resolve()));
        s.once('error', (err: NodeJS.ErrnoException) => ((full = err.code === 'EAGAIN'), resolve()));
      });
    }
    assert.ok(full, 'the backlog filled up');
    const second = await runCli(['start', '--socket', socket, '--http', '']);
    queued.forEach((s) => s.destroy());
    assert.equal(second.code, 1, second.stderr);
    assert.match(second.stderr, /EAGAIN.*refusing to replace it/);
    assert.ok(existsSync(socket), "the live listener's socket file is still there");
    tmp.cleanup();
  });

  test('--nice: the daemon and its export worker run at the asked CPU priority', async (t) => {
    if (process.platform !== 'linux') return t.skip('reads /proc');
    // The main thread first (its tid is the pid), by name: the listing's order is not a promise.
    const niceOf = (pid: number) =>
      [String(pid), ...readdirSync(`/proc/${pid}/task`).filter((tid) => tid !== String(pid))].map((tid) =>
        Number(readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8').split(') ')[1]!.split(' ')[16]),
      );
    // A child starts at this process's niceness. Raising it is always allowed; lowering it is not
    // without privileges, so on a runner that runs the tests niced above 10 (not as root) the
    // daemon cannot take 10: it must say so and run on. Asked for more than that, it must take it.
    const { getPriority } = await import('node:os');
    const inherited = getPriority(0);
    const asks = [10, 15, ...(inherited >= 15 && inherited < 19 ? [19] : [])];
    for (const [args, asked] of asks.map((n) => [['--nice', String(n)], n] as const)) {
      const tmp = tempDir();
      const socket = join(tmp.dir, 'd.sock');
      // The langfuse exporter prepares batches on its worker thread (nothing is sent: no spans).
      const keys = { LANGFUSE_PUBLIC_KEY: 'pk', LANGFUSE_SECRET_KEY: 'sk', LANGFUSE_HOST: 'http://127.0.0.1:9' };
      const d = await startDaemonProcess(['--socket', socket, '--http', '', ...args], keys, socket);
      const refused = d.logs.some((l) => l.msg.startsWith('could not set the CPU priority (--nice)'));
      // Lower than it started at: taken with the privilege (CAP_SYS_NICE), else refused and said.
      if (asked >= inherited) assert.equal(refused, false, `${asked} asked at niceness ${inherited}: ${d.stderr}`);
      const expected = refused ? inherited : asked;
      // Up to 15 s for the export worker to start and take its priority: a thread starts slowly
      // on a loaded machine (this waited 2 s).
      let nice = niceOf(d.child.pid!);
      for (const end = Date.now() + 15_000; (nice[0] !== expected || nice.filter((n) => n === expected).length < 2) && Date.now() < end; ) {
        await new Promise((r) => setTimeout(r, 20));
        nice = niceOf(d.child.pid!);
      }
      // The main thread and the export worker (V8's own helper threads start before our code runs).
      assert.equal(nice[0], expected, `main thread nice ${nice[0]}`);
      assert.ok(nice.filter((n) => n === expected).length >= 2, `main thread and export worker at ${expected}: ${nice.join(',')}`);
      assert.equal((await d.stop()).code, 0);
      tmp.cleanup();
    }
    const bad = await runCli(['start', '--nice', '25', '--socket', '', '--http', '127.0.0.1:0']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--nice/);
  });

  test('console exporter by default without keys, with a warning; stdout carries OTLP JSON', async () => {
    const tmp = tempDir();
    const socket = join(tmp.dir, 'd.sock');
    const d = await startDaemonProcess(['--socket', socket, '--http', '127.0.0.1:0', '--flush-interval', '10'], {}, socket);
    await d.waitForLog((l) => l.level === 40 && /LANGFUSE_PUBLIC_KEY/.test(l.msg));
    assert.ok(d.logs.some((l) => /exporting to console/.test(l.msg)), 'startup line names the exporter');
    await sendOverSocket(socket, [span('b000000000000002', 'to-console')]);
    await d.eventually(() => assert.match(d.stdout, /to-console/));
    const line = JSON.parse(d.stdout.trim().split('\n')[0]!) as { resourceSpans: { scopeSpans: { spans: { name: string; startTimeUnixNano: string }[] }[] }[] };
    assert.equal(line.resourceSpans[0]!.scopeSpans[0]!.spans[0]!.name, 'to-console');
    await d.stop();
    tmp.cleanup();
  });

  test('the startup line gives the encoding each exporter really writes (console and file: JSON, whatever --encoding says), never the secret', async () => {
    const tmp = tempDir();
    const keys = { LANGFUSE_PUBLIC_KEY: 'pk-lf-enc', LANGFUSE_SECRET_KEY: 'sk-lf-enc-secret-value' };
    const fake = await startFakeLangfuse({ publicKey: keys.LANGFUSE_PUBLIC_KEY, secretKey: keys.LANGFUSE_SECRET_KEY });
    const otlp = ['--exporter', 'otlp', '--otlp-endpoint', `${fake.url}/api/public/otel/v1/traces`];
    const file = ['--exporter', 'file', '--file', join(tmp.dir, 'out.jsonl')];
    const cases: [string[], string][] = [
      [[], 'protobuf'], // langfuse (both keys set), --encoding's default
      [['--encoding', 'json'], 'json'],
      [otlp, 'protobuf'],
      [[...otlp, '--encoding', 'json'], 'json'],
      [['--exporter', 'console'], 'json'],
      [[...file, '--encoding', 'protobuf'], 'json'],
    ];
    try {
      await Promise.all(
        cases.map(async ([args, encoding]) => {
          const d = await startDaemonProcess(['--socket', '', '--http', '127.0.0.1:0', ...args], { ...keys, LANGFUSE_HOST: fake.url });
          const startup = await d.waitForLog((l) => /listening on/.test(l.msg));
          assert.equal((await d.stop()).code, 0);
          assert.equal(startup.encoding, encoding, `${args.join(' ') || 'langfuse'}: ${JSON.stringify(startup)}`);
          for (const text of [d.stderr, d.stdout]) assert.ok(!text.includes(keys.LANGFUSE_SECRET_KEY), 'the secret is never printed');
        }),
      );
      assert.equal(fake.requests.length, 0, 'no spans, no requests');
    } finally {
      await fake.close();
      tmp.cleanup();
    }
  });

  test('file exporter: the file it creates holds prompts, so only its owner may read it (as the spool files)', async () => {
    const tmp = tempDir();
    const socket = join(tmp.dir, 'd.sock');
    const file = join(tmp.dir, 'spans.jsonl');
    const d = await startDaemonProcess(['--socket', socket, '--http', '', '--exporter', 'file', '--file', file, '--flush-interval', '10'], {}, socket);
    const privateToOwner = (path: string) => assert.equal(statSync(path).mode & 0o077, 0, `${path}: mode ${(statSync(path).mode & 0o777).toString(8)}`);
    privateToOwner(file); // created at start, to prove it can be opened
    await sendOverSocket(socket, [span('b000000000000010', 'private-prompt')]);
    await d.eventually(() => assert.match(readFileSync(file, 'utf8'), /private-prompt/));
    renameSync(file, `${file}.1`); // log rotation: the exporter creates the file again
    await sendOverSocket(socket, [span('b000000000000011', 'private-prompt-2')]);
    await d.eventually(() => assert.match(readFileSync(file, 'utf8'), /private-prompt-2/));
    privateToOwner(file);
    assert.equal((await d.stop()).code, 0);
    tmp.cleanup();
  });

  test('a loopback listener answers only requests that name it by a loopback host (DNS rebinding): a web page cannot read /v1/tail', async () => {
    const d = await startDaemonProcess(['--socket', '', '--http', '127.0.0.1:0', '--exporter', 'console']);
    const { port } = new URL(d.httpUrl);
    // A browser on a page whose name was re-pointed at 127.0.0.1 sends that name in Host.
    const get = (path: string, host: string, method = 'GET', body?: string) =>
      new Promise<number>((resolve, reject) => {
        const req = httpRequest({ host: '127.0.0.1', port, path, method, headers: { host, 'content-type': 'application/x-ndjson' } }, (res) => {
          resolve(res.statusCode!);
          res.destroy(); // /v1/tail streams for ever
        });
        req.on('error', reject);
        req.end(body);
      });
    for (const host of ['attacker.example', `attacker.example:${port}`, `127.0.0.1.attacker.example:${port}`, `localhost.attacker.example:${port}`, `attacker.example.:${port}`]) {
      assert.equal(await get('/v1/tail', host), 403, host);
      assert.equal(await get('/v1/status', host), 403, host);
      assert.equal(await get('/v1/ingest', host, 'POST', span('b000000000000020')), 403, host);
    }
    // Rebinding needs a DNS name: an IP literal (0.0.0.0, which clients use for a local listener
    // too, or the host's own address) names the listener as the browser reached it.
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, 'LOCALHOST', `[::1]:${port}`, `127.1.2.3:${port}`, `0.0.0.0:${port}`, `[::]:${port}`, `app.localhost:${port}`, `localhost.:${port}`, 'app.localhost.', `[::ffff:127.0.0.1]:${port}`]) {
      assert.equal(await get('/v1/status', host), 200, host);
      assert.equal(await get('/v1/tail', host), 200, host);
    }
    assert.equal((await d.stop()).code, 0);
  });

  test('file exporter appends OTLP JSON lines; status and tail talk to the running daemon', async () => {
    const tmp = tempDir();
    const socket = join(tmp.dir, 'd.sock');
    const file = join(tmp.dir, 'spans.jsonl');
    const d = await startDaemonProcess(['--socket', socket, '--http', '127.0.0.1:0', '--exporter', 'file', '--file', file, '--flush-interval', '10'], {}, socket);
    const host = d.httpUrl.replace('http://', '');
    const { spawn } = await import('node:child_process');
    const { CLI } = await import('./support/daemon-process.js');
    const tail = spawn(process.execPath, [CLI, 'tail', '--http', host], { env: { PATH: process.env.PATH }, stdio: ['ignore', 'pipe', 'pipe'] });
    let tailed = '';
    tail.stdout.setEncoding('utf8').on('data', (c: string) => (tailed += c));
    // Wait until tail is connected (no fixed sleep: its start-up time depends on the machine's
    // load): hello records show in the stream and make no spans.
    await d.eventually(async () => {
      await sendOverSocket(socket, [JSON.stringify({ v: 1, type: 'hello', resource: { 'service.name': 'tail-probe' } })]);
      assert.match(tailed, /tail-probe/);
    });
    await sendOverSocket(socket, [span('b000000000000003', 'to-file')]);
    await d.eventually(() => assert.match(readFileSync(file, 'utf8'), /to-file/));
    await d.eventually(() => assert.match(tailed, /"spanId":"b000000000000003"/));
    tail.kill();
    const status = await runCli(['status', '--http', host]);
    assert.equal(status.code, 0);
    const parsed = JSON.parse(status.stdout) as { exporter: { kind: string }; spans: { exported: number } };
    assert.equal(parsed.exporter.kind, 'file');
    assert.equal(parsed.spans.exported, 1);
    await d.stop();
    const down = await runCli(['status', '--http', host]);
    assert.equal(down.code, 1);
    assert.match(down.stderr, /no daemon answers at http:\/\/[^ ]+: (ECONNREFUSED|ENOENT)/, "the reason, not fetch's \"fetch failed\"");
    tmp.cleanup();
  });

  test("the package's bin is a file of the source tree (npm ci in a fresh clone links it) and runs the built CLI", async () => {
    const pkgDir = join(CLI, '../../..');
    const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')) as { bin: Record<string, string>; files: string[] };
    const rel = pkg.bin['dspy-o11yd']!;
    // npm links a bin only if its file exists when it installs: in a clone that is before any build.
    assert.ok(!/(^|\/)(dist|node_modules)\//.test(rel), `${rel} is not a build output`);
    assert.ok(pkg.files.some((f) => rel.replace(/^\.\//, '').startsWith(`${f}/`)), `${rel} is published`);
    const bin = join(pkgDir, rel);
    const run = (file: string, args: string[]) => spawnSync(process.execPath, [file, ...args], { env: { PATH: process.env.PATH }, encoding: 'utf8', timeout: 15_000 });
    const version = run(bin, ['--version']);
    assert.equal(version.status, 0, version.stderr);
    assert.equal(version.stdout.trim(), VERSION);
    const bad = run(bin, ['start', '--queue-max-spans', 'lots']);
    assert.equal(bad.status, 2);
    assert.match(bad.stderr.trim(), /^dspy-o11yd: invalid --queue-max-spans "lots"/);
    // The same file in a tree that was never built: one line saying what to do.
    const tmp = tempDir();
    mkdirSync(join(tmp.dir, 'bin'));
    copyFileSync(bin, join(tmp.dir, rel));
    const unbuilt = run(join(tmp.dir, rel), ['--version']);
    assert.equal(unbuilt.status, 1);
    assert.match(unbuilt.stderr, /^dspy-o11yd: not built yet: run `npm run build`/);
    tmp.cleanup();
  });

  test('check tries the Langfuse credentials', async () => {
    const fake = await startFakeLangfuse({ publicKey: 'pk-check', secretKey: 'sk-check' });
    const good = await runCli(['check'], { LANGFUSE_PUBLIC_KEY: 'pk-check', LANGFUSE_SECRET_KEY: 'sk-check', LANGFUSE_HOST: fake.url });
    assert.equal(good.code, 0, good.stdout + good.stderr);
    assert.match(good.stdout, /^ok/);
    const bad = await runCli(['check'], { LANGFUSE_PUBLIC_KEY: 'pk-check', LANGFUSE_SECRET_KEY: 'sk-nope', LANGFUSE_HOST: fake.url });
    assert.equal(bad.code, 1);
    assert.match(bad.stdout, /401/);
    assert.ok(!bad.stdout.includes('sk-nope'));
    await fake.close();
  });

  test('check sends the credentials of an --otlp-endpoint URL as start does (a Basic header): ok where start delivers, the password never shown', async () => {
    const basic = `Basic ${Buffer.from('user:pa ss').toString('base64')}`;
    const seen: (string | undefined)[] = [];
    const server = createServer((req, res) => {
      seen.push(req.headers.authorization);
      req.resume().on('end', () => res.writeHead(req.headers.authorization === basic ? 200 : 401).end('{}'));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const endpoint = `http://user:pa%20ss@127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`;
      const r = await runCli(['check', '--socket', '', '--exporter', 'otlp', '--otlp-endpoint', endpoint]);
      assert.deepEqual(seen, [basic], 'the check request carries the Basic credentials of the URL');
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /^ok: otlp at http:\/\/127\.0\.0\.1:\d+\/v1\/traces accepted/);
      assert.ok(!/pa( |%20)ss/.test(r.stdout + r.stderr), 'the password is not shown');
    } finally {
      server.close();
    }
  });

  test('check shows a refusal that echoes the credentials sent without them (its output lands in deploy logs)', async () => {
    const server = createServer((req, res) => {
      req.resume().on('end', () => res.writeHead(401).end(JSON.stringify({ error: 'bad credentials', got: req.headers['x-api-key'], authorization: req.headers.authorization })));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const endpoint = `http://user:url-pa55word@127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`;
      const r = await runCli(['check', '--socket', '', '--exporter', 'otlp', '--otlp-endpoint', endpoint, '--otlp-headers', 'x-api-key=hdr-api-key-42']);
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.match(r.stdout, /answered 401: .*bad credentials/);
      for (const secret of ['hdr-api-key-42', 'url-pa55word', Buffer.from('user:url-pa55word').toString('base64')]) assert.ok(!(r.stdout + r.stderr).includes(secret), r.stdout);
    } finally {
      server.close();
    }
  });

  test('check says what start warns: --encoding protobuf does not apply to the console and file exporters', async () => {
    const tmp = tempDir();
    for (const exporter of [['--exporter', 'console'], ['--exporter', 'file', '--file', join(tmp.dir, 'out.jsonl')]]) {
      const r = await runCli(['check', ...exporter, '--encoding', 'protobuf']);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, new RegExp(`^ok: configuration valid; exporter ${exporter[1]} .*--encoding protobuf does not apply to the ${exporter[1]} exporter`));
      // Not asked for: nothing to say.
      const quiet = await runCli(['check', ...exporter]);
      assert.doesNotMatch(quiet.stdout, /does not apply/);
    }
    tmp.cleanup();
  });

  test('--ingest-token guards HTTP ingest', async () => {
    const d = await startDaemonProcess(['--socket', '', '--http', '127.0.0.1:0', '--ingest-token', 'tok-123', '--exporter', 'console'], {});
    const denied = await fetch(`${d.httpUrl}/v1/ingest`, { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body: span('b000000000000004') });
    assert.equal(denied.status, 401);
    const allowed = await postIngest(d.httpUrl, span('b000000000000005'), 'application/x-ndjson', { authorization: 'Bearer tok-123' });
    assert.equal(allowed.status, 202);
    // The scheme is case-insensitive (RFC 9110 §11.1); the token is not.
    assert.equal((await postIngest(d.httpUrl, span('b000000000000006'), 'application/x-ndjson', { authorization: 'bearer tok-123' })).status, 202);
    assert.equal((await postIngest(d.httpUrl, span('b000000000000007'), 'application/x-ndjson', { authorization: 'BEARER  tok-123' })).status, 202);
    assert.equal((await postIngest(d.httpUrl, span('b000000000000008'), 'application/x-ndjson', { authorization: 'Bearer TOK-123' })).status, 401);
    assert.equal((await postIngest(d.httpUrl, span('b000000000000009'), 'application/x-ndjson', { authorization: 'Basic tok-123' })).status, 401);
    assert.equal((await fetch(`${d.httpUrl}/healthz`)).status, 200, 'ops endpoints stay open');
    assert.ok(!d.stderr.includes('tok-123'));
    await d.stop();
  });

  test('an --ingest-token with a trailing newline (a mounted secret) or padded with spaces is trimmed, from DSPY_O11YD_INGEST_TOKEN and from the flag, by start and by status', { timeout: 60_000 }, async () => {
    const d = await startDaemonProcess(['--socket', '', '--http', '127.0.0.1:0', '--exporter', 'console'], { DSPY_O11YD_INGEST_TOKEN: 'tok-secret-file\n' });
    try {
      assert.equal((await postIngest(d.httpUrl, span('b00000000000000a'), 'application/x-ndjson', { authorization: 'Bearer tok-secret-file' })).status, 202);
      assert.equal((await postIngest(d.httpUrl, span('b00000000000000b'), 'application/x-ndjson')).status, 401);
      const host = d.httpUrl.replace('http://', '');
      const status = await runCli(['status', '--http', host], { DSPY_O11YD_INGEST_TOKEN: 'tok-secret-file\r\n' });
      assert.equal(status.code, 0, status.stderr);
      assert.equal((await runCli(['status', '--http', host, '--ingest-token', ' tok-secret-file\t'])).code, 0);
      assert.ok(!d.stderr.includes('tok-secret-file'));
    } finally {
      await d.stop();
    }
    const f = await startDaemonProcess(['--socket', '', '--http', '127.0.0.1:0', '--exporter', 'console', '--ingest-token', ' \ttok-flag\n'], {});
    try {
      assert.equal((await postIngest(f.httpUrl, span('b00000000000000c'), 'application/x-ndjson', { authorization: 'Bearer tok-flag' })).status, 202);
    } finally {
      await f.stop();
    }
  });

  test('an --ingest-token no header carries as is (a line break, a control character, a non-ASCII character) or only whitespace: one line naming the flag, exit 2, the token never shown', async () => {
    const start = ['start', '--socket', '', '--http', '127.0.0.1:0', '--exporter', 'console'];
    const check = ['check', ...start.slice(1)];
    const unsendable = /: holds a character other than visible ASCII, space or tab \(a line break, another control character, or a non-ASCII one\), which an HTTP header cannot carry as is$/;
    const cases: [string[], Record<string, string>, RegExp][] = [
      [[...check, '--ingest-token', 's3cret\nX-Injected: 1'], {}, /^dspy-o11yd: invalid --ingest-token: holds a character other than visible ASCII/],
      [[...start, '--ingest-token', 's3cret\nX-Injected: 1'], {}, unsendable],
      [[...start, '--ingest-token', 's3cret\u0001'], {}, unsendable],
      [[...start, '--ingest-token', 's3cret\u20ac'], {}, unsendable],
      // One byte each in a header, but é is 0xe9 from one client and 0xc3 0xa9 from another (UTF-8):
      // such a token matched some clients and not others.
      [[...start, '--ingest-token', 'caf\u00e9-s3cret'], {}, unsendable],
      [[...start, '--ingest-token', 's3cret\u0080'], {}, unsendable],
      [start, { DSPY_O11YD_INGEST_TOKEN: 's3cret\u00ff' }, /^dspy-o11yd: invalid --ingest-token \(from DSPY_O11YD_INGEST_TOKEN\): holds a character other than visible ASCII/],
      [start, { DSPY_O11YD_INGEST_TOKEN: 's3cret\r\nX-Injected: 1\n' }, /^dspy-o11yd: invalid --ingest-token \(from DSPY_O11YD_INGEST_TOKEN\): holds a character other than visible ASCII/],
      // An empty secret file: a mistake, not "no token" (which would open ingest on a loopback address).
      [start, { DSPY_O11YD_INGEST_TOKEN: '\n' }, /^dspy-o11yd: invalid --ingest-token \(from DSPY_O11YD_INGEST_TOKEN\): is only whitespace$/],
      [[...start, '--ingest-token', ' \t '], {}, /^dspy-o11yd: invalid --ingest-token: is only whitespace$/],
      // status and tail send it: the same line, not fetch's "invalid header value" quoting the token.
      [['status', '--http', '127.0.0.1:9', '--ingest-token', 's3cret\nX'], {}, unsendable],
      [['status', '--http', '127.0.0.1:9', '--ingest-token', 'caf\u00e9-s3cret'], {}, unsendable],
      [['tail', '--http', '127.0.0.1:9'], { DSPY_O11YD_INGEST_TOKEN: 's3cret\nX' }, /^dspy-o11yd: invalid --ingest-token \(from DSPY_O11YD_INGEST_TOKEN\): holds a character other than visible ASCII/],
    ];
    await assertConfigErrors(cases);
    for (const [args, env] of cases) {
      const r = await runCli(args, env);
      assert.ok(!r.stderr.includes('s3cret'), r.stderr);
    }
  });

  test('--http-read-timeout: a client that sends part of a body and stalls is answered 408 and closed; others are served meanwhile', async () => {
    const d = await startDaemonProcess(['--socket', '', '--http', '127.0.0.1:0', '--exporter', 'console', '--http-read-timeout', '500'], {});
    const { port } = new URL(d.httpUrl!);
    const { connect } = await import('node:net');
    const c = connect(Number(port), '127.0.0.1');
    await new Promise((r) => c.once('connect', r));
    c.write('POST /v1/ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-ndjson\r\nContent-Length: 1000000\r\n\r\n{"v":1,');
    let answer = '';
    c.setEncoding('utf8').on('data', (x: string) => (answer += x));
    assert.equal((await fetch(`${d.httpUrl}/healthz`)).status, 200, 'another client is served meanwhile');
    await new Promise((r) => c.once('close', r));
    assert.match(answer, /^HTTP\/1\.1 408/);
    await d.stop();
  });

  test('--ingest-token guards /v1/tail and /v1/status too; probes stay open; tail and status send the token', { timeout: 60_000 }, async () => {
    const tmp = tempDir();
    const socket = join(tmp.dir, 'd.sock');
    const token = 'tok-tail-456';
    const d = await startDaemonProcess(['--socket', socket, '--http', '127.0.0.1:0', '--ingest-token', token, '--exporter', 'console'], {}, socket);
    const host = d.httpUrl.replace('http://', '');
    for (const path of ['/v1/tail', '/v1/status']) {
      const res = await fetch(`${d.httpUrl}${path}`);
      assert.equal(res.status, 401, `${path} without the token`);
      await res.body?.cancel();
    }
    for (const path of ['/healthz', '/readyz', '/metrics']) assert.equal((await fetch(`${d.httpUrl}${path}`)).status, 200, `${path} stays open`);

    const { spawn } = await import('node:child_process');
    const { CLI } = await import('./support/daemon-process.js');
    // No token: a clear line, exit 1.
    const deniedTail = await runCli(['tail', '--http', host]);
    assert.equal(deniedTail.code, 1);
    assert.match(deniedTail.stderr, /401.*--ingest-token/);
    const deniedStatus = await runCli(['status', '--http', host]);
    assert.equal(deniedStatus.code, 1);
    assert.match(deniedStatus.stderr, /401/);
    assert.equal((await runCli(['status', '--http', host, '--ingest-token', token])).code, 0);

    // The token from the env twin: the record (with its inputs) reaches tail.
    const tail = spawn(process.execPath, [CLI, 'tail', '--http', host], { env: { PATH: process.env.PATH, DSPY_O11YD_INGEST_TOKEN: token }, stdio: ['ignore', 'pipe', 'pipe'] });
    let tailed = '';
    tail.stdout.setEncoding('utf8').on('data', (c: string) => (tailed += c));
    await d.eventually(async () => {
      await sendOverSocket(socket, [JSON.stringify({ v: 1, type: 'hello', resource: { 'service.name': 'tail-token-probe' } })]);
      assert.match(tailed, /tail-token-probe/);
    });
    tail.kill();
    await d.stop();
    tmp.cleanup();
  });

  test('/v1/tail answers (headers) at once on an idle daemon, before any record', { timeout: 60_000 }, async () => {
    const tmp = tempDir();
    const socket = join(tmp.dir, 'd.sock');
    const d = await startDaemonProcess(['--socket', socket, '--http', '127.0.0.1:0', '--exporter', 'console'], {}, socket);
    // Without flushed headers this fetch waits for the first record (a client gives up after
    // its headers timeout); no record is sent before it resolves.
    const res = await fetch(`${d.httpUrl}/v1/tail`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /ndjson/);
    const reader = res.body!.getReader();
    await sendOverSocket(socket, [span('b000000000000006', 'after-headers')]);
    let text = '';
    while (!text.includes('after-headers')) text += new TextDecoder().decode((await reader.read()).value);
    await reader.cancel();
    await d.stop();
    tmp.cleanup();
  });

  test('tail ends with exit 0 when the daemon shuts down, not as a broken stream', { timeout: 60_000 }, async () => {
    const tmp = tempDir();
    const socket = join(tmp.dir, 'd.sock');
    const d = await startDaemonProcess(['--socket', socket, '--http', '127.0.0.1:0', '--exporter', 'console'], {}, socket);
    const { spawn } = await import('node:child_process');
    const { CLI } = await import('./support/daemon-process.js');
    const tail = spawn(process.execPath, [CLI, 'tail', '--http', d.httpUrl.replace('http://', '')], { env: { PATH: process.env.PATH }, stdio: ['ignore', 'pipe', 'pipe'] });
    let tailed = '';
    let stderr = '';
    tail.stdout.setEncoding('utf8').on('data', (c: string) => (tailed += c));
    tail.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const tailExit = new Promise<number | null>((r) => tail.on('exit', (code) => r(code)));
    await d.eventually(async () => {
      await sendOverSocket(socket, [JSON.stringify({ v: 1, type: 'hello', resource: { 'service.name': 'tail-end-probe' } })]);
      assert.match(tailed, /tail-end-probe/);
    });
    const stopped = await d.stop();
    assert.equal(stopped.code, 0);
    assert.equal(await tailExit, 0, stderr);
    assert.match(stderr, /the daemon ended the stream/);
    tmp.cleanup();
  });

  test('tail prints records only: blank heartbeat lines are skipped', { timeout: 60_000 }, async () => {
    const { createServer } = await import('node:http');
    const record = span('b000000000000007', 'between-heartbeats');
    const server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      // Heartbeats around a record, the record cut across writes.
      res.write('\n');
      res.write(record.slice(0, 20));
      res.write(record.slice(20) + '\n\n');
      res.end('\n');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    const r = await runCli(['tail', '--http', `127.0.0.1:${port}`]);
    server.close();
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, record + '\n');
  });

  test('tail whose reader stops (`tail | head -1`): it ends quietly, exit 0, not with an EPIPE stack trace', { timeout: 60_000 }, async () => {
    let more: (() => void) | undefined;
    const server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      res.write(span('b00000000000000c', 'first') + '\n');
      more = () => {
        for (let i = 0; i < 10; i++) res.write(span('b00000000000000d', 'after-the-reader-left') + '\n');
      };
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const child = spawn(process.execPath, [CLI, 'tail', '--http', `127.0.0.1:${(server.address() as AddressInfo).port}`], { env: { PATH: process.env.PATH }, stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      // The first line read, the reader goes away (as `head -1` does); then more records arrive.
      await new Promise((resolve) => child.stdout.once('data', resolve));
      child.stdout.destroy();
      more!();
      assert.equal(await exited, 0, stderr);
      assert.equal(stderr, '');
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});
