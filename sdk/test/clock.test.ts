/**
 * Span times follow the wall clock in a long-running app. The monotonic clock the SDK measures
 * with does not count a suspended machine (a laptop's sleep, a paused VM) and does not follow a
 * step of the wall clock (NTP): anchored to it once, at load, every later record was off by as
 * much, for good. The child app below moves its wall clock (Date.now, what the SDK reads it
 * through) as such a jump would, and reports what the wall clock said around each span.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { UnixReceiver } from './support/receiver.js';

const SDK = new URL('../src/index.js', import.meta.url).href;

const APP = `
import { configure, event, flush, span, startSpan, withActiveSpan, withTrace } from ${JSON.stringify(SDK)};
configure({ endpoint: process.env.ENDPOINT, serviceName: 'clock-test' });
const realNow = Date.now;
let shift = 0;
Date.now = () => realNow() + shift;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const wall = {};
const at = async (name, fn) => {
  const before = Date.now();
  await fn();
  wall[name] = [before, Date.now()];
};
await at('before', () => span('before', () => 1));
// An hour ahead: the machine slept for an hour, or NTP stepped the clock.
shift = 3_600_000;
await sleep(300);
await at('after-forward', () => span('after-forward', () => event('standalone-forward')));
// A span open while the clock steps back two hours: it still ends after it started.
const open = startSpan('open');
await sleep(300);
shift = -3_600_000;
await sleep(300);
await at('after-backward', () => span('after-backward', { parent: null }, () => 1));
withActiveSpan(open, () => span('child-of-open', () => 1));
open.end();
// The same across a withTrace between the span and its child (a request's user known inside a handler's span).
await span('outer', async () => {
  await sleep(300);
  shift = 0;
  await sleep(300);
  await withTrace({ userId: 'u1' }, () => (span('child-in-trace', () => 1), event('event-in-trace')));
});
process.stdout.write(JSON.stringify({ flushed: await flush(10_000), wall }) + '\\n');
`;

function runChild(endpoint: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', APP], { env: { ...process.env, ENDPOINT: endpoint }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    // A hang guard, not a speed test.
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const ms = (ns: string): number => Number(BigInt(ns) / 1_000_000n);

test('span and event times follow the wall clock after it jumps (a machine resumed from sleep, an NTP step); a span open across a step back still ends after it started', async () => {
  const r = await UnixReceiver.create();
  try {
    const run = await runChild(r.endpoint);
    assert.equal(run.code, 0, run.stderr);
    const { flushed, wall } = JSON.parse(run.stdout.trim()) as { flushed: boolean; wall: Record<string, [number, number]> };
    assert.equal(flushed, true);
    await r.waitForSpans(7);
    assert.deepEqual(r.invalid, [], 'every record valid: no span ends before it starts');
    // Within a minute of what the wall clock said around the span: the jumps are an hour.
    const near = (name: string, t: number): void => {
      const [from, to] = wall[name] as [number, number];
      assert.ok(t >= from - 60_000 && t <= to + 60_000, `${name}: ${new Date(t).toISOString()} is not within a minute of the wall clock (${new Date(from).toISOString()})`);
    };
    for (const name of ['before', 'after-forward', 'after-backward']) {
      const s = r.span(name);
      near(name, ms(s.startTimeUnixNano));
      near(name, ms(s.endTimeUnixNano));
    }
    const ev = r.events().find((e) => e.name === 'standalone-forward');
    assert.ok(ev, 'the standalone event arrived');
    near('after-forward', ms(ev.timeUnixNano));
    const open = r.span('open');
    const child = r.span('child-of-open');
    assert.ok(BigInt(open.endTimeUnixNano) >= BigInt(open.startTimeUnixNano));
    // A child keeps its parent's clock: inside its parent, whatever the wall clock did meanwhile.
    assert.ok(BigInt(child.startTimeUnixNano) >= BigInt(open.startTimeUnixNano) && BigInt(child.endTimeUnixNano) <= BigInt(open.endTimeUnixNano));
    const outer = r.span('outer');
    const inTrace = r.span('child-in-trace');
    assert.equal(inTrace.parentSpanId, outer.spanId);
    assert.ok(
      BigInt(inTrace.startTimeUnixNano) >= BigInt(outer.startTimeUnixNano) && BigInt(inTrace.endTimeUnixNano) <= BigInt(outer.endTimeUnixNano),
      'a child under a withTrace keeps its parent\'s clock too',
    );
    const inTraceEvent = r.events().find((e) => e.name === 'event-in-trace');
    assert.ok(inTraceEvent, 'the event in the trace arrived');
    assert.ok(BigInt(inTraceEvent.timeUnixNano) >= BigInt(outer.startTimeUnixNano) && BigInt(inTraceEvent.timeUnixNano) <= BigInt(outer.endTimeUnixNano), 'its event too');
  } finally {
    await r.dispose();
  }
});
