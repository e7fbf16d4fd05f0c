/**
 * Exporters against the fake Langfuse: headers, auth, gzip, both encodings, every ExportOutcome
 * (2xx, 5xx, 429 + Retry-After, 413, 401 with body, hang → abort, reset, refused connection),
 * plus the file and console sinks, and the fake server's own Langfuse-like checks.
 */
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { gzipSync } from 'node:zlib';
import type { SpanRecord } from '@dspy-o11y/proto';
import { MAX_ERROR_BODY_BYTES, outcomeForStatus, parseOtlpHeaders } from '../src/export/http-common.js';
import {
  createLangfuseExporter,
  createOtlpExporter,
  parseRetryAfter,
  type LangfuseExporter,
} from '../src/export/http-exporter.js';
import { createConsoleExporter, createFileExporter } from '../src/export/local-exporters.js';
import { encodeTraces } from '../src/export/otlp-encode.js';
import type { ExportOutcome, SpanExporter } from '../src/export/types.js';
import { queuedSpan, spanOf, type QueuedSpan, type Resource } from '../src/model.js';
import { attributeTypes, decodeTraceRequestJson, flattenAttributes } from '../src/otlp/decode.js';
import { startFakeLangfuse, type FakeLangfuse } from './support/fake-langfuse.js';

const PK = 'pk-lf-exporters';
const SK = 'sk-lf-exporters-secret-0123456789';
const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const RESOURCE: Resource = { attributes: { 'service.name': 'coffee-shop', 'service.version': '1.4.2', 'deployment.environment.name': 'production' } };

let n = 0;
function queued(extra: Partial<SpanRecord> = {}, resource: Resource = RESOURCE): QueuedSpan {
  n++;
  const span: SpanRecord = {
    v: 1,
    type: 'span',
    traceId: TRACE,
    spanId: n.toString(16).padStart(16, '0'),
    parentSpanId: 'ffffffffffffffff',
    name: `span-${n}`,
    startTimeUnixNano: '1732700000123456789',
    endTimeUnixNano: '1732700000223456789',
    attributes: { 'dspy.observation.type': 'generation', 'gen_ai.usage.input_tokens': 12, 'gen_ai.request.temperature': 0.7 },
    ...extra,
  };
  return queuedSpan(span, resource);
}
const batch = (count: number) => Array.from({ length: count }, () => queued());
const signal = () => AbortSignal.timeout(5_000);

describe('langfuse exporter against the fake Langfuse', () => {
  let fake: FakeLangfuse;
  let exporter: LangfuseExporter;
  const repairs: string[] = [];
  const outcomes: ExportOutcome[] = [];
  const send = async (e: SpanExporter, b: QueuedSpan[], s: AbortSignal = signal()) => {
    const o = await e.send(b, s);
    outcomes.push(o);
    return o;
  };

  before(async () => {
    fake = await startFakeLangfuse({ publicKey: PK, secretKey: SK });
    exporter = createLangfuseExporter({ host: `${fake.url}/`, publicKey: PK, secretKey: SK, sdkVersion: '9.8.7', onRepair: (r) => repairs.push(r) });
  });
  after(async () => {
    await exporter.close();
    await fake.close();
    // Secrets never show in what the exporter reports.
    const text = JSON.stringify({ outcomes, destination: exporter.destination });
    assert.ok(!text.includes(SK));
    assert.ok(!text.includes(Buffer.from(`${PK}:${SK}`).toString('base64')));
  });
  beforeEach(() => {
    fake.clearFaults();
    fake.reset();
  });

  test('2xx → delivered: protobuf, gzip, Basic auth and the Langfuse headers; spans mapped', async () => {
    assert.equal(exporter.kind, 'langfuse');
    assert.equal(exporter.destination, `${fake.url}/api/public/otel/v1/traces`);
    const b = batch(50);
    assert.deepEqual(await send(exporter, b), { kind: 'delivered' });
    assert.equal(fake.requests.length, 1);
    const req = fake.requests[0]!;
    assert.equal(req.status, 200);
    assert.equal(req.headers.authorization, `Basic ${Buffer.from(`${PK}:${SK}`).toString('base64')}`);
    assert.equal(req.contentType, 'application/x-protobuf');
    assert.equal(req.contentEncoding, 'gzip');
    assert.equal(req.headers['x-langfuse-ingestion-version'], '4');
    assert.equal(req.headers['x-langfuse-sdk-name'], 'dspy-o11yd');
    assert.equal(req.headers['x-langfuse-sdk-version'], '9.8.7');
    assert.equal(req.spanCount, 50);
    assert.ok(req.bytes < req.decodedBytes, `gzip shrank the body (${req.bytes} < ${req.decodedBytes})`);
    assert.equal(fake.spans.length, 50);
    const s = fake.span(spanOf(b[0]!).spanId)!;
    assert.equal(s.scope.name, 'dspy-o11y');
    assert.equal(s.scope.version, '9.8.7');
    assert.equal(s.startTimeUnixNano, '1732700000123456789');
    assert.equal(s.attributes['langfuse.observation.type'], 'generation');
    assert.deepEqual(JSON.parse(String(s.attributes['langfuse.observation.usage_details'])), { input: 12 });
    assert.equal(s.attributeTypes['gen_ai.request.temperature'], 'double');
    assert.equal(s.attributes['langfuse.environment'], 'production');
    assert.equal(s.resource['service.name'], 'coffee-shop');
  });

  test('keep-alive: several sends share one connection', async () => {
    const before = fake.connectionsAccepted;
    for (let i = 0; i < 5; i++) assert.equal((await send(exporter, batch(3))).kind, 'delivered');
    assert.ok(fake.connectionsAccepted - before <= 1, `${fake.connectionsAccepted - before} new connections`);
    assert.equal(fake.maxInFlight, 1);
  });

  test('JSON encoding and no compression are honoured, and Langfuse-strict JSON decodes', async () => {
    const e = createLangfuseExporter({ host: fake.url, publicKey: PK, secretKey: SK, sdkVersion: '1.0.0', encoding: 'json', compression: 'none' });
    try {
      assert.deepEqual(await send(e, batch(3)), { kind: 'delivered' });
      const req = fake.requests[0]!;
      assert.equal(req.contentType, 'application/json');
      assert.equal(req.contentEncoding, undefined);
      assert.equal(req.bytes, req.decodedBytes);
      assert.equal(req.encoding, 'json');
      assert.equal(fake.spans.length, 3);
      assert.equal(fake.spans[0]!.attributeTypes['gen_ai.request.temperature'], 'double');
    } finally {
      await e.close();
    }
  });

  test('span events arrive as child event observations; repairs are counted through onRepair', async () => {
    repairs.length = 0;
    const parent = queued({
      attributes: { 'dspy.observation.type': 'generation', 'dspy.prompt.name': 'p', 'dspy.prompt.version': '3' },
      events: [{ name: 'llm.retry', timeUnixNano: '1732700000150000000', attributes: { attempt: 2 } }],
    });
    assert.equal((await send(exporter, [parent])).kind, 'delivered');
    assert.equal(fake.spans.length, 2);
    const p = fake.span(spanOf(parent).spanId)!;
    assert.equal(p.attributes['langfuse.observation.prompt.version'], 3);
    assert.equal(p.attributeTypes['langfuse.observation.prompt.version'], 'int');
    const ev = fake.spans.find((s) => s.parentSpanId === spanOf(parent).spanId)!;
    assert.equal(ev.attributes['langfuse.observation.type'], 'event');
    assert.equal(ev.startTimeUnixNano, '1732700000150000000');
    assert.deepEqual(repairs, ['prompt_version_coerced']);
  });

  test('500 → retryable with the status', async () => {
    fake.fail({ status: 500 });
    assert.deepEqual(await send(exporter, batch(2)), { kind: 'retryable', reason: 'http_500', status: 500 });
    assert.equal(fake.spans.length, 0);
    assert.equal((await send(exporter, batch(2))).kind, 'delivered', 'one-shot fault');
  });

  test('502, 503, 504 and 408 are retryable too', async () => {
    for (const status of [502, 503, 504, 408]) {
      fake.fail({ status });
      const o = await send(exporter, batch(1));
      assert.equal(o.kind, 'retryable', String(status));
      assert.equal(o.kind === 'retryable' && o.status, status);
    }
  });

  test('429 + Retry-After in seconds → retryAfterMs', async () => {
    fake.fail({ status: 429, retryAfterSeconds: 7 });
    assert.deepEqual(await send(exporter, batch(1)), { kind: 'retryable', reason: 'http_429', status: 429, retryAfterMs: 7000 });
  });

  test('429 + Retry-After as an HTTP-date → retryAfterMs until then', async () => {
    const date = new Date(Date.now() + 10_000);
    fake.fail({ status: 429, retryAfterDate: date });
    // The header has whole seconds; the time left is counted from when the answer is read, between
    // these two readings of the clock (a fixed 2 to 4 s window would fail a request that took over 1 s).
    const at = Math.floor(date.getTime() / 1000) * 1000;
    const before = Date.now();
    const o = await send(exporter, batch(1));
    const after = Date.now();
    assert.equal(o.kind, 'retryable');
    const ms = o.kind === 'retryable' ? o.retryAfterMs : undefined;
    assert.ok(ms !== undefined && ms >= at - after && ms <= at - before, `retryAfterMs ${ms}, expected ${at - after} to ${at - before}`);
  });

  test('413 → too_large; tooLargeAboveSpans lets smaller batches through', async () => {
    fake.fail({ status: 413 });
    assert.equal((await send(exporter, batch(1))).kind, 'too_large');
    fake.mode({ tooLargeAboveSpans: 10 });
    assert.equal((await send(exporter, batch(11))).kind, 'too_large');
    assert.deepEqual(await send(exporter, batch(10)), { kind: 'delivered' });
    assert.equal(fake.spans.length, 10);
  });

  test('401 (bad keys) → refused with the answer body; nothing recorded', async () => {
    const wrong = createLangfuseExporter({ host: fake.url, publicKey: PK, secretKey: 'sk-wrong', sdkVersion: '1' });
    try {
      const o = await send(wrong, batch(2));
      assert.equal(o.kind, 'refused');
      assert.equal(o.kind === 'refused' && o.status, 401);
      assert.match(o.kind === 'refused' ? o.body : '', /Invalid credentials/);
      assert.equal(fake.spans.length, 0);
    } finally {
      await wrong.close();
    }
  });

  test('other 4xx → refused, the body cut to 1 KiB', async () => {
    fake.fail({ status: 400, body: JSON.stringify({ message: 'x'.repeat(10_000) }) });
    const o = await send(exporter, batch(1));
    assert.equal(o.kind, 'refused');
    const body = o.kind === 'refused' ? o.body : '';
    assert.equal(o.kind === 'refused' && o.status, 400);
    assert.ok(body.startsWith('{"message":"xxx'));
    assert.ok(Buffer.byteLength(body) <= MAX_ERROR_BODY_BYTES + 3, `${Buffer.byteLength(body)} bytes`);
    // The connection is still usable afterwards.
    assert.equal((await send(exporter, batch(1))).kind, 'delivered');
  });

  test('a hanging backend: the abort signal ends the request → retryable, promptly', async () => {
    fake.fail({ hang: true });
    const controller = new AbortController();
    const started = Date.now();
    setTimeout(() => controller.abort(), 150);
    const o = await send(exporter, batch(2), controller.signal);
    assert.deepEqual(o, { kind: 'retryable', reason: 'aborted' });
    assert.ok(Date.now() - started < 2_000);
    await waitUntil(() => fake.inFlight === 0);
    // A timeout signal says so.
    fake.fail({ hang: true });
    assert.deepEqual(await send(exporter, batch(2), AbortSignal.timeout(100)), { kind: 'retryable', reason: 'timeout' });
    assert.equal((await send(exporter, batch(2))).kind, 'delivered');
  });

  test('an already aborted signal sends nothing', async () => {
    const o = await send(exporter, batch(1), AbortSignal.abort());
    assert.equal(o.kind, 'retryable');
    assert.equal(fake.requests.length, 0);
  });

  test('a reset connection → retryable network error', async () => {
    fake.fail({ reset: true });
    const o = await send(exporter, batch(2));
    assert.equal(o.kind, 'retryable');
    assert.match(o.kind === 'retryable' ? o.reason : '', /^network_/);
    assert.equal((await send(exporter, batch(2))).kind, 'delivered');
  });

  test('backend down → retryable (connection refused); up again → delivered', async () => {
    await fake.down();
    try {
      const o = await send(exporter, batch(1));
      assert.equal(o.kind, 'retryable');
      assert.match(o.kind === 'retryable' ? o.reason : '', /^network_/);
    } finally {
      await fake.up();
    }
    assert.equal((await send(exporter, batch(1))).kind, 'delivered');
  });

  test('a slow backend (delayMs) still delivers', async () => {
    fake.mode({ delayMs: 50 });
    const started = Date.now();
    assert.equal((await send(exporter, batch(1))).kind, 'delivered');
    assert.ok(Date.now() - started >= 45);
  });

  test('the mapping state remembers traces across sends', async () => {
    await send(exporter, [queued({ parentSpanId: undefined, attributes: { 'dspy.trace.name': 'remember-me' }, traceId: '7'.repeat(32) })]);
    const later = queued({ traceId: '7'.repeat(32), attributes: {} });
    await send(exporter, [later]);
    assert.equal(fake.span(spanOf(later).spanId)!.attributes['langfuse.trace.name'], 'remember-me');
    assert.ok(exporter.mapper.rememberedTraces >= 1);
  });
});

describe('otlp exporter', () => {
  let fake: FakeLangfuse;
  before(async () => {
    fake = await startFakeLangfuse({ publicKey: PK, secretKey: SK });
  });
  after(() => fake.close());

  test('no Langfuse mapping: events stay span events, headers from OTEL_EXPORTER_OTLP_HEADERS', async () => {
    const headers = parseOtlpHeaders(`Authorization=${encodeURIComponent(fake.authorization)},x-team=blue`);
    const e = createOtlpExporter({ endpoint: `${fake.url}/api/public/otel/v1/traces`, headers });
    try {
      assert.equal(e.kind, 'otlp');
      const q = queued({ events: [{ name: 'llm.retry', timeUnixNano: '1732700000150000000', attributes: { attempt: 2 } }] });
      assert.deepEqual(await e.send([q], signal()), { kind: 'delivered' });
      assert.equal(fake.requests[0]!.headers['x-team'], 'blue');
      assert.equal(fake.requests[0]!.contentEncoding, 'gzip');
      assert.equal(fake.spans.length, 1);
      const s = fake.spans[0]!;
      assert.equal(s.attributes['dspy.observation.type'], 'generation');
      assert.equal(s.attributes['langfuse.observation.type'], undefined);
      assert.equal(s.attributes['gen_ai.usage.input_tokens'], 12);
      assert.equal(s.events.length, 1);
      assert.equal(s.events[0]!.timeUnixNano, '1732700000150000000');
      assert.deepEqual(s.events[0]!.attributeTypes, { attempt: 'int' });
    } finally {
      await e.close();
    }
  });

  test('credentials in the endpoint URL become an Authorization header and never show in destination', async () => {
    fake.reset();
    const url = new URL(`${fake.url}/api/public/otel/v1/traces?token=abc`);
    url.username = PK;
    url.password = SK;
    const e = createOtlpExporter({ endpoint: url.toString(), encoding: 'json' });
    try {
      assert.equal(e.destination, `${fake.url}/api/public/otel/v1/traces`);
      assert.deepEqual(await e.send([queued()], signal()), { kind: 'delivered' });
      assert.equal(fake.requests[0]!.headers.authorization, fake.authorization);
      assert.equal(fake.requests[0]!.path, '/api/public/otel/v1/traces?token=abc');
    } finally {
      await e.close();
    }
  });
  test('an answer echoing what was sent loses the OTLP header values and the URL credentials (it is logged and shown in /v1/status)', async () => {
    fake.reset();
    const url = new URL(`${fake.url}/api/public/otel/v1/traces`);
    url.username = 'collector-user';
    url.password = 'url-pa55word';
    const basic = Buffer.from('collector-user:url-pa55word').toString('base64');
    fake.fail({ status: 401, body: JSON.stringify({ message: 'bad credentials', got: { 'x-api-key': 'hdr-api-key-42', authorization: `Basic ${basic}`, password: 'url-pa55word' } }) });
    const e = createOtlpExporter({ endpoint: url.toString(), headers: { 'x-api-key': 'hdr-api-key-42', 'x-team': 'blue' } });
    try {
      const o = await e.send([queued()], signal());
      assert.equal(o.kind, 'refused');
      const body = o.kind === 'refused' ? o.body : '';
      for (const secret of ['hdr-api-key-42', 'url-pa55word', basic]) assert.ok(!body.includes(secret), body);
      assert.match(body, /bad credentials/, 'the rest of the answer is kept');
    } finally {
      await e.close();
    }
  });
  test('a redirect shows where it points without the query string it echoes (an API key there) or URL credentials', async () => {
    fake.reset();
    const query = '?api_key=query-secret-99';
    // An ingress's http → https redirect keeps the path and query it was sent.
    fake.fail({ status: 308, headers: { location: `https://user:url-pa55word@langfuse.example/api/public/otel/v1/traces${query}` }, body: '' });
    const e = createOtlpExporter({ endpoint: `${fake.url}/api/public/otel/v1/traces${query}` });
    try {
      const o = await e.send([queued()], signal());
      const body = o.kind === 'refused' ? o.body : assert.fail(o.kind);
      assert.match(body, /^redirected to https:\/\/langfuse\.example\/api\/public\/otel\/v1\/traces, which/);
      for (const secret of ['query-secret-99', 'url-pa55word']) assert.ok(!body.includes(secret), body);
    } finally {
      await e.close();
    }
  });
  test('an echoing answer cut at the read limit inside a credential loses that credential\'s start too', async () => {
    fake.reset();
    const secret = 'hdr-api-key-0123456789abcdef';
    // The echo straddles the 1 KiB kept of an answer: its first 14 characters fall within it.
    fake.fail({ status: 401, body: `${'x'.repeat(1010)}${secret} and more` });
    const e = createOtlpExporter({ endpoint: `${fake.url}/api/public/otel/v1/traces`, headers: { 'x-api-key': secret } });
    try {
      const o = await e.send([queued()], signal());
      const body = o.kind === 'refused' ? o.body : assert.fail(o.kind);
      assert.ok(body.startsWith('x'.repeat(1010)), 'the answer before it is kept');
      assert.ok(!body.includes(secret.slice(0, 8)), body.slice(1000));
    } finally {
      await e.close();
    }
  });
});

describe('file and console exporters', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'dspy-o11y-exporters-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const readBack = (line: string) => {
    const d = decodeTraceRequestJson(line, { strictFieldNames: true });
    return d.resourceSpans.flatMap((rs) => rs.scopeSpans.flatMap((ss) => ss.spans.map((s) => ({ s, scope: ss.scope, resource: flattenAttributes(rs.resource.attributes) }))));
  };

  test('file: one OTLP/JSON request per line per batch, appended, file and directory created', async () => {
    const path = join(dir, 'nested', 'spans.jsonl');
    const e = createFileExporter(path, { scopeVersion: '3.2.1' });
    assert.equal(e.kind, 'file');
    assert.equal(e.destination, path);
    const b1 = batch(3);
    const b2 = [queued({ events: [{ name: 'ev', timeUnixNano: '1732700000150000000', attributes: { k: 1.5 } }] })];
    assert.deepEqual(await e.send(b1, signal()), { kind: 'delivered' });
    assert.deepEqual(await e.send(b2, signal()), { kind: 'delivered' });
    await e.close();
    const lines = readFileSync(path, 'utf8').split('\n');
    assert.equal(lines.pop(), '', 'ends with a newline');
    assert.equal(lines.length, 2);
    const first = readBack(lines[0]!);
    assert.deepEqual(first.map((x) => x.s.spanId), b1.map((q) => spanOf(q).spanId));
    assert.equal(first[0]!.s.startTimeUnixNano, '1732700000123456789');
    assert.equal(first[0]!.scope.name, 'dspy-o11y');
    assert.equal(first[0]!.scope.version, '3.2.1');
    assert.equal(first[0]!.resource['service.name'], 'coffee-shop');
    assert.deepEqual(attributeTypes(first[0]!.s.attributes)['gen_ai.request.temperature'], 'double');
    assert.equal(flattenAttributes(first[0]!.s.attributes)['dspy.observation.type'], 'generation', 'neutral attributes, no mapping');
    const second = readBack(lines[1]!);
    assert.equal(second[0]!.s.events[0]!.name, 'ev');
    assert.deepEqual(attributeTypes(second[0]!.s.events[0]!.attributes), { k: 'double' });

    // Appends to an existing file.
    const e2 = createFileExporter(path);
    assert.equal((await e2.send(batch(1), signal())).kind, 'delivered');
    await e2.close();
    assert.equal(readFileSync(path, 'utf8').split('\n').filter(Boolean).length, 3);
  });

  test('file: renamed away (log rotation) or removed while running: the next batch goes to a file at the path again', async () => {
    const path = join(dir, 'rotated', 'spans.jsonl');
    const e = createFileExporter(path);
    assert.deepEqual(await e.send(batch(1), signal()), { kind: 'delivered' });
    renameSync(path, `${path}.1`);
    assert.deepEqual(await e.send(batch(2), signal()), { kind: 'delivered' });
    assert.equal(readBack(readFileSync(`${path}.1`, 'utf8').trim()).length, 1, 'the rotated file keeps its line, and no more');
    assert.equal(readBack(readFileSync(path, 'utf8').trim()).length, 2, 'the next batch is at the path');
    rmSync(path);
    assert.deepEqual(await e.send(batch(3), signal()), { kind: 'delivered' });
    assert.equal(readBack(readFileSync(path, 'utf8').trim()).length, 3, 'a removed file is created again, not written after its removal');
    await e.close();
  });

  test('file: an unwritable path is retryable, not a crash', async () => {
    const blocker = join(dir, 'blocker');
    writeFileSync(blocker, 'a file, not a directory');
    const e = createFileExporter(join(blocker, 'spans.jsonl'));
    const o = await e.send(batch(1), signal());
    assert.equal(o.kind, 'retryable');
    assert.match(o.kind === 'retryable' ? o.reason : '', /^file_/);
    await e.close();
  });

  test('console: one OTLP/JSON line per batch on the stream', async () => {
    const stream = new PassThrough();
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    const e = createConsoleExporter(stream);
    assert.equal(e.kind, 'console');
    const b = batch(2);
    assert.deepEqual(await e.send(b, signal()), { kind: 'delivered' });
    assert.deepEqual(await e.send(batch(1), signal()), { kind: 'delivered' });
    await e.close();
    const lines = Buffer.concat(chunks).toString('utf8').split('\n').filter(Boolean);
    assert.equal(lines.length, 2);
    assert.deepEqual(readBack(lines[0]!).map((x) => x.s.spanId), b.map((q) => spanOf(q).spanId));
    assert.equal(createConsoleExporter(process.stdout).destination, 'stdout');
  });
  test('console: a stalled reader is back-pressure: the batch stays ours, is never written twice, and nothing more is written', async () => {
    // Nobody reads the stream: its buffers fill with the first line and that write stays pending.
    const stream = new PassThrough({ highWaterMark: 16 });
    const e = createConsoleExporter(stream);
    const soon = () => {
      const c = new AbortController();
      setTimeout(() => c.abort(), 50);
      return c.signal;
    };
    const [b1, b2] = [batch(1), batch(2)];
    assert.equal((await e.send(b1, soon())).kind, 'retryable', 'a write that does not complete is not delivered');
    const held = stream.writableLength;
    assert.equal((await e.send(b2, soon())).kind, 'retryable');
    assert.equal(stream.writableLength, held, 'nothing more was written while the reader stalls');
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    assert.deepEqual(await e.send(b1, signal()), { kind: 'delivered' });
    assert.deepEqual(await e.send(b2, signal()), { kind: 'delivered' });
    const lines = Buffer.concat(chunks).toString('utf8').split('\n').filter(Boolean);
    assert.deepEqual(
      lines.map((l) => readBack(l).map((x) => x.s.spanId)),
      [b1, b2].map((b) => b.map((q) => spanOf(q).spanId)),
    );
  });
});

describe('helpers', () => {
  test('parseOtlpHeaders: k=v pairs, URL-decoded, trimmed, malformed items skipped', () => {
    assert.deepEqual(parseOtlpHeaders('api-key=abc%3D%3D, X-Team = a%20b ,bad,=x,k=v=w,'), { 'api-key': 'abc==', 'x-team': 'a b', k: 'v=w' });
    assert.deepEqual(parseOtlpHeaders(''), {});
    assert.deepEqual(parseOtlpHeaders('a=%E0%A4%A'), { a: '%E0%A4%A' }, 'bad escapes kept raw');
  });

  test('parseRetryAfter: delta seconds, HTTP-date, past date, junk', () => {
    const now = Date.parse('Wed, 27 Nov 2024 10:00:00 GMT');
    assert.equal(parseRetryAfter('3', now), 3000);
    assert.equal(parseRetryAfter(' 0 ', now), 0);
    assert.equal(parseRetryAfter('1.5', now), 1500);
    assert.equal(parseRetryAfter('Wed, 27 Nov 2024 10:00:30 GMT', now), 30_000);
    assert.equal(parseRetryAfter('Wed, 27 Nov 2024 09:00:00 GMT', now), 0);
    assert.equal(parseRetryAfter('soon', now), undefined);
    assert.equal(parseRetryAfter(undefined, now), undefined);
    assert.equal(parseRetryAfter(['2', '5'], now), 2000);
  });

  test('outcomeForStatus covers the table', () => {
    assert.deepEqual(outcomeForStatus(202, {}, ''), { kind: 'delivered' });
    assert.deepEqual(outcomeForStatus(413, {}, ''), { kind: 'too_large' });
    assert.deepEqual(outcomeForStatus(503, { 'retry-after': '2' }, ''), { kind: 'retryable', reason: 'http_503', status: 503, retryAfterMs: 2000 });
    assert.deepEqual(outcomeForStatus(403, {}, 'nope'), { kind: 'refused', status: 403, body: 'nope' });
    assert.deepEqual(outcomeForStatus(404, {}, ''), { kind: 'refused', status: 404, body: '' });
    // A redirect (http → https at an ingress, a moved host) is not followed: the refusal names
    // where it points, so the one log line says which host to set.
    assert.deepEqual(outcomeForStatus(308, { location: 'https://langfuse.example/api/public/otel/v1/traces' }, '<html>moved</html>'), {
      kind: 'refused',
      status: 308,
      body: 'redirected to https://langfuse.example/api/public/otel/v1/traces, which dspy-o11yd does not follow: set the host or endpoint to it (answer: <html>moved</html>)',
    });
    assert.deepEqual(outcomeForStatus(301, {}, ''), { kind: 'refused', status: 301, body: 'redirected (no location given), which dspy-o11yd does not follow' });
  });
});

describe('the fake Langfuse itself', () => {
  let fake: FakeLangfuse;
  before(async () => {
    fake = await startFakeLangfuse({ publicKey: PK, secretKey: SK });
  });
  after(() => fake.close());
  beforeEach(() => fake.reset());

  const post = (body: string | Uint8Array, headers: Record<string, string>, path = '/api/public/otel/v1/traces') =>
    fetch(`${fake.url}${path}`, { method: 'POST', headers: { authorization: fake.authorization, ...headers }, body });
  const spanJson = (over: Record<string, unknown> = {}) =>
    JSON.stringify({
      resourceSpans: [{ scopeSpans: [{ scope: { name: 's' }, spans: [{ traceId: 'a'.repeat(32), spanId: 'b'.repeat(16), name: 'n', startTimeUnixNano: '1', endTimeUnixNano: '2', ...over }] }] }],
    });

  test('accepts a gzipped JSON body and answers JSON', async () => {
    const res = await post(gzipSync(spanJson()), { 'content-type': 'application/json', 'content-encoding': 'gzip' });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /application\/json/);
    assert.equal(((await res.json()) as { spans: number }).spans, 1);
    assert.equal(fake.spans[0]!.spanId, 'b'.repeat(16));
  });

  test('401 without the right auth, 400 for other content types, bad gzip, snake_case, missing ids, version > 4', async () => {
    const noAuth = await fetch(`${fake.url}/api/public/otel/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: spanJson() });
    assert.equal(noAuth.status, 401);
    assert.ok(typeof ((await noAuth.json()) as { message: unknown }).message === 'string');
    const cases: [string | Uint8Array, Record<string, string>][] = [
      [spanJson(), { 'content-type': 'text/plain' }],
      [spanJson(), { 'content-type': 'application/json', 'content-encoding': 'gzip' }],
      [spanJson(), { 'content-type': 'application/json', 'content-encoding': 'br' }],
      [JSON.stringify({ resource_spans: [] }), { 'content-type': 'application/json' }],
      [spanJson({ spanId: undefined }), { 'content-type': 'application/json' }],
      [spanJson({ parentSpanId: 'xyz' }), { 'content-type': 'application/json' }],
      [spanJson(), { 'content-type': 'application/json', 'x-langfuse-ingestion-version': '5' }],
      [new Uint8Array([0x0a, 0xff, 0x01]), { 'content-type': 'application/x-protobuf' }],
    ];
    for (const [body, headers] of cases) {
      const res = await post(body, headers);
      assert.equal(res.status, 400, JSON.stringify(headers));
      await res.arrayBuffer();
    }
    assert.equal(fake.spans.length, 0);
    assert.ok(fake.requests.every((r) => r.status === 400 || r.status === 401));
  });

  test('an empty export is accepted (what `dspy-o11yd check` sends)', async () => {
    const res = await post(JSON.stringify({ resourceSpans: [] }), { 'content-type': 'application/json' });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    assert.equal(fake.requests[0]!.spanCount, 0);
  });

  test('scores are stored', async () => {
    const res = await post(JSON.stringify({ traceId: TRACE, name: 'helpfulness', value: 0.9 }), { 'content-type': 'application/json' }, '/api/public/scores');
    assert.equal(res.status, 200);
    const { id } = (await res.json()) as { id: string };
    assert.ok(id);
    assert.deepEqual(fake.scores.map((s) => s.id), [id]);
    assert.deepEqual(fake.scores[0]!.body, { traceId: TRACE, name: 'helpfulness', value: 0.9 });
  });

  test('maxInFlight sees concurrent requests; waitForSpans resolves and times out', async () => {
    // Each answer is held until all three requests are in: with a 100 ms delay instead, a test
    // process held up for longer (a loaded machine) could answer the first before the last arrived.
    let release!: () => void;
    fake.mode({ release: new Promise<void>((r) => (release = r)) });
    const body = encodeTraces([{ span: spanOf(queued()), resource: RESOURCE }], { encoding: 'protobuf', scope: { name: 'dspy-o11y', version: '1' } });
    const waiting = fake.waitForSpans(3, 15_000);
    const pending = Promise.all([0, 1, 2].map(() => post(body, { 'content-type': 'application/x-protobuf' })));
    await waitUntil(() => fake.inFlight === 3);
    assert.equal(fake.spans.length, 0, 'none answered yet');
    release();
    const answers = await pending;
    for (const a of answers) {
      assert.equal(a.status, 200);
      await a.arrayBuffer();
    }
    assert.equal((await waiting).length, 3);
    assert.equal(fake.maxInFlight, 3);
    fake.mode(null);
    await assert.rejects(fake.waitForSpans(100, 50), /timed out after 50 ms waiting for 100 spans \(got 3\)/);
    assert.equal(fake.spansByTrace(TRACE).length, 3);
  });

  test('close() ends a hanging request', async () => {
    const other = await startFakeLangfuse();
    other.mode({ hang: true });
    const pending = fetch(`${other.url}/api/public/otel/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }).then(
      () => 'answered',
      () => 'failed',
    );
    await waitUntil(() => other.requests.length === 1 && other.requests[0]!.answeredAt !== undefined);
    await other.close();
    assert.equal(await pending, 'failed');
  });
});

async function waitUntil(check: () => boolean, timeoutMs = 15_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}
