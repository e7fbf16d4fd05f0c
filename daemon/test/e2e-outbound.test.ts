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
