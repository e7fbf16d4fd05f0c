/**
 * The OTLP encoder (official otlp-transformer serializers over our span records) and our decoder:
 * exact round trips in both encodings, resource grouping, and the decoder's handling of the
 * OTLP/JSON variants and of malformed input (clear errors, never a hang or a crash).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { SpanRecord } from '@dspy-o11y/proto';
import { JsonTraceSerializer } from '@opentelemetry/otlp-transformer';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { encodeTraces, nsToHrTime, type EncodableSpan, type OtlpEncoding } from '../src/export/otlp-encode.js';
import {
  MAX_ANY_VALUE_DEPTH,
  MAX_REQUEST_ELEMENTS,
  OtlpDecodeError,
  OtlpTooLargeError,
  attributeType,
  attributeTypes,
  arrayElementTypes,
  countSpans,
  decodeTraceRequest,
  decodeTraceRequestJson,
  decodeTraceRequestProtobuf,
  encodingOfContentType,
  exportTraceServiceRequestType,
  flattenAttributes,
  type DecodedSpan,
} from '../src/otlp/decode.js';
import type { Resource } from '../src/model.js';

const SCOPE = { name: 'dspy-o11y', version: '1.2.3' };
const ENCODINGS: OtlpEncoding[] = ['protobuf', 'json'];
const R1: Resource = { attributes: { 'service.name': 'one', 'service.version': '1.4.2', 'host.cores': 8 } };
const R2: Resource = { attributes: { 'service.name': 'two' } };

const root: SpanRecord = {
  v: 1,
  type: 'span',
  traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
  spanId: '00f067aa0ba902b7',
  name: 'ReAct.forward',
  startTimeUnixNano: '1732700000000000001',
  endTimeUnixNano: '1732700000923456789',
  status: { code: 'ok' },
  attributes: {
    str: 'hello',
    int: 120,
    negative: -7,
    zero: 0,
    big: 2 ** 60,
    double: 0.7,
    wholeLooking: 2.5e-8,
    bool: false,
    strings: ['beta', 'coffee'],
    ints: [1, 2, 3],
    doubles: [0.5, 1.5],
    bools: [true, false],
    unicode: 'café ☕ 日本',
  },
};
const child: SpanRecord = {
  v: 1,
  type: 'span',
  traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
  spanId: '1111111111111111',
  parentSpanId: '00f067aa0ba902b7',
  name: 'llm.generate',
  startTimeUnixNano: '1732700000123456789',
  endTimeUnixNano: '18446744073709551615',
  status: { code: 'error', message: '429 from provider' },
  events: [
    { name: 'llm.retry', timeUnixNano: '1732700000150000000', attributes: { attempt: 2, backoff: 0.25 } },
    { name: 'llm.first_token', timeUnixNano: '999999999' },
  ],
};
const tiny: SpanRecord = { v: 1, type: 'span', traceId: 'a'.repeat(32), spanId: 'b'.repeat(16), name: 'tiny', startTimeUnixNano: '5', endTimeUnixNano: '1000000000' };

function allSpans(encoding: OtlpEncoding, spans: EncodableSpan[]): DecodedSpan[] {
  const body = encodeTraces(spans, { encoding, scope: SCOPE });
  const decoded = decodeTraceRequest(body, encoding, { strictFieldNames: true });
  return decoded.resourceSpans.flatMap((rs) => rs.scopeSpans.flatMap((ss) => ss.spans));
}

describe('encode → decode round trip', () => {
  for (const encoding of ENCODINGS) {
    test(`${encoding}: ids, parents, names, nanosecond times, status, kind`, () => {
      const spans = allSpans(encoding, [
        { span: root, resource: R1 },
        { span: child, resource: R1 },
        { span: tiny, resource: R2 },
      ]);
      assert.equal(spans.length, 3);
      const [r, c, t] = [spans.find((s) => s.name === 'ReAct.forward')!, spans.find((s) => s.name === 'llm.generate')!, spans.find((s) => s.name === 'tiny')!];
      assert.equal(r.traceId, root.traceId);
      assert.equal(r.spanId, root.spanId);
      assert.equal(r.parentSpanId, undefined);
      assert.equal(c.parentSpanId, '00f067aa0ba902b7');
      assert.equal(r.startTimeUnixNano, '1732700000000000001');
      assert.equal(r.endTimeUnixNano, '1732700000923456789');
      assert.equal(c.startTimeUnixNano, '1732700000123456789');
      assert.equal(c.endTimeUnixNano, '18446744073709551615', 'the largest fixed64, exactly');
      assert.equal(t.startTimeUnixNano, '5');
      assert.equal(t.endTimeUnixNano, '1000000000');
      assert.deepEqual(r.status, { code: 1, message: undefined });
      assert.deepEqual(c.status, { code: 2, message: '429 from provider' });
      assert.deepEqual(t.status, { code: 0, message: undefined });
      assert.equal(r.kind, 1, 'SPAN_KIND_INTERNAL');
      assert.equal(r.flags & 0xff, 1, 'sampled');
    });

    test(`${encoding}: attributes keep their OTLP types (int vs double) and values`, () => {
      const [r] = allSpans(encoding, [{ span: root, resource: R1 }]);
      const attrs = flattenAttributes(r!.attributes);
      const types = attributeTypes(r!.attributes);
      assert.deepEqual(types, {
        str: 'string',
        int: 'int',
        negative: 'int',
        zero: 'int',
        big: 'int',
        double: 'double',
        wholeLooking: 'double',
        bool: 'bool',
        strings: 'array',
        ints: 'array',
        doubles: 'array',
        bools: 'array',
        unicode: 'string',
      });
      assert.equal(attrs.int, 120);
      assert.equal(attrs.negative, -7);
      assert.equal(attrs.double, 0.7);
      assert.equal(attrs.wholeLooking, 2.5e-8);
      assert.equal(attrs.bool, false);
      assert.equal(attrs.unicode, 'café ☕ 日本');
      assert.deepEqual(attrs.strings, ['beta', 'coffee']);
      assert.deepEqual(attrs.doubles, [0.5, 1.5]);
      const ints = r!.attributes.find((kv) => kv.key === 'ints')!.value;
      assert.deepEqual(arrayElementTypes(ints), ['int', 'int', 'int']);
      assert.deepEqual(arrayElementTypes(r!.attributes.find((kv) => kv.key === 'doubles')!.value), ['double', 'double']);
      assert.equal(attributeType(r!.attributes, 'int'), 'int');
      assert.equal(attributeType(r!.attributes, 'missing'), undefined);
      if (encoding === 'protobuf') assert.equal(attrs.big, '1152921504606846976', 'int64 beyond 2^53 stays exact (as a decimal string)');
      else assert.equal(Number(attrs.big), 2 ** 60);
    });

    test(`${encoding}: events with names, exact times and typed attributes`, () => {
      const [c] = allSpans(encoding, [{ span: child, resource: R1 }]);
      assert.equal(c!.events.length, 2);
      const [retry, first] = c!.events;
      assert.equal(retry!.name, 'llm.retry');
      assert.equal(retry!.timeUnixNano, '1732700000150000000');
      assert.deepEqual(flattenAttributes(retry!.attributes), { attempt: 2, backoff: 0.25 });
      assert.deepEqual(attributeTypes(retry!.attributes), { attempt: 'int', backoff: 'double' });
      assert.equal(first!.name, 'llm.first_token');
      assert.equal(first!.timeUnixNano, '999999999');
      assert.deepEqual(first!.attributes, []);
    });

    test(`${encoding}: spans group by resource identity, scope name and version on each group`, () => {
      const R1again: Resource = { attributes: { ...R1.attributes } }; // equal, but another hello
      const body = encodeTraces(
        [
          { span: root, resource: R1 },
          { span: tiny, resource: R2 },
          { span: child, resource: R1 },
          { span: { ...tiny, spanId: 'c'.repeat(16) }, resource: R1again },
        ],
        { encoding, scope: SCOPE },
      );
      const decoded = decodeTraceRequest(body, encoding);
      assert.equal(decoded.resourceSpans.length, 3);
      assert.equal(countSpans(decoded), 4);
      const byService = decoded.resourceSpans.map((rs) => ({
        resource: flattenAttributes(rs.resource.attributes),
        types: attributeTypes(rs.resource.attributes),
        scopes: rs.scopeSpans.map((ss) => ({ ...ss.scope, spans: ss.spans.map((s) => s.spanId) })),
      }));
      assert.deepEqual(byService[0]!.resource, { 'service.name': 'one', 'service.version': '1.4.2', 'host.cores': 8 });
      assert.equal(byService[0]!.types['host.cores'], 'int');
      assert.equal(byService[0]!.scopes.length, 1, 'one ScopeSpans per resource');
      assert.equal(byService[0]!.scopes[0]!.name, 'dspy-o11y');
      assert.equal(byService[0]!.scopes[0]!.version, '1.2.3');
      assert.deepEqual(byService[0]!.scopes[0]!.spans, [root.spanId, child.spanId]);
      assert.deepEqual(byService[1]!.resource, { 'service.name': 'two' });
      assert.deepEqual(byService[1]!.scopes[0]!.spans, [tiny.spanId]);
      assert.deepEqual(byService[2]!.scopes[0]!.spans, ['c'.repeat(16)]);
    });
  }

  test('protobuf and JSON decode to the same normalized request (up to int64 > 2^53)', () => {
    const input: EncodableSpan[] = [
      { span: { ...root, attributes: { ...root.attributes, big: 1 } }, resource: R1 },
      { span: child, resource: R1 },
      { span: tiny, resource: R2 },
    ];
    const pb = decodeTraceRequestProtobuf(encodeTraces(input, { encoding: 'protobuf', scope: SCOPE }));
    const js = decodeTraceRequestJson(encodeTraces(input, { encoding: 'json', scope: SCOPE }), { strictFieldNames: true });
    assert.deepEqual(pb, js);
  });

  test('nsToHrTime is exact and tolerant of junk', () => {
    assert.deepEqual(nsToHrTime('1732700000123456789'), [1732700000, 123456789]);
    assert.deepEqual(nsToHrTime('18446744073709551615'), [18446744073, 709551615]);
    assert.deepEqual(nsToHrTime('999999999'), [0, 999999999]);
    assert.deepEqual(nsToHrTime('1000000000'), [1, 0]);
    assert.deepEqual(nsToHrTime('nope'), [0, 0]);
  });

  test('nsToHrTime gives what the regex-and-slices version gave, for every shape of input', () => {
    const reference = (ns: string): [number, number] => {
      if (!/^[0-9]{1,20}$/.test(ns)) return [0, 0];
      return ns.length <= 9 ? [0, Number(ns)] : [Number(ns.slice(0, -9)), Number(ns.slice(-9))];
    };
    const inputs = ['', '0', '00', '7', '000000000', '0000000001', '123456789', '1234567890', '99999999999999999999', '100000000000000000000', '12a', ' 12', '12 ', '-1', '+1', '1e9', '1.5', '12\n', '١٢٣', '9'.repeat(21)];
    for (let len = 1; len <= 21; len++) inputs.push('1'.repeat(len), `${len % 10}`.padStart(len, '0'), '9'.repeat(len - 1) + 'x');
    for (const ns of inputs) assert.deepEqual(nsToHrTime(ns), reference(ns), JSON.stringify(ns));
    // Not strings (ingest validates decimal strings; the type says string): [0, 0] too.
    for (const v of [1732700000123456789, 42, undefined, null, true]) assert.deepEqual(nsToHrTime(v as unknown as string), [0, 0], String(v));
  });

  test('an empty batch encodes to an empty request', () => {
    for (const encoding of ENCODINGS) {
      const decoded = decodeTraceRequest(encodeTraces([], { encoding, scope: SCOPE }), encoding);
      assert.equal(countSpans(decoded), 0);
    }
  });
});

describe('OTLP/JSON decoding', () => {
  const jsonSpan = (over: Record<string, unknown> = {}) => ({
    traceId: '4BF92F3577B34DA6A3CE929D0E0E4736',
    spanId: '00F067AA0BA902B7',
    parentSpanId: '',
    name: 'x',
    kind: 'SPAN_KIND_SERVER',
    startTimeUnixNano: 1732700000,
    endTimeUnixNano: '1732700000123456789',
    status: { code: 'STATUS_CODE_ERROR', message: 'bad' },
    attributes: [
      { key: 'i', value: { intValue: '9007199254740993' } },
      { key: 'n', value: { intValue: 12 } },
      { key: 'd', value: { doubleValue: 1 } },
      { key: 'kv', value: { kvlistValue: { values: [{ key: 'a', value: { stringValue: 'b' } }] } } },
      { key: 'bytes', value: { bytesValue: Buffer.from([1, 2, 255]).toString('base64') } },
      { key: 'empty', value: {} },
    ],
    ...over,
  });
  const request = (spans: unknown[]) => ({ resourceSpans: [{ resource: { attributes: [] }, scopeSpans: [{ scope: { name: 's' }, spans }] }] });

  test('hex ids are lowercased, empty parent → undefined, enum names and numbers, int64 strings exact', () => {
    const d = decodeTraceRequestJson(JSON.stringify(request([jsonSpan()])));
    const s = d.resourceSpans[0]!.scopeSpans[0]!.spans[0]!;
    assert.equal(s.traceId, '4bf92f3577b34da6a3ce929d0e0e4736');
    assert.equal(s.spanId, '00f067aa0ba902b7');
    assert.equal(s.parentSpanId, undefined);
    assert.equal(s.kind, 2);
    assert.deepEqual(s.status, { code: 2, message: 'bad' });
    assert.equal(s.startTimeUnixNano, '1732700000');
    const types = attributeTypes(s.attributes);
    assert.deepEqual(types, { i: 'int', n: 'int', d: 'double', kv: 'kvlist', bytes: 'bytes', empty: 'empty' });
    const flat = flattenAttributes(s.attributes);
    assert.equal(flat.i, '9007199254740993');
    assert.equal(s.attributes[0]!.value.type === 'int' && s.attributes[0]!.value.value, 9007199254740993n);
    assert.equal(flat.n, 12);
    assert.deepEqual(flat.kv, { a: 'b' });
    assert.equal(flat.bytes, Buffer.from([1, 2, 255]).toString('base64'));
    assert.equal(flat.empty, null);
  });

  test('snake_case field names: an alias by default, an error when strict (Langfuse would read nothing)', () => {
    const snake = { resource_spans: [{ scope_spans: [{ spans: [{ trace_id: 'a'.repeat(32), span_id: 'b'.repeat(16), name: 'n', start_time_unix_nano: '7' }] }] }] };
    const lenient = decodeTraceRequestJson(snake);
    assert.equal(lenient.resourceSpans[0]!.scopeSpans[0]!.spans[0]!.startTimeUnixNano, '7');
    assert.throws(() => decodeTraceRequestJson(snake, { strictFieldNames: true }), (e: unknown) => e instanceof OtlpDecodeError && /lowerCamelCase.*resource_spans/.test(e.message));
    const nested = request([{ ...jsonSpan(), parent_span_id: 'c'.repeat(16) }]);
    assert.throws(() => decodeTraceRequestJson(nested, { strictFieldNames: true }), /parent_span_id/);
  });

  const bad: [string, unknown, RegExp][] = [
    ['not JSON', '{"resourceSpans": [', /not JSON/],
    ['not an object', '[1,2]', /must be a JSON object/],
    ['resourceSpans not an array', { resourceSpans: {} }, /resourceSpans must be an array/],
    ['spans not an array', { resourceSpans: [{ scopeSpans: [{ spans: 'x' }] }] }, /spans must be an array/],
    ['attributes not an array', request([jsonSpan({ attributes: { a: 1 } })]), /attributes must be an array/],
    ['events not an array', request([jsonSpan({ events: {} })]), /events must be an array/],
    ['missing traceId', request([jsonSpan({ traceId: undefined })]), /traceId is missing/],
    ['missing spanId', request([jsonSpan({ spanId: '' })]), /spanId is missing/],
    ['short spanId', request([jsonSpan({ spanId: 'abc' })]), /spanId must be 16 hex/],
    ['base64 traceId', request([jsonSpan({ traceId: Buffer.alloc(16, 7).toString('base64') })]), /traceId must be 32 hex/],
    ['malformed parentSpanId', request([jsonSpan({ parentSpanId: 'zz'.repeat(8) })]), /parentSpanId/],
    ['time not a number', request([jsonSpan({ startTimeUnixNano: 'yesterday' })]), /startTimeUnixNano/],
    ['time above 2^64', request([jsonSpan({ endTimeUnixNano: '18446744073709551616' })]), /64 bits/],
    ['bad status code', request([jsonSpan({ status: { code: 7 } })]), /status\.code/],
    ['int64 out of range', request([jsonSpan({ attributes: [{ key: 'k', value: { intValue: '9223372036854775808' } }] })]), /int64/],
    ['bool not a bool', request([jsonSpan({ attributes: [{ key: 'k', value: { boolValue: 'yes' } }] })]), /boolValue/],
  ];
  for (const [what, body, message] of bad) {
    test(`malformed: ${what} → OtlpDecodeError`, () => {
      assert.throws(
        () => decodeTraceRequestJson(typeof body === 'string' ? body : JSON.stringify(body)),
        (e: unknown) => e instanceof OtlpDecodeError && message.test(e.message),
      );
    });
  }

  test('invalid UTF-8 and absurd nesting are clear errors', () => {
    assert.throws(() => decodeTraceRequestJson(new Uint8Array([0x7b, 0xff, 0xfe, 0x7d])), /UTF-8/);
    let v: unknown = { stringValue: 'leaf' };
    for (let i = 0; i < MAX_ANY_VALUE_DEPTH + 5; i++) v = { arrayValue: { values: [v] } };
    assert.throws(() => decodeTraceRequestJson(request([jsonSpan({ attributes: [{ key: 'deep', value: v }] })])), (e: unknown) => e instanceof OtlpDecodeError && /nest deeper/.test(e.message));
  });

  test('content types', () => {
    assert.equal(encodingOfContentType('application/json; charset=utf-8'), 'json');
    assert.equal(encodingOfContentType('application/x-protobuf'), 'protobuf');
    assert.equal(encodingOfContentType('text/plain'), undefined);
    assert.equal(encodingOfContentType(undefined), undefined);
  });
});

describe('protobuf decoding of hostile input', () => {
  const Req = exportTraceServiceRequestType();
  const good = () =>
    encodeTraces([{ span: root, resource: R1 }, { span: child, resource: R1 }], { encoding: 'protobuf', scope: SCOPE });

  test('an empty body is an empty request', () => {
    assert.equal(countSpans(decodeTraceRequestProtobuf(new Uint8Array(0))), 0);
  });

  test('every truncation of a valid body throws OtlpDecodeError or decodes, never anything else', () => {
    const body = good();
    let threw = 0;
    for (let n = 1; n < body.length; n++) {
      try {
        decodeTraceRequestProtobuf(body.subarray(0, n));
      } catch (err) {
        assert.ok(err instanceof OtlpDecodeError, `truncated at ${n}: ${(err as Error).name}`);
        threw++;
      }
    }
    assert.ok(threw > body.length / 2, 'most truncations are detected');
  });

  test('random bytes and bit flips: only OtlpDecodeError, quickly', () => {
    // CPU time, not wall-clock time: a loaded machine may hold the process meanwhile.
    const started = process.cpuUsage();
    const body = good();
    for (let i = 0; i < 3000; i++) {
      let input: Uint8Array;
      if (i % 2 === 0) input = randomBytes(1 + (i % 300));
      else {
        input = Uint8Array.from(body);
        input[i % input.length] ^= 1 << (i % 8);
      }
      try {
        decodeTraceRequestProtobuf(input);
      } catch (err) {
        assert.ok(err instanceof OtlpDecodeError, `${(err as Error).name}: ${(err as Error).message}`);
      }
    }
    const { user, system } = process.cpuUsage(started);
    assert.ok((user + system) / 1000 < 5000, `${Math.round((user + system) / 1000)} ms of CPU`);
  });

  test('JSON sent as protobuf is an error, not a silent empty request or a crash', () => {
    const js = encodeTraces([{ span: root, resource: R1 }], { encoding: 'json', scope: SCOPE });
    assert.throws(() => decodeTraceRequestProtobuf(js), OtlpDecodeError);
  });

  test('ids of the wrong length, a missing span id, deep AnyValue nesting: clear errors', () => {
    const ok = { traceId: Buffer.alloc(16, 1), spanId: Buffer.alloc(8, 2), name: 'n' };
    const enc = (span: Record<string, unknown>) => Req.encode(Req.fromObject({ resourceSpans: [{ scopeSpans: [{ spans: [span] }] }] })).finish();
    assert.equal(decodeTraceRequestProtobuf(enc(ok)).resourceSpans[0]!.scopeSpans[0]!.spans[0]!.spanId, '0202020202020202');
    assert.throws(() => decodeTraceRequestProtobuf(enc({ ...ok, spanId: Buffer.alloc(0) })), /spanId is missing/);
    assert.throws(() => decodeTraceRequestProtobuf(enc({ ...ok, traceId: Buffer.alloc(8, 1) })), /traceId must be 16 bytes/);
    assert.throws(() => decodeTraceRequestProtobuf(enc({ ...ok, parentSpanId: Buffer.alloc(3, 1) })), /parentSpanId/);
    let v: Record<string, unknown> = { stringValue: 'leaf' };
    for (let i = 0; i < MAX_ANY_VALUE_DEPTH + 5; i++) v = { arrayValue: { values: [v] } };
    assert.throws(() => decodeTraceRequestProtobuf(enc({ ...ok, attributes: [{ key: 'deep', value: v }] })), /nest deeper/);
  });

  test('kvlist, bytes and negative / huge int64 values written by another encoder decode exactly', () => {
    const body = Req.encode(
      Req.fromObject({
        resourceSpans: [
          {
            scopeSpans: [
              {
                spans: [
                  {
                    traceId: Buffer.alloc(16, 0xab),
                    spanId: Buffer.alloc(8, 0xcd),
                    name: 'other-sdk',
                    startTimeUnixNano: '1732700000123456789',
                    attributes: [
                      { key: 'min', value: { intValue: '-9223372036854775808' } },
                      { key: 'neg', value: { intValue: -42 } },
                      { key: 'kv', value: { kvlistValue: { values: [{ key: 'x', value: { doubleValue: 1.5 } }] } } },
                      { key: 'raw', value: { bytesValue: Buffer.from('hi') } },
                    ],
                  },
                ],
              },
            ],
          },
        ],
      }),
    ).finish();
    const s = decodeTraceRequestProtobuf(body).resourceSpans[0]!.scopeSpans[0]!.spans[0]!;
    assert.equal(s.startTimeUnixNano, '1732700000123456789');
    assert.equal(s.endTimeUnixNano, '0');
    const flat = flattenAttributes(s.attributes);
    assert.equal(flat.min, '-9223372036854775808');
    assert.equal(flat.neg, -42);
    assert.deepEqual(flat.kv, { x: 1.5 });
    assert.equal(flat.raw, Buffer.from('hi').toString('base64'));
  });
});

describe('protobuf wire format and request size, checked before decoding', () => {
  const Req = exportTraceServiceRequestType();
  const oneSpan = () =>
    Req.encode(Req.fromObject({ resourceSpans: [{ scopeSpans: [{ spans: [{ traceId: Buffer.alloc(16, 1), spanId: Buffer.alloc(8, 2), name: 'n' }] }] }] })).finish();
  /** A base-128 varint of any size. */
  const varint = (n: bigint) => {
    const out: number[] = [];
    while (n > 127n) {
      out.push(Number(n & 127n) | 128);
      n >>= 7n;
    }
    out.push(Number(n));
    return Buffer.from(out);
  };

  test('a length of 2^32 + n is refused, not read as n (protobufjs keeps a varint\'s low 32 bits)', () => {
    const body = Buffer.from(oneSpan());
    assert.equal(body[0], 0x0a); // resource_spans, length-delimited
    const inner = body.subarray(2); // a one-byte length: the rest is the ResourceSpans
    assert.equal(body[1], inner.length);
    assert.equal(countSpans(decodeTraceRequestProtobuf(body)), 1);
    const inflated = Buffer.concat([Buffer.from([0x0a]), varint((1n << 32n) + BigInt(inner.length)), inner]);
    assert.throws(() => decodeTraceRequestProtobuf(inflated), (e: unknown) => e instanceof OtlpDecodeError && /length 4294967\d+ at offset 0 runs past/.test(e.message));
  });

  test('field number 0 and a known field with the wrong wire type are refused, not skipped or misread', () => {
    const body = Buffer.from(oneSpan());
    assert.throws(() => decodeTraceRequestProtobuf(Buffer.concat([Buffer.from([0x00, 0x01]), body])), /invalid field number 0/);
    // resource_spans (field 1) as a varint instead of a message.
    assert.throws(() => decodeTraceRequestProtobuf(Buffer.concat([body, Buffer.from([0x08, 0x01])])), /ExportTraceServiceRequest field 1 has wire type 0, expected 2/);
    // unknown fields of every wire type are still skipped
    const unknown = Buffer.concat([body, Buffer.from([0xf8, 0x07, 0x01]), Buffer.from([0xf9, 0x07]), Buffer.alloc(8), Buffer.from([0xfa, 0x07, 0x01, 0x00]), Buffer.from([0xfd, 0x07]), Buffer.alloc(4)]);
    assert.equal(countSpans(decodeTraceRequestProtobuf(unknown)), 1);
  });

  test(`a body of more than ${MAX_REQUEST_ELEMENTS} messages is OtlpTooLargeError however small (2 bytes per empty attribute)`, () => {
    // One span holding MAX+1 empty attributes (Span field 9, length 0).
    const attrs = Buffer.alloc((MAX_REQUEST_ELEMENTS + 1) * 2);
    for (let i = 0; i < attrs.length; i += 2) attrs[i] = 0x4a;
    const s = Buffer.concat([Buffer.from([0x0a, 0x10]), Buffer.alloc(16, 1), Buffer.from([0x12, 0x08]), Buffer.alloc(8, 2), attrs]);
    const ss = Buffer.concat([Buffer.from([0x12]), varint(BigInt(s.length)), s]);
    const rs = Buffer.concat([Buffer.from([0x12]), varint(BigInt(ss.length)), ss]);
    const body = Buffer.concat([Buffer.from([0x0a]), varint(BigInt(rs.length)), rs]);
    assert.ok(body.length < 2.1e6);
    assert.throws(() => decodeTraceRequestProtobuf(body), (e: unknown) => e instanceof OtlpTooLargeError && /more than 1000000/.test(e.message));
    const json = '{"resourceSpans":[' + '{},'.repeat(MAX_REQUEST_ELEMENTS) + '{}]}';
    assert.throws(() => decodeTraceRequestJson(json), (e: unknown) => e instanceof OtlpTooLargeError);
    // braces inside strings are not counted
    const jsonSpanWithBraces = { traceId: '1'.repeat(32), spanId: '2'.repeat(16), name: '{['.repeat(MAX_REQUEST_ELEMENTS) };
    assert.equal(countSpans(decodeTraceRequestJson(JSON.stringify({ resourceSpans: [{ scopeSpans: [{ spans: [jsonSpanWithBraces] }] }] }))), 1);
  });
});

describe('OTLP/JSON numbers beyond 2^53', () => {
  const span = (over: Record<string, unknown>) =>
    `{"resourceSpans":[{"scopeSpans":[{"spans":[${JSON.stringify({ traceId: '1'.repeat(32), spanId: '2'.repeat(16), name: 'n', ...over })}]}]}]}`;
  const attr = (raw: string) => decodeTraceRequestJson(span({}).replace('"name":"n"', `"name":"n","attributes":[{"key":"k","value":{"intValue":${raw}}}]`)).resourceSpans[0]!.scopeSpans[0]!.spans[0]!.attributes[0]!.value;

  test('an intValue JSON number beyond 2^53 is an exact bigint, as from protobuf; beyond int64 a double', () => {
    assert.deepEqual(attr('1152921504606846976'), { type: 'int', value: 2n ** 60n });
    assert.deepEqual(attr('-9223372036854775808'), { type: 'int', value: -(2n ** 63n) });
    assert.deepEqual(attr('9007199254740991'), { type: 'int', value: 2 ** 53 - 1 });
    // what the official JS exporter sends for an attribute of 1e300 (its protobuf exporter sends a double)
    assert.deepEqual(attr('1e300'), { type: 'double', value: 1e300 });
    assert.deepEqual(attr('9223372036854775808'), { type: 'double', value: 2 ** 63 });
  });

  test('a time given as a JSON number of 2^64 or more is refused like the same decimal string', () => {
    assert.throws(() => decodeTraceRequestJson(span({ startTimeUnixNano: 1e21 })), /startTimeUnixNano does not fit in 64 bits/);
    assert.throws(() => decodeTraceRequestJson(span({ endTimeUnixNano: 2 ** 64 })), /endTimeUnixNano does not fit in 64 bits/);
    assert.equal(decodeTraceRequestJson(span({ startTimeUnixNano: 2 ** 63 })).resourceSpans[0]!.scopeSpans[0]!.spans[0]!.startTimeUnixNano, '9223372036854775808');
  });
});

describe('OTLP/JSON encoding of numbers beyond 2^53', () => {
  // A Collector reads OTLP/JSON with protojson: an intValue must be an int64 (a decimal string, or
  // an integer literal in range); `1e+21` or `9223372036854776000` makes it refuse the whole batch.
  const INT64 = [-(2n ** 63n), 2n ** 63n - 1n] as const;
  const span: SpanRecord = { ...tiny, attributes: { huge: 1e21, past: 2 ** 63, min: -(2 ** 63), big: 2 ** 60, list: [2 ** 63, 1], small: 5 } };

  test('every intValue written is an int64, and the request decodes as its protobuf twin does', () => {
    const input: EncodableSpan[] = [{ span, resource: R1 }];
    const json = Buffer.from(encodeTraces(input, { encoding: 'json', scope: SCOPE })).toString();
    const ints = [...json.matchAll(/"intValue":("?)([^,}"]*)\1/g)].map((m) => m[2]!);
    assert.ok(ints.length > 0);
    for (const text of ints) {
      assert.match(text, /^-?[0-9]+$/, `intValue ${text} is an integer literal`);
      assert.ok(BigInt(text) >= INT64[0] && BigInt(text) <= INT64[1], `intValue ${text} fits in int64`);
    }
    const pb = decodeTraceRequestProtobuf(encodeTraces(input, { encoding: 'protobuf', scope: SCOPE }));
    assert.deepEqual(decodeTraceRequestJson(json, { strictFieldNames: true }), pb);
  });
});

describe('OTLP/JSON from the official JS exporter: non-finite numbers', () => {
  test('NaN and ±Infinity attributes (sent as `doubleValue: null`) do not cost the batch: null oneof members are unset', () => {
    const exporter = new InMemorySpanExporter();
    const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
    const tracer = provider.getTracer('t');
    tracer.startSpan('fine', { attributes: { a: 1 } }).end();
    tracer.startSpan('ratio', { attributes: { ratio: 0 / 0, inf: Infinity, kept: 'yes', list: [1, NaN] } }).end();
    const body = JsonTraceSerializer.serializeRequest(exporter.getFinishedSpans())!;
    assert.match(Buffer.from(body).toString(), /"doubleValue":null/, 'what JSON.stringify makes of NaN');
    const spans = decodeTraceRequestJson(body).resourceSpans.flatMap((rs) => rs.scopeSpans.flatMap((ss) => ss.spans));
    assert.deepEqual(spans.map((s) => s.name), ['fine', 'ratio']);
    const ratio = spans[1]!;
    assert.deepEqual(attributeTypes(ratio.attributes), { ratio: 'empty', inf: 'empty', kept: 'string', list: 'array' });
    assert.deepEqual(arrayElementTypes(ratio.attributes.find((kv) => kv.key === 'list')!.value), ['int', 'empty']);
    // proto3 JSON: null is the field's absence, for every member of AnyValue's oneof.
    const value = (v: string) => decodeTraceRequestJson(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"${'1'.repeat(32)}","spanId":"${'2'.repeat(16)}","attributes":[{"key":"k","value":${v}}]}]}]}]}`).resourceSpans[0]!.scopeSpans[0]!.spans[0]!.attributes[0]!.value;
    for (const member of ['stringValue', 'boolValue', 'intValue', 'doubleValue', 'arrayValue', 'kvlistValue', 'bytesValue']) {
      assert.deepEqual(value(`{"${member}":null}`), { type: 'empty' }, member);
    }
    assert.deepEqual(value('{"doubleValue":null,"intValue":"5"}'), { type: 'int', value: 5 });
  });
});
