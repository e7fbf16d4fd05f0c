/**
 * The Vercel AI SDK (`ai`, its mock model) with `experimental_telemetry` on the real OpenTelemetry
 * SDK, exporting OTLP to a real dspy-o11yd child process whose langfuse exporter posts to the fake
 * Langfuse. Langfuse reads the `ai.*` keys of these spans only under the scope `ai`, which the
 * daemon does not keep: the generation must arrive with its input, output, model, parameters and
 * usage in Langfuse's own keys, and the tool call as a tool observation with its arguments and result.
 * The same through Langfuse's LangfuseSpanProcessor (as Langfuse documents for Vercel apps), whose
 * `langfuse.environment` / `langfuse.internal.is_app_root` on the SDK's spans must not make the
 * daemon take them for Langfuse's own spans and pass them untranslated.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { context, type Tracer } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { LangfuseSpanProcessor } from '@langfuse/otel';
import { propagateAttributes } from '@langfuse/tracing';
import { generateText, stepCountIs, tool } from 'ai';
import { MockLanguageModelV3 } from 'ai/test';
import { z } from 'zod';
import type { FakeLangfuse, RecordedSpan } from 'dspy-o11yd/dist/test/support/fake-langfuse.js';
import { useLangfuseDaemon, type DaemonProcess } from 'dspy-o11yd/dist/test/support/daemon-process.js';
import { AlsContextManager } from '../lib/als-context.js';

// The SDK nests its spans through the active context, as in any app set up with a context manager.
context.setGlobalContextManager(new AlsContextManager().enable());

const KEYS = { LANGFUSE_PUBLIC_KEY: 'pk-lf-vercel', LANGFUSE_SECRET_KEY: 'sk-lf-vercel-secret' };
const QUESTION = 'What is the weather in Paris?';
const ANSWER = 'It is sunny in Paris.';

const usage = (input: number, output: number, cacheRead?: number) => ({
  inputTokens: { total: input, noCache: input - (cacheRead ?? 0), cacheRead, cacheWrite: undefined },
  outputTokens: { total: output, text: output, reasoning: undefined },
});

/** A model that first calls the weather tool, then answers with text. */
function mockModel() {
  let call = 0;
  return new MockLanguageModelV3({
    provider: 'openai.chat',
    modelId: 'gpt-4o-mini',
    doGenerate: async () => {
      call += 1;
      return call === 1
        ? {
            content: [{ type: 'tool-call', toolCallId: 'call-1', toolName: 'weather', input: JSON.stringify({ city: 'Paris' }) }],
            finishReason: { unified: 'tool-calls', raw: 'tool_calls' },
            usage: usage(20, 8),
            warnings: [],
          }
        : {
            content: [{ type: 'text', text: ANSWER }],
            finishReason: { unified: 'stop', raw: 'stop' },
            usage: usage(40, 6, 16),
            warnings: [],
          };
    },
  });
}

const parse = (v: unknown): unknown => JSON.parse(String(v));
const byOperation = (spans: readonly RecordedSpan[], op: string) => spans.filter((s) => s.attributes['ai.operationId'] === op);

/** The two model calls (`ai.generateText.doGenerate`), oldest first, checked as Langfuse generations with the app's model, parameters, input, output and usage. */
function modelCalls(spans: readonly RecordedSpan[]): RecordedSpan[] {
  const calls = byOperation(spans, 'ai.generateText.doGenerate').sort((a, b) => a.startTimeUnixNano.localeCompare(b.startTimeUnixNano));
  assert.equal(calls.length, 2);
  for (const g of calls) {
    assert.equal(g.attributes['langfuse.observation.type'], 'generation');
    assert.equal(g.attributes['langfuse.observation.model.name'], 'gpt-4o-mini');
    const params = parse(g.attributes['langfuse.observation.model.parameters']) as Record<string, unknown>;
    assert.equal(params.temperature, 0.3);
    assert.equal(params.max_tokens, 200);
    const input = parse(g.attributes['langfuse.observation.input']) as { role: string }[];
    assert.ok(Array.isArray(input) && input[0]!.role === 'user', 'ai.prompt.messages is the input');
  }
  const [first, second] = calls as [RecordedSpan, RecordedSpan];
  // The first call answered with a tool call only: its output is the calls.
  assert.equal((parse(first.attributes['langfuse.observation.output']) as { toolName: string }[])[0]!.toolName, 'weather');
  assert.deepEqual(parse(first.attributes['langfuse.observation.usage_details']), { input: 20, output: 8, total: 28 });
  assert.equal(parse(second.attributes['langfuse.observation.output']), ANSWER);
  // 16 of the 40 input tokens were cache reads: priced apart, as Langfuse does.
  assert.deepEqual(parse(second.attributes['langfuse.observation.usage_details']), { input: 24, output: 6, total: 46, input_cache_read: 16 });
  return calls;
}

/** The app's call: a question answered after one call of the weather tool, traced with `tracer`. */
function askWeather(tracer: Tracer, options: { maxRetries?: number } = {}) {
  return generateText({
    model: mockModel(),
    prompt: QUESTION,
    temperature: 0.3,
    maxOutputTokens: 200,
    ...options,
    stopWhen: stepCountIs(3),
    tools: {
      weather: tool({
        description: 'The weather in a city',
        inputSchema: z.object({ city: z.string() }),
        execute: async ({ city }) => ({ city, forecast: 'sunny' }),
      }),
    },
    experimental_telemetry: { isEnabled: true, tracer, functionId: 'weather-answer' },
  });
}

describe('Vercel AI SDK → OTLP → dspy-o11yd → Langfuse', () => {
  let fake: FakeLangfuse;
  let daemon: DaemonProcess;
  useLangfuseDaemon(KEYS, ['--socket', '', '--http', '127.0.0.1:0', '--flush-interval', '20'], (f, d) => ((fake = f), (daemon = d)));

  test('generateText with a tool: generations with input, output, model, parameters and usage; the tool call a tool', async () => {
    const provider = new BasicTracerProvider({
      resource: resourceFromAttributes({ 'service.name': 'vercel-app' }),
      spanProcessors: [new SimpleSpanProcessor(new OTLPTraceExporter({ url: `${daemon.httpUrl}/v1/traces` }))],
    });
    const result = await askWeather(provider.getTracer('ai'), { maxRetries: 1 });
    assert.equal(result.text, ANSWER);
    await provider.forceFlush();
    await provider.shutdown();
    // ai.generateText, two ai.generateText.doGenerate, one ai.toolCall.
    const spans = await fake.waitForSpans(4);
    assert.equal(spans.length, 4);
    assert.ok(spans.every((s) => s.scope.name === 'dspy-o11y'), 'sent under the daemon\'s scope, not `ai`');

    const calls = modelCalls(spans);
    for (const g of calls) {
      const params = parse(g.attributes['langfuse.observation.model.parameters']) as Record<string, unknown>;
      assert.equal(params.max_retries, 1, 'ai.settings.maxRetries, as Langfuse reads it');
      assert.equal(params.tool_choice, '{"type":"auto"}', 'ai.prompt.toolChoice');
      assert.ok(!('ai.prompt.messages' in g.attributes), 'moved, not copied');
    }

    const [toolCall] = byOperation(spans, 'ai.toolCall');
    assert.ok(toolCall);
    assert.equal(toolCall.attributes['langfuse.observation.type'], 'tool');
    assert.equal(toolCall.attributes['ai.toolCall.name'], 'weather', 'Langfuse names the observation after it');
    assert.deepEqual(parse(toolCall.attributes['langfuse.observation.input']), { city: 'Paris' });
    assert.deepEqual(parse(toolCall.attributes['langfuse.observation.output']), { city: 'Paris', forecast: 'sunny' });

    // The operation around the calls: a span (not a third generation counting their tokens again),
    // with the prompt and the final text as its input and output (the trace's, as the root).
    const [outer] = byOperation(spans, 'ai.generateText');
    assert.ok(outer);
    assert.equal(outer.parentSpanId, undefined);
    assert.equal(outer.attributes['langfuse.observation.type'], 'span');
    assert.equal(outer.attributes['langfuse.observation.usage_details'], undefined);
    assert.deepEqual(parse(outer.attributes['langfuse.observation.input']), { prompt: QUESTION });
    assert.equal(parse(outer.attributes['langfuse.observation.output']), ANSWER);
    assert.equal(parse(outer.attributes['langfuse.trace.output']), ANSWER);
    for (const s of [...calls, toolCall]) assert.equal(s.parentSpanId, outer.spanId);
  });
  test('through LangfuseSpanProcessor: the generations keep input, output, parameters and usage; its environment wins', async () => {
    fake.reset(); // the spans of the test above arrived whole: it waited for all 4
    const processor = new LangfuseSpanProcessor({
      publicKey: KEYS.LANGFUSE_PUBLIC_KEY, secretKey: KEYS.LANGFUSE_SECRET_KEY, baseUrl: daemon.httpUrl, environment: 'staging', mediaUploadEnabled: false,
    });
    const provider = new BasicTracerProvider({
      // The resource says production: the processor's environment on each span is what Langfuse reads first.
      resource: resourceFromAttributes({ 'service.name': 'vercel-app', 'deployment.environment.name': 'production' }),
      spanProcessors: [processor],
    });
    // Under propagateAttributes, the processor also puts the trace's keys on every span.
    const result = await propagateAttributes({ userId: 'user-7', sessionId: 'session-7', traceName: 'weather' }, () => askWeather(provider.getTracer('ai')));
    assert.equal(result.text, ANSWER);
    await provider.forceFlush();
    await provider.shutdown();
    const spans = await fake.waitForSpans(4);
    assert.equal(spans.length, 4);
    for (const s of spans) {
      assert.equal(s.attributes['langfuse.environment'], 'staging', 'the processor\'s environment over the resource\'s');
      assert.equal(s.attributes['langfuse.user.id'], 'user-7');
      assert.equal(s.attributes['langfuse.session.id'], 'session-7');
      assert.equal(s.attributes['langfuse.trace.name'], 'weather');
    }

    modelCalls(spans);

    const [toolCall] = byOperation(spans, 'ai.toolCall');
    assert.ok(toolCall);
    assert.equal(toolCall.attributes['langfuse.observation.type'], 'tool');
    assert.deepEqual(parse(toolCall.attributes['langfuse.observation.output']), { city: 'Paris', forecast: 'sunny' });
    const [outer] = byOperation(spans, 'ai.generateText');
    assert.ok(outer);
    assert.equal(outer.attributes['langfuse.observation.type'], 'span');
    assert.equal(parse(outer.attributes['langfuse.trace.output']), ANSWER);
  });
});
