/**
 * The export worker's Langfuse + protobuf path (langfuse-protobuf.ts) against the general one
 * (JSON.parse → LangfuseMapper → protobuf writer), which the mapping and encoder tests pin down:
 * for the same queued lines, batch after batch, both must write the same bytes and report the
 * same repairs. Lines come from the shared test vectors and from a seeded generator that mixes
 * what the fast path takes (the SDK's shape) with everything it hands to the general path.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { validateRecord, validVectorLines, type SpanRecord } from '@dspy-o11y/proto';
import { cleanSpan, type Resource } from '../src/model.js';
import { LangfuseMapper, type RepairReason } from '../src/export/langfuse-map.js';
import { LangfuseProtobufEncoder } from '../src/export/langfuse-protobuf.js';
import { encodeTraces } from '../src/export/otlp-encode.js';
import { decodeTraceRequest } from '../src/otlp/decode.js';
import { flatten } from './support/fake-langfuse.js';

const SCOPE = { name: 'dspy-o11y', version: '0.1.0' };

/** Both paths, each with its own mapper (trace memory) and repair log. */
function pair() {
  const fastRepairs: RepairReason[] = [];
  const generalRepairs: RepairReason[] = [];
  const fastMapper = new LangfuseMapper({ onRepair: (r) => fastRepairs.push(r) });
  const generalMapper = new LangfuseMapper({ onRepair: (r) => generalRepairs.push(r) });
  const encoder = new LangfuseProtobufEncoder(fastMapper, SCOPE);
  return {
    encoder,
    fastRepairs,
    generalRepairs,
    /** Encodes one batch both ways and asserts the same bytes. */
    same(lines: readonly string[], resources: readonly Resource[], label: string): Uint8Array {
      const fast = Buffer.from(encoder.encode(Buffer.from(lines.join('\n')), lines.length, (i) => resources[i]));
      const mapped = generalMapper.map(lines.map((l, i) => ({ span: cleanSpan(JSON.parse(l) as SpanRecord), resource: resources[i] })));
      const general = Buffer.from(encodeTraces(mapped, { encoding: 'protobuf', scope: SCOPE }));
      if (!fast.equals(general)) {
        // Say which span differs, decoded, rather than where two byte strings part.
        const a = decodeTraceRequest(fast, 'protobuf');
        const b = decodeTraceRequest(general, 'protobuf');
        assert.deepEqual(a, b, `${label}: decoded requests differ`);
        assert.fail(`${label}: same content, different bytes (field order or varint sizes)`);
      }
      assert.deepEqual(fastRepairs, generalRepairs, `${label}: repairs`);
      assert.equal(fastMapper.rememberedTraces, generalMapper.rememberedTraces, `${label}: remembered traces`);
      return fast;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// A seeded generator of span lines: the SDK's shape with variations, and the odd cases.

function prng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const STRINGS = [
  '', 'gpt-4o-mini', 'claude-3-5-sonnet', 'u-7', 'ünïcödé ☕', '日本語のテキスト', 'emoji 😀 pair', 'quote " and \\ backslash',
  'new\nline\ttab', 'control \u0001 char', 'lone \ud800 surrogate', 'slash / and \u2028 separator', 'x'.repeat(200), 'y'.repeat(70000),
];
const NUMBERS = [0, 1, 42, 120, 0.2, 0.0000366, 1e21, -3, -0.5, 2 ** 53 + 2, 1.5e-7, 123456789012];

function hex(rand: () => number, n: number): string {
  let s = '';
  while (s.length < n) s += Math.floor(rand() * 16).toString(16);
  return s.replace(/^0+$/, '1'.padStart(n, '0'));
}

/** One span line; `rand` decides every choice. */
function spanLine(rand: () => number, traceId: string): string {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
  const maybe = (p: number) => rand() < p;
  const attrs: [string, unknown][] = [];
  const str = () => pick(STRINGS);
  const num = () => pick(NUMBERS);
  const any = () => (maybe(0.6) ? str() : maybe(0.5) ? num() : maybe(0.5) ? maybe(0.5) : [str(), str()]);
  if (maybe(0.9)) attrs.push(['dspy.observation.type', maybe(0.9) ? pick(['generation', 'span', 'tool', 'agent', 'event']) : pick(['Generation', 'nope', 3])]);
  if (maybe(0.8)) attrs.push(['gen_ai.request.model', maybe(0.9) ? str() : num()]);
  if (maybe(0.3)) attrs.push(['gen_ai.response.model', str()]);
  if (maybe(0.7)) attrs.push(['gen_ai.provider.name', pick(['openai', 'anthropic'])]);
  if (maybe(0.6)) attrs.push(['gen_ai.request.temperature', maybe(0.8) ? num() : maybe(0.5) ? str() : true]);
  if (maybe(0.3)) attrs.push(['gen_ai.request.max_tokens', num()]);
  if (maybe(0.1)) attrs.push(['gen_ai.request.stop_sequences', [str(), str()]]);
  for (const k of ['gen_ai.usage.input_tokens', 'gen_ai.usage.output_tokens', 'gen_ai.usage.total_tokens']) {
    if (maybe(0.6)) attrs.push([k, maybe(0.85) ? Math.floor(rand() * 5000) : maybe(0.5) ? String(Math.floor(rand() * 50)) : num()]);
  }
  if (maybe(0.5)) attrs.push(['gen_ai.usage.cost', maybe(0.85) ? num() : maybe(0.5) ? '0.12' : 'free']);
  if (maybe(0.05)) attrs.push(['gen_ai.usage.cache_read.input_tokens', 10]);
  if (maybe(0.7)) attrs.push(['dspy.input', maybe(0.8) ? JSON.stringify([{ role: 'user', content: str() }]) : any()]);
  if (maybe(0.6)) attrs.push(['dspy.output', maybe(0.9) ? str() : num()]);
  if (maybe(0.5)) attrs.push(['dspy.trace.name', maybe(0.9) ? str() : num()]);
  if (maybe(0.5)) attrs.push(['user.id', maybe(0.9) ? str() : num()]);
  if (maybe(0.3)) attrs.push(['session.id', str()]);
  if (maybe(0.05)) attrs.push(['dspy.trace.tags', [str()]]);
  if (maybe(0.05)) attrs.push(['dspy.trace.metadata.plan', str()]);
  if (maybe(0.05)) attrs.push(['dspy.level', pick(['warning', 'LOUD'])]);
  if (maybe(0.05)) attrs.push(['dspy.prompt.name', 'barista']);
  if (maybe(0.05)) attrs.push(['dspy.prompt.version', pick([1, '2', 0])]);
  if (maybe(0.05)) attrs.push(['dspy.completion_start_time', pick(['1732700000123456789', 'soon'])]);
  if (maybe(0.03)) attrs.push(['langfuse.observation.type', 'span']);
  if (maybe(0.1)) attrs.push(['7', 'an index-like key']);
  if (maybe(0.5)) attrs.push([pick(['dspy.module', 'app.region', 'ключ', 'dspy.signature']), any()]);
  // Shuffle: key order is the sender's.
  for (let i = attrs.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [attrs[i], attrs[j]] = [attrs[j], attrs[i]];
  }
  const start = 1732700000000000000n + BigInt(Math.floor(rand() * 1e12));
  const fields: [string, unknown][] = [
    ['v', 1],
    ['type', 'span'],
    ['traceId', traceId],
    ['spanId', hex(rand, 16)],
    ...(maybe(0.6) ? [['parentSpanId', hex(rand, 16)] as [string, unknown]] : []),
    ['name', maybe(0.9) ? pick(['llm.generate', 'react.tool_call', 'Predict.forward']) : pick(['☕ brew', 'with "quotes"'])],
    ['startTimeUnixNano', start.toString()],
    ['endTimeUnixNano', (start + BigInt(Math.floor(rand() * 1e9))).toString()],
  ];
  if (maybe(0.6)) fields.push(['status', maybe(0.7) ? { code: pick(['ok', 'unset', 'error']) } : { code: 'error', message: str() }]);
  if (maybe(0.9)) fields.push(['attributes', Object.fromEntries(attrs)]);
  if (maybe(0.05)) fields.push(['events', [{ name: 'llm.retry', timeUnixNano: start.toString(), attributes: { attempt: 2 } }]]);
  if (maybe(0.03)) fields.push(['extra', { from: 'a newer SDK' }]);
  for (let i = fields.length - 1; i > 0 && maybe(0.2); i--) {
    const j = Math.floor(rand() * (i + 1));
    [fields[i], fields[j]] = [fields[j], fields[i]];
  }
  let line = JSON.stringify(Object.fromEntries(fields));
  // Senders other than the SDK: whitespace, escaped characters JSON.stringify would not escape, a duplicate key.
  if (maybe(0.05)) line = JSON.stringify(Object.fromEntries(fields), null, 1).replace(/\n/g, ' ');
  if (maybe(0.05)) line = line.replace('"llm.generate"', '"llm\\u002egenerate"').replace(/"gpt-4o-mini"/g, '"gpt\\/4o-mini"');
  if (maybe(0.03)) line = line.replace('"attributes":{', '"attributes":{"dspy.module":"first",').replace('}}', ',"dspy.module":"second"}}');
  // An index-like key after others: JavaScript enumerates it first.
  if (maybe(0.05) && line.includes('"attributes":{"')) line = line.replace('"attributes":{', '"attributes":{"app.first":"x","12":"index-like",');
  return line;
}

const RESOURCES: Resource[] = [
  { attributes: { 'service.name': 'coffee-shop', 'service.version': '1.4.2', 'deployment.environment.name': 'production' } },
  { attributes: { 'service.name': 'kitchen', 'service.version': 7, 'deployment.environment.name': 'Staging EU' } },
  { attributes: { 'service.name': 'bare' } },
  { attributes: { 'service.name': 'reserved', 'deployment.environment.name': 'langfuse-internal' } },
];

describe('langfuse-protobuf: the fast path writes what the general path writes', () => {
  test('every span of the shared test vectors', () => {
    const spans = validVectorLines().filter((l) => (JSON.parse(l) as { type: string }).type === 'span');
    assert.ok(spans.length >= 5);
    const p = pair();
    p.same(spans, spans.map(() => RESOURCES[0]), 'vectors');
    for (const [i, line] of spans.entries()) p.same([line], [RESOURCES[i % RESOURCES.length]], `vector ${i}`);
    assert.ok(p.encoder.fastLines > 0, 'some vectors take the fast path');
  });

  test('generated batches: the SDK shape and every odd case, traces spread over batches and resources', () => {
    const rand = prng(20261127);
    const p = pair();
    const traces = Array.from({ length: 40 }, () => hex(rand, 32));
    let lines = 0;
    for (let batch = 0; batch < 60; batch++) {
      const ls: string[] = [];
      const rs: Resource[] = [];
      const size = 1 + Math.floor(rand() * 60);
      while (ls.length < size) {
        const line = spanLine(rand, traces[Math.floor(rand() * traces.length)]);
        if (!validateRecord(JSON.parse(line)).ok) continue; // the queue holds validated records only
        ls.push(line);
        rs.push(RESOURCES[Math.floor(rand() * RESOURCES.length)]);
      }
      p.same(ls, rs, `batch ${batch}`);
      lines += ls.length;
    }
    // Both paths are exercised (a generator drift that sent everything one way would prove nothing).
    assert.equal(p.encoder.fastLines + p.encoder.generalLines, lines);
    assert.ok(p.encoder.fastLines > lines * 0.2, `fast path: ${p.encoder.fastLines} of ${lines}`);
    assert.ok(p.encoder.generalLines > lines * 0.2, `general path: ${p.encoder.generalLines} of ${lines}`);
    assert.ok(p.fastRepairs.length > 0, 'the general lines include repairs');
  });

  // Minimized from a differential fuzzer (hand-written JSON text: every escape, whitespace, number form).
  test('span times written with \\u escapes: valid once parsed, so the fast path leaves them to the general one', () => {
    const p = pair();
    const line = String.raw`{"v":1,"type":"span","traceId":"5fc3454a04f64ab4bfb1a476f86f16cf","spanId":"1a4f2191a4055bc8","name":"a","startTimeUnixNano":"\u0035\u0038","endTimeUnixNano":"\u0031\u0034\u0032"}`;
    assert.ok(validateRecord(JSON.parse(line)).ok);
    p.same([line], [RESOURCES[0]], 'escaped times');
    const child = String.raw`{"v":1,"type":"span","traceId":"5fc3454a04f64ab4bfb1a476f86f16cf","spanId":"2a4f2191a4055bc8","parentSpanId":"1a4f2191a4055bc8","name":"b","startTimeUnixNano":"1732700000000000000","endTimeUnixNano":"17327000000000000\u0030\u0039","attributes":{"user.id":"u"}}`;
    assert.ok(validateRecord(JSON.parse(child)).ok);
    p.same([child, line], [RESOURCES[1], RESOURCES[1]], 'an escaped end time');
  });

  test('a resource whose spans all speak Langfuse is not mapped: no repairs reported for it', () => {
    const p = pair();
    // service.version not a string and an environment to sanitize: mapping this resource reports two repairs.
    const resource: Resource = { attributes: { 'service.name': 'other-sdk', 'service.version': 7, 'deployment.environment.name': 'Staging EU' } };
    const langfuse = '{"attributes":{"langfuse.":0},"startTimeUnixNano":"8","traceId":"6088ad7c16b3dc12b0cf5eda79632fa0","spanId":"ed86deeeef2d073f","endTimeUnixNano":"18","v":1,"type":"span","name":"a"}';
    assert.ok(validateRecord(JSON.parse(langfuse)).ok);
    p.same([langfuse], [resource], 'only a span that speaks Langfuse');
    assert.deepEqual(p.fastRepairs, []);
    // An SDK span of the same resource (same trace, so the trace's values are filled in): mapped now, once.
    const sdk = '{"v":1,"type":"span","traceId":"6088ad7c16b3dc12b0cf5eda79632fa0","spanId":"fd86deeeef2d073f","name":"b","startTimeUnixNano":"8","endTimeUnixNano":"18","attributes":{"user.id":"u"}}';
    p.same([langfuse, sdk, langfuse], [resource, resource, resource], 'then an SDK span of that resource');
    assert.deepEqual(p.fastRepairs, ['version_coerced', 'environment_sanitized']);
    assert.equal(p.encoder.fastLines, 1);
  });

  test('a trace whose root arrives in a later batch: earlier spans keep the values they had, later ones get the root\'s', () => {
    const p = pair();
    const trace = 'aaaabbbbccccddddeeeeffff00001111';
    const child = (name: string, user: string) =>
      JSON.stringify({ v: 1, type: 'span', traceId: trace, spanId: hex(prng(name.length), 16), parentSpanId: 'bbbbbbbbbbbbbbbb', name, startTimeUnixNano: '1732700000000000001', endTimeUnixNano: '1732700000000000002', attributes: { 'user.id': user } });
    const root = JSON.stringify({ v: 1, type: 'span', traceId: trace, spanId: 'bbbbbbbbbbbbbbbb', name: 'root', startTimeUnixNano: '1732700000000000000', endTimeUnixNano: '1732700000000000009', attributes: { 'dspy.trace.name': 'order', 'user.id': 'u-root', 'session.id': 's-1' } });
    p.same([child('a', 'u-child')], [RESOURCES[0]], 'child first');
    p.same([root, child('bb', '')], [RESOURCES[0], RESOURCES[0]], 'root, and a child with an empty user');
    const [last] = flatten(decodeTraceRequest(p.same([child('ccc', 'u-late')], [RESOURCES[0]], 'a later child'), 'protobuf'), 0);
    const attrs = last.attributes;
    assert.equal(attrs['langfuse.trace.name'], 'order');
    assert.equal(attrs['langfuse.session.id'], 's-1');
    assert.equal(attrs['langfuse.user.id'], 'u-late', 'its own user wins over the trace\'s');
    assert.equal(p.encoder.generalLines, 0, 'all of them on the fast path');
  });
});
