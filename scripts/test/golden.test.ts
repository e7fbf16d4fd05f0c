/**
 * Golden traces: what the fake Langfuse receives for typical runs, attribute by attribute,
 * compared with checked-in files in scripts/test/goldens/ (ids and times normalised). Beyond the
 * goldens, each trace is checked against what FACTS.md says Langfuse requires, with types.
 *
 * Regenerate after an intended change: UPDATE_GOLDENS=1 npm test (then review the diff).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { SpanStatusCode } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { configure, flush, generation, withTrace, wrapOpenAI } from 'dspy-o11y';
import { startFakeLangfuse, type FakeLangfuse, type RecordedSpan } from 'dspy-o11yd/dist/test/support/fake-langfuse.js';
import { CUSTOMERS, coffeeAgent, summarize } from '../lib/coffee-shop.js';
import { runDaemon, type DaemonChild } from '../lib/run-daemon.js';

// The SDK's fake provider is test support, not part of its published exports: load it by path.
type FakeProviderModule = typeof import('../../sdk/dist/test/support/fake-provider.js');
type FakeProvider = import('../../sdk/dist/test/support/fake-provider.js').FakeProvider;
const { FakeProvider, chatStream } = (await import(new URL('../../../sdk/dist/test/support/fake-provider.js', import.meta.url).href)) as FakeProviderModule;

const GOLDENS = fileURLToPath(new URL('../../test/goldens/', import.meta.url));
const KEYS = { LANGFUSE_PUBLIC_KEY: 'pk-lf-golden', LANGFUSE_SECRET_KEY: 'sk-lf-golden' };
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/** Process-specific resource attributes, replaced by a placeholder. */
const VOLATILE_RESOURCE = new Set(['process.pid', 'host.name', 'process.runtime.version', 'telemetry.sdk.version', 'service.instance.id']);

interface GoldenSpan {
  id: string;
  parent: string | null;
  name: string;
  status: { code: number; message?: string };
  attributes: Record<string, { type: string; value: unknown }>;
  resource: Record<string, unknown>;
  scope: string;
}

/** Spans of the given traces in a stable order, ids replaced by their rank, times by placeholders. */
function normalise(spans: readonly RecordedSpan[], traceIds: readonly string[]): GoldenSpan[] {
  const mine = spans
    .filter((s) => traceIds.includes(s.traceId))
    .map((s, i) => ({ s, i }))
    .sort((a, b) => traceIds.indexOf(a.s.traceId) - traceIds.indexOf(b.s.traceId) || (BigInt(a.s.startTimeUnixNano) < BigInt(b.s.startTimeUnixNano) ? -1 : BigInt(a.s.startTimeUnixNano) > BigInt(b.s.startTimeUnixNano) ? 1 : 0) || a.s.name.localeCompare(b.s.name) || a.i - b.i)
    .map(({ s }) => s);
  const ids = new Map<string, string>();
  mine.forEach((s, i) => ids.set(s.spanId, `span-${i + 1}`));
  traceIds.forEach((t, i) => ids.set(t, `trace-${i + 1}`));
  const scrub = (v: unknown): unknown => {
    if (typeof v !== 'string') return v;
    let out = v;
    for (const [id, name] of ids) out = out.split(id).join(name);
    if (/\n\s+at /.test(out)) return '<stack trace>'; // line numbers move with every edit
    return ISO.test(out) ? '<iso-time>' : out;
  };
  return mine.map((s) => ({
    id: ids.get(s.spanId)!,
    parent: s.parentSpanId ? (ids.get(s.parentSpanId) ?? 'unknown-parent') : null,
    name: s.name,
    status: s.status.message ? { code: s.status.code, message: s.status.message } : { code: s.status.code },
    attributes: Object.fromEntries(
      Object.keys(s.attributes)
        .sort()
        .map((k) => [k, { type: s.attributeTypes[k] ?? 'unknown', value: scrub(s.attributes[k]) }]),
    ),
    resource: Object.fromEntries(Object.keys(s.resource).sort().map((k) => [k, VOLATILE_RESOURCE.has(k) ? '<volatile>' : s.resource[k]])),
    scope: `${s.scope.name}`,
  }));
}

function compareWithGolden(name: string, actual: GoldenSpan[]): void {
  const file = join(GOLDENS, `${name}.json`);
  const text = JSON.stringify(actual, null, 2) + '\n';
  if (process.env.UPDATE_GOLDENS === '1') writeFileSync(file, text);
  assert.ok(existsSync(file), `golden ${file} is missing (run with UPDATE_GOLDENS=1 to create it)`);
  assert.deepEqual(actual, JSON.parse(readFileSync(file, 'utf8')) as GoldenSpan[], `${name} differs from its golden file`);
}

/** What FACTS.md says Langfuse needs, checked on every observation. */
function assertLangfuseAccepts(spans: readonly GoldenSpan[]): void {
  const types = ['span', 'generation', 'event', 'embedding', 'agent', 'tool', 'chain', 'retriever', 'guardrail', 'evaluator'];
  for (const s of spans) {
    const a = s.attributes;
    const where = `${s.name} (${s.id})`;
    if (a['langfuse.observation.type']) assert.ok(types.includes(String(a['langfuse.observation.type'].value)), where);
    const usage = a['langfuse.observation.usage_details'];
    if (usage) {
      assert.equal(usage.type, 'string', `usage_details is a JSON string: ${where}`);
      for (const [k, v] of Object.entries(JSON.parse(String(usage.value)) as Record<string, unknown>)) assert.ok(Number.isInteger(v) && (v as number) >= 0, `usage ${k} is a non-negative integer: ${where}`);
    }
    const cost = a['langfuse.observation.cost_details'];
    if (cost) for (const v of Object.values(JSON.parse(String(cost.value)) as Record<string, unknown>)) assert.equal(typeof v, 'number', `cost is a number: ${where}`);
    const version = a['langfuse.observation.prompt.version'];
    if (version) {
      assert.equal(version.type, 'int', `prompt version is an integer: ${where}`);
      assert.ok(a['langfuse.observation.prompt.name'], `prompt name goes with the version: ${where}`);
    }
    if (a['langfuse.observation.completion_start_time']) assert.equal(a['langfuse.observation.completion_start_time'].value, '<iso-time>', `completion start is ISO 8601: ${where}`);
    if (a['langfuse.observation.level']) assert.ok(['DEBUG', 'DEFAULT', 'WARNING', 'ERROR'].includes(String(a['langfuse.observation.level'].value)), where);
    for (const k of ['langfuse.observation.input', 'langfuse.observation.output', 'langfuse.trace.input', 'langfuse.trace.output']) {
      if (a[k]) assert.equal(a[k].type, 'string', `${k} is a string: ${where}`);
    }
    if (a['langfuse.trace.tags']) assert.equal(a['langfuse.trace.tags'].type, 'array', where);
    assert.notEqual(s.scope.startsWith('langfuse-sdk'), true, 'scope must not pose as the Langfuse SDK');
  }
}

describe('golden traces', () => {
  let fake: FakeLangfuse;
  let daemon: DaemonChild;
  let provider: FakeProvider;
  let dir: string;

  before(async () => {
    fake = await startFakeLangfuse({ publicKey: KEYS.LANGFUSE_PUBLIC_KEY, secretKey: KEYS.LANGFUSE_SECRET_KEY });
    provider = await FakeProvider.start();
    dir = mkdtempSync(join(tmpdir(), 'golden-'));
    daemon = await runDaemon(join(dir, 'd.sock'), ['--http', '127.0.0.1:0', '--flush-interval', '20'], { ...KEYS, LANGFUSE_HOST: fake.url });
    configure({ endpoint: `unix://${daemon.socket}`, serviceName: 'golden', serviceVersion: '1.0.0', environment: 'test' });
  });
  after(async () => {
    await daemon.stop();
    await provider.close();
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('an OTLP span from the OpenTelemetry JS SDK, in the GenAI dialect, through POST /v1/traces', async () => {
    const provider = new BasicTracerProvider({
      resource: resourceFromAttributes({ 'service.name': 'otel-app', 'service.version': '3.1.0', 'deployment.environment.name': 'Prod EU' }),
      spanProcessors: [new SimpleSpanProcessor(new OTLPTraceExporter({ url: `${daemon.httpUrl}/v1/traces` }))],
    });
    const tracer = provider.getTracer('my-otel-instrumentation', '1.2.3');
    let traceId = '';
    tracer.startActiveSpan('chat gpt-4o', (span) => {
      traceId = span.spanContext().traceId;
      span.setAttributes({
        'gen_ai.operation.name': 'chat',
        'gen_ai.system': 'openai',
        'gen_ai.request.model': 'gpt-4o',
        'gen_ai.response.model': 'gpt-4o-2024-08-06',
        'gen_ai.request.temperature': 0.5,
        'gen_ai.usage.input_tokens': 42,
        'gen_ai.usage.output_tokens': 7,
        'user.id': 'otel-user',
      });
      span.setStatus({ code: SpanStatusCode.ERROR, message: 'content filter' });
      span.end();
    });
    await provider.forceFlush();
    await provider.shutdown();
    const deadline = Date.now() + 15_000;
    while (!fake.spans.some((s) => s.traceId === traceId) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const spans = normalise(fake.spans, [traceId]);
    const gen = spans[0]!;
    assert.equal(gen.attributes['langfuse.observation.type']?.value, 'generation');
    assert.equal(gen.attributes['langfuse.observation.model.name']?.value, 'gpt-4o-2024-08-06');
    assert.deepEqual(JSON.parse(String(gen.attributes['langfuse.observation.usage_details']?.value)), { input: 42, output: 7, total: 49 });
    assert.equal(gen.attributes['langfuse.environment']?.value, 'prod-eu', 'sanitised to what Langfuse accepts');
    assertLangfuseAccepts(spans);
    compareWithGolden('otel-genai-span', spans);
  });

  /** Run `fn` in a trace of its own and return what Langfuse received for it, normalised. */
  async function received(traceName: string, fn: () => Promise<unknown>, expectSpans: number): Promise<GoldenSpan[]> {
    let traceId = '';
    await withTrace({ name: traceName, userId: 'golden-user', sessionId: 'golden-session', tags: ['golden'] }, async (t) => {
      traceId = t.traceId;
      await fn().catch(() => undefined);
    });
    await flush();
    const deadline = Date.now() + 15_000;
    while (fake.spans.filter((s) => s.traceId === traceId).length < expectSpans && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    return normalise(fake.spans, [traceId]);
  }

  test('the demo ReAct run', async () => {
    const chen = CUSTOMERS.find((c) => c.id === 'chen')!;
    const spans = await received('coffee-order', () => coffeeAgent()({ request: chen.request }), 1 + 4 * 3 + 3);
    assertLangfuseAccepts(spans);
    compareWithGolden('react', spans);
  });

  test('a ChainOfThought run', async () => {
    const spans = await received('summary', () => summarize()({ request: 'Two lattes and a joke' }), 3);
    assertLangfuseAccepts(spans);
    compareWithGolden('chain-of-thought', spans);
  });

  test('an LLM call that fails', async () => {
    const spans = await received(
      'failing-call',
      () =>
        generation('llm.generate', { model: 'gpt-4o-mini', provider: 'openai', input: [{ role: 'user', content: 'Hi' }], parameters: { temperature: 0.2, maxTokens: 64 }, prompt: { name: 'greeter', version: 3 } }, async () => {
          throw new Error('429 Too Many Requests from provider');
        }),
      1,
    );
    const gen = spans[0]!;
    assert.equal(gen.status.code, 2);
    assert.equal(gen.attributes['langfuse.observation.level']?.value, 'ERROR');
    assert.match(String(gen.attributes['langfuse.observation.status_message']?.value), /429 Too Many Requests/);
    assertLangfuseAccepts(spans);
    compareWithGolden('failing-call', spans);
  });

  test('a streaming call through the wrapped OpenAI client', async () => {
    provider.script('/v1/chat/completions', chatStream(['Hello', ', ', 'world'], { prompt: 12, completion: 3 }));
    const client = wrapOpenAI(new OpenAI({ apiKey: 'sk-test', baseURL: `${provider.url}/v1`, maxRetries: 0 }));
    const spans = await received(
      'streaming',
      async () => {
        const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Say hello' }], stream: true, temperature: 0 });
        let text = '';
        for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
        assert.equal(text, 'Hello, world');
      },
      1,
    );
    const gen = spans.find((s) => s.name === 'llm.generate')!;
    assert.equal(gen.attributes['langfuse.observation.completion_start_time']?.value, '<iso-time>');
    assert.deepEqual(JSON.parse(String(gen.attributes['langfuse.observation.usage_details']?.value)), { input: 12, output: 3, total: 15 });
    assertLangfuseAccepts(spans);
    compareWithGolden('streaming', spans);
  });
});
