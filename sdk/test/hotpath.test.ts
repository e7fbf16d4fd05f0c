/**
 * The hot path's shortcuts write exactly what the general code writes: the native serializer for
 * plain captured values vs the writer, attribute members vs JSON.stringify, string quoting vs
 * JSON.stringify, the cached cost vs costUsd, the pooled ids vs the W3C format.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MODEL_PRICES, costUsd, type AttributeValue } from '@dspy-o11y/proto';
import { memberList, quote, quoteName, toJson, writeJson } from '../src/json.js';
import { generationCost } from '../src/cost.js';
import { newSpanId, newTraceId } from '../src/ids.js';
import { resolveConfig } from '../src/config.js';

const MAX = 32 * 1024;

function nested(depth: number): unknown {
  let v: unknown = 'leaf';
  for (let i = 0; i < depth; i++) v = i % 2 ? { v } : [v];
  return v;
}

test('plain captured values: the native path writes what the writer writes', () => {
  const sparse: unknown[] = [1];
  sparse[3] = 'x';
  const nullProto = Object.assign(Object.create(null) as object, { a: 1, b: 'two' });
  const values: unknown[] = [
    [],
    {},
    [{ role: 'system', content: 'You are a barista.' }, { role: 'user', content: 'Tea, "please"\n' }],
    { a: 1.5, b: -0, c: NaN, d: Infinity, e: null, f: undefined, g: () => 1, h: Symbol('s'), i: true, j: [undefined, () => 1, Symbol('t'), NaN] },
    { 2: 'two', 1: 'one', b: 'b', a: 'a', '01': 'zero-one' },
    { 'ключ': 'значение', emoji: '😀', lone: '\ud800', sep: '\u2028', ctl: '\u0001\u001f' },
    sparse,
    nullProto,
    nested(31),
    nested(32),
    nested(40),
    { s: 'x'.repeat(MAX) },
    ['y'.repeat(MAX - 4)],
    ['y'.repeat(MAX - 3)],
    Array.from({ length: 100 }, (_, i) => ({ i, s: `item ${i}` })),
  ];
  for (const v of values) assert.equal(toJson(v, MAX), writeJson(v, MAX), JSON.stringify(writeJson(v, 200)));
  for (const v of values) assert.equal(toJson(v, 50), writeJson(v, 50));
});

test('values that are not plain data still get the writer rules', () => {
  const cyclic: Record<string, unknown> = { a: 1 };
  cyclic.self = cyclic;
  class Point {
    constructor(
      readonly x: number,
      readonly y: number,
    ) {}
  }
  const cases: [unknown, string][] = [
    [new Map([['k', 1]]), '{"k":1}'],
    [new Set([1, 2]), '[1,2]'],
    [[1n], '["1"]'],
    [{ n: 2n }, '{"n":"2"}'],
    [new Error('boom'), '{"name":"Error","message":"boom"}'],
    [[new Date(0)], '["1970-01-01T00:00:00.000Z"]'],
    [{ b: Buffer.from('abc') }, '{"b":"[Buffer 3 bytes]"}'],
    [{ toJSON: () => 'custom' }, '"custom"'],
    [cyclic, '{"a":1,"self":"[Circular]"}'],
    [new Point(1, 2), '{"x":1,"y":2}'],
  ];
  for (const [v, want] of cases) {
    assert.equal(toJson(v, MAX), want);
    assert.equal(toJson(v, MAX), writeJson(v, MAX));
  }
  assert.match(toJson(nested(40), MAX)!, /\[MaxDepth\]/);
  // A getter that throws: recorded, not thrown (the native attempt is abandoned).
  const getter = { ok: 1 } as Record<string, unknown>;
  Object.defineProperty(getter, 'bad', { enumerable: true, get: () => { throw new Error('no'); } });
  assert.equal(toJson(getter, MAX), '{"ok":1,"bad":"[getter threw: no]"}');
});

test('quote() and quoteName() are JSON.stringify for strings', () => {
  const strings = ['', 'a', 'gpt-4o-mini', 'with "quotes"', 'back\\slash', 'tab\t', '\u0000', '\u007f', 'é', '😀', '\ud83d', '\ude00x', '\u2028\u2029', 'x'.repeat(64), `${'x'.repeat(63)}"`, 'y'.repeat(65), `${'y'.repeat(70)}\n`];
  for (const s of strings) {
    assert.equal(quote(s), JSON.stringify(s), s);
    assert.equal(quoteName(s), JSON.stringify(s), s);
    assert.equal(quoteName(s), JSON.stringify(s), `${s} (cached)`);
  }
});

test('memberList() writes the members of JSON.stringify(attrs), each after a comma', () => {
  const attrs: Record<string, AttributeValue> = {
    'gen_ai.request.model': 'gpt-4o-mini',
    'gen_ai.request.temperature': 0.2,
    'gen_ai.usage.cost': 0.0000366,
    'gen_ai.usage.input_tokens': 120,
    big: 1e21,
    small: 1e-7,
    neg: -0,
    flag: false,
    tags: ['a', 'b"c'],
    nums: [1, 2.5],
    bools: [true],
    empty: [],
    '0': 'numeric key first',
    'quote"key': 'v',
    text: 'line\nbreak',
  };
  const json = JSON.stringify(attrs);
  assert.equal(memberList(attrs), `,${json.slice(1, -1)}`);
  assert.equal(memberList({}), '');
  assert.equal(memberList(undefined), '');
  assert.deepEqual(JSON.parse(`{${memberList(attrs).slice(1)}}`), JSON.parse(json));
});

test('the cost of a generation, cached per model, equals costUsd', () => {
  const plain = resolveConfig({});
  const overridden = resolveConfig({ prices: { 'gpt-4o-mini': { input: 9, output: 9 }, mystery: { input: 2, output: 4, cachedInput: 1, cacheWrite: 3 } } });
  const usages = [
    { input: 1_000_000, output: 1_000_000 },
    { input: 1_000_000, output: 0, cacheRead: 500_000 },
    { input: 3_000_000, output: 10, cacheRead: 1_000_000, cacheWrite: 1_000_000 },
    { input: 123, output: 45 },
    { input: -5, output: NaN },
    {},
    { output: 7 },
  ];
  const models = [...Object.keys(MODEL_PRICES).slice(0, 40), 'gpt-4o-mini-2024-07-18', 'openai/gpt-4o', 'mystery', 'mystery-2025-01-01', 'unknown-model', ''];
  for (const config of [plain, overridden]) {
    for (let round = 0; round < 2; round++) {
      for (const m of models) for (const u of usages) assert.equal(generationCost(m, u, config), costUsd(m, u, config.prices), `${m} ${JSON.stringify(u)}`);
    }
  }
});

test('a model name far longer than any model\'s has no price and costs no time (it held a generation\'s end for seconds)', () => {
  const config = resolveConfig({});
  const usage = { input: 1000, output: 1000 };
  // CPU time, not wall-clock time: a loaded machine may hold the process meanwhile.
  const t0 = process.cpuUsage();
  for (const model of ['a-'.repeat(16_384), '@a'.repeat(16_384), 'gpt-4o-mini' + '-1234'.repeat(6_000)]) assert.equal(generationCost(model, usage, config), undefined);
  const { user, system } = process.cpuUsage(t0);
  assert.ok((user + system) / 1000 < 500, `${Math.round((user + system) / 1000)} ms of CPU`);
  assert.equal(generationCost(`openai/gpt-4o-mini${'-latest'.repeat(20)}`, usage, config), costUsd('gpt-4o-mini', usage), 'a long but plausible name is still priced');
});

test('pooled ids: lowercase hex of the W3C lengths, not all zeros, not repeating', () => {
  const seen = new Set<string>();
  for (let i = 0; i < 5000; i++) {
    const t = newTraceId();
    const s = newSpanId();
    assert.match(t, /^[0-9a-f]{32}$/);
    assert.match(s, /^[0-9a-f]{16}$/);
    assert.ok(!/^0+$/.test(t) && !/^0+$/.test(s));
    assert.ok(!seen.has(t) && !seen.has(s));
    seen.add(t);
    seen.add(s);
  }
});
