/**
 * Schema shapes chosen for speed (schema.ts, validate.ts) must accept and reject exactly what the
 * plain ones would: attributes checked by hand instead of z.record, the end ≥ start refinement
 * comparing decimal strings instead of BigInts, and records validated through z.compile.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { z } from 'zod';
import { AttributeValue, Attributes, EventRecord, HelloRecord, MAX_ATTRIBUTE_KEY_LENGTH, ScoreRecord, SpanRecord, StatsRecord, validateRecord, validVectorLines } from '../src/index.js';

const asRecord = z.record(z.string().min(1).max(MAX_ATTRIBUTE_KEY_LENGTH), AttributeValue);

const cases: unknown[] = [
  {},
  { a: 'x', b: 1.5, c: true, d: ['x'], e: [1, 2], f: [false], g: [] },
  { '': 1 },
  { ['k'.repeat(MAX_ATTRIBUTE_KEY_LENGTH)]: 1 },
  { ['k'.repeat(MAX_ATTRIBUTE_KEY_LENGTH + 1)]: 1 },
  { a: [1, 'x'] },
  { a: null },
  { a: { b: 1 } },
  { a: [[1]] },
  { a: [true, 1] },
  { a: ['x', null] },
  { a: [1, Number.NaN] },
  { a: Number.NaN },
  { a: Number.POSITIVE_INFINITY },
  { a: undefined },
  { a: -0, b: [-1.5e300], c: '', d: [''] },
  { 1: 'x', b: 2 },
  JSON.parse('{"__proto__": {"x": 1}, "a": 1}'),
  JSON.parse('{"__proto__": 5}'),
  [1],
  'x',
  null,
];

test('attributes: the hand-written check accepts, rejects and outputs what z.record does', () => {
  for (const c of cases) {
    const b = asRecord.safeParse(c); // first: Attributes deletes `__proto__` keys from its input
    const a = Attributes.safeParse(c);
    assert.equal(a.success, b.success, JSON.stringify(c));
    if (a.success && b.success) {
      assert.deepEqual(a.data, b.data);
      assert.equal(JSON.stringify(a.data), JSON.stringify(b.data));
      assert.equal(Object.getPrototypeOf(a.data), Object.prototype);
    }
  }
});

test('end time must not be before start time, compared exactly on decimal strings', () => {
  const span = (start: string, end: string) => ({
    v: 1, type: 'span', traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', name: 'x', startTimeUnixNano: start, endTimeUnixNano: end,
  });
  const pairs: [string, string][] = [
    ['1', '1'], ['1', '2'], ['2', '1'], ['9', '10'], ['10', '9'], ['1732700000000000000', '1732700000000000001'],
    ['1732700000000000001', '1732700000000000000'], ['9999999999999999999', '1000000000000000000'], ['999999999999999999', '1000000000000000000'],
  ];
  for (const [start, end] of pairs) {
    const r = validateRecord(span(start, end));
    assert.equal(r.ok, BigInt(end) >= BigInt(start), `${start} → ${end}`);
    if (!r.ok) assert.equal(r.reason, 'invalid_end_time_unix_nano');
  }
});

test('a malformed time is reported as itself, not as the time order', () => {
  const span = (start: unknown, end: unknown) => ({
    v: 1, type: 'span', traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', name: 'x', startTimeUnixNano: start, endTimeUnixNano: end,
  });
  for (const start of ['abc', '0123', '', '12345678901234567890', 5]) {
    const r = validateRecord(span(start, '1732700000000000000'));
    assert.equal(r.ok, false);
    if (!r.ok) assert.equal(r.reason, 'invalid_start_time_unix_nano', `start ${JSON.stringify(start)}`);
  }
  for (const end of ['abc', '0', '-1', 1732700000000000000]) {
    const r = validateRecord(span('1732700000000000000', end));
    assert.equal(r.ok, false);
    if (!r.ok) assert.equal(r.reason, 'invalid_end_time_unix_nano', `end ${JSON.stringify(end)}`);
  }
});

test('every record schema compiles (else validateRecord silently runs the slow parser)', () => {
  for (const schema of [HelloRecord, SpanRecord, EventRecord, StatsRecord, ScoreRecord]) {
    assert.doesNotThrow(() => z.compile(schema, { strict: true }));
  }
});

/** The reason validateRecord gives, derived from the plain (uncompiled) schema. */
function plainVerdict(value: unknown): string {
  const type = (value as { type: keyof typeof PLAIN }).type;
  const r = PLAIN[type].safeParse(value);
  if (r.success) return 'ok';
  const field = r.error.issues[0]?.path[0];
  return typeof field === 'string' ? `invalid_${field.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)}` : 'invalid_record';
}
const PLAIN = { hello: HelloRecord, span: SpanRecord, event: EventRecord, stats: StatsRecord, score: ScoreRecord };

test('validateRecord (compiled) agrees with the plain schemas when any field of a valid vector is replaced', () => {
  const replacements: unknown[] = [
    undefined, null, 0, 1, -1, 1.5, Number.MAX_SAFE_INTEGER + 2, true, false, '', 'x', 'X', [], ['x'], [1, 'x'], {}, { a: 1 }, { code: 'ok' },
    '0', '01', '1', '1732700000000000000', '17327000000000000000', '4bf92f3577b34da6a3ce929d0e0e4736', '4BF92F3577B34DA6A3CE929D0E0E4736',
    '0'.repeat(32), '00f067aa0ba902b7', '0'.repeat(16), 'k'.repeat(65), 'span', 'hello', 'NUMERIC',
    [{ name: 'e', timeUnixNano: '1732700000000000000' }], [{ name: '', timeUnixNano: '1' }], [{ name: 'e', timeUnixNano: '1', attributes: { a: [1, 'x'] } }],
  ];
  let checked = 0;
  for (const line of validVectorLines()) {
    const record = JSON.parse(line) as Record<string, unknown>;
    for (const field of [...Object.keys(record), 'parentSpanId', 'status', 'attributes', 'events', 'spanId', 'resource', 'sdk']) {
      if (field === 'v' || field === 'type') continue;
      for (const replacement of replacements) {
        const mutated = { ...record, [field]: replacement };
        const expected = plainVerdict(structuredClone(mutated));
        const r = validateRecord(structuredClone(mutated));
        assert.equal(r.ok ? 'ok' : r.reason, expected, `${field} = ${JSON.stringify(replacement)} in ${line}`);
        checked++;
      }
    }
  }
  assert.ok(checked > 1000);
});
