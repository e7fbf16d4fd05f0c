import { test } from 'node:test';
import assert from 'node:assert/strict';
import { newSpanId, newTraceId, parseLine, type ScoreRecord } from '@dspy-o11y/proto';
import { configure, flush, score, sdkStats, span, startSpan, withTrace, type ScoreOptions } from '../src/index.js';
import { UnixReceiver, useReceiver } from './support/receiver.js';

let r: UnixReceiver;
let marks = 0;

useReceiver({ serviceName: 'score-test' }, (x) => (r = x));

/**
 * Everything sent so far has arrived: a marker span is sent after it on the same connection and
 * awaited. Returns the scores that arrived, each checked again with the protocol's `parseLine`.
 */
async function arrived(): Promise<ScoreRecord[]> {
  const mark = `mark-${++marks}`;
  span(mark, () => undefined);
  assert.equal(await flush(), true);
  await r.waitFor(() => r.spans().some((s) => s.name === mark), 15_000, mark);
  assert.deepEqual(r.invalid, [], 'every line valid');
  const scores = r.scores();
  for (const s of scores) {
    const again = parseLine(JSON.stringify(s));
    assert.ok(again.ok && again.record.type === 'score', 'a valid score record');
  }
  return scores;
}

const one = (scores: ScoreRecord[], name: string): ScoreRecord => {
  const found = scores.filter((s) => s.name === name);
  assert.equal(found.length, 1, `one score ${name}; have ${scores.map((s) => s.name).join(', ')}`);
  return found[0] as ScoreRecord;
};

test('inside a span: the active trace and span; inside withTrace outside any span: the trace only', async () => {
  let inSpan: { traceId: string; spanId: string } | undefined;
  let traceOnly: string | undefined;
  await withTrace({ name: 'order', sessionId: 'sess-1' }, async (t) => {
    traceOnly = t.traceId;
    score({ name: 'trace-level', value: 0.5 });
    await span('ChainOfThought.forward', async (s) => {
      inSpan = { traceId: s.traceId, spanId: s.spanId };
      score({ name: 'helpfulness', value: 0.9, comment: 'judge: concise' });
    });
  });
  const scores = await arrived();
  assert.equal(scores.length, 2);
  const h = one(scores, 'helpfulness');
  assert.equal(h.traceId, inSpan?.traceId);
  assert.equal(h.observationId, inSpan?.spanId);
  assert.equal(h.value, 0.9);
  assert.equal(h.dataType, 'NUMERIC');
  assert.equal(h.comment, 'judge: concise');
  assert.equal(h.sessionId, undefined, 'a trace score; the trace carries the session');
  assert.match(h.timeUnixNano ?? '', /^[1-9][0-9]{18}$/);
  const t = one(scores, 'trace-level');
  assert.equal(t.traceId, traceOnly);
  assert.equal(t.observationId, undefined);
  assert.equal(t.traceId, inSpan?.traceId);
});

test('inside a withTrace that runs inside a span: still inside that span, which is scored (as getActiveSpan() answers it)', async () => {
  let outer: { traceId: string; spanId: string } | undefined;
  await span('handler', async (s) => {
    outer = { traceId: s.traceId, spanId: s.spanId };
    await withTrace({ userId: 'u1' }, () => score({ name: 'in-trace-in-span', value: 1 }));
  });
  const sc = one(await arrived(), 'in-trace-in-span');
  assert.deepEqual(pick(sc), { traceId: outer?.traceId, observationId: outer?.spanId, sessionId: undefined });
});

test('explicit targets win over the active span; a sessionId alone scores the session', async () => {
  const otherTrace = newTraceId();
  const otherSpan = newSpanId();
  let active: { traceId: string; spanId: string } | undefined;
  span('active', (s) => {
    active = { traceId: s.traceId, spanId: s.spanId };
    score({ name: 'explicit-trace', value: 1, traceId: otherTrace });
    score({ name: 'explicit-observation', value: 2, traceId: otherTrace, observationId: otherSpan });
    score({ name: 'observation-in-active-trace', value: 3, observationId: otherSpan });
    score({ name: 'session', value: 'good', sessionId: 'sess-9' });
  });
  score({ name: 'outside', value: true, traceId: otherTrace.toUpperCase(), id: 'my-id-1' });
  score({ name: 'session-outside', value: false, sessionId: 'sess-9' });
  score({ name: 'longest-id', value: 1, traceId: otherTrace, id: `a\nb${'i'.repeat(797)}` });
  const scores = await arrived();
  assert.equal(scores.length, 7);
  assert.equal(one(scores, 'longest-id').id?.length, 800, 'an id of 800 characters (a line feed is allowed) is sent');
  assert.deepEqual(pick(one(scores, 'explicit-trace')), { traceId: otherTrace, observationId: undefined, sessionId: undefined });
  assert.deepEqual(pick(one(scores, 'explicit-observation')), { traceId: otherTrace, observationId: otherSpan, sessionId: undefined });
  assert.deepEqual(pick(one(scores, 'observation-in-active-trace')), { traceId: active?.traceId, observationId: otherSpan, sessionId: undefined });
  assert.deepEqual(pick(one(scores, 'session')), { traceId: undefined, observationId: undefined, sessionId: 'sess-9' });
  assert.equal(one(scores, 'session').dataType, 'CATEGORICAL');
  const outside = one(scores, 'outside');
  assert.deepEqual(pick(outside), { traceId: otherTrace, observationId: undefined, sessionId: undefined }, 'trace id lowercased');
  assert.equal(outside.id, 'my-id-1');
  assert.equal(outside.value, true);
  assert.equal(outside.dataType, 'BOOLEAN');
  assert.deepEqual(pick(one(scores, 'session-outside')), { traceId: undefined, observationId: undefined, sessionId: 'sess-9' });
});

const pick = (s: ScoreRecord) => ({ traceId: s.traceId, observationId: s.observationId, sessionId: s.sessionId });

test('SpanHandle.score scores the span itself, also after it ended; dataType inferred or given', async () => {
  let ids: { traceId: string; spanId: string } | undefined;
  const handle = span('llm.judge', (s) => {
    ids = { traceId: s.traceId, spanId: s.spanId };
    assert.equal(s.score('numeric', 0.25), s, 'chainable');
    s.score('categorical', 'correct', { comment: 'exact match' });
    return s;
  });
  handle.score('boolean', true).score('boolean-01', 1, { dataType: 'BOOLEAN', id: 'fixed-id' });
  const s = startSpan('imperative');
  s.score('numeric-imperative', -3);
  s.end();
  const scores = await arrived();
  assert.equal(scores.length, 5);
  for (const name of ['numeric', 'categorical', 'boolean', 'boolean-01']) {
    assert.deepEqual(pick(one(scores, name)), { traceId: ids?.traceId, observationId: ids?.spanId, sessionId: undefined });
  }
  assert.equal(one(scores, 'numeric').dataType, 'NUMERIC');
  assert.equal(one(scores, 'categorical').dataType, 'CATEGORICAL');
  assert.equal(one(scores, 'categorical').comment, 'exact match');
  assert.equal(one(scores, 'boolean').dataType, 'BOOLEAN');
  const b01 = one(scores, 'boolean-01');
  assert.equal(b01.value, 1);
  assert.equal(b01.dataType, 'BOOLEAN');
  assert.equal(b01.id, 'fixed-id');
  assert.deepEqual(pick(one(scores, 'numeric-imperative')), { traceId: s.traceId, observationId: s.spanId, sessionId: undefined });
});

test('bad input never throws: counted as rejected and dropped, nothing sent', async () => {
  const before = sdkStats();
  const bad: unknown[] = [
    { name: '', value: 1 },
    { name: 'nan', value: Number.NaN },
    { name: 'inf', value: Number.POSITIVE_INFINITY },
    { name: 'object', value: { a: 1 } },
    { name: 'missing-value' },
    { name: 'mismatch-1', value: 'x', dataType: 'NUMERIC' },
    { name: 'mismatch-2', value: 2, dataType: 'BOOLEAN' },
    { name: 'mismatch-3', value: 2, dataType: 'CATEGORICAL' },
    { name: 'mismatch-4', value: true, dataType: 'NUMERIC' },
    { name: 'bad-type', value: 1, dataType: 'PERCENT' },
    { name: 'bad-trace', value: 1, traceId: 'not-hex' },
    { name: 'zero-trace', value: 1, traceId: '0'.repeat(32) },
    { name: 'bad-observation', value: 1, traceId: newTraceId(), observationId: 'xyz' },
    { name: 'bad-comment', value: 1, traceId: newTraceId(), comment: 42 },
    { name: 'bad-id', value: 1, traceId: newTraceId(), id: 7 },
    // Langfuse's rule for ids (the daemon's too): at most 800 characters, no carriage return.
    { name: 'long-id', value: 1, traceId: newTraceId(), id: 'i'.repeat(801) },
    { name: 'cr-id', value: 1, traceId: newTraceId(), id: 'a\rb' },
    { name: 'bad-session', value: 1, sessionId: 7 },
  ];
  span('bad-scores', (s) => {
    for (const o of bad) assert.doesNotThrow(() => score(o as ScoreOptions));
    assert.doesNotThrow(() => s.score('', 1));
    assert.doesNotThrow(() => s.score('x', Symbol('no') as unknown as number));
  });
  // No target: outside any span or trace, without a traceId or a sessionId.
  assert.doesNotThrow(() => score({ name: 'orphan', value: 1 }));
  assert.doesNotThrow(() => score({ name: 'orphan-observation', value: 1, observationId: newSpanId() }));
  assert.doesNotThrow(() => score(null as unknown as ScoreOptions));
  assert.doesNotThrow(() => score(undefined as unknown as ScoreOptions));
  const scores = await arrived();
  assert.deepEqual(scores, []);
  const after = sdkStats();
  const invalid = bad.length + 2; // + the span's two
  const noTarget = 4; // orphan, orphan-observation, null, undefined
  assert.equal(after.rejected - before.rejected, invalid + noTarget);
  assert.equal((after.droppedByReason.invalid_score ?? 0) - (before.droppedByReason.invalid_score ?? 0), invalid);
  assert.equal((after.droppedByReason.score_without_target ?? 0) - (before.droppedByReason.score_without_target ?? 0), noTarget);
  assert.equal(after.dropped - before.dropped, invalid + noTarget);
  assert.equal(after.enqueued - before.enqueued, invalid + noTarget + 2, 'produced: the bad scores, the span and the marker');
});

test('a no-op when disabled; scores flow again when re-enabled', async () => {
  configure({ disabled: true });
  const before = sdkStats();
  withTrace({ name: 'off' }, () =>
    span('off', (s) => {
      score({ name: 'off-1', value: 1 });
      score({ name: 'off-bad', value: Number.NaN });
      score({ name: 'off-orphan', value: 1, traceId: newTraceId() });
      s.score('off-2', 1);
    }),
  );
  const count = (x: ReturnType<typeof sdkStats>) => [x.enqueued, x.dropped, x.rejected, x.sampledOut];
  assert.deepEqual(count(sdkStats()), count(before), 'nothing produced, nothing counted');
  configure({ disabled: false });
  span('on', (s) => s.score('on', 1));
  const scores = await arrived();
  assert.deepEqual(
    scores.map((s) => s.name),
    ['on'],
  );
});
