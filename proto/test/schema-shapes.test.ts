/**
 * Schema shapes chosen for speed (schema.ts) must accept and reject exactly what the plain ones
 * would: attributes as an object with a checked catchall instead of z.record, and the end ≥ start
 * refinement comparing decimal strings instead of BigInts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { z } from 'zod';
import { AttributeValue, Attributes, MAX_ATTRIBUTE_KEY_LENGTH, validateRecord } from '../src/index.js';

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
  { 1: 'x', b: 2 },
  JSON.parse('{"__proto__": {"x": 1}, "a": 1}'),
  JSON.parse('{"__proto__": 5}'),
  [1],
  'x',
  null,
];

test('attributes: the catchall shape accepts, rejects and outputs what z.record does', () => {
  for (const c of cases) {
    const a = Attributes.safeParse(c);
    const b = asRecord.safeParse(c);
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
