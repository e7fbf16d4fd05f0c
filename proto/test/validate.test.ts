import { test } from 'node:test';
import assert from 'node:assert/strict';
import { invalidVectors, parseLine, validVectorLines, newSpanId, newTraceId, TraceId, SpanId, nowUnixNano, unixNanoToIso, MAX_ATTRIBUTE_KEY_LENGTH, type SpanRecord } from '../src/index.js';

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

test('a v of any shape is unsupported_version, described without serializing it (a deep one must not overflow the stack)', () => {
  const deep = `${'['.repeat(100_000)}${']'.repeat(100_000)}`;
  for (const [v, got] of [['2', '2'], ['"1"', '"1"'], ['null', 'null'], [deep, 'an array'], ['{"a":{"b":1}}', 'an object']] as const) {
    const r = parseLine(`{"v":${v},"type":"span"}`);
    assert.equal(r.ok, false);
    if (!r.ok) assert.deepEqual([r.reason, r.message], ['unsupported_version', `v must be 1, got ${got}`]);
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

const spanWith = (attributes: string, extra = '') =>
  `{"v":1,"type":"span","traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902b7","name":"x","startTimeUnixNano":"1732700000000000000","endTimeUnixNano":"1732700000000000001","attributes":${attributes}${extra}}`;

test('attribute values: strings, numbers, booleans and arrays of one of those come through as sent', () => {
  const attributes = { s: '', i: 0, n: -1.5e-7, big: 1e300, t: true, f: false, ss: ['a', ''], ns: [1, 2.5, -3], bs: [false, true], empty: [] };
  const r = parseLine(spanWith(JSON.stringify(attributes)));
  assert.ok(r.ok, r.ok ? '' : r.message);
  assert.deepEqual((r.record as SpanRecord).attributes, attributes);
});

test('a bad attribute value is invalid_attributes, and the message names its key', () => {
  for (const bad of ['[1,"a"]', '["a",1]', '[true,0]', '[1,null]', '[[1]]', '[{}]', 'null', '{"a":1}']) {
    const r = parseLine(spanWith(`{"fine":1,"the.bad.one":${bad}}`));
    assert.equal(r.ok, false, bad);
    if (!r.ok) {
      assert.equal(r.reason, 'invalid_attributes', bad);
      assert.match(r.message, /^attributes\.the\.bad\.one: /, bad);
    }
  }
  for (const [where, line] of [
    ['resource', '{"v":1,"type":"hello","resource":{"service.name":[1,"a"]}}'],
    ['events', spanWith('{}', ',"events":[{"name":"e","timeUnixNano":"1732700000000000000","attributes":{"k":[1,"a"]}}]')],
  ]) {
    const r = parseLine(line!);
    assert.equal(r.ok ? 'ok' : r.reason, `invalid_${where}`);
  }
});

test('attribute keys are 1 to 256 characters', () => {
  const ok = parseLine(spanWith(JSON.stringify({ ['k'.repeat(MAX_ATTRIBUTE_KEY_LENGTH)]: 1 })));
  assert.ok(ok.ok);
  for (const key of ['', 'k'.repeat(MAX_ATTRIBUTE_KEY_LENGTH + 1)]) {
    const r = parseLine(spanWith(JSON.stringify({ a: 1, [key]: 1 })));
    assert.equal(r.ok ? 'ok' : r.reason, 'invalid_attributes', `key of ${key.length}`);
    if (!r.ok) assert.match(r.message, /keys are 1 to 256 characters/);
  }
});

test('a __proto__ attribute key does not survive validation, and changes no prototype', () => {
  const proto = '"__proto__":{"polluted":true}';
  const lines = [
    spanWith(`{${proto},"a":1}`, `,"events":[{"name":"e","timeUnixNano":"1732700000000000000","attributes":{"b":2,${proto}}}]`),
    `{"v":1,"type":"hello","resource":{${proto},"service.name":"s"}}`,
    `{"v":1,"type":"event","traceId":"4bf92f3577b34da6a3ce929d0e0e4736","name":"e","timeUnixNano":"1732700000000000000","attributes":{${proto}}}`,
  ];
  for (const line of lines) {
    const r = parseLine(line);
    assert.ok(r.ok, r.ok ? '' : r.message);
    const record = r.record as SpanRecord & { resource?: object };
    for (const attrs of [record.attributes, record.resource, ...(record.events ?? []).map((e) => e.attributes)]) {
      if (!attrs) continue;
      assert.equal(Object.hasOwn(attrs, '__proto__'), false);
      assert.equal(Object.getPrototypeOf(attrs), Object.prototype);
      assert.equal((Object.assign({}, attrs) as { polluted?: boolean }).polluted, undefined); // [[Set]] of __proto__
      assert.ok(!JSON.stringify(attrs).includes('__proto__'));
    }
  }
  assert.equal(({} as { polluted?: boolean }).polluted, undefined);
});
