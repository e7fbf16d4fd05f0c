/**
 * OTLP/HTTP ingest (`POST /v1/traces`): the real OpenTelemetry JS exporters (OTLP/JSON from
 * `@opentelemetry/exporter-trace-otlp-http`, protobuf from `@opentelemetry/exporter-trace-otlp-proto`)
 * send through a real daemon child process to the fake Langfuse; ids, parents, nanosecond times,
 * attributes, events, status and resource arrive intact, GenAI and OpenInference LLM spans become
 * Langfuse generations with model and usage, `langfuse.*` spans pass unchanged. Then the
 * protocol's answers (partial success, 400, 413, 415, 401) and the conversion / dialect units.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { deflateSync, gzipSync } from 'node:zlib';
import protobuf from 'protobufjs';
import { validateRecord, type AttributeValue } from '@dspy-o11y/proto';
import { context, trace, SpanStatusCode, type Tracer } from '@opentelemetry/api';
import { OTLPTraceExporter as OTLPJsonTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as OTLPProtoTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { toSpanRecord, toWireAttributes, toWireValue } from '../src/ingest/otlp-convert.js';
import { messagesFromEvents, normalizeDialects, type WireEvent } from '../src/ingest/otlp-dialects.js';
import { encodeExportResponse } from '../src/ingest/otlp-http.js';
import { LangfuseMapper } from '../src/export/langfuse-map.js';
import { exportTraceServiceRequestType, type AnyValue, type DecodedSpan } from '../src/otlp/decode.js';
import { langfuseWouldDrop, type FakeLangfuse, type RecordedSpan } from './support/fake-langfuse.js';
import { useLangfuseDaemon, type DaemonProcess } from './support/daemon-process.js';

const KEYS = { LANGFUSE_PUBLIC_KEY: 'pk-lf-otlp', LANGFUSE_SECRET_KEY: 'sk-lf-otlp-secret' };
const T0 = 1732700000;

function provider(url: string, kind: 'json' | 'proto', batch: boolean, resource: Record<string, string>, headers?: Record<string, string>): BasicTracerProvider {
  const exporter = kind === 'json' ? new OTLPJsonTraceExporter({ url, headers }) : new OTLPProtoTraceExporter({ url, headers });
  const processor = batch ? new BatchSpanProcessor(exporter, { scheduledDelayMillis: 20 }) : new SimpleSpanProcessor(exporter);
  return new BasicTracerProvider({ resource: resourceFromAttributes(resource), spanProcessors: [processor] });
}

/** One finished span with the given attributes, as a child of `parent` when given. */
function finished(tracer: Tracer, name: string, attributes: Record<string, string | number | boolean | string[]>, startNs: number, parent?: ReturnType<Tracer['startSpan']>) {
  const ctx = parent ? trace.setSpan(context.active(), parent) : context.active();
  const span = tracer.startSpan(name, { startTime: [T0, startNs], attributes }, ctx);
  span.end([T0, startNs + 1000]);
  return span;
}

/** google.rpc.Status, to read the 400 answers to protobuf requests. */
const RpcStatus = protobuf.parse('syntax = "proto3"; package google.rpc; message Status { int32 code = 1; string message = 2; }').root.lookupType('google.rpc.Status');
const readStatus = (bytes: Uint8Array) => RpcStatus.toObject(RpcStatus.decode(bytes)) as { code: number; message: string };

const usageOf = (s: RecordedSpan) => JSON.parse(String(s.attributes['langfuse.observation.usage_details'])) as Record<string, number>;

describe('OTLP/HTTP ingest through the real CLI', () => {
  let fake: FakeLangfuse;
  let daemon: DaemonProcess;
  let tracesUrl: string;

  useLangfuseDaemon(KEYS, ['--socket', '', '--http', '127.0.0.1:0', '--flush-interval', '50'], (f, d) => {
    fake = f;
    daemon = d;
    tracesUrl = `${d.httpUrl}/v1/traces`;
  });

  test('the official OTLP/JSON exporter: ids, parents, ns times, attributes, events, status and resource arrive', async () => {
    const p = provider(tracesUrl, 'json', false, { 'service.name': 'otel-json-app', 'service.version': '2.0.1', 'deployment.environment.name': 'Staging' });
    const tracer = p.getTracer('some-instrumentation', '0.9.0');
    const root = tracer.startSpan('checkout', { startTime: [T0, 123456789], attributes: { 'user.id': 'u-42' } });
    const child = tracer.startSpan(
      'db.query',
      { startTime: [T0, 200000001], attributes: { s: 'text', i: 42, d: 0.5, b: true, ss: ['a', 'b'], ns: [1, 2.5], bs: [true, false] } },
      trace.setSpan(context.active(), root),
    );
    child.addEvent('db.retry', { attempt: 2 }, [T0, 250000000]);
    child.setStatus({ code: SpanStatusCode.ERROR, message: 'deadlock' });
    child.end([T0, 300000009]);
    root.setStatus({ code: SpanStatusCode.OK });
    root.end([T0 + 1, 7]);
    await p.forceFlush();

    const rootId = root.spanContext().spanId;
    const childId = child.spanContext().spanId;
    await daemon.eventually(() => assert.ok(fake.span(rootId) && fake.span(childId) && fake.spans.some((s) => s.parentSpanId === childId)));
    const r = fake.span(rootId)!;
    const c = fake.span(childId)!;
    assert.equal(r.traceId, root.spanContext().traceId);
    assert.equal(c.traceId, r.traceId);
    assert.equal(r.parentSpanId, undefined);
    assert.equal(c.parentSpanId, rootId);
    assert.equal(r.startTimeUnixNano, '1732700000123456789');
    assert.equal(r.endTimeUnixNano, '1732700001000000007');
    assert.equal(c.startTimeUnixNano, '1732700000200000001');
    assert.equal(c.endTimeUnixNano, '1732700000300000009');
    assert.deepEqual(
      { s: c.attributes.s, i: c.attributes.i, d: c.attributes.d, b: c.attributes.b, ss: c.attributes.ss, ns: c.attributes.ns, bs: c.attributes.bs },
      { s: 'text', i: 42, d: 0.5, b: true, ss: ['a', 'b'], ns: [1, 2.5], bs: [true, false] },
    );
    assert.equal(c.attributeTypes.i, 'int');
    assert.equal(c.attributeTypes.d, 'double');
    assert.equal(c.status.code, 2);
    assert.equal(c.attributes['langfuse.observation.status_message'], 'deadlock');
    assert.equal(c.attributes['langfuse.observation.level'], 'ERROR');
    assert.equal(r.status.code, 1);
    // The resource is kept, and Langfuse's release / environment come from it.
    assert.equal(r.resource['service.name'], 'otel-json-app');
    assert.equal(r.resource['service.version'], '2.0.1');
    assert.equal(r.attributes['langfuse.release'], '2.0.1');
    assert.equal(c.attributes['langfuse.environment'], 'staging');
    assert.equal(c.attributes['langfuse.user.id'], 'u-42', 'trace-level attributes reach every span of the trace');
    assert.equal(r.scope.name, 'dspy-o11y');
    // The span event became a child event observation at its time.
    const ev = fake.spans.find((s) => s.parentSpanId === childId)!;
    assert.equal(ev.name, 'db.retry');
    assert.equal(ev.startTimeUnixNano, '1732700000250000000');
    assert.equal(ev.attributes['langfuse.observation.type'], 'event');
    assert.equal(ev.attributes['langfuse.observation.metadata.attempt'], 2);
    await p.shutdown();
  });

  test('a resource with the older `deployment.environment` key gets a valid Langfuse environment (Langfuse reads that key too)', async () => {
    // Semantic conventions before 1.27 (and many OTEL_RESOURCE_ATTRIBUTES) name it so; Langfuse
    // reads it after `deployment.environment.name` and drops every observation whose value fails its rule.
    const p = provider(tracesUrl, 'proto', false, { 'service.name': 'legacy-env-app', 'deployment.environment': 'Production' });
    const span = finished(p.getTracer('legacy-env'), 'legacy-env-root', { k: 'v' }, 7);
    await p.forceFlush();
    const id = span.spanContext().spanId;
    await daemon.eventually(() => assert.ok(fake.span(id)));
    const got = fake.span(id)!;
    assert.equal(got.resource['deployment.environment'], 'Production', 'the resource itself is sent as it came');
    assert.equal(got.attributes['langfuse.environment'], 'production');
    assert.equal(langfuseWouldDrop(got), undefined);
    await p.shutdown();
  });

  test('one odd attribute or an empty name does not cost the span: long and `__proto__` keys are left out, an empty name is "unknown"', async () => {
    const longKey = `k${'x'.repeat(300)}`;
    const p = provider(tracesUrl, 'proto', false, { 'service.name': 'odd-spans' });
    const tracer = p.getTracer('odd');
    const long = tracer.startSpan('long-key', { startTime: [T0, 1], attributes: { [longKey]: 'v', kept: 'yes' } });
    long.addEvent('with-long-key', { [longKey]: 1, n: 2 }, [T0, 2]);
    long.end([T0, 3]);
    // OTLP: an empty name "is equivalent to an unknown span name".
    const unnamed = tracer.startSpan('', { startTime: [T0, 4] });
    unnamed.addEvent('', {}, [T0, 5]);
    unnamed.end([T0, 6]);
    await p.forceFlush();
    const longId = long.spanContext().spanId;
    const unnamedId = unnamed.spanContext().spanId;
    await daemon.eventually(() => assert.ok(fake.span(longId) && fake.span(unnamedId) && fake.spans.filter((x) => x.parentSpanId === longId || x.parentSpanId === unnamedId).length === 2));
    assert.equal(fake.span(longId)!.attributes.kept, 'yes');
    assert.equal(longKey in fake.span(longId)!.attributes, false);
    const event = fake.spans.find((x) => x.parentSpanId === longId)!;
    assert.equal(event.attributes['langfuse.observation.metadata.n'], 2);
    assert.equal(fake.span(unnamedId)!.name, 'unknown');
    assert.equal(fake.spans.find((x) => x.parentSpanId === unnamedId)!.name, 'unknown');
    await p.shutdown();

    // `__proto__`, which no SDK sets (it is the prototype in JS), by hand: left out, nothing else lost.
    const body = {
      resourceSpans: [{
        resource: { attributes: [{ key: 'service.name', value: { stringValue: 'proto-key' } }] },
        scopeSpans: [{ scope: { name: 's' }, spans: [{
          traceId: 'e'.repeat(32), spanId: 'e'.repeat(16), name: 'proto-key', kind: 1, startTimeUnixNano: '1732700000000000000', endTimeUnixNano: '1732700000000000001',
          attributes: [
            { key: '__proto__', value: { arrayValue: { values: [{ stringValue: 'x' }] } } },
            { key: 'kv', value: { kvlistValue: { values: [{ key: '__proto__', value: { intValue: '1' } }, { key: 'y', value: { intValue: '2' } }] } } },
            { key: 'other', value: { stringValue: 'kept' } },
          ],
        }] }],
      }],
    };
    const res = await fetch(tracesUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), {}, 'nothing rejected');
    await daemon.eventually(() => assert.ok(fake.span('e'.repeat(16))));
    const got = fake.span('e'.repeat(16))!;
    assert.equal(got.attributes.other, 'kept');
    assert.equal(Object.getPrototypeOf(got.attributes), Object.prototype);
    assert.equal(Object.hasOwn(got.attributes, '__proto__'), false);
    // Inside a kvlist (sent on as a JSON string) the key is data: kept.
    assert.deepEqual(JSON.parse(String(got.attributes.kv)), { ['__proto__']: 1, y: 2 });
  });

  test('the official protobuf exporter: GenAI and OpenInference LLM spans arrive as generations with model and usage', async () => {
    const p = provider(tracesUrl, 'proto', true, { 'service.name': 'otel-proto-app' });
    const tracer = p.getTracer('llm-instrumentation');
    const root = finished(tracer, 'agent.run', { 'gen_ai.operation.name': 'invoke_agent' }, 1);
    const genaiOld = finished(
      tracer,
      'chat gpt-4o-mini',
      {
        'gen_ai.operation.name': 'chat',
        'gen_ai.system': 'openai',
        'gen_ai.request.model': 'gpt-4o-mini',
        'gen_ai.response.model': 'gpt-4o-mini-2024-07-18',
        'gen_ai.usage.prompt_tokens': 120,
        'gen_ai.usage.completion_tokens': 30,
        'gen_ai.request.temperature': 0.2,
      },
      10,
      root,
    );
    const genaiNew = finished(
      tracer,
      'text_completion',
      {
        'gen_ai.operation.name': 'text_completion',
        'gen_ai.provider.name': 'anthropic',
        'gen_ai.request.model': 'claude-3-5-haiku',
        'gen_ai.usage.input_tokens': 11,
        'gen_ai.usage.output_tokens': 5,
        'gen_ai.input.messages': '[{"role":"user","parts":[{"type":"text","content":"hi"}]}]',
      },
      20,
      root,
    );
    const oi = finished(
      tracer,
      'ChatCompletion',
      {
        'openinference.span.kind': 'LLM',
        'llm.model_name': 'gpt-4.1',
        'llm.provider': 'openai',
        'llm.token_count.prompt': 50,
        'llm.token_count.completion': 7,
        'llm.token_count.total': 57,
        'llm.invocation_parameters': '{"temperature":0,"max_tokens":256}',
        'input.value': 'What is 2+2?',
        'output.value': '{"answer":4}',
        'output.mime_type': 'application/json',
      },
      30,
      root,
    );
    const oiChain = finished(tracer, 'RetrievalQA', { 'openinference.span.kind': 'CHAIN', 'input.value': 'q' }, 40, root);
    const langfuseAttrs = { 'langfuse.observation.type': 'generation', 'langfuse.observation.model.name': 'own-model', 'gen_ai.usage.prompt_tokens': 3, 'llm.model_name': 'untouched' };
    const lf = finished(tracer, 'langfuse-native', langfuseAttrs, 50, root);
    await p.forceFlush();

    const ids = [root, genaiOld, genaiNew, oi, oiChain, lf].map((s) => s.spanContext().spanId);
    await daemon.eventually(() => assert.ok(ids.every((id) => fake.span(id))));

    const a = fake.span(ids[1]!)!;
    assert.equal(a.parentSpanId, ids[0]);
    assert.equal(a.attributes['langfuse.observation.type'], 'generation');
    assert.equal(a.attributes['langfuse.observation.model.name'], 'gpt-4o-mini-2024-07-18');
    assert.deepEqual(usageOf(a), { input: 120, output: 30, total: 150 });
    assert.ok(Object.values(usageOf(a)).every(Number.isInteger));
    assert.deepEqual(JSON.parse(String(a.attributes['langfuse.observation.model.parameters'])), { temperature: 0.2 });
    assert.equal(a.attributes['gen_ai.provider.name'], 'openai');
    assert.equal(a.attributes['gen_ai.usage.prompt_tokens'], undefined, 'moved, not duplicated in metadata');
    assert.equal(a.attributes['gen_ai.system'], undefined);

    const b = fake.span(ids[2]!)!;
    assert.equal(b.attributes['langfuse.observation.type'], 'generation');
    assert.equal(b.attributes['langfuse.observation.model.name'], 'claude-3-5-haiku');
    assert.deepEqual(usageOf(b), { input: 11, output: 5, total: 16 });
    assert.equal(b.attributes['langfuse.observation.input'], '[{"role":"user","parts":[{"type":"text","content":"hi"}]}]');

    const o = fake.span(ids[3]!)!;
    assert.equal(o.attributes['langfuse.observation.type'], 'generation');
    assert.equal(o.attributes['langfuse.observation.model.name'], 'gpt-4.1');
    assert.deepEqual(usageOf(o), { input: 50, output: 7, total: 57 });
    assert.ok(Object.values(usageOf(o)).every(Number.isInteger));
    assert.deepEqual(JSON.parse(String(o.attributes['langfuse.observation.model.parameters'])), { temperature: 0, max_tokens: 256 });
    assert.equal(o.attributes['langfuse.observation.input'], '"What is 2+2?"', 'text/plain input becomes a JSON string');
    assert.equal(o.attributes['langfuse.observation.output'], '{"answer":4}', 'application/json output stays as is');
    assert.equal(o.attributes['input.value'], undefined);

    assert.equal(fake.span(ids[4]!)!.attributes['langfuse.observation.type'], 'chain');
    assert.equal(fake.span(ids[0]!)!.attributes['langfuse.observation.type'], 'agent');

    // A span that already speaks Langfuse's dialect passes exactly as it was sent.
    assert.deepEqual(fake.span(ids[5]!)!.attributes, langfuseAttrs);
    assert.equal(fake.span(ids[5]!)!.resource['service.name'], 'otel-proto-app');
    await p.shutdown();
  });

  test('GenAI messages sent as span events become the generation\'s input and output, as Langfuse reads them', async () => {
    const p = provider(tracesUrl, 'proto', false, { 'service.name': 'genai-events-app' });
    const tracer = p.getTracer('genai-events');
    // Azure AI Inference / OpenTelemetry GenAI events: one per message, then the choice.
    const chat = tracer.startSpan('chat gpt-4o', { startTime: [T0, 100], attributes: { 'gen_ai.operation.name': 'chat', 'gen_ai.system': 'az.ai.inference', 'gen_ai.request.model': 'gpt-4o' } });
    chat.addEvent('gen_ai.system.message', { 'gen_ai.event.content': '{"content":"be brief"}' }, [T0, 101]);
    chat.addEvent('gen_ai.user.message', { 'gen_ai.event.content': '{"content":"hi"}' }, [T0, 102]);
    chat.addEvent('gen_ai.choice', { 'gen_ai.event.content': '{"index":0,"message":{"content":"hello"}}' }, [T0, 103]);
    chat.end([T0, 200]);
    // Semantic Kernel: the older conventions' prompt and completion events; other events stay events.
    const sk = tracer.startSpan('chat.completions gpt-4o-mini', { startTime: [T0, 300], attributes: { 'gen_ai.system': 'openai', 'gen_ai.request.model': 'gpt-4o-mini' } });
    sk.addEvent('gen_ai.content.prompt', { 'gen_ai.prompt': '[{"role":"user","content":"hi"}]' }, [T0, 301]);
    sk.addEvent('gen_ai.content.completion', { 'gen_ai.completion': '[{"role":"assistant","content":"hello"}]' }, [T0, 302]);
    sk.addEvent('retry', { attempt: 1 }, [T0, 303]);
    sk.end([T0, 400]);
    await p.forceFlush();
    const chatId = chat.spanContext().spanId;
    const skId = sk.spanContext().spanId;
    await daemon.eventually(() => assert.ok(fake.span(chatId) && fake.span(skId)));

    const c = fake.span(chatId)!;
    assert.equal(c.attributes['langfuse.observation.type'], 'generation');
    assert.deepEqual(JSON.parse(String(c.attributes['langfuse.observation.input'])), [
      { role: 'system', 'gen_ai.event.content': '{"content":"be brief"}' },
      { role: 'user', 'gen_ai.event.content': '{"content":"hi"}' },
    ]);
    assert.deepEqual(JSON.parse(String(c.attributes['langfuse.observation.output'])), { 'gen_ai.event.content': '{"index":0,"message":{"content":"hello"}}' });
    assert.equal(c.attributes['langfuse.trace.input'], c.attributes['langfuse.observation.input'], 'a root span gives the trace its input');
    assert.equal(fake.spans.filter((x) => x.parentSpanId === chatId).length, 0, 'moved, not also sent as event observations');

    const k = fake.span(skId)!;
    assert.equal(k.attributes['langfuse.observation.input'], '[{"role":"user","content":"hi"}]');
    assert.equal(k.attributes['langfuse.observation.output'], '[{"role":"assistant","content":"hello"}]');
    assert.deepEqual(fake.spans.filter((x) => x.parentSpanId === skId).map((x) => x.name), ['retry']);
    await p.shutdown();
  });

  test("Pydantic AI through the daemon: the run's messages and result, its model request's cache counts (Langfuse reads them only under scope pydantic-ai)", async () => {
    const p = provider(tracesUrl, 'proto', true, { 'service.name': 'pydantic-ai-app' });
    const tracer = p.getTracer('pydantic-ai', '1.0.0');
    const messages = '[{"role":"user","parts":[{"type":"text","content":"Where?"}]}]';
    const run = finished(tracer, 'invoke_agent agent', {
      'gen_ai.operation.name': 'invoke_agent', 'gen_ai.agent.name': 'agent', 'logfire.msg': 'agent run',
      'pydantic_ai.all_messages': messages, 'final_result': 'Paris',
    }, 1);
    const chat = finished(tracer, 'chat claude-sonnet-4-5', {
      'gen_ai.operation.name': 'chat', 'gen_ai.system': 'anthropic', 'gen_ai.request.model': 'claude-sonnet-4-5',
      'gen_ai.usage.input_tokens': 1000, 'gen_ai.usage.output_tokens': 50,
      'gen_ai.usage.details.cache_read_input_tokens': 800, 'gen_ai.usage.details.cache_creation_input_tokens': 150,
    }, 10, run);
    await p.forceFlush();
    const [runId, chatId] = [run, chat].map((s) => s.spanContext().spanId);
    await daemon.eventually(() => assert.ok(fake.span(runId!) && fake.span(chatId!)));

    const r = fake.span(runId!)!;
    assert.equal(r.attributes['langfuse.observation.type'], 'agent');
    assert.equal(r.attributes['langfuse.observation.input'], messages);
    assert.equal(r.attributes['langfuse.observation.output'], '"Paris"');
    assert.equal(r.attributes['langfuse.trace.output'], '"Paris"', 'the root run gives the trace its output');
    const c = fake.span(chatId!)!;
    assert.deepEqual(usageOf(c), { input: 50, output: 50, total: 1050, input_cache_read: 800, input_cache_creation: 150 });
    assert.ok(!langfuseWouldDrop(c));
    await p.shutdown();
  });

  test('Vercel AI SDK through the daemon: the cache counts of ai.response.providerMetadata and the reasoning count reach Langfuse', async () => {
    const p = provider(tracesUrl, 'proto', true, { 'service.name': 'vercel-app' });
    const tracer = p.getTracer('ai');
    const claude = finished(tracer, 'ai.streamText.doStream', {
      'ai.operationId': 'ai.streamText.doStream', 'ai.model.id': 'claude-sonnet-4-5', 'ai.model.provider': 'anthropic.messages',
      'ai.usage.inputTokens': 7, 'ai.usage.outputTokens': 445, 'ai.usage.totalTokens': 452, 'ai.usage.cachedInputTokens': 16399,
      'ai.response.providerMetadata': '{"anthropic":{"usage":{"input_tokens":7,"cache_creation_input_tokens":2089,"cache_read_input_tokens":16399,"output_tokens":445},"cacheCreationInputTokens":2089}}',
    }, 1);
    const o4 = finished(tracer, 'ai.generateText.doGenerate', {
      'ai.operationId': 'ai.generateText.doGenerate', 'ai.model.id': 'o4-mini', 'ai.model.provider': 'openai.responses',
      'ai.usage.inputTokens': 100, 'ai.usage.outputTokens': 500, 'ai.usage.totalTokens': 600, 'ai.usage.reasoningTokens': 448,
      'ai.response.providerMetadata': '{"openai":{"responseId":"resp_1","cachedPromptTokens":64}}',
    }, 10);
    await p.forceFlush();
    const [claudeId, o4Id] = [claude, o4].map((s) => s.spanContext().spanId);
    await daemon.eventually(() => assert.ok(fake.span(claudeId!) && fake.span(o4Id!)));
    const c = fake.span(claudeId!)!;
    assert.deepEqual(usageOf(c), { input: 7, output: 445, total: 18940, input_cache_read: 16399, input_cache_creation: 2089 });
    assert.ok(!langfuseWouldDrop(c));
    const o = fake.span(o4Id!)!;
    assert.deepEqual(usageOf(o), { input: 36, output: 52, total: 600, input_cache_read: 64, output_reasoning_tokens: 448 });
    assert.ok(!langfuseWouldDrop(o));
    await p.shutdown();
  });

  test('a gzip OTLP/JSON body is accepted; the answer is an empty ExportTraceServiceResponse', async () => {
    const traceId = '5b8efff798038103d269b633813fc60c';
    const body = {
      resourceSpans: [
        {
          resource: { attributes: [{ key: 'service.name', value: { stringValue: 'gz' } }] },
          scopeSpans: [
            {
              scope: { name: 'raw' },
              spans: [
                // An all-zero parent id means "no parent" (some clients send it for roots).
                { traceId, spanId: 'eee19b7ec3c1b174', parentSpanId: '0000000000000000', name: 'gz-root', startTimeUnixNano: '1732700000000000001', endTimeUnixNano: '1732700000000000002', kind: 1 },
              ],
            },
          ],
        },
      ],
    };
    const res = await fetch(tracesUrl, { method: 'POST', headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' }, body: gzipSync(JSON.stringify(body)) });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
    assert.deepEqual(await res.json(), {});
    await daemon.eventually(() => assert.ok(fake.span('eee19b7ec3c1b174')));
    assert.equal(fake.span('eee19b7ec3c1b174')!.parentSpanId, undefined);
    assert.equal(fake.span('eee19b7ec3c1b174')!.resource['service.name'], 'gz');
  });

  test("a deflate body (the Python OTLP exporter's Compression.Deflate, zlib-wrapped) is accepted like gzip", async () => {
    const type = exportTraceServiceRequestType();
    const body = type.encode(type.fromObject({
      resourceSpans: [{ resource: { attributes: [{ key: 'service.name', value: { stringValue: 'py' } }] }, scopeSpans: [{ spans: [
        { traceId: Buffer.from('6b8efff798038103d269b633813fc60c', 'hex'), spanId: Buffer.from('fee19b7ec3c1b174', 'hex'), name: 'deflated', startTimeUnixNano: '1732700000000000001', endTimeUnixNano: '1732700000000000002' },
      ] }] }],
    })).finish();
    const res = await fetch(tracesUrl, { method: 'POST', headers: { 'content-type': 'application/x-protobuf', 'content-encoding': 'deflate' }, body: deflateSync(body) });
    assert.equal(res.status, 200);
    await daemon.eventually(() => assert.ok(fake.span('fee19b7ec3c1b174')));
    assert.equal(fake.span('fee19b7ec3c1b174')!.resource['service.name'], 'py');
  });

  test('invalid spans are rejected one by one: partialSuccess in protobuf and JSON, the rest delivered, each counted', async () => {
    const type = exportTraceServiceRequestType();
    const hex = (h: string) => Buffer.from(h, 'hex');
    const span = (traceId: string, spanId: string, name: string) => ({
      traceId: hex(traceId),
      spanId: hex(spanId),
      name,
      startTimeUnixNano: '1732700000000000010',
      endTimeUnixNano: '1732700000000000020',
    });
    const pb = type
      .encode(
        type.fromObject({
          resourceSpans: [
            {
              resource: { attributes: [{ key: 'service.name', value: { stringValue: 'partial' } }] },
              scopeSpans: [{ spans: [span('0'.repeat(32), 'aaaa00000000000a', 'zero-trace'), span('6'.repeat(32), 'aaaa00000000000b', 'fine')] }],
            },
          ],
        }),
      )
      .finish();
    const res = await fetch(tracesUrl, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body: pb });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'application/x-protobuf');
    const answer = ProtobufTraceSerializer.deserializeResponse(new Uint8Array(await res.arrayBuffer()));
    assert.equal(Number(answer.partialSuccess?.rejectedSpans), 1);
    assert.match(answer.partialSuccess?.errorMessage ?? '', /1 of 2 spans rejected: span aaaa00000000000a: invalid_trace_id/);

    const json = {
      resourceSpans: [
        {
          scopeSpans: [
            {
              spans: [
                { traceId: '7'.repeat(32), spanId: '0'.repeat(16), name: 'zero-span', startTimeUnixNano: '1', endTimeUnixNano: '2' },
                { traceId: '7'.repeat(32), spanId: 'aaaa00000000000c', name: 'backwards', startTimeUnixNano: '5', endTimeUnixNano: '4' },
                { traceId: '7'.repeat(32), spanId: 'aaaa00000000000d', name: 'ok', startTimeUnixNano: '5', endTimeUnixNano: '6' },
              ],
            },
          ],
        },
      ],
    };
    const jres = await fetch(tracesUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(json) });
    assert.equal(jres.status, 200);
    const janswer = (await jres.json()) as { partialSuccess: { rejectedSpans: string; errorMessage: string } };
    assert.equal(janswer.partialSuccess.rejectedSpans, '2');
    assert.match(janswer.partialSuccess.errorMessage, /invalid_span_id/);
    assert.match(janswer.partialSuccess.errorMessage, /invalid_end_time_unix_nano/);

    await daemon.eventually(() => assert.ok(fake.span('aaaa00000000000b') && fake.span('aaaa00000000000d')));
    assert.equal(fake.span('aaaa00000000000b')!.resource['service.name'], 'partial');
    assert.equal(await daemon.metric('dspy_o11yd_records_invalid_total', { transport: 'otlp', reason: 'invalid_trace_id' }), 1);
    assert.equal(await daemon.metric('dspy_o11yd_records_invalid_total', { transport: 'otlp', reason: 'invalid_span_id' }), 1);
    assert.equal(await daemon.metric('dspy_o11yd_records_invalid_total', { transport: 'otlp', reason: 'invalid_end_time_unix_nano' }), 1);
    assert.ok((await daemon.metric('dspy_o11yd_records_received_total', { transport: 'otlp', type: 'span' })) >= 10);
  });

  test('an undecodable body is 400 with a Status in the request encoding; nothing of it is accepted', async () => {
    const before = await daemon.metric('dspy_o11yd_records_received_total', { transport: 'otlp', type: 'span' });
    const garbage = await fetch(tracesUrl, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body: new Uint8Array([0x0a, 0xff, 0xff, 0xff, 0x0f]) });
    assert.equal(garbage.status, 400);
    assert.equal(garbage.headers.get('content-type'), 'application/x-protobuf');
    const status = readStatus(new Uint8Array(await garbage.arrayBuffer()));
    assert.equal(status.code, 3);
    assert.match(status.message, /^invalid OTLP trace export: malformed OTLP protobuf/);

    const notJson = await fetch(tracesUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"resourceSpans": [' });
    assert.equal(notJson.status, 400);
    assert.equal(((await notJson.json()) as { code: number }).code, 3);

    // A span id of the wrong length makes the whole request invalid (as in the Collector and Langfuse).
    const badId = { resourceSpans: [{ scopeSpans: [{ spans: [{ traceId: '8'.repeat(32), spanId: 'abc', name: 'x', startTimeUnixNano: '1', endTimeUnixNano: '1' }] }] }] };
    const bad = await fetch(tracesUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(badId) });
    assert.equal(bad.status, 400);
    assert.match(((await bad.json()) as { message: string }).message, /spanId/);

    const badGzip = await fetch(tracesUrl, { method: 'POST', headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' }, body: 'not gzip' });
    assert.equal(badGzip.status, 400);
    assert.equal(await daemon.metric('dspy_o11yd_records_received_total', { transport: 'otlp', type: 'span' }), before);
  });

  test('other content types and content encodings are 415, answered as a Status (OTLP: every refusal is one)', async () => {
    const text = await fetch(tracesUrl, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'x' });
    assert.equal(text.status, 415);
    const status = (await text.json()) as { code: unknown; message: unknown };
    assert.equal(status.code, 3, 'google.rpc.Status, code INVALID_ARGUMENT');
    assert.match(String(status.message), /content-type must be application\/x-protobuf or application\/json, got text\/plain/);
    const none = await fetch(tracesUrl, { method: 'POST', body: new Uint8Array([1]) });
    assert.equal(none.status, 415);
    const ndjson = await fetch(tracesUrl, { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body: '{}' });
    assert.equal(ndjson.status, 415);
    // application/protobuf, the registered name, is read like application/x-protobuf.
    const registered = await fetch(tracesUrl, { method: 'POST', headers: { 'content-type': 'application/protobuf' }, body: new Uint8Array(0) });
    assert.equal(registered.status, 200);
    const br = await fetch(tracesUrl, { method: 'POST', headers: { 'content-type': 'application/json', 'content-encoding': 'br' }, body: '{}' });
    assert.equal(br.status, 415);
  });

  test('requests refused whole are counted: 400 and 415 as invalid_otlp, 413 as too_large (a body of too many messages too)', async () => {
    const invalid = () => daemon.metric('dspy_o11yd_records_invalid_total', { transport: 'otlp', reason: 'invalid_otlp' });
    const tooLarge = () => daemon.metric('dspy_o11yd_records_invalid_total', { transport: 'otlp', reason: 'too_large' });
    const [invalidBefore, tooLargeBefore] = [await invalid(), await tooLarge()];
    const garbage = await fetch(tracesUrl, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body: new Uint8Array([0x0a, 0xff, 0xff, 0xff, 0x0f]) });
    assert.equal(garbage.status, 400);
    const ndjson = await fetch(tracesUrl, { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body: '{}' });
    assert.equal(ndjson.status, 415);
    // 2 MB of empty resource spans (2 bytes each): far within the body limit, ~100 bytes of heap each once decoded.
    const many = Buffer.alloc(2 * 1_000_001);
    for (let i = 0; i < many.length; i += 2) many[i] = 0x0a;
    const res = await fetch(tracesUrl, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body: many });
    assert.equal(res.status, 413);
    assert.match(readStatus(new Uint8Array(await res.arrayBuffer())).message, /too large: request holds more than 1000000 .*send smaller batches/);
    const json = await fetch(tracesUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: `{"resourceSpans":[${'{},'.repeat(1_000_000)}{}]}` });
    assert.equal(json.status, 413);
    assert.equal(await invalid(), invalidBefore + 2);
    assert.equal(await tooLarge(), tooLargeBefore + 2);
  });
});

describe('OTLP/HTTP ingest with --ingest-token', () => {
  let fake: FakeLangfuse;
  let daemon: DaemonProcess;
  const token = 'otlp-ingest-token-1234';

  useLangfuseDaemon(KEYS, ['--socket', '', '--http', '127.0.0.1:0', '--flush-interval', '50', '--ingest-token', token], (f, d) => ((fake = f), (daemon = d)));

  test('a request without the bearer token is 401; an exporter sending it delivers', async () => {
    const denied = await fetch(`${daemon.httpUrl}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    assert.equal(denied.status, 401);
    const p = provider(`${daemon.httpUrl}/v1/traces`, 'json', false, { 'service.name': 'with-token' }, { authorization: `Bearer ${token}` });
    const s = finished(p.getTracer('t'), 'authorized', { k: 'v' }, 5);
    await p.forceFlush();
    await daemon.eventually(() => assert.ok(fake.span(s.spanContext().spanId)));
    await p.shutdown();
  });
});

describe('OTLP conversion units', () => {
  const v = (value: AnyValue) => toWireValue(value);

  test('attribute values become the wire types; structured ones JSON strings', () => {
    assert.equal(v({ type: 'int', value: 2n ** 60n }), '1152921504606846976');
    assert.equal(v({ type: 'int', value: -7 }), -7);
    assert.equal(v({ type: 'double', value: Number.NaN }), 'NaN');
    assert.equal(v({ type: 'double', value: Number.POSITIVE_INFINITY }), 'Infinity');
    assert.equal(v({ type: 'bytes', value: new Uint8Array([0, 1, 255]) }), 'AAH/');
    assert.equal(v({ type: 'empty' }), undefined);
    assert.equal(
      v({ type: 'kvlist', values: [{ key: 'a', value: { type: 'int', value: 1 } }, { key: 'b', value: { type: 'array', values: [{ type: 'string', value: 'x' }] } }] }),
      '{"a":1,"b":["x"]}',
    );
    assert.deepEqual(v({ type: 'array', values: [] }), []);
    assert.deepEqual(v({ type: 'array', values: [{ type: 'int', value: 1 }, { type: 'double', value: 2.5 }] }), [1, 2.5]);
    assert.equal(v({ type: 'array', values: [{ type: 'string', value: 'a' }, { type: 'int', value: 1 }] }), '["a",1]', 'mixed');
    assert.equal(v({ type: 'array', values: [{ type: 'array', values: [{ type: 'bool', value: true }] }] }), '[[true]]', 'nested');
    assert.equal(v({ type: 'array', values: [{ type: 'int', value: 1 }, { type: 'int', value: 2n ** 62n }] }), '[1,"4611686018427387904"]', 'big ints stay exact');
    assert.deepEqual(toWireAttributes([{ key: 'k', value: { type: 'string', value: 'first' } }, { key: 'k', value: { type: 'string', value: 'last' } }, { key: 'e', value: { type: 'empty' } }]), { k: 'last' });
    // Keys the wire protocol cannot carry, and `__proto__`, are left out (not the span).
    const odd = toWireAttributes([
      { key: '', value: { type: 'int', value: 1 } }, { key: 'x'.repeat(257), value: { type: 'int', value: 2 } },
      { key: '__proto__', value: { type: 'string', value: 'p' } }, { key: 'x'.repeat(256), value: { type: 'int', value: 3 } },
    ]);
    assert.deepEqual(Object.keys(odd), ['x'.repeat(256)]);
    assert.equal(Object.getPrototypeOf(odd), Object.prototype);
  });

  test('a decoded span becomes a span record: status codes, events, zero parent', () => {
    const base: DecodedSpan = {
      traceId: 'a'.repeat(32), spanId: 'b'.repeat(16), parentSpanId: '0000000000000000', flags: 0, name: 'n', kind: 1,
      startTimeUnixNano: '10', endTimeUnixNano: '20', attributes: [], droppedAttributesCount: 0,
      events: [{ name: 'e', timeUnixNano: '15', attributes: [{ key: 'x', value: { type: 'bool', value: false } }], droppedAttributesCount: 0 }],
      droppedEventsCount: 0, links: [], droppedLinksCount: 0, status: { code: 0 },
    };
    const r = toSpanRecord(base, { normalizeDialects: true });
    assert.deepEqual(r, { v: 1, type: 'span', traceId: 'a'.repeat(32), spanId: 'b'.repeat(16), name: 'n', startTimeUnixNano: '10', endTimeUnixNano: '20', events: [{ name: 'e', timeUnixNano: '15', attributes: { x: false } }] });
    assert.deepEqual(toSpanRecord({ ...base, status: { code: 1 } }, { normalizeDialects: true }).status, { code: 'ok' });
    assert.deepEqual(toSpanRecord({ ...base, status: { code: 2, message: 'm' } }, { normalizeDialects: true }).status, { code: 'error', message: 'm' });
    assert.equal(toSpanRecord({ ...base, parentSpanId: 'c'.repeat(16) }, { normalizeDialects: true }).parentSpanId, 'c'.repeat(16));
    // Without normalization (exporters other than Langfuse) attributes stay as sent.
    const gen = [{ key: 'gen_ai.system', value: { type: 'string', value: 'openai' } }] as const;
    assert.deepEqual(toSpanRecord({ ...base, attributes: gen }, { normalizeDialects: false }).attributes, { 'gen_ai.system': 'openai' });
    assert.deepEqual(toSpanRecord({ ...base, attributes: gen }, { normalizeDialects: true }).attributes, { 'gen_ai.provider.name': 'openai' });
  });

  test('partialSuccess is encoded so the OpenTelemetry deserializer reads it', () => {
    assert.equal(encodeExportResponse(0, '').length, 0);
    const back = ProtobufTraceSerializer.deserializeResponse(encodeExportResponse(300, 'three hundred'));
    assert.deepEqual({ rejected: Number(back.partialSuccess?.rejectedSpans), message: back.partialSuccess?.errorMessage }, { rejected: 300, message: 'three hundred' });
  });
});

describe('dialect normalization', () => {
  test('GenAI (current and deprecated keys) → neutral vocabulary', () => {
    assert.deepEqual(
      normalizeDialects({
        'gen_ai.operation.name': 'chat', 'gen_ai.system': 'openai', 'gen_ai.request.model': 'm',
        'gen_ai.usage.prompt_tokens': 3, 'gen_ai.usage.completion_tokens': 4,
        'gen_ai.input.messages': '[1]', 'gen_ai.output.messages': '[2]',
      }),
      {
        'gen_ai.operation.name': 'chat', 'gen_ai.provider.name': 'openai', 'gen_ai.request.model': 'm',
        'gen_ai.usage.input_tokens': 3, 'gen_ai.usage.output_tokens': 4, 'dspy.input': '[1]', 'dspy.output': '[2]',
        'dspy.observation.type': 'generation',
      },
    );
    assert.equal(normalizeDialects({ 'gen_ai.operation.name': 'embeddings' })['dspy.observation.type'], 'embedding');
    assert.equal(normalizeDialects({ 'gen_ai.operation.name': 'execute_tool' })['dspy.observation.type'], 'tool');
    assert.equal(normalizeDialects({ 'gen_ai.response.model': 'm' })['dspy.observation.type'], 'generation', 'a model makes a generation');
    assert.deepEqual(normalizeDialects({ 'gen_ai.prompt': 'p', 'gen_ai.completion': 'c' }), { 'dspy.input': 'p', 'dspy.output': 'c' });
  });

  test('OpenInference → neutral vocabulary', () => {
    assert.deepEqual(
      normalizeDialects({
        'openinference.span.kind': 'LLM', 'llm.model_name': 'm', 'llm.system': 'anthropic',
        'llm.token_count.prompt': 1, 'llm.token_count.completion': 2, 'llm.token_count.total': 3,
        'llm.invocation_parameters': '{"top_p":0.9,"max_completion_tokens":10,"stream":true}',
        'input.value': '{"q":1}', 'input.mime_type': 'application/json', 'output.value': 'plain', 'tag.tags': ['a', 'b'],
      }),
      {
        'openinference.span.kind': 'LLM', 'gen_ai.request.model': 'm', 'gen_ai.provider.name': 'anthropic',
        'gen_ai.usage.input_tokens': 1, 'gen_ai.usage.output_tokens': 2, 'gen_ai.usage.total_tokens': 3,
        'llm.invocation_parameters': '{"top_p":0.9,"max_completion_tokens":10,"stream":true}',
        'gen_ai.request.top_p': 0.9, 'gen_ai.request.max_tokens': 10, 'gen_ai.request.stream': true,
        'dspy.input': '{"q":1}', 'dspy.output': '"plain"', 'dspy.trace.tags': ['a', 'b'], 'dspy.observation.type': 'generation',
      },
    );
    assert.equal(normalizeDialects({ 'openinference.span.kind': 'EMBEDDING', 'embedding.model_name': 'e' })['dspy.observation.type'], 'embedding');
    assert.equal(normalizeDialects({ 'openinference.span.kind': 'EMBEDDING', 'embedding.model_name': 'e' })['gen_ai.request.model'], 'e');
    assert.equal(normalizeDialects({ 'openinference.span.kind': 'retriever' })['dspy.observation.type'], 'retriever');
    // OpenInference's kind wins over GenAI's operation, as in Langfuse.
    assert.equal(normalizeDialects({ 'openinference.span.kind': 'TOOL', 'gen_ai.operation.name': 'chat' })['dspy.observation.type'], 'tool');
    // An unknown kind falls through to the next rule.
    assert.equal(normalizeDialects({ 'openinference.span.kind': 'RERANKER', 'llm.model_name': 'r' })['dspy.observation.type'], 'generation');
  });

  test("OpenInference llm.invocation_parameters: every parameter reaches Langfuse's model parameters, as when Langfuse reads that key itself", () => {
    const invocation = {
      model: 'gpt-4o', temperature: 0.1, max_completion_tokens: 10, seed: 42, frequency_penalty: 0.5, stream: false,
      stop: ['\n\n'], response_format: { type: 'json_object' }, logit_bias: null, mixed: [1, 'a'],
    };
    const attributes = normalizeDialects({ 'openinference.span.kind': 'LLM', 'llm.model_name': 'gpt-4o', 'llm.invocation_parameters': JSON.stringify(invocation) });
    const span = { v: 1 as const, type: 'span' as const, traceId: 'a'.repeat(32), spanId: 'b'.repeat(16), name: 'ChatOpenAI', startTimeUnixNano: '1', endTimeUnixNano: '2', attributes };
    const [mapped] = new LangfuseMapper().map([{ span, resource: { attributes: {} } }]);
    // Langfuse reads langfuse.observation.model.parameters first, and llm.invocation_parameters only without it.
    const params = JSON.parse(String(mapped!.span.attributes!['langfuse.observation.model.parameters'])) as Record<string, unknown>;
    assert.deepEqual(params, {
      temperature: 0.1, max_tokens: 10, seed: 42, frequency_penalty: 0.5, stream: false,
      stop: ['\n\n'], response_format: '{"type":"json_object"}', mixed: '[1,"a"]',
    });
  });

  test('OpenInference llm.invocation_parameters: an array of objects (the tools OpenAI calls take) is JSON text, not an invalid attribute that costs the span', () => {
    const tools = [{ type: 'function', function: { name: 'weather', parameters: { type: 'object' } } }];
    const attributes = normalizeDialects({
      'openinference.span.kind': 'LLM', 'llm.model_name': 'gpt-4o',
      'llm.invocation_parameters': JSON.stringify({ temperature: 0, tools, logit_bias: [null], stop: [] }),
    });
    assert.equal(attributes['gen_ai.request.tools'], JSON.stringify(tools));
    assert.equal(attributes['gen_ai.request.logit_bias'], '[null]');
    // The span passes the schema the record sink validates it with after the normalization.
    const span = { v: 1, type: 'span', traceId: 'a'.repeat(32), spanId: 'b'.repeat(16), name: 'ChatOpenAI', startTimeUnixNano: '1', endTimeUnixNano: '2', attributes };
    const result = validateRecord(span);
    assert.ok(result.ok, result.ok ? '' : result.message);
  });

  test('Vercel AI SDK (ai 5/6 keys) → neutral vocabulary, as Langfuse reads an `ai`-scope span', () => {
    // A model call: the GenAI keys the SDK also sets are read first and win; ai.* fills the rest.
    assert.deepEqual(
      normalizeDialects({
        'ai.operationId': 'ai.streamText.doStream', 'ai.model.id': 'gpt-4o', 'ai.model.provider': 'openai.chat',
        'gen_ai.system': 'openai.chat', 'gen_ai.request.model': 'gpt-4o', 'gen_ai.request.temperature': 0.2,
        'ai.settings.temperature': 0.2, 'ai.settings.maxOutputTokens': 50, 'ai.settings.maxRetries': 2,
        'ai.prompt.toolChoice': '{"type":"auto"}', 'ai.prompt.messages': '[{"role":"user","content":"hi"}]', 'ai.prompt.tools': ['{}'],
        'ai.response.text': 'hello', 'ai.usage.inputTokens': 10, 'ai.usage.outputTokens': 3, 'ai.usage.totalTokens': 13,
        'ai.usage.cachedInputTokens': 4, 'ai.usage.inputTokenDetails.cacheWriteTokens': 1,
      }),
      {
        'ai.operationId': 'ai.streamText.doStream', 'ai.model.id': 'gpt-4o', 'ai.model.provider': 'openai.chat',
        'gen_ai.provider.name': 'openai.chat', 'gen_ai.request.model': 'gpt-4o', 'gen_ai.request.temperature': 0.2,
        'ai.settings.temperature': 0.2, 'gen_ai.request.max_tokens': 50, 'gen_ai.request.max_retries': 2,
        'gen_ai.request.tool_choice': '{"type":"auto"}', 'dspy.input': '[{"role":"user","content":"hi"}]', 'ai.prompt.tools': ['{}'],
        'dspy.output': '"hello"', 'gen_ai.usage.input_tokens': 10, 'gen_ai.usage.output_tokens': 3, 'gen_ai.usage.total_tokens': 13,
        'gen_ai.usage.cache_read.input_tokens': 4, 'gen_ai.usage.cache_creation.input_tokens': 1,
        'dspy.observation.type': 'generation',
      },
    );
    // Text and tool calls together: one assistant message (Langfuse's shape, the calls parsed).
    assert.deepEqual(
      JSON.parse(String(normalizeDialects({
        'ai.operationId': 'ai.generateText.doGenerate', 'ai.model.id': 'm', 'ai.response.text': 'let me look',
        'ai.response.toolCalls': '[{"toolName":"weather"}]',
      })['dspy.output'])),
      { role: 'assistant', content: 'let me look', tool_calls: [{ toolName: 'weather' }] },
    );
    // A tool call: a tool with its arguments and result.
    assert.deepEqual(
      normalizeDialects({ 'ai.operationId': 'ai.toolCall', 'ai.toolCall.name': 'weather', 'ai.toolCall.args': '{"city":"Paris"}', 'ai.toolCall.result': '"sunny"' }),
      { 'ai.operationId': 'ai.toolCall', 'ai.toolCall.name': 'weather', 'dspy.input': '{"city":"Paris"}', 'dspy.output': '"sunny"', 'dspy.observation.type': 'tool' },
    );
    // The operation around the model calls: a span with its prompt and result, and no usage
    // (the sum of its calls', which would count them twice), though it has the model.
    assert.deepEqual(
      normalizeDialects({
        'ai.operationId': 'ai.generateObject', 'ai.model.id': 'm', 'ai.settings.mode': 'json', 'ai.prompt': '{"prompt":"q"}',
        'ai.response.object': '{"a":1}', 'ai.usage.inputTokens': 10,
      }),
      {
        'ai.operationId': 'ai.generateObject', 'gen_ai.request.model': 'm', 'gen_ai.request.mode': 'json', 'dspy.input': '{"prompt":"q"}',
        'dspy.output': '{"a":1}', 'ai.usage.inputTokens': 10, 'dspy.observation.type': 'span',
      },
    );
    // An embedding call: its one count is input tokens.
    assert.deepEqual(normalizeDialects({ 'ai.operationId': 'ai.embedMany.doEmbed', 'ai.model.id': 'e', 'ai.usage.tokens': 7 }), {
      'ai.operationId': 'ai.embedMany.doEmbed', 'gen_ai.request.model': 'e', 'gen_ai.usage.input_tokens': 7, 'dspy.observation.type': 'embedding',
    });
  });

  test('Vercel AI SDK: ai 3/4 names, and what the span already states wins', () => {
    // ai 4: promptTokens / completionTokens; before 4.0: ai.result.*.
    assert.deepEqual(
      normalizeDialects({
        'ai.operationId': 'ai.generateText.doGenerate', 'ai.model.id': 'gpt-4o', 'ai.settings.maxTokens': 9,
        'ai.usage.promptTokens': 5, 'ai.usage.completionTokens': 2, 'ai.result.text': 'old',
      }),
      {
        'ai.operationId': 'ai.generateText.doGenerate', 'gen_ai.request.model': 'gpt-4o', 'gen_ai.request.max_tokens': 9,
        'gen_ai.usage.input_tokens': 5, 'gen_ai.usage.output_tokens': 2, 'dspy.output': '"old"', 'dspy.observation.type': 'generation',
      },
    );
    // A setting of a later SDK: its name in snake_case; a nested one stays as it is.
    assert.deepEqual(normalizeDialects({ 'ai.operationId': 'ai.generateText', 'ai.settings.reasoningEffort': 'low', 'ai.settings.context.x': 1 }), {
      'ai.operationId': 'ai.generateText', 'gen_ai.request.reasoning_effort': 'low', 'ai.settings.context.x': 1, 'dspy.observation.type': 'span',
    });
    // An empty text is no output (Langfuse's rule): the next key is.
    assert.equal(normalizeDialects({ 'ai.operationId': 'ai.streamObject', 'ai.response.text': '', 'ai.response.object': '{"b":2}' })['dspy.output'], '{"b":2}');
    // Neutral keys are never overwritten, an explicit type included; GenAI's operation wins over ai.operationId, as in Langfuse.
    const own = { 'ai.operationId': 'ai.toolCall', 'ai.toolCall.args': '{}', 'dspy.input': '"mine"', 'dspy.observation.type': 'span' };
    assert.deepEqual(normalizeDialects({ ...own }), own);
    assert.equal(normalizeDialects({ 'ai.operationId': 'ai.toolCall', 'gen_ai.operation.name': 'chat' })['dspy.observation.type'], 'generation');
    // A model call without a model is a span, as Langfuse types it.
    assert.equal(normalizeDialects({ 'ai.operationId': 'ai.generateText.doGenerate' })['dspy.observation.type'], 'span');
    // Langfuse's own spans (a langfuse.observation.* key) pass untouched; other langfuse.* keys, as
    // LangfuseSpanProcessor adds to the SDK's spans, do not stop the mapping and stay.
    const lf = { 'langfuse.observation.type': 'span', 'ai.operationId': 'ai.toolCall', 'ai.toolCall.args': '{}' };
    assert.deepEqual(normalizeDialects({ ...lf }), lf);
    assert.deepEqual(normalizeDialects({ 'langfuse.environment': 'prod', 'langfuse.internal.is_app_root': true, 'ai.operationId': 'ai.toolCall', 'ai.toolCall.args': '{}' }), {
      'langfuse.environment': 'prod', 'langfuse.internal.is_app_root': true, 'ai.operationId': 'ai.toolCall', 'dspy.input': '{}', 'dspy.observation.type': 'tool',
    });
    // A key that merely starts with ai. is no Vercel span.
    const other = { 'ai.operationId': 'chat', 'ai.prompt': 'x' };
    assert.deepEqual(normalizeDialects({ ...other }), other);
  });

  /** The attributes Langfuse receives for a span with `attributes`, normalized then mapped. */
  const toLangfuse = (attributes: Record<string, AttributeValue>) => {
    const span = { v: 1 as const, type: 'span' as const, traceId: 'a'.repeat(32), spanId: 'b'.repeat(16), name: 'llm', startTimeUnixNano: '1', endTimeUnixNano: '2', attributes: normalizeDialects(attributes) };
    return new LangfuseMapper().map([{ span, resource: { attributes: {} } }])[0]!.span.attributes!;
  };
  const usageDetails = (attrs: Record<string, AttributeValue>) => JSON.parse(String(attrs['langfuse.observation.usage_details'])) as Record<string, number>;

  test('OpenInference cache counts reach Langfuse as cache reads and writes, taken out of input (counted once)', () => {
    // openinference-instrumentation-anthropic / -openai: the prompt count includes the cached tokens.
    const attrs = toLangfuse({
      'openinference.span.kind': 'LLM', 'llm.model_name': 'claude-sonnet-4-5', 'llm.token_count.prompt': 1000, 'llm.token_count.completion': 50,
      'llm.token_count.total': 1050, 'llm.token_count.prompt_details.cache_read': 800, 'llm.token_count.prompt_details.cache_write': 150,
    });
    assert.deepEqual(usageDetails(attrs), { input: 50, output: 50, total: 1050, input_cache_read: 800, input_cache_creation: 150 });
    assert.equal(attrs['llm.token_count.prompt_details.cache_read'], undefined, 'moved, not also in metadata');
    assert.equal(attrs['llm.token_count.prompt_details.cache_write'], undefined);
  });

  test('OpenLLMetry (Traceloop) cache counts reach Langfuse as cache reads and writes, taken out of input', () => {
    // opentelemetry-instrumentation-anthropic: gen_ai.usage.cache_*_input_tokens; llm.usage.total_tokens Langfuse does not read.
    const attrs = toLangfuse({
      'gen_ai.system': 'Anthropic', 'llm.request.type': 'chat', 'gen_ai.request.model': 'claude-sonnet-4-5',
      'gen_ai.usage.prompt_tokens': 1000, 'gen_ai.usage.completion_tokens': 50, 'llm.usage.total_tokens': 1050,
      'gen_ai.usage.cache_read_input_tokens': 800, 'gen_ai.usage.cache_creation_input_tokens': 150,
    });
    assert.deepEqual(usageDetails(attrs), { input: 50, output: 50, total: 1050, input_cache_read: 800, input_cache_creation: 150 });
    assert.equal(attrs['gen_ai.usage.cache_read_input_tokens'], undefined, 'moved, not also in metadata');
  });

  test('reasoning counts of each dialect reach Langfuse as output_reasoning_tokens, taken out of output (counted once)', () => {
    const reasoningOf = (attrs: Record<string, AttributeValue>) => {
      const out = toLangfuse(attrs);
      for (const k of Object.keys(out)) assert.ok(!/reasoning/i.test(k) || k === 'langfuse.observation.usage_details', `${k} moved, not also in metadata`);
      return usageDetails(out);
    };
    const expected = { input: 100, output: 52, total: 600, output_reasoning_tokens: 448 };
    // OpenInference (openinference-instrumentation-openai): part of the completion count.
    assert.deepEqual(reasoningOf({
      'openinference.span.kind': 'LLM', 'llm.model_name': 'o4-mini', 'llm.token_count.prompt': 100, 'llm.token_count.completion': 500,
      'llm.token_count.total': 600, 'llm.token_count.completion_details.reasoning': 448,
    }), expected);
    // OpenLLMetry (opentelemetry-instrumentation-openai).
    assert.deepEqual(reasoningOf({
      'gen_ai.system': 'openai', 'gen_ai.request.model': 'o4-mini', 'gen_ai.usage.prompt_tokens': 100, 'gen_ai.usage.completion_tokens': 500,
      'gen_ai.usage.total_tokens': 600, 'gen_ai.usage.reasoning_tokens': 448,
    }), expected);
    // Pydantic AI: OpenAI's completion details among its usage details.
    assert.deepEqual(reasoningOf({
      'gen_ai.operation.name': 'chat', 'gen_ai.request.model': 'o4-mini', 'gen_ai.usage.input_tokens': 100, 'gen_ai.usage.output_tokens': 500,
      'gen_ai.usage.total_tokens': 600, 'gen_ai.usage.details.reasoning_tokens': 448,
    }), expected);
    // The Vercel AI SDK: ai 5, then ai 6.
    const vercel = { 'ai.operationId': 'ai.generateText.doGenerate', 'ai.model.id': 'o4-mini', 'ai.usage.inputTokens': 100, 'ai.usage.outputTokens': 500, 'ai.usage.totalTokens': 600 };
    assert.deepEqual(reasoningOf({ ...vercel, 'ai.usage.reasoningTokens': 448 }), expected);
    assert.deepEqual(reasoningOf({ ...vercel, 'ai.usage.outputTokenDetails.reasoningTokens': 448, 'ai.usage.outputTokenDetails.textTokens': 52 }), expected);
    // Gemini through ai 5: the thoughts are not in outputTokens (candidates only), as the total shows
    // (input + output + reasoning): they are added to output, which Google bills them as.
    assert.deepEqual(reasoningOf({
      'ai.operationId': 'ai.generateText.doGenerate', 'ai.model.id': 'gemini-2.5-flash', 'gen_ai.usage.input_tokens': 2152,
      'gen_ai.usage.output_tokens': 694, 'ai.usage.totalTokens': 3480, 'ai.usage.reasoningTokens': 634,
    }), { input: 2152, output: 694, total: 3480, output_reasoning_tokens: 634 });
  });

  test("Vercel AI SDK: the cache and reasoning counts of ai.response.providerMetadata reach Langfuse, each token counted once", () => {
    const call = { 'ai.operationId': 'ai.streamText.doStream', 'ai.model.id': 'm' };
    // ai 4, OpenAI: prompt counts include the cached tokens, completion counts the reasoning ones.
    assert.deepEqual(usageDetails(toLangfuse({
      ...call, 'ai.usage.promptTokens': 1000, 'ai.usage.completionTokens': 200,
      'ai.response.providerMetadata': '{"openai":{"cachedPromptTokens":400,"reasoningTokens":150}}',
    })), { input: 600, output: 50, total: 1200, input_cache_read: 400, output_reasoning_tokens: 150 });
    // ai 4, Anthropic: promptTokens is Anthropic's input_tokens, without the cache reads and writes.
    const expected = { input: 7, output: 445, total: 18940, input_cache_read: 16399, input_cache_creation: 2089 };
    assert.deepEqual(usageDetails(toLangfuse({
      ...call, 'ai.usage.promptTokens': 7, 'ai.usage.completionTokens': 445,
      'ai.response.providerMetadata': '{"anthropic":{"cacheCreationInputTokens":2089,"cacheReadInputTokens":16399}}',
    })), expected);
    // ai 5, Anthropic: the same, its raw usage beside it (and cachedInputTokens, the reads).
    const raw = '{"anthropic":{"usage":{"input_tokens":7,"cache_creation_input_tokens":2089,"cache_read_input_tokens":16399,"output_tokens":445},"cacheCreationInputTokens":2089,"stopSequence":null}}';
    assert.deepEqual(usageDetails(toLangfuse({
      ...call, 'ai.usage.inputTokens': 7, 'ai.usage.outputTokens': 445, 'ai.usage.totalTokens': 452, 'ai.usage.cachedInputTokens': 16399,
      'ai.response.providerMetadata': raw,
    })), expected);
    // ai 6: inputTokens already counts the cache; the raw usage does not change it.
    assert.deepEqual(usageDetails(toLangfuse({
      ...call, 'ai.usage.inputTokens': 18495, 'ai.usage.outputTokens': 445, 'ai.usage.totalTokens': 18940,
      'ai.usage.inputTokenDetails.cacheReadTokens': 16399, 'ai.usage.inputTokenDetails.cacheWriteTokens': 2089, 'ai.response.providerMetadata': raw,
    })), expected);
    // ai 5's streamText without the metadata (Bedrock sends it only with cache writes or a trace):
    // Anthropic's messages API (also on Vertex) and Bedrock give an input count without the cache
    // reads of cachedInputTokens, which are added; other providers' (OpenAI's) count them in, as ai 6 does.
    const reads = { ...call, 'ai.usage.inputTokens': 2000, 'ai.usage.outputTokens': 100, 'ai.usage.totalTokens': 2100, 'ai.usage.cachedInputTokens': 500 };
    const readsIn = { input: 2000, output: 100, total: 2600, input_cache_read: 500 };
    for (const provider of ['anthropic.messages', 'vertex.anthropic.messages', 'amazon-bedrock']) {
      assert.deepEqual(usageDetails(toLangfuse({ ...reads, 'ai.model.provider': provider })), readsIn, provider);
      assert.deepEqual(usageDetails(toLangfuse({ ...reads, 'gen_ai.system': provider })), readsIn, `gen_ai.system ${provider}`);
    }
    assert.deepEqual(usageDetails(toLangfuse({
      ...call, 'ai.model.provider': 'openai.responses', 'ai.usage.inputTokens': 1000, 'ai.usage.outputTokens': 200,
      'ai.usage.totalTokens': 1200, 'ai.usage.cachedInputTokens': 400,
    })), { input: 600, output: 200, total: 1200, input_cache_read: 400 });
    assert.deepEqual(usageDetails(toLangfuse({
      ...call, 'ai.model.provider': 'anthropic.messages', 'ai.usage.inputTokens': 18495, 'ai.usage.outputTokens': 445, 'ai.usage.totalTokens': 18940,
      'ai.usage.cachedInputTokens': 16399, 'ai.usage.inputTokenDetails.noCacheTokens': 7, 'ai.usage.inputTokenDetails.cacheReadTokens': 16399,
      'ai.usage.inputTokenDetails.cacheWriteTokens': 2089,
    })), expected, 'ai 6 counts the cache in');
    // Metadata that is no JSON object, or counts that are no counts: the usage as it was, nothing refused.
    for (const junk of ['not json', '[1]', '{"openai":{"cachedPromptTokens":-1,"reasoningTokens":"x"}}']) {
      assert.deepEqual(usageDetails(toLangfuse({ ...call, 'ai.usage.inputTokens': 10, 'ai.usage.outputTokens': 2, 'ai.response.providerMetadata': junk })), { input: 10, output: 2, total: 12 });
    }
  });

  test("Pydantic AI's agent run: its messages and final result become the agent's input and output, as Langfuse reads them under scope pydantic-ai", () => {
    const messages = '[{"role":"user","parts":[{"type":"text","content":"hello"}]},{"role":"assistant","parts":[{"type":"text","content":"success"}]}]';
    const run = {
      'model_name': 'gpt-4o', 'agent_name': 'agent', 'gen_ai.agent.name': 'agent', 'gen_ai.operation.name': 'invoke_agent', 'logfire.msg': 'agent run',
      'pydantic_ai.all_messages': messages,
    };
    const text = toLangfuse({ ...run, 'final_result': 'success' });
    assert.equal(text['langfuse.observation.type'], 'agent');
    assert.equal(text['langfuse.observation.input'], messages);
    assert.equal(text['langfuse.observation.output'], '"success"', 'a text result is text');
    assert.equal(text['pydantic_ai.all_messages'], undefined, 'moved, not also in metadata');
    assert.equal(text['final_result'], undefined);
    // A structured result arrives as the JSON Pydantic AI wrote.
    assert.equal(toLangfuse({ ...run, 'final_result': '{"city":"Paris"}' })['langfuse.observation.output'], '{"city":"Paris"}');
    // Releases without gen_ai.operation.name: a span, as Langfuse types it (no model key), not a
    // generation: its usage is its model requests' sum, which would count every token twice.
    const old = toLangfuse({ 'model_name': 'gpt-4o', 'agent_name': 'agent', 'logfire.msg': 'agent run', 'gen_ai.usage.input_tokens': 51, 'gen_ai.usage.output_tokens': 1, 'pydantic_ai.all_messages': messages });
    assert.equal(old['langfuse.observation.type'], 'span');
    assert.equal(old['langfuse.observation.input'], messages);
    // A `final_result` without Pydantic AI's messages is some other span's attribute: left alone.
    const other = { 'final_result': 'x', 'gen_ai.operation.name': 'invoke_agent' };
    assert.deepEqual(normalizeDialects({ ...other }), { ...other, 'dspy.observation.type': 'agent' });
  });

  test("Pydantic AI's cache counts (its usage details) reach Langfuse as cache reads and writes, taken out of input", () => {
    // A model request on Anthropic: input_tokens includes the cached tokens; details are Anthropic's own usage.
    const attrs = toLangfuse({
      'gen_ai.operation.name': 'chat', 'gen_ai.system': 'anthropic', 'gen_ai.request.model': 'claude-sonnet-4-5',
      'gen_ai.usage.input_tokens': 1000, 'gen_ai.usage.output_tokens': 50, 'gen_ai.usage.details.input_tokens': 50,
      'gen_ai.usage.details.output_tokens': 50, 'gen_ai.usage.details.cache_read_input_tokens': 800, 'gen_ai.usage.details.cache_creation_input_tokens': 150,
    });
    assert.deepEqual(usageDetails(attrs), { input: 50, output: 50, total: 1050, input_cache_read: 800, input_cache_creation: 150 });
    // The names of other releases, which Langfuse reads too.
    assert.deepEqual(usageDetails(toLangfuse({ 'gen_ai.request.model': 'm', 'gen_ai.usage.input_tokens': 100, 'gen_ai.usage.output_tokens': 1, 'gen_ai.usage.cache_read_tokens': 60, 'gen_ai.usage.cache_write_tokens': 30 })), {
      input: 10, output: 1, total: 101, input_cache_read: 60, input_cache_creation: 30,
    });
  });

  test('neutral keys win and nothing is overwritten; langfuse.* spans and other spans are untouched', () => {
    assert.deepEqual(normalizeDialects({ 'gen_ai.usage.input_tokens': 9, 'gen_ai.usage.prompt_tokens': 3, 'dspy.observation.type': 'span' }), {
      'gen_ai.usage.input_tokens': 9, 'gen_ai.usage.prompt_tokens': 3, 'dspy.observation.type': 'span',
    });
    const lf = { 'langfuse.observation.type': 'span', 'gen_ai.system': 'openai', 'input.value': 'x' };
    assert.deepEqual(normalizeDialects({ ...lf }), lf);
    const plain = { 'http.method': 'GET', 'db.system': 'postgresql' };
    assert.deepEqual(normalizeDialects({ ...plain }), plain);
  });

  test('GenAI message events: a neutral input or output the span has wins, and langfuse.* spans keep their events', () => {
    const events: WireEvent[] = [
      { name: 'gen_ai.user.message', timeUnixNano: '1', attributes: { content: 'hi' } },
      { name: 'gen_ai.choice', timeUnixNano: '2', attributes: { index: 0 } },
    ];
    const attrs: Record<string, AttributeValue> = { 'dspy.input': '"own"' };
    assert.deepEqual(messagesFromEvents(attrs, events), [events[0]], 'the input event stays an event');
    assert.deepEqual(attrs, { 'dspy.input': '"own"', 'dspy.output': '{"index":0}' });
    const lf: Record<string, AttributeValue> = { 'langfuse.observation.type': 'generation' };
    assert.equal(messagesFromEvents(lf, events), events);
    assert.deepEqual(lf, { 'langfuse.observation.type': 'generation' });
    const env: Record<string, AttributeValue> = { 'langfuse.environment': 'staging' };
    assert.deepEqual(messagesFromEvents(env, events), [], 'a langfuse.environment alone does not keep them');
    assert.equal(env['dspy.output'], '{"index":0}');
    // Several choices are an array; a prompt event without gen_ai.prompt gives its attributes.
    const many: Record<string, AttributeValue> = {};
    const rest = messagesFromEvents(many, [
      { name: 'gen_ai.content.prompt', timeUnixNano: '1', attributes: { other: 'x' } },
      { name: 'gen_ai.choice', timeUnixNano: '2', attributes: { index: 0 } },
      { name: 'gen_ai.choice', timeUnixNano: '3', attributes: { index: 1 } },
    ]);
    assert.deepEqual(rest, []);
    assert.deepEqual(many, { 'dspy.input': '{"other":"x"}', 'dspy.output': '[{"index":0},{"index":1}]' });
  });
});
