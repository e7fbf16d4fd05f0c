/**
 * POST /v1/ingest body handling: content codings, media type case, per-record limits in JSON
 * arrays, unparseable bodies (and the OTLP routes' refusals, counted alike); blank lines in
 * NDJSON, there and on the Unix socket.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { join } from 'node:path';
import { deflateRawSync, deflateSync, gzipSync } from 'node:zlib';
import { sendOverSocket, startDaemonProcess, tempDir, type DaemonProcess } from './support/daemon-process.js';
import { startFakeLangfuse } from './support/fake-langfuse.js';

const span = (id: string, name = 'http-ingest') =>
  JSON.stringify({ v: 1, type: 'span', traceId: 'c'.repeat(32), spanId: id, name, startTimeUnixNano: '1732700000000000000', endTimeUnixNano: '1732700000000000005' });

describe('POST /v1/ingest bodies', () => {
  let d: DaemonProcess;
  before(async () => {
    d = await startDaemonProcess(['--socket', '', '--http', '127.0.0.1:0', '--exporter', 'console', '--max-record-bytes', '1024'], {});
  });
  after(() => d.stop());

  const post = async (body: Buffer | string, headers: Record<string, string>) => {
    const res = await fetch(`${d.httpUrl}/v1/ingest`, { method: 'POST', headers, body });
    return { status: res.status, body: (await res.json()) as { accepted?: number; rejected?: number; errors?: { index: number; message: string }[]; error?: string } };
  };

  test('gzip and deflate bodies are inflated; other content codings are 415', async () => {
    const ndjson = `${span('c000000000000001')}\n${span('c000000000000002')}\n`;
    const json = `[${span('c000000000000003')},${span('c000000000000004')}]`;
    const nd = { 'content-type': 'application/x-ndjson' };
    const js = { 'content-type': 'application/json' };
    for (const [body, headers] of [
      [gzipSync(ndjson), { ...nd, 'content-encoding': 'gzip' }],
      [gzipSync(json), { ...js, 'content-encoding': 'GZIP' }],
      [deflateSync(ndjson), { ...nd, 'content-encoding': 'deflate' }],
      [deflateRawSync(json), { ...js, 'content-encoding': 'deflate' }],
      [Buffer.from(ndjson), { ...nd, 'content-encoding': 'identity' }],
    ] as const) {
      const r = await post(body, headers);
      assert.equal(r.status, 202, `${JSON.stringify(headers)}: ${JSON.stringify(r.body)}`);
      assert.deepEqual({ accepted: r.body.accepted, rejected: r.body.rejected }, { accepted: 2, rejected: 0 }, JSON.stringify(headers));
    }
    const br = await post(ndjson, { ...nd, 'content-encoding': 'br' });
    assert.equal(br.status, 415);
    assert.match(br.body.error ?? '', /content-encoding/);
    const corrupt = await post(Buffer.from('not gzip at all'), { ...nd, 'content-encoding': 'gzip' });
    assert.equal(corrupt.status, 400);
    // A bomb: small on the wire, past the body limit (32 MiB) once inflated.
    const bomb = await post(gzipSync(Buffer.alloc(33 * 1024 * 1024, 0x20)), { ...nd, 'content-encoding': 'gzip' });
    assert.equal(bomb.status, 413);
  });

  test('bodies refused whole are counted: by our routes (coding, inflation) and by Fastify (body limit, media type)', async () => {
    const invalid = (transport: string, reason: string) => d.metric('dspy_o11yd_records_invalid_total', { transport, reason });
    const before = {
      body: await invalid('http', 'invalid_body'),
      large: await invalid('http', 'too_large'),
      otlp: await invalid('otlp', 'invalid_otlp'),
      otlpLarge: await invalid('otlp', 'too_large'),
    };
    const nd = { 'content-type': 'application/x-ndjson' };
    assert.equal((await post(Buffer.from('not gzip at all'), { ...nd, 'content-encoding': 'gzip' })).status, 400);
    assert.equal((await post('x', { ...nd, 'content-encoding': 'br' })).status, 415);
    // Fastify answers these before the route runs.
    assert.equal((await fetch(`${d.httpUrl}/v1/ingest`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'x' })).status, 415);
    // A declared length past the limit is refused on the header alone, before the body is read.
    const declaredTooLong = (path: string, contentType: string) =>
      new Promise<number>((resolve, reject) => {
        const req = request(`${d.httpUrl}${path}`, { method: 'POST', headers: { 'content-type': contentType, 'content-length': String(33 * 1024 * 1024) } }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
          req.destroy();
        });
        req.on('error', reject);
        req.write('x');
      });
    assert.equal(await declaredTooLong('/v1/ingest', nd['content-type']), 413);
    assert.equal((await fetch(`${d.httpUrl}/v1/traces`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'x' })).status, 415);
    // Langfuse's OTLP path is the same route: refused and counted the same.
    assert.equal((await fetch(`${d.httpUrl}/api/public/otel/v1/traces`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'x' })).status, 415);
    assert.equal(await declaredTooLong('/api/public/otel/v1/traces', 'application/x-protobuf'), 413);
    assert.equal((await invalid('http', 'invalid_body')) - before.body, 3);
    assert.equal((await invalid('http', 'too_large')) - before.large, 1);
    assert.equal((await invalid('otlp', 'invalid_otlp')) - before.otlp, 2);
    assert.equal((await invalid('otlp', 'too_large')) - before.otlpLarge, 1);
  });

  test('an OTLP protobuf body (an OpenTelemetry exporter pointed at /v1/ingest) is 415, not read as NDJSON lines', async () => {
    // A 202 told the exporter its spans were delivered; they were counted as lines of invalid JSON.
    const invalid = (reason: string) => d.metric('dspy_o11yd_records_invalid_total', { transport: 'http', reason });
    const before = { body: await invalid('invalid_body'), json: await invalid('invalid_json') };
    // ExportTraceServiceRequest { resource_spans { resource { attributes { key: "service" … } } } }
    const pb = Buffer.from([0x0a, 0x10, 0x0a, 0x0e, 0x0a, 0x0c, 0x0a, 0x0a, 0x0a, 0x07, ...Buffer.from('service'), 0x12, 0x00]);
    const res = await fetch(`${d.httpUrl}/v1/ingest`, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body: pb });
    assert.equal(res.status, 415, await res.text());
    // Also under the other media type the OTLP spec allows (the /v1/traces route reads both).
    const other = await fetch(`${d.httpUrl}/v1/ingest`, { method: 'POST', headers: { 'content-type': 'application/protobuf' }, body: pb });
    assert.equal(other.status, 415, await other.text());
    assert.equal((await invalid('invalid_body')) - before.body, 2);
    assert.equal(await invalid('invalid_json'), before.json);
  });

  test('an OTLP/JSON body ({"resourceSpans": …}) posted to /v1/ingest is 415 naming /v1/traces, not one invalid record in a 202', async () => {
    // A 202 told the exporter its spans were delivered; they were one `unsupported_version` record.
    const invalid = (reason: string) => d.metric('dspy_o11yd_records_invalid_total', { transport: 'http', reason });
    const before = { body: await invalid('invalid_body'), version: await invalid('unsupported_version') };
    const otlp = JSON.stringify({
      resourceSpans: [{ scopeSpans: [{ spans: [{ traceId: 'e'.repeat(32), spanId: 'e000000000000001', name: 'otel', startTimeUnixNano: '1732700000000000000', endTimeUnixNano: '1732700000000000005' }] }] }],
    });
    const r = await post(otlp, { 'content-type': 'application/json' });
    assert.equal(r.status, 415, JSON.stringify(r.body));
    assert.match(r.body.error ?? '', /\/v1\/traces/);
    const gz = await post(gzipSync(otlp), { 'content-type': 'application/json', 'content-encoding': 'gzip' });
    assert.equal(gz.status, 415, JSON.stringify(gz.body));
    assert.equal((await invalid('invalid_body')) - before.body, 2);
    assert.equal(await invalid('unsupported_version'), before.version);
    // The protobuf case names the right path too, in the same answer shape as every refusal here.
    const pb = await fetch(`${d.httpUrl}/v1/ingest`, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body: Buffer.from([0x0a, 0x00]) });
    assert.equal(pb.status, 415);
    assert.match(((await pb.json()) as { error?: string }).error ?? '', /\/v1\/traces/);
    // A native record that merely has a field of that name is still a record.
    const own = await post(JSON.stringify({ ...JSON.parse(span('c00000000000000f')), resourceSpans: [] }), { 'content-type': 'application/json' });
    assert.equal(own.status, 202);
    assert.equal(own.body.accepted, 1);
  });

  test("Langfuse's OTLP path with an exporter other than langfuse: Basic credentials are not checked (no project to compare them with)", async () => {
    const before = await d.metric('dspy_o11yd_records_received_total', { transport: 'otlp', type: 'span' });
    const body = JSON.stringify({
      resourceSpans: [{ scopeSpans: [{ spans: [{ traceId: 'd'.repeat(32), spanId: 'd000000000000001', name: 'via-langfuse-path', startTimeUnixNano: '1732700000000000000', endTimeUnixNano: '1732700000000000005' }] }] }],
    });
    const authorization = `Basic ${Buffer.from('pk-lf-any:sk-lf-any').toString('base64')}`;
    const res = await fetch(`${d.httpUrl}/api/public/otel/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/json', authorization }, body });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), {});
    assert.equal(await d.metric('dspy_o11yd_records_received_total', { transport: 'otlp', type: 'span' }), before + 1);
  });

  test('invalid UTF-8 is refused as OTLP/JSON refuses it: an NDJSON line counts invalid_json, a JSON body is 400', async () => {
    // Replaced by U+FFFD, the record was accepted with text its sender never wrote (DESIGN §2: UTF-8).
    const invalidJson = () => d.metric('dspy_o11yd_records_invalid_total', { transport: 'http', reason: 'invalid_json' });
    const before = await invalidJson();
    const good = span('c000000000000010', 'caf\u00e9');
    const [head, tail] = span('c000000000000011', 'NAME').split('NAME') as [string, string];
    const bad = Buffer.concat([Buffer.from(head), Buffer.from([0x63, 0xff, 0xfe, 0x64]), Buffer.from(tail)]);
    const r = await post(Buffer.concat([Buffer.from(good + '\n'), bad, Buffer.from('\n')]), { 'content-type': 'application/x-ndjson' });
    assert.equal(r.status, 202);
    assert.deepEqual({ accepted: r.body.accepted, rejected: r.body.rejected }, { accepted: 1, rejected: 1 });
    assert.equal(r.body.errors![0]!.index, 1);
    assert.match(r.body.errors![0]!.message, /invalid_json: .*UTF-8/);
    const json = await post(Buffer.concat([Buffer.from('['), bad, Buffer.from(']')]), { 'content-type': 'application/json' });
    assert.equal(json.status, 400);
    assert.match(json.body.error ?? '', /UTF-8/);
    assert.equal((await invalidJson()) - before, 2);
  });

  test('the JSON media type is matched case-insensitively', async () => {
    const r = await post(`[${span('c000000000000005')},${span('c000000000000006')}]`, { 'content-type': 'Application/JSON; charset=utf-8' });
    assert.equal(r.status, 202);
    assert.deepEqual({ accepted: r.body.accepted, rejected: r.body.rejected }, { accepted: 2, rejected: 0 });
  });

  test('a record of a JSON array over --max-record-bytes is rejected even when the average is under it', async () => {
    const big = span('c000000000000007', 'x'.repeat(1500));
    const small = ['c000000000000008', 'c000000000000009', 'c00000000000000a', 'c00000000000000b'].map((id) => span(id));
    const body = `[${[big, ...small].join(',')}]`;
    assert.ok(body.length / 5 < 1024, 'the average is under the limit');
    const before = await d.metric('dspy_o11yd_records_invalid_total', { transport: 'http', reason: 'too_large' });
    const r = await post(body, { 'content-type': 'application/json' });
    assert.equal(r.status, 202);
    assert.deepEqual({ accepted: r.body.accepted, rejected: r.body.rejected }, { accepted: 4, rejected: 1 });
    assert.equal(r.body.errors![0]!.index, 0);
    assert.match(r.body.errors![0]!.message, /too_large/);
    assert.equal(await d.metric('dspy_o11yd_records_invalid_total', { transport: 'http', reason: 'too_large' }), before + 1);
  });

  test('a record of a JSON array nested too deep to measure is rejected as too_large; the records after it are read', async () => {
    // Past --max-record-bytes (1024) each record is measured with JSON.stringify, which overflowed
    // the stack on this one: a 500 that lost the records after it, uncounted.
    const deep = `{"v":1,"type":"span","x":${'['.repeat(10_000)}${']'.repeat(10_000)}}`;
    const body = `[${span('c00000000000000c')},${deep},${span('c00000000000000d')}]`;
    const before = await d.metric('dspy_o11yd_records_invalid_total', { transport: 'http', reason: 'too_large' });
    const r = await post(body, { 'content-type': 'application/json' });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    assert.deepEqual({ accepted: r.body.accepted, rejected: r.body.rejected }, { accepted: 2, rejected: 1 });
    assert.equal(r.body.errors![0]!.index, 1);
    assert.match(r.body.errors![0]!.message, /^too_large: record nested too deep/);
    assert.equal(await d.metric('dspy_o11yd_records_invalid_total', { transport: 'http', reason: 'too_large' }), before + 1);
  });

  test('a UTF-8 BOM before a JSON or NDJSON body is ignored, as Fastify\'s JSON parser and the OTLP/JSON route do', async () => {
    // Windows editors and PowerShell's utf8 write one: the first record (or a JSON body whole) was lost to it.
    const bom = Buffer.from([0xef, 0xbb, 0xbf]);
    const json = await post(Buffer.concat([bom, Buffer.from(`[${span('c00000000000000e')}]`)]), { 'content-type': 'application/json' });
    assert.equal(json.status, 202, JSON.stringify(json.body));
    assert.deepEqual({ accepted: json.body.accepted, rejected: json.body.rejected }, { accepted: 1, rejected: 0 });
    const nd = await post(Buffer.concat([bom, Buffer.from(`${span('c00000000000000f')}\r\n${span('c000000000000010')}\r\n`)]), { 'content-type': 'application/x-ndjson' });
    assert.equal(nd.status, 202);
    assert.deepEqual({ accepted: nd.body.accepted, rejected: nd.body.rejected, errors: nd.body.errors }, { accepted: 2, rejected: 0, errors: [] });
  });

  test('an unparseable JSON body is 400 and counted as invalid_json', async () => {
    const before = await d.metric('dspy_o11yd_records_invalid_total', { transport: 'http', reason: 'invalid_json' });
    const r = await post('{"v":1,', { 'content-type': 'application/json' });
    assert.equal(r.status, 400);
    assert.match(r.body.error ?? '', /not JSON/);
    assert.equal(await d.metric('dspy_o11yd_records_invalid_total', { transport: 'http', reason: 'invalid_json' }), before + 1);
  });
});

describe('a large body of tiny records', () => {
  let daemon: DaemonProcess;
  before(async () => {
    daemon = await startDaemonProcess(['--socket', '', '--http', '127.0.0.1:0', '--exporter', 'console'], {});
  });
  after(() => daemon.stop());

  test('is read in slices: /healthz is answered while it is being read, not after', async () => {
    // 30 MB of `0`: 15 million (invalid) records, seconds of work read in one go.
    const body = '0\n'.repeat(15_000_000);
    const order: string[] = [];
    const ingest = fetch(`${daemon.httpUrl}/v1/ingest`, { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body }).then(async (r) => {
      order.push('ingest');
      return (await r.json()) as { accepted: number; rejected: number };
    });
    await new Promise((r) => setTimeout(r, 300));
    const health = fetch(`${daemon.httpUrl}/healthz`).then((r) => (order.push('healthz'), r.status));
    const [answer, status] = await Promise.all([ingest, health]);
    assert.equal(status, 200);
    assert.deepEqual({ accepted: answer.accepted, rejected: answer.rejected }, { accepted: 0, rejected: 15_000_000 });
    assert.deepEqual(order, ['healthz', 'ingest']);
  });
});

describe('SIGTERM while a request is being read', () => {
  test('the request is answered with what it accepted, not cut off (a client would send it again); its spans are delivered by the flush', async () => {
    const keys = { LANGFUSE_PUBLIC_KEY: 'pk-lf-term', LANGFUSE_SECRET_KEY: 'sk-lf-term' };
    const fake = await startFakeLangfuse({ publicKey: keys.LANGFUSE_PUBLIC_KEY, secretKey: keys.LANGFUSE_SECRET_KEY });
    const d = await startDaemonProcess(['--socket', '', '--http', '127.0.0.1:0', '--flush-interval', '20'], { ...keys, LANGFUSE_HOST: fake.url });
    try {
      const n = 20_000;
      const body = Array.from({ length: n }, (_, i) => span((i + 1).toString(16).padStart(16, '0'))).join('\n') + '\n';
      const url = new URL(`${d.httpUrl}/v1/ingest`);
      const answer = await new Promise<{ status?: number; body?: string; error?: string }>((resolve) => {
        const req = request({ host: url.hostname, port: url.port, path: url.pathname, method: 'POST', headers: { 'content-type': 'application/x-ndjson' } }, (res) => {
          let text = '';
          res.setEncoding('utf8').on('data', (c: string) => (text += c)).on('end', () => resolve({ status: res.statusCode, body: text }));
        });
        req.on('error', (err) => resolve({ error: err.message }));
        // SIGTERM once the whole body is handed to the kernel: the daemon is still reading or splitting it.
        req.end(body, () => d.child.kill('SIGTERM'));
      });
      assert.equal(answer.status, 202, JSON.stringify(answer));
      assert.deepEqual(JSON.parse(answer.body!), { accepted: n, rejected: 0, errors: [] });
      assert.equal((await d.exited).code, 0);
      assert.equal(new Set(fake.spans.map((s) => s.spanId)).size, n);
    } finally {
      await d.stop('SIGKILL');
      await fake.close();
    }
  });
});

describe('blank lines in NDJSON', () => {
  let d: DaemonProcess;
  let tmp: ReturnType<typeof tempDir>;
  let socket: string;
  before(async () => {
    tmp = tempDir();
    socket = join(tmp.dir, 'd.sock');
    d = await startDaemonProcess(['--socket', socket, '--http', '127.0.0.1:0', '--exporter', 'console'], {}, socket);
  });
  after(async () => {
    await d.stop();
    tmp.cleanup();
  });

  // Blank lines of every kind, a record with whitespace before it, and one line that is not JSON.
  const body = (ids: [string, string, string]) =>
    ['', span(ids[0]), '   ', '\t', ' \t \r', '\r', `  \t${span(ids[1])}`, ' x', '\t \t', span(ids[2]), ' \t '].join('\n') + '\r\n \n';
  const invalid = (transport: string) => d.metric('dspy_o11yd_records_invalid_total', { transport, reason: 'invalid_json' });

  test('are skipped like empty lines over HTTP: not records, not counted, not in the indexes', async () => {
    const r = await fetch(`${d.httpUrl}/v1/ingest`, { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body: body(['d000000000000001', 'd000000000000002', 'd000000000000003']) });
    assert.equal(r.status, 202);
    const answer = (await r.json()) as { accepted: number; rejected: number; errors: { index: number; message: string }[] };
    assert.deepEqual({ accepted: answer.accepted, rejected: answer.rejected }, { accepted: 3, rejected: 1 });
    assert.deepEqual(answer.errors.map((e) => e.index), [2], 'the one bad line is the third record: blank lines take no index');
    assert.match(answer.errors[0]!.message, /^invalid_json/);
    assert.equal(await invalid('http'), 1);
  });

  test('are skipped like empty lines on the Unix socket', async () => {
    await sendOverSocket(socket, body(['d000000000000004', 'd000000000000005', 'd000000000000006']));
    await d.eventually(async () => assert.equal(await d.metric('dspy_o11yd_records_received_total', { transport: 'uds', type: 'span' }), 3));
    assert.equal(await invalid('uds'), 1);
    await d.eventually(() => assert.match(d.stdout, /d000000000000006/));
  });
});
