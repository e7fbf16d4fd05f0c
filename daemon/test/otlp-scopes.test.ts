/**
 * Instrumentation scopes of OTLP-ingested spans, through the real CLI: the generic exporters
 * (`otlp` to any OTLP/HTTP endpoint, `file` and `console` as OTLP/JSON) relay each span under the
 * scope it came with (name, version, attributes), as an OpenTelemetry Collector does, also
 * across a restart through the spool; the `langfuse` exporter sends everything under `dspy-o11y`
 * (DESIGN §6). Spans from the SDK's wire protocol have no scope of their own: the daemon's.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { VERSION } from '../src/version.js';
import { decodeTraceRequestJson, flattenAttributes } from '../src/otlp/decode.js';
import { startFakeLangfuse, type FakeLangfuse, type RecordedSpan } from './support/fake-langfuse.js';
import { postIngest, startDaemonProcess, tempDir, type DaemonProcess } from './support/daemon-process.js';

const KEYS = { LANGFUSE_PUBLIC_KEY: 'pk-lf-scopes', LANGFUSE_SECRET_KEY: 'sk-lf-scopes' };
const TRACE = '5c'.repeat(16);
const str = (key: string, v: string) => ({ key, value: { stringValue: v } });
const otlpSpan = (spanId: string, name: string) => ({ traceId: TRACE, spanId, name, kind: 1, startTimeUnixNano: '1732700000000000000', endTimeUnixNano: '1732700000000000005' });

/** One resource, two scopes (one with attributes), a span each: what an OpenTelemetry SDK with two instrumentations sends. */
const twoScopes = (prefix: string) => ({
  resourceSpans: [
    {
      resource: { attributes: [str('service.name', 'scoped-app')] },
      scopeSpans: [
        { scope: { name: 'opentelemetry.instrumentation.openai', version: '0.48.1', attributes: [str('library.lang', 'python')] }, spans: [otlpSpan(`${prefix}00000000000001`, 'openai.chat')] },
        { scope: { name: 'checkout-service', version: '2.0.0' }, spans: [otlpSpan(`${prefix}00000000000002`, 'handler')] },
      ],
    },
  ],
});

/** A span from the SDK's wire protocol (over HTTP: the socket's path into the queue is the same). */
const sdkSpan = (spanId: string) => JSON.stringify({ v: 1, type: 'span', traceId: TRACE, spanId, name: 'sdk-span', startTimeUnixNano: '1732700000000000000', endTimeUnixNano: '1732700000000000005' });

async function send(d: DaemonProcess, prefix: string): Promise<void> {
  const res = await fetch(`${d.httpUrl}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(twoScopes(prefix)) });
  assert.equal(res.status, 200);
  // A sender's hello cannot set a scope (not in the wire protocol): only the spool's can.
  const ingest = await postIngest(d.httpUrl, `${JSON.stringify({ v: 1, type: 'hello', resource: { 'service.name': 'sdk-app' }, scope: { name: 'posing', version: '1' } })}\n${sdkSpan(`${prefix}00000000000003`)}\n`);
  assert.equal(ingest.body.accepted, 2);
}

type Scoped = { name: string; scope: { name: string; version: string; attributes: Record<string, unknown> }; service: unknown };
const scoped = (spans: readonly RecordedSpan[]): Scoped[] =>
  spans.map((s) => ({ name: s.name, scope: s.scope, service: s.resource['service.name'] })).sort((a, b) => a.name.localeCompare(b.name));

/** What a relay that keeps scopes delivers for {@link send}. */
const KEPT: Scoped[] = [
  { name: 'handler', scope: { name: 'checkout-service', version: '2.0.0', attributes: {} }, service: 'scoped-app' },
  { name: 'openai.chat', scope: { name: 'opentelemetry.instrumentation.openai', version: '0.48.1', attributes: { 'library.lang': 'python' } }, service: 'scoped-app' },
  { name: 'sdk-span', scope: { name: 'dspy-o11y', version: VERSION, attributes: {} }, service: 'sdk-app' },
];

describe('instrumentation scopes of OTLP-ingested spans', () => {
  let fake: FakeLangfuse;
  let tmp: ReturnType<typeof tempDir>;
  before(async () => {
    fake = await startFakeLangfuse({ publicKey: KEYS.LANGFUSE_PUBLIC_KEY, secretKey: KEYS.LANGFUSE_SECRET_KEY });
    tmp = tempDir();
  });
  after(async () => {
    await fake.close();
    tmp.cleanup();
  });
  const otlpExporter = () => ['--exporter', 'otlp', '--otlp-endpoint', `${fake.url}/api/public/otel/v1/traces`, '--otlp-headers', `authorization=${encodeURIComponent(fake.authorization)}`];
  const start = (args: string[]) => startDaemonProcess(['--socket', '', '--http', '127.0.0.1:0', '--flush-interval', '20', ...args], KEYS);
  const spansOf = (prefix: string) => fake.spans.filter((s) => s.spanId.startsWith(prefix));

  test('--exporter otlp (protobuf): each span arrives under its own scope, name, version and attributes; the SDK\'s under the daemon\'s', async () => {
    const d = await start(otlpExporter());
    await send(d, '01');
    await d.eventually(() => assert.equal(spansOf('01').length, 3));
    assert.deepEqual(scoped(spansOf('01')), KEPT);
    assert.ok(fake.requests.every((r) => r.encoding === 'protobuf'));
    assert.equal((await d.stop()).code, 0);
  });

  test('--exporter langfuse: everything under dspy-o11y, as before (DESIGN §6)', async () => {
    const d = await start(['--langfuse-host', fake.url]);
    await send(d, '02');
    await d.eventually(() => assert.equal(spansOf('02').length, 3));
    for (const s of spansOf('02')) assert.deepEqual(s.scope, { name: 'dspy-o11y', version: VERSION, attributes: {} }, s.name);
    assert.equal((await d.stop()).code, 0);
  });

  test('the spool keeps the scopes: spans spooled at shutdown are delivered by the next run under their own scopes', async () => {
    const spool = join(tmp.dir, 'spool');
    fake.mode({ status: 503 });
    const d = await start([...otlpExporter(), '--shutdown-timeout', '300', '--spool-dir', spool]);
    await send(d, '03');
    await d.eventually(async () => assert.equal((await d.status()).spans.received, 3));
    assert.equal((await d.stop()).code, 0);
    assert.equal(readdirSync(spool).filter((f) => f.endsWith('.ndjson')).length, 1);
    assert.equal(spansOf('03').length, 0);
    fake.mode(null);
    const d2 = await start([...otlpExporter(), '--spool-dir', spool]);
    await d2.eventually(() => assert.equal(spansOf('03').length, 3));
    assert.deepEqual(scoped(spansOf('03')), KEPT);
    assert.equal((await d2.stop()).code, 0);
  });

  test('--exporter file (OTLP/JSON): each span under its own scope, the SDK\'s under the daemon\'s', async () => {
    const file = join(tmp.dir, 'spans.jsonl');
    const d = await start(['--exporter', 'file', '--file', file]);
    await send(d, '04');
    const read = () =>
      readFileSync(file, 'utf8')
        .split('\n')
        .filter(Boolean)
        .flatMap((line) => decodeTraceRequestJson(line, { strictFieldNames: true }).resourceSpans)
        .flatMap((rs) =>
          rs.scopeSpans.flatMap((ss) =>
            ss.spans.map((s) => ({ name: s.name, scope: { name: ss.scope.name, version: ss.scope.version, attributes: flattenAttributes(ss.scope.attributes) }, service: flattenAttributes(rs.resource.attributes)['service.name'] })),
          ),
        )
        .sort((a, b) => a.name.localeCompare(b.name));
    await d.eventually(() => assert.equal(read().length, 3));
    assert.deepEqual(read(), KEPT);
    assert.equal((await d.stop()).code, 0);
  });
});
