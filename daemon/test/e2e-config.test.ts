/**
 * How users configure the daemon, as users of OpenTelemetry, Langfuse and the Datadog agent write
 * it: URLs with path prefixes, env files with stray whitespace, the OTEL_EXPORTER_OTLP_* family.
 * Each case runs the real CLI; destinations are servers on 127.0.0.1 that record what reached them.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { runCli, sendOverSocket, startDaemonProcess, tempDir } from './support/daemon-process.js';
import { startFakeLangfuse } from './support/fake-langfuse.js';

interface Hit {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  bytes: number;
}

/** An HTTP server on 127.0.0.1 that answers 200 `{}` to everything (after `delayMs`) and records each request. */
async function recorder(delayMs = 0): Promise<{ url: string; hits: Hit[]; close: () => Promise<void> }> {
  const hits: Hit[] = [];
  const server = createServer((req, res) => {
    let bytes = 0;
    req.on('data', (c: Buffer) => (bytes += c.length));
    req.on('end', () => {
      hits.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, bytes });
      const answer = () => res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      if (delayMs > 0) setTimeout(answer, delayMs).unref();
      else answer();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    hits,
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

async function until(check: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const spanLine = (spanId: string) =>
  JSON.stringify({ v: 1, type: 'span', traceId: TRACE, spanId, name: 'cfg', startTimeUnixNano: '1732700000000000000', endTimeUnixNano: '1732700000000000005' });
const scoreLine = JSON.stringify({ v: 1, type: 'score', traceId: TRACE, name: 'helpfulness', value: 0.9 });
const KEYS = { LANGFUSE_PUBLIC_KEY: 'pk-lf-cfg', LANGFUSE_SECRET_KEY: 'sk-lf-cfg' };

const tmp = tempDir('dspy-o11yd-config-');
after(() => tmp.cleanup());
let n = 0;
const socketPath = () => join(tmp.dir, `d${n++}.sock`);

describe('langfuse host', () => {
  test('a self-hosted Langfuse behind a path prefix: spans and scores go under the prefix, a query string stays a query string', async () => {
    const server = await recorder();
    try {
      const cases: { host: string; traces: string; scores: string }[] = [
        { host: `${server.url}/langfuse`, traces: '/langfuse/api/public/otel/v1/traces', scores: '/langfuse/api/public/scores' },
        { host: `${server.url}/langfuse//`, traces: '/langfuse/api/public/otel/v1/traces', scores: '/langfuse/api/public/scores' },
        // Was POST /langfuse?x=1/api/public/otel/v1/traces: the API path ended up inside the query string.
        { host: `${server.url}/langfuse/?x=1`, traces: '/langfuse/api/public/otel/v1/traces?x=1', scores: '/langfuse/api/public/scores?x=1' },
        // Was POST /langfuse: the fragment (never sent) swallowed the API path.
        { host: `${server.url}/langfuse#top`, traces: '/langfuse/api/public/otel/v1/traces', scores: '/langfuse/api/public/scores' },
        { host: `HTTP://127.0.0.1:${new URL(server.url).port}/Langfuse`, traces: '/Langfuse/api/public/otel/v1/traces', scores: '/Langfuse/api/public/scores' },
      ];
      for (const c of cases) {
        server.hits.length = 0;
        const checked = await runCli(['check', '--socket', '', '--http', '127.0.0.1:0'], { ...KEYS, LANGFUSE_HOST: c.host });
        assert.equal(checked.code, 0, checked.stdout + checked.stderr);
        assert.deepEqual(server.hits.map((h) => h.url), [c.traces], `check with ${c.host}`);
        server.hits.length = 0;
        const socket = socketPath();
        const d = await startDaemonProcess(['--socket', socket, '--http', '', '--langfuse-host', c.host, '--flush-interval', '10'], KEYS, socket);
        try {
          await sendOverSocket(socket, [spanLine('00f067aa0ba902b7'), scoreLine]);
          await until(() => server.hits.some((h) => h.url === c.traces) && server.hits.some((h) => h.url === c.scores), `POST ${c.traces} and ${c.scores} for ${c.host}; got ${JSON.stringify(server.hits.map((h) => h.url))}`);
          assert.deepEqual([...new Set(server.hits.map((h) => h.url))].sort(), [c.scores, c.traces].sort());
        } finally {
          await d.stop();
        }
      }
    } finally {
      await server.close();
    }
  });

  test("LANGFUSE_BASE_URL, Langfuse's current name, wins over LANGFUSE_HOST (deprecated) when both are set, as in Langfuse's SDKs", async () => {
    const server = await recorder();
    try {
      const r = await runCli(['check', '--socket', '', '--http', '127.0.0.1:0'], { ...KEYS, LANGFUSE_HOST: `${server.url}/old`, LANGFUSE_BASE_URL: `${server.url}/new` });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.deepEqual(server.hits.map((h) => h.url), ['/new/api/public/otel/v1/traces']);
      // The flag still beats both; an empty LANGFUSE_BASE_URL is unset, so LANGFUSE_HOST applies.
      server.hits.length = 0;
      await runCli(['check', '--socket', '', '--http', '127.0.0.1:0', '--langfuse-host', `${server.url}/flag`], { ...KEYS, LANGFUSE_HOST: `${server.url}/old`, LANGFUSE_BASE_URL: `${server.url}/new` });
      await runCli(['check', '--socket', '', '--http', '127.0.0.1:0'], { ...KEYS, LANGFUSE_HOST: `${server.url}/old`, LANGFUSE_BASE_URL: '' });
      assert.deepEqual(server.hits.map((h) => h.url), ['/flag/api/public/otel/v1/traces', '/old/api/public/otel/v1/traces']);
      const bad = await runCli(['check'], { ...KEYS, LANGFUSE_HOST: `${server.url}/old`, LANGFUSE_BASE_URL: 'cloud.langfuse.com' });
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /^dspy-o11yd: invalid --langfuse-host \(from LANGFUSE_BASE_URL\) "cloud\.langfuse\.com": must be an http:\/\/ or https:\/\/ URL\n$/);
    } finally {
      await server.close();
    }
  });
});

describe('otlp endpoint', () => {
  test('OTEL_EXPORTER_OTLP_ENDPOINT that already ends with /v1/traces: the spec appends it again, and start and check now say so', async () => {
    const server = await recorder();
    try {
      const env = { OTEL_EXPORTER_OTLP_ENDPOINT: `${server.url}/v1/traces` };
      const note = /OTEL_EXPORTER_OTLP_ENDPOINT is a base URL: \/v1\/traces is appended to it \(…\/v1\/traces\/v1\/traces\); for a full URL set OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or --otlp-endpoint/;
      const r = await runCli(['check', '--socket', '', '--http', '127.0.0.1:0', '--exporter', 'otlp'], env);
      assert.deepEqual(server.hits.map((h) => h.url), ['/v1/traces/v1/traces']);
      assert.match(r.stdout, note);
      const d = await startDaemonProcess(['--socket', '', '--http', '127.0.0.1:0', '--exporter', 'otlp'], env);
      try {
        await d.waitForLog((l) => l.level === 40 && note.test(l.msg));
      } finally {
        await d.stop();
      }
    } finally {
      await server.close();
    }
  });

  const otlp = ['--socket', '', '--http', '127.0.0.1:0', '--exporter', 'otlp'];
  test('OTEL_EXPORTER_OTLP_ENDPOINT is a base URL (+ /v1/traces, its path and query string kept); the TRACES one and the flag are used as they are', async () => {
    const server = await recorder();
    try {
      const cases: { flags?: string[]; env: Record<string, string>; path: string }[] = [
        { env: { OTEL_EXPORTER_OTLP_ENDPOINT: server.url }, path: '/v1/traces' },
        { env: { OTEL_EXPORTER_OTLP_ENDPOINT: `${server.url}/` }, path: '/v1/traces' },
        { env: { OTEL_EXPORTER_OTLP_ENDPOINT: `${server.url}/collector/` }, path: '/collector/v1/traces' },
        // Was /collector?tenant=a/v1/traces: the signal path went into the query string.
        { env: { OTEL_EXPORTER_OTLP_ENDPOINT: `${server.url}/collector?tenant=a` }, path: '/collector/v1/traces?tenant=a' },
        // An empty flag is unset, so the base URL applies, and is a base URL (it was sent to /b as is).
        { flags: ['--otlp-endpoint', ''], env: { OTEL_EXPORTER_OTLP_ENDPOINT: `${server.url}/b` }, path: '/b/v1/traces' },
        { env: { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: '', OTEL_EXPORTER_OTLP_ENDPOINT: `${server.url}/b2/` }, path: '/b2/v1/traces' },
        { env: { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${server.url}/custom?k=v`, OTEL_EXPORTER_OTLP_ENDPOINT: `${server.url}/ignored` }, path: '/custom?k=v' },
        { flags: ['--otlp-endpoint', `${server.url}/flag`], env: { OTEL_EXPORTER_OTLP_ENDPOINT: `${server.url}/ignored` }, path: '/flag' },
      ];
      for (const c of cases) {
        server.hits.length = 0;
        const r = await runCli(['check', ...otlp, ...(c.flags ?? [])], c.env);
        assert.equal(r.code, 0, r.stdout + r.stderr);
        assert.deepEqual(server.hits.map((h) => h.url), [c.path], JSON.stringify(c));
      }
      // The exporter posts where check did.
      server.hits.length = 0;
      const socket = socketPath();
      const d = await startDaemonProcess(['--socket', socket, '--http', '', '--exporter', 'otlp', '--flush-interval', '10'], { OTEL_EXPORTER_OTLP_ENDPOINT: `${server.url}/collector?tenant=a` }, socket);
      try {
        await sendOverSocket(socket, [spanLine('00f067aa0ba902b8')]);
        await until(() => server.hits.length > 0, 'an export');
        assert.equal(server.hits[0]!.url, '/collector/v1/traces?tenant=a');
      } finally {
        await d.stop();
      }
    } finally {
      await server.close();
    }
  });
});

describe('values from env files', () => {
  test('string values are trimmed (a newline or spaces from an env file) and enums read in any case, as OpenTelemetry reads its enums', async () => {
    const server = await recorder();
    const socket = socketPath();
    const file = join(tmp.dir, 'trimmed.jsonl');
    const spool = join(tmp.dir, 'trimmed-spool');
    try {
      const d = await startDaemonProcess(
        ['--socket', ` ${socket}\n`, '--http', ' 127.0.0.1:0\n', '--exporter', ' File', '--file', `${file} `, '--spool-dir', `\t${spool}\n`, '--log-level', 'INFO', '--release', ' 1.2.3\n', '--environment', 'production\n', '--flush-interval', '10'],
        { DSPY_O11YD_ENCODING: 'JSON\n' },
        socket,
      );
      try {
        const startup = await d.waitForLog((l) => /listening on/.test(l.msg));
        assert.equal(startup.socket, socket);
        assert.equal(startup.exporter, 'file');
        assert.match(d.httpUrl, /^http:\/\/127\.0\.0\.1:\d+$/);
        await sendOverSocket(socket, [spanLine('00f067aa0ba902b9')]);
        const { existsSync, readFileSync } = await import('node:fs');
        await until(() => existsSync(file) && readFileSync(file, 'utf8').includes('00f067aa0ba902b9'), 'the span in the file');
        const resource = JSON.stringify((JSON.parse(readFileSync(file, 'utf8').split('\n')[0]!) as { resourceSpans: { resource: unknown }[] }).resourceSpans[0]!.resource);
        assert.match(resource, /"key":"service\.version","value":\{"stringValue":"1\.2\.3"\}/);
        assert.match(resource, /"key":"deployment\.environment\.name","value":\{"stringValue":"production"\}/);
        assert.ok(existsSync(spool), 'the spool dir at the trimmed path');
      } finally {
        await d.stop();
      }
      // A URL from an env file, and LANGFUSE_BASE_URL with a trailing newline: the destination has no stray %20.
      const lf = await startDaemonProcess(['--socket', '', '--http', '127.0.0.1:0', '--exporter', 'LANGFUSE', '--encoding', ' Protobuf'], { ...KEYS, LANGFUSE_BASE_URL: ` ${server.url}/lf \n` });
      try {
        const startup = await lf.waitForLog((l) => /listening on/.test(l.msg));
        assert.equal(startup.destination, `${server.url}/lf/api/public/otel/v1/traces`);
        assert.equal(startup.encoding, 'protobuf');
      } finally {
        await lf.stop();
      }
      // Host names are not case-sensitive: LOCALHOST is loopback, no ingest token needed.
      const local = await startDaemonProcess(['--socket', '', '--http', 'LOCALHOST:0']);
      await local.stop();
    } finally {
      await server.close();
    }
  });

  test('a value of only whitespace is an error, not a silent default, and for --socket and --http not the empty value that disables them', async () => {
    for (const [args, env, pattern] of [
      [['check', '--socket', ' '], {}, /^dspy-o11yd: invalid --socket " ": is blank/],
      [['check', '--socket', ''], { DSPY_O11YD_HTTP: ' \n' }, /^dspy-o11yd: invalid --http \(from DSPY_O11YD_HTTP\) " \\n": is blank/],
      [['check', '--exporter', ' '], {}, /^dspy-o11yd: invalid --exporter " ": Invalid option/],
      [['check', '--exporter', 'file', '--file', '  '], {}, /^dspy-o11yd: invalid --file "  ": is blank/],
      [['check'], { LANGFUSE_BASE_URL: ' ' }, /^dspy-o11yd: invalid --langfuse-host \(from LANGFUSE_BASE_URL\) " ": must be an http/],
    ] as [string[], Record<string, string>, RegExp][]) {
      const r = await runCli(args, env);
      assert.equal(r.code, 2, `${JSON.stringify(args)} ${JSON.stringify(env)}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, pattern);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    }
  });
});

describe('langfuse keys', () => {
  test('keys read from mounted secrets (a trailing newline) are trimmed, as the ingest token is; keys of only whitespace are no keys', async () => {
    const fake = await startFakeLangfuse({ publicKey: 'pk-lf-trim', secretKey: 'sk-lf-trim' });
    try {
      const r = await runCli(['check', '--socket', '', '--http', '127.0.0.1:0'], { LANGFUSE_PUBLIC_KEY: ' pk-lf-trim\n', LANGFUSE_SECRET_KEY: 'sk-lf-trim\n', LANGFUSE_BASE_URL: fake.url });
      assert.equal(r.code, 0, r.stdout + r.stderr); // was 401: the newline was part of the Basic credentials
      assert.match(r.stdout, /^ok: langfuse/);
      const blank = await runCli(['check', '--socket', '', '--http', '127.0.0.1:0'], { LANGFUSE_PUBLIC_KEY: 'pk-lf-trim', LANGFUSE_SECRET_KEY: ' \n', LANGFUSE_BASE_URL: fake.url });
      assert.equal(blank.code, 0, blank.stdout + blank.stderr);
      assert.match(blank.stdout, /^ok: configuration valid; exporter console \(stdout\): LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY are not both set/);
    } finally {
      await fake.close();
    }
  });
});

describe('OTEL_EXPORTER_OTLP_* and other exporters', () => {
  test("the OTEL_EXPORTER_OTLP_* variables configure the otlp exporter only: an app's (shared env) cannot stop a langfuse daemon", async () => {
    const server = await recorder();
    // What an app's environment may hold for its own OpenTelemetry SDK: a gRPC endpoint without a
    // scheme, headers in another tool's syntax. The sidecar, exporting to Langfuse, has no use for them.
    const appEnv = { OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4317', OTEL_EXPORTER_OTLP_TRACES_HEADERS: 'Authorization: Bearer s3cret' };
    try {
      const r = await runCli(['check', '--socket', '', '--http', '127.0.0.1:0'], { ...KEYS, LANGFUSE_BASE_URL: server.url, ...appEnv });
      assert.equal(r.code, 0, r.stdout + r.stderr); // was exit 2: invalid --otlp-endpoint (from OTEL_EXPORTER_OTLP_ENDPOINT)
      assert.deepEqual(server.hits.map((h) => h.url), ['/api/public/otel/v1/traces']);
      const d = await startDaemonProcess(['--socket', '', '--http', '127.0.0.1:0'], { ...KEYS, LANGFUSE_BASE_URL: server.url, ...appEnv });
      await d.stop();
      // With --exporter otlp they are read and checked as before; a flag is always checked.
      const otlp = await runCli(['check', '--exporter', 'otlp'], appEnv);
      assert.equal(otlp.code, 2);
      assert.match(otlp.stderr, /^dspy-o11yd: invalid --otlp-endpoint \(from OTEL_EXPORTER_OTLP_ENDPOINT\) "collector:4317"/);
      const flag = await runCli(['check', '--otlp-endpoint', 'collector:4317'], { ...KEYS, LANGFUSE_BASE_URL: server.url });
      assert.equal(flag.code, 2);
      assert.match(flag.stderr, /^dspy-o11yd: invalid --otlp-endpoint "collector:4317"/);
    } finally {
      await server.close();
    }
  });

  test('OTEL_EXPORTER_OTLP_PROTOCOL (and …_TRACES_PROTOCOL) pick the otlp encoding: http/json, http/protobuf; grpc is a config error, not protobuf sent to a gRPC port', async () => {
    const server = await recorder();
    const otlp = ['--socket', '', '--http', '127.0.0.1:0', '--exporter', 'otlp'];
    const endpoint = { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${server.url}/v1/traces` };
    try {
      const cases: [Record<string, string>, string[], string][] = [
        [{ OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' }, [], 'json'],
        [{ OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/protobuf' }, [], 'protobuf'],
        [{ OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'HTTP/JSON' }, [], 'json'],
        // Ours beat OpenTelemetry's.
        [{ OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', DSPY_O11YD_ENCODING: 'protobuf' }, [], 'protobuf'],
        [{ OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf' }, ['--encoding', 'json'], 'json'],
        [{}, [], 'protobuf'],
      ];
      for (const [env, flags, encoding] of cases) {
        const d = await startDaemonProcess([...otlp, ...flags], { ...endpoint, ...env });
        try {
          const startup = await d.waitForLog((l) => /listening on/.test(l.msg));
          assert.equal(startup.encoding, encoding, JSON.stringify({ env, flags }));
        } finally {
          await d.stop();
        }
      }
      // What the exporter sends, end to end.
      const socket = socketPath();
      const d = await startDaemonProcess(['--socket', socket, '--http', '', '--exporter', 'otlp', '--flush-interval', '10'], { ...endpoint, OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' }, socket);
      try {
        await sendOverSocket(socket, [spanLine('00f067aa0ba902ba')]);
        await until(() => server.hits.length > 0, 'an export');
        assert.equal(server.hits[0]!.headers['content-type'], 'application/json');
      } finally {
        await d.stop();
      }
      const grpc = await runCli(['start', ...otlp], { ...endpoint, OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' });
      assert.equal(grpc.code, 2);
      assert.match(grpc.stderr, /^dspy-o11yd: invalid --encoding \(from OTEL_EXPORTER_OTLP_PROTOCOL\) "grpc": the otlp exporter sends OTLP\/HTTP: http\/protobuf or http\/json/);
      // Another exporter does not read it.
      const lf = await runCli(['check', '--socket', '', '--http', '127.0.0.1:0'], { ...KEYS, LANGFUSE_BASE_URL: server.url, OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' });
      assert.equal(lf.code, 0, lf.stdout + lf.stderr);
    } finally {
      await server.close();
    }
  });

  test('OTEL_EXPORTER_OTLP_COMPRESSION (and …_TRACES_COMPRESSION, --otlp-compression): none sends the body as is, gzip by default', async () => {
    const server = await recorder();
    try {
      const cases: [Record<string, string>, string[], string | undefined][] = [
        [{}, [], 'gzip'],
        [{ OTEL_EXPORTER_OTLP_COMPRESSION: 'none' }, [], undefined],
        [{ OTEL_EXPORTER_OTLP_COMPRESSION: 'none', OTEL_EXPORTER_OTLP_TRACES_COMPRESSION: 'GZIP' }, [], 'gzip'],
        [{ OTEL_EXPORTER_OTLP_COMPRESSION: 'gzip' }, ['--otlp-compression', 'none'], undefined],
      ];
      for (const [env, flags, encoding] of cases) {
        server.hits.length = 0;
        const socket = socketPath();
        const d = await startDaemonProcess(['--socket', socket, '--http', '', '--exporter', 'otlp', '--flush-interval', '10', ...flags], { OTEL_EXPORTER_OTLP_ENDPOINT: server.url, ...env }, socket);
        try {
          await sendOverSocket(socket, [spanLine('00f067aa0ba902bb')]);
          await until(() => server.hits.length > 0, 'an export');
          assert.equal(server.hits[0]!.headers['content-encoding'], encoding, JSON.stringify({ env, flags }));
        } finally {
          await d.stop();
        }
      }
      const bad = await runCli(['check', '--exporter', 'otlp'], { OTEL_EXPORTER_OTLP_ENDPOINT: server.url, OTEL_EXPORTER_OTLP_COMPRESSION: 'zstd' });
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /^dspy-o11yd: invalid --otlp-compression \(from OTEL_EXPORTER_OTLP_COMPRESSION\) "zstd": Invalid option: expected one of "gzip"\|"none"/);
    } finally {
      await server.close();
    }
  });

  test('OTEL_EXPORTER_OTLP_TIMEOUT (and …_TRACES_TIMEOUT, in ms) bound the otlp export request, under --export-timeout and DSPY_O11YD_EXPORT_TIMEOUT', async () => {
    // Answers after 3 s: inside the default 10 s, far outside 300 ms.
    const slow = await recorder(3000);
    try {
      const otlp = ['check', '--socket', '', '--http', '127.0.0.1:0', '--exporter', 'otlp'];
      const short = await runCli(otlp, { OTEL_EXPORTER_OTLP_ENDPOINT: slow.url, OTEL_EXPORTER_OTLP_TIMEOUT: '300' });
      assert.equal(short.code, 1, short.stdout + short.stderr); // was ok: the variable was ignored
      assert.match(short.stdout, /^FAILED: otlp at http:\/\/127\.0\.0\.1:\d+\/v1\/traces is unreachable: .*timeout/);
      const traces = await runCli(otlp, { OTEL_EXPORTER_OTLP_ENDPOINT: slow.url, OTEL_EXPORTER_OTLP_TIMEOUT: '30000', OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: '300' });
      assert.equal(traces.code, 1, traces.stdout + traces.stderr);
      const ours = await runCli(otlp, { OTEL_EXPORTER_OTLP_ENDPOINT: slow.url, OTEL_EXPORTER_OTLP_TIMEOUT: '300', DSPY_O11YD_EXPORT_TIMEOUT: '30000' });
      assert.equal(ours.code, 0, ours.stdout + ours.stderr);
      const lf = await runCli(['check', '--socket', '', '--http', '127.0.0.1:0'], { ...KEYS, LANGFUSE_BASE_URL: slow.url, OTEL_EXPORTER_OTLP_TIMEOUT: '300' });
      assert.equal(lf.code, 0, lf.stdout + lf.stderr);
    } finally {
      await slow.close();
    }
  });
});

describe('status and tail', () => {
  test('--http and DSPY_O11YD_HTTP are read as start reads them: trimmed, host:port or a URL; anything else, or empty (HTTP disabled), is one line and exit 2', async () => {
    const socket = socketPath();
    const d = await startDaemonProcess(['--socket', socket, '--http', '127.0.0.1:0']);
    const hostPort = d.httpUrl.replace('http://', '');
    try {
      // Was exit 1, "no daemon answers at http:// 127.0.0.1:…: ERR_INVALID_URL".
      const padded = await runCli(['status', '--json'], { DSPY_O11YD_HTTP: ` ${hostPort}\n` });
      assert.equal(padded.code, 0, padded.stderr);
      assert.equal((JSON.parse(padded.stdout) as { ready: boolean }).ready, true);
      // Was …//v1/status, answered 404.
      const slash = await runCli(['status', '--http', `${d.httpUrl}/`]);
      assert.equal(slash.code, 0, slash.stderr);
      const cases: [string[], Record<string, string>, RegExp][] = [
        // A bare number is a host to a URL parser: 2130706433 is 127.0.0.1 (and 4318 is 0.0.16.238,
        // where `status --http 4318` sent its request). Not host:port: refused, nothing sent.
        [['status', '--http', '2130706433'], {}, /^dspy-o11yd: invalid --http "2130706433": must be host:port \(e\.g\. 127\.0\.0\.1:4318\) or an http:\/\/ URL$/],
        [['tail'], { DSPY_O11YD_HTTP: '127.0.0.1' }, /^dspy-o11yd: invalid --http \(from DSPY_O11YD_HTTP\) "127\.0\.0\.1": must be host:port/],
        // Empty: the daemon's HTTP listener is disabled (as for start), not the default address, nor a request to http:///v1/status.
        [['status'], { DSPY_O11YD_HTTP: '' }, /^dspy-o11yd: invalid --http \(from DSPY_O11YD_HTTP\) "": the daemon's HTTP listener is disabled; status and tail need it/],
        [['tail', '--http', ''], {}, /^dspy-o11yd: invalid --http "": the daemon's HTTP listener is disabled/],
      ];
      for (const [args, env, pattern] of cases) {
        const r = await runCli(args, env);
        assert.equal(r.code, 2, `${JSON.stringify(args)} ${JSON.stringify(env)}: ${r.stderr}`);
        assert.match(r.stderr.trim(), pattern);
        assert.equal(r.stderr.trim().split('\n').length, 1);
      }
    } finally {
      await d.stop();
    }
  });

  test('a port where something accepts connections but never answers: status and tail give up with one line and exit 1, not a hang', async () => {
    const { createServer: createTcpServer } = await import('node:net');
    const held: import('node:net').Socket[] = [];
    const silent = createTcpServer((c) => held.push(c));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const at = `127.0.0.1:${(silent.address() as AddressInfo).port}`;
    try {
      for (const cmd of ['status', 'tail']) {
        const r = await runCli([cmd, '--http', at], {}, 40_000);
        assert.equal(r.code, 1, `${cmd}: ${r.stderr}`);
        assert.match(r.stderr, new RegExp(`^dspy-o11yd: no answer from http://${at.replace(/\./g, '\\.')}/v1/(status|tail) within 10 s\\n$`));
      }
    } finally {
      held.forEach((c) => c.destroy());
      silent.close();
    }
  });
});

describe('listener addresses', () => {
  test("--http ':4318' (Go's all-interfaces form) and --socket '~/…' (no shell to expand it in an env file): the error says what to write", async () => {
    for (const [args, env, pattern] of [
      [['start', '--socket', '', '--http', ':4318'], {}, /^dspy-o11yd: invalid --http ":4318": has no host: 127\.0\.0\.1:4318 for this machine only, 0\.0\.0\.0:4318 for every interface \(with --ingest-token\)$/],
      [['start', '--socket', '~/dspy-o11yd-test-missing/d.sock', '--http', ''], {}, /^dspy-o11yd: invalid --socket "~\/dspy-o11yd-test-missing\/d\.sock": directory ~\/dspy-o11yd-test-missing does not exist \(~ is not expanded: a shell does that, an env file does not; give the full path\)$/],
      [['check'], { DSPY_O11YD_SOCKET: '~/d.sock' }, /^dspy-o11yd: invalid --socket \(from DSPY_O11YD_SOCKET\) "~\/d\.sock": directory ~ does not exist \(~ is not expanded/],
    ] as [string[], Record<string, string>, RegExp][]) {
      const r = await runCli(args, env);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr.trim(), pattern);
    }
    // Written right: localhost is loopback (no token), port 0 a free port. ([::1]:0 too, where the
    // machine has IPv6 loopback, which a test cannot count on.)
    const d = await startDaemonProcess(['--socket', '', '--http', 'localhost:0']);
    try {
      assert.match(d.httpUrl, /^http:\/\/(127\.0\.0\.1|\[::1\]):[1-9]\d*$/);
    } finally {
      await d.stop();
    }
  });
});
