import { test } from 'node:test';
import assert from 'node:assert/strict';
import { invalidVectors, parseLine, validVectorLines, newSpanId, newTraceId, TraceId, SpanId, nowUnixNano, unixNanoToIso } from '../src/index.js';

test('every valid vector parses, and unknown top-level fields are ignored', () => {
  for (const line of validVectorLines()) {
    const r = parseLine(line);
    assert.ok(r.ok, `${line}: ${r.ok ? '' : r.message}`);
    assert.equal((r.record as Record<string, unknown>).futureField, undefined);
  }
});

test('every invalid vector is rejected with its reason', () => {
  const vectors = invalidVectors();
  assert.ok(vectors.length >= 25);
  for (const { reason, line } of vectors) {
    const r = parseLine(line);
    assert.equal(r.ok, false, `accepted: ${line}`);
    if (!r.ok) {
      assert.equal(r.reason, reason, `${line} → ${r.message}`);
      assert.ok(r.message.length > 0);
    }
  }
});

test('generated ids are valid W3C ids and distinct', () => {
  const seen = new Set<string>();
  for (let i = 0; i < 5000; i++) {
    const t = newTraceId();
    const s = newSpanId();
    assert.ok(TraceId.safeParse(t).success && SpanId.safeParse(s).success);
    seen.add(t);
  }
  assert.equal(seen.size, 5000);
});

test('nowUnixNano is close to Date.now and converts to ISO', () => {
  const ns = nowUnixNano();
  assert.match(ns, /^\d{19}$/);
  assert.ok(Math.abs(Number(BigInt(ns) / 1_000_000n) - Date.now()) < 1000);
  assert.equal(unixNanoToIso('1732700000123456789'), '2024-11-27T09:33:20.123Z');
});
