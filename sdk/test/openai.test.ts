import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import type { SpanRecord } from '@dspy-o11y/proto';
import { configure, getActiveSpan, predict, span, subscribe, wrapOpenAI } from '../src/index.js';
import { nowUnixNano } from '../src/clock.js';
import { FakeProvider, useFakeProvider, chatCompletion, chatStream, textCompletion, textCompletionStream } from './support/fake-provider.js';
import { UnixReceiver, flushedGenerations, useReceiver } from './support/receiver.js';

let r: UnixReceiver;
let provider: FakeProvider;
let client: OpenAI;
const PATH = '/v1/chat/completions';

useReceiver({}, (x) => (r = x));
useFakeProvider((p) => {
  provider = p;
  client = wrapOpenAI(new OpenAI({ apiKey: 'sk-test', baseURL: `${p.url}/v1`, maxRetries: 2 }));
});

const attr = (s: SpanRecord, k: string): unknown => s.attributes?.[k];
const generations = (n: number) => flushedGenerations(r, n);

test('wrapOpenAI returns the same client; wrapping twice is harmless', () => {
  const c = new OpenAI({ apiKey: 'x', baseURL: provider.url });
  const create = c.chat.completions.create;
  assert.equal(wrapOpenAI(c), c);
  const wrapped = c.chat.completions.create;
  assert.notEqual(wrapped, create);
  wrapOpenAI(c);
  assert.equal(c.chat.completions.create, wrapped);
});

test('chat.completions.create (non-streaming): same result and APIPromise; generation with model, usage, cost', async () => {
  provider.script(PATH, { status: 200, json: chatCompletion('Hello!', { prompt: 1000, completion: 200, cached: 400 }), headers: { 'x-request-id': 'req_123' } });
  const result = await span('handler', () =>
    client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hi' }], temperature: 0.3, max_tokens: 50 }),
  );
  assert.equal(result.choices[0]?.message.content, 'Hello!');
  assert.equal(result._request_id, 'req_123', 'the client\'s own properties survive');
  assert.deepEqual(Object.keys(result).sort(), ['choices', 'created', 'id', 'model', 'object', 'usage']);

  provider.script(PATH, { status: 200, json: chatCompletion('Again'), headers: { 'x-request-id': 'req_456' } });
  const p = client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hi' }] });
  assert.equal(typeof p.withResponse, 'function', 'still an APIPromise');
  const { data, response, request_id } = await p.withResponse();
  assert.equal(data.choices[0]?.message.content, 'Again');
  assert.equal(response.status, 200);
  assert.equal(request_id, 'req_456');

  const [g] = await generations(2);
  const gen = g as SpanRecord;
  assert.equal(gen.parentSpanId, r.span('handler').spanId);
  assert.equal(attr(gen, 'dspy.observation.type'), 'generation');
  assert.equal(attr(gen, 'gen_ai.provider.name'), 'openai');
  assert.equal(attr(gen, 'gen_ai.operation.name'), 'chat');
  assert.equal(attr(gen, 'gen_ai.request.model'), 'gpt-4o-mini');
  assert.equal(attr(gen, 'gen_ai.response.model'), 'gpt-4o-mini-2024-07-18');
  assert.equal(attr(gen, 'gen_ai.request.temperature'), 0.3);
  assert.equal(attr(gen, 'gen_ai.request.max_tokens'), 50);
  assert.equal(attr(gen, 'gen_ai.usage.input_tokens'), 1000);
  assert.equal(attr(gen, 'gen_ai.usage.output_tokens'), 200);
  assert.equal(attr(gen, 'gen_ai.usage.total_tokens'), 1200);
  assert.equal(attr(gen, 'gen_ai.usage.cache_read.input_tokens'), 400);
  assert.equal(attr(gen, 'gen_ai.usage.cost'), Math.round(((600 * 0.15 + 400 * 0.075 + 200 * 0.6) / 1e6) * 1e10) / 1e10);
  assert.deepEqual(JSON.parse(attr(gen, 'dspy.input') as string), [{ role: 'user', content: 'Hi' }]);
  assert.equal(JSON.parse(attr(gen, 'dspy.output') as string).content, 'Hello!');
  assert.deepEqual(attr(gen, 'gen_ai.response.finish_reasons'), ['stop']);
  assert.equal(gen.status, undefined);
});

test('streaming: same Stream object and chunks; usage requested for us and its chunk hidden; time to first token', async () => {
  provider.script(PATH, chatStream(['Hel', 'lo', ' there'], { prompt: 12, completion: 3 }));
  const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hi' }], stream: true });
  assert.equal(stream.constructor.name, 'Stream');
  assert.equal(typeof stream.tee, 'function');
  assert.ok(stream.controller instanceof AbortController);
  const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
  for await (const c of stream) chunks.push(c);
  assert.equal(chunks.map((c) => c.choices[0]?.delta.content ?? '').join(''), 'Hello there');
  assert.equal(chunks.length, 5, 'role chunk, 3 content chunks, finish chunk: no usage-only chunk');
  assert.ok(chunks.every((c) => !('usage' in c)), 'no usage key the app did not ask for');
  assert.deepEqual(provider.seen[0]?.body.stream_options, { include_usage: true }, 'the wrapper asked for usage');

  const [gen] = (await generations(1)) as [SpanRecord];
  assert.equal(attr(gen, 'gen_ai.usage.input_tokens'), 12);
  assert.equal(attr(gen, 'gen_ai.usage.output_tokens'), 3);
  assert.equal(typeof attr(gen, 'gen_ai.usage.cost'), 'number');
  assert.equal(attr(gen, 'gen_ai.response.model'), 'gpt-4o-mini-2024-07-18');
  assert.deepEqual(JSON.parse(attr(gen, 'dspy.output') as string), { role: 'assistant', content: 'Hello there' });
  const ttft = BigInt(attr(gen, 'dspy.completion_start_time') as string);
  assert.ok(ttft >= BigInt(gen.startTimeUnixNano) && ttft <= BigInt(gen.endTimeUnixNano));
});

test('a choice or tool call index far out of range (the server\'s word) is not recorded: texts[10^7] took 1.7 s and 660 MB at the stream\'s end', async () => {
  const base = { id: 'chatcmpl-far', object: 'chat.completion.chunk', created: 1732700000, model: 'gpt-4o-mini' };
  provider.script(PATH, {
    sse: [
      { data: { ...base, choices: [{ index: 0, delta: { role: 'assistant', content: 'Hello' }, finish_reason: null }] } },
      { data: { ...base, choices: [{ index: 10_000_000, delta: { content: 'far' }, finish_reason: 'stop' }] } },
      { data: { ...base, choices: [{ index: 0, delta: { tool_calls: [{ index: 10_000_000, function: { name: 'f', arguments: '{}' } }] }, finish_reason: 'stop' }] } },
      { data: '[DONE]' },
    ],
  });
  const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hi' }], stream: true });
  let chunks = 0;
  for await (const _ of stream) chunks++;
  assert.equal(chunks, 3, 'the app sees every chunk, unchanged');
  const [gen] = (await generations(1)) as [SpanRecord];
  assert.deepEqual(JSON.parse(attr(gen, 'dspy.output') as string), { role: 'assistant', content: 'Hello' });
  assert.deepEqual(attr(gen, 'gen_ai.response.finish_reasons'), ['stop']);
});

test('streaming with include_usage asked by the app: the usage chunk is the app\'s; tee() still works', async () => {
  provider.script(PATH, chatStream(['a', 'b'], { prompt: 7, completion: 2 }));
  const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hi' }], stream: true, stream_options: { include_usage: true } });
  const [left, right] = stream.tee();
  const seenLeft: unknown[] = [];
  for await (const c of left) seenLeft.push(c);
  const seenRight: unknown[] = [];
  for await (const c of right) seenRight.push(c);
  assert.equal(seenLeft.length, 5);
  assert.deepEqual(seenLeft, seenRight);
  assert.deepEqual((seenLeft.at(-1) as { usage: unknown }).usage, { prompt_tokens: 7, completion_tokens: 2, total_tokens: 9 });
  const [gen] = (await generations(1)) as [SpanRecord];
  assert.equal(attr(gen, 'gen_ai.usage.total_tokens'), 9);
});

test('an app that breaks out of a stream early: the generation ends, marked cancelled', async () => {
  provider.script(PATH, chatStream(['one', 'two', 'three']));
  const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hi' }], stream: true });
  for await (const c of stream) {
    if (c.choices[0]?.delta.content === 'one') break;
  }
  const [gen] = (await generations(1)) as [SpanRecord];
  assert.equal(attr(gen, 'dspy.stream.cancelled'), true);
  assert.equal(JSON.parse(attr(gen, 'dspy.output') as string).content, 'one');
});

test('a 400: the client\'s own error class, unchanged; the generation has error status', async () => {
  provider.script(PATH, { status: 400, json: { error: { message: 'bad model', type: 'invalid_request_error', code: 'model_not_found' } } });
  let caught: unknown;
  try {
    await client.chat.completions.create({ model: 'nope', messages: [{ role: 'user', content: 'Hi' }] });
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof OpenAI.BadRequestError);
  assert.equal((caught as InstanceType<typeof OpenAI.BadRequestError>).status, 400);
  assert.equal(provider.seen.length, 1, 'a 400 is not retried');
  const [gen] = (await generations(1)) as [SpanRecord];
  assert.equal(gen.status?.code, 'error');
  assert.match(String(gen.status?.message), /bad model/);
  assert.equal(attr(gen, 'http.response.status_code'), 400);
  assert.equal(attr(gen, 'error.type'), 'BadRequestError');
});

test('a retry: 500 then 200 within maxRetries gives one generation with an llm.retry event', async () => {
  provider.script(
    PATH,
    { status: 500, json: { error: { message: 'overloaded' } }, headers: { 'retry-after-ms': '1' } },
    { status: 200, json: chatCompletion('after retry') },
  );
  const retries: unknown[] = [];
  const off = subscribe('llm.retry', (_n, a) => retries.push(a.attempt));
  const res = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hi' }] });
  off();
  assert.equal(res.choices[0]?.message.content, 'after retry');
  assert.equal(provider.seen.length, 2);
  assert.deepEqual(retries, [2]);
  const gens = await generations(1);
  assert.equal(gens.length, 1);
  const gen = gens[0] as SpanRecord;
  assert.equal(gen.status, undefined);
  const retry = gen.events?.find((e) => e.name === 'llm.retry');
  assert.deepEqual(retry?.attributes, { attempt: 2, 'http.response.status_code': 500 });
});

test('retries exhausted: the final error, every attempt counted', async () => {
  const fail = { status: 503, json: { error: { message: 'down' } }, headers: { 'retry-after-ms': '1' } };
  provider.script(PATH, fail, fail, fail);
  await assert.rejects(client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hi' }] }), OpenAI.InternalServerError);
  assert.equal(provider.seen.length, 3);
  const [gen] = (await generations(1)) as [SpanRecord];
  assert.equal(gen.status?.code, 'error');
  assert.equal(gen.events?.filter((e) => e.name === 'llm.retry').length, 2);
});

test('responses.create is traced too (non-streaming and streaming)', async () => {
  provider.script('/v1/responses', {
    status: 200,
    json: {
      id: 'resp_1',
      object: 'response',
      created_at: 1,
      model: 'gpt-4.1-2025-04-14',
      status: 'completed',
      output: [{ type: 'message', id: 'm1', role: 'assistant', status: 'completed', content: [{ type: 'output_text', text: 'Hi!', annotations: [] }] }],
      usage: { input_tokens: 50, output_tokens: 10, total_tokens: 60, input_tokens_details: { cached_tokens: 0 }, output_tokens_details: { reasoning_tokens: 0 } },
    },
  });
  const res = await client.responses.create({ model: 'gpt-4.1', input: 'Hello', instructions: 'Be brief' });
  assert.equal(res.output_text, 'Hi!');
  const done = { id: 'resp_2', object: 'response', created_at: 1, model: 'gpt-4.1-2025-04-14', status: 'completed', output: [], usage: { input_tokens: 5, output_tokens: 2, total_tokens: 7 } };
  provider.script('/v1/responses', {
    sse: [
      { event: 'response.created', data: { type: 'response.created', sequence_number: 0, response: { ...done, status: 'in_progress' } } },
      { event: 'response.output_text.delta', data: { type: 'response.output_text.delta', sequence_number: 1, item_id: 'm', output_index: 0, content_index: 0, delta: 'Yo' } },
      { event: 'response.completed', data: { type: 'response.completed', sequence_number: 2, response: done } },
    ],
  });
  const stream = await client.responses.create({ model: 'gpt-4.1', input: 'Hello', stream: true });
  let n = 0;
  for await (const _ of stream) n++;
  assert.equal(n, 3);
  const gens = await generations(2);
  assert.equal(attr(gens[0] as SpanRecord, 'gen_ai.usage.total_tokens'), 60);
  assert.equal(attr(gens[0] as SpanRecord, 'gen_ai.usage.cost'), (50 * 2 + 10 * 8) / 1e6);
  assert.equal(attr(gens[0] as SpanRecord, 'dspy.output'), '"Hi!"');
  assert.deepEqual(JSON.parse(attr(gens[0] as SpanRecord, 'dspy.input') as string), { instructions: 'Be brief', input: 'Hello' });
  assert.equal(attr(gens[1] as SpanRecord, 'gen_ai.usage.total_tokens'), 7);
  assert.match(String(attr(gens[1] as SpanRecord, 'dspy.completion_start_time')), /^\d{19}$/);
  // The streamed text, though this completed response lists no output items.
  assert.equal(attr(gens[1] as SpanRecord, 'dspy.output'), '"Yo"');
});

test('a streamed Responses API text answer is recorded as its text, the same shape as without streaming', async () => {
  const message = { type: 'message', id: 'm2', role: 'assistant', status: 'completed', content: [{ type: 'output_text', text: 'Bon', annotations: [] }, { type: 'output_text', text: 'jour', annotations: [] }] };
  const done = { id: 'resp_s', object: 'response', created_at: 1, model: 'gpt-4.1-2025-04-14', status: 'completed', output: [message], usage: { input_tokens: 5, output_tokens: 2, total_tokens: 7 } };
  provider.script('/v1/responses', {
    sse: [
      { event: 'response.created', data: { type: 'response.created', sequence_number: 0, response: { ...done, output: [], status: 'in_progress' } } },
      { event: 'response.output_text.delta', data: { type: 'response.output_text.delta', sequence_number: 1, item_id: 'm2', output_index: 0, content_index: 0, delta: 'Bon' } },
      { event: 'response.output_text.delta', data: { type: 'response.output_text.delta', sequence_number: 2, item_id: 'm2', output_index: 0, content_index: 1, delta: 'jour' } },
      { event: 'response.completed', data: { type: 'response.completed', sequence_number: 3, response: done } },
    ],
  });
  for await (const _ of await client.responses.create({ model: 'gpt-4.1', input: 'Hello', stream: true })) void _;
  const [gen] = (await generations(1)) as [SpanRecord];
  assert.equal(attr(gen, 'dspy.output'), '"Bonjour"');
});

test('responses.create answering with a function call only: the output is the call, not the empty output_text', async () => {
  const call = { type: 'function_call', id: 'fc_1', call_id: 'call_1', name: 'get_weather', arguments: '{"city":"Paris"}', status: 'completed' };
  provider.script('/v1/responses', {
    status: 200,
    json: { id: 'resp_t', object: 'response', created_at: 1, model: 'gpt-4.1-2025-04-14', status: 'completed', output: [call], usage: { input_tokens: 9, output_tokens: 6, total_tokens: 15 } },
  });
  const res = await client.responses.create({ model: 'gpt-4.1', input: 'Weather in Paris?', tools: [{ type: 'function', name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } }, strict: false }] });
  assert.equal(res.output_text, '', 'the client adds an empty output_text when no message has text');
  const [gen] = (await generations(1)) as [SpanRecord];
  assert.deepEqual(JSON.parse(attr(gen, 'dspy.output') as string), [call]);
});

test('inside a module, a wrapped client call fills in the module\'s llm.generate (no nested generation)', async () => {
  provider.script(PATH, { status: 200, json: chatCompletion('{"label":"spam"}', { prompt: 30, completion: 4 }) });
  const classify = predict('Classify', {
    llm: async (req) => {
      const res = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: JSON.stringify(req.input) }] });
      return { output: JSON.parse(res.choices[0]?.message.content ?? '{}') as Record<string, unknown> };
    },
  });
  assert.deepEqual(await classify({ text: 'buy now' }), { label: 'spam' });
  const gens = await generations(1);
  assert.equal(gens.length, 1);
  const gen = gens[0] as SpanRecord;
  assert.equal(gen.parentSpanId, r.span('Predict.forward').spanId);
  assert.equal(attr(gen, 'gen_ai.request.model'), 'gpt-4o-mini');
  assert.equal(attr(gen, 'gen_ai.usage.total_tokens'), 34);
  assert.equal(attr(gen, 'dspy.module'), 'Predict');
});

test('inside a module, an llm that retries a failed wrapped call itself: the attempts are sibling generations, the failed one ERROR, the module\'s own (the one that answered) not', async () => {
  provider.script(PATH, { status: 400, json: { error: { message: 'bad request' } } }, { status: 200, json: chatCompletion('{"label":"ham"}', { prompt: 30, completion: 4 }) });
  const heard: Array<Readonly<Record<string, unknown>>> = [];
  const off = subscribe('llm.generate', (_n, a) => heard.push(a));
  const classify = predict('Classify', {
    llm: async (req) => {
      for (let attempt = 1; ; attempt++) {
        try {
          const res = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: JSON.stringify(req.input) }] });
          return { output: JSON.parse(res.choices[0]?.message.content ?? '{}') as Record<string, unknown> };
        } catch (e) {
          if (attempt >= 2) throw e;
        }
      }
    },
  });
  try {
    assert.deepEqual(await classify({ text: 'hello' }), { label: 'ham' });
  } finally {
    off();
  }
  assert.equal(heard.length, 2, 'each attempt is heard once');
  const gens = await generations(2);
  assert.equal(gens.length, 2);
  const forward = r.span('Predict.forward');
  for (const g of gens) assert.equal(g.parentSpanId, forward.spanId, 'siblings under the module step, not nested');
  const failed = gens.filter((g) => g.status?.code === 'error');
  const answered = gens.filter((g) => g.status?.code !== 'error');
  assert.equal(failed.length, 1);
  assert.equal(answered.length, 1, 'the module\'s generation is not left in ERROR');
  assert.equal(attr(failed[0] as SpanRecord, 'http.response.status_code'), 400);
  const ok = answered[0] as SpanRecord;
  assert.equal(attr(ok, 'gen_ai.usage.total_tokens'), 34);
  assert.equal(attr(ok, 'dspy.module'), 'Predict');
  assert.equal(attr(ok, 'http.response.status_code'), undefined, 'the failed attempt\'s attributes went with it');
  assert.equal((ok.events ?? []).length, 0, 'its exception event too');
  assert.notEqual(forward.status?.code, 'error');
});

test('inside a module, events the llm recorded on its generation before a failed attempt are not repeated on the split-off attempt', async () => {
  provider.script(PATH, { status: 400, json: { error: { message: 'bad request' } } }, { status: 200, json: chatCompletion('{"label":"ham"}', { prompt: 30, completion: 4 }) });
  const classify = predict('Classify', {
    llm: async (req) => {
      getActiveSpan()?.event('app.before_call');
      for (let attempt = 1; ; attempt++) {
        try {
          const res = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: JSON.stringify(req.input) }] });
          return { output: JSON.parse(res.choices[0]?.message.content ?? '{}') as Record<string, unknown> };
        } catch (e) {
          if (attempt >= 2) throw e;
        }
      }
    },
  });
  await classify({ text: 'hello' });
  const gens = await generations(2);
  const names = (g: SpanRecord | undefined) => (g?.events ?? []).map((e) => e.name);
  const failed = gens.find((g) => g.status?.code === 'error');
  const answered = gens.find((g) => g.status?.code !== 'error');
  assert.deepEqual(names(failed), ['exception'], 'only what happened during the attempt');
  assert.deepEqual(names(answered), ['app.before_call']);
});

test('inside a module, a failed attempt split off by the llm\'s retry is heard with its own span id, not the module generation\'s', async () => {
  provider.script(PATH, { status: 400, json: { error: { message: 'bad request' } } }, { status: 200, json: chatCompletion('{"label":"ham"}', { prompt: 30, completion: 4 }) });
  const heard: Array<{ spanId: string | undefined; error: unknown }> = [];
  const off = subscribe('llm.generate', (_n, a, ctx) => heard.push({ spanId: ctx.spanId, error: a['error.type'] }));
  const classify = predict('Classify', {
    llm: async (req) => {
      try {
        await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: JSON.stringify(req.input) }] });
      } catch {
        /* the llm's own retry below */
      }
      const res = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: JSON.stringify(req.input) }] });
      return { output: JSON.parse(res.choices[0]?.message.content ?? '{}') as Record<string, unknown> };
    },
  });
  try {
    await classify({ text: 'hello' });
  } finally {
    off();
  }
  const gens = await generations(2);
  const failed = gens.find((g) => g.status?.code === 'error') as SpanRecord;
  const answered = gens.find((g) => g.status?.code !== 'error') as SpanRecord;
  assert.equal(heard.length, 2);
  assert.notEqual(heard[0]?.spanId, heard[1]?.spanId, 'two generations, two span ids');
  assert.equal(heard.find((h) => h.error !== undefined)?.spanId, failed.spanId, 'the failed attempt as sent');
  assert.equal(heard.find((h) => h.error === undefined)?.spanId, answered.spanId);
});

test('inside a module, an llm that retries a Responses stream that reported response.failed: the failed attempt is a sibling, the module\'s generation not left in ERROR', async () => {
  const base = { id: 'resp_r', object: 'response', created_at: 1, model: 'gpt-4.1-2025-04-14', output: [], usage: null };
  const done = { ...base, status: 'completed', usage: { input_tokens: 5, output_tokens: 2, total_tokens: 7 } };
  provider.script(
    '/v1/responses',
    { sse: [{ event: 'response.failed', data: { type: 'response.failed', sequence_number: 0, response: { ...base, status: 'failed', error: { code: 'server_error', message: 'model crashed' } } } }] },
    {
      sse: [
        { event: 'response.output_text.delta', data: { type: 'response.output_text.delta', sequence_number: 0, item_id: 'm', output_index: 0, content_index: 0, delta: '{"label":"ham"}' } },
        { event: 'response.completed', data: { type: 'response.completed', sequence_number: 1, response: done } },
      ],
    },
  );
  const classify = predict('Classify', {
    // The failure comes as an event, not an exception: the llm reads it and tries again.
    llm: async () => {
      for (;;) {
        let text = '';
        let failed = false;
        for await (const ev of await client.responses.create({ model: 'gpt-4.1', input: 'x', stream: true })) {
          if (ev.type === 'response.failed') failed = true;
          if (ev.type === 'response.output_text.delta') text += ev.delta;
        }
        if (!failed) return { output: JSON.parse(text) as Record<string, unknown> };
      }
    },
  });
  assert.deepEqual(await classify({ text: 'hello' }), { label: 'ham' });
  const gens = await generations(2);
  const forward = r.span('Predict.forward');
  for (const g of gens) assert.equal(g.parentSpanId, forward.spanId, 'siblings under the module step, not nested');
  assert.equal(gens.filter((g) => g.status?.code === 'error').length, 1, 'the failed attempt');
  const ok = gens.find((g) => g.status?.code !== 'error') as SpanRecord | undefined;
  assert.ok(ok, 'the module\'s generation is not left in ERROR');
  assert.equal(attr(ok, 'dspy.module'), 'Predict');
  assert.equal(attr(ok, 'error.type'), undefined);
  assert.equal(attr(ok, 'gen_ai.usage.total_tokens'), 7);
});

test('a sampled-out trace: a module llm\'s retry of an answer that reported response.failed is heard as when sampled (the module\'s generation has the retry)', async () => {
  const base = { id: 'resp_s', object: 'response', created_at: 1, model: 'gpt-4.1-2025-04-14', output: [], usage: null };
  const done = { ...base, status: 'completed', usage: { input_tokens: 5, output_tokens: 2, total_tokens: 7 } };
  provider.script(
    '/v1/responses',
    { sse: [{ event: 'response.failed', data: { type: 'response.failed', sequence_number: 0, response: { ...base, status: 'failed', error: { code: 'server_error', message: 'model crashed' } } } }] },
    {
      sse: [
        { event: 'response.output_text.delta', data: { type: 'response.output_text.delta', sequence_number: 0, item_id: 'm', output_index: 0, content_index: 0, delta: '{"label":"ham"}' } },
        { event: 'response.completed', data: { type: 'response.completed', sequence_number: 1, response: done } },
      ],
    },
  );
  const heard: Array<Readonly<Record<string, unknown>>> = [];
  const off = subscribe('llm.generate', (_n, a) => heard.push(a));
  const classify = predict('Classify', {
    llm: async () => {
      for (;;) {
        let text = '';
        let failed = false;
        for await (const ev of await client.responses.create({ model: 'gpt-4.1', input: 'x', stream: true })) {
          if (ev.type === 'response.failed') failed = true;
          if (ev.type === 'response.output_text.delta') text += ev.delta;
        }
        if (!failed) return { output: JSON.parse(text) as Record<string, unknown> };
      }
    },
  });
  try {
    configure({ sampleRatio: 0 });
    assert.deepEqual(await classify({ text: 'hello' }), { label: 'ham' });
  } finally {
    configure({ sampleRatio: undefined });
    off();
  }
  assert.equal(heard.length, 2);
  const answered = heard.find((a) => a['gen_ai.usage.total_tokens'] === 7);
  assert.equal(answered?.['dspy.module'], 'Predict', 'the retry fills in the module\'s generation, not one nested under it');
  assert.equal(answered?.['error.type'], undefined);
  assert.equal(heard.find((a) => a !== answered)?.['error.type'], 'server_error');
});

/** Generations as they end (subscribers hear each one synchronously at its end). */
function endedGenerations(): { ended: Array<Readonly<Record<string, unknown>>>; off: () => void } {
  const ended: Array<Readonly<Record<string, unknown>>> = [];
  const off = subscribe('llm.generate', (_n, a) => ended.push(a));
  return { ended, off };
}

test('.asResponse() (the raw Response; the body is never parsed) ends the generation, streamed or not; .withResponse() still records usage', async () => {
  const { ended, off } = endedGenerations();
  try {
    provider.script(PATH, { status: 200, json: chatCompletion('raw') });
    const res = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hi' }] }).asResponse();
    assert.equal(ended.length, 1, 'ended when the response arrived');
    assert.equal(((await res.json()) as { choices: Array<{ message: { content: string } }> }).choices[0]?.message.content, 'raw', 'the body is the app\'s, unread');

    provider.script(PATH, chatStream(['a', 'b']));
    const sres = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hi' }], stream: true }).asResponse();
    assert.equal(ended.length, 2);
    assert.match(await sres.text(), /data: \[DONE\]/);

    provider.script(PATH, { status: 200, json: chatCompletion('parsed', { prompt: 3, completion: 2 }) });
    const { data } = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hi' }] }).withResponse();
    assert.equal(data.choices[0]?.message.content, 'parsed');
    assert.equal(ended.length, 3);
    assert.equal(ended[2]?.['gen_ai.usage.total_tokens'], 5, 'withResponse() parses: the generation ends with the data');
  } finally {
    off();
  }
  const gens = await generations(3);
  assert.equal(gens.length, 3);
  assert.equal(attr(gens[0] as SpanRecord, 'http.response.status_code'), 200);
  assert.equal(gens[0]?.status, undefined);
});

test('a 2xx body that does not parse: the app gets the client\'s parse error; the generation ends in error', async () => {
  const { ended, off } = endedGenerations();
  try {
    provider.script(PATH, { status: 200, raw: '{"id":"chatcmpl-1","choi' });
    await assert.rejects(client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hi' }] }), SyntaxError);
    assert.equal(ended.length, 1);
  } finally {
    off();
  }
  const [gen] = (await generations(1)) as [SpanRecord];
  assert.equal(gen.status?.code, 'error');
  assert.equal(attr(gen, 'error.type'), 'SyntaxError');
});

test('a stream the app aborts (controller.abort()) before reading it, or between reads: the generation ends once, cancelled', async () => {
  const { ended, off } = endedGenerations();
  try {
    provider.script(PATH, chatStream(['one', 'two']));
    const unread = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hi' }], stream: true });
    unread.controller.abort();
    assert.equal(ended.length, 1, 'ended at the abort');

    provider.script(PATH, chatStream(['one', 'two', 'three']));
    const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hi' }], stream: true });
    const seen: string[] = [];
    for await (const c of stream) {
      seen.push(c.choices[0]?.delta.content ?? '');
      if (seen.includes('one')) stream.controller.abort();
    }
    assert.equal(ended.length, 2);
    assert.deepEqual(seen.slice(0, 2), ['', 'one']);
  } finally {
    off();
  }
  const gens = await generations(2);
  assert.equal(gens.length, 2);
  for (const g of gens) {
    assert.equal(attr(g, 'dspy.stream.cancelled'), true);
    assert.equal(g.status, undefined);
  }
  assert.equal(JSON.parse(attr(gens[1] as SpanRecord, 'dspy.output') as string).content, 'one');
});

test('a stream that fails mid-way: the app gets the error; the generation ends once, in error, not cancelled', async () => {
  provider.script(PATH, {
    sse: [
      { data: { id: 'c', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta: { content: 'x' }, finish_reason: null }] } },
      { data: { error: { message: 'server went away', type: 'server_error' } } },
    ],
  });
  const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hi' }], stream: true });
  await assert.rejects(
    (async () => {
      for await (const _ of stream);
    })(),
    /server went away/,
  );
  const [gen] = (await generations(1)) as [SpanRecord];
  assert.equal(gen.status?.code, 'error');
  assert.equal(attr(gen, 'dspy.stream.cancelled'), undefined);
  assert.equal(JSON.parse(attr(gen, 'dspy.output') as string).content, 'x');
});

test('responses.create stream: a response.failed or error event puts the generation in error (the app sees the events, unchanged)', async () => {
  const base = { id: 'resp_3', object: 'response', created_at: 1, model: 'gpt-4.1-2025-04-14', output: [], usage: null };
  provider.script(
    '/v1/responses',
    {
      sse: [
        { event: 'response.created', data: { type: 'response.created', sequence_number: 0, response: { ...base, status: 'in_progress' } } },
        { event: 'response.failed', data: { type: 'response.failed', sequence_number: 1, response: { ...base, status: 'failed', error: { code: 'server_error', message: 'model crashed' } } } },
      ],
    },
    { sse: [{ event: 'error', data: { type: 'error', sequence_number: 0, code: 'rate_limit_exceeded', message: 'slow down', param: null } }] },
  );
  const types: string[] = [];
  for await (const e of await client.responses.create({ model: 'gpt-4.1', input: 'x', stream: true })) types.push(e.type);
  for await (const e of await client.responses.create({ model: 'gpt-4.1', input: 'x', stream: true })) types.push(e.type);
  assert.deepEqual(types, ['response.created', 'response.failed', 'error']);
  const [failed, errored] = (await generations(2)) as [SpanRecord, SpanRecord];
  assert.deepEqual(failed.status, { code: 'error', message: 'model crashed' });
  assert.equal(attr(failed, 'error.type'), 'server_error');
  assert.equal(attr(failed, 'dspy.level'), 'ERROR');
  assert.deepEqual(errored.status, { code: 'error', message: 'slow down' });
  assert.equal(attr(errored, 'error.type'), 'rate_limit_exceeded');
});

test('time to first token is the first non-empty piece, not the role chunk with its empty content', async () => {
  const base = { id: 'chatcmpl-t', object: 'chat.completion.chunk', created: 1732700000, model: 'gpt-4o-mini-2024-07-18' };
  provider.script(PATH, {
    sse: [
      { data: { ...base, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] } },
      { data: { ...base, choices: [{ index: 0, delta: { content: 'Hi' }, finish_reason: null }] }, delayMs: 200 },
      { data: { ...base, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] } },
      { data: '[DONE]' },
    ],
  });
  const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hi' }], stream: true });
  let roleChunkAt = 0n;
  for await (const c of stream) if (c.choices[0]?.delta.role) roleChunkAt = BigInt(nowUnixNano());
  const [gen] = (await generations(1)) as [SpanRecord];
  // The first token came 200 ms after the role chunk reached the app.
  assert.ok(BigInt(attr(gen, 'dspy.completion_start_time') as string) > roleChunkAt, 'recorded at the first content, after the role chunk');

  // Responses API: the first output of any kind (here a function call's arguments).
  const done = { id: 'resp_f', object: 'response', created_at: 1, model: 'gpt-4.1', status: 'completed', output: [], usage: { input_tokens: 5, output_tokens: 4, total_tokens: 9 } };
  provider.script('/v1/responses', {
    sse: [
      { event: 'response.created', data: { type: 'response.created', sequence_number: 0, response: { ...done, status: 'in_progress' } } },
      { event: 'response.function_call_arguments.delta', data: { type: 'response.function_call_arguments.delta', sequence_number: 1, item_id: 'fc', output_index: 0, delta: '{"city":' } },
      { event: 'response.completed', data: { type: 'response.completed', sequence_number: 2, response: done } },
    ],
  });
  for await (const _ of await client.responses.create({ model: 'gpt-4.1', input: 'Weather?', stream: true })) void _;
  const g2 = (await generations(2)).find((g) => attr(g, 'gen_ai.request.model') === 'gpt-4.1')!;
  assert.equal(typeof attr(g2, 'dspy.completion_start_time'), 'string', 'a function-call stream has a first token too');
});

test('a streamed refusal is recorded in the output message, as the non-streamed message has it', async () => {
  const base = { id: 'chatcmpl-r', object: 'chat.completion.chunk', created: 1732700000, model: 'gpt-4o-2024-08-06' };
  provider.script(PATH, {
    sse: [
      { data: { ...base, choices: [{ index: 0, delta: { role: 'assistant', content: null, refusal: '' }, finish_reason: null }] } },
      { data: { ...base, choices: [{ index: 0, delta: { refusal: "I'm sorry, " }, finish_reason: null }] } },
      { data: { ...base, choices: [{ index: 0, delta: { refusal: "I can't help with that." }, finish_reason: null }] } },
      { data: { ...base, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] } },
      { data: '[DONE]' },
    ],
  });
  const stream = await client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'Something forbidden' }], stream: true });
  let refusal = '';
  for await (const c of stream) refusal += c.choices[0]?.delta.refusal ?? '';
  assert.equal(refusal, "I'm sorry, I can't help with that.");
  const [gen] = (await generations(1)) as [SpanRecord];
  assert.deepEqual(JSON.parse(attr(gen, 'dspy.output') as string), { role: 'assistant', content: null, refusal: "I'm sorry, I can't help with that." });
});

test('n > 1: a choice that only refuses is recorded with its refusal, beside the others, also in a stream left before the finish reasons', async () => {
  const base = { id: 'chatcmpl-n', object: 'chat.completion.chunk', created: 1732700000, model: 'gpt-4o-2024-08-06' };
  provider.script(PATH, {
    sse: [
      { data: { ...base, choices: [{ index: 0, delta: { role: 'assistant', content: 'Sure' }, finish_reason: null }] } },
      { data: { ...base, choices: [{ index: 1, delta: { role: 'assistant', content: null, refusal: 'No.' }, finish_reason: null }] } },
      { data: { ...base, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }, { index: 1, delta: {}, finish_reason: 'stop' }] } },
      { data: '[DONE]' },
    ],
  });
  for await (const _ of await client.chat.completions.create({ model: 'gpt-4o', n: 2, messages: [{ role: 'user', content: 'x' }], stream: true })) void _;
  const [gen] = (await generations(1)) as [SpanRecord];
  const both = [
    { role: 'assistant', content: 'Sure' },
    { role: 'assistant', content: null, refusal: 'No.' },
  ];
  assert.deepEqual(JSON.parse(attr(gen, 'dspy.output') as string), both);
  // Left after the refusal, before any finish reason: both choices still, and not answered.
  provider.script(PATH, {
    sse: [
      { data: { ...base, choices: [{ index: 0, delta: { role: 'assistant', content: 'Sure' }, finish_reason: null }] } },
      { data: { ...base, choices: [{ index: 1, delta: { role: 'assistant', content: null, refusal: 'No.' }, finish_reason: null }] } },
      { data: { ...base, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] } },
      { data: { ...base, choices: [{ index: 1, delta: {}, finish_reason: 'stop' }] } },
      { data: '[DONE]' },
    ],
  });
  let n = 0;
  for await (const _ of await client.chat.completions.create({ model: 'gpt-4o', n: 2, messages: [{ role: 'user', content: 'y' }], stream: true })) if (++n === 3) break;
  const left = (await generations(2)).find((g) => g !== gen && g.spanId !== gen.spanId)!;
  assert.deepEqual(JSON.parse(attr(left, 'dspy.output') as string), both);
  assert.equal(attr(left, 'dspy.stream.cancelled'), true, 'choice 1 had no finish reason yet');
});

test('usage a compatible server sends unasked on its last chunk reaches the app, though the wrapper asked for usage', async () => {
  const base = { id: 'cmpl-m', object: 'chat.completion.chunk', created: 1732700000, model: 'mistral-small' };
  const usage = { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 };
  provider.script(PATH, {
    sse: [
      { data: { ...base, choices: [{ index: 0, delta: { role: 'assistant', content: 'Ok' }, finish_reason: null }] } },
      { data: { ...base, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }], usage } },
      { data: '[DONE]' },
    ],
  });
  const stream = await client.chat.completions.create({ model: 'mistral-small', messages: [{ role: 'user', content: 'Hi' }], stream: true });
  const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
  for await (const c of stream) chunks.push(c);
  assert.deepEqual(chunks.at(-1)?.usage, usage, 'what the app would get without the wrapper');
  const [gen] = (await generations(1)) as [SpanRecord];
  assert.equal(attr(gen, 'gen_ai.usage.total_tokens'), 4);
});

test('an app that stops reading once every choice has its finish reason has not cancelled anything', async () => {
  provider.script(PATH, chatStream(['Hel', 'lo'], { prompt: 5, completion: 2 }));
  const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hi' }], stream: true });
  for await (const c of stream) if (c.choices[0]?.finish_reason) break;
  const [gen] = (await generations(1)) as [SpanRecord];
  assert.equal(attr(gen, 'dspy.stream.cancelled'), undefined);
  assert.deepEqual(JSON.parse(attr(gen, 'dspy.output') as string), { role: 'assistant', content: 'Hello' });
});

test('a streamed tool call whose name comes again in later chunks (Fireworks, NVIDIA NIM do) is recorded with the name the client itself assembles', async () => {
  const base = { id: 'chatcmpl-tc', object: 'chat.completion.chunk', created: 1732700000, model: 'gpt-4o-mini' };
  const delta = (args: string) => ({ tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: args } }] });
  provider.script(PATH, {
    sse: [
      { data: { ...base, choices: [{ index: 0, delta: { role: 'assistant', ...delta('') }, finish_reason: null }] } },
      { data: { ...base, choices: [{ index: 0, delta: delta('{"city":'), finish_reason: null }] } },
      { data: { ...base, choices: [{ index: 0, delta: delta('"Paris"}'), finish_reason: 'tool_calls' }] } },
      { data: '[DONE]' },
    ],
  });
  // The client's own stream helper (it goes through the traced create) assembles the answer.
  const final = await client.chat.completions.stream({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Weather?' }] }).finalChatCompletion();
  const fn = final.choices[0]?.message.tool_calls?.[0];
  assert.deepEqual(fn?.type === 'function' ? fn.function : undefined, { name: 'get_weather', arguments: '{"city":"Paris"}' });
  const [gen] = (await generations(1)) as [SpanRecord];
  const out = JSON.parse(attr(gen, 'dspy.output') as string) as { tool_calls: Array<{ id: string; function: unknown }> };
  assert.equal(out.tool_calls[0]?.id, 'call_1');
  assert.deepEqual(out.tool_calls[0]?.function, { name: 'get_weather', arguments: '{"city":"Paris"}' });
});

test('a streamed tool call whose name comes in pieces is recorded with the whole name, as the app reading the chunks assembles it', async () => {
  const base = { id: 'chatcmpl-tp', object: 'chat.completion.chunk', created: 1732700000, model: 'gpt-4o-mini' };
  const delta = (fn: Record<string, string>) => ({ tool_calls: [{ index: 0, ...(fn.name === 'get_' ? { id: 'call_1', type: 'function' } : {}), function: fn }] });
  provider.script(PATH, {
    sse: [
      { data: { ...base, choices: [{ index: 0, delta: { role: 'assistant', ...delta({ name: 'get_', arguments: '' }) }, finish_reason: null }] } },
      { data: { ...base, choices: [{ index: 0, delta: delta({ name: 'weather', arguments: '{"city":' }), finish_reason: null }] } },
      { data: { ...base, choices: [{ index: 0, delta: delta({ arguments: '"Paris"}' }), finish_reason: 'tool_calls' }] } },
      { data: '[DONE]' },
    ],
  });
  let name = '';
  for await (const c of await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Weather?' }], stream: true })) {
    name += c.choices[0]?.delta.tool_calls?.[0]?.function?.name ?? '';
  }
  assert.equal(name, 'get_weather');
  const [gen] = (await generations(1)) as [SpanRecord];
  const out = JSON.parse(attr(gen, 'dspy.output') as string) as { tool_calls: Array<{ function: unknown }> };
  assert.deepEqual(out.tool_calls[0]?.function, { name: 'get_weather', arguments: '{"city":"Paris"}' });
});

test('a responses.create stream left once response.completed arrived has not cancelled anything; left before, it has', async () => {
  const done = { id: 'resp_c', object: 'response', created_at: 1, model: 'gpt-4.1-2025-04-14', status: 'completed', output: [], usage: { input_tokens: 5, output_tokens: 2, total_tokens: 7 } };
  const events = {
    sse: [
      { event: 'response.output_text.delta', data: { type: 'response.output_text.delta', sequence_number: 0, item_id: 'm', output_index: 0, content_index: 0, delta: 'Yo' } },
      { event: 'response.completed', data: { type: 'response.completed', sequence_number: 1, response: done } },
    ],
  };
  provider.script('/v1/responses', events, events);
  for await (const e of await client.responses.create({ model: 'gpt-4.1', input: 'Hi', stream: true })) if (e.type === 'response.completed') break;
  for await (const e of await client.responses.create({ model: 'gpt-4.1', input: 'Hi again', stream: true })) if (e.type === 'response.output_text.delta') break;
  const gens = await generations(2);
  const gen = (input: string) => gens.find((g) => attr(g, 'dspy.input') === JSON.stringify(input)) as SpanRecord;
  assert.equal(attr(gen('Hi'), 'dspy.stream.cancelled'), undefined);
  assert.equal(attr(gen('Hi'), 'gen_ai.usage.total_tokens'), 7);
  assert.equal(attr(gen('Hi again'), 'dspy.stream.cancelled'), true);
});

test('a client made by withOptions() (per-call timeout, retries) is traced too', async () => {
  provider.script(PATH, { status: 200, json: chatCompletion('A') }, { status: 200, json: chatCompletion('B') });
  await client.withOptions({ timeout: 5000 }).chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hi' }] });
  await client.withOptions({ maxRetries: 0 }).withOptions({ timeout: 1000 }).chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hi' }] });
  const gens = await generations(2);
  assert.equal(gens.length, 2);
});

// --- the legacy text-completions API, completions.create ---

const COMPLETIONS = '/v1/completions';
/** The same client, not wrapped: what the app would receive without the wrapper. */
const plainClient = (): OpenAI => new OpenAI({ apiKey: 'sk-test', baseURL: `${provider.url}/v1`, maxRetries: 0 });

test('completions.create (legacy text completions, non-streaming): same result and APIPromise; generation with model, parameters, usage, cost, output', async () => {
  provider.script(COMPLETIONS, { status: 200, json: textCompletion('Paris.', { prompt: 1000, completion: 200 }), headers: { 'x-request-id': 'req_c1' } });
  const result = await span('handler', () => client.completions.create({ model: 'gpt-3.5-turbo-instruct', prompt: 'The capital of France is', max_tokens: 16, temperature: 0.2, top_p: 0.9 }));
  provider.script(COMPLETIONS, { status: 200, json: textCompletion('Paris.', { prompt: 1000, completion: 200 }), headers: { 'x-request-id': 'req_c1' } });
  const plain = await plainClient().completions.create({ model: 'gpt-3.5-turbo-instruct', prompt: 'The capital of France is', max_tokens: 16, temperature: 0.2, top_p: 0.9 });
  assert.deepEqual(result, plain, 'what the client returns without the wrapper');
  assert.equal(result._request_id, 'req_c1');
  assert.deepEqual(provider.seen[0]?.body, provider.seen[1]?.body, 'the request is the app\'s, unchanged');

  provider.script(COMPLETIONS, { status: 200, json: textCompletion(['one', 'two'], { prompt: 4, completion: 2 }) });
  const p = client.completions.create({ model: 'gpt-3.5-turbo-instruct', prompt: ['Say a number'], n: 2 });
  assert.equal(typeof p.withResponse, 'function', 'still an APIPromise');
  const { data } = await p.withResponse();
  assert.deepEqual(data.choices.map((c) => c.text), ['one', 'two']);

  const [gen, gen2] = (await generations(2)) as [SpanRecord, SpanRecord];
  assert.equal(gen.parentSpanId, r.span('handler').spanId);
  assert.equal(attr(gen, 'dspy.observation.type'), 'generation');
  assert.equal(gen.name, 'llm.generate');
  assert.equal(attr(gen, 'gen_ai.provider.name'), 'openai');
  assert.equal(attr(gen, 'gen_ai.operation.name'), 'text_completion');
  assert.equal(attr(gen, 'gen_ai.request.model'), 'gpt-3.5-turbo-instruct');
  assert.equal(attr(gen, 'gen_ai.response.model'), 'gpt-3.5-turbo-instruct');
  assert.equal(attr(gen, 'gen_ai.request.temperature'), 0.2);
  assert.equal(attr(gen, 'gen_ai.request.max_tokens'), 16);
  assert.equal(attr(gen, 'gen_ai.request.top_p'), 0.9);
  assert.equal(attr(gen, 'gen_ai.usage.input_tokens'), 1000);
  assert.equal(attr(gen, 'gen_ai.usage.output_tokens'), 200);
  assert.equal(attr(gen, 'gen_ai.usage.total_tokens'), 1200);
  assert.equal(attr(gen, 'gen_ai.usage.cost'), Math.round(((1000 * 1.5 + 200 * 2) / 1e6) * 1e10) / 1e10);
  assert.equal(JSON.parse(attr(gen, 'dspy.input') as string), 'The capital of France is');
  assert.equal(JSON.parse(attr(gen, 'dspy.output') as string), 'Paris.');
  assert.deepEqual(attr(gen, 'gen_ai.response.finish_reasons'), ['stop']);
  assert.equal(gen.status, undefined);
  assert.deepEqual(JSON.parse(attr(gen2, 'dspy.output') as string), ['one', 'two'], 'several choices: one text each');
  assert.equal(attr(gen2, 'gen_ai.usage.total_tokens'), 6);
});

test('completions.create streaming: same Stream and chunks as without the wrapper (no usage-only chunk, no usage key); usage, cost, output, time to first token', async () => {
  provider.script(COMPLETIONS, textCompletionStream(['Once', ' upon', ' a time'], { prompt: 20, completion: 3 }));
  const stream = await client.completions.create({ model: 'gpt-3.5-turbo-instruct', prompt: 'Tell a story', max_tokens: 3, stream: true });
  assert.equal(stream.constructor.name, 'Stream');
  assert.ok(stream.controller instanceof AbortController);
  const chunks: OpenAI.Completions.Completion[] = [];
  for await (const c of stream) chunks.push(c);
  assert.deepEqual(provider.seen[0]?.body.stream_options, { include_usage: true }, 'the wrapper asked for usage');

  provider.script(COMPLETIONS, textCompletionStream(['Once', ' upon', ' a time'], { prompt: 20, completion: 3 }));
  const plain: OpenAI.Completions.Completion[] = [];
  for await (const c of await plainClient().completions.create({ model: 'gpt-3.5-turbo-instruct', prompt: 'Tell a story', max_tokens: 3, stream: true })) plain.push(c);
  assert.equal(provider.seen[1]?.body.stream_options, undefined);
  assert.deepEqual(chunks, plain, 'exactly what the client returns without the wrapper');
  assert.equal(chunks.length, 3, 'three text chunks: no usage-only chunk');
  assert.ok(chunks.every((c) => !('usage' in c)), 'no usage key the app did not ask for');
  assert.equal(chunks.map((c) => c.choices[0]?.text).join(''), 'Once upon a time');

  const [gen] = (await generations(1)) as [SpanRecord];
  assert.equal(attr(gen, 'gen_ai.operation.name'), 'text_completion');
  assert.equal(attr(gen, 'gen_ai.request.model'), 'gpt-3.5-turbo-instruct');
  assert.equal(attr(gen, 'gen_ai.response.model'), 'gpt-3.5-turbo-instruct');
  assert.equal(attr(gen, 'gen_ai.request.max_tokens'), 3);
  assert.equal(attr(gen, 'gen_ai.usage.input_tokens'), 20);
  assert.equal(attr(gen, 'gen_ai.usage.output_tokens'), 3);
  assert.equal(attr(gen, 'gen_ai.usage.total_tokens'), 23);
  assert.equal(attr(gen, 'gen_ai.usage.cost'), Math.round(((20 * 1.5 + 3 * 2) / 1e6) * 1e10) / 1e10);
  assert.equal(JSON.parse(attr(gen, 'dspy.input') as string), 'Tell a story');
  assert.equal(JSON.parse(attr(gen, 'dspy.output') as string), 'Once upon a time');
  assert.deepEqual(attr(gen, 'gen_ai.response.finish_reasons'), ['length']);
  assert.equal(attr(gen, 'dspy.stream.cancelled'), undefined);
  const ttft = BigInt(attr(gen, 'dspy.completion_start_time') as string);
  assert.ok(ttft >= BigInt(gen.startTimeUnixNano) && ttft <= BigInt(gen.endTimeUnixNano));
});

test('completions.create streaming with include_usage asked by the app: the usage chunk and the usage keys are the app\'s', async () => {
  provider.script(COMPLETIONS, textCompletionStream(['a', 'b'], { prompt: 7, completion: 2 }));
  const chunks: OpenAI.Completions.Completion[] = [];
  for await (const c of await client.completions.create({ model: 'gpt-3.5-turbo-instruct', prompt: 'x', stream: true, stream_options: { include_usage: true } })) chunks.push(c);
  provider.script(COMPLETIONS, textCompletionStream(['a', 'b'], { prompt: 7, completion: 2 }));
  const plain: OpenAI.Completions.Completion[] = [];
  for await (const c of await plainClient().completions.create({ model: 'gpt-3.5-turbo-instruct', prompt: 'x', stream: true, stream_options: { include_usage: true } })) plain.push(c);
  assert.deepEqual(chunks, plain);
  assert.equal(chunks.length, 3);
  assert.deepEqual(chunks.at(-1)?.usage, { prompt_tokens: 7, completion_tokens: 2, total_tokens: 9 });
  const [gen] = (await generations(1)) as [SpanRecord];
  assert.equal(attr(gen, 'gen_ai.usage.total_tokens'), 9);
  assert.equal(JSON.parse(attr(gen, 'dspy.output') as string), 'ab');
});

test('reasoning tokens (chat completions and the Responses API) are recorded as part of the output, and not priced a second time', async () => {
  provider.script(PATH, { status: 200, json: chatCompletion('42', { model: 'o4-mini-2025-04-16', prompt: 100, completion: 500, reasoning: 448 }) });
  await client.chat.completions.create({ model: 'o4-mini', messages: [{ role: 'user', content: 'Think' }] });
  provider.script('/v1/responses', {
    status: 200,
    json: {
      id: 'resp_r', object: 'response', created_at: 1, model: 'o4-mini-2025-04-16', status: 'completed', output: [],
      usage: { input_tokens: 100, output_tokens: 500, total_tokens: 600, input_tokens_details: { cached_tokens: 0 }, output_tokens_details: { reasoning_tokens: 448 } },
    },
  });
  await client.responses.create({ model: 'o4-mini', input: 'Think' });
  const gens = (await generations(2)) as SpanRecord[];
  for (const gen of gens) {
    assert.equal(attr(gen, 'gen_ai.usage.reasoning.output_tokens'), 448);
    assert.equal(attr(gen, 'gen_ai.usage.output_tokens'), 500, 'output still counts the reasoning tokens, as OpenAI bills them');
    assert.equal(attr(gen, 'gen_ai.usage.total_tokens'), 600);
    // o4-mini: $1.10 in, $4.40 out per million; the 448 reasoning tokens are in the 500 output ones.
    assert.equal(attr(gen, 'gen_ai.usage.cost'), Math.round(((100 * 1.1 + 500 * 4.4) / 1e6) * 1e10) / 1e10);
  }
});
