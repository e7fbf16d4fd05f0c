/**
 * The buffer's bound is about memory: buffered records are flat strings, so with the daemon down
 * the heap grows by about the buffered characters (a record built with `+` would be a rope of its
 * pieces, two to three times larger, and many more objects for the GC).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { configure, generation, sdkStats, shutdown, withTrace } from '../src/index.js';
import { tempDir } from './support/receiver.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

test('with the daemon down, buffered records take about their length in heap', async () => {
  configure({ endpoint: `unix://${join(tempDir(), 'nobody.sock')}`, serviceName: 'memory' });
  const messages = (i: number) => [
    { role: 'system', content: 'You are a barista. Answer in one short sentence.' },
    { role: 'user', content: `What is on the menu today? I am customer ${i} and would like something warm with oat milk.` },
  ];
  gc();
  const before = process.memoryUsage().heapUsed;
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
  const grown = process.memoryUsage().heapUsed - before;
  const s = sdkStats();
  assert.equal(s.buffered, 20_000, 'the default bound holds them all');
  assert.ok(s.bufferedBytes > 10 * 2 ** 20, `${s.bufferedBytes} characters buffered`);
  assert.ok(grown < s.bufferedBytes * 1.3 + 2 * 2 ** 20, `heap grew ${grown} bytes for ${s.bufferedBytes} buffered characters`);
  await shutdown(10);
});
