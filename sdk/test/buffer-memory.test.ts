/**
 * The buffer's bound is about memory: with the daemon down, the Unix transport keeps buffered
 * records as UTF-8 bytes outside the V8 heap (transport/byte-ring.ts), so the heap barely grows
 * (as strings, a record survives and is copied by every young-generation GC) while the process's
 * external memory grows by about the buffered bytes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { configure, generation, sdkStats, shutdown, span, withTrace } from '../src/index.js';
import { tempDir } from './support/receiver.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

test('with the daemon down, buffered records wait outside the V8 heap, taking about their length', async () => {
  configure({ endpoint: `unix://${join(tempDir(), 'nobody.sock')}`, serviceName: 'memory' });
  const messages = (i: number) => [
    { role: 'system', content: 'You are a barista. Answer in one short sentence.' },
    { role: 'user', content: `What is on the menu today? I am customer ${i} and would like something warm with oat milk.` },
  ];
  gc();
  const before = process.memoryUsage();
  for (let i = 0; i < 20_000; i++) {
    withTrace({ name: 'coffee-order', userId: `u-${i % 100}` }, () =>
      generation('llm.generate', { model: 'gpt-4o-mini', provider: 'openai', input: messages(i) }, (g) => {
        g.setUsage({ input: 120, output: 30 });
        g.setOutput('Latte, mocha and a cold brew.');
      }),
    );
    if (i % 1000 === 999) await new Promise((r) => setImmediate(r));
  }
  gc();
  const after = process.memoryUsage();
  const heap = after.heapUsed - before.heapUsed;
  const outside = after.arrayBuffers - before.arrayBuffers;
  const s = sdkStats();
  assert.equal(s.buffered, 20_000, 'the default bound holds them all');
  assert.ok(s.bufferedBytes > 10 * 2 ** 20, `${s.bufferedBytes} bytes buffered`);
  assert.ok(heap < s.bufferedBytes * 0.1 + 2 * 2 ** 20, `heap grew ${heap} bytes for ${s.bufferedBytes} buffered bytes`);
  assert.ok(outside < s.bufferedBytes * 1.1 + 2 * 2 ** 20, `buffers outside the heap grew ${outside} bytes for ${s.bufferedBytes} buffered bytes`);
  await shutdown(10);
});

test('an id the app keeps (a trace id, to score the trace later) holds only itself: each held the 8 KB of random hex it was cut from', async () => {
  configure({ endpoint: `unix://${join(tempDir(), 'nobody.sock')}`, serviceName: 'ids-memory', maxBufferRecords: 100 });
  const kept: string[] = [];
  gc();
  const before = process.memoryUsage().heapUsed;
  for (let i = 0; i < 100_000; i++) {
    const traceId = span('request', (s) => {
      span('step', () => i);
      return s.traceId;
    });
    // The app keeps some of them, e.g. those a user may give feedback on.
    if (i % 50 === 0) kept.push(traceId);
    if (i % 1000 === 999) await new Promise((r) => setImmediate(r));
  }
  gc();
  const perId = (process.memoryUsage().heapUsed - before) / kept.length;
  assert.equal(new Set(kept).size, 2000);
  assert.ok(perId < 1024, `${Math.round(perId)} bytes of heap per kept trace id`);
  await shutdown(10);
});
