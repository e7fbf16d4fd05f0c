/**
 * The SDK against a real dspy-o11yd child process and the fake Langfuse: what a ReAct run
 * records arrives as Langfuse observations; the app keeps running, and loses nothing it need not
 * lose, with no daemon, with the daemon killed and restarted mid-run, and with a daemon that
 * stops reading.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { once } from 'node:events';
import { connect } from 'node:net';
import { join } from 'node:path';
import { configure, flush, generation, sdkStats, span, withTrace } from 'dspy-o11y';
import { langfuseWouldDrop, startFakeLangfuse, type FakeLangfuse, type RecordedSpan } from 'dspy-o11yd/dist/test/support/fake-langfuse.js';
import { CUSTOMERS, serveCustomers } from '../lib/coffee-shop.js';
import { runDaemon, type DaemonChild } from '../lib/run-daemon.js';

const KEYS = { LANGFUSE_PUBLIC_KEY: 'pk-lf-sdk', LANGFUSE_SECRET_KEY: 'sk-lf-sdk' };

async function eventually(check: () => void | Promise<void>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

async function metric(d: DaemonChild, name: string, labels: string): Promise<number> {
  const text = await (await fetch(`${d.httpUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line ? Number(line.split(' ').pop()) : 0;
}

const attr = (s: RecordedSpan, k: string) => s.attributes[k];

describe('SDK → dspy-o11yd → Langfuse', () => {
  let fake: FakeLangfuse;
  let dir: string;
  let socket: string;
  const daemons: DaemonChild[] = [];
  const start = async () => {
    const d = await runDaemon(socket, ['--http', '127.0.0.1:0', '--flush-interval', '20'], { ...KEYS, LANGFUSE_HOST: fake.url });
    daemons.push(d);
    return d;
  };

  before(async () => {
    fake = await startFakeLangfuse({ publicKey: KEYS.LANGFUSE_PUBLIC_KEY, secretKey: KEYS.LANGFUSE_SECRET_KEY });
    dir = mkdtempSync(join(tmpdir(), 'sdk-daemon-'));
    socket = join(dir, 'd.sock');
  });
  after(async () => {
    for (const d of daemons) d.child.kill('SIGKILL');
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('a concurrent ReAct run arrives as Langfuse traces: tree, ids, types, usage, cost, trace fields', async () => {
    const d = await start();
    configure({ endpoint: `unix://${socket}`, serviceName: 'coffee-shop', serviceVersion: '2.0.0', environment: 'staging' });
    const results = await serveCustomers();
    assert.equal(results.length, CUSTOMERS.length);
    assert.ok(await flush());
    await eventually(() => assert.equal(new Set(fake.spans.map((s) => s.traceId)).size, CUSTOMERS.length));
    await eventually(async () => {
      const status = (await (await fetch(`${d.httpUrl}/v1/status`)).json()) as { spans: { queued: number; inFlight: number } };
      assert.equal(status.spans.queued + status.spans.inFlight, 0);
    });
    const traces = new Map<string, RecordedSpan[]>();
    for (const s of fake.spans) traces.set(s.traceId, [...(traces.get(s.traceId) ?? []), s]);
    const users = new Set<unknown>();
    for (const [traceId, spans] of traces) {
      assert.match(traceId, /^[0-9a-f]{32}$/);
      const ids = new Set(spans.map((s) => s.spanId));
      assert.equal(ids.size, spans.length, 'each span exported once');
      const roots = spans.filter((s) => !s.parentSpanId);
      assert.equal(roots.length, 1);
      const root = roots[0]!;
      assert.equal(root.name, 'ReAct.forward');
      assert.equal(attr(root, 'langfuse.observation.type'), 'agent');
      assert.ok(attr(root, 'langfuse.trace.input'), 'root input is the trace input');
      assert.ok(attr(root, 'langfuse.trace.output'), 'root output is the trace output');
      for (const s of spans) {
        if (s.parentSpanId) assert.ok(ids.has(s.parentSpanId), `parent of ${s.name} is in the trace`);
        assert.ok(BigInt(s.endTimeUnixNano) >= BigInt(s.startTimeUnixNano));
        const parent = spans.find((p) => p.spanId === s.parentSpanId);
        if (parent) assert.ok(BigInt(s.startTimeUnixNano) >= BigInt(parent.startTimeUnixNano), `${s.name} starts inside ${parent.name}`);
        assert.equal(attr(s, 'langfuse.trace.name'), 'coffee-order', `trace name on ${s.name}`);
        assert.equal(attr(s, 'langfuse.user.id'), attr(root, 'langfuse.user.id'));
        assert.equal(attr(s, 'langfuse.release'), '2.0.0');
        assert.equal(attr(s, 'langfuse.environment'), 'staging');
        assert.equal(s.resource['service.name'], 'coffee-shop');
      }
      users.add(attr(root, 'langfuse.user.id'));
      const iterations = spans.filter((s) => s.name === 'react.iteration');
      assert.ok(iterations.length >= 3);
      for (const it of iterations) {
        assert.equal(it.parentSpanId, root.spanId);
        assert.equal(attr(it, 'langfuse.observation.type'), 'agent');
        const kids = spans.filter((s) => s.parentSpanId === it.spanId);
        const gen = kids.find((s) => s.name === 'llm.generate');
        assert.ok(gen, 'each iteration has its LLM generation');
        assert.equal(attr(gen, 'langfuse.observation.type'), 'generation');
        assert.equal(attr(gen, 'langfuse.observation.model.name'), 'gpt-4o-mini');
        const usage = JSON.parse(String(attr(gen, 'langfuse.observation.usage_details'))) as Record<string, number>;
        assert.ok(Number.isInteger(usage.input) && Number.isInteger(usage.output));
        assert.equal(usage.total, usage.input! + usage.output!);
        const cost = JSON.parse(String(attr(gen, 'langfuse.observation.cost_details'))) as { total: number };
        assert.equal(typeof cost.total, 'number');
        assert.ok(cost.total > 0);
        assert.ok(kids.some((s) => s.name === 'react.iteration_complete' && attr(s, 'langfuse.observation.type') === 'event'));
      }
      const tool = spans.find((s) => s.name === 'react.tool_call');
      assert.equal(attr(tool!, 'langfuse.observation.type'), 'tool');
    }
    assert.equal(users.size, CUSTOMERS.length, 'no two customers share a trace');
    assert.equal(fake.maxInFlight, 1);
  });

  test('a span with a langfuse.* attribute of its own is still translated from the SDK vocabulary', async () => {
    // Langfuse features outside the vocabulary (a public trace, observation metadata) are set as
    // langfuse.* attributes; such a span used to pass as if it came from a Langfuse SDK, so its
    // input, output, trace name, level and usage never reached Langfuse's fields.
    if (daemons.length === 0) await start(); // the first test's daemon, which the next test kills
    configure({ endpoint: `unix://${socket}`, serviceName: 'coffee-shop', environment: 'Staging' });
    await withTrace({ name: 'public-order', userId: 'u-public' }, () =>
      span('ChainOfThought.forward', { type: 'chain', input: { q: 'latte?' }, level: 'WARNING' }, (s) => {
        s.setAttribute('langfuse.trace.public', true);
        generation('llm.generate', { model: 'gpt-4o-mini', provider: 'openai', input: 'hi', attributes: { 'langfuse.observation.metadata.shop': 'north' } }, (g) => {
          g.setUsage({ input: 12, output: 30 });
          g.setOutput('yes');
        });
        s.setOutput({ answer: 'yes' });
      }),
    );
    assert.ok(await flush());
    let root: RecordedSpan | undefined;
    let gen: RecordedSpan | undefined;
    await eventually(() => {
      root = fake.spans.find((s) => s.name === 'ChainOfThought.forward' && s.attributes['langfuse.trace.public'] === true);
      gen = fake.spans.find((s) => s.name === 'llm.generate' && s.attributes['langfuse.observation.metadata.shop'] === 'north');
      assert.ok(root && gen);
    });
    assert.equal(attr(root!, 'langfuse.observation.type'), 'chain');
    assert.equal(attr(root!, 'langfuse.observation.input'), '{"q":"latte?"}');
    assert.equal(attr(root!, 'langfuse.trace.output'), '{"answer":"yes"}');
    assert.equal(attr(root!, 'langfuse.observation.level'), 'WARNING');
    assert.equal(attr(root!, 'langfuse.environment'), 'staging');
    assert.equal(attr(gen!, 'langfuse.observation.type'), 'generation');
    assert.deepEqual(JSON.parse(String(attr(gen!, 'langfuse.observation.usage_details'))), { input: 12, output: 30, total: 42 });
    for (const s of [root!, gen!]) {
      assert.equal(attr(s, 'langfuse.trace.name'), 'public-order', s.name);
      assert.equal(attr(s, 'langfuse.user.id'), 'u-public', s.name);
      assert.equal(langfuseWouldDrop(s), undefined, s.name);
    }
  });

  test('daemon killed and restarted mid-run: buffered records arrive, drops are counted exactly on both sides', async () => {
    fake.reset();
    const before = sdkStats().dropped;
    configure({ endpoint: `unix://${socket}`, maxBufferRecords: 50 });
    const d1 = daemons[daemons.length - 1]!;
    const emit = (from: number, to: number) => {
      for (let i = from; i < to; i++) void span(`restart-${i}`, { attributes: { i } }, () => i);
    };
    emit(0, 20);
    await flush();
    await eventually(() => assert.equal(fake.spans.filter((s) => s.name.startsWith('restart-')).length, 20));
    d1.child.kill('SIGKILL');
    await new Promise((r) => d1.child.once('exit', r));
    // The daemon is gone: the app goes on; the SDK keeps the newest 50 and counts the rest.
    emit(20, 220);
    assert.equal(sdkStats().dropped - before, 150);
    const d2 = await start();
    await flush(5000);
    await eventually(() => assert.equal(fake.spans.filter((s) => s.name.startsWith('restart-')).length, 70));
    const got = fake.spans.filter((s) => s.name.startsWith('restart-')).map((s) => Number(s.name.slice(8))).sort((a, b) => a - b);
    assert.deepEqual(got, [...Array.from({ length: 20 }, (_, i) => i), ...Array.from({ length: 50 }, (_, i) => 170 + i)], 'the oldest were dropped');
    await eventually(async () => assert.equal(await metric(d2, 'dspy_o11yd_spans_dropped_total', 'reason="client_buffer"'), 150));
  });

  test('a daemon that stops reading: the app runs on, the buffer stays bounded, drops are counted', async () => {
    fake.reset();
    configure({ endpoint: `unix://${socket}`, maxBufferRecords: 1000, maxBufferBytes: 1 << 20 });
    const d = daemons[daemons.length - 1]!;
    await flush();
    const droppedBefore = sdkStats().dropped;
    const clientBufferBefore = await metric(d, 'dspy_o11yd_spans_dropped_total', 'reason="client_buffer"');
    d.child.kill('SIGSTOP');
    const big = 'x'.repeat(2000);
    let done = 0;
    for (let i = 0; i < 20_000; i++) {
      void span('stalled', { input: big }, () => done++);
      if (i % 1000 === 0) await new Promise((r) => setImmediate(r)); // let the transport try to write
    }
    assert.equal(done, 20_000, 'every callback ran');
    const stats = sdkStats();
    assert.ok(stats.buffered <= 1000, `buffer bounded (${stats.buffered})`);
    const dropped = stats.dropped - droppedBefore;
    assert.ok(dropped > 0, 'the oldest were dropped while the daemon did not read');
    d.child.kill('SIGCONT');
    await flush(10_000);
    await eventually(async () => assert.equal(await metric(d, 'dspy_o11yd_spans_dropped_total', 'reason="client_buffer"') - clientBufferBefore, dropped));
    await eventually(async () => {
      const s = (await (await fetch(`${d.httpUrl}/v1/status`)).json()) as { spans: { received: number; queued: number; inFlight: number } };
      assert.equal(s.spans.queued + s.spans.inFlight, 0);
    });
    const arrived = fake.spans.filter((s) => s.name === 'stalled').length;
    assert.equal(arrived + dropped, 20_000, 'every span either arrived or was counted as dropped');
  });

  test('a daemon at its --max-connections: the SDK is refused and reconnects, drops nothing, delivers every record, and holds a connection once a slot frees', async () => {
    fake.reset();
    const capped = join(dir, 'capped.sock');
    const d = await runDaemon(capped, ['--http', '127.0.0.1:0', '--flush-interval', '20', '--max-connections', '1'], { ...KEYS, LANGFUSE_HOST: fake.url });
    daemons.push(d);
    const connections = async () => ((await (await fetch(`${d.httpUrl}/v1/status`)).json()) as { connections: { open: number; refused: number } }).connections;
    // runDaemon's readiness probe was a connection too: until the daemon has seen it close, it
    // holds the only slot, and the holder below was refused (1 run in 2 of this test alone).
    await eventually(async () => assert.equal((await connections()).open, 0));
    // Another client holds the only slot.
    const holder = connect(capped);
    holder.on('error', () => undefined);
    holder.resume();
    await once(holder, 'connect');
    await eventually(async () => assert.equal((await connections()).open, 1));
    const before = sdkStats();
    configure({ endpoint: `unix://${capped}`, maxBufferRecords: 10_000, maxBufferBytes: 64 * 1024 * 1024 });
    // 3 MB: more than one write, so records are still waiting when an EOF arrives.
    const input = 'x'.repeat(1000);
    for (let i = 0; i < 3000; i++) void span(`capped-${i}`, { input }, () => i);
    await eventually(async () => assert.ok((await connections()).refused >= 2, 'the SDK was refused, reconnected, and was refused again'));
    holder.end();
    assert.equal(await flush(20_000), true);
    const now = sdkStats();
    assert.equal(now.dropped - before.dropped, 0, `dropped: ${JSON.stringify(now.droppedByReason)}`);
    await eventually(() => assert.equal(new Set(fake.spans.filter((s) => s.name.startsWith('capped-')).map((s) => s.name)).size, 3000));
    // The freed slot is the SDK's now: one connection that stays. The SDK reconnects when it has
    // something to send: its last records may have gone out on a connection the daemon refused
    // (it reads what was written before it closes one), leaving it idle and unconnected.
    void span('capped-after', () => 0);
    await eventually(async () => {
      assert.equal((await connections()).open, 1);
      assert.equal(sdkStats().connected, true);
    });
    await eventually(() => assert.ok(fake.spans.some((s) => s.name === 'capped-after')));
    await d.stop();
  });
});
