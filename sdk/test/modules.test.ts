import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { SpanRecord } from '@dspy-o11y/proto';
import { BudgetExceededError, TokenBudget, chainOfThought, codeAct, configure, flush, predict, react, subscribe, withTrace, type LM, type LMRequest } from '../src/index.js';
import { UnixReceiver, useReceiver, assertTreeComplete } from './support/receiver.js';

let r: UnixReceiver;
useReceiver({}, (x) => (r = x));

const attr = (s: SpanRecord, k: string): unknown => s.attributes?.[k];
const children = (parent: SpanRecord): SpanRecord[] => r.spans().filter((s) => s.parentSpanId === parent.spanId);

/** A deterministic ReAct "model": look up the weather, then answer. */
function weatherLLM(calls: LMRequest[]): LM {
  return (req) => {
    calls.push(req);
    const usage = { input: 100, output: 20 };
    if (req.iteration === 1) return { output: { thought: 'I need the weather', action: 'weather', action_input: { city: 'Paris' } }, usage, model: 'gpt-4o-mini', provider: 'openai' };
    if (req.iteration === 2) return { output: { thought: 'Try a tool that does not exist', action: 'teleport', action_input: {} }, usage, model: 'gpt-4o-mini' };
    if (req.iteration === 3) return { output: { thought: 'And one that fails', action: 'flaky', action_input: 'x' }, usage, model: 'gpt-4o-mini' };
    return { output: { thought: 'Done', action: 'finish', answer: 'Sunny, 21°C' }, usage, model: 'gpt-4o-mini' };
  };
}

const tools = [
  { name: 'weather', description: 'Weather for a city', run: async (input: unknown) => ({ city: (input as { city: string }).city, forecast: 'sunny', celsius: 21 }) },
  {
    name: 'flaky',
    run: () => {
      throw new Error('tool exploded');
    },
  },
];

test('ReAct: DSPy.rb span tree, types, names and events, with a deterministic fake LLM', async () => {
  const calls: LMRequest[] = [];
  const events: string[] = [];
  const off = subscribe('react.*', (name, attrs) => events.push(`${name}:${String(attrs.iteration ?? attrs['react.max_iterations'])}`));
  const agent = react('QuestionToAnswer', { llm: weatherLLM(calls), tools, maxIterations: 6 });
  const result = await withTrace({ name: 'weather', userId: 'u1' }, () => agent({ question: 'Weather in Paris?' }));
  off();
  assert.deepEqual(result.output, { answer: 'Sunny, 21°C' });
  assert.equal(result.finished, true);
  assert.equal(result.iterations, 4);
  assert.deepEqual(
    result.trajectory.map((s) => [s.action, s.observation ?? null]),
    [
      ['weather', { city: 'Paris', forecast: 'sunny', celsius: 21 }],
      ['teleport', 'Unknown tool: teleport'],
      ['flaky', 'Error: tool exploded'],
      ['finish', null],
    ],
  );
  assert.equal(calls[1]?.trajectory?.length, 1, 'the LLM sees the trajectory so far');
  assert.deepEqual(calls[0]?.tools, [{ name: 'weather', description: 'Weather for a city' }, { name: 'flaky' }]);
  assert.deepEqual(events, ['react.iteration_complete:1', 'react.iteration_complete:2', 'react.iteration_complete:3', 'react.iteration_complete:4']);

  await flush();
  await r.waitForSpans(1 + 4 + 4 + 3);
  const spans = r.spans();
  assertTreeComplete(spans);
  assert.deepEqual(r.invalid, []);
  const root = r.span('ReAct.forward');
  assert.equal(root.parentSpanId, undefined);
  assert.equal(attr(root, 'dspy.observation.type'), 'agent');
  assert.equal(attr(root, 'dspy.module'), 'ReAct');
  assert.equal(attr(root, 'dspy.signature'), 'QuestionToAnswer');
  assert.equal(attr(root, 'dspy.trace.name'), 'weather');
  assert.deepEqual(JSON.parse(attr(root, 'dspy.input') as string), { question: 'Weather in Paris?' });
  assert.deepEqual(JSON.parse(attr(root, 'dspy.output') as string), { answer: 'Sunny, 21°C' });
  const iterations = children(root);
  assert.deepEqual(iterations.map((s) => s.name), ['react.iteration', 'react.iteration', 'react.iteration', 'react.iteration']);
  for (const [i, it] of iterations.sort((a, b) => Number(attr(a, 'react.iteration')) - Number(attr(b, 'react.iteration'))).entries()) {
    assert.equal(attr(it, 'dspy.observation.type'), 'agent');
    assert.equal(attr(it, 'react.iteration'), i + 1);
    const kids = children(it);
    const gen = kids.find((s) => s.name === 'llm.generate') as SpanRecord;
    assert.equal(attr(gen, 'dspy.observation.type'), 'generation');
    assert.equal(attr(gen, 'gen_ai.request.model'), 'gpt-4o-mini');
    assert.equal(attr(gen, 'gen_ai.usage.total_tokens'), 120);
    assert.equal(typeof attr(gen, 'gen_ai.usage.cost'), 'number');
    const tool = kids.find((s) => s.name === 'react.tool_call');
    if (i < 3) {
      assert.equal(attr(tool as SpanRecord, 'dspy.observation.type'), 'tool');
      assert.ok(BigInt(gen.endTimeUnixNano) <= BigInt((tool as SpanRecord).startTimeUnixNano), 'think, then act');
    } else assert.equal(tool, undefined, 'finish: no tool call');
    assert.equal(it.events?.filter((e) => e.name === 'react.iteration_complete').length, 1);
  }
  const toolSpans = spans.filter((s) => s.name === 'react.tool_call');
  assert.deepEqual(toolSpans.map((s) => attr(s, 'tool.name')), ['weather', 'teleport', 'flaky']);
  assert.equal(toolSpans[0]?.attributes?.['tool.input'], '{"city":"Paris"}');
  assert.equal(toolSpans[1]?.attributes?.['dspy.level'], 'WARNING');
  assert.deepEqual(toolSpans[2]?.status, { code: 'error', message: 'tool exploded' });
  assert.equal(root.status, undefined, 'a failing tool does not fail the run');
});

test('ReAct that runs out of iterations emits react.max_iterations', async () => {
  const agent = react('Loop', { llm: () => ({ output: { thought: 't', action: 'weather', action_input: { city: 'X' } } }), tools, maxIterations: 2 });
  const result = await agent({ q: 1 });
  assert.equal(result.finished, false);
  assert.equal(result.iterations, 2);
  await flush();
  await r.waitForSpans(1 + 2 * 3);
  assert.ok(r.span('ReAct.forward').events?.some((e) => e.name === 'react.max_iterations'));
  assert.equal(attr(r.span('ReAct.forward'), 'dspy.level'), 'WARNING');
});

test('a TokenBudget subscriber stops a ReAct run mid-way', async () => {
  const calls: LMRequest[] = [];
  const budget = new TokenBudget(250).start();
  const agent = react('QuestionToAnswer', { llm: weatherLLM(calls), tools, maxIterations: 6 });
  try {
    await assert.rejects(agent({ question: 'Weather in Paris?' }), (e) => e instanceof BudgetExceededError && e.used === 360);
  } finally {
    budget.stop();
  }
  assert.equal(calls.length, 3, 'the third LLM call crossed the budget; no fourth call');
  await flush();
  await r.waitFor(() => r.spans().some((s) => s.name === 'ReAct.forward'));
  const root = r.span('ReAct.forward');
  assert.equal(root.status?.code, 'error');
  assert.match(String(root.status?.message), /token budget exceeded/);
  const gens = r.spans().filter((s) => s.name === 'llm.generate');
  assert.equal(gens.length, 3, 'every LLM call, the last one included, is recorded');
  assert.equal(r.spans().filter((s) => s.name === 'react.tool_call').length, 2, 'the run stopped before acting on the third answer');
});

test('ChainOfThought: chain span with chain_of_thought.reasoning_complete; Predict: span', async () => {
  const cot = chainOfThought('MathQA', { llm: () => ({ output: { reasoning: 'Two plus two.\nIs four.', answer: '4' }, usage: { input: 10, output: 5 }, model: 'claude-haiku-4-5' }) });
  const reasoning: unknown[] = [];
  const off = subscribe('chain_of_thought.*', (_n, a) => reasoning.push(a['cot.reasoning_steps']));
  assert.deepEqual(await cot({ question: '2+2?' }), { reasoning: 'Two plus two.\nIs four.', answer: '4' });
  off();
  assert.deepEqual(reasoning, [2]);
  const p = predict('Classify', { llm: async () => ({ output: { label: 'spam' } }) });
  assert.deepEqual(await p({ text: 'buy now' }), { label: 'spam' });
  await flush();
  await r.waitForSpans(4);
  const c = r.span('ChainOfThought.forward');
  assert.equal(attr(c, 'dspy.observation.type'), 'chain');
  assert.equal(attr(c, 'dspy.module'), 'ChainOfThought');
  const ev = c.events?.find((e) => e.name === 'chain_of_thought.reasoning_complete');
  assert.equal(ev?.attributes?.['dspy.signature'], 'MathQA');
  assert.equal(ev?.attributes?.['cot.reasoning_length'], 'Two plus two.\nIs four.'.length);
  const cg = children(c)[0] as SpanRecord;
  assert.equal(cg.name, 'llm.generate');
  assert.equal(attr(cg, 'gen_ai.request.model'), 'claude-haiku-4-5');
  const pr = r.span('Predict.forward');
  assert.equal(attr(pr, 'dspy.observation.type'), 'span');
  assert.equal(children(pr)[0]?.name, 'llm.generate');
});

test('an answer whose model, provider or usage getter throws still gives its output: telemetry never fails the run', async () => {
  const answer = {
    output: { label: 'ham' },
    get model(): string {
      throw new Error('model getter');
    },
  };
  const p = predict('Classify', { llm: () => answer });
  assert.deepEqual(await p({ text: 'hello' }), { label: 'ham' });
  await flush();
  await r.waitForSpans(2);
  assert.deepEqual(r.invalid, []);
});

test('CodeAct: DSPy.rb\'s tree: CodeAct.forward → codeact.iteration → llm.generate and codeact.code_execution; codeact.iteration_complete per step', async () => {
  const agent = codeAct('Compute', {
    llm: (req) =>
      req.iteration === 1
        ? { output: { thought: 'compute', code: '6 * 7' } }
        : req.iteration === 2
          ? { output: { thought: 'break', code: 'throw' } }
          : { output: { finish: true, answer: req.trajectory?.[0]?.observation } },
    execute: (code) => {
      if (code === 'throw') throw new Error('syntax error');
      return 42;
    },
  });
  const result = await agent({ task: '6*7' });
  assert.deepEqual(result.output, { answer: 42 });
  assert.equal(result.trajectory[1]?.error, 'syntax error');
  await flush();
  await r.waitForSpans(1 + 3 + 3 + 2);
  const root = r.span('CodeAct.forward');
  assert.equal(attr(root, 'dspy.observation.type'), 'agent');
  const iterations = children(root);
  assert.deepEqual(iterations.map((s) => [s.name, attr(s, 'codeact.iteration'), attr(s, 'dspy.observation.type')]), [
    ['codeact.iteration', 1, 'agent'], ['codeact.iteration', 2, 'agent'], ['codeact.iteration', 3, 'agent'],
  ]);
  const execs = iterations.flatMap((it) => children(it).filter((s) => s.name === 'codeact.code_execution'));
  assert.equal(execs.length, 2);
  assert.equal(attr(execs[0] as SpanRecord, 'dspy.input'), '"6 * 7"');
  assert.equal(attr(execs[0] as SpanRecord, 'dspy.output'), '42');
  assert.equal(execs[1]?.status?.code, 'error');
  for (const it of iterations) {
    assert.equal(children(it).filter((s) => s.name === 'llm.generate').length, 1);
    assert.equal(it.events?.filter((e) => e.name === 'codeact.iteration_complete').length, 1);
  }
  assertTreeComplete(r.spans());
});

test('ReAct: a budget exceeded in a tool stops the run (no further paid call); Finish/Weather match finish/weather; a finish answer in action_input is the output', async () => {
  const calls: LMRequest[] = [];
  const budget = new TokenBudget(500).start();
  const off = () => budget.stop();
  try {
    const inner = predict('Inner', { llm: () => ({ output: { answer: 'x' }, usage: { input: 1000, output: 2 }, model: 'gpt-4o-mini' }) });
    const agent = react('Q', {
      llm: (req) => (calls.push(req), { output: { thought: 't', action: 'Lookup', action_input: 'x' }, usage: { input: 10, output: 2 }, model: 'gpt-4o-mini' }),
      tools: [{ name: 'lookup', run: (q: unknown) => inner({ q }) }],
    });
    await assert.rejects(agent({ question: 'q' }), BudgetExceededError);
    assert.equal(calls.length, 1, 'the budget error was no observation for one more call');
  } finally {
    off();
  }
  await flush();
  await r.waitFor(() => r.spans().some((s) => s.name === 'react.tool_call'), 15_000, 'the tool call');
  const toolCall = r.spans().find((s) => s.name === 'react.tool_call');
  assert.equal(attr(toolCall!, 'tool.name'), 'lookup', 'recorded as matched, as DSPy.rb does');
  assert.equal(toolCall!.status?.code, 'error');

  const finish = react('Q', { llm: () => ({ output: { thought: 'done', action: 'Finish', action_input: 'Sunny in Paris' } }), tools: [] });
  const result = await finish({ question: 'Weather?' });
  assert.deepEqual(result.output, { answer: 'Sunny in Paris' });
  assert.equal(result.finished, true);
  assert.equal(result.trajectory.at(-1)?.actionInput, 'Sunny in Paris');
});

test('maxIterations that is not a whole number from 1 uses the default (NaN ran no iteration); CodeAct says when it ran out, as DSPy.rb', async () => {
  const looping = codeAct('Q', { llm: () => ({ output: { thought: 't', code: '1+1' } }), execute: () => 2, maxIterations: Number.NaN });
  const names: string[] = [];
  const off = subscribe('codeact.*', (name) => names.push(name));
  try {
    const res = await looping({ q: 1 });
    assert.equal(res.iterations, 5);
    assert.equal(res.finished, false);
  } finally {
    off();
  }
  assert.equal(names.filter((n) => n === 'codeact.max_iterations').length, 1);
  await flush();
  await r.waitFor(() => r.spans().some((s) => s.name === 'codeact.code_execution'), 15_000, 'a code execution');
  const exec = r.spans().find((s) => s.name === 'codeact.code_execution');
  assert.equal(attr(exec!, 'code.length'), 3);
  // A tool that throws something with no text (a null-prototype object) is an observation, not the end of the run.
  const odd = react('Q', {
    llm: (req) => ({ output: req.iteration === 1 ? { action: 'bad', action_input: 1 } : { action: 'finish', answer: 'ok' } }),
    tools: [{ name: 'bad', run: () => { throw Object.create(null); } }],
  });
  const res = await odd({ q: 1 });
  assert.equal(res.finished, true);
  assert.match(String(res.trajectory[0]?.observation), /^Error: /);
});

test('captureIO: false and mask also cover the step contents modules put in events and tool.input (subscribers still get them as they are)', async () => {
  // The spans of this test's own trace (a previous test's may still be arriving).
  let traceId = '';
  const mine = (): SpanRecord[] => r.spans().filter((s) => s.traceId === traceId);
  const named = (name: string): SpanRecord => mine().find((s) => s.name === name) as SpanRecord;
  const runAll = async (): Promise<unknown[]> => {
    const heard: unknown[] = [];
    const off = subscribe('*', (name, a) => {
      if (name === 'react.iteration_complete' && a.observation !== undefined) heard.push(a.observation);
    });
    try {
      await withTrace({ name: 'io' }, async (trace) => {
        traceId = trace.traceId;
        const agent = react('Q', {
          llm: (req) => ({ output: req.iteration === 1 ? { thought: 'THOUGHT-SECRET', action: 'lookup', action_input: { ssn: 'INPUT-SECRET' } } : { thought: 'DONE-SECRET', action: 'finish', answer: 'a' } }),
          tools: [{ name: 'lookup', run: () => ({ record: 'OBS-SECRET' }) }],
        });
        await agent({ q: 1 });
        await chainOfThought('C', { llm: () => ({ output: { reasoning: 'REASON-SECRET', answer: 'x' } }) })({ q: 1 });
        await codeAct('K', { llm: (req) => ({ output: req.iteration === 1 ? { thought: 'CT-SECRET', code: 'CODE-SECRET' } : { finish: true } }), execute: () => 'EXEC-SECRET' })({ q: 1 });
      });
    } finally {
      off();
    }
    await flush();
    // ReAct: root, 2 iterations, 2 generations, a tool call; CoT: 2; CodeAct: as ReAct.
    await r.waitFor(() => mine().length >= 6 + 2 + 6, 15_000, 'the spans of the three modules');
    assert.deepEqual(r.invalid, []);
    return heard;
  };
  try {
    configure({ captureIO: false });
    const heard = await runAll();
    assert.deepEqual(heard, [{ record: 'OBS-SECRET' }], 'subscribers are in-process: they get the values as given');
    assert.deepEqual(r.lines.filter((l) => l.includes('SECRET')), [], 'nothing of a step\'s input or output leaves');
    const tool = named('react.tool_call');
    assert.equal(attr(tool, 'tool.name'), 'lookup', 'structure is kept');
    assert.equal(attr(tool, 'tool.input'), undefined);
    const it1 = mine().find((s) => s.name === 'react.iteration' && attr(s, 'react.iteration') === 1);
    assert.deepEqual(it1?.events?.find((e) => e.name === 'react.iteration_complete')?.attributes, { iteration: 1, action: 'lookup' });

    r.reset();
    configure({ captureIO: true, mask: (v) => (typeof v === 'string' || typeof v === 'object' ? '[redacted]' : v) });
    await runAll();
    assert.deepEqual(r.lines.filter((l) => l.includes('SECRET')), [], 'every value went through mask');
    assert.equal(attr(named('react.tool_call'), 'tool.input'), '[redacted]');
    const ev = named('ChainOfThought.forward').events?.find((e) => e.name === 'chain_of_thought.reasoning_complete');
    assert.equal(ev?.attributes?.['cot.reasoning'], '[redacted]');
    assert.equal(ev?.attributes?.['cot.reasoning_length'], 'REASON-SECRET'.length);
  } finally {
    configure({ captureIO: true, mask: undefined });
  }
});

test('ReAct: each LLM call gets its own copy of the tool list: an llm that adds to it (a finish tool) changes no later call, nor a concurrent run', async () => {
  const seen: string[][] = [];
  const agent = react('Q', {
    llm: async (req) => {
      req.tools?.push({ name: 'finish', description: 'answer' });
      for (const t of req.tools ?? []) t.description = `${t.description ?? ''}!`;
      seen.push((req.tools ?? []).map((t) => `${t.name}:${t.description ?? ''}`));
      await new Promise((res) => setImmediate(res));
      return { output: req.iteration === 1 ? { action: 'lookup', action_input: 'x' } : { action: 'finish', answer: 'ok' } };
    },
    tools: [{ name: 'lookup', description: 'find', run: () => 'found' }],
  });
  await Promise.all([agent({ q: 1 }), agent({ q: 2 })]);
  assert.equal(seen.length, 4);
  for (const tools of seen) assert.deepEqual(tools, ['lookup:find!', 'finish:answer!']);
});

test('ReAct and CodeAct: an llm that trims the trajectory\'s steps in place (a prompt budget) changes neither the next call\'s steps nor the result', async () => {
  const trim = (steps: { observation?: unknown }[] | undefined) => {
    for (const step of steps ?? []) step.observation = '(trimmed)';
  };
  const seenReact: unknown[] = [];
  const agent = react('Q', {
    llm: (req) => {
      seenReact.push(req.trajectory?.map((st) => st.observation));
      trim(req.trajectory);
      return { output: (req.iteration ?? 0) < 3 ? { action: 'lookup', action_input: req.iteration } : { action: 'finish', answer: 'ok' } };
    },
    tools: [{ name: 'lookup', run: (x) => `found ${String(x)}` }],
  });
  const r1 = await agent({ q: 1 });
  assert.deepEqual(seenReact, [[], ['found 1'], ['found 1', 'found 2']]);
  assert.deepEqual(r1.trajectory.map((st) => st.observation), ['found 1', 'found 2', undefined], 'the finish step last');

  const seenCode: unknown[] = [];
  const coder = codeAct('Q', {
    llm: (req) => {
      seenCode.push(req.trajectory?.map((st) => st.observation));
      trim(req.trajectory);
      return { output: (req.iteration ?? 0) < 3 ? { thought: 't', code: `${req.iteration}` } : { finish: true, answer: 'ok' } };
    },
    execute: (code) => `ran ${code}`,
  });
  const r2 = await coder({ q: 1 });
  assert.deepEqual(seenCode, [[], ['ran 1'], ['ran 1', 'ran 2']]);
  assert.deepEqual(r2.trajectory.map((st) => st.observation), ['ran 1', 'ran 2', undefined], 'the finish step last');
});

test('ChainOfThought: chain_of_thought.reasoning_complete says whether there was reasoning (cot.has_reasoning, as DSPy.rb\'s)', async () => {
  const heard: unknown[] = [];
  const off = subscribe('chain_of_thought.reasoning_complete', (_n, a) => heard.push(a['cot.has_reasoning']));
  try {
    await chainOfThought('With', { llm: () => ({ output: { reasoning: 'Because.', answer: 'a' } }) })({ q: 1 });
    await chainOfThought('Without', { llm: () => ({ output: { answer: 'a' } }) })({ q: 1 });
  } finally {
    off();
  }
  assert.deepEqual(heard, [true, false]);
  await flush();
  await r.waitFor(() => r.spans().filter((s) => s.name === 'ChainOfThought.forward').length === 2, 15_000, 'both runs');
  const recorded = (signature: string): unknown =>
    r.spans().find((s) => s.name === 'ChainOfThought.forward' && attr(s, 'dspy.signature') === signature)?.events?.find((e) => e.name === 'chain_of_thought.reasoning_complete')?.attributes?.['cot.has_reasoning'];
  assert.equal(recorded('With'), true);
  assert.equal(recorded('Without'), false);
});

test('ReAct: a tool is recorded by the name it was given (GetWeather, not getweather), matched whatever the model\'s case; an unknown one as the model wrote it', async () => {
  const answers = [
    { thought: 't', action: 'getweather', action_input: { city: 'Paris' } },
    { thought: 't', action: 'Teleport', action_input: {} },
    { thought: 'done', action: 'finish', answer: 'sunny' },
  ];
  let i = 0;
  const agent = react('Q', {
    llm: () => ({ output: answers[i++] ?? {} }),
    tools: [{ name: 'GetWeather', run: () => 'sunny' }],
  });
  const result = await agent({ question: 'Weather?' });
  assert.deepEqual(result.trajectory.map((s) => [s.action, s.observation ?? null]), [['GetWeather', 'sunny'], ['Teleport', 'Unknown tool: Teleport'], ['finish', null]]);
  await flush();
  await r.waitFor(() => r.spans().filter((s) => s.name === 'react.tool_call').length === 2, 15_000, 'the tool calls');
  const names = r.spans().filter((s) => s.name === 'react.tool_call').map((s) => attr(s, 'tool.name'));
  assert.deepEqual(names.sort(), ['GetWeather', 'Teleport']);
});
