/**
 * End to end through the real CLI: records over the Unix socket and HTTP reach a fake Langfuse
 * that decodes the OTLP bodies, with ids, parents, names, nanosecond times, attributes, events
 * and the `hello` resource intact; bad records are counted and cost nothing else.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { existsSync, statSync } from 'node:fs';
import { invalidVectors, parseLine, validVectorLines, type SpanRecord } from '@dspy-o11y/proto';
import { langfuseWouldDrop, type FakeLangfuse } from './support/fake-langfuse.js';
import { postIngest, sendOverSocket, tempDir, useLangfuseDaemon, type DaemonProcess } from './support/daemon-process.js';

const KEYS = { LANGFUSE_PUBLIC_KEY: 'pk-lf-test', LANGFUSE_SECRET_KEY: 'sk-lf-very-secret-value' };

describe('delivery over socket and HTTP', () => {
  let fake: FakeLangfuse;
  let daemon: DaemonProcess;
  const tmp = tempDir();
  const socket = join(tmp.dir, 'd.sock');

  useLangfuseDaemon(KEYS, ['--socket', socket, '--http', '127.0.0.1:0', '--flush-interval', '50'], (f, d) => ((fake = f), (daemon = d)), {
    env: { DSPY_O11YD_LOG_LEVEL: 'debug' },
    socketPath: socket,
  });
  after(() => tmp.cleanup());

  test('the socket is created with mode 0660', () => {
    assert.equal(statSync(socket).mode & 0o777, 0o660);
  });

  test('every valid vector sent over the socket arrives with exact ids, times, names and attributes', async () => {
    const lines = validVectorLines();
    await sendOverSocket(socket, lines);
    const records = lines.map((l) => parseLine(l)).flatMap((r) => (r.ok ? [r.record] : []));
    const spans = records.filter((r): r is SpanRecord => r.type === 'span');
    await fake.waitForSpans(spans.length, 10_000);
    for (const s of spans) {
      const got = fake.spans.find((x) => x.spanId === s.spanId);
      assert.ok(got, `span ${s.name} arrived`);
      assert.equal(got.traceId, s.traceId);
      assert.equal(got.parentSpanId, s.parentSpanId);
      assert.equal(got.name, s.name);
      assert.equal(got.startTimeUnixNano, s.startTimeUnixNano, 'start time to the nanosecond');
      assert.equal(got.endTimeUnixNano, s.endTimeUnixNano, 'end time to the nanosecond');
      // The hello before them set the resource.
      assert.equal(got.resource['service.name'], 'coffee-shop');
      assert.equal(got.resource['service.version'], '1.4.2');
      assert.equal(got.scope.name, 'dspy-o11y');
    }
    const gen = fake.spans.find((x) => x.spanId === '1111111111111111')!;
    assert.equal(gen.attributes['langfuse.observation.type'], 'generation');
    assert.equal(gen.attributes['langfuse.observation.model.name'], 'gpt-4o-mini-2024-07-18');
    assert.deepEqual(JSON.parse(String(gen.attributes['langfuse.observation.usage_details'])), { input: 120, output: 30, total: 150 });
    assert.equal(gen.attributes['langfuse.observation.status_message'], '429 from provider');
    assert.equal(gen.attributes['langfuse.environment'], 'production');
    assert.equal(gen.attributes['langfuse.release'], '1.4.2');
    assert.equal(gen.status.code, 2);
    // Span events came along as child event observations with their time.
    const retry = fake.spans.find((x) => x.parentSpanId === '1111111111111111' && x.name === 'llm.retry');
    assert.ok(retry, 'the llm.retry span event became an observation');
    assert.equal(retry.startTimeUnixNano, '1732700000150000000');
    assert.equal(retry.attributes['langfuse.observation.type'], 'event');
    // Standalone events became zero-length event observations.
    const standalone = fake.spans.find((x) => x.name === 'react.iteration_complete')!;
    assert.equal(standalone.parentSpanId, 'b7ad6b7169203331');
    assert.equal(standalone.startTimeUnixNano, '1732700000499999999');
    assert.equal(standalone.endTimeUnixNano, '1732700000499999999');
    assert.equal(fake.spans.find((x) => x.spanId === '3333333333333333')?.name, 'chain_of_thought.reasoning_complete');
    // Trace-level fields from the root are on every span of the trace.
    for (const s of fake.spans.filter((x) => x.traceId === '4bf92f3577b34da6a3ce929d0e0e4736')) {
      assert.equal(s.attributes['langfuse.trace.name'], 'coffee-order', `trace name on ${s.name}`);
      assert.equal(s.attributes['langfuse.user.id'], 'u-1', `user on ${s.name}`);
    }
    assert.equal(await daemon.metric('dspy_o11yd_spans_dropped_total', { reason: 'client_buffer' }), 120);
    // Nothing Langfuse's ingestion would drop without a word.
    for (const s of fake.spans) assert.equal(langfuseWouldDrop(s), undefined, s.name);
  });

  test('every invalid vector is counted with its reason, and the valid records around it arrive', async () => {
    const invalid = invalidVectors();
    const before = fake.spans.length;
    const lines: string[] = [];
    const ids: string[] = [];
    invalid.forEach((v, i) => {
      const spanId = (0x7000 + i).toString(16).padStart(16, '0');
      ids.push(spanId);
      lines.push(JSON.stringify({ v: 1, type: 'span', traceId: 'c'.repeat(32), spanId, name: `between-${i}`, startTimeUnixNano: '1732700000000000000', endTimeUnixNano: '1732700000000000001' }));
      lines.push(v.line);
    });
    await sendOverSocket(socket, lines);
    await fake.waitForSpans(before + ids.length, 10_000);
    for (const id of ids) assert.ok(fake.spans.some((s) => s.spanId === id), `valid span ${id} arrived`);
    const expected = new Map<string, number>();
    for (const v of invalid) expected.set(v.reason, (expected.get(v.reason) ?? 0) + 1);
    for (const [reason, n] of expected) {
      assert.equal(await daemon.metric('dspy_o11yd_records_invalid_total', { transport: 'uds', reason }), n, `invalid ${reason}`);
    }
  });

  test('a line over --max-record-bytes is rejected without costing the next record', async () => {
    const huge = JSON.stringify({ v: 1, type: 'span', traceId: 'd'.repeat(32), spanId: 'dddddddddddddd01', name: 'x'.repeat(2 * 1024 * 1024), startTimeUnixNano: '1', endTimeUnixNano: '1' });
    const ok = JSON.stringify({ v: 1, type: 'span', traceId: 'd'.repeat(32), spanId: 'dddddddddddddd02', name: 'after-huge', startTimeUnixNano: '1732700000000000000', endTimeUnixNano: '1732700000000000000' });
    await sendOverSocket(socket, [huge, ok]);
    await daemon.eventually(() => assert.ok(fake.spans.some((s) => s.spanId === 'dddddddddddddd02')));
    assert.equal(await daemon.metric('dspy_o11yd_records_invalid_total', { transport: 'uds', reason: 'too_large' }), 1);
  });

  test('a record whose v nests thousands of levels deep is unsupported_version; the daemon and the records after it live on', async () => {
    // 20 KB, within --max-record-bytes: describing its `v` with JSON.stringify overflowed the stack and killed the daemon.
    const deep = `{"v":${'['.repeat(10_000)}${']'.repeat(10_000)},"type":"span"}`;
    const after = JSON.stringify({ v: 1, type: 'span', traceId: 'd'.repeat(32), spanId: 'dddddddddddddd03', name: 'after-deep', startTimeUnixNano: '1732700000000000000', endTimeUnixNano: '1732700000000000000' });
    const before = await daemon.metric('dspy_o11yd_records_invalid_total', { transport: 'uds', reason: 'unsupported_version' });
    await sendOverSocket(socket, [deep, after]);
    await daemon.eventually(() => assert.ok(fake.spans.some((s) => s.spanId === 'dddddddddddddd03')));
    assert.equal(await daemon.metric('dspy_o11yd_records_invalid_total', { transport: 'uds', reason: 'unsupported_version' }), before + 1);
    assert.equal(daemon.child.exitCode, null, 'the daemon is still running');
  });

  test('HTTP /v1/ingest takes NDJSON and JSON, answers 202 with counts and the first errors', async () => {
    const hello = JSON.stringify({ v: 1, type: 'hello', resource: { 'service.name': 'over-http' } });
    const spanLine = (id: string) => JSON.stringify({ v: 1, type: 'span', traceId: 'e'.repeat(32), spanId: id, name: `http-${id}`, startTimeUnixNano: '1732700000000000007', endTimeUnixNano: '1732700000000000009', attributes: { 'dspy.observation.type': 'tool', n: 3 } });
    const nd = await postIngest(daemon.httpUrl, [hello, spanLine('eeeeeeeeeeee0001'), '{broken', spanLine('eeeeeeeeeeee0002')].join('\n'));
    assert.equal(nd.status, 202);
    assert.deepEqual({ accepted: nd.body.accepted, rejected: nd.body.rejected }, { accepted: 3, rejected: 1 });
    assert.equal(nd.body.errors[0]!.index, 2);
    assert.match(nd.body.errors[0]!.message, /invalid_json/);

    const json = await postIngest(daemon.httpUrl, JSON.stringify([JSON.parse(hello), JSON.parse(spanLine('eeeeeeeeeeee0003')), { v: 1, type: 'nope' }]), 'application/json');
    assert.equal(json.status, 202);
    assert.deepEqual(json.body, { accepted: 2, rejected: 1, errors: [{ index: 2, message: json.body.errors[0]!.message }] });
    const single = await postIngest(daemon.httpUrl, spanLine('eeeeeeeeeeee0004'), 'application/json');
    assert.equal(single.body.accepted, 1);

    await daemon.eventually(() => {
      for (const id of ['eeeeeeeeeeee0001', 'eeeeeeeeeeee0002', 'eeeeeeeeeeee0003', 'eeeeeeeeeeee0004']) {
        const s = fake.spans.find((x) => x.spanId === id);
        assert.ok(s, `${id} arrived`);
        assert.equal(s.startTimeUnixNano, '1732700000000000007');
        assert.equal(s.attributes['langfuse.observation.type'], 'tool');
        assert.equal(s.attributeTypes?.n, 'int');
      }
    });
    assert.equal(fake.spans.find((x) => x.spanId === 'eeeeeeeeeeee0001')!.resource['service.name'], 'over-http');
    assert.equal(fake.spans.find((x) => x.spanId === 'eeeeeeeeeeee0004')!.resource['service.name'], undefined, 'a hello lasts for its own body only');
    assert.equal(await daemon.metric('dspy_o11yd_records_received_total', { transport: 'http', type: 'span' }), 4);
    const bad = await fetch(`${daemon.httpUrl}/v1/ingest`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'x' });
    assert.equal(bad.status, 415);
  });

  test('client drop reports are counted exactly and logged at most once per 10 s, not once each', async () => {
    const warnings = () => daemon.logs.filter((l) => l.msg === 'a client reports records it dropped before sending').length;
    const before = { warnings: warnings(), dropped: await daemon.metric('dspy_o11yd_spans_dropped_total', { reason: 'client_buffer' }) };
    const stats = JSON.stringify({ v: 1, type: 'stats', droppedRecords: 3, reason: 'buffer_full' });
    await sendOverSocket(socket, Array.from({ length: 1000 }, () => stats));
    await daemon.eventually(async () => assert.equal(await daemon.metric('dspy_o11yd_spans_dropped_total', { reason: 'client_buffer' }), before.dropped + 3000));
    assert.ok(warnings() - before.warnings <= 1, `${warnings() - before.warnings} warnings for 1,000 reports`);
  });

  test('many concurrent socket connections each keep their own resource', async () => {
    const before = fake.spans.length;
    await Promise.all(
      Array.from({ length: 20 }, (_, c) =>
        sendOverSocket(socket, [
          JSON.stringify({ v: 1, type: 'hello', resource: { 'service.name': `svc-${c}` } }),
          ...Array.from({ length: 50 }, (_, i) => JSON.stringify({ v: 1, type: 'span', traceId: (c + 1).toString(16).padStart(32, 'f'), spanId: (c * 1000 + i + 1).toString(16).padStart(16, 'a'), name: `c${c}`, startTimeUnixNano: '1732700000000000000', endTimeUnixNano: '1732700000000000000' })),
        ]),
      ),
    );
    await fake.waitForSpans(before + 1000, 10_000);
    for (const s of fake.spans.slice(before)) assert.equal(s.resource['service.name'], `svc-${s.name.slice(1)}`);
  });

  test('/healthz, /readyz, /v1/status and the invariant received = exported + dropped + queued + in flight', async () => {
    assert.equal((await fetch(`${daemon.httpUrl}/healthz`)).status, 200);
    assert.equal((await fetch(`${daemon.httpUrl}/readyz`)).status, 200);
    await daemon.eventually(async () => {
      const s = await daemon.status();
      assert.equal(s.spans.queued + s.spans.inFlight, 0);
    });
    const s = await daemon.status();
    const droppedInDaemon = Object.entries(s.spans.dropped).reduce((t, [r, n]) => (r === 'client_buffer' ? t : t + n), 0);
    assert.equal(s.spans.received, s.spans.exported + droppedInDaemon + s.spans.queued + s.spans.inFlight);
    // Plus 2: the generation vector's two span events arrive as observations of their own.
    assert.equal(s.spans.exported + 2, fake.spans.length);
    assert.equal(s.exporter.kind, 'langfuse');
    assert.equal(s.exporter.destination, `${fake.url}/api/public/otel/v1/traces`);
    assert.equal(fake.maxInFlight, 1, 'never more than one export request in flight');
  });

  test('the secret key never appears in logs, status or metrics', async () => {
    const status = JSON.stringify(await daemon.status());
    const metrics = await daemon.metrics();
    for (const text of [daemon.stderr, daemon.stdout, status, metrics]) {
      assert.ok(!text.includes(KEYS.LANGFUSE_SECRET_KEY));
      assert.ok(!text.includes(Buffer.from(`${KEYS.LANGFUSE_PUBLIC_KEY}:${KEYS.LANGFUSE_SECRET_KEY}`).toString('base64')));
    }
    for (const req of fake.requests) assert.equal(req.headers.authorization, `Basic ${Buffer.from(`${KEYS.LANGFUSE_PUBLIC_KEY}:${KEYS.LANGFUSE_SECRET_KEY}`).toString('base64')}`);
    assert.ok(fake.requests.every((r) => r.contentType === 'application/x-protobuf' && r.contentEncoding === 'gzip'));
  });

  test('SIGTERM removes the socket file and exits 0', async () => {
    const exit = await daemon.stop('SIGTERM');
    assert.equal(exit.code, 0);
    assert.equal(existsSync(socket), false);
  });
});

describe("Langfuse's environment variables on the daemon", () => {
  let fake: FakeLangfuse;
  let daemon: DaemonProcess;
  const tmp = tempDir();
  const socket = join(tmp.dir, 'd.sock');
  const env = { LANGFUSE_TRACING_ENVIRONMENT: 'staging', LANGFUSE_RELEASE: '2026.11.27' };

  useLangfuseDaemon(KEYS, ['--socket', socket, '--http', '127.0.0.1:0', '--flush-interval', '50'], (f, d) => ((fake = f), (daemon = d)), { env, socketPath: socket });
  after(() => tmp.cleanup());

  const spanLine = (spanId: string, name: string) =>
    JSON.stringify({ v: 1, type: 'span', traceId: 'c'.repeat(31) + spanId.slice(-1), spanId, name, startTimeUnixNano: '1732700000000000000', endTimeUnixNano: '1732700000000000005' });

  test('LANGFUSE_TRACING_ENVIRONMENT and LANGFUSE_RELEASE fill in what a sender leaves out; what it sets wins', async () => {
    const hello = (resource: Record<string, string>) => JSON.stringify({ v: 1, type: 'hello', resource });
    // No hello at all, a hello without either, one with both, one with only an environment.
    await sendOverSocket(socket, [spanLine('a000000000000001', 'no-hello')]);
    await sendOverSocket(socket, [hello({ 'service.name': 'bare' }), spanLine('a000000000000002', 'bare')]);
    await sendOverSocket(socket, [hello({ 'service.name': 'own', 'deployment.environment.name': 'production', 'service.version': '9.9.9' }), spanLine('a000000000000003', 'own')]);
    await sendOverSocket(socket, [
      hello({ 'service.name': 'half', 'deployment.environment.name': 'qa' }),
      spanLine('a000000000000004', 'half'),
      JSON.stringify({ v: 1, type: 'score', traceId: 'c'.repeat(31) + '4', name: 'helpfulness', value: 1 }),
    ]);
    await sendOverSocket(socket, [JSON.stringify({ v: 1, type: 'score', traceId: 'c'.repeat(31) + '1', name: 'helpfulness', value: 0.5 })]);
    // Over OTLP/HTTP, from an OpenTelemetry SDK whose resource names only the service.
    const otlp = {
      resourceSpans: [{
        resource: { attributes: [{ key: 'service.name', value: { stringValue: 'otel-app' } }] },
        scopeSpans: [{ scope: { name: 'otel' }, spans: [{ traceId: 'd'.repeat(32), spanId: 'a000000000000005', name: 'otel', kind: 1, startTimeUnixNano: '1732700000000000000', endTimeUnixNano: '1732700000000000005' }] }],
      }],
    };
    const res = await fetch(`${daemon.httpUrl}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(otlp) });
    assert.equal(res.status, 200);

    await fake.waitForSpans(5, 10_000);
    const got = (name: string) => fake.spans.find((s) => s.name === name)!;
    for (const name of ['no-hello', 'bare', 'otel']) {
      assert.equal(got(name).resource['deployment.environment.name'], 'staging', `${name}: environment from LANGFUSE_TRACING_ENVIRONMENT`);
      assert.equal(got(name).resource['service.version'], '2026.11.27', `${name}: release from LANGFUSE_RELEASE`);
      assert.equal(got(name).attributes['langfuse.environment'], 'staging', name);
      assert.equal(got(name).attributes['langfuse.release'], '2026.11.27', name);
    }
    assert.equal(got('bare').resource['service.name'], 'bare');
    assert.equal(got('otel').resource['service.name'], 'otel-app');
    assert.equal(got('own').attributes['langfuse.environment'], 'production', "the sender's own environment wins");
    assert.equal(got('own').attributes['langfuse.release'], '9.9.9', "the sender's own release wins");
    assert.equal(got('half').attributes['langfuse.environment'], 'qa');
    assert.equal(got('half').attributes['langfuse.release'], '2026.11.27', 'what the sender left out is filled in');
    for (const s of fake.spans) assert.equal(langfuseWouldDrop(s), undefined, s.name);
    // Scores carry the same environment as their sender's spans.
    const scores = await fake.waitForScores(2, 10_000);
    const envOf = (traceEnd: string) => (scores.find((s) => (s.body as { traceId: string }).traceId.endsWith(traceEnd))!.body as { environment?: string }).environment;
    assert.equal(envOf('4'), 'qa');
    assert.equal(envOf('1'), 'staging');
  });

  test("a sender that names its environment or release under another key Langfuse reads keeps it (the older deployment.environment; Langfuse's Python SDK's resource keys)", async () => {
    const spans = fake.spans.length;
    const scores = fake.scores.length;
    // The SDK with OTEL_RESOURCE_ATTRIBUTES=deployment.environment=prod: the key before semantic conventions 1.27.
    await sendOverSocket(socket, [
      JSON.stringify({ v: 1, type: 'hello', resource: { 'service.name': 'legacy', 'deployment.environment': 'prod' } }),
      spanLine('a000000000000006', 'legacy'),
      JSON.stringify({ v: 1, type: 'score', traceId: 'c'.repeat(31) + '6', name: 'helpfulness', value: 1 }),
    ]);
    // Langfuse's Python SDK v3 puts langfuse.environment / langfuse.release on its resource; a span of another instrumentation under it.
    const str = (key: string, v: string) => ({ key, value: { stringValue: v } });
    const otlp = {
      resourceSpans: [{
        resource: { attributes: [str('service.name', 'py-app'), str('langfuse.environment', 'prod-eu'), str('langfuse.release', 'abc123')] },
        scopeSpans: [{ scope: { name: 'opentelemetry.instrumentation.openai' }, spans: [{ traceId: 'e'.repeat(32), spanId: 'a000000000000007', name: 'py-openai', kind: 1, startTimeUnixNano: '1732700000000000000', endTimeUnixNano: '1732700000000000005' }] }],
      }],
    };
    const res = await fetch(`${daemon.httpUrl}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(otlp) });
    assert.equal(res.status, 200);
    await fake.waitForSpans(spans + 2, 10_000);
    const got = (name: string) => fake.spans.find((s) => s.name === name)!;
    // What Langfuse reads: the span's key, else the resource's, key by key in its order.
    const environmentOf = (s: (typeof fake.spans)[number]) => {
      for (const k of ['langfuse.environment', 'deployment.environment.name', 'deployment.environment']) {
        const v = s.attributes[k] || s.resource[k];
        if (v) return v;
      }
      return 'default';
    };
    assert.equal(environmentOf(got('legacy')), 'prod', 'not the daemon default over the environment the sender set');
    assert.equal(got('legacy').resource['deployment.environment.name'], undefined);
    assert.equal(got('legacy').attributes['langfuse.release'], '2026.11.27', 'what it left out is still filled in');
    assert.equal(environmentOf(got('py-openai')), 'prod-eu');
    assert.equal(got('py-openai').attributes['langfuse.release'] ?? got('py-openai').resource['langfuse.release'], 'abc123');
    assert.equal(got('py-openai').resource['deployment.environment.name'], undefined);
    assert.equal(got('py-openai').resource['service.version'], undefined, "Langfuse would show the daemon's release as the observations' version");
    const [score] = (await fake.waitForScores(scores + 1, 10_000)).slice(scores);
    assert.equal((score!.body as { environment?: string }).environment, 'prod', 'the score in its spans\' environment');
  });
});
