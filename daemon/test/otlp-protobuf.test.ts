/**
 * Our single-pass protobuf writer (export/otlp-protobuf.ts) against its reference,
 * otlp-transformer's ProtobufTraceSerializer: the same bytes for every span shape the daemon can
 * hold — the shared test vectors, the Langfuse-mapped goldens' shapes, and seeded random spans
 * with every attribute type, Unicode, lengths across the varint boundaries and several resources.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseLine, validVectorLines, type SpanRecord } from '@dspy-o11y/proto';
import { encodeTraces, serializeWithOtlpTransformer, type EncodableSpan } from '../src/export/otlp-encode.js';
import { LangfuseMapper } from '../src/export/langfuse-map.js';
import { decodeTraceRequestJson, decodeTraceRequestProtobuf, flattenAttributes, type DecodedTraceRequest } from '../src/otlp/decode.js';
import type { Resource } from '../src/model.js';

const SCOPE = { name: 'dspy-o11y', version: '0.1.0' };

function assertSameBytes(spans: EncodableSpan[], scope = SCOPE, keepScopes = false): void {
  const ours = Buffer.from(encodeTraces(spans, { encoding: 'protobuf', scope, keepScopes }));
  const reference = Buffer.from(serializeWithOtlpTransformer(spans, { encoding: 'protobuf', scope, keepScopes }));
  if (!ours.equals(reference)) {
    let at = 0;
    while (at < ours.length && ours[at] === reference[at]) at++;
    assert.fail(`bodies differ at byte ${at} of ${reference.length} (ours ${ours.length} bytes): ours ${ours.subarray(at, at + 16).toString('hex')} vs ${reference.subarray(at, at + 16).toString('hex')}`);
  }
}

/** A small deterministic PRNG (mulberry32), so a failure names a seed that reproduces it. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ALPHABETS = ['abcxyz0123 _.-', 'éàüß', '☕日本語', '😀🚀', '\ud800', '\u0000\u007f\u0080'].map((a) => [...a]);

function randomString(r: () => number, maxLength: number): string {
  const length = Math.floor(r() ** 3 * maxLength);
  let s = '';
  while (s.length < length) {
    const chars = ALPHABETS[Math.floor(r() * (r() < 0.8 ? 1 : ALPHABETS.length))]!;
    s += chars[Math.floor(r() * chars.length)]!;
  }
  return s;
}

function randomNumber(r: () => number): number {
  const picks = [
    () => Math.floor(r() * 100),
    () => -Math.floor(r() * 1e6),
    () => Math.floor(r() * 2 ** 40),
    () => -Math.floor(r() * 2 ** 52),
    () => 2 ** 62 * (r() < 0.5 ? 1 : -1),
    () => r() * 1000,
    () => -r(),
    () => 0xffffffff,
    () => 2 ** 32,
    () => -0,
    () => 1e300,
  ];
  return picks[Math.floor(r() * picks.length)]!();
}

function randomValue(r: () => number): unknown {
  const kind = Math.floor(r() * 7);
  if (kind === 0 || kind === 1) return randomString(r, kind === 0 ? 40 : 20_000);
  if (kind === 2) return randomNumber(r);
  if (kind === 3) return r() < 0.5;
  const n = Math.floor(r() * 5);
  if (kind === 4) return Array.from({ length: n }, () => randomString(r, 200));
  if (kind === 5) return Array.from({ length: n }, () => randomNumber(r));
  return Array.from({ length: n }, () => r() < 0.5);
}

function randomAttributes(r: () => number, max: number): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const n = Math.floor(r() * max);
  for (let i = 0; i < n; i++) out[`${randomString(r, 30) || 'k'}.${i}`] = randomValue(r);
  return out;
}

const hex = (r: () => number, n: number) => Array.from({ length: n }, () => '0123456789abcdef'[Math.floor(r() * 16)]).join('');

function randomNano(r: () => number): string {
  const picks = [() => '1', () => '999999999', () => '1000000000', () => '18446744073709551615', () => `17${Math.floor(r() * 1e17)}`.slice(0, 19)];
  return picks[Math.floor(r() * picks.length)]!();
}

function randomSpan(r: () => number): SpanRecord {
  const span: SpanRecord = {
    v: 1,
    type: 'span',
    traceId: hex(r, 32),
    spanId: hex(r, 16),
    name: randomString(r, 300) || 'n',
    startTimeUnixNano: randomNano(r),
    endTimeUnixNano: randomNano(r),
  };
  if (r() < 0.7) span.parentSpanId = hex(r, 16);
  if (r() < 0.7) span.status = { code: (['unset', 'ok', 'error'] as const)[Math.floor(r() * 3)]!, ...(r() < 0.5 ? { message: randomString(r, 300) } : {}) };
  if (r() < 0.9) span.attributes = randomAttributes(r, 20) as SpanRecord['attributes'];
  if (r() < 0.3) {
    span.events = Array.from({ length: Math.floor(r() * 4) }, () => ({
      name: randomString(r, 40) || 'e',
      timeUnixNano: randomNano(r),
      ...(r() < 0.6 ? { attributes: randomAttributes(r, 5) as SpanRecord['attributes'] } : {}),
    }));
  }
  return span;
}

describe('single-pass protobuf writer = otlp-transformer ProtobufTraceSerializer, byte for byte', () => {
  const R1: Resource = { attributes: { 'service.name': 'one', 'service.version': '1.4.2', 'host.cores': 8 } };
  const R2: Resource = { attributes: { 'service.name': 'two', 'deployment.environment': 'prod ☕' } };

  test('an empty batch', () => assertSameBytes([]));

  test('every valid test vector span, raw and Langfuse-mapped', () => {
    const spans = validVectorLines()
      .map((line) => parseLine(line))
      .flatMap((v) => (v.ok && v.record.type === 'span' ? [{ span: v.record, resource: R1 }] : []));
    assert.ok(spans.length > 3, 'the vectors hold spans');
    assertSameBytes(spans);
    assertSameBytes(new LangfuseMapper().map(spans));
  });

  test('spans smaller than 128 bytes and larger than 16 KiB (the length prefix moves)', () => {
    const tiny: SpanRecord = { v: 1, type: 'span', traceId: 'a'.repeat(32), spanId: 'b'.repeat(16), name: 't', startTimeUnixNano: '5', endTimeUnixNano: '6' };
    const huge: SpanRecord = { ...tiny, spanId: 'c'.repeat(16), attributes: { 'dspy.input': 'x'.repeat(20_000), 'dspy.output': '日'.repeat(40_000) } };
    assertSameBytes([{ span: tiny, resource: R1 }]);
    assertSameBytes([{ span: huge, resource: R1 }, { span: tiny, resource: R2 }]);
  });

  test('a batch larger than the writer first allocates (the buffer grows)', () => {
    const r = rng(7);
    const spans = Array.from({ length: 50 }, () => ({ span: { ...randomSpan(r), attributes: { big: 'y'.repeat(100_000) } } as SpanRecord, resource: R1 }));
    assertSameBytes(spans);
  });

  for (const seed of [1, 2, 3, 4, 5]) {
    test(`200 random spans over two resources (seed ${seed})`, () => {
      const r = rng(seed);
      const spans = Array.from({ length: 200 }, () => ({ span: randomSpan(r), resource: r() < 0.7 ? R1 : R2 }));
      assertSameBytes(spans);
      assertSameBytes(new LangfuseMapper().map(spans));
    });
  }

  test('repeated short string attributes (copied from the entry cache) and keys with many values', () => {
    // The writer caches the encoded KeyValue of short string attributes, 16 values per key, and
    // starts a key afresh after 4096 misses: run past both limits and across batches.
    const r = rng(11);
    const models = ['gpt-4o-mini', 'claude-3-5-haiku', 'gemini-2.0-flash', 'ça ☕', '\ud800x'];
    for (let batch = 0; batch < 4; batch++) {
      const spans = Array.from({ length: 1500 }, (_, i) => {
        const span = randomSpan(r);
        span.attributes = {
          'gen_ai.request.model': models[i % models.length]!,
          'user.id': `u-${batch * 1500 + i}`,
          'dspy.observation.type': 'generation',
          [`key.${i % 40}`]: i % 3 === 0 ? 'same' : i,
          ...span.attributes,
        };
        return { span, resource: i % 2 ? R1 : R2 };
      });
      assertSameBytes(spans);
      assertSameBytes(new LangfuseMapper().map(spans));
    }
  });

  test('resources with their own instrumentation scope (OTLP ingest): kept where asked, else the daemon\'s; protobuf and JSON alike', () => {
    const r = rng(21);
    const openai: Resource = { ...R1, scope: { name: 'opentelemetry.instrumentation.openai', version: '0.48.1', attributes: { 'library.lang': 'python', n: 3 } } };
    const app: Resource = { ...R1, scope: { name: 'checkout', version: '' } };
    const spans = Array.from({ length: 60 }, (_, i) => ({ span: randomSpan(r), resource: [openai, app, R2][i % 3]! }));
    assertSameBytes(spans, SCOPE, true);
    assertSameBytes(spans, SCOPE, false);
    const scopesOf = (resourceSpans: DecodedTraceRequest['resourceSpans']) =>
      resourceSpans.flatMap((rs) => rs.scopeSpans.map((ss) => ({ name: ss.scope.name, version: ss.scope.version, attributes: flattenAttributes(ss.scope.attributes), spans: ss.spans.length })));
    const kept = [
      { name: 'opentelemetry.instrumentation.openai', version: '0.48.1', attributes: { 'library.lang': 'python', n: 3 }, spans: 20 },
      { name: 'checkout', version: '', attributes: {}, spans: 20 },
      { name: 'dspy-o11y', version: '0.1.0', attributes: {}, spans: 20 },
    ];
    for (const encoding of ['protobuf', 'json'] as const) {
      const body = encodeTraces(spans, { encoding, scope: SCOPE, keepScopes: true });
      const decoded = encoding === 'protobuf' ? decodeTraceRequestProtobuf(body) : decodeTraceRequestJson(Buffer.from(body).toString(), { strictFieldNames: true });
      assert.deepEqual(scopesOf(decoded.resourceSpans), kept, encoding);
      const ours = encodeTraces(spans, { encoding, scope: SCOPE });
      const decodedOurs = encoding === 'protobuf' ? decodeTraceRequestProtobuf(ours) : decodeTraceRequestJson(Buffer.from(ours).toString(), { strictFieldNames: true });
      assert.deepEqual(new Set(scopesOf(decodedOurs.resourceSpans).map((s) => `${s.name}@${s.version}`)), new Set(['dspy-o11y@0.1.0']), encoding);
    }
  });

  test('the body decodes to the spans that went in (ids, times, attributes)', () => {
    const r = rng(99);
    const span = randomSpan(r);
    span.parentSpanId = 'd'.repeat(16);
    span.startTimeUnixNano = '1732700000123456789';
    span.attributes = { s: 'café', i: -3, d: 0.5, b: true, a: [1, 2] };
    const decoded = decodeTraceRequestProtobuf(encodeTraces([{ span, resource: R2 }], { encoding: 'protobuf', scope: SCOPE }));
    const out = decoded.resourceSpans[0]!.scopeSpans[0]!.spans[0]!;
    assert.equal(out.traceId, span.traceId);
    assert.equal(out.parentSpanId, 'd'.repeat(16));
    assert.equal(out.startTimeUnixNano, '1732700000123456789');
    assert.deepEqual(flattenAttributes(out.attributes), span.attributes);
  });
});
