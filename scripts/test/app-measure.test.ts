/**
 * The SDK benchmark's event-loop goal is about the app's loop while it emits spans: the flush
 * (an app's shutdown) must not be in the event-loop figure, only in CPU and wall time.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { measureRun, type Contestant, type DelayMonitor } from '../lib/app-measure.js';

test('the event-loop monitor runs during the emission and is off before the flush starts', async () => {
  const steps: string[] = [];
  const note = (step: string) => {
    if (steps.at(-1) !== step) steps.push(step);
  };
  const contestant: Contestant = {
    emit: () => note('emit'),
    flush: async () => (note('flush'), true),
    shutdown: async () => undefined,
  };
  const monitor: DelayMonitor = {
    enable: () => note('monitor on'),
    disable: () => note('monitor off'),
    percentile: () => 12e6,
    max: 15e6,
    count: 3,
  };
  const result = await measureRun(contestant, { contender: 'floor', spans: 10, burst: 4, target: '' }, 0, () => monitor);
  assert.deepEqual(steps, ['monitor on', 'emit', 'monitor off', 'flush']);
  assert.deepEqual(result.eld, { p50Ms: 2, p99Ms: 2, maxMs: 5, samples: 3 });
  assert.equal(result.flushOk, true);
});
