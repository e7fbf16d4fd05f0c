/**
 * The neutral → Langfuse mapping (DESIGN §6), row by row, through the real encoder and decoder
 * so the OTLP types Langfuse sees (int vs double vs string) are asserted, not just JS values.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Attributes, SpanRecord } from '@dspy-o11y/proto';
import { LangfuseMapper, REMEMBERED_BYTES_MAX, TRACE_BYTES_MAX, eventSpanId, sanitizeEnvironment, type RepairReason } from '../src/export/langfuse-map.js';
import { encodeTraces, type EncodableSpan } from '../src/export/otlp-encode.js';
import { decodeTraceRequest } from '../src/otlp/decode.js';
import { flatten, langfuseWouldDrop, type RecordedSpan } from './support/fake-langfuse.js';
import type { Resource } from '../src/model.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const RESOURCE: Resource = { attributes: { 'service.name': 'coffee-shop', 'service.version': '1.4.2', 'deployment.environment.name': 'production' } };
const BARE: Resource = { attributes: {} };

let nextId = 1;
const sid = () => (nextId++).toString(16).padStart(16, '0');

function span(attributes: Attributes, extra: Partial<SpanRecord> = {}): SpanRecord {
  return {
    v: 1,
    type: 'span',
    traceId: TRACE,
    spanId: sid(),
    parentSpanId: 'ffffffffffffffff',
    name: 'llm.generate',
    startTimeUnixNano: '1732700000123456789',
    endTimeUnixNano: '1732700000223456789',
    attributes,
    ...extra,
  };
}

function mapper() {
  const repairs: RepairReason[] = [];
  const m = new LangfuseMapper({ onRepair: (r) => repairs.push(r) });
  return { m, repairs };
}

/** map → encode (protobuf) → decode → flattened, as Langfuse would read it. */
function roundTrip(m: LangfuseMapper, spans: SpanRecord[], resource: Resource = RESOURCE): RecordedSpan[] {
  const mapped = m.map(spans.map((s): EncodableSpan => ({ span: s, resource })));
  const body = encodeTraces(mapped, { encoding: 'protobuf', scope: { name: 'dspy-o11y', version: '0.1.0' } });
  return flatten(decodeTraceRequest(body, 'protobuf'), 0);
}

function one(attributes: Attributes, extra: Partial<SpanRecord> = {}, resource: Resource = RESOURCE) {
  const { m, repairs } = mapper();
  const [s] = roundTrip(m, [span(attributes, extra)], resource);
  return { s: s!, repairs };
}

describe('langfuse mapping, row by row', () => {
  test("dspy.app_root (the SDK's span whose parent lives elsewhere) → langfuse.internal.is_app_root, as Langfuse's own SDKs mark it; not on a true root, only for true", () => {
    const top = one({ 'dspy.app_root': true }).s.attributes;
    assert.equal(top['langfuse.internal.is_app_root'], true);
    assert.equal('dspy.app_root' in top, false, 'not forwarded as metadata');
    const root = one({ 'dspy.app_root': true }, { parentSpanId: undefined }).s.attributes;
    assert.equal('langfuse.internal.is_app_root' in root, false, 'a root span is the root already');
    for (const v of ['true', 1, false]) {
      const a = one({ 'dspy.app_root': v }).s.attributes;
      assert.equal('langfuse.internal.is_app_root' in a, false, String(v));
      assert.equal('dspy.app_root' in a, false, String(v));
    }
  });

  test('dspy.observation.type → langfuse.observation.type; an unknown type is dropped and counted', () => {
    assert.equal(one({ 'dspy.observation.type': 'generation' }).s.attributes['langfuse.observation.type'], 'generation');
    for (const t of ['span', 'event', 'agent', 'tool', 'chain', 'retriever', 'embedding', 'evaluator', 'guardrail']) {
      assert.equal(one({ 'dspy.observation.type': t }).s.attributes['langfuse.observation.type'], t);
    }
    const bad = one({ 'dspy.observation.type': 'banana' });
    assert.equal(bad.s.attributes['langfuse.observation.type'], undefined);
    assert.deepEqual(bad.repairs, ['observation_type_invalid']);
  });

  test('input/output → observation input/output; on the root span also trace input/output', () => {
    const child = one({ 'dspy.input': '{"q":1}', 'dspy.output': '"a"' }).s;
    assert.equal(child.attributes['langfuse.observation.input'], '{"q":1}');
    assert.equal(child.attributes['langfuse.observation.output'], '"a"');
    assert.equal(child.attributes['langfuse.trace.input'], undefined);
    assert.equal(child.attributes['dspy.input'], undefined, 'translated keys are not duplicated into metadata');
    const root = one({ 'dspy.input': '{"q":1}', 'dspy.output': '"a"' }, { parentSpanId: undefined }).s;
    assert.equal(root.attributes['langfuse.trace.input'], '{"q":1}');
    assert.equal(root.attributes['langfuse.trace.output'], '"a"');
    assert.equal(root.attributes['langfuse.observation.input'], '{"q":1}');
    // A non-string input still reaches Langfuse as a JSON string.
    assert.equal(one({ 'dspy.input': 42 }).s.attributes['langfuse.observation.input'], '42');
    assert.equal(one({ 'dspy.input': 42 }).s.attributeTypes['langfuse.observation.input'], 'string');
  });

  test('trace name, tags (string array), metadata.<k>, user and session', () => {
    const { s } = one({
      'dspy.trace.name': 'coffee-order',
      'dspy.trace.tags': ['beta', 'coffee'],
      'dspy.trace.metadata.shop': 'downtown',
      'dspy.trace.metadata.table': 4,
      'user.id': 'u-1',
      'session.id': 's-1',
    });
    assert.equal(s.attributes['langfuse.trace.name'], 'coffee-order');
    assert.deepEqual(s.attributes['langfuse.trace.tags'], ['beta', 'coffee']);
    assert.equal(s.attributeTypes['langfuse.trace.tags'], 'array');
    assert.equal(s.attributes['langfuse.trace.metadata.shop'], 'downtown');
    assert.equal(s.attributes['langfuse.trace.metadata.table'], 4);
    assert.equal(s.attributes['langfuse.user.id'], 'u-1');
    assert.equal(s.attributes['langfuse.session.id'], 's-1');
    for (const k of ['dspy.trace.name', 'dspy.trace.tags', 'dspy.trace.metadata.shop']) assert.equal(s.attributes[k], undefined, k);
    // The OpenTelemetry keys stay (Langfuse understands them too).
    assert.equal(s.attributes['user.id'], 'u-1');
  });

  test('tags that are not a string array are made one, counted', () => {
    const a = one({ 'dspy.trace.tags': 'solo' });
    assert.deepEqual(a.s.attributes['langfuse.trace.tags'], ['solo']);
    assert.deepEqual(a.repairs, ['tags_coerced']);
    const b = one({ 'dspy.trace.tags': '["x","y"]' });
    assert.deepEqual(b.s.attributes['langfuse.trace.tags'], ['x', 'y']);
    const c = one({ 'dspy.trace.tags': [1, 2] });
    assert.deepEqual(c.s.attributes['langfuse.trace.tags'], ['1', '2']);
  });

  test('usage → usage_details: a JSON object of integers', () => {
    const { s, repairs } = one({ 'gen_ai.usage.input_tokens': 120, 'gen_ai.usage.output_tokens': 30, 'gen_ai.usage.total_tokens': 150 });
    assert.equal(s.attributeTypes['langfuse.observation.usage_details'], 'string');
    const usage = JSON.parse(String(s.attributes['langfuse.observation.usage_details']));
    assert.deepEqual(usage, { input: 120, output: 30, total: 150 });
    for (const v of Object.values(usage)) assert.ok(Number.isInteger(v));
    assert.deepEqual(repairs, []);
    assert.equal(s.attributes['gen_ai.usage.input_tokens'], undefined, 'raw usage keys are not forwarded');
  });

  test('usage: cache counts under the keys of Langfuse\'s price table, input without them (Langfuse prices each part at its own rate)', () => {
    const { s, repairs } = one({
      'gen_ai.usage.input_tokens': 1000, 'gen_ai.usage.output_tokens': 50, 'gen_ai.usage.total_tokens': 1050,
      'gen_ai.usage.cache_read.input_tokens': 600, 'gen_ai.usage.cache_creation.input_tokens': 100,
    });
    assert.deepEqual(JSON.parse(String(s.attributes['langfuse.observation.usage_details'])), { input: 300, output: 50, total: 1050, input_cache_read: 600, input_cache_creation: 100 });
    assert.deepEqual(repairs, []);
    assert.equal(s.attributes['gen_ai.usage.cache_read.input_tokens'], undefined, 'raw cache keys are not forwarded');
    // OpenAI reports reads only; an input smaller than the cache counts (a sender's own convention) is left as it is.
    const openai = one({ 'gen_ai.usage.input_tokens': 200, 'gen_ai.usage.output_tokens': 10, 'gen_ai.usage.cache_read.input_tokens': 128 });
    assert.deepEqual(JSON.parse(String(openai.s.attributes['langfuse.observation.usage_details'])), { input: 72, output: 10, total: 210, input_cache_read: 128 });
    const odd = one({ 'gen_ai.usage.input_tokens': 5, 'gen_ai.usage.cache_read.input_tokens': 9 });
    assert.deepEqual(JSON.parse(String(odd.s.attributes['langfuse.observation.usage_details'])), { input: 5, input_cache_read: 9 });
    const bad = one({ 'gen_ai.usage.input_tokens': 5, 'gen_ai.usage.cache_read.input_tokens': -1 });
    assert.deepEqual(JSON.parse(String(bad.s.attributes['langfuse.observation.usage_details'])), { input: 5 });
    assert.deepEqual(bad.repairs, ['usage_invalid']);
  });

  test('usage: reasoning tokens as Langfuse\'s output_reasoning_tokens, output without them (its buckets are disjoint: each token counted and priced once)', () => {
    const { s, repairs } = one({
      'gen_ai.usage.input_tokens': 100, 'gen_ai.usage.output_tokens': 500, 'gen_ai.usage.total_tokens': 600,
      'gen_ai.usage.reasoning.output_tokens': 448,
    });
    assert.deepEqual(JSON.parse(String(s.attributes['langfuse.observation.usage_details'])), { input: 100, output: 52, total: 600, output_reasoning_tokens: 448 });
    assert.deepEqual(repairs, []);
    assert.equal(s.attributes['gen_ai.usage.reasoning.output_tokens'], undefined, 'the raw reasoning key is not forwarded');
    // An output smaller than the reasoning count (a sender's own convention) is left as it is.
    const odd = one({ 'gen_ai.usage.output_tokens': 5, 'gen_ai.usage.reasoning.output_tokens': 9 });
    assert.deepEqual(JSON.parse(String(odd.s.attributes['langfuse.observation.usage_details'])), { output: 5, output_reasoning_tokens: 9 });
    const bad = one({ 'gen_ai.usage.output_tokens': 5, 'gen_ai.usage.reasoning.output_tokens': -1 });
    assert.deepEqual(JSON.parse(String(bad.s.attributes['langfuse.observation.usage_details'])), { output: 5 });
    assert.deepEqual(bad.repairs, ['usage_invalid']);
  });

  test('usage: negative or fractional values are dropped per key, numeric strings coerced; each counted', () => {
    const { s, repairs } = one({ 'gen_ai.usage.input_tokens': -3, 'gen_ai.usage.output_tokens': 2.5, 'gen_ai.usage.total_tokens': '9' });
    assert.deepEqual(JSON.parse(String(s.attributes['langfuse.observation.usage_details'])), { total: 9 });
    assert.deepEqual(repairs.sort(), ['usage_coerced', 'usage_invalid', 'usage_invalid']);
    // Raw keys gone too, so Langfuse cannot fall back to the invalid values.
    assert.equal(s.attributes['gen_ai.usage.input_tokens'], undefined);
    const none = one({ 'gen_ai.usage.input_tokens': 'lots' });
    assert.equal(none.s.attributes['langfuse.observation.usage_details'], undefined);
    assert.deepEqual(none.repairs, ['usage_invalid']);
  });

  test('cost → cost_details {"total": n} as a JSON number; numeric strings coerced; junk dropped', () => {
    const a = one({ 'gen_ai.usage.cost': 0.000036 });
    assert.deepEqual(JSON.parse(String(a.s.attributes['langfuse.observation.cost_details'])), { total: 0.000036 });
    assert.equal(typeof JSON.parse(String(a.s.attributes['langfuse.observation.cost_details'])).total, 'number');
    assert.deepEqual(a.repairs, []);
    const b = one({ 'gen_ai.usage.cost': '0.25' });
    assert.deepEqual(JSON.parse(String(b.s.attributes['langfuse.observation.cost_details'])), { total: 0.25 });
    assert.deepEqual(b.repairs, ['cost_coerced']);
    for (const junk of ['cheap', -1, '']) {
      const c = one({ 'gen_ai.usage.cost': junk });
      assert.equal(c.s.attributes['langfuse.observation.cost_details'], undefined, String(junk));
      assert.equal(c.s.attributes['gen_ai.usage.cost'], undefined);
      assert.deepEqual(c.repairs, ['cost_invalid']);
    }
  });

  test('model name: the response model wins over the request model', () => {
    assert.equal(
      one({ 'gen_ai.request.model': 'gpt-4o-mini', 'gen_ai.response.model': 'gpt-4o-mini-2024-07-18' }).s.attributes['langfuse.observation.model.name'],
      'gpt-4o-mini-2024-07-18',
    );
    assert.equal(one({ 'gen_ai.request.model': 'gpt-4o-mini' }).s.attributes['langfuse.observation.model.name'], 'gpt-4o-mini');
    assert.equal(one({}).s.attributes['langfuse.observation.model.name'], undefined);
  });

  test('model parameters: JSON of every gen_ai.request.* but the model, with their types', () => {
    const { s } = one({
      'gen_ai.request.model': 'gpt-4o-mini', 'gen_ai.request.temperature': 0.7, 'gen_ai.request.max_tokens': 256, 'gen_ai.request.top_p': 1,
      'gen_ai.request.seed': 42, 'gen_ai.request.stop_sequences': ['\n\n', 'END'], 'gen_ai.request.frequency_penalty': 0.5, 'gen_ai.request.stream': true,
    });
    // Langfuse reads no gen_ai.request.* key once the parameters are given: all of them are here.
    assert.deepEqual(JSON.parse(String(s.attributes['langfuse.observation.model.parameters'])), {
      temperature: 0.7, max_tokens: 256, top_p: 1, seed: 42, stop_sequences: ['\n\n', 'END'], frequency_penalty: 0.5, stream: true,
    });
    assert.equal(s.attributeTypes['gen_ai.request.temperature'], 'double');
    assert.equal(s.attributeTypes['gen_ai.request.max_tokens'], 'int');
    assert.equal(one({}).s.attributes['langfuse.observation.model.parameters'], undefined);
  });

  test('completion start time: unix ns → ISO 8601 (milliseconds); junk dropped and counted', () => {
    const { s } = one({ 'dspy.completion_start_time': '1732700000150000000' });
    assert.equal(s.attributes['langfuse.observation.completion_start_time'], '2024-11-27T09:33:20.150Z');
    assert.equal(s.attributes['dspy.completion_start_time'], undefined);
    const bad = one({ 'dspy.completion_start_time': 'soon' });
    assert.equal(bad.s.attributes['langfuse.observation.completion_start_time'], undefined);
    assert.deepEqual(bad.repairs, ['completion_start_time_invalid']);
  });

  test('level; status error sets ERROR when no level is given; status message → status_message', () => {
    assert.equal(one({ 'dspy.level': 'WARNING' }).s.attributes['langfuse.observation.level'], 'WARNING');
    assert.equal(one({ 'dspy.level': 'debug' }).s.attributes['langfuse.observation.level'], 'DEBUG');
    const err = one({}, { status: { code: 'error', message: '429 from provider' } }).s;
    assert.equal(err.attributes['langfuse.observation.level'], 'ERROR');
    assert.equal(err.attributes['langfuse.observation.status_message'], '429 from provider');
    assert.equal(err.status.code, 2);
    assert.equal(err.status.message, '429 from provider');
    const both = one({ 'dspy.level': 'WARNING' }, { status: { code: 'error', message: 'x' } }).s;
    assert.equal(both.attributes['langfuse.observation.level'], 'WARNING', 'an explicit level wins');
    assert.equal(one({}, { status: { code: 'ok' } }).s.attributes['langfuse.observation.level'], undefined);
    const bad = one({ 'dspy.level': 'LOUD' });
    assert.equal(bad.s.attributes['langfuse.observation.level'], undefined);
    assert.deepEqual(bad.repairs, ['level_invalid']);
  });

  test('prompt name + integer version on generations', () => {
    const { s, repairs } = one({ 'dspy.observation.type': 'generation', 'dspy.prompt.name': 'coffee-agent', 'dspy.prompt.version': 3 });
    assert.equal(s.attributes['langfuse.observation.prompt.name'], 'coffee-agent');
    assert.equal(s.attributes['langfuse.observation.prompt.version'], 3);
    assert.equal(s.attributeTypes['langfuse.observation.prompt.version'], 'int');
    assert.deepEqual(repairs, []);
  });

  test("prompt repairs: '3' → 3; 3.5 or 'v3' → both dropped; lone name dropped; non-generation dropped", () => {
    const coerced = one({ 'dspy.observation.type': 'generation', 'dspy.prompt.name': 'p', 'dspy.prompt.version': '3' });
    assert.equal(coerced.s.attributes['langfuse.observation.prompt.version'], 3);
    assert.equal(coerced.s.attributeTypes['langfuse.observation.prompt.version'], 'int');
    assert.deepEqual(coerced.repairs, ['prompt_version_coerced']);

    // Versions count from 1: Langfuse takes a version of 0 for none and drops the generation.
    for (const v of [3.5, 'v3', 0, '0', -2]) {
      const bad = one({ 'dspy.observation.type': 'generation', 'dspy.prompt.name': 'p', 'dspy.prompt.version': v });
      assert.equal(bad.s.attributes['langfuse.observation.prompt.name'], undefined);
      assert.equal(bad.s.attributes['langfuse.observation.prompt.version'], undefined);
      assert.equal(bad.s.attributes['dspy.prompt.version'], undefined);
      assert.deepEqual(bad.repairs, ['prompt_version_invalid']);
      assert.equal(langfuseWouldDrop(bad.s), undefined);
    }
    const lone = one({ 'dspy.observation.type': 'generation', 'dspy.prompt.name': 'p' });
    assert.equal(lone.s.attributes['langfuse.observation.prompt.name'], undefined);
    assert.deepEqual(lone.repairs, ['prompt_incomplete']);

    const onSpan = one({ 'dspy.observation.type': 'chain', 'dspy.prompt.name': 'p', 'dspy.prompt.version': 1 });
    assert.equal(onSpan.s.attributes['langfuse.observation.prompt.name'], undefined);
    assert.deepEqual(onSpan.repairs, ['prompt_on_non_generation']);

    // No explicit type, but a model: Langfuse infers a generation, so the prompt stays.
    const inferred = one({ 'gen_ai.request.model': 'm', 'dspy.prompt.name': 'p', 'dspy.prompt.version': 2 });
    assert.equal(inferred.s.attributes['langfuse.observation.prompt.version'], 2);
  });

  test('resource: deployment.environment.name → langfuse.environment (sanitised), service.version → langfuse.release', () => {
    const { s } = one({});
    assert.equal(s.attributes['langfuse.environment'], 'production');
    assert.equal(s.attributes['langfuse.release'], '1.4.2');
    assert.equal(s.resource['service.name'], 'coffee-shop');
    const messy = one({}, {}, { attributes: { 'deployment.environment.name': 'Staging EU/West#2' } });
    assert.equal(messy.s.attributes['langfuse.environment'], 'staging-eu-west-2');
    assert.deepEqual(messy.repairs, ['environment_sanitized']);
    assert.equal(sanitizeEnvironment('x'.repeat(50)).length, 40);
    assert.match(sanitizeEnvironment('ÜBER prod!'), /^[a-z0-9_-]+$/);
    assert.equal(one({}, {}, BARE).s.attributes['langfuse.environment'], undefined);
    // Langfuse reads the resource's value when a span has no langfuse.environment and drops the
    // observation when it fails its rule: what cannot be made valid becomes Langfuse's 'default'.
    for (const env of ['!!!', 'langfuse-dev', 'Langfuse', '生产']) {
      const junk = one({}, {}, { attributes: { 'deployment.environment.name': env } });
      assert.equal(junk.s.attributes['langfuse.environment'], 'default', env);
      assert.deepEqual(junk.repairs, ['environment_sanitized'], env);
      assert.equal(langfuseWouldDrop(junk.s), undefined, env);
    }
    // Not a string: its text, if valid.
    const numeric = one({}, {}, { attributes: { 'deployment.environment.name': 7 } });
    assert.equal(numeric.s.attributes['langfuse.environment'], '7');
    assert.equal(langfuseWouldDrop(numeric.s), undefined);
  });

  test("resource: its own langfuse.environment / langfuse.release (Langfuse's Python SDK puts them there) win over deployment.environment.name / service.version, as Langfuse reads them", () => {
    // Langfuse Python SDK v3's resource, merged with OTEL_RESOURCE_ATTRIBUTES.
    const py: Resource = { attributes: { 'service.name': 'py', 'langfuse.environment': 'prod-eu', 'langfuse.release': 'abc123', 'deployment.environment.name': 'production', 'service.version': '1.4.2' } };
    // A span of another instrumentation (translated) and one of the Langfuse SDK (passed unchanged), same resource.
    const { m } = mapper();
    const [translated, own] = roundTrip(m, [span({ 'gen_ai.request.model': 'm' }), span({ 'langfuse.observation.type': 'span' })], py);
    // What Langfuse reads: the span's key, else the resource's, key by key in its order.
    const environmentOf = (s: RecordedSpan) => {
      for (const k of ['langfuse.environment', 'deployment.environment.name', 'deployment.environment']) {
        const v = s.attributes[k] || s.resource[k];
        if (v) return v;
      }
      return 'default';
    };
    const releaseOf = (s: RecordedSpan) => s.attributes['langfuse.release'] ?? s.resource['langfuse.release'];
    assert.equal(environmentOf(own!), 'prod-eu');
    assert.equal(environmentOf(translated!), 'prod-eu', 'one environment for the whole trace, the one the sender gave Langfuse');
    assert.equal(releaseOf(own!), 'abc123');
    assert.equal(releaseOf(translated!), 'abc123');
    // Still sanitized when Langfuse would refuse it (the span's key then wins over the resource's).
    const messy = one({}, {}, { attributes: { 'langfuse.environment': 'Prod EU', 'deployment.environment.name': 'production' } });
    assert.equal(messy.s.attributes['langfuse.environment'], 'prod-eu');
    assert.deepEqual(messy.repairs, ['environment_sanitized']);
  });

  test('resource: a service.version that is not a string is also sent as the string langfuse.version (Langfuse drops a non-string version)', () => {
    const { s, repairs } = one({}, {}, { attributes: { 'service.version': 3 } });
    assert.equal(s.resource['service.version'], 3, 'the resource itself is left as sent');
    assert.equal(s.attributes['langfuse.version'], '3');
    assert.equal(s.attributes['langfuse.release'], '3');
    assert.deepEqual(repairs, ['version_coerced']);
    assert.equal(langfuseWouldDrop(s), undefined);
    // A string version needs nothing more.
    assert.equal(one({}).s.attributes['langfuse.version'], undefined);
  });

  test('untranslated attributes pass through with their types (they become Langfuse metadata)', () => {
    const { s } = one({ 'dspy.module': 'ReAct', 'react.iteration': 1, 'retry.enabled': true, scores: [1, 2.5], ratio: 0.5 });
    assert.equal(s.attributes['dspy.module'], 'ReAct');
    assert.equal(s.attributeTypes['react.iteration'], 'int');
    assert.equal(s.attributeTypes['retry.enabled'], 'bool');
    assert.equal(s.attributeTypes.ratio, 'double');
    assert.deepEqual(s.attributes.scores, [1, 2.5]);
  });

  test('spans that already carry langfuse.* attributes pass unchanged', () => {
    const { m, repairs } = mapper();
    const foreign = span(
      { 'langfuse.observation.type': 'generation', 'dspy.input': 'kept as is', 'gen_ai.usage.input_tokens': 5 },
      { events: [{ name: 'e', timeUnixNano: '1732700000150000000' }] },
    );
    const mapped = m.map([{ span: foreign, resource: RESOURCE }]);
    assert.equal(mapped.length, 1, 'no event children for a foreign span');
    assert.equal(mapped[0]!.span, foreign, 'the very same record');
    assert.deepEqual(repairs, []);
  });

  test('other langfuse.* keys (LangfuseSpanProcessor\'s) do not stop the mapping, and win over what it derives', () => {
    const { m } = mapper();
    // A resource environment `production`; the spans (a root and its child) say `staging`.
    const root = span({ 'dspy.input': '"q"', 'langfuse.environment': 'staging', 'langfuse.internal.is_app_root': true, 'langfuse.trace.name': 'own-name', 'langfuse.user.id': 'u-1' }, { parentSpanId: undefined });
    const child = span({ 'dspy.observation.type': 'generation', 'gen_ai.request.model': 'm', 'gen_ai.usage.input_tokens': 2, 'langfuse.environment': 'staging' }, { parentSpanId: root.spanId });
    const [r, c] = roundTrip(m, [root, child]).map((x) => x.attributes);
    assert.equal(r!['langfuse.observation.input'], '"q"', 'translated, not passed unchanged');
    assert.equal(r!['langfuse.environment'], 'staging', 'the span\'s own over the resource\'s');
    assert.equal(r!['langfuse.internal.is_app_root'], true);
    assert.equal(r!['langfuse.trace.name'], 'own-name');
    assert.equal(r!['langfuse.release'], '1.4.2', 'what the span does not state is still derived');
    assert.equal(c!['langfuse.observation.type'], 'generation');
    assert.equal(c!['langfuse.observation.model.name'], 'm');
    assert.equal(c!['langfuse.environment'], 'staging');
    assert.equal(c!['langfuse.trace.name'], 'own-name', 'the span\'s trace keys are the trace\'s');
    assert.equal(c!['langfuse.user.id'], 'u-1');
  });

  test('the input batch is never mutated, and mapping it twice gives identical output', () => {
    const { m } = mapper();
    const s = span({ 'dspy.input': 'x', 'gen_ai.usage.input_tokens': 1 }, { events: [{ name: 'e', timeUnixNano: '1732700000150000000', attributes: { a: 1 } }] });
    const before = JSON.stringify(s);
    const a = m.map([{ span: s, resource: RESOURCE }]);
    const b = m.map([{ span: s, resource: RESOURCE }]);
    assert.equal(JSON.stringify(s), before);
    assert.deepEqual(a.map((x) => x.span), b.map((x) => x.span));
  });
});

describe('langfuse mapping: events and trace-level attributes', () => {
  test('span events become zero-length child spans of type event with a deterministic id', () => {
    const { m } = mapper();
    const parent = span(
      { 'dspy.observation.type': 'generation' },
      {
        spanId: '1111111111111111',
        events: [
          { name: 'llm.retry', timeUnixNano: '1732700000150000000', attributes: { attempt: 2, 'dspy.output': '{"partial":true}', 'dspy.input': 'in' } },
          { name: 'llm.first_token', timeUnixNano: '1732700000150000001' },
        ],
      },
    );
    const out = roundTrip(m, [parent]);
    assert.equal(out.length, 3);
    const p = out.find((s) => s.spanId === '1111111111111111')!;
    assert.equal(p.events.length, 0, 'events leave the parent');
    const [retry, first] = out.filter((s) => s.parentSpanId === '1111111111111111');
    assert.equal(retry!.name, 'llm.retry');
    assert.equal(retry!.spanId, eventSpanId('1111111111111111', 0));
    assert.match(retry!.spanId, /^[0-9a-f]{16}$/);
    assert.equal(retry!.traceId, TRACE);
    assert.equal(retry!.startTimeUnixNano, '1732700000150000000');
    assert.equal(retry!.endTimeUnixNano, '1732700000150000000');
    assert.equal(retry!.attributes['langfuse.observation.type'], 'event');
    assert.equal(retry!.attributes['langfuse.observation.metadata.attempt'], 2);
    assert.equal(retry!.attributeTypes['langfuse.observation.metadata.attempt'], 'int');
    assert.equal(retry!.attributes['langfuse.observation.output'], '{"partial":true}');
    assert.equal(retry!.attributes['langfuse.observation.input'], 'in');
    assert.equal(first!.spanId, eventSpanId('1111111111111111', 1));
    assert.notEqual(first!.spanId, retry!.spanId);
    assert.equal(first!.startTimeUnixNano, '1732700000150000001');
    // Trace-level attributes reach the event observations too.
    assert.equal(retry!.attributes['langfuse.environment'], 'production');
    // A resend makes the same ids: Langfuse will not see duplicates.
    const again = roundTrip(new LangfuseMapper(), [parent]);
    assert.deepEqual(again.map((s) => s.spanId).sort(), out.map((s) => s.spanId).sort());
  });

  test('trace-level attributes from any span of the batch land on every span of that trace', () => {
    const { m } = mapper();
    const root = span(
      { 'dspy.trace.name': 'coffee-order', 'dspy.trace.tags': ['beta'], 'dspy.trace.metadata.shop': 'downtown', 'user.id': 'u-1', 'session.id': 's-1' },
      { spanId: 'aaaaaaaaaaaaaaa1', parentSpanId: undefined },
    );
    const child = span({}, { spanId: 'aaaaaaaaaaaaaaa2', parentSpanId: 'aaaaaaaaaaaaaaa1', events: [{ name: 'e', timeUnixNano: '1732700000150000000' }] });
    const other = span({ 'dspy.trace.name': 'other' }, { traceId: 'b'.repeat(32), spanId: 'bbbbbbbbbbbbbbb1', parentSpanId: undefined });
    // Child first: the root later in the batch still fills it in.
    const out = roundTrip(m, [child, other, root], BARE);
    for (const s of out.filter((x) => x.traceId === TRACE)) {
      assert.equal(s.attributes['langfuse.trace.name'], 'coffee-order', s.name);
      assert.deepEqual(s.attributes['langfuse.trace.tags'], ['beta']);
      assert.equal(s.attributes['langfuse.trace.metadata.shop'], 'downtown');
      assert.equal(s.attributes['langfuse.user.id'], 'u-1');
      assert.equal(s.attributes['langfuse.session.id'], 's-1');
    }
    assert.equal(out.filter((x) => x.traceId === TRACE).length, 3);
    const o = out.find((x) => x.traceId === 'b'.repeat(32))!;
    assert.equal(o.attributes['langfuse.trace.name'], 'other');
    assert.equal(o.attributes['langfuse.user.id'], undefined, 'no leak across traces');
    // Only the root carries the trace input/output.
    assert.equal(out.find((x) => x.spanId === 'aaaaaaaaaaaaaaa2')!.attributes['langfuse.trace.input'], undefined);
  });

  test('trace-level attributes are remembered across batches, bounded by an LRU', () => {
    const repairs: RepairReason[] = [];
    const m = new LangfuseMapper({ onRepair: (r) => repairs.push(r), maxTraces: 2 });
    const t1 = '1'.repeat(32);
    const t2 = '2'.repeat(32);
    const t3 = '3'.repeat(32);
    roundTrip(m, [span({ 'dspy.trace.name': 'one', 'user.id': 'u1' }, { traceId: t1, parentSpanId: undefined })], { attributes: { 'service.version': '9.9.9' } });
    // Later batch, bare resource: the child gets name, user and release from memory.
    const [late] = roundTrip(m, [span({}, { traceId: t1 })], BARE);
    assert.equal(late!.attributes['langfuse.trace.name'], 'one');
    assert.equal(late!.attributes['langfuse.user.id'], 'u1');
    assert.equal(late!.attributes['langfuse.release'], '9.9.9');
    // Two more traces push t1 out (capacity 2, t1 least recently used).
    roundTrip(m, [span({ 'dspy.trace.name': 'two' }, { traceId: t2 })], BARE);
    roundTrip(m, [span({ 'dspy.trace.name': 'three' }, { traceId: t3 })], BARE);
    assert.equal(m.rememberedTraces, 2);
    const [forgotten] = roundTrip(m, [span({}, { traceId: t1 })], BARE);
    assert.equal(forgotten!.attributes['langfuse.trace.name'], undefined);
    const [remembered] = roundTrip(m, [span({}, { traceId: t3 })], BARE);
    assert.equal(remembered!.attributes['langfuse.trace.name'], 'three');
  });

  test('the trace memory is bounded in bytes: per trace (fixed fields first) and in all', () => {
    const m = new LangfuseMapper();
    const t = '5'.repeat(32);
    const kib = 'x'.repeat(1024);
    // A long trace adding a 1 KiB metadata key per batch, its name and user set late.
    for (let i = 0; i < 40; i++) {
      const attrs: Attributes = { [`dspy.trace.metadata.step_${i}`]: kib };
      if (i === 30) Object.assign(attrs, { 'dspy.trace.name': 'long', 'user.id': 'u-long' });
      roundTrip(m, [span(attrs, { traceId: t })], BARE);
    }
    const [later] = roundTrip(m, [span({ 'dspy.trace.metadata.own': 'mine' }, { traceId: t })], BARE);
    const copied = Object.keys(later!.attributes).filter((k) => k.startsWith('langfuse.trace.metadata.step_'));
    // Not every earlier key on every later span (each body would grow with the trace's age)…
    assert.ok(copied.length > 0 && copied.length * 1024 <= TRACE_BYTES_MAX, `${copied.length} metadata keys copied`);
    assert.deepEqual(copied.slice(0, 3), ['langfuse.trace.metadata.step_0', 'langfuse.trace.metadata.step_1', 'langfuse.trace.metadata.step_2'], 'the first ones kept');
    // …but the fixed fields always, and what the span set itself.
    assert.equal(later!.attributes['langfuse.trace.name'], 'long');
    assert.equal(later!.attributes['langfuse.user.id'], 'u-long');
    assert.equal(later!.attributes['langfuse.trace.metadata.own'], 'mine');
    assert.ok(m.rememberedBytes <= TRACE_BYTES_MAX);

    // Many traces with large metadata: the oldest are forgotten before the trace count bound.
    const big = 'y'.repeat(TRACE_BYTES_MAX - 200);
    const n = Math.ceil(REMEMBERED_BYTES_MAX / TRACE_BYTES_MAX) + 200;
    for (let i = 0; i < n; i++) m.map([{ span: span({ 'dspy.trace.metadata.blob': big, 'dspy.trace.name': `t${i}` }, { traceId: i.toString(16).padStart(32, '0') }), resource: BARE }]);
    assert.ok(m.rememberedBytes <= REMEMBERED_BYTES_MAX, `${m.rememberedBytes} bytes remembered`);
    assert.ok(m.rememberedTraces < n && m.rememberedTraces >= n - 250, `${m.rememberedTraces} traces remembered`);
    const [newest] = roundTrip(m, [span({}, { traceId: (n - 1).toString(16).padStart(32, '0') })], BARE);
    assert.equal(newest!.attributes['langfuse.trace.name'], `t${n - 1}`);
    const [oldest] = roundTrip(m, [span({}, { traceId: '0'.repeat(31) + '1' })], BARE);
    assert.equal(oldest!.attributes['langfuse.trace.name'], undefined, 'the oldest forgotten');
  });

  test('a span keeps its own trace-level values over the ones gathered for the trace', () => {
    const { m } = mapper();
    const out = roundTrip(m, [
      span({ 'dspy.trace.name': 'root-name' }, { spanId: 'cccccccccccccc01', parentSpanId: undefined }),
      span({ 'dspy.trace.name': 'child-name' }, { spanId: 'cccccccccccccc02', parentSpanId: 'cccccccccccccc01' }),
      span({}, { spanId: 'cccccccccccccc03', parentSpanId: 'cccccccccccccc01' }),
    ]);
    assert.equal(out.find((s) => s.spanId === 'cccccccccccccc02')!.attributes['langfuse.trace.name'], 'child-name');
    assert.equal(out.find((s) => s.spanId === 'cccccccccccccc03')!.attributes['langfuse.trace.name'], 'root-name', 'the root wins');
  });
});
