import { test } from 'node:test';
import assert from 'node:assert/strict';
import { costUsd, type SpanRecord } from '@dspy-o11y/proto';
import {
  configure,
  event,
  extractTraceparent,
  flush,
  generation,
  getActiveSpan,
  injectTraceparent,
  score,
  sdkStats,
  span,
  startGeneration,
  startSpan,
  withActiveSpan,
  withTrace,
  type TraceContext,
} from '../src/index.js';
import { TRUNCATION_MARKER } from '../src/json.js';
import { SpanImpl } from '../src/span.js';
import { UnixReceiver, useReceiver, assertTreeComplete, sleep } from './support/receiver.js';

let r: UnixReceiver;

useReceiver({ serviceName: 'tracing-test' }, (x) => (r = x));

async function collect(n: number): Promise<SpanRecord[]> {
  assert.equal(await flush(), true);
  await r.waitForSpans(n);
  assert.deepEqual(r.invalid, []);
  return r.spans();
}

const attr = (s: SpanRecord, k: string): unknown => s.attributes?.[k];

test('nested spans form a tree: W3C ids, parent ids, ns times, types, JSON input/output', async () => {
  const out = await span('ChainOfThought.forward', { type: 'chain', input: { question: 'why?' }, module: 'ChainOfThought', signature: 'QA' }, async (s) => {
    const g = await generation('llm.generate', { model: 'gpt-4o-mini', provider: 'openai', input: [{ role: 'user', content: 'why?' }] }, async (g) => {
      await sleep(2);
      g.setUsage({ input: 100, output: 20 });
      g.setOutput('because');
      return 'because';
    });
    span('post', (p) => p.setAttribute('dspy.observation.type', 'retriever').setAttribute('dspy.observation.type', 'bogus'));
    s.setOutput({ answer: g });
    return g;
  });
  assert.equal(out, 'because');
  const spans = await collect(3);
  const root = r.span('ChainOfThought.forward');
  const gen = r.span('llm.generate');
  const post = r.span('post');
  assert.match(root.traceId, /^[0-9a-f]{32}$/);
  assert.match(root.spanId, /^[0-9a-f]{16}$/);
  assert.equal(root.parentSpanId, undefined);
  assert.equal(gen.parentSpanId, root.spanId);
  assert.equal(post.parentSpanId, root.spanId);
  for (const s of spans) assert.equal(s.traceId, root.traceId);
  assert.ok(BigInt(root.endTimeUnixNano) >= BigInt(gen.endTimeUnixNano));
  assert.ok(BigInt(gen.endTimeUnixNano) - BigInt(gen.startTimeUnixNano) >= 1_000_000n, 'ns timestamps');
  assert.equal(attr(root, 'dspy.observation.type'), 'chain');
  assert.equal(attr(root, 'dspy.module'), 'ChainOfThought');
  assert.equal(attr(root, 'dspy.signature'), 'QA');
  assert.deepEqual(JSON.parse(attr(root, 'dspy.input') as string), { question: 'why?' });
  assert.deepEqual(JSON.parse(attr(root, 'dspy.output') as string), { answer: 'because' });
  assert.equal(attr(gen, 'dspy.observation.type'), 'generation');
  assert.equal(attr(gen, 'gen_ai.request.model'), 'gpt-4o-mini');
  assert.equal(attr(gen, 'gen_ai.provider.name'), 'openai');
  assert.equal(attr(gen, 'gen_ai.usage.input_tokens'), 100);
  assert.equal(attr(gen, 'gen_ai.usage.output_tokens'), 20);
  assert.equal(attr(gen, 'gen_ai.usage.total_tokens'), 120);
  // gpt-4o-mini: $0.15 / $0.60 per million tokens
  assert.equal(attr(gen, 'gen_ai.usage.cost'), (100 * 0.15 + 20 * 0.6) / 1e6);
  assert.equal(attr(post, 'dspy.observation.type'), 'retriever', 'settable, validated, never a duplicate key');
});

test('100 concurrent requests each get their own trace tree, never mixed', async () => {
  const N = 100;
  const request = (i: number) =>
    withTrace({ name: `req-${i}`, userId: `user-${i}`, sessionId: `s-${i % 7}`, metadata: { req: i } }, () =>
      span('handler', { input: { i } }, async () => {
        await sleep(Math.random() * 5);
        const parts = await Promise.all(
          [0, 1, 2].map((k) =>
            span(`step-${k}`, async () => {
              await sleep(Math.random() * 5);
              return generation('llm.generate', { model: 'gpt-4o-mini' }, async (g) => {
                await sleep(Math.random() * 3);
                g.setUsage({ input: i, output: k });
                return `${i}:${k}`;
              });
            }),
          ),
        );
        event('request.done', { i });
        return parts;
      }),
    );
  const results = await Promise.all(Array.from({ length: N }, (_, i) => request(i)));
  results.forEach((parts, i) => assert.deepEqual(parts, [`${i}:0`, `${i}:1`, `${i}:2`]));
  const spans = await collect(N * 7);
  await r.waitFor(() => r.events().length >= N);
  assert.equal(spans.length, N * 7);
  assertTreeComplete(spans);
  const byTrace = new Map<string, SpanRecord[]>();
  for (const s of spans) byTrace.set(s.traceId, [...(byTrace.get(s.traceId) ?? []), s]);
  assert.equal(byTrace.size, N);
  const ids = new Map(spans.map((s) => [s.spanId, s]));
  for (const [traceId, list] of byTrace) {
    assert.equal(list.length, 7);
    const req = attr(list[0] as SpanRecord, 'dspy.trace.metadata.req');
    for (const s of list) {
      assert.equal(attr(s, 'dspy.trace.metadata.req'), req, 'one request per trace');
      assert.equal(attr(s, 'dspy.trace.name'), `req-${req}`);
      assert.equal(attr(s, 'user.id'), `user-${req}`);
      if (s.parentSpanId) assert.equal(ids.get(s.parentSpanId)?.traceId, traceId);
    }
    const root = list.find((s) => s.parentSpanId === undefined) as SpanRecord;
    assert.equal(root.name, 'handler');
    assert.deepEqual(JSON.parse(attr(root, 'dspy.input') as string), { i: req });
    for (const g of list.filter((s) => s.name === 'llm.generate')) assert.equal(attr(g, 'gen_ai.usage.input_tokens'), req);
  }
  for (const e of r.events()) {
    const s = ids.get(e.parentSpanId as string) as SpanRecord;
    assert.equal(s.name, 'handler');
    assert.equal(e.traceId, s.traceId);
    assert.equal(e.attributes?.i, attr(s, 'dspy.trace.metadata.req'));
  }
});

test('a throwing callback: error status and message, the same error rethrown (sync and async)', async () => {
  class MyError extends Error {
    code = 42;
  }
  const e1 = new MyError('boom');
  assert.throws(
    () =>
      span('sync-fail', () => {
        throw e1;
      }),
    (e) => e === e1,
  );
  const e2 = new TypeError('async boom');
  await assert.rejects(
    span('outer', () =>
      span('async-fail', async () => {
        await sleep(1);
        throw e2;
      }),
    ),
    (e) => e === e2,
  );
  const thrown = { not: 'an error' };
  await assert.rejects(
    generation('gen-fail', async () => {
      throw thrown;
    }),
    (e) => e === thrown,
  );
  await collect(4);
  const s1 = r.span('sync-fail');
  assert.deepEqual(s1.status, { code: 'error', message: 'boom' });
  assert.equal(attr(s1, 'dspy.level'), 'ERROR');
  assert.equal(attr(s1, 'error.type'), 'MyError');
  const ex = s1.events?.find((e) => e.name === 'exception');
  assert.equal(ex?.attributes?.['exception.message'], 'boom');
  assert.match(String(ex?.attributes?.['exception.stacktrace']), /boom/);
  assert.deepEqual(r.span('async-fail').status, { code: 'error', message: 'async boom' });
  assert.equal(r.span('outer').status?.code, 'error');
  assert.deepEqual(r.span('gen-fail').status, { code: 'error', message: '{"not":"an error"}' });
});

test('cyclic, huge and odd values are captured truncated with a marker, never a crash', async () => {
  const cyclic: Record<string, unknown> = { name: 'loop', n: 1n };
  cyclic.self = cyclic;
  cyclic.list = [cyclic, { deeper: cyclic }];
  const huge = { text: 'x'.repeat(5_000_000), more: Array.from({ length: 100_000 }, (_, i) => ({ i })) };
  const odd = { f: () => 1, s: Symbol('s'), u: undefined, nan: NaN, inf: -Infinity, d: new Date(0), buf: Buffer.alloc(1_000_000), m: new Map([['k', 1]]), set: new Set([1, 2]) };
  const bad = {
    get boom(): never {
      throw new Error('getter');
    },
    toJSON() {
      throw new Error('toJSON');
    },
  };
  const res = span('values', { input: cyclic }, (s) => {
    s.setOutput(huge);
    s.setAttribute('odd', odd);
    s.setAttribute('bad', bad);
    s.setAttribute('hugeString', 'y'.repeat(100_000));
    s.setAttribute('nanNumber', NaN);
    s.setAttribute('mixedArray', [1, 'a']);
    s.setAttribute('strings', ['a', 'b']);
    s.setAttribute('nothing', null);
    s.setAttribute('', 'empty key');
    s.setAttribute('k'.repeat(300), 'long key');
    return 'ok';
  });
  assert.equal(res, 'ok');
  await collect(1);
  const s = r.span('values');
  const input = attr(s, 'dspy.input') as string;
  assert.match(input, /\[Circular\]/);
  assert.deepEqual(JSON.parse(input), { name: 'loop', n: '1', self: '[Circular]', list: ['[Circular]', { deeper: '[Circular]' }] });
  const output = attr(s, 'dspy.output') as string;
  assert.ok(output.length <= 32 * 1024 + TRUNCATION_MARKER.length, `output capped (${output.length})`);
  assert.ok(output.endsWith(TRUNCATION_MARKER));
  assert.deepEqual(JSON.parse(attr(s, 'odd') as string), {
    nan: null,
    inf: null,
    d: '1970-01-01T00:00:00.000Z',
    buf: '[Buffer 1000000 bytes]',
    m: { k: 1 },
    set: [1, 2],
  });
  assert.match(attr(s, 'bad') as string, /toJSON threw/);
  assert.ok((attr(s, 'hugeString') as string).endsWith(TRUNCATION_MARKER));
  assert.equal(attr(s, 'nanNumber'), 'NaN');
  assert.equal(attr(s, 'mixedArray'), '[1,"a"]');
  assert.deepEqual(attr(s, 'strings'), ['a', 'b']);
  assert.equal(attr(s, 'nothing'), undefined);
  assert.equal(Object.keys(s.attributes ?? {}).some((k) => k.length > 256 || k === ''), false);
});

test('the value cap is configurable, and inputs can be masked or not captured', async () => {
  configure({ maxValueLength: 10, mask: (v, kind) => (kind === 'input' ? '[redacted]' : v) });
  span('capped', { input: 'secret' }, (s) => s.setOutput('0123456789abcdef'));
  configure({ captureIO: false, mask: undefined });
  span('uncaptured', { input: 'secret' }, (s) => s.setOutput('out'));
  configure({ maxValueLength: 32 * 1024, captureIO: true });
  await collect(2);
  assert.equal(attr(r.span('capped'), 'dspy.input'), '"[redacted]"');
  assert.equal(attr(r.span('capped'), 'dspy.output'), `"0123456789${TRUNCATION_MARKER}"`);
  assert.equal(attr(r.span('uncaptured'), 'dspy.input'), undefined);
  assert.equal(attr(r.span('uncaptured'), 'dspy.output'), undefined);
});

test('traceparent: inject in one service, extract in the next, the trace continues', async () => {
  const headers: Record<string, string> = {};
  let callerSpanId = '';
  let callerTraceId = '';
  span('caller', (s) => {
    callerSpanId = s.spanId;
    callerTraceId = s.traceId;
    const value = injectTraceparent(headers);
    assert.equal(value, `00-${s.traceId}-${s.spanId}-01`);
    const h = new Headers();
    injectTraceparent(h);
    assert.equal(h.get('traceparent'), value);
  });
  assert.equal(injectTraceparent({}), undefined, 'no active span: nothing to inject');
  // "another service": extract from incoming headers (Node lower-cases them).
  const ctx = extractTraceparent({ traceparent: headers.traceparent });
  assert.deepEqual(ctx, { traceId: callerTraceId, spanId: callerSpanId, sampled: true });
  await withTrace({ traceparent: ctx, name: 'downstream' }, () => span('callee', () => span('callee.child', () => 1)));
  span('by-parent', { parent: ctx }, () => 1);
  await collect(4);
  const callee = r.span('callee');
  assert.equal(callee.traceId, callerTraceId);
  assert.equal(callee.parentSpanId, callerSpanId);
  assert.equal(attr(callee, 'dspy.trace.name'), 'downstream');
  assert.equal(r.span('callee.child').parentSpanId, callee.spanId);
  assert.equal(r.span('by-parent').parentSpanId, callerSpanId);
  // malformed or invalid headers are ignored
  for (const bad of ['', 'garbage', `00-${'0'.repeat(32)}-${callerSpanId}-01`, `ff-${callerTraceId}-${callerSpanId}-01`, `00-${callerTraceId}-${callerSpanId}-01-extra`]) {
    assert.equal(extractTraceparent(bad), undefined, bad);
  }
  assert.equal(extractTraceparent(new Headers({ traceparent: headers.traceparent as string }))?.spanId, callerSpanId);
});

test('trace-level fields go on every span of the trace; nested withTrace merges; update() applies later', async () => {
  await withTrace({ name: 'order', userId: 'u1', sessionId: 's1', tags: ['beta'], metadata: { plan: 'pro', nested: { a: 1 } } }, async (t) => {
    assert.match(t.traceId, /^[0-9a-f]{32}$/);
    await span('a', async () => {
      await withTrace({ tags: ['inner'], metadata: { extra: true } }, () => span('b', () => 1));
    });
    t.update({ userId: 'u2' });
    span('c', () => 1);
  });
  await collect(3);
  const [a, b, c] = [r.span('a'), r.span('b'), r.span('c')];
  assert.equal(b.traceId, a.traceId);
  assert.equal(b.parentSpanId, a.spanId, 'a nested withTrace keeps the active parent');
  for (const s of [a, b, c]) {
    assert.equal(attr(s, 'dspy.trace.name'), 'order');
    assert.equal(attr(s, 'session.id'), 's1');
    assert.equal(attr(s, 'dspy.trace.metadata.plan'), 'pro');
    assert.equal(attr(s, 'dspy.trace.metadata.nested'), '{"a":1}');
  }
  assert.equal(attr(a, 'user.id'), 'u1');
  assert.deepEqual(attr(a, 'dspy.trace.tags'), ['beta']);
  assert.deepEqual(attr(b, 'dspy.trace.tags'), ['beta', 'inner']);
  assert.equal(attr(b, 'dspy.trace.metadata.extra'), true);
  assert.equal(attr(a, 'dspy.trace.metadata.extra'), undefined);
  assert.equal(attr(c, 'user.id'), 'u2');
});

test('withTrace({ traceId }) with the active trace\'s own id keeps the active parent (its spans were a second root)', async () => {
  await span('outer', async (s) => {
    await withTrace({ traceId: s.traceId, userId: 'u1' }, () => span('inner', () => 1));
  });
  await collect(2);
  const [outer, inner] = [r.span('outer'), r.span('inner')];
  assert.equal(inner.traceId, outer.traceId);
  assert.equal(inner.parentSpanId, outer.spanId, 'inner nests under outer, not a second root of the trace');
  assert.equal(attr(inner, 'user.id'), 'u1');
});

test('imperative startSpan/startGeneration with end(), withActiveSpan, getActiveSpan', async () => {
  assert.equal(getActiveSpan(), undefined);
  const s = startSpan('ChainOfThought.forward', { type: 'chain', input: 'q' });
  assert.equal(getActiveSpan(), undefined, 'startSpan does not activate');
  const g = startGeneration('llm.generate', { model: 'claude-sonnet-4-5-20250929', provider: 'anthropic', parent: s, parameters: { temperature: 0.2, maxTokens: 100, topP: 0.9, seed: 7 }, prompt: { name: 'qa', version: 3 } });
  g.setCompletionStart();
  g.setUsage({ input: 1000, output: 100, cacheRead: 400 });
  g.setResponseModel('claude-sonnet-4-5-20250929');
  g.setFinishReasons(['end_turn']);
  g.setOutput('…');
  g.end();
  g.end(); // idempotent
  withActiveSpan(s, () => {
    assert.equal(getActiveSpan()?.spanId, s.spanId);
    span('inside', () => 1);
  });
  s.event('chain_of_thought.reasoning_complete', { reasoning: 'r' });
  s.end();
  s.setOutput('ignored after end');
  await collect(3);
  const gs = r.span('llm.generate');
  const ss = r.span('ChainOfThought.forward');
  assert.equal(gs.parentSpanId, ss.spanId);
  assert.equal(r.span('inside').parentSpanId, ss.spanId);
  assert.equal(attr(gs, 'gen_ai.request.temperature'), 0.2);
  assert.equal(attr(gs, 'gen_ai.request.max_tokens'), 100);
  assert.equal(attr(gs, 'gen_ai.request.top_p'), 0.9);
  assert.equal(attr(gs, 'gen_ai.request.seed'), 7);
  assert.equal(attr(gs, 'dspy.prompt.name'), 'qa');
  assert.equal(attr(gs, 'dspy.prompt.version'), 3);
  assert.deepEqual(attr(gs, 'gen_ai.response.finish_reasons'), ['end_turn']);
  assert.match(String(attr(gs, 'dspy.completion_start_time')), /^\d{19}$/);
  assert.equal(attr(gs, 'gen_ai.usage.cache_read.input_tokens'), 400);
  // sonnet 4.5: $3 in, $0.30 cached in, $15 out per million
  assert.equal(attr(gs, 'gen_ai.usage.cost'), Math.round(((600 * 3 + 400 * 0.3 + 100 * 15) / 1e6) * 1e10) / 1e10);
  assert.equal(ss.events?.[0]?.name, 'chain_of_thought.reasoning_complete');
  assert.equal(attr(ss, 'dspy.output'), undefined);
});

test('event() records an event record under the active span (or its own trace)', async () => {
  await span('parent', () => event('custom.point', { a: 1, obj: { b: 2 } }));
  event('orphan');
  await flush();
  await r.waitFor(() => r.events().length >= 2);
  const [e1, e2] = r.events();
  assert.equal(e1?.name, 'custom.point');
  assert.equal(e1?.parentSpanId, r.span('parent').spanId);
  assert.deepEqual(e1?.attributes, { a: 1, obj: '{"b":2}' });
  assert.equal(e2?.name, 'orphan');
  assert.match(String(e2?.traceId), /^[0-9a-f]{32}$/);
  assert.equal(e2?.parentSpanId, undefined);
});

test('records stay under the daemon\'s 1 MiB line limit: many-attribute events are slimmed, names are cut', async () => {
  const many: Record<string, string> = {};
  for (let i = 0; i < 300; i++) many[`k${i}`] = 'v'.repeat(8000); // each under the value cap, 2.4 MB together
  await withTrace({ name: 'big-trace' }, () => event('big.event', many));
  span('n'.repeat(3_000_000), () => 1);
  await flush();
  await r.waitFor(() => r.events().length >= 1 && r.spans().length >= 1);
  assert.deepEqual(r.invalid, []);
  const e = r.events()[0]!;
  assert.equal(e.name, 'big.event');
  assert.equal(e.attributes?.['dspy.truncated'], true);
  assert.equal(e.attributes?.['dspy.trace.name'], 'big-trace', 'the trace\'s own attributes stay');
  assert.equal(e.attributes?.k0, undefined);
  const s = r.spans()[0]!;
  assert.equal(s.name, 'n'.repeat(4096) + TRUNCATION_MARKER);
  for (const rec of [e, s]) assert.ok(Buffer.byteLength(JSON.stringify(rec)) < 1024 * 1024);
});

test('trace-level fields are capped as attributes are: huge ones never make a record too long for the daemon, a bad one never loses the trace', async () => {
  // A tag over the cap is left out, not cut, and the tags after it are still kept.
  const tags: unknown[] = ['beta', 7, { not: 'text' }, 't'.repeat(40_000), 'after'];
  tags[5_000_000] = 'past the tags looked at';
  const metadata: Record<string, string> = {};
  for (let i = 0; i < 300; i++) metadata[`k${i}`] = 'v'.repeat(8000); // 2.4 MB together
  await withTrace({ name: 'n'.repeat(10_000), userId: 'u'.repeat(2_000_000), sessionId: 's'.repeat(2_000_000), tags: tags as string[], metadata }, async () => {
    event('in.trace');
    span('s', () => 1);
    await withTrace({ tags: 5 as never }, () => span('nested', () => 1));
  });
  await flush();
  await r.waitFor(() => r.events().length >= 1 && r.spans().length >= 2);
  assert.deepEqual(r.invalid, []);
  for (const line of r.lines) assert.ok(Buffer.byteLength(line) < 1024 * 1024, `a ${Buffer.byteLength(line)}-byte record`);
  const [e, s] = [r.events()[0]!, r.span('s')];
  for (const rec of [e, s]) {
    assert.equal(rec.attributes?.['dspy.trace.name'], 'n'.repeat(4096) + TRUNCATION_MARKER);
    assert.equal(rec.attributes?.['user.id'], 'u'.repeat(32 * 1024) + TRUNCATION_MARKER);
    assert.equal(rec.attributes?.['session.id'], 's'.repeat(32 * 1024) + TRUNCATION_MARKER);
    assert.deepEqual(rec.attributes?.['dspy.trace.tags'], ['beta', '7', 'after']);
    assert.equal(rec.attributes?.['dspy.trace.metadata.k0'], 'v'.repeat(8000));
  }
  assert.equal(r.span('nested').traceId, s.traceId, 'tags that are not an array are ignored, the trace kept');
});

test('a string is no attribute map (it gave an attribute per character), and a span keeps only the events that fit in its record', async () => {
  event('string-attributes', 'abc' as never);
  await withTrace({ metadata: 'ab' as never }, (t) => {
    t.update({ metadata: 'cd' as never });
    t.update('ef' as never);
    span('many-events', (s) => {
      s.event('string-attributes', 'xyz' as never);
      // 128 events of ~90 KB: together far past the daemon's line limit, which dropped every one of them.
      for (let i = 0; i < 128; i++) s.event('big', { a: 'a'.repeat(30_000), b: 'b'.repeat(30_000), c: 'c'.repeat(30_000) });
    });
  });
  await collect(1);
  await r.waitFor(() => r.events().length >= 1);
  assert.equal(r.events()[0]?.attributes, undefined);
  const s = r.span('many-events');
  assert.deepEqual(Object.keys(s.attributes ?? {}).filter((k) => k.startsWith('dspy.trace.metadata.')), []);
  assert.equal(attr(s, 'dspy.truncated'), undefined);
  assert.equal(s.events?.[0]?.attributes, undefined);
  const big = s.events?.filter((e) => e.name === 'big').length ?? 0;
  assert.ok(big > 5 && big < 128, `${big} events kept`);
});

test('configure() keeps only its own options: anything else (a string\'s million characters) was copied again at every later call', () => {
  assert.doesNotThrow(() => configure('x'.repeat(1_000_000) as never));
  assert.doesNotThrow(() => configure(null as never));
  assert.doesNotThrow(() => configure(5 as never));
  // CPU time, not wall-clock time: a loaded machine may hold the process meanwhile.
  const t0 = process.cpuUsage();
  for (let i = 0; i < 5; i++) configure({ captureIO: true });
  const { user, system } = process.cpuUsage(t0);
  assert.ok((user + system) / 1000 < 200, `${Math.round((user + system) / 1000)} ms of CPU`);
});

test('app objects with throwing getters never make a setter throw; the other values are kept', async () => {
  const trap = <T extends object>(o: T): T =>
    Object.defineProperty(o, 'boom', {
      enumerable: true,
      get(): never {
        throw new Error('getter');
      },
    });
  const thrown: unknown[] = [];
  generation('getters', { model: 'gpt-4o-mini' }, (g) => {
    for (const f of [
      () => g.setAttributes(trap({ kept: 'yes' })),
      () => g.setParameters(trap({ temperature: 0.5 })),
      () => g.setUsage(trap({ input: 3, output: 4 }) as never),
      () => g.setUsage(new Proxy({}, { get: () => { throw new Error('proxy'); } }) as never),
      () => g.setAttributes(new Proxy({}, { ownKeys: () => { throw new Error('proxy'); } })),
    ]) {
      try {
        f();
      } catch (err) {
        thrown.push(err);
      }
    }
  });
  assert.deepEqual(thrown, []);
  await collect(1);
  const s = r.span('getters');
  assert.equal(attr(s, 'kept'), 'yes');
  assert.equal(attr(s, 'gen_ai.request.temperature'), 0.5);
  assert.equal(attr(s, 'boom'), undefined);
});

test('trace metadata with a throwing getter: that key is skipped, the trace and its other fields are kept (withTrace and update())', async () => {
  const trap = (o: Record<string, unknown>): Record<string, unknown> =>
    Object.defineProperty(o, 'boom', {
      enumerable: true,
      get(): never {
        throw new Error('getter');
      },
    });
  let traceId = '';
  await withTrace({ name: 'req', userId: 'u1', metadata: trap({ plan: 'pro' }) }, async (t) => {
    traceId = t.traceId;
    span('a', () => 1);
    t.update({ sessionId: 's1', metadata: trap({ later: true }) });
    span('b', () => 1);
  });
  await collect(2);
  const [a, b] = [r.span('a'), r.span('b')];
  assert.equal(a.traceId, traceId, 'the span is in the trace withTrace gave');
  assert.equal(attr(a, 'dspy.trace.name'), 'req');
  assert.equal(attr(a, 'user.id'), 'u1');
  assert.equal(attr(a, 'dspy.trace.metadata.plan'), 'pro');
  assert.equal(attr(a, 'dspy.trace.metadata.boom'), undefined);
  assert.equal(attr(b, 'session.id'), 's1', 'update() applied');
  assert.equal(attr(b, 'dspy.trace.metadata.later'), true);
  assert.equal(attr(b, 'dspy.trace.metadata.plan'), 'pro');
});

test('a throwing getter among withTrace options or update() fields skips that field, not the trace or the other fields', async () => {
  const boom = { enumerable: true, get(): never { throw new Error('getter'); } };
  let traceId = '';
  await withTrace(Object.defineProperty({ name: 'req', sessionId: 's0' }, 'userId', boom) as Parameters<typeof withTrace>[0], async (t) => {
    traceId = t.traceId;
    span('a', () => 1);
    t.update(Object.defineProperty({ sessionId: 's1' }, 'userId', boom));
    span('b', () => 1);
  });
  await collect(2);
  const [a, b] = [r.span('a'), r.span('b')];
  assert.equal(a.traceId, traceId, 'the span is in the trace withTrace gave');
  assert.equal(attr(a, 'dspy.trace.name'), 'req');
  assert.equal(attr(a, 'session.id'), 's0');
  assert.equal(attr(a, 'user.id'), undefined);
  assert.equal(attr(b, 'session.id'), 's1', 'update() applied');
  assert.equal(attr(b, 'dspy.trace.name'), 'req');
});

test('trace metadata parsed from JSON keeps a "__proto__" key as a key (withTrace and update())', async () => {
  // JSON.parse makes "__proto__" an own key; assigned rather than defined, it set the prototype (or was ignored).
  await withTrace({ name: 'req', metadata: JSON.parse('{"__proto__":"p","plan":"pro"}') as Record<string, unknown> }, async (t) => {
    span('a', () => 1);
    t.update({ metadata: JSON.parse('{"__proto__":{"x":1}}') as Record<string, unknown> });
    span('b', () => 1);
  });
  await collect(2);
  const [a, b] = [r.span('a'), r.span('b')];
  assert.equal(attr(a, 'dspy.trace.metadata.__proto__'), 'p');
  assert.equal(attr(a, 'dspy.trace.metadata.plan'), 'pro');
  assert.equal(attr(b, 'dspy.trace.metadata.__proto__'), '{"x":1}');
  assert.equal(attr(b, 'dspy.trace.metadata.x'), undefined);
});

test('configured prices override and extend the table', async () => {
  configure({ prices: { 'my-model': { input: 1, output: 2 }, 'gpt-4o-mini': { input: 10, output: 10 } } });
  generation('llm.generate', { model: 'my-model-2025-01-01' }, (g) => g.setUsage({ input: 1_000_000, output: 1_000_000 }));
  generation('override', { model: 'gpt-4o-mini' }, (g) => g.setUsage({ input: 1_000_000, output: 0 }));
  generation('unknown', { model: 'who-knows' }, (g) => g.setUsage({ input: 5 }));
  generation('explicit', { model: 'gpt-4o' }, (g) => g.setUsage({ input: 5 }).setCost(0.5));
  configure({ prices: undefined });
  await collect(4);
  assert.equal(attr(r.span('llm.generate'), 'gen_ai.usage.cost'), 3);
  assert.equal(attr(r.span('override'), 'gen_ai.usage.cost'), 10);
  assert.equal(attr(r.span('unknown'), 'gen_ai.usage.cost'), undefined);
  assert.equal(attr(r.span('explicit'), 'gen_ai.usage.cost'), 0.5);
});

test('a price override for one model does not reprice another that has its own entry (the most specific name wins)', async () => {
  // A negotiated price for Claude Opus 4: Opus 4.5 (5/25 in the table) was charged at it too.
  configure({ prices: { 'claude-opus-4': { input: 13.5, output: 67.5 } } });
  generation('opus-4-5', { model: 'claude-opus-4-5' }, (g) => g.setUsage({ input: 1_000_000, output: 0 }));
  generation('opus-4-5-dated', { model: 'claude-opus-4-5-20251101' }, (g) => g.setUsage({ input: 1_000_000, output: 0 }));
  generation('opus-4-dated', { model: 'claude-opus-4-20250514' }, (g) => g.setUsage({ input: 1_000_000, output: 0 }));
  generation('opus-4-0', { model: 'claude-opus-4-0' }, (g) => g.setUsage({ input: 1_000_000, output: 0 }));
  configure({ prices: undefined });
  await collect(4);
  assert.equal(attr(r.span('opus-4-5'), 'gen_ai.usage.cost'), 5);
  assert.equal(attr(r.span('opus-4-5-dated'), 'gen_ai.usage.cost'), 5);
  assert.equal(attr(r.span('opus-4-dated'), 'gen_ai.usage.cost'), 13.5, 'the overridden model, by its snapshot name');
  assert.equal(attr(r.span('opus-4-0'), 'gen_ai.usage.cost'), 13.5, 'and by a name only a prefix matches');
});

test('a generation: parameters, usage that replaces the previous one, attributes set by key or by setter', async () => {
  generation(
    'params',
    { model: 'gpt-4o-mini', parameters: { temperature: 0.2, maxTokens: 100, top_p: 0.9, seed: 7, stop: ['\n'], temperature_hint: 'low', max_output_tokens: 'many' } },
    (g) => {
      g.setUsage({ input: 10, output: 5, cacheRead: 4 });
      g.setUsage({ input: 20, output: 5 }); // replaces: no cache count left over
      g.setAttribute('gen_ai.provider.name', 'openai'); // a setter's attribute, by key
      g.setResponseModel('gpt-4o-mini-2024-07-18');
      g.setAttribute('custom.key', 'x');
    },
  );
  await collect(1);
  const g = r.span('params');
  const line = r.lines.find((l) => l.includes('"name":"params"')) ?? '';
  assert.deepEqual(g.attributes, {
    'dspy.observation.type': 'generation',
    'gen_ai.request.model': 'gpt-4o-mini',
    'gen_ai.response.model': 'gpt-4o-mini-2024-07-18',
    'gen_ai.provider.name': 'openai',
    'gen_ai.request.temperature': 0.2,
    'gen_ai.request.max_tokens': 'many',
    'gen_ai.request.top_p': 0.9,
    'gen_ai.request.seed': 7,
    'gen_ai.request.stop': ['\n'],
    'gen_ai.request.temperature_hint': 'low',
    'gen_ai.usage.input_tokens': 20,
    'gen_ai.usage.output_tokens': 5,
    'gen_ai.usage.total_tokens': 25,
    'gen_ai.usage.cost': g.attributes?.['gen_ai.usage.cost'],
    'custom.key': 'x',
  });
  assert.equal(typeof g.attributes?.['gen_ai.usage.cost'], 'number');
  // Each key once on the wire.
  const keys = [...line.matchAll(/"([a-z_.]+)":/g)].map((m) => m[1]);
  assert.equal(new Set(keys).size, keys.length, line);
});

test('usage counts past 2^53 - 1 and a cost that is not a number are left out, so the span stays valid (Infinity and NaN were written as null: the daemon refused it)', async () => {
  configure({ prices: { 'output-priced-only': { output: 2 } as never } });
  try {
    generation('huge', { model: 'gpt-4o-mini' }, (g) => g.setUsage({ input: Number.MAX_VALUE, output: Number.MAX_VALUE }));
    generation('beyond', { model: 'gpt-4o-mini' }, (g) => g.setUsage({ input: 2 ** 53, output: 10 }));
    generation('nan-cost', { model: 'output-priced-only' }, (g) => g.setUsage({ input: 10, output: 10 }));
  } finally {
    configure({ prices: undefined });
  }
  await collect(3);
  const usage = (name: string) => Object.fromEntries(Object.entries(r.span(name).attributes ?? {}).filter(([k]) => k.startsWith('gen_ai.usage.')));
  assert.deepEqual(usage('huge'), {});
  assert.deepEqual(usage('beyond'), { 'gen_ai.usage.output_tokens': 10, 'gen_ai.usage.total_tokens': 10, 'gen_ai.usage.cost': costUsd('gpt-4o-mini', { output: 10 }) });
  assert.deepEqual(usage('nan-cost'), { 'gen_ai.usage.input_tokens': 10, 'gen_ai.usage.output_tokens': 10, 'gen_ai.usage.total_tokens': 20 });
});

test('update() reaches the spans already open in the trace (a request root span, its children) as they end', async () => {
  await withTrace({ name: 'req' }, (t) =>
    span('root-open', async () => {
      // The user is known only once the request is authenticated, inside the root span.
      t.update({ userId: 'alice', sessionId: 's1' });
      await span('child-after', () => 1);
    }),
  );
  await collect(2);
  for (const name of ['root-open', 'child-after']) {
    assert.equal(attr(r.span(name), 'user.id'), 'alice', name);
    assert.equal(attr(r.span(name), 'session.id'), 's1', name);
  }
});

test('never throws into the app: revoked Proxies as a span, a callback\'s value or finish reasons; throwing score options; a time in the wrong unit', async () => {
  const { proxy: revoked, revoke } = Proxy.revocable({}, {});
  revoke();
  const getter = { get dataType(): never { throw new Error('getter'); } };
  const before = sdkStats().droppedByReason.invalid_score ?? 0;
  assert.equal(withActiveSpan(revoked as never, () => 'ran'), 'ran');
  assert.equal(span('returns-revoked', () => revoked), revoked, 'the value is returned as it is');
  assert.equal(startSpan('revoked-parent', { parent: revoked as never }).traceId.length, 32);
  generation('odd-generation', (g) => {
    g.setFinishReasons(revoked as never);
    g.score('quality', 1, getter as never);
    score(new Proxy({ name: 'quality', value: 1 }, { get: (): never => { throw new Error('proxy'); } }));
    g.setCompletionStart(1_700_000_000_000_000_000); // nanoseconds as a number, not milliseconds
  });
  generation('in-ms', (g) => g.setCompletionStart(1_700_000_000_123));
  assert.equal(injectTraceparent({}, revoked as never), undefined);
  assert.equal((sdkStats().droppedByReason.invalid_score ?? 0) - before, 2, 'bad score input is counted');
  await collect(3);
  assert.ok(r.span('returns-revoked').endTimeUnixNano, 'the span ended');
  assert.equal(attr(r.span('odd-generation'), 'dspy.completion_start_time'), undefined);
  assert.equal(attr(r.span('in-ms'), 'dspy.completion_start_time'), '1700000000123000000');
});

test('injectTraceparent into a carrier that does not take it (frozen, sealed, read-only, a throwing Proxy or set()): left as it is, the value still returned, nothing thrown', () => {
  const getterOnly = Object.defineProperty({}, 'traceparent', { get: () => 'theirs', enumerable: true });
  const carriers: [string, object, (c: object) => void][] = [
    ['frozen', Object.freeze({ a: '1' }), (c) => assert.deepEqual(c, { a: '1' })],
    ['sealed', Object.seal({ a: '1' }), (c) => assert.deepEqual(c, { a: '1' })],
    ['not extensible', Object.preventExtensions({}), (c) => assert.deepEqual(Object.keys(c), [])],
    ['getter-only traceparent', getterOnly, (c) => assert.equal((c as { traceparent: string }).traceparent, 'theirs')],
    ['read-only traceparent', Object.defineProperty({}, 'traceparent', { value: 'theirs', writable: false }), (c) => assert.equal((c as { traceparent: string }).traceparent, 'theirs')],
    ['Proxy whose set throws', new Proxy({}, { set: (): never => { throw new Error('no'); } }), (c) => assert.deepEqual(Object.keys(c), [])],
    ['set() that throws', { set: (): never => { throw new Error('no'); } }, () => undefined],
    ['a throwing set getter', { get set(): never { throw new Error('no'); } }, () => undefined],
  ];
  const caller = span('caller', (s) => {
    for (const [what, carrier, unchanged] of carriers) {
      let value: string | undefined;
      assert.doesNotThrow(() => (value = injectTraceparent(carrier as never)), what);
      assert.equal(value, `00-${s.traceId}-${s.spanId}-01`, what);
      unchanged(carrier);
    }
    return s;
  });
  // From a span given explicitly, outside its callback, the same.
  assert.equal(injectTraceparent(Object.freeze({}) as never, caller), `00-${caller.traceId}-${caller.spanId}-01`);
  assert.equal(injectTraceparent(Object.freeze({}) as never), undefined, 'outside any span: nothing');
});

test('a callback\'s promise whose then() throws (a subclass, a Proxy of a promise) comes back as it was, and its span ends', async () => {
  class OwnThen<T> extends Promise<T> {
    override then(): never {
      throw new Error('own then');
    }
  }
  const own = new OwnThen<number>((resolve) => resolve(1));
  const proxied = new Proxy(Promise.resolve(2), {});
  assert.equal(span('own-then', () => own), own);
  assert.equal(span('proxied', () => proxied), proxied, 'no "incompatible receiver" TypeError from the SDK');
  assert.equal(generation('proxied-generation', () => proxied), proxied);
  await collect(3);
  for (const name of ['own-then', 'proxied', 'proxied-generation']) assert.ok(r.span(name).endTimeUnixNano);
});

test('a trace or span id is read once: a getter that answers differently the second time never puts an invalid id on the wire', async () => {
  const flip = (good: string): PropertyDescriptor => {
    let n = 0;
    return { enumerable: true, get: () => (n++ % 2 === 0 ? good : 'not-an-id') };
  };
  const context = (): TraceContext => Object.defineProperties({ sampled: true }, { traceId: flip('a'.repeat(32)), spanId: flip('b'.repeat(16)) }) as TraceContext;
  withTrace({ traceparent: context() }, () => span('by-traceparent', () => 1));
  withTrace(Object.defineProperties({}, { traceId: flip('c'.repeat(32)) }), () => span('by-trace-id', () => 1));
  span('by-parent', { parent: context() }, () => 1);
  await collect(3);
  assert.equal(r.span('by-traceparent').traceId, 'a'.repeat(32));
  assert.equal(r.span('by-trace-id').traceId, 'c'.repeat(32));
  assert.equal(r.span('by-parent').parentSpanId, 'b'.repeat(16));
});

test('never throws into the app: setStatus with a message that cannot be made text; traceparent as W3C has it (lowercase only)', async () => {
  const s = startSpan('odd-status');
  assert.doesNotThrow(() => s.setStatus('error', Object.create(null) as string));
  s.end();
  await collect(1);
  assert.equal(r.span('odd-status').status?.code, 'error');
  // W3C: ids and flags are lowercase hex; a header that is not valid is ignored, not repaired.
  assert.equal(extractTraceparent('00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01'), undefined);
  assert.ok(extractTraceparent('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'));
});

test('getActiveSpan() inside a withTrace nested in a span is that span (the parent of what starts there); a new trace has none', async () => {
  await span('handler', async (outer) => {
    await withTrace({ userId: 'u1' }, async () => {
      assert.equal(getActiveSpan()?.spanId, outer.spanId, 'the span still running around withTrace');
      await withTrace({ sessionId: 's1' }, () => assert.equal(getActiveSpan()?.spanId, outer.spanId, 'through two withTrace'));
      span('inner', (s) => assert.equal(getActiveSpan(), s));
    });
    withTrace({ traceId: 'a'.repeat(32) }, () => assert.equal(getActiveSpan(), undefined, 'another trace: the span is not its parent'));
  });
  withTrace({ name: 'top' }, () => assert.equal(getActiveSpan(), undefined, 'top level of withTrace: no span'));
  await collect(2);
});

test('a generation put back after a split failed attempt is as if that attempt never filled it in (every recorded field)', async () => {
  const err = new TypeError('boom');
  /** What the module's generation had before the attempt, on a new generation. */
  const before = (name: string): SpanImpl => {
    const g = startGeneration(name, { model: 'gpt-4o-mini', input: 'before' }) as SpanImpl;
    g.setAttribute('a.before', 1).setUsage({ input: 100, output: 20 }).event('before.ev');
    return g;
  };
  /** What the next attempt puts on it: the error object the failed one threw, again. */
  const after = (g: SpanImpl): void => {
    g.recordError(err);
    g.end();
  };
  const split = before('split');
  const mark = split.markAttempt();
  split.setInput('attempt').setOutput('attempt out').setAttribute('a.attempt', 2).setModel('gpt-4o').setParameters({ temperature: 0.5 });
  split.setUsage({ input: 7, output: 3 }).setCost(0.5).event('attempt.ev').recordError(err);
  mark.failedAt = split.timeNow();
  const attemptId = split.spanId;
  split.splitFailedAttempt(mark);
  after(split);
  after(before('twin'));
  await collect(3);
  const failed = r.spans().find((s) => s.spanId === attemptId) as SpanRecord;
  assert.equal(failed.name, 'split');
  assert.equal(attr(failed, 'gen_ai.usage.cost'), 0.5);
  assert.equal(attr(failed, 'dspy.output'), '"attempt out"');
  const kept = r.spans().find((s) => s.name === 'split' && s.spanId !== attemptId) as SpanRecord;
  const twin = r.span('twin');
  assert.deepEqual(kept.attributes, twin.attributes);
  assert.deepEqual(kept.status, twin.status);
  assert.deepEqual(
    kept.events?.map((e) => e.name),
    twin.events?.map((e) => e.name),
  );
  assert.equal(attr(kept, 'gen_ai.usage.cost'), costUsd('gpt-4o-mini', { input: 100, output: 20 }), 'priced from its own usage: the setCost and usage went with the attempt');
});
