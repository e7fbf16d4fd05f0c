/**
 * How the daemon reaches its backend, as users of the OpenTelemetry Collector and the Datadog
 * agent configure it: the configured OTLP protocol, an endpoint without a path. Each case runs the
 * real CLI against servers on 127.0.0.1 that record what reached them.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { runCli, startDaemonProcess, tempDir } from './support/daemon-process.js';

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
  test('check with the otlp exporter sends protobuf when the encoding is protobuf (the default), JSON when it is json', async () => {
    const server = await recorder();
    try {
      const endpoint = ['--otlp-endpoint', `${server.url}/v1/traces`];
      const cases: [string[], Record<string, string>, string][] = [
        [[], {}, 'application/x-protobuf'],
        [['--encoding', 'protobuf'], {}, 'application/x-protobuf'],
        [[], { OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf' }, 'application/x-protobuf'],
        [['--encoding', 'json'], {}, 'application/json'],
      ];
      for (const [flags, env, contentType] of cases) {
        server.hits.length = 0;
        const r = await runCli(['check', ...OTLP, ...endpoint, ...flags], env);
        assert.equal(r.code, 0, r.stdout + r.stderr);
        assert.equal(server.hits.length, 1);
        assert.equal(server.hits[0]!.headers['content-type'], contentType, JSON.stringify({ flags, env }));
        // An empty ExportTraceServiceRequest: no bytes in protobuf, no span in JSON.
        if (contentType === 'application/json') assert.deepEqual(JSON.parse(server.hits[0]!.body.toString('utf8')), { resourceSpans: [] });
        else assert.equal(server.hits[0]!.body.length, 0);
      }
    } finally {
      await server.close();
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
