import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import OpenAI from 'openai';
import { BudgetExceededError, TokenBudget, chainOfThought, codeAct, configure, event, flush, generation, getActiveSpan, isDisabled, predict, react, sdkStats, span, startGeneration, startSpan, subscribe, withTrace, wrapOpenAI, type SpanHandle } from '../src/index.js';
import { runApp } from './support/child.js';
import { FakeProvider, chatCompletion } from './support/fake-provider.js';
import { UnixReceiver, sleep } from './support/receiver.js';

test('configure({ disabled: true }): every call is a no-op around the callback, which runs and returns', async () => {
  const r = await UnixReceiver.create();
  configure({ endpoint: r.endpoint, disabled: true });
  assert.equal(isDisabled(), true);
  const before = sdkStats();
  assert.equal(span('a', () => 41) + 1, 42);
  assert.equal(await span('b', { input: 'x' }, async () => 'async'), 'async');
  assert.equal(await withTrace({ name: 't' }, async () => span('c', () => getActiveSpan())), undefined);
  const err = new Error('still thrown');
  assert.throws(() => span('d', () => { throw err; }), (e) => e === err);
  assert.equal(generation('g', { model: 'gpt-4o-mini' }, (g) => g.setUsage({ input: 1 }) && 'gen'), 'gen');
  const s = startSpan('e').setInput(1).setAttribute('k', 'v');
  s.end();
  startGeneration('f').setUsage({ input: 1 }).end();
  // subscribers are the app's own logic (budgets): they keep working
  const seen: string[] = [];
  const off = subscribe('*', (name, a) => seen.push(`${name}:${String(a['gen_ai.usage.input_tokens'] ?? a.n ?? '')}`));
  event('custom', { n: 1 });
  generation('g2', { model: 'gpt-4o-mini' }, (g) => g.setUsage({ input: 7 }));
  off();
  assert.deepEqual(seen, ['custom:1', 'llm.generate:7']);

  const provider = await FakeProvider.start();
  provider.script('/v1/chat/completions', { status: 200, json: chatCompletion('hi') });
  const client = wrapOpenAI(new OpenAI({ apiKey: 'x', baseURL: `${provider.url}/v1` }));
  const res = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] });
  assert.equal(res.choices[0]?.message.content, 'hi');
  await provider.close();

  assert.equal(await flush(), true);
  await sleep(50);
  assert.equal(sdkStats().enqueued, before.enqueued, 'nothing produced');
  assert.equal(r.connections, 0, 'no connection made');

  configure({ disabled: false });
  span('back-on', () => 1);
  assert.equal(await flush(), true);
  await r.waitForSpans(1);
  assert.deepEqual(r.spans().map((x) => x.name), ['back-on']);
  await r.dispose();
});

test('an HTTP daemon that never answers, or is absent, never keeps a finished app alive', async () => {
  const sockets = new Set<import('node:net').Socket>();
  const silent = http.createServer(() => undefined); // accepts requests, never answers
  silent.on('connection', (c) => sockets.add(c));
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', () => resolve()));
  const port = (silent.address() as AddressInfo).port;
  const hung = await runApp({ DSPY_O11Y_ENDPOINT: `http://127.0.0.1:${port}`, FIXTURE_SPANS: '50' });
  assert.notEqual(hung.code, null, 'exited by itself');
  assert.equal(hung.code, 0, hung.stderr);
  assert.equal(hung.report?.result.sum, 1225);
  for (const c of sockets) c.destroy();
  await new Promise<void>((resolve) => silent.close(() => resolve()));
  const absent = await runApp({ DSPY_O11Y_ENDPOINT: `http://127.0.0.1:${port}`, FIXTURE_SPANS: '50' });
  assert.equal(absent.code, 0, absent.stderr);
  const s = absent.report?.stats;
  assert.equal(s?.enqueued, (s?.sent ?? 0) + (s?.dropped ?? 0));
});

test('DSPY_O11Y_DEBUG=1: each diagnostic once, and at most the first 1,000 distinct ones are remembered', async () => {
  const { debug } = await import('../src/config.js');
  const write = process.stderr.write;
  let written = 0;
  process.env.DSPY_O11Y_DEBUG = '1';
  process.stderr.write = ((chunk: string | Uint8Array) => (String(chunk).startsWith('[dspy-o11y]') ? void written++ : void 0, true)) as typeof process.stderr.write;
  try {
    for (let i = 0; i < 3; i++) debug('the same message');
    for (let i = 0; i < 2000; i++) debug(`a server answered 400: body ${i}`);
  } finally {
    process.stderr.write = write;
    delete process.env.DSPY_O11Y_DEBUG;
  }
  assert.equal(written, 1000);
});

test('disabled, with a budget subscriber: failed generations are heard too (they may have spent tokens); setUsage never throws', async () => {
  configure({ disabled: true });
  const seen: unknown[] = [];
  const off = subscribe('llm.generate', (_name, a) => seen.push(a['gen_ai.usage.total_tokens']));
  try {
    const boom = new Error('provider down');
    assert.throws(() => generation('sync-fail', {}, (g) => { g.setUsage({ input: 5, output: 1 }); throw boom; }), (e) => e === boom);
    await assert.rejects(generation('async-fail', {}, async (g) => { g.setUsage({ input: 7, output: 1 }); throw boom; }), (e) => e === boom);
    const throwing = { get input(): number { throw new Error('getter'); } };
    assert.doesNotThrow(() => generation('getter', {}, (g) => g.setUsage(throwing)));
    const throwingModel = { get model(): string { throw new Error('getter'); } };
    assert.doesNotThrow(() => generation('getter-model', throwingModel, () => 1));
    assert.doesNotThrow(() => startGeneration('getter-model', throwingModel).end());
  } finally {
    off();
    configure({ disabled: false });
  }
  assert.deepEqual(seen.slice(0, 2), [6, 8]);
});

test('disabled: llm.generate subscribers hear the cache and reasoning counts too, as when enabled', () => {
  const heard = (disabled: boolean) => {
    configure({ disabled });
    const seen: Record<string, unknown>[] = [];
    const off = subscribe('llm.generate', (_name, a) => seen.push(a));
    try {
      generation('llm.generate', { model: 'claude-sonnet-4-5' }, (g) => g.setUsage({ input: 100, output: 5, cacheRead: 60, cacheWrite: 30, reasoning: 4 }));
    } finally {
      off();
      configure({ disabled: false });
    }
    const a = seen[0] ?? {};
    return [a['gen_ai.usage.cache_read.input_tokens'], a['gen_ai.usage.cache_creation.input_tokens'], a['gen_ai.usage.reasoning.output_tokens'], a['gen_ai.usage.cost']];
  };
  const enabled = heard(false);
  assert.deepEqual(enabled.slice(0, 3), [60, 30, 4]);
  assert.deepEqual(heard(true), enabled);
});

test('disabled: a failed generation\'s error reaches the app unchanged when a subscriber throws (a spent budget), as when enabled', async () => {
  configure({ disabled: true });
  const budget = new TokenBudget(5).start();
  try {
    assert.throws(() => generation('spend', {}, (g) => g.setUsage({ input: 10 })), BudgetExceededError);
    // Every later generation is refused by the budget; one that failed on its own keeps its error.
    const boom = new Error('provider down');
    assert.throws(() => generation('sync-fail', {}, () => { throw boom; }), (e) => e === boom);
    await assert.rejects(generation('async-fail', {}, async () => { throw boom; }), (e) => e === boom);
  } finally {
    budget.stop();
    configure({ disabled: false });
  }
});

test('disabled: a per-trace TokenBudget (traceId from withTrace) still stops its own run, and only its own', async () => {
  configure({ disabled: true });
  const provider = await FakeProvider.start();
  // Every call: 100 + 10 tokens, and the model wants one more tool call.
  const reply = { fn: () => ({ status: 200, json: chatCompletion('{"action":"lookup","action_input":"x"}', { prompt: 100, completion: 10 }) }) };
  for (let i = 0; i < 40; i++) provider.script('/v1/chat/completions', reply);
  const client = wrapOpenAI(new OpenAI({ apiKey: 'x', baseURL: `${provider.url}/v1`, maxRetries: 0 }));
  const calls = new Map<string, number>();
  const agent = (name: string) =>
    react('Q', {
      llm: async () => {
        calls.set(name, (calls.get(name) ?? 0) + 1);
        const res = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: name }] });
        return { output: JSON.parse(res.choices[0]?.message.content ?? '{}') as Record<string, unknown> };
      },
      tools: [{ name: 'lookup', run: () => 'nothing' }],
      maxIterations: 10,
    });
  // A server's requests: each its own trace and budget of 250 tokens, two at once.
  const request = (name: string) =>
    withTrace({ name }, async (trace) => {
      const budget = new TokenBudget(250, { traceId: trace.traceId }).start();
      try {
        return await agent(name)({ q: name });
      } finally {
        budget.stop();
      }
    });
  try {
    const results = await Promise.allSettled([request('a'), request('b')]);
    for (const r of results) assert.ok(r.status === 'rejected' && r.reason instanceof BudgetExceededError, 'the budget stopped the run');
    // 3 × 110 > 250: each run's third call crosses its own budget; the other run's calls do not count.
    assert.deepEqual(Object.fromEntries(calls), { a: 3, b: 3 });
  } finally {
    configure({ disabled: false });
    await provider.close();
  }
});

test('disabled: withTrace options with a throwing getter (or none) still give a trace whose TokenBudget counts, as when enabled', () => {
  configure({ disabled: true });
  const boom = { enumerable: true, get(): never { throw new Error('getter'); } };
  const given = '4bf92f3577b34da6a3ce929d0e0e4736';
  const cases: [string, unknown, string | undefined][] = [
    ['a throwing traceparent, a trace id given', Object.defineProperty({ traceId: given }, 'traceparent', boom), given],
    ['a throwing traceId', Object.defineProperty({ name: 'req' }, 'traceId', boom), undefined],
    ['no options object', undefined, undefined],
  ];
  try {
    for (const [what, options, expectedId] of cases) {
      withTrace(options as Parameters<typeof withTrace>[0], (trace) => {
        assert.match(trace.traceId, /^[0-9a-f]{32}$/, what);
        if (expectedId !== undefined) assert.equal(trace.traceId, expectedId, what);
        const budget = new TokenBudget(1000, { traceId: trace.traceId }).start();
        try {
          generation('llm', {}, (g) => g.setUsage({ input: 10, output: 2 }));
        } finally {
          budget.stop();
        }
        assert.equal(budget.used, 12, `${what}: the budget counted its trace's generation`);
      });
    }
  } finally {
    configure({ disabled: false });
  }
});

test('disabled: a span handle\'s ended says whether it ended, as when enabled (each handle its own)', async () => {
  configure({ disabled: true });
  try {
    const a = startSpan('a');
    const b = startSpan('b');
    const g = startGeneration('g'); // no subscriber: the plain no-op handle
    assert.deepEqual([a.ended, b.ended, g.ended], [false, false, false]);
    a.end();
    g.end();
    assert.deepEqual([a.ended, b.ended, g.ended], [true, false, true], 'end() ends that handle only');
    let sync: SpanHandle | undefined;
    span('sync', (s) => {
      sync = s;
      assert.equal(s.ended, false, 'running');
    });
    assert.equal(sync?.ended, true, 'ended when the callback returned');
    let inner: SpanHandle | undefined;
    const done = span('async', async (s) => {
      inner = s;
      await new Promise((resolve) => setImmediate(resolve));
      return 7;
    });
    assert.equal(inner?.ended, false, 'running until its promise settles');
    assert.equal(await done, 7);
    assert.equal(inner?.ended, true, 'ended when its promise settled');
    let failed: SpanHandle | undefined;
    const boom = new Error('boom');
    assert.throws(() => span('throws', (s) => { failed = s; throw boom; }), (e) => e === boom);
    assert.equal(failed?.ended, true);
    let early: SpanHandle | undefined;
    generation('early', (h) => {
      h.end();
      early = h;
      assert.equal(h.ended, true, 'end() inside the callback');
    });
    assert.equal(early?.ended, true);
  } finally {
    configure({ disabled: false });
  }
});

test('disabled: module events reach subscribers with the trace of the active withTrace, as event() and llm.generate do', async () => {
  configure({ disabled: true });
  const heard: Array<[string, string | undefined]> = [];
  const off = subscribe('*', (name, _a, context) => heard.push([name, context.traceId]));
  let traceId = '';
  try {
    await withTrace({ name: 'request' }, async (trace) => {
      traceId = trace.traceId;
      await chainOfThought('C', { llm: () => ({ output: { reasoning: 'r', answer: 'a' } }) })({ q: 1 });
      await react('R', { llm: () => ({ output: { action: 'lookup', action_input: 'x' } }), tools: [{ name: 'lookup', run: () => 'y' }], maxIterations: 1 })({ q: 1 });
      await codeAct('K', { llm: () => ({ output: { code: '1' } }), execute: () => 1, maxIterations: 1 })({ q: 1 });
    });
  } finally {
    off();
    configure({ disabled: false });
  }
  assert.ok(traceId);
  assert.deepEqual(heard.map(([name]) => name).filter((n) => n !== 'llm.generate'), [
    'chain_of_thought.reasoning_complete', 'react.iteration_complete', 'react.max_iterations', 'codeact.iteration_complete', 'codeact.max_iterations',
  ]);
  assert.deepEqual(heard.filter(([, t]) => t !== traceId), [], 'every event names its trace');
});

test('disabled: a wrapped client call inside a module\'s llm tells llm.generate subscribers once, with its usage, as when enabled', async () => {
  configure({ disabled: true });
  const provider = await FakeProvider.start();
  provider.script('/v1/chat/completions', { status: 200, json: chatCompletion('{"label":"spam"}', { prompt: 30, completion: 4 }) });
  const client = wrapOpenAI(new OpenAI({ apiKey: 'x', baseURL: `${provider.url}/v1`, maxRetries: 0 }));
  const heard: Array<Readonly<Record<string, unknown>>> = [];
  const off = subscribe('llm.generate', (_n, a) => heard.push(a));
  try {
    const classify = predict('Classify', {
      llm: async () => {
        const res = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'buy now' }] });
        return { output: JSON.parse(res.choices[0]?.message.content ?? '{}') as Record<string, unknown> };
      },
    });
    assert.deepEqual(await classify({ text: 'buy now' }), { label: 'spam' });
  } finally {
    off();
    configure({ disabled: false });
    await provider.close();
  }
  assert.equal(heard.length, 1, 'one call, one llm.generate');
  assert.equal(heard[0]?.['gen_ai.usage.total_tokens'], 34);
  assert.equal(heard[0]?.['gen_ai.request.model'], 'gpt-4o-mini');
});

test('a configure() switch of endpoint as the app ends: the exit holds the process one flushTimeoutMs in all, not the old transport\'s flush and then the exit flush', async () => {
  const sockets = new Set<import('node:net').Socket>();
  const silent = async (): Promise<http.Server> => {
    const s = http.createServer(() => undefined); // accepts requests, never answers
    s.on('connection', (c) => sockets.add(c));
    await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', () => resolve()));
    return s;
  };
  const [before, after] = [await silent(), await silent()];
  const url = (s: http.Server): string => `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
  try {
    // Not timed (a kill between one and two flushTimeoutMs failed under load): the replaced
    // transport's flush (to a server that never answers) must not be what held the process, so
    // the exit began while that transport was still open, nothing of it dropped yet.
    const run = await runApp({ DSPY_O11Y_ENDPOINT: url(before), FIXTURE_SWITCH_ENDPOINT: url(after), FIXTURE_FLUSH_TIMEOUT: '4000', FIXTURE_SPANS: '5' });
    assert.equal(run.code, 0, run.stderr);
    const began = run.report?.exitBegan;
    assert.ok(began, 'beforeExit came');
    assert.equal(began.droppedByReason.shutdown, undefined, 'the replaced transport was not closed before the exit began');
    assert.ok(began.buffered + began.inFlight > 0, 'its records were still on their way');
    const s = run.report?.stats;
    assert.equal(s?.enqueued, (s?.sent ?? 0) + (s?.dropped ?? 0), 'sdkStats() adds up at exit');
  } finally {
    for (const c of sockets) c.destroy();
    for (const s of [before, after]) await new Promise<void>((resolve) => s.close(() => resolve()));
  }
});
