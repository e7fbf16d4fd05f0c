/**
 * The other direction of the OpenTelemetry interop (otel-context.test.ts has the first): while a
 * dspy-o11y span's callback runs, it is OpenTelemetry's active span too, so the spans the app's
 * OpenTelemetry instrumentation starts inside (the LLM call's HTTP client span) are its children,
 * and a dspy-o11y span started inside one of those is that one's child. The real @opentelemetry/api,
 * sdk-trace-base (recording into an InMemorySpanExporter) and AsyncLocalStorage context manager;
 * the real SDK sending to a receiver on a Unix socket; the real `openai` client.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { ROOT_CONTEXT, context, trace, type Span, type TraceState, type Tracer } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { AlwaysOffSampler, BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import type { SpanRecord } from '@dspy-o11y/proto';
import { configure, event, flush, generation, injectTraceparent, predict, score, span, startSpan, withActiveSpan, withTrace, wrapOpenAI } from '../src/index.js';
import { FakeProvider, chatCompletion, useFakeProvider } from './support/fake-provider.js';
import { UnixReceiver, sleep, useReceiver } from './support/receiver.js';

let r: UnixReceiver;
useReceiver({ serviceName: 'otel-children-test' }, (x) => (r = x));
let provider: FakeProvider;
useFakeProvider((p) => (provider = p));

context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
const recorded = new InMemorySpanExporter();
// BasicTracerProvider's default sampler is ParentBased(AlwaysOn), as NodeSDK's.
const tracer: Tracer = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(recorded)] }).getTracer('app');
const OTEL_API = Symbol.for('opentelemetry.js.api.1');

async function collect(n: number): Promise<void> {
  assert.equal(await flush(), true);
  await r.waitForSpans(n);
  assert.deepEqual(r.invalid, []);
}

/** The OpenTelemetry span named `name` that the app ended. */
function otel(name: string): ReadableSpan {
  const found = recorded.getFinishedSpans().filter((s) => s.name === name);
  assert.equal(found.length, 1, `one OpenTelemetry span ${name}, got ${found.length}`);
  return found[0];
}

/** What an OpenTelemetry instrumentation does around a call: a span, active while the call runs. */
function instrumented<T>(name: string, fn: () => Promise<T>): Promise<T> {
  return tracer.startActiveSpan(name, async (s: Span) => {
    try {
      return await fn();
    } finally {
      s.end();
    }
  });
}

const parentOf = (s: ReadableSpan): string | undefined => s.parentSpanContext?.spanId;

test('an OpenTelemetry span started inside a dspy-o11y span, generation or withActiveSpan is its child, across awaits', async () => {
  recorded.reset();
  await span('agent', async () => {
    await sleep(1);
    await instrumented('db.query', () => sleep(1));
    await generation('llm.generate', { model: 'gpt-4o-mini' }, async () => {
      await sleep(1);
      await instrumented('POST /v1/chat/completions', () => sleep(1));
    });
  });
  const manual = startSpan('stream');
  await withActiveSpan(manual, () => instrumented('POST /stream', () => sleep(1)));
  manual.end();
  await collect(3);
  const agent = r.span('agent');
  // Before: each OpenTelemetry span was a root of a trace of its own (no active OpenTelemetry span).
  assert.equal(otel('db.query').spanContext().traceId, agent.traceId);
  assert.equal(parentOf(otel('db.query')), agent.spanId);
  const gen = r.span('llm.generate');
  assert.equal(otel('POST /v1/chat/completions').spanContext().traceId, agent.traceId);
  assert.equal(parentOf(otel('POST /v1/chat/completions')), gen.spanId);
  const stream = r.span('stream');
  assert.equal(otel('POST /stream').spanContext().traceId, stream.traceId);
  assert.equal(parentOf(otel('POST /stream')), stream.spanId);
  // After the callback, OpenTelemetry's context is what it was: no span.
  await instrumented('after', async () => undefined);
  assert.equal(parentOf(otel('after')), undefined);
  assert.notEqual(otel('after').spanContext().traceId, agent.traceId);
});

test("a wrapped OpenAI client's HTTP call, instrumented by OpenTelemetry, is a child of the call's generation", async () => {
  recorded.reset();
  // What @opentelemetry/instrumentation-undici does: a client span around each fetch.
  const fetchWithSpan: typeof fetch = (input, init) => instrumented('POST chat.completions', () => fetch(input, init));
  const client = wrapOpenAI(new OpenAI({ apiKey: 'sk-test', baseURL: `${provider.url}/v1`, maxRetries: 0, fetch: fetchWithSpan }));
  provider.script('/v1/chat/completions', { status: 200, json: chatCompletion('hello', { model: 'gpt-4o-mini' }) });
  const answer = await span('ask', () => client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }));
  assert.equal(answer.choices[0].message.content, 'hello');
  await collect(2);
  const gen = r.spans().find((s: SpanRecord) => s.parentSpanId === r.span('ask').spanId)!;
  assert.ok(gen, 'the generation');
  assert.equal(otel('POST chat.completions').spanContext().traceId, gen.traceId);
  assert.equal(parentOf(otel('POST chat.completions')), gen.spanId);
});

test('a dspy-o11y span inside an OpenTelemetry span inside a dspy-o11y span nests as the calls did, and is not an app root', async () => {
  recorded.reset();
  await span('outer', () =>
    instrumented('business.step', async () => {
      await span('inner', async () => {
        await sleep(1);
        event('inner.event');
      });
      event('step.event');
    }),
  );
  await collect(2);
  await r.waitFor(() => r.events().length >= 2, 15_000, 'events');
  const outer = r.span('outer');
  const step = otel('business.step');
  const inner = r.span('inner');
  assert.equal(parentOf(step), outer.spanId);
  // Before: inner's parent was outer (the OpenTelemetry span in between was skipped).
  assert.equal(inner.traceId, outer.traceId);
  assert.equal(inner.parentSpanId, step.spanContext().spanId);
  assert.equal(inner.attributes?.['dspy.app_root'], undefined);
  const ev = (name: string) => r.events().find((e) => e.name === name)!;
  assert.equal(ev('inner.event').parentSpanId, inner.spanId);
  assert.equal(ev('step.event').parentSpanId, step.spanContext().spanId);
});

test('inside a request span joined by withTrace, an OpenTelemetry span in between makes the dspy-o11y span under it the app root', async () => {
  recorded.reset();
  await instrumented('GET /ask', () =>
    withTrace({ name: 'ask' }, () => instrumented('auth.check', () => span('answer', async () => sleep(1)))),
  );
  await collect(1);
  const answer = r.span('answer');
  assert.equal(answer.traceId, otel('GET /ask').spanContext().traceId);
  assert.equal(answer.parentSpanId, otel('auth.check').spanContext().spanId);
  assert.equal(parentOf(otel('auth.check')), otel('GET /ask').spanContext().spanId);
  assert.equal(answer.attributes?.['dspy.app_root'], true);
});

test('a sampled-out trace hands OpenTelemetry an unsampled parent: a ParentBased sampler drops the children too', async () => {
  recorded.reset();
  try {
    configure({ sampleRatio: 0 });
    await span('dropped', () => instrumented('child-of-dropped', () => sleep(1)));
  } finally {
    configure({ sampleRatio: undefined });
  }
  await span('kept', () => instrumented('child-of-kept', () => sleep(1)));
  await collect(1);
  assert.equal(r.spans().some((s) => s.name === 'dropped'), false);
  assert.deepEqual(recorded.getFinishedSpans().map((s) => s.name), ['child-of-kept']);
});

test('opt-out: with configure({ otelContext: false }) OpenTelemetry spans inside ours are not its children', async () => {
  recorded.reset();
  try {
    configure({ otelContext: false });
    await span('private', () => instrumented('not-a-child', () => sleep(1)));
  } finally {
    configure({ otelContext: undefined });
  }
  await collect(1);
  assert.notEqual(otel('not-a-child').spanContext().traceId, r.span('private').traceId);
  assert.equal(parentOf(otel('not-a-child')), undefined);
});

test('score() inside an OpenTelemetry span but outside any dspy-o11y scope scores its trace (not the span, which may not be in Langfuse)', async () => {
  recorded.reset();
  await instrumented('GET /feedback', async () => score({ name: 'helpful', value: 1 }));
  score({ name: 'no-target', value: 1 }); // outside both: dropped, as before
  assert.equal(await flush(), true);
  await r.waitFor(() => r.scores().length >= 1, 15_000, 'the score');
  const [s] = r.scores();
  assert.equal(r.scores().length, 1);
  assert.equal(s.name, 'helpful');
  // Before: no target, so the score was dropped as score_without_target.
  assert.equal(s.traceId, otel('GET /feedback').spanContext().traceId);
  assert.equal(s.observationId, undefined);
});

test('a broken context manager costs the link, never the call: the callback runs once, its value and error pass through unchanged', async () => {
  const g = globalThis as Record<symbol, unknown>;
  const real = g[OTEL_API];
  const active = () => ({ getValue: () => undefined, setValue: () => ({}) });
  const managers: [string, unknown][] = [
    ['with() throws before calling', { context: { active, with: () => { throw new Error('manager'); } } }],
    ['with() never calls', { context: { active, with: () => 'not the value' } }],
    ['setValue() throws', { context: { active: () => ({ getValue: () => undefined, setValue: () => { throw new Error('boom'); } }), with: () => 0 } }],
    ['setValue() returns undefined', { context: { active: () => ({ getValue: () => undefined, setValue: () => undefined }), with: () => 0 } }],
    ['with is not a function', { context: { active, with: 1 } }],
  ];
  const boom = new Error('from the app');
  try {
    for (const [name, api] of managers) {
      g[OTEL_API] = api;
      let calls = 0;
      assert.equal(span(`v:${name}`, () => ++calls), 1, name);
      assert.equal(calls, 1, name);
      assert.equal(await generation(`g:${name}`, async () => 'ok'), 'ok', name);
      calls = 0;
      assert.throws(
        () =>
          span(`e:${name}`, () => {
            calls++;
            throw boom;
          }),
        (e) => e === boom,
        name,
      );
      assert.equal(calls, 1, name);
    }
  } finally {
    g[OTEL_API] = real;
  }
  await collect(3 * managers.length);
  for (const [name] of managers) assert.equal(r.span(`e:${name}`).status?.code, 'error', name);
});

test("the request's W3C tracestate reaches OpenTelemetry spans and headers inside a dspy-o11y span, as without it", async () => {
  recorded.reset();
  // A TraceState as @opentelemetry/core's (only serialize() is read here, as its propagator does).
  const state: TraceState = { set: () => state, unset: () => state, get: () => undefined, serialize: () => 'vendor=abc,other=x' };
  // What the HTTP server instrumentation does with an incoming traceparent + tracestate.
  const remote = trace.setSpanContext(ROOT_CONTEXT, {
    traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
    spanId: '00f067aa0ba902b7',
    traceFlags: 1,
    isRemote: true,
    traceState: state,
  });
  let injected: TraceState | undefined;
  await context.with(remote, () =>
    instrumented('GET /ask', () =>
      span('answer', async () => {
        // What W3CTraceContextPropagator.inject writes as the `tracestate` header.
        injected = trace.getSpanContext(context.active())?.traceState;
        await instrumented('POST /upstream', () => sleep(1));
      }),
    ),
  );
  await collect(1);
  assert.equal(otel('GET /ask').spanContext().traceState, state);
  // Before: lost under our span (W3C: a participant passes tracestate on).
  assert.equal(otel('POST /upstream').spanContext().traceState, state);
  assert.equal(injected, state);
  assert.equal(parentOf(otel('POST /upstream')), r.span('answer').spanId);
});

test('injectTraceparent inside an OpenTelemetry span inside a dspy-o11y span names that span as the parent, as a dspy-o11y span there has it', async () => {
  recorded.reset();
  let header: string | undefined;
  const carrier: Record<string, string> = {};
  // A message sent from a manually instrumented step: the consumer's trace goes on under it.
  await span('agent', () =>
    instrumented('queue.publish', async () => {
      header = injectTraceparent(carrier);
      await span('after-publish', async () => sleep(1));
    }),
  );
  await collect(2);
  const publish = otel('queue.publish').spanContext();
  assert.equal(r.span('after-publish').parentSpanId, publish.spanId);
  // Before: the agent span's id, so the remote service's spans skipped queue.publish.
  assert.equal(header, `00-${r.span('agent').traceId}-${publish.spanId}-01`);
  assert.equal(carrier.traceparent, header);
});

test("an OpenTelemetry span its sampler dropped, inside a kept dspy-o11y span, is not the parent of a dspy-o11y span inside it (it is never exported)", async () => {
  recorded.reset();
  // A sampler that is not ParentBased (OTEL_TRACES_SAMPLER=traceidratio, say) may drop a span under ours.
  const dropping = new BasicTracerProvider({ sampler: new AlwaysOffSampler(), spanProcessors: [new SimpleSpanProcessor(recorded)] }).getTracer('app');
  let dropped: string | undefined;
  await span('outer', () =>
    dropping.startActiveSpan('dropped.step', async (s: Span) => {
      dropped = s.spanContext().spanId;
      try {
        await span('inner', async () => sleep(1));
      } finally {
        s.end();
      }
    }),
  );
  await collect(2);
  assert.equal(recorded.getFinishedSpans().length, 0, 'the OpenTelemetry span is not exported');
  assert.ok(dropped && dropped !== r.span('outer').spanId);
  // Before: inner's parent was the dropped span's id, a parent no backend ever receives.
  assert.equal(r.span('inner').parentSpanId, r.span('outer').spanId);
  assert.equal(r.span('inner').attributes?.['dspy.app_root'], undefined);
});

test("inside a module, an llm's retry of a failed wrapped call: each attempt's HTTP client span is a child of that attempt's generation", async () => {
  recorded.reset();
  let n = 0;
  const fetchWithSpan: typeof fetch = (input, init) => instrumented(`POST attempt ${++n}`, () => fetch(input, init));
  const client = wrapOpenAI(new OpenAI({ apiKey: 'sk-test', baseURL: `${provider.url}/v1`, maxRetries: 0, fetch: fetchWithSpan }));
  provider.script('/v1/chat/completions', { status: 400, json: { error: { message: 'bad request' } } }, { status: 200, json: chatCompletion('{"label":"ham"}', { model: 'gpt-4o-mini' }) });
  const classify = predict('Classify', {
    llm: async () => {
      const ask = () => client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
      const res = await ask().catch(ask);
      return { output: JSON.parse(res.choices[0]?.message.content ?? '{}') as Record<string, unknown> };
    },
  });
  assert.deepEqual(await classify({ text: 'hello' }), { label: 'ham' });
  await collect(3);
  const gens = r.spans().filter((s: SpanRecord) => s.name === 'llm.generate');
  assert.equal(gens.length, 2);
  const failed = gens.find((g) => g.status?.code === 'error') as SpanRecord;
  const answered = gens.find((g) => g.status?.code !== 'error') as SpanRecord;
  assert.equal(parentOf(otel('POST attempt 1')), failed.spanId, 'the 400 under the failed attempt');
  assert.equal(parentOf(otel('POST attempt 2')), answered.spanId, 'the 200 under the generation it answered');
});
