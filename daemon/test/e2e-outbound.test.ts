/**
 * How the daemon reaches its backend, as users of the OpenTelemetry Collector and the Datadog
 * agent configure it: the configured OTLP protocol, an endpoint without a path, a proxy,
 * a private CA and a client certificate. Each case runs the
 * real CLI against servers on 127.0.0.1 that record what reached them (a forward proxy among them).
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { runCli, sendOverSocket, startDaemonProcess, tempDir } from './support/daemon-process.js';
import { startFakeLangfuse } from './support/fake-langfuse.js';
import { startForwardProxy } from './support/forward-proxy.js';
import { checkCredentials } from '../src/check.js';
import { createOtlpExporter } from '../src/export/http-exporter.js';
import { resolveConfig } from '../src/config.js';
import { createDispatcher } from '../src/export/outbound.js';
import { Pool } from 'undici';

interface Hit {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** An HTTP server on 127.0.0.1 that answers 200 `{}` to everything and records each request. */
async function recorder(): Promise<{ url: string; port: number; hits: Hit[]; close: () => Promise<void> }> {
  const hits: Hit[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      hits.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks) });
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    hits,
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

const tmp = tempDir('dspy-o11yd-outbound-');
after(() => tmp.cleanup());
const OTLP = ['--socket', '', '--http', '127.0.0.1:0', '--exporter', 'otlp'];

describe('check speaks the configured protocol', () => {
  test('check with the otlp exporter sends protobuf when the encoding is protobuf (the default), JSON when it is json, gzipped unless --otlp-compression none, as start does', async () => {
    const server = await recorder();
    try {
      const endpoint = ['--otlp-endpoint', `${server.url}/v1/traces`];
      const cases: [string[], Record<string, string>, string, string | undefined][] = [
        [[], {}, 'application/x-protobuf', 'gzip'],
        [['--encoding', 'protobuf'], {}, 'application/x-protobuf', 'gzip'],
        [[], { OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf' }, 'application/x-protobuf', 'gzip'],
        [['--encoding', 'json'], {}, 'application/json', 'gzip'],
        [['--encoding', 'json', '--otlp-compression', 'none'], {}, 'application/json', undefined],
        [[], { OTEL_EXPORTER_OTLP_COMPRESSION: 'none' }, 'application/x-protobuf', undefined],
      ];
      for (const [flags, env, contentType, contentEncoding] of cases) {
        server.hits.length = 0;
        const r = await runCli(['check', ...OTLP, ...endpoint, ...flags], env);
        assert.equal(r.code, 0, r.stdout + r.stderr);
        assert.equal(server.hits.length, 1);
        const hit = server.hits[0]!;
        assert.equal(hit.headers['content-type'], contentType, JSON.stringify({ flags, env }));
        // A backend that refuses gzip (OpenTelemetry's default is none) must fail check as it fails start.
        assert.equal(hit.headers['content-encoding'], contentEncoding, JSON.stringify({ flags, env }));
        const body = contentEncoding === 'gzip' ? gunzipSync(hit.body) : hit.body;
        // An empty ExportTraceServiceRequest: no bytes in protobuf, no span in JSON.
        if (contentType === 'application/json') assert.deepEqual(JSON.parse(body.toString('utf8')), { resourceSpans: [] });
        else assert.equal(body.length, 0);
      }
    } finally {
      await server.close();
    }
  });

  test('check with the langfuse exporter gzips its body, as start does', async () => {
    const keys = { LANGFUSE_PUBLIC_KEY: 'pk-lf-gz', LANGFUSE_SECRET_KEY: 'sk-lf-gz' };
    const fake = await startFakeLangfuse({ publicKey: keys.LANGFUSE_PUBLIC_KEY, secretKey: keys.LANGFUSE_SECRET_KEY });
    try {
      const r = await runCli(['check', '--socket', '', '--http', '127.0.0.1:0'], { ...keys, LANGFUSE_HOST: fake.url });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.deepEqual(fake.requests.map((q) => [q.contentEncoding, q.status]), [['gzip', 200]]);
    } finally {
      await fake.close();
    }
  });
});

describe('an otlp endpoint without a path', () => {
  test('--otlp-endpoint http://host:port posts to / (the spec), and start warns once naming the URL and /v1/traces', async () => {
    const server = await recorder();
    try {
      const warning = (url: string) => new RegExp(`--otlp-endpoint( \\(from [A-Z_]+\\))? ${url.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} has no path: spans are posted to / .*/v1/traces`);
      for (const [flags, env] of [
        [['--otlp-endpoint', server.url], {}],
        [[], { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${server.url}/` }],
      ] as [string[], Record<string, string>][]) {
        const d = await startDaemonProcess([...OTLP, ...flags], env);
        try {
          const line = await d.waitForLog((l) => l.level === 40 && /has no path/.test(l.msg));
          assert.match(line.msg, warning(`${server.url}/`));
          assert.equal(d.logs.filter((l) => /has no path/.test(l.msg)).length, 1);
        } finally {
          await d.stop();
        }
      }
      // Behaviour unchanged: check posts to /.
      server.hits.length = 0;
      const r = await runCli(['check', ...OTLP, '--otlp-endpoint', server.url]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.deepEqual(server.hits.map((h) => h.url), ['/']);
      // A path, or the base variable (which gets /v1/traces appended), is not warned about.
      for (const env of [{ OTEL_EXPORTER_OTLP_ENDPOINT: server.url }, { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${server.url}/v1/traces` }]) {
        const d = await startDaemonProcess(OTLP, env);
        try {
          assert.equal(d.logs.filter((l) => /has no path/.test(l.msg)).length, 0);
        } finally {
          await d.stop();
        }
        assert.equal(d.logs.filter((l) => /has no path/.test(l.msg)).length, 0);
      }
    } finally {
      await server.close();
    }
  });
});

describe('an outbound proxy from HTTP_PROXY / HTTPS_PROXY / NO_PROXY', () => {
  const KEYS = { LANGFUSE_PUBLIC_KEY: 'pk-lf-proxy', LANGFUSE_SECRET_KEY: 'sk-lf-proxy' };
  const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
  const span = JSON.stringify({ v: 1, type: 'span', traceId: TRACE, spanId: '00f067aa0ba902b7', name: 'via-proxy', startTimeUnixNano: '1732700000000000000', endTimeUnixNano: '1732700000000000005' });
  const score = JSON.stringify({ v: 1, type: 'score', traceId: TRACE, name: 'helpfulness', value: 0.9 });
  const PROXY_PASSWORD = 'proxy-s3cret-pw';
  let n = 0;

  test('spans and scores go to Langfuse through the proxy, with its credentials, which no log line shows; check goes through it too', async () => {
    const fake = await startFakeLangfuse({ publicKey: KEYS.LANGFUSE_PUBLIC_KEY, secretKey: KEYS.LANGFUSE_SECRET_KEY });
    const proxy = await startForwardProxy();
    const socket = join(tmp.dir, `p${n++}.sock`);
    const proxyEnv = { HTTP_PROXY: `http://proxyuser:${PROXY_PASSWORD}@127.0.0.1:${proxy.port}` };
    const basic = `Basic ${Buffer.from(`proxyuser:${PROXY_PASSWORD}`).toString('base64')}`;
    // A name only the test proxy resolves (to 127.0.0.1): loopback itself is never proxied.
    const host = `http://langfuse.invalid:${fake.port}`;
    try {
      const d = await startDaemonProcess(['--socket', socket, '--http', '', '--flush-interval', '10', '--log-level', 'debug'], { ...KEYS, LANGFUSE_HOST: host, ...proxyEnv }, socket);
      try {
        const startup = await d.waitForLog((l) => /listening on/.test(l.msg));
        assert.deepEqual(startup.proxy, { httpProxy: proxy.url });
        await sendOverSocket(socket, [span, score]);
        await fake.waitForSpans(1);
        await fake.waitForScores(1);
      } finally {
        await d.stop();
      }
      assert.deepEqual(
        [...new Set(proxy.seen.map((r) => `${r.method} ${r.target} ${r.proxyAuthorization}`))].sort(),
        [`POST ${host}/api/public/otel/v1/traces ${basic}`, `POST ${host}/api/public/scores ${basic}`].sort(),
      );
      for (const secret of [PROXY_PASSWORD, Buffer.from(`proxyuser:${PROXY_PASSWORD}`).toString('base64')]) assert.ok(!d.stderr.includes(secret), 'the proxy credentials are not logged');

      proxy.seen.length = 0;
      // The lower-case name is read too (curl's and undici's spelling).
      const r = await runCli(['check', '--socket', ''], { ...KEYS, LANGFUSE_HOST: host, http_proxy: proxyEnv.HTTP_PROXY });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.deepEqual(proxy.seen.map((s) => `${s.method} ${s.target}`), [`POST ${host}/api/public/otel/v1/traces`]);
      assert.ok(!(r.stdout + r.stderr).includes(PROXY_PASSWORD));
    } finally {
      await proxy.close();
      await fake.close();
    }
  });

  test('loopback never goes through the proxy, as in Go; NO_PROXY names other hosts that bypass it (a host, a host:port, a domain, *)', async () => {
    const fake = await startFakeLangfuse({ publicKey: KEYS.LANGFUSE_PUBLIC_KEY, secretKey: KEYS.LANGFUSE_SECRET_KEY });
    const proxy = await startForwardProxy();
    try {
      // Langfuse (or a Collector) on this machine, no NO_PROXY: reached directly, as the proxy cannot reach our loopback.
      for (const host of [fake.url, `http://localhost:${fake.port}`]) {
        const socket = join(tmp.dir, `p${n++}.sock`);
        const d = await startDaemonProcess(['--socket', socket, '--http', '', '--flush-interval', '10'], { ...KEYS, LANGFUSE_HOST: host, HTTP_PROXY: proxy.url }, socket);
        try {
          const before = fake.spans.length;
          await sendOverSocket(socket, [span]);
          await fake.waitForSpans(before + 1);
        } finally {
          await d.stop();
        }
      }
      assert.equal(proxy.seen.length, 0, 'nothing went through the proxy');
      // collector.invalid is known to the test proxy only: bypassed, it cannot be reached.
      const check = ['check', ...OTLP, '--otlp-endpoint', `http://collector.invalid:${fake.port}/api/public/otel/v1/traces`, '--otlp-headers', `authorization=${encodeURIComponent(fake.authorization)}`];
      for (const noProxy of ['collector.invalid', `collector.invalid:${fake.port}`, '.invalid', '*.invalid', 'other.test, COLLECTOR.INVALID', '*']) {
        const bypassed = await runCli(check, { HTTP_PROXY: proxy.url, no_proxy: noProxy });
        assert.equal(bypassed.code, 1, bypassed.stdout + bypassed.stderr);
        assert.equal(proxy.seen.length, 0, `NO_PROXY=${noProxy}: nothing went through the proxy`);
      }
      // Another host, or the host on another port: the proxy is used.
      for (const noProxy of ['other.invalid', 'collector.invalid:1']) {
        proxy.seen.length = 0;
        const proxied = await runCli(check, { HTTP_PROXY: proxy.url, NO_PROXY: noProxy });
        assert.equal(proxied.code, 0, proxied.stdout + proxied.stderr);
        assert.deepEqual(proxy.seen.map((s) => s.target), [`http://collector.invalid:${fake.port}/api/public/otel/v1/traces`]);
      }
    } finally {
      await proxy.close();
      await fake.close();
    }
  });

  test('a bare IPv6 address in NO_PROXY, as Go reads it, is compared as the bracketed host a URL holds', () => {
    const config = resolveConfig({ socket: '', exporter: 'otlp', otlpEndpoint: 'http://[fd00::1]:4318/v1/traces' }, { HTTP_PROXY: 'http://127.0.0.1:3128', NO_PROXY: 'fd00::1, .corp [fd00::2]:4318,::ffff:a00:1' });
    assert.equal(config.outbound.proxy?.noProxy, '[fd00::1],.corp,[fd00::2]:4318,[::ffff:a00:1]');
  });

  test('a CIDR range in NO_PROXY (10.0.0.0/8, as Go reads it) bypasses the proxy for a destination written as an IP address in it', async () => {
    const env = { HTTP_PROXY: 'http://127.0.0.1:3128', NO_PROXY: 'other.test, 10.0.0.0/8 fd00::/8' };
    // The decision only: no request is sent (a bypassed one would leave this machine).
    const dispatcherFor = (endpoint: string) => {
      const config = resolveConfig({ socket: '', exporter: 'otlp', otlpEndpoint: endpoint }, env);
      return createDispatcher(new URL(endpoint).origin, config.outbound, { connections: 1 });
    };
    for (const [endpoint, direct] of [['http://10.1.2.3:4318', true], ['http://[fd00::5]:4318', true], ['http://192.0.2.1:4318', false], ['http://collector.test:4318', false]] as const) {
      const dispatcher = dispatcherFor(endpoint);
      try {
        assert.equal(dispatcher instanceof Pool, direct, `${endpoint}: ${direct ? 'direct' : 'through the proxy'}`);
      } finally {
        await dispatcher.close();
      }
    }
  });

  test('the startup line shows no proxy where none is used: a loopback destination, an https one with HTTP_PROXY alone', async () => {
    for (const [endpoint, env] of [
      ['http://127.0.0.1:9/v1/traces', { HTTP_PROXY: 'http://127.0.0.1:3128' }],
      ['https://collector.invalid:9/v1/traces', { HTTP_PROXY: 'http://127.0.0.1:3128' }],
    ] as const) {
      const socket = join(tmp.dir, `p${n++}.sock`);
      const d = await startDaemonProcess(['--socket', socket, '--http', '', '--exporter', 'otlp', '--otlp-endpoint', endpoint], env, socket);
      try {
        const startup = await d.waitForLog((l) => /listening on/.test(l.msg));
        assert.equal(startup.proxy, undefined, endpoint);
      } finally {
        await d.stop();
      }
    }
  });

  test('an IP address in NO_PROXY matches the destination\'s address however either is written (zeros, case), as Go compares them', async () => {
    for (const [endpoint, noProxy] of [['http://[fd00::1]:4318', 'fd00:0:0::1'], ['http://[fd00::1]:4318', '[fd00:0::0:1]:4318'], ['http://[fd00:0::1]:4318', 'FD00::1']] as const) {
      const config = resolveConfig({ socket: '', exporter: 'otlp', otlpEndpoint: endpoint }, { HTTP_PROXY: 'http://127.0.0.1:3128', NO_PROXY: noProxy });
      const dispatcher = createDispatcher(new URL(endpoint).origin, config.outbound, { connections: 1 });
      try {
        assert.ok(dispatcher instanceof Pool, `${endpoint} with NO_PROXY=${noProxy}: direct`);
      } finally {
        await dispatcher.close();
      }
    }
  });

  test('an IPv6 address in NO_PROXY written long or in capitals still matches, as Go compares the addresses', () => {
    const config = resolveConfig({ socket: '', exporter: 'otlp', otlpEndpoint: 'http://[fd00::1]:4318/v1/traces' }, { HTTP_PROXY: 'http://127.0.0.1:3128', NO_PROXY: 'FD00:0:0:0:0:0:0:1,[FD00:0::2]:4318' });
    // undici compares NO_PROXY entries with the URL's host as strings: the URL's is canonical, so the entry must be.
    assert.equal(config.outbound.proxy?.noProxy, '[fd00::1],[fd00::2]:4318');
  });

  test('a proxy URL with a user name and no password (a token) sends it, as Go and curl do, and no line shows it', async () => {
    const TOKEN = 'proxy-token-s3cret';
    const backend = await recorder();
    const proxy = await startForwardProxy({ auth: `Basic ${Buffer.from(`${TOKEN}:`).toString('base64')}` });
    try {
      const r = await runCli(['check', ...OTLP, '--otlp-endpoint', `http://collector.invalid:${backend.port}/v1/traces`], { HTTP_PROXY: `http://${TOKEN}@127.0.0.1:${proxy.port}` });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.equal(backend.hits.length, 1);
      assert.ok(!(r.stdout + r.stderr).includes(TOKEN));
      const refused = await runCli(['check', ...OTLP, '--otlp-endpoint', 'http://collector.invalid:9/v1/traces'], { HTTP_PROXY: `http://${TOKEN}x@127.0.0.1:${proxy.port}` });
      assert.equal(refused.code, 1, refused.stdout + refused.stderr);
      assert.ok(!(refused.stdout + refused.stderr).includes(TOKEN), refused.stdout);
    } finally {
      await proxy.close();
      await backend.close();
    }
  });

  test("a proxy's error page that echoes the request's headers is shown without the proxy's credentials", async () => {
    const proxy = await startForwardProxy({ refuse: true });
    try {
      const r = await runCli(['check', ...OTLP, '--otlp-endpoint', 'http://collector.invalid:9/v1/traces'], { HTTP_PROXY: `http://proxyuser:${PROXY_PASSWORD}@127.0.0.1:${proxy.port}` });
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.match(r.stdout, /answered 502: forward-proxy: upstream unreachable; your request: .*proxy-authorization.*\[REDACTED\]/);
      for (const secret of [PROXY_PASSWORD, Buffer.from(`proxyuser:${PROXY_PASSWORD}`).toString('base64')]) assert.ok(!r.stdout.includes(secret), r.stdout);
    } finally {
      await proxy.close();
    }
  });

  test('an https destination uses HTTPS_PROXY only, as Go does: with HTTP_PROXY alone it is reached directly', async () => {
    const proxy = await startForwardProxy();
    try {
      const r = await runCli(['check', ...OTLP, '--otlp-endpoint', 'https://collector.invalid:9/v1/traces'], { HTTP_PROXY: proxy.url });
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.equal(proxy.seen.length, 0, 'nothing went through the proxy');
    } finally {
      await proxy.close();
    }
  });

  test('check through a proxy that cannot be reached names the proxy, not the destination, as what refused', async () => {
    // A port just closed: nothing listens there.
    const closed = createNetServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const r = await runCli(['check', ...OTLP, '--otlp-endpoint', 'http://collector.invalid:9/v1/traces'], { HTTP_PROXY: `http://proxyuser:${PROXY_PASSWORD}@127.0.0.1:${port}` });
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`collector\\.invalid:9/v1/traces is unreachable through the proxy http://127\\.0\\.0\\.1:${port}: .*ECONNREFUSED`));
    assert.ok(!r.stdout.includes(PROXY_PASSWORD) && !r.stdout.includes('proxyuser'), r.stdout);
  });

  test('check through a proxy that refuses its credentials (407) says so, not that the backend is unreachable', async () => {
    const proxy = await startForwardProxy({ auth: `Basic ${Buffer.from('proxyuser:right').toString('base64')}` });
    try {
      for (const [endpoint, env] of [
        ['http://collector.invalid:9/v1/traces', { HTTP_PROXY: `http://proxyuser:wrong@127.0.0.1:${proxy.port}` }],
        ['https://collector.invalid:9/v1/traces', { HTTPS_PROXY: `http://proxyuser:wrong@127.0.0.1:${proxy.port}` }],
      ] as const) {
        const r = await runCli(['check', ...OTLP, '--otlp-endpoint', endpoint], env);
        assert.equal(r.code, 1, r.stdout + r.stderr);
        assert.doesNotMatch(r.stdout, /unreachable/, endpoint);
        assert.match(r.stdout, /407 Proxy Authentication Required.*HTTPS_PROXY \/ HTTP_PROXY/, endpoint);
      }
    } finally {
      await proxy.close();
    }
  });

  test('a proxy that refuses its credentials (407) refuses the batch for good, as a 401 does: not retried, and /readyz is 503', async () => {
    const proxy = await startForwardProxy({ auth: `Basic ${Buffer.from('proxyuser:right').toString('base64')}` });
    const wrong = `http://proxyuser:wrong@127.0.0.1:${proxy.port}`;
    try {
      // An http destination (absolute-URI request) and an https one (CONNECT): undici reports each 407 as an error of its own.
      for (const [endpoint, outbound] of [
        ['http://collector.invalid:1/v1/traces', { proxy: { httpProxy: wrong } }],
        ['https://collector.invalid:1/v1/traces', { proxy: { httpsProxy: wrong } }],
      ] as const) {
        const exporter = createOtlpExporter({ endpoint, outbound });
        try {
          const outcome = await exporter.send([], AbortSignal.timeout(10_000));
          assert.equal(outcome.kind, 'refused', `${endpoint}: ${JSON.stringify(outcome)}`);
          assert.equal(outcome.kind === 'refused' && outcome.status, 407);
        } finally {
          await exporter.close();
        }
      }
      const socket = join(tmp.dir, `p${n++}.sock`);
      const d = await startDaemonProcess(['--socket', socket, '--http', '127.0.0.1:0', '--exporter', 'otlp', '--otlp-endpoint', 'http://collector.invalid:1/v1/traces', '--flush-interval', '10'], { HTTP_PROXY: wrong }, socket);
      try {
        await sendOverSocket(socket, [span]);
        await d.eventually(async () => {
          const ready = await fetch(`${d.httpUrl}/readyz`);
          assert.equal(ready.status, 503);
          // The proxy refused, not the backend (which never saw the batch).
          assert.match(((await ready.json()) as { reason: string }).reason, /^the proxy refused: 407 /);
        });
        const status = (await (await fetch(`${d.httpUrl}/v1/status`)).json()) as { spans: { dropped: Record<string, number> } };
        assert.equal(status.spans.dropped.rejected, 1, JSON.stringify(status.spans.dropped));
        assert.ok(!d.stderr.includes('wrong@'), 'the proxy credentials are not logged');
      } finally {
        await d.stop();
      }
    } finally {
      await proxy.close();
    }
  });

  test('through the proxy, an http destination keeps its connection alive between batches, as it does directly', async () => {
    const backend = await recorder();
    const proxy = await startForwardProxy();
    const exporter = createOtlpExporter({ endpoint: `http://collector.invalid:${backend.port}/v1/traces`, outbound: { proxy: { httpProxy: proxy.url } } });
    try {
      assert.equal((await exporter.send([], AbortSignal.timeout(10_000))).kind, 'delivered');
      // Idle longer than undici's default keep-alive (4 s), well within the exporter's (30 s).
      await new Promise((resolve) => setTimeout(resolve, 4_500));
      assert.equal((await exporter.send([], AbortSignal.timeout(10_000))).kind, 'delivered');
      assert.equal(backend.hits.length, 2);
      assert.equal(proxy.connections(), 1, 'one connection to the proxy, kept alive');
    } finally {
      await exporter.close();
      await proxy.close();
      await backend.close();
    }
  });

  test('a proxy that never answers a CONNECT: the export timeout still ends the request, and close() ends the rest', { timeout: 30_000 }, async () => {
    // Accepts connections, answers nothing (an overloaded proxy, a firewall that drops).
    const held = new Set<Socket>();
    const silent = createNetServer((s) => void held.add(s.on('error', () => {})));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const exporter = createOtlpExporter({ endpoint: 'https://collector.invalid:1/v1/traces', outbound: { proxy: { httpsProxy: `http://127.0.0.1:${(silent.address() as AddressInfo).port}` } } });
    try {
      assert.deepEqual(await exporter.send([], AbortSignal.timeout(200)), { kind: 'retryable', reason: 'timeout' });
      const r = await runCli(['check', ...OTLP, '--otlp-endpoint', 'https://collector.invalid:1/v1/traces', '--export-timeout', '200'], { HTTPS_PROXY: `http://127.0.0.1:${(silent.address() as AddressInfo).port}` });
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.match(r.stdout, /unreachable/);
    } finally {
      await exporter.close();
      for (const s of held) s.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  test('a proxy variable that is no http(s) URL is one line naming it, without its credentials, and exit 2', async () => {
    for (const [env, pattern] of [
      [{ HTTPS_PROXY: 'socks5://user:pw-s3cret@127.0.0.1:1080' }, /^dspy-o11yd: invalid HTTPS_PROXY "socks5:\/\/\*\*\*@127\.0\.0\.1:1080": must be an http:\/\/ or https:\/\/ proxy URL/],
      [{ http_proxy: 'http://[bad' }, /^dspy-o11yd: invalid http_proxy "http:\/\/\[bad": not a valid URL/],
    ] as [Record<string, string>, RegExp][]) {
      const r = await runCli(['check', ...OTLP, '--otlp-endpoint', 'http://127.0.0.1:9/v1/traces'], env);
      assert.equal(r.code, 2, r.stdout + r.stderr);
      assert.match(r.stderr, pattern);
      assert.ok(!r.stderr.includes('pw-s3cret'));
      // A console daemon sends nothing over HTTP: the machine's proxy settings do not concern it.
      const quiet = await runCli(['check', '--socket', '', '--exporter', 'console'], env);
      assert.equal(quiet.code, 0, quiet.stdout + quiet.stderr);
    }
  });
});

/**
 * Self-signed certificates (each its own CA) for 127.0.0.1 and collector.invalid (a name the test
 * proxy knows), valid until 2126, kept in test/fixtures/tls so that no test needs openssl. Made by
 * `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 36500
 * -subj /CN=<name> -addext subjectAltName=IP:127.0.0.1,DNS:collector.invalid`. Test keys only.
 */
const TLS_FIXTURES = fileURLToPath(new URL('../../test/fixtures/tls/', import.meta.url));
const fixtureCert = (name: string) => ({ cert: join(TLS_FIXTURES, `${name}.crt`), key: join(TLS_FIXTURES, `${name}.key`) });

describe('TLS of the otlp exporter from OTEL_EXPORTER_OTLP_*CERTIFICATE and *CLIENT_KEY', () => {
  test('a proxy that held CONNECTs and answers again: the connections it held do not keep later exports waiting', { timeout: 60_000 }, async () => {
    const backend = createHttpsServer({ cert: readFileSync(server.cert), key: readFileSync(server.key) }, (req, res) => {
      req.resume().on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('{}'));
    });
    await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve));
    const port = (backend.address() as AddressInfo).port;
    // Holds the first two CONNECTs unanswered: as many as the exporter's connections.
    const proxy = await startForwardProxy({ holdConnects: 2 });
    const exporter = createOtlpExporter({
      endpoint: `https://collector.invalid:${port}/v1/traces`,
      outbound: { proxy: { httpsProxy: proxy.url }, tls: { ca: readFileSync(server.cert, 'utf8') } },
    });
    try {
      assert.deepEqual(await exporter.send([], AbortSignal.timeout(200)), { kind: 'retryable', reason: 'timeout' });
      assert.deepEqual(await exporter.send([], AbortSignal.timeout(200)), { kind: 'retryable', reason: 'timeout' });
      // The proxy answers again: well within a generous export timeout, the next export gets through.
      assert.deepEqual(await exporter.send([], AbortSignal.timeout(40_000)), { kind: 'delivered' });
    } finally {
      await exporter.close();
      await proxy.close();
      backend.closeAllConnections();
      await new Promise((resolve) => backend.close(resolve));
    }
  });

  const server = fixtureCert('server');
  const client = fixtureCert('client');
  const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
  const span = JSON.stringify({ v: 1, type: 'span', traceId: TRACE, spanId: '00f067aa0ba902c1', name: 'over-mtls', startTimeUnixNano: '1732700000000000000', endTimeUnixNano: '1732700000000000005' });

  test('an https backend with a private CA that asks for a client certificate: check and spans get through, directly and through an HTTPS_PROXY tunnel', async () => {
    const hits: { url: string; clientCN: string | undefined }[] = [];
    const backend = createHttpsServer({ cert: readFileSync(server.cert), key: readFileSync(server.key), ca: readFileSync(client.cert), requestCert: true, rejectUnauthorized: true }, (req, res) => {
      req.resume().on('end', () => {
        const peer = (req.socket as TLSSocket).getPeerCertificate();
        hits.push({ url: req.url ?? '', clientCN: typeof peer.subject?.CN === 'string' ? peer.subject.CN : undefined });
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve));
    const endpoint = `https://127.0.0.1:${(backend.address() as AddressInfo).port}/v1/traces`;
    const proxy = await startForwardProxy();
    const tlsEnv = { OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE: server.cert, OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE: client.cert, OTEL_EXPORTER_OTLP_CLIENT_KEY: client.key };
    try {
      // Without the CA the backend's certificate is not trusted: check says so.
      const untrusted = await runCli(['check', ...OTLP, '--otlp-endpoint', endpoint]);
      assert.equal(untrusted.code, 1, untrusted.stdout + untrusted.stderr);
      assert.equal(hits.length, 0);
      // The CA without the client certificate: the backend refuses the handshake.
      const noClientCert = await runCli(['check', ...OTLP, '--otlp-endpoint', endpoint], { OTEL_EXPORTER_OTLP_CERTIFICATE: server.cert });
      assert.equal(noClientCert.code, 1, noClientCert.stdout + noClientCert.stderr);
      assert.equal(hits.length, 0);

      const ok = await runCli(['check', ...OTLP, '--otlp-endpoint', endpoint], tlsEnv);
      assert.equal(ok.code, 0, ok.stdout + ok.stderr);
      assert.deepEqual(hits, [{ url: '/v1/traces', clientCN: 'client' }]);

      const port = (backend.address() as AddressInfo).port;
      for (const [env, to] of [[tlsEnv, endpoint], [{ ...tlsEnv, HTTPS_PROXY: proxy.url }, `https://collector.invalid:${port}/v1/traces`]] as const) {
        hits.length = 0;
        const socket = join(tmp.dir, `t${hits.length}${Object.keys(env).length}.sock`);
        const d = await startDaemonProcess(['--socket', socket, '--http', '', '--exporter', 'otlp', '--otlp-endpoint', to, '--flush-interval', '10'], env, socket);
        try {
          await sendOverSocket(socket, [span]);
          await d.eventually(() => assert.deepEqual(hits, [{ url: '/v1/traces', clientCN: 'client' }]));
        } finally {
          await d.stop();
        }
      }
      assert.deepEqual(proxy.seen.map((s) => `${s.method} ${s.target}`), [`CONNECT collector.invalid:${port}`]);
    } finally {
      await proxy.close();
      backend.closeAllConnections();
      await new Promise((resolve) => backend.close(resolve));
    }
  });

  test('a TLS file that is missing, unreadable as PEM, or a client certificate without its key: one line naming the variable, exit 2', async () => {
    const garbage = join(tmp.dir, 'garbage.pem');
    writeFileSync(garbage, 'not a certificate\n');
    const missing = join(tmp.dir, 'missing.pem');
    const cases: [Record<string, string>, RegExp][] = [
      [{ OTEL_EXPORTER_OTLP_CERTIFICATE: missing }, /^dspy-o11yd: invalid OTEL_EXPORTER_OTLP_CERTIFICATE ".*missing\.pem": cannot read the file \(ENOENT\)\n$/],
      [{ OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY: missing, OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE: garbage }, /^dspy-o11yd: invalid OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY ".*missing\.pem": cannot read the file \(ENOENT\)\n$/],
      [{ OTEL_EXPORTER_OTLP_CERTIFICATE: garbage }, /^dspy-o11yd: invalid OTEL_EXPORTER_OTLP_CERTIFICATE ".*garbage\.pem": not a PEM certificate/],
      [{ OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE: garbage }, /^dspy-o11yd: invalid OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE ".*garbage\.pem": needs OTEL_EXPORTER_OTLP_CLIENT_KEY \(or OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY\) too/],
      [{ OTEL_EXPORTER_OTLP_CLIENT_KEY: garbage }, /^dspy-o11yd: invalid OTEL_EXPORTER_OTLP_CLIENT_KEY ".*garbage\.pem": needs OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE/],
    ];
    if (server && client) {
      cases.push([{ OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE: client.cert, OTEL_EXPORTER_OTLP_CLIENT_KEY: server.key }, /^dspy-o11yd: invalid OTEL_EXPORTER_OTLP_CLIENT_KEY ".*server\.key": not the key of the client certificate/]);
    }
    for (const [env, pattern] of cases) {
      for (const command of ['check', 'start']) {
        const r = await runCli([command, ...OTLP, '--otlp-endpoint', 'https://127.0.0.1:9/v1/traces'], env);
        assert.equal(r.code, 2, `${command} ${JSON.stringify(env)}: ${r.stdout}${r.stderr}`);
        assert.match(r.stderr, pattern);
      }
    }
    // Like the other OTEL_EXPORTER_OTLP_* variables, they do not concern another exporter.
    const lf = await runCli(['check', '--socket', '', '--exporter', 'console'], { OTEL_EXPORTER_OTLP_CERTIFICATE: missing });
    assert.equal(lf.code, 0, lf.stdout + lf.stderr);
  });
});

describe("the test machine's own proxy variables", () => {
  test('reach neither the daemons the harness starts nor an exporter built in-process: only the configuration routes through a proxy', async () => {
    const proxy = await startForwardProxy();
    const saved = { HTTP_PROXY: process.env.HTTP_PROXY, HTTPS_PROXY: process.env.HTTPS_PROXY, NO_PROXY: process.env.NO_PROXY };
    // A working proxy that alone knows collector.invalid: a request that reached it would succeed.
    Object.assign(process.env, { HTTP_PROXY: proxy.url, HTTPS_PROXY: proxy.url, NO_PROXY: '' });
    const endpoint = `http://collector.invalid:${proxy.port}/v1/traces`;
    try {
      const config = resolveConfig({ socket: '', exporter: 'otlp', otlpEndpoint: endpoint }, {});
      assert.deepEqual(config.outbound, {});
      assert.equal((await checkCredentials(config)).ok, false);
      const r = await runCli(['check', ...OTLP, '--otlp-endpoint', endpoint]);
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.deepEqual(proxy.seen, []);
    } finally {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
      await proxy.close();
    }
  });
});
