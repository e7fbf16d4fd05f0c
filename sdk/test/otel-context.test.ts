/**
 * An app that runs OpenTelemetry (a server span per request, its context in AsyncLocalStorage):
 * a dspy-o11y trace started inside an OpenTelemetry span continues that span's trace, as its child.
 * The real @opentelemetry/api, sdk-trace-base and AsyncLocalStorage context manager, registered
 * globally as an instrumented app has them; the real SDK sending to a receiver on a Unix socket.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { context, type Span, type Tracer } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { AlwaysOffSampler, BasicTracerProvider } from '@opentelemetry/sdk-trace-base';
import type { SpanRecord } from '@dspy-o11y/proto';
import { configure, event, extractTraceparent, flush, generation, span, startSpan, withTrace } from '../src/index.js';
import { runApp } from './support/child.js';
import { UnixReceiver, sleep, useReceiver } from './support/receiver.js';

let r: UnixReceiver;
useReceiver({ serviceName: 'otel-context-test' }, (x) => (r = x));

context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
const tracer: Tracer = new BasicTracerProvider().getTracer('app');

const OTEL_API = Symbol.for('opentelemetry.js.api.1');
const HEX32 = /^[0-9a-f]{32}$/;

async function collect(n: number): Promise<SpanRecord[]> {
  assert.equal(await flush(), true);
  await r.waitForSpans(n);
  assert.deepEqual(r.invalid, []);
  return r.spans();
}

/** A request handler's OpenTelemetry server span, active while `fn` runs. */
function request<T>(name: string, fn: (s: Span) => Promise<T>): Promise<T> {
  return tracer.startActiveSpan(name, async (s) => {
    try {
      return await fn(s);
    } finally {
      s.end();
    }
  });
}

test('inside an OpenTelemetry span: the dspy-o11y root takes its trace id and has it as parent; children are ordinary children', async () => {
  let ids = { traceId: '', spanId: '' };
  const out = await request('GET /answer', async (otel) => {
    ids = otel.spanContext();
    return span('ChainOfThought.forward', async () => {
      await sleep(1);
      const g = await generation('llm.generate', { model: 'gpt-4o-mini' }, async () => {
        await sleep(1);
        return 'because';
      });
      span('post', () => undefined);
      return g;
    });
  });
  assert.equal(out, 'because');
  await collect(3);
  const root = r.span('ChainOfThought.forward');
  // The old SDK: a trace id of its own and no parent.
  assert.equal(root.traceId, ids.traceId);
  assert.equal(root.parentSpanId, ids.spanId);
  assert.notEqual(root.spanId, ids.spanId);
  for (const name of ['llm.generate', 'post']) {
    assert.equal(r.span(name).traceId, ids.traceId, name);
    assert.equal(r.span(name).parentSpanId, root.spanId, name);
  }
  // The top of the app's part of the trace says so (Langfuse's "app root"); its children do not.
  assert.equal(root.attributes?.['dspy.app_root'], true);
  for (const name of ['llm.generate', 'post']) assert.equal(r.span(name).attributes?.['dspy.app_root'], undefined, name);
});

test('a span whose parent is not one of ours is marked dspy.app_root: OpenTelemetry, a remote traceparent, withTrace continuing either; never a span under ours or a true root', async () => {
  const remote = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
  await request('GET /mark', async () => {
    await withTrace({ name: 'otel-trace' }, async () => {
      await span('wt-otel-top', async () => span('wt-otel-child', () => undefined));
      // Nested directly in the first: still the first span of the app's part.
      await withTrace({ userId: 'u2' }, async () => span('wt-otel-nested-top', () => undefined));
    });
  });
  await withTrace({ traceparent: remote }, async () => span('wt-remote-top', async () => span('wt-remote-child', () => undefined)));
  span('explicit-remote-top', { parent: extractTraceparent({ traceparent: remote })! }, () => undefined);
  await withTrace({ name: 'own' }, async () => span('own-root', async () => span('own-child', () => undefined)));
  await collect(8);
  for (const name of ['wt-otel-top', 'wt-otel-nested-top', 'wt-remote-top', 'explicit-remote-top']) {
    assert.equal(r.span(name).attributes?.['dspy.app_root'], true, name);
  }
  for (const name of ['wt-otel-child', 'wt-remote-child', 'own-root', 'own-child']) {
    assert.equal(r.span(name).attributes?.['dspy.app_root'], undefined, name);
  }
  assert.equal(r.span('own-root').parentSpanId, undefined);
});

test('withTrace, startSpan and a top-level event inside an OpenTelemetry span join its trace too; an explicit parent (traceparent, null) wins', async () => {
  let ids = { traceId: '', spanId: '' };
  const remote = extractTraceparent({ traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' })!;
  await request('POST /chat', async (otel) => {
    ids = otel.spanContext();
    await withTrace({ name: 'chat', userId: 'u1' }, async (t) => {
      assert.equal(t.traceId, ids.traceId);
      await span('in-trace', async () => sleep(1));
    });
    startSpan('manual').end();
    event('app.note', { k: 1 });
    span('remote-child', { parent: remote }, () => undefined);
    span('fresh', { parent: null }, () => undefined);
  });
  await collect(4);
  await r.waitFor(() => r.events().length >= 1, 15_000, 'event');
  const inTrace = r.span('in-trace');
  assert.equal(inTrace.traceId, ids.traceId);
  assert.equal(inTrace.parentSpanId, ids.spanId, 'the withTrace scope continues the OpenTelemetry span');
  assert.equal(inTrace.attributes?.['user.id'], 'u1');
  assert.equal(r.span('manual').traceId, ids.traceId);
  assert.equal(r.span('manual').parentSpanId, ids.spanId);
  const ev = r.events().find((e) => e.name === 'app.note')!;
  assert.equal(ev.traceId, ids.traceId);
  assert.equal(ev.parentSpanId, ids.spanId);
  assert.equal(r.span('remote-child').traceId, remote.traceId);
  assert.equal(r.span('remote-child').parentSpanId, remote.spanId);
  assert.notEqual(r.span('fresh').traceId, ids.traceId);
  assert.equal(r.span('fresh').parentSpanId, undefined);
});

test('outside any OpenTelemetry span (and after one ended): a fresh trace', async () => {
  await request('GET /before', async () => undefined);
  await span('outside', async () => sleep(1));
  await collect(1);
  const s = r.span('outside');
  assert.match(s.traceId, HEX32);
  assert.equal(s.parentSpanId, undefined);
});

test("the OpenTelemetry span's sampled flag is not used (as a remote traceparent's is not): the trace is decided by its id", async () => {
  const unsampled = new BasicTracerProvider({ sampler: new AlwaysOffSampler() }).getTracer('off');
  let ids = { traceId: '', spanId: '', traceFlags: -1 };
  await unsampled.startActiveSpan('GET /unsampled', async (otel) => {
    ids = otel.spanContext();
    await span('kept', async () => sleep(1));
    otel.end();
  });
  assert.equal(ids.traceFlags, 0, 'a non-recording span, flags 00');
  await collect(1);
  assert.equal(r.span('kept').traceId, ids.traceId);
  assert.equal(r.span('kept').parentSpanId, ids.spanId);
});

test('50 concurrent OpenTelemetry requests, each running dspy-o11y spans across awaits: every trace id is its own request\'s', async () => {
  const N = 50;
  const seen = new Map<string, string>(); // request name → its OpenTelemetry trace id
  await Promise.all(
    Array.from({ length: N }, (_, i) =>
      request(`req-${i}`, async (otel) => {
        seen.set(`req-${i}`, otel.spanContext().traceId);
        await sleep(i % 7);
        await span(`root-${i}`, async () => {
          await sleep((i * 3) % 5);
          await generation(`gen-${i}`, {}, async () => sleep(i % 3));
          await sleep(1);
          span(`leaf-${i}`, () => undefined);
        });
      }),
    ),
  );
  await collect(3 * N);
  assert.equal(new Set(seen.values()).size, N);
  for (let i = 0; i < N; i++) {
    const want = seen.get(`req-${i}`)!;
    for (const name of [`root-${i}`, `gen-${i}`, `leaf-${i}`]) assert.equal(r.span(name).traceId, want, name);
  }
});

test('inside an active dspy-o11y span, an inner OpenTelemetry span does not re-parent the dspy-o11y child', async () => {
  let ids = { outer: '', inner: '' };
  await request('GET /outer', async (outer) => {
    ids.outer = outer.spanContext().traceId;
    await span('parent', async () => {
      // e.g. an instrumented HTTP client call made inside the LLM step
      await tracer.startActiveSpan('db.query', { root: true }, async (inner) => {
        ids.inner = inner.spanContext().traceId;
        await span('child', async () => sleep(1));
        await withTrace({ name: 'nested' }, async () => span('in-nested-trace', () => undefined));
        inner.end();
      });
    });
  });
  assert.notEqual(ids.inner, ids.outer);
  await collect(3);
  const parent = r.span('parent');
  assert.equal(parent.traceId, ids.outer);
  for (const name of ['child', 'in-nested-trace']) {
    assert.equal(r.span(name).traceId, parent.traceId, name);
    assert.notEqual(r.span(name).traceId, ids.inner, name);
  }
  assert.equal(r.span('child').parentSpanId, parent.spanId);
  assert.equal(r.span('in-nested-trace').parentSpanId, parent.spanId);
});

test('opt-out: configure({ otelContext: false }) starts fresh traces inside OpenTelemetry spans; back on with true', async () => {
  let off = '';
  let on = '';
  try {
    configure({ otelContext: false });
    await request('GET /off', async (otel) => {
      off = otel.spanContext().traceId;
      await span('off', async () => sleep(1));
      await withTrace({ name: 'off-trace' }, () => span('off-in-trace', () => undefined));
    });
    configure({ otelContext: true });
    await request('GET /on', async (otel) => {
      on = otel.spanContext().traceId;
      await span('on', async () => sleep(1));
    });
  } finally {
    configure({ otelContext: undefined });
  }
  await collect(3);
  for (const name of ['off', 'off-in-trace']) {
    assert.notEqual(r.span(name).traceId, off, name);
    assert.equal(r.span(name).parentSpanId, undefined, name);
  }
  assert.equal(r.span('on').traceId, on);
});

test('opt-out by env: DSPY_O11Y_OTEL_CONTEXT off values, on values, a bad value (default, with a debug line), configure() over env', async () => {
  const cases: [Record<string, string>, boolean][] = [
    [{}, true],
    [{ DSPY_O11Y_OTEL_CONTEXT: 'false' }, false],
    [{ DSPY_O11Y_OTEL_CONTEXT: ' OFF ' }, false],
    [{ DSPY_O11Y_OTEL_CONTEXT: '0' }, false],
    [{ DSPY_O11Y_OTEL_CONTEXT: 'yes' }, true],
    [{ DSPY_O11Y_OTEL_CONTEXT: 'nope' }, true],
    [{ DSPY_O11Y_OTEL_CONTEXT: 'false', FIXTURE_CONFIGURE: JSON.stringify({ otelContext: true }) }, true],
    [{ FIXTURE_CONFIGURE: JSON.stringify({ otelContext: false }) }, false],
  ];
  for (const [env, joins] of cases) {
    const rx = await UnixReceiver.create();
    try {
      const run = await runApp({ DSPY_O11Y_ENDPOINT: rx.endpoint, DSPY_O11Y_DEBUG: '1', FIXTURE_SPANS: '2', FIXTURE_OTEL: '1', ...env });
      const what = JSON.stringify(env);
      assert.equal(run.code, 0, run.stderr);
      const otel = run.report?.result.otel;
      assert.match(otel?.traceId ?? '', HEX32, what);
      await rx.waitFor(() => rx.spans().length >= 3, 15_000, '3 spans');
      assert.deepEqual(rx.invalid, []);
      for (const name of ['job-0', 'job-1', 'llm.generate']) {
        const s = rx.span(name);
        assert.equal(s.traceId === otel!.traceId, joins, `${what} ${name}`);
        assert.equal(s.parentSpanId === otel!.spanId, joins, `${what} ${name}`);
      }
      if (env.DSPY_O11Y_OTEL_CONTEXT === 'nope') assert.match(run.stderr, /DSPY_O11Y_OTEL_CONTEXT="nope" is not one of 1, true, yes, on, 0, false, no, off; the active OpenTelemetry trace is still joined/);
    } finally {
      await rx.dispose();
    }
  }
});

test('a broken OpenTelemetry global (throwing, missing or garbage at any step) is ignored: a fresh trace, nothing thrown', async () => {
  const g = globalThis as Record<symbol, unknown>;
  const real = g[OTEL_API];
  const withSpan = (spanContext: () => unknown) => ({ context: { active: () => ({ getValue: () => ({ spanContext }) }) } });
  const zeros = { traceId: '0'.repeat(32), spanId: '0'.repeat(16), traceFlags: 1 };
  const broken: [string, unknown][] = [
    ['null', null],
    ['a number', 42],
    ['no context manager', { version: '1.9.1' }],
    ['active is not a function', { context: { active: 1 } }],
    ['active() throws', { context: { active: () => { throw new Error('boom'); } } }],
    ['active() returns null', { context: { active: () => null } }],
    ['getValue throws', { context: { active: () => ({ getValue: () => { throw new Error('boom'); } }) } }],
    ['no span', { context: { active: () => ({ getValue: () => undefined }) } }],
    ['spanContext() throws', withSpan(() => { throw new Error('boom'); })],
    ['spanContext() returns null', withSpan(() => null)],
    ['all-zero ids', withSpan(() => zeros)],
    ['wrong length', withSpan(() => ({ traceId: 'abc', spanId: '0123456789abcdef' }))],
    ['not hex', withSpan(() => ({ traceId: 'z'.repeat(32), spanId: '0123456789abcdef' }))],
    ['numbers', withSpan(() => ({ traceId: 1, spanId: 2 }))],
    ['a throwing getter', withSpan(() => ({ get traceId(): string { throw new Error('boom'); }, spanId: '0123456789abcdef' }))],
    ['a throwing Proxy', new Proxy({}, { get: () => { throw new Error('boom'); } })],
  ];
  try {
    for (const [name, value] of broken) {
      g[OTEL_API] = value;
      assert.equal(span(`s:${name}`, () => 7), 7, name);
      assert.equal(await withTrace({}, async () => span(`t:${name}`, async () => 8)), 8, name);
      assert.doesNotThrow(() => event(`e:${name}`), name);
    }
  } finally {
    g[OTEL_API] = real;
  }
  await collect(2 * broken.length);
  await r.waitFor(() => r.events().length >= broken.length, 15_000, 'events');
  const roots = new Set<string>();
  for (const [name] of broken) {
    for (const rec of [r.span(`s:${name}`), r.span(`t:${name}`), r.events().find((e) => e.name === `e:${name}`)!]) {
      assert.match(rec.traceId, HEX32, name);
      assert.notEqual(rec.traceId, zeros.traceId, name);
      assert.equal(rec.parentSpanId, undefined, name);
      roots.add(rec.traceId);
    }
  }
  assert.equal(roots.size, 3 * broken.length, 'each a trace of its own');
  // And OpenTelemetry's upper-case hex (valid there; W3C and OTLP bytes are the same ids) is taken in lower case.
  g[OTEL_API] = withSpan(() => ({ traceId: '0AF7651916CD43DD8448EB211C80319C', spanId: 'B7AD6B7169203331', traceFlags: 1 }));
  try {
    span('upper', () => undefined);
  } finally {
    g[OTEL_API] = real;
  }
  assert.equal(await flush(), true);
  await r.waitFor(() => r.spans().some((s) => s.name === 'upper'), 15_000, 'upper');
  assert.equal(r.span('upper').traceId, '0af7651916cd43dd8448eb211c80319c');
  assert.equal(r.span('upper').parentSpanId, 'b7ad6b7169203331');
});
