/**
 * The SDK benchmark's discard reader counts spans, not lines: the SDK also writes a `hello` at
 * each connection and `stats` records after drops, and those are not spans delivered.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { once } from 'node:events';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnLines } from '../lib/proc.js';
import { SpanCounter } from '../lib/span-counter.js';

const READER = fileURLToPath(new URL('../lib/discard-reader.js', import.meta.url));
const hello = '{"v":1,"type":"hello","resource":{"service.name":"bench"},"sdk":{"name":"dspy-o11y","version":"0.1.0"}}\n';
const span = (i: number) =>
  `{"v":1,"type":"span","traceId":"${'a'.repeat(32)}","spanId":"${String(i).padStart(16, '0')}","name":"llm.generate","attributes":{"dspy.input":"[{\\"spanId\\":1}]"}}\n`;
const stats = '{"v":1,"type":"stats","droppedRecords":2,"reason":"client_buffer"}\n';
const floorLine = `{"traceId":"${'b'.repeat(32)}","spanId":"${'c'.repeat(16)}","name":"llm.generate"}\n`;

test('the discard reader counts the spans of two connections, not their hello and stats lines', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'discard-reader-'));
  const socket = join(dir, 'r.sock');
  const reader = spawnLines([READER, socket]);
  try {
    await reader.line('ready');
    for (const text of [hello + span(1) + span(2) + stats + span(3), hello + stats + span(4) + floorLine]) {
      const c = connect(socket);
      c.end(text);
      // The reader ends its side after its last 'data' event: everything sent has been counted.
      await once(c, 'close');
    }
    reader.child.stdin!.write('t1\n');
    assert.equal(await reader.line('t1 '), 't1 5');
  } finally {
    reader.child.stdin!.end();
    await once(reader.child, 'exit');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('SpanCounter: a key cut between two chunks counts once', () => {
  const text = Buffer.from(span(1) + span(2) + floorLine);
  for (let cut = 1; cut < text.length; cut++) {
    const c = new SpanCounter();
    c.add(text.subarray(0, cut));
    c.add(text.subarray(cut));
    assert.equal(c.spans, 3, `cut at ${cut}`);
  }
  const bytewise = new SpanCounter();
  for (let i = 0; i < text.length; i++) bytewise.add(text.subarray(i, i + 1));
  assert.equal(bytewise.spans, 3);
});
