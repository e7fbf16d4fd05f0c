import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { keepTrace, newSpanId, newTraceId, type WireRecord } from '@dspy-o11y/proto';
import {
  TokenBudget,
  configure,
  event,
  flush,
  generation,
  injectTraceparent,
  score,
  sdkStats,
  span,
  startGeneration,
  startSpan,
  subscribe,
  withActiveSpan,
  withTrace,
  type EventContext,
} from '../src/index.js';
import { resolveConfig } from '../src/config.js';
import { UnixReceiver, assertTreeComplete } from './support/receiver.js';

let r: UnixReceiver;
let marks = 0;

before(async () => {
  r = await UnixReceiver.create();
  configure({ endpoint: r.endpoint, serviceName: 'sampling-test', sampleRatio: 0.5 });
});
after(async () => {
  await flush();
  await r.dispose();
});
beforeEach(async () => {
  configure({ sampleRatio: 0.5 });
  await flush();
  r.reset();
});

/**
 * Everything sent so far has arrived: a marker span, in a trace that is always kept, follows it on
 * the same connection and is awaited. Returns what arrived before the marker.
 */
async function arrived(): Promise<WireRecord[]> {
  const mark = `mark-${++marks}`;
  configure({ sampleRatio: 1 });
  span(mark, () => undefined);
  configure({ sampleRatio: 0.5 });
  assert.equal(await flush(), true);
  await r.waitFor(() => r.spans().some((s) => s.name === mark), 15_000, mark);
  assert.deepEqual(r.invalid, [], 'every line valid');
  return r.records.filter((x) => x.type !== 'hello' && !(x.type === 'span' && x.name === mark));
}

const traceOf = (x: WireRecord): string | undefined => ('traceId' in x ? x.traceId : undefined);

/** A trace id that ratio 0.5 keeps (or drops). */
function traceIdWhere(kept: boolean): string {
  for (;;) {
    const id = newTraceId();
    if (keepTrace(id, 0.5) === kept) return id;
  }
}

test('ratio 0.5 over 400 traces: exactly the traces keepTrace(id, 0.5) keeps arrive, each complete; the others send nothing', async () => {
  const N = 400;
  // Per trace: 4 spans (root, step, llm.generate, an imperative child), 1 event record, 2 scores.
  const SPANS = 4;
  const PER_TRACE = SPANS + 1 + 2;
  const generations: EventContext[] = [];
  const reasoning: EventContext[] = [];
  const offGen = subscribe('llm.generate', (_n, a, ctx) => {
    assert.equal(a['gen_ai.usage.input_tokens'], 10, 'usage reaches subscribers of every trace');
    generations.push(ctx);
  });
  const offEv = subscribe('*.reasoning_complete', (_n, _a, ctx) => reasoning.push(ctx));
  const before = sdkStats();
  const ids: string[] = [];
  const request = (i: number): Promise<string> => {
    const body = (traceId: string) =>
      span('step', { input: { i } }, async (s) => {
        const out = await generation('llm.generate', { model: 'gpt-4o-mini', input: [{ role: 'user', content: `q${i}` }] }, async (g) => {
          await Promise.resolve();
          g.setUsage({ input: 10, output: 5 });
          g.setOutput(`a${i}`);
          return `a${i}`;
        });
        const child = startSpan('imperative');
        withActiveSpan(child, () => event('chain_of_thought.reasoning_complete', { i }));
        child.end();
        s.event('step.done', { i });
        s.score('quality', i % 3);
        score({ name: 'trace-ok', value: true, traceId });
        s.setOutput(out);
        return out;
      });
    // Half the traces start at withTrace, half at a root span: both decide for their children.
    if (i % 2 === 0) {
      return withTrace({ name: `req-${i}`, sessionId: `s-${i % 5}` }, (t) => {
        ids[i] = t.traceId;
        return span('root', () => body(t.traceId));
      });
    }
    return span('root', (root) => {
      ids[i] = root.traceId;
      return body(root.traceId);
    });
  };
  const results = await Promise.all(Array.from({ length: N }, (_, i) => request(i)));
  results.forEach((a, i) => assert.equal(a, `a${i}`, 'callbacks run and return in every trace'));
  offGen();
  offEv();

  const records = await arrived();
  const kept = new Set(ids.filter((id) => keepTrace(id, 0.5)));
  assert.equal(new Set(ids).size, N);
  assert.ok(kept.size > 0 && kept.size < N, `both kept and dropped traces (kept ${kept.size})`);
  const byTrace = new Map<string, WireRecord[]>();
  for (const x of records) {
    const id = traceOf(x);
    assert.ok(id, `a record of a trace: ${x.type}`);
    byTrace.set(id, [...(byTrace.get(id) ?? []), x]);
  }
  assert.deepEqual([...byTrace.keys()].sort(), [...kept].sort(), 'exactly the kept traces arrive');
  for (const [id, list] of byTrace) {
    const spans = list.filter((x) => x.type === 'span');
    assert.deepEqual(spans.map((s) => s.name).sort(), ['imperative', 'llm.generate', 'root', 'step'], `trace ${id} complete`);
    assertTreeComplete(spans);
    assert.equal(spans.filter((s) => s.parentSpanId === undefined).length, 1, 'one root');
    assert.equal(list.filter((x) => x.type === 'event').length, 1);
    const scores = list.filter((x) => x.type === 'score');
    assert.deepEqual(scores.map((s) => s.name).sort(), ['quality', 'trace-ok']);
    const step = spans.find((s) => s.name === 'step');
    assert.equal(step?.events?.[0]?.name, 'step.done');
    assert.ok(step?.attributes?.['dspy.input'], 'kept traces keep their input/output');
  }
  const after = sdkStats();
  const dropped = N - kept.size;
  assert.equal(after.sampledOut - before.sampledOut, dropped * PER_TRACE, 'every skipped record counted');
  assert.equal(after.enqueued - before.enqueued, kept.size * PER_TRACE + 1, 'sampled-out records are never enqueued (+1: the marker)');

  // Subscribers heard every generation and event, sampled out or not, with the trace's ids.
  assert.equal(generations.length, N);
  assert.equal(reasoning.length, N);
  assert.deepEqual(new Set(generations.map((c) => c.traceId)), new Set(ids));
  for (const c of generations) assert.match(c.spanId ?? '', /^[0-9a-f]{16}$/);
});

test('a token budget keeps working in sampled-out traces', async () => {
  const dropped = traceIdWhere(false);
  // Per trace: the subscriber is told the (sampled-out) trace's id.
  const budget = new TokenBudget(25, { traceId: dropped }).start();
  const before = sdkStats();
  await assert.rejects(
    withTrace({ traceId: dropped }, async () => {
      for (let i = 0; i < 10; i++) {
        await generation('llm.generate', { model: 'gpt-4o-mini' }, async (g) => g.setUsage({ input: 5, output: 5 }));
      }
    }),
    (e: Error) => e.name === 'BudgetExceededError',
  );
  budget.stop();
  assert.equal(budget.used, 30);
  assert.deepEqual(await arrived(), []);
  assert.equal(sdkStats().sampledOut - before.sampledOut, 3);
});

test('imperative roots, standalone events and explicit-trace scores are decided by their trace id', async () => {
  const keptId = traceIdWhere(true);
  const droppedId = traceIdWhere(false);
  const roots = Array.from({ length: 40 }, (_, i) => (i % 2 ? startSpan(`root-${i}`) : startGeneration(`gen-${i}`, { model: 'gpt-4o-mini' })));
  const kids = roots.map((p) => startSpan('kid', { parent: p }));
  roots.forEach((p, i) => {
    assert.equal(p.sampled, keepTrace(p.traceId, 0.5), 'SpanHandle.sampled tells');
    assert.equal(kids[i]?.sampled, p.sampled, 'children inherit');
  });
  for (const k of kids) k.end();
  for (const p of roots) p.end();
  const events: string[] = [];
  for (let i = 0; i < 40; i++) event(`standalone-${i}`);
  score({ name: 'kept', value: 1, traceId: keptId });
  score({ name: 'dropped', value: 1, traceId: droppedId, observationId: newSpanId() });
  score({ name: 'session-only', value: 1, sessionId: 'sess' });
  const records = await arrived();
  const wanted = new Set(roots.filter((p) => keepTrace(p.traceId, 0.5)).map((p) => p.traceId));
  const spans = records.filter((x) => x.type === 'span');
  assert.deepEqual(new Set(spans.map((s) => s.traceId)), wanted);
  assert.equal(spans.length, wanted.size * 2, 'root and child together, or neither');
  for (const x of records.filter((x) => x.type === 'event')) {
    assert.equal(keepTrace(x.traceId, 0.5), true);
    events.push(x.name);
  }
  assert.ok(events.length > 0 && events.length < 40, `some standalone events kept (${events.length})`);
  assert.deepEqual(
    records.filter((x) => x.type === 'score').map((s) => s.name),
    ['kept', 'session-only'],
  );
});

test('a remote traceparent: the decision is keepTrace(traceId) whatever its sampled flag; propagation carries it', async () => {
  const keptId = traceIdWhere(true);
  const droppedId = traceIdWhere(false);
  const parent = newSpanId();
  let outKept: string | undefined;
  let outDropped: string | undefined;
  withTrace({ traceparent: `00-${keptId}-${parent}-00` }, () => span('kept-despite-flag', () => (outKept = injectTraceparent())));
  withTrace({ traceparent: `00-${droppedId}-${parent}-01` }, () => span('dropped-despite-flag', () => (outDropped = injectTraceparent())));
  span('child-of-remote-kept', { parent: { traceId: keptId, spanId: parent, sampled: false } }, () => undefined);
  span('child-of-remote-dropped', { parent: { traceId: droppedId, spanId: parent, sampled: true } }, () => undefined);
  const records = await arrived();
  assert.deepEqual(
    records.filter((x) => x.type === 'span').map((s) => s.name),
    ['kept-despite-flag', 'child-of-remote-kept'],
  );
  assert.match(outKept ?? '', new RegExp(`^00-${keptId}-[0-9a-f]{16}-01$`));
  assert.match(outDropped ?? '', new RegExp(`^00-${droppedId}-[0-9a-f]{16}-00$`), 'downstream tracers see "not sampled"');
});

test('a trace keeps its decision when the ratio changes mid-trace', async () => {
  const droppedId = traceIdWhere(false);
  const keptId = traceIdWhere(true);
  await withTrace({ traceId: droppedId }, async () => {
    configure({ sampleRatio: 1 });
    span('late-child', () => undefined);
  });
  configure({ sampleRatio: 0 });
  await withTrace({ traceId: keptId }, async () => {
    configure({ sampleRatio: 0.5 });
    span('kept-child', () => undefined);
  });
  const records = await arrived();
  assert.deepEqual(
    records.map((x) => (x.type === 'span' ? x.name : x.type)),
    [],
    'ratio 0 when the second trace started: dropped; ratio 0.5 at the first: dropped',
  );
  r.reset();
  configure({ sampleRatio: 0 });
  span('never', () => event('never'));
  configure({ sampleRatio: 1 });
  span('always', () => undefined);
  const again = await arrived();
  assert.deepEqual(
    again.map((x) => (x.type === 'span' ? x.name : x.type)),
    ['always'],
  );
});

test('sampleRatio: option, then DSPY_O11Y_SAMPLE_RATIO, default 1; invalid values keep the default', () => {
  assert.equal(resolveConfig({}, {}).sampleRatio, 1);
  assert.equal(resolveConfig({}, { DSPY_O11Y_SAMPLE_RATIO: '0.25' }).sampleRatio, 0.25);
  assert.equal(resolveConfig({}, { DSPY_O11Y_SAMPLE_RATIO: '0' }).sampleRatio, 0);
  assert.equal(resolveConfig({ sampleRatio: 0.75 }, { DSPY_O11Y_SAMPLE_RATIO: '0.25' }).sampleRatio, 0.75);
  for (const bad of ['abc', '1.5', '-0.1', 'NaN']) assert.equal(resolveConfig({}, { DSPY_O11Y_SAMPLE_RATIO: bad }).sampleRatio, 1, bad);
  assert.equal(resolveConfig({ sampleRatio: 2 }, {}).sampleRatio, 1);
  assert.equal(resolveConfig({ sampleRatio: Number.NaN }, {}).sampleRatio, 1);
  // Langfuse's variable, when ours is not set.
  assert.equal(resolveConfig({}, { LANGFUSE_SAMPLE_RATE: '0.1' }).sampleRatio, 0.1);
  assert.equal(resolveConfig({}, { LANGFUSE_SAMPLE_RATE: '0.1', DSPY_O11Y_SAMPLE_RATIO: '0.3' }).sampleRatio, 0.3);
  assert.equal(resolveConfig({}, { LANGFUSE_SAMPLE_RATE: 'lots' }).sampleRatio, 1);
});
