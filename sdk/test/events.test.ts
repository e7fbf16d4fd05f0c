import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BudgetExceededError, TokenBudget, event, flush, generation, span, startGeneration, subscribe, withTrace } from '../src/index.js';
import { matchesPattern } from '../src/events.js';
import { UnixReceiver, useReceiver } from './support/receiver.js';

let r: UnixReceiver;
useReceiver({}, (x) => (r = x));

test('patterns: * matches any run of characters, anchored', () => {
  const m = matchesPattern;
  assert.ok(m('llm.*', 'llm.generate'));
  assert.ok(m('llm.*', 'llm.'));
  assert.ok(!m('llm.*', 'xllm.generate'));
  assert.ok(!m('llm', 'llm.generate'));
  assert.ok(m('*', 'anything.at.all'));
  assert.ok(m('*.iteration_complete', 'react.iteration_complete'));
  assert.ok(m('react.*.complete', 'react.x.y.complete'));
  assert.ok(!m('llm.generate', 'llmXgenerate'), 'dots are literal');
  assert.ok(m('a+b(c)', 'a+b(c)'), 'regex characters are literal');
  assert.ok(m('*', 'line\nbreak\u2028'), 'line breaks are characters too');
  assert.ok(m('a*b*c', 'aXbYbZc') && !m('a*b*c', 'aXbYbZ') && m('**', '') && m('a**', 'a') && !m('', 'a') && m('*b', 'abab'));
  assert.ok(m('x*', 'x*') && !m('x.y', 'x*y'), 'a * in a name is an ordinary character');
  // Several wildcards against a long name that almost matches: a backtracking regular expression took seconds.
  // CPU time, not wall-clock time: a loaded machine may hold the process meanwhile.
  const t0 = process.cpuUsage();
  assert.ok(!m('*a*a*a*a*a*a*b', 'a'.repeat(60)));
  const { user, system } = process.cpuUsage(t0);
  assert.ok((user + system) / 1000 < 100, 'linear-ish, not exponential');
});

test('subscribe() with a pattern that is not a string or a handler that is not a function subscribes nothing; odd event names never throw', () => {
  const offs = [subscribe(42 as never, () => undefined), subscribe(undefined as never, () => undefined), subscribe('odd.*', null as never)];
  const seen: unknown[] = [];
  const offAll = subscribe('*', (name) => seen.push(name));
  event('odd.event');
  event('a\nb');
  for (const name of [Object.create(null), { toString: () => { throw new Error('toString'); } }, 7, undefined]) event(name as never);
  span('s', (s) => s.event(Object.create(null) as never));
  assert.deepEqual(seen, ['odd.event', 'a\nb'], 'names that are not strings reach no subscriber');
  offAll();
  for (const off of offs) off();
});

test('subscribers receive matching events synchronously; unsubscribe stops them', () => {
  const seen: string[] = [];
  const offAll = subscribe('*', (name) => seen.push(`all:${name}`));
  const offReact = subscribe('react.*', (name, attrs, ctx) => {
    seen.push(`react:${name}:${String(attrs.iteration)}:${ctx.traceId ? 'traced' : 'untraced'}`);
  });
  event('react.iteration_complete', { iteration: 1 });
  assert.deepEqual(seen, ['all:react.iteration_complete', 'react:react.iteration_complete:1:untraced'], 'delivered before event() returns');
  span('s', (s) => s.event('react.iteration_complete', { iteration: 2 }));
  assert.equal(seen.at(-1), 'react:react.iteration_complete:2:traced');
  offReact();
  event('react.iteration_complete', { iteration: 3 });
  assert.equal(seen.at(-1), 'all:react.iteration_complete');
  offAll();
  offAll(); // idempotent
  const n = seen.length;
  event('react.iteration_complete');
  assert.equal(seen.length, n);
});

test('a subscriber error is rethrown to the emitter after every subscriber ran, and the event is still recorded', async () => {
  const ran: string[] = [];
  const e1 = new Error('first');
  const off1 = subscribe('custom.*', () => {
    ran.push('1');
    throw e1;
  });
  const off2 = subscribe('custom.*', () => {
    ran.push('2');
    throw new Error('second');
  });
  const off3 = subscribe('custom.*', () => ran.push('3'));
  assert.throws(() => event('custom.thing', { x: 1 }), (e) => e === e1);
  assert.deepEqual(ran, ['1', '2', '3']);
  off1();
  off2();
  off3();
  await flush();
  await r.waitFor(() => r.events().some((e) => e.name === 'custom.thing'));
});

test('every generation emits llm.generate with its usage, model and cost when it ends', async () => {
  const got: Array<{ name: string; attrs: Readonly<Record<string, unknown>>; spanId: string | undefined }> = [];
  const off = subscribe('llm.*', (name, attrs, ctx) => got.push({ name, attrs, spanId: ctx.spanId }));
  let id = '';
  await generation('llm.generate', { model: 'gpt-4o-mini', provider: 'openai' }, async (g) => {
    id = g.spanId;
    g.setUsage({ input: 1000, output: 500 });
    assert.equal(got.length, 0, 'not before the generation ends');
  });
  const g2 = startGeneration('embedding.call', { model: 'text-embedding-3-small' });
  g2.setUsage({ input: 10 });
  g2.end();
  off();
  assert.equal(got.length, 2);
  assert.equal(got[0]?.name, 'llm.generate');
  assert.equal(got[0]?.spanId, id);
  assert.equal(got[0]?.attrs['gen_ai.usage.input_tokens'], 1000);
  assert.equal(got[0]?.attrs['gen_ai.usage.output_tokens'], 500);
  assert.equal(got[0]?.attrs['gen_ai.usage.total_tokens'], 1500);
  assert.equal(got[0]?.attrs['gen_ai.request.model'], 'gpt-4o-mini');
  assert.equal(got[0]?.attrs['gen_ai.usage.cost'], (1000 * 0.15 + 500 * 0.6) / 1e6);
  assert.equal(got[1]?.name, 'llm.generate', 'every generation, whatever its span name');
});

test('TokenBudget throws BudgetExceededError from the generation that crosses the limit, and after', async () => {
  const budget = new TokenBudget(250).start();
  const call = (tokens: number) =>
    generation('llm.generate', { model: 'gpt-4o-mini' }, async (g) => {
      g.setUsage({ input: tokens, output: 0 });
      return 'answer';
    });
  assert.equal(await call(100), 'answer');
  assert.equal(await call(100), 'answer');
  assert.equal(budget.remaining, 50);
  await assert.rejects(call(100), (e) => e instanceof BudgetExceededError && e.used === 300 && e.limit === 250);
  await assert.rejects(call(1), BudgetExceededError);
  budget.stop();
  assert.equal(await call(1000), 'answer', 'stopped: no more throws');
  // the generation that crossed the budget was still recorded, with its usage
  await flush();
  await r.waitForSpans(5);
  assert.equal(r.spans().filter((s) => s.status?.code === 'error').length, 0, 'the LLM calls themselves succeeded');
});

test('a TokenBudget with a bad limit never throws a TypeError: not a number counts but never stops a run, negative is 0; one debug line naming the limit and its type', async () => {
  const write = process.stderr.write;
  const said: string[] = [];
  process.env.DSPY_O11Y_DEBUG = '1';
  process.stderr.write = ((chunk: string | Uint8Array) => (said.push(String(chunk)), true)) as typeof process.stderr.write;
  const call = (tokens: number) => generation('llm.generate', { model: 'gpt-4o-mini' }, (g) => g.setUsage({ input: tokens, output: 0 }));
  try {
    for (const limit of [Symbol('limit'), 10n, NaN, 'secret-100', {}, undefined, null]) {
      const budget = new TokenBudget(limit as never).start();
      try {
        assert.doesNotThrow(() => call(500), String(typeof limit));
        assert.doesNotThrow(() => call(500));
        assert.equal(budget.used, 1000, 'it still counts');
        assert.equal(budget.limit, Infinity);
        assert.equal(budget.remaining, Infinity);
      } finally {
        budget.stop();
      }
    }
    const negative = new TokenBudget(-5).start();
    try {
      assert.equal(negative.limit, 0);
      assert.throws(() => call(1), (e) => e instanceof BudgetExceededError && e.limit === 0);
    } finally {
      negative.stop();
    }
    // Options that are no object (null): start() threw reading options.pattern.
    const noOptions = new TokenBudget(10, null as never);
    assert.doesNotThrow(() => noOptions.start());
    assert.throws(() => call(11), BudgetExceededError);
    noOptions.stop();
  } finally {
    process.stderr.write = write;
    delete process.env.DSPY_O11Y_DEBUG;
  }
  const lines = said.join('').split('\n').filter((l) => l.includes('TokenBudget'));
  assert.deepEqual(lines, [
    ...['symbol', 'bigint', 'NaN', 'string', 'object', 'undefined', 'null'].map(
      (kind) => `[dspy-o11y] TokenBudget: limit must be a number of tokens from 0, not ${kind}; this budget counts but never stops a run`,
    ),
    '[dspy-o11y] TokenBudget: limit must be a number of tokens from 0; a negative one is taken as 0',
  ]);
  assert.ok(!said.join('').includes('secret-100'), 'the value is never shown');
});

test('a per-trace TokenBudget only counts its own trace', async () => {
  await withTrace({ name: 'a' }, async (t) => {
    const budget = new TokenBudget(10, { traceId: t.traceId }).start();
    try {
      await withTrace({ traceId: 'f'.repeat(32) }, () => generation('llm.generate', (g) => g.setUsage({ input: 1000 })));
      assert.equal(budget.used, 0);
      await assert.rejects(
        generation('llm.generate', async (g) => g.setUsage({ input: 11 })),
        BudgetExceededError,
      );
    } finally {
      budget.stop();
    }
  });
});

test('an app error is never replaced by a subscriber error', async () => {
  const off = subscribe('llm.*', () => {
    throw new Error('subscriber');
  });
  const appError = new Error('app');
  await assert.rejects(
    generation('llm.generate', async (g) => {
      g.setUsage({ input: 1 });
      throw appError;
    }),
    (e) => e === appError,
  );
  off();
});
