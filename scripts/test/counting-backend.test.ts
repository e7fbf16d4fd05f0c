/**
 * The benchmarks' counting backend counts spans delivered, not spans received: a retried batch
 * that arrives twice must not make up for spans that never arrived.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { startCountingBackend } from '../lib/counting-backend.js';

function varint(n: number): Buffer {
  const out: number[] = [];
  for (; n >= 0x80; n >>>= 7) out.push((n & 0x7f) | 0x80);
  return Buffer.from([...out, n]);
}

/** A protobuf length-delimited field. */
const field = (n: number, bytes: Uint8Array) => Buffer.concat([varint((n << 3) | 2), varint(bytes.length), bytes]);

/** An ExportTraceServiceRequest with one span per id: resource_spans(1) > scope_spans(2) > spans(2) { trace_id(1), span_id(2), name(5) }. */
function protobufRequest(spanIds: string[]): Buffer {
  const spans = spanIds.map((id) => field(2, Buffer.concat([field(1, Buffer.alloc(16, 0xab)), field(2, Buffer.from(id, 'hex')), field(5, Buffer.from('llm.generate'))])));
  return field(1, field(2, Buffer.concat(spans)));
}

function jsonRequest(spanIds: string[]): string {
  const spans = spanIds.map((spanId) => ({ traceId: 'ab'.repeat(16), spanId, parentSpanId: '', name: 'llm.generate' }));
  return JSON.stringify({ resourceSpans: [{ scopeSpans: [{ spans }] }] });
}

const ids = (from: number, n: number) => Array.from({ length: n }, (_, i) => (from + i).toString(16).padStart(16, '0'));

test('the counting backend counts a span delivered twice (a retried batch) once, protobuf and JSON', async () => {
  const backend = await startCountingBackend();
  try {
    const post = async (body: Uint8Array | string, type: string) => {
      const res = await fetch(`${backend.url}/v1/traces`, { method: 'POST', headers: { 'content-type': type, 'content-encoding': 'gzip' }, body: gzipSync(body) });
      await res.arrayBuffer();
    };
    await post(protobufRequest(ids(1, 3)), 'application/x-protobuf');
    await post(protobufRequest(ids(1, 3)), 'application/x-protobuf'); // the same batch, retried
    await post(protobufRequest(ids(3, 2)), 'application/x-protobuf'); // overlaps by one
    assert.equal(backend.spans, 4);
    await post(jsonRequest(ids(100, 2)), 'application/json');
    await post(jsonRequest(ids(100, 2)), 'application/json');
    assert.equal(backend.spans, 6);
    assert.equal(backend.duplicates, 6);
  } finally {
    await backend.close();
  }
});
