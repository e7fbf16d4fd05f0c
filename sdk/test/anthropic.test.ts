import { test } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { SpanRecord } from '@dspy-o11y/proto';
import { span, wrapAnthropic } from '../src/index.js';
import { FakeProvider, useFakeProvider, anthropicMessage, anthropicStream, type Reply } from './support/fake-provider.js';
import { UnixReceiver, flushedGenerations, useReceiver } from './support/receiver.js';

let r: UnixReceiver;
let provider: FakeProvider;
let client: Anthropic;
const PATH = '/v1/messages';

useReceiver({}, (x) => (r = x));
useFakeProvider((p) => {
  provider = p;
  client = wrapAnthropic(new Anthropic({ apiKey: 'sk-ant-test', baseURL: p.url, maxRetries: 2 }));
});

const attr = (s: SpanRecord, k: string): unknown => s.attributes?.[k];
const generations = (n: number) => flushedGenerations(r, n);

test('messages.create (non-streaming): same Message; generation with model, usage incl. cache, cost', async () => {
  provider.script(PATH, { status: 200, json: anthropicMessage('Bonjour', { input: 600, output: 100, cacheRead: 400 }), headers: { 'request-id': 'req_a1' } });
  const msg = await span('handler', () =>
    client.messages.create({ model: 'claude-sonnet-4-5', max_tokens: 256, system: 'Be terse', messages: [{ role: 'user', content: 'Hello' }] }),
  );
  assert.equal(msg.content[0]?.type === 'text' ? msg.content[0].text : '', 'Bonjour');
  assert.equal(msg._request_id, 'req_a1');
  const [gen] = (await generations(1)) as [SpanRecord];
  assert.equal(gen.parentSpanId, r.span('handler').spanId);
  assert.equal(attr(gen, 'gen_ai.provider.name'), 'anthropic');
  assert.equal(attr(gen, 'gen_ai.request.model'), 'claude-sonnet-4-5');
  assert.equal(attr(gen, 'gen_ai.response.model'), 'claude-sonnet-4-5-20250929');
  assert.equal(attr(gen, 'gen_ai.request.max_tokens'), 256);
  assert.equal(attr(gen, 'gen_ai.usage.input_tokens'), 1000, 'input includes cache reads (OpenTelemetry semantics)');
  assert.equal(attr(gen, 'gen_ai.usage.cache_read.input_tokens'), 400);
  assert.equal(attr(gen, 'gen_ai.usage.output_tokens'), 100);
  assert.equal(attr(gen, 'gen_ai.usage.cost'), Math.round(((600 * 3 + 400 * 0.3 + 100 * 15) / 1e6) * 1e10) / 1e10);
  assert.deepEqual(JSON.parse(attr(gen, 'dspy.input') as string), [
    { role: 'system', content: 'Be terse' },
    { role: 'user', content: 'Hello' },
  ]);
  assert.deepEqual(attr(gen, 'gen_ai.response.finish_reasons'), ['end_turn']);
});

test("1-hour cache writes (cache_control ttl '1h') are priced at Anthropic's 1-hour rate, 2x input, not the 5-minute 1.25x", async () => {
  const message = anthropicMessage('cached for an hour', { input: 100, output: 10 }) as { usage: Record<string, unknown> };
  message.usage = {
    input_tokens: 100,
    output_tokens: 10,
    cache_read_input_tokens: 0,
    cache_creation_input_tokens: 3000,
    cache_creation: { ephemeral_5m_input_tokens: 1000, ephemeral_1h_input_tokens: 2000 },
  };
  provider.script(PATH, { status: 200, json: message });
  await client.messages.create({ model: 'claude-sonnet-4-5', max_tokens: 64, messages: [{ role: 'user', content: 'Hello' }] });
  const [gen] = (await generations(1)) as [SpanRecord];
  assert.equal(attr(gen, 'gen_ai.usage.input_tokens'), 3100);
  assert.equal(attr(gen, 'gen_ai.usage.cache_creation.input_tokens'), 3000);
  // claude-sonnet-4-5: input $3, 5-minute writes $3.75, 1-hour writes $6, output $15 per million.
  assert.equal(attr(gen, 'gen_ai.usage.cost'), Math.round(((100 * 3 + 1000 * 3.75 + 2000 * 6 + 10 * 15) / 1e6) * 1e10) / 1e10);
});

test('messages.create streaming: same Stream and events; usage, time to first token, output', async () => {
  provider.script(PATH, anthropicStream(['Bon', 'jour'], { input: 20, output: 7, model: 'claude-haiku-4-5-20251001' }));
  const stream = await client.messages.create({ model: 'claude-haiku-4-5', max_tokens: 64, messages: [{ role: 'user', content: 'Hello' }], stream: true });
  assert.equal(stream.constructor.name, 'Stream');
  const types: string[] = [];
  let text = '';
  for await (const ev of stream) {
    types.push(ev.type);
    if (ev.type === 'content_block_delta' && ev.delta.type === 'text_delta') text += ev.delta.text;
  }
  assert.equal(text, 'Bonjour');
  assert.deepEqual(types, ['message_start', 'content_block_start', 'content_block_delta', 'content_block_delta', 'content_block_stop', 'message_delta', 'message_stop']);
  const [gen] = (await generations(1)) as [SpanRecord];
  assert.equal(attr(gen, 'gen_ai.usage.input_tokens'), 20);
  assert.equal(attr(gen, 'gen_ai.usage.output_tokens'), 7);
  assert.equal(attr(gen, 'gen_ai.usage.cost'), (20 * 1 + 7 * 5) / 1e6);
  assert.match(String(attr(gen, 'dspy.completion_start_time')), /^\d{19}$/);
  assert.deepEqual(JSON.parse(attr(gen, 'dspy.output') as string), { role: 'assistant', content: [{ type: 'text', text: 'Bonjour' }] });
});

test('a content block index far out of range (the server\'s word) is not recorded: the stream\'s end walked an array that long', async () => {
  const far = anthropicStream(['Bon', 'jour']) as { sse: Array<{ event?: string; data: unknown }> };
  far.sse.splice(5, 0,
    { event: 'content_block_start', data: { type: 'content_block_start', index: 10_000_000, content_block: { type: 'text', text: '' } } },
    { event: 'content_block_delta', data: { type: 'content_block_delta', index: 20_000_000, delta: { type: 'text_delta', text: 'far' } } },
  );
  provider.script(PATH, far);
  const stream = await client.messages.create({ model: 'claude-haiku-4-5', max_tokens: 64, messages: [{ role: 'user', content: 'Hello' }], stream: true });
  let events = 0;
  for await (const _ of stream) events++;
  assert.equal(events, 9, 'the app sees every event, unchanged');
  const [gen] = (await generations(1)) as [SpanRecord];
  assert.deepEqual(JSON.parse(attr(gen, 'dspy.output') as string), { role: 'assistant', content: [{ type: 'text', text: 'Bonjour' }] });
});

test('messages.stream() helper goes through the traced create', async () => {
  provider.script(PATH, anthropicStream(['Hi']));
  const final = await client.messages.stream({ model: 'claude-haiku-4-5', max_tokens: 64, messages: [{ role: 'user', content: 'Hello' }] }).finalMessage();
  assert.equal(final.content[0]?.type === 'text' ? final.content[0].text : '', 'Hi');
  const [gen] = (await generations(1)) as [SpanRecord];
  assert.equal(attr(gen, 'gen_ai.usage.output_tokens'), 7);
});

test('a 400: Anthropic\'s own error, unchanged; generation in error', async () => {
  provider.script(PATH, { status: 400, json: { type: 'error', error: { type: 'invalid_request_error', message: 'max_tokens: required' } } });
  await assert.rejects(
    client.messages.create({ model: 'claude-haiku-4-5', max_tokens: 1, messages: [{ role: 'user', content: 'x' }] }),
    (e) => e instanceof Anthropic.BadRequestError && e.status === 400,
  );
  assert.equal(provider.seen.length, 1);
  const [gen] = (await generations(1)) as [SpanRecord];
  assert.equal(gen.status?.code, 'error');
  assert.match(String(gen.status?.message), /max_tokens: required/);
});

test('a retry: 529 overloaded then 200 → one generation, one llm.retry event', async () => {
  provider.script(
    PATH,
    { status: 529, json: { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } }, headers: { 'retry-after-ms': '1' } },
    { status: 200, json: anthropicMessage('ok') },
  );
  const msg = await client.messages.create({ model: 'claude-haiku-4-5', max_tokens: 16, messages: [{ role: 'user', content: 'x' }] });
  assert.equal(msg.stop_reason, 'end_turn');
  assert.equal(provider.seen.length, 2);
  const [gen] = (await generations(1)) as [SpanRecord];
  assert.equal(gen.status, undefined);
  assert.deepEqual(gen.events?.find((e) => e.name === 'llm.retry')?.attributes, { attempt: 2, 'http.response.status_code': 529 });
});

test('a stream the app leaves before message_delta records no output count (not message_start\'s placeholder 1)', async () => {
  provider.script(PATH, anthropicStream(['Bon', 'jour'], { input: 20, output: 7, model: 'claude-haiku-4-5-20251001' }));
  const stream = await client.messages.create({ model: 'claude-haiku-4-5', max_tokens: 64, messages: [{ role: 'user', content: 'Hello' }], stream: true });
  for await (const ev of stream) if (ev.type === 'content_block_delta') break;
  const [gen] = (await generations(1)) as [SpanRecord];
  assert.equal(attr(gen, 'gen_ai.usage.input_tokens'), 20);
  assert.equal(attr(gen, 'gen_ai.usage.output_tokens'), undefined);
});

test('streamed thinking, tool_use and server_tool_use blocks are recorded as the non-streamed Message has them', async () => {
  const ev = (event: string, data: Record<string, unknown>) => ({ event, data: { type: event, ...data } });
  provider.script(PATH, {
    sse: [
      ev('message_start', { message: { id: 'm', type: 'message', role: 'assistant', model: 'claude-sonnet-4-5-20250929', content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 10, output_tokens: 1 } } }),
      ev('content_block_start', { index: 0, content_block: { type: 'thinking', thinking: '', signature: '' } }),
      ev('content_block_delta', { index: 0, delta: { type: 'thinking_delta', thinking: 'Need the ' } }),
      ev('content_block_delta', { index: 0, delta: { type: 'thinking_delta', thinking: 'weather.' } }),
      ev('content_block_delta', { index: 0, delta: { type: 'signature_delta', signature: 'c2ln' } }),
      ev('content_block_stop', { index: 0 }),
      ev('content_block_start', { index: 1, content_block: { type: 'server_tool_use', id: 'srv1', name: 'web_search', input: {} } }),
      ev('content_block_delta', { index: 1, delta: { type: 'input_json_delta', partial_json: '{"query":"Paris"}' } }),
      ev('content_block_stop', { index: 1 }),
      ev('content_block_start', { index: 2, content_block: { type: 'tool_use', id: 'tu1', name: 'weather', input: {} } }),
      ev('content_block_delta', { index: 2, delta: { type: 'input_json_delta', partial_json: '{"city":' } }),
      ev('content_block_delta', { index: 2, delta: { type: 'input_json_delta', partial_json: '"Paris"}' } }),
      ev('content_block_stop', { index: 2 }),
      ev('message_delta', { delta: { stop_reason: 'tool_use', stop_sequence: null }, usage: { output_tokens: 40 } }),
      ev('message_stop', {}),
    ],
  });
  let n = 0;
  for await (const _ of await client.messages.create({ model: 'claude-sonnet-4-5', max_tokens: 64, messages: [{ role: 'user', content: 'x' }], stream: true })) n++;
  assert.equal(n, 15);
  const [gen] = (await generations(1)) as [SpanRecord];
  assert.deepEqual(JSON.parse(attr(gen, 'dspy.output') as string), {
    role: 'assistant',
    content: [
      { type: 'thinking', thinking: 'Need the weather.', signature: 'c2ln' },
      { type: 'server_tool_use', id: 'srv1', name: 'web_search', input: { query: 'Paris' } },
      { type: 'tool_use', id: 'tu1', name: 'weather', input: { city: 'Paris' } },
    ],
  });
  assert.equal(attr(gen, 'gen_ai.usage.output_tokens'), 40);
  assert.deepEqual(attr(gen, 'gen_ai.response.finish_reasons'), ['tool_use']);
});

test("the client's own OpenTelemetry span still ends when the message is read, with its usage (the wrapper does not end it at the headers)", async () => {
  const exporter = new InMemorySpanExporter();
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const traced = wrapAnthropic(new Anthropic({ apiKey: 'sk-ant-test', baseURL: provider.url, maxRetries: 0, openTelemetry: { tracerProvider } }));
  const stream = anthropicStream(['slow'], { input: 20, output: 7 }) as Extract<Reply, { sse: unknown }>;
  stream.sse[3]!.delayMs = 200; // the text delta comes 200 ms after the headers
  provider.script(PATH, stream);
  const s = await traced.messages.create({ model: 'claude-haiku-4-5', max_tokens: 16, messages: [{ role: 'user', content: 'x' }], stream: true });
  for await (const _ of s) void _;
  await generations(1);
  const [own] = exporter.getFinishedSpans();
  assert.ok(own, 'the client made its span');
  const ms = (own.endTime[0] - own.startTime[0]) * 1000 + (own.endTime[1] - own.startTime[1]) / 1e6;
  assert.ok(ms >= 150, `ended after the stream was read, not at the headers (${ms.toFixed(0)} ms)`);
  assert.equal(own.attributes['gen_ai.usage.output_tokens'], 7);
  await tracerProvider.shutdown();
});

test('a stream left after message_delta (stop reason and usage in hand) is not cancelled; withOptions() clients are traced', async () => {
  provider.script(PATH, anthropicStream(['Hi'], { input: 9, output: 3 }));
  const s = await client.messages.create({ model: 'claude-haiku-4-5', max_tokens: 16, messages: [{ role: 'user', content: 'x' }], stream: true });
  for await (const ev of s) if (ev.type === 'message_delta') break;
  const [gen] = (await generations(1)) as [SpanRecord];
  assert.equal(attr(gen, 'dspy.stream.cancelled'), undefined);
  assert.equal(attr(gen, 'gen_ai.usage.output_tokens'), 3);
  r.reset(); // wait for the next generation, not the one above
  provider.script(PATH, { status: 200, json: anthropicMessage('Hey') });
  await client.withOptions({ timeout: 5000 }).messages.create({ model: 'claude-haiku-4-5', max_tokens: 16, messages: [{ role: 'user', content: 'x' }] });
  assert.equal((await generations(1)).length, 1);
});

test('0.26-0.32: beta.promptCaching.messages.create (prompt caching as a beta of its own) is traced, streamed or not', async () => {
  // The resource as @anthropic-ai/sdk 0.26-0.32 has it (resources/beta/prompt-caching/messages):
  // a POST through its client; its stream() helper calls this create.
  const c = new Anthropic({ apiKey: 'sk-ant-test', baseURL: provider.url, maxRetries: 2 });
  const messages = {
    _client: c,
    create(this: { _client: Anthropic }, params: { stream?: boolean }, options?: object) {
      return this._client.post('/v1/messages?beta=prompt_caching', { body: params, ...options, headers: { 'anthropic-beta': 'prompt-caching-2024-07-31' }, stream: params.stream ?? false });
    },
  };
  (c.beta as unknown as Record<string, unknown>).promptCaching = { messages };
  wrapAnthropic(c);
  provider.script(
    PATH,
    { status: 529, json: { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } }, headers: { 'retry-after-ms': '1' } },
    { status: 200, json: anthropicMessage('cached', { input: 10, output: 3, cacheRead: 90 }) },
  );
  const msg = (await messages.create({ model: 'claude-sonnet-4-5', max_tokens: 16, messages: [{ role: 'user', content: 'x' }] } as { stream?: boolean })) as Anthropic.Message;
  assert.equal(msg.content[0]?.type === 'text' ? msg.content[0].text : '', 'cached');
  provider.script(PATH, anthropicStream(['Hi'], { input: 3, output: 2 }));
  const stream = (await messages.create({ model: 'claude-haiku-4-5', max_tokens: 16, messages: [{ role: 'user', content: 'x' }], stream: true } as { stream?: boolean })) as AsyncIterable<unknown>;
  for await (const _ of stream) void _;
  const gens = await generations(2);
  assert.equal(gens.length, 2);
  const plain = gens.find((g) => attr(g, 'gen_ai.request.model') === 'claude-sonnet-4-5') as SpanRecord;
  const streamed = gens.find((g) => attr(g, 'gen_ai.request.model') === 'claude-haiku-4-5') as SpanRecord;
  assert.equal(attr(plain, 'gen_ai.usage.input_tokens'), 100, 'input includes cache reads');
  assert.equal(attr(plain, 'gen_ai.usage.cache_read.input_tokens'), 90);
  assert.deepEqual(plain.events?.find((e) => e.name === 'llm.retry')?.attributes, { attempt: 2, 'http.response.status_code': 529 });
  assert.equal(attr(streamed, 'gen_ai.usage.output_tokens'), 2);
  assert.deepEqual(JSON.parse(attr(streamed, 'dspy.output') as string), { role: 'assistant', content: [{ type: 'text', text: 'Hi' }] });
});
