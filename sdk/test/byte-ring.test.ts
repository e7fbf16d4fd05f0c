/**
 * The Unix transport's off-heap record buffer (transport/byte-ring.ts): the same drop-oldest
 * bounds as the string ring, records back byte for byte (UTF-8 included), chunks reused without
 * corrupting what is still queued.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ByteRing } from '../src/transport/byte-ring.js';

/** A record with a 4-digit number (all the same length for the same pad). */
const line = (i: number, pad = 0) => `{"n":${1000 + i},"s":"${'x'.repeat(pad)}"}\n`;
const numberOf = (l: string) => (JSON.parse(l) as { n: number }).n - 1000;

const text = (data: Buffer | string) => (typeof data === 'string' ? data : data.toString('utf8'));

/** Everything queued, as lines, by taking it all. */
function drain(r: ByteRing): string[] {
  const { data } = r.take(Number.MAX_SAFE_INTEGER);
  return text(data).split('\n').filter(Boolean);
}

test('records come back in order, byte for byte, UTF-8 included; sizes are UTF-8 bytes', () => {
  const r = new ByteRing(100, 1 << 20);
  const lines = ['{"a":"café ☕"}\n', '{"b":"😀 \\u0000"}\n', '{"c":"\ud800"}\n', line(1)];
  for (const l of lines) assert.equal(r.push(l), 0);
  assert.equal(r.size, 4);
  assert.equal(r.chars, lines.reduce((n, l) => n + Buffer.byteLength(l), 0));
  assert.equal(r.pushed, r.chars);
  const { data, records } = r.take(1 << 20, '{"hello":1}\n');
  assert.equal(records, 4);
  // As a string write would send them: UTF-8, a lone surrogate as U+FFFD.
  assert.ok(Buffer.isBuffer(data) && data.equals(Buffer.from('{"hello":1}\n' + lines.join(''), 'utf8')));
  assert.equal(r.size, 0);
  assert.equal(r.chars, 0);
});

test('over the record bound the oldest are dropped, counted one by one', () => {
  const r = new ByteRing(10, 1 << 20);
  let dropped = 0;
  for (let i = 0; i < 25; i++) dropped += r.push(line(i));
  assert.equal(dropped, 15);
  assert.deepEqual(drain(r), Array.from({ length: 10 }, (_, i) => line(15 + i).trim()));
});

test('over the byte bound the oldest are dropped; a record over the bound alone is kept alone', () => {
  const one = Buffer.byteLength(line(0, 90));
  const r = new ByteRing(1000, 10 * one);
  let dropped = 0;
  for (let i = 0; i < 30; i++) dropped += r.push(line(i, 90));
  assert.equal(dropped, 20);
  assert.equal(r.chars, 10 * one);
  assert.deepEqual(drain(r).map((l) => numberOf(l)), Array.from({ length: 10 }, (_, i) => 20 + i));
  dropped = 0;
  for (let i = 0; i < 5; i++) dropped += r.push(line(i));
  dropped += r.push(line(99, 20 * one));
  assert.equal(dropped, 5, 'everything older made room for the oversized record');
  assert.equal(r.size, 1);
});

test('take stops at the byte limit but always takes one record; runs span chunks', () => {
  const r = new ByteRing(100_000, 64 << 20);
  // ~1 MiB of 1 KiB records: several 256 KiB chunks.
  for (let i = 0; i < 1000; i++) r.push(line(i, 1000));
  const first = r.take(1);
  assert.equal(first.records, 1, 'at least one record, whatever the limit');
  assert.equal(numberOf(text(first.data)), 0);
  const size = Buffer.byteLength(line(0, 1000));
  const some = r.take(300 * size);
  assert.equal(some.records, 300);
  assert.equal(some.data.length, 300 * size);
  const rest = drain(r).map((l) => numberOf(l));
  assert.deepEqual(rest, Array.from({ length: 699 }, (_, i) => 301 + i));
});

test('chunks are reused once emptied, without touching records still queued; long records get their own', () => {
  const r = new ByteRing(1_000_000, 256 << 20);
  let next = 0;
  let expected = 0;
  // Push and take in waves so that emptied chunks are reused while others still hold records.
  for (let wave = 0; wave < 40; wave++) {
    for (let i = 0; i < 500; i++) r.push(line(next++, (next * 37) % 900));
    if (wave % 7 === 0) r.push(line(next++, 100_000)); // a record larger than a quarter chunk
    const { data, records } = r.take(200 * 1024);
    const got = text(data).split('\n').filter(Boolean).map((l) => numberOf(l));
    assert.equal(got.length, records);
    assert.deepEqual(got, Array.from({ length: records }, (_, i) => expected + i), `wave ${wave}`);
    expected += records;
  }
  const rest = drain(r).map((l) => numberOf(l));
  assert.deepEqual(rest, Array.from({ length: next - expected }, (_, i) => expected + i));
});

test('clear drops everything queued and says how many', () => {
  const r = new ByteRing(100, 1 << 20);
  for (let i = 0; i < 7; i++) r.push(line(i));
  assert.equal(r.clear(), 7);
  assert.equal(r.size, 0);
  assert.equal(r.chars, 0);
  r.push(line(8));
  assert.deepEqual(drain(r), [line(8).trim()]);
});

test('records that will not wait stay one string, written as such; a waiting one stores them first, in order', () => {
  const r = new ByteRing(100, 1 << 20);
  for (let i = 0; i < 3; i++) assert.equal(r.push(line(i), false), 0);
  assert.equal(r.size, 3);
  const quick = r.take(1 << 20, 'H\n');
  assert.equal(typeof quick.data, 'string', 'the usual path: no bytes stored, the string goes to the socket');
  assert.equal(quick.data, 'H\n' + line(0) + line(1) + line(2));
  assert.equal(quick.records, 3);
  assert.equal(r.size, 0);
  assert.equal(r.chars, 0);

  r.push(line(3), false);
  r.push(line(4), false);
  r.push('{"u":"☕"}\n', true); // a write is in progress: this one waits, and the two before go first
  r.push(line(5), false); // bytes are stored now: later records follow them, whatever the caller says
  const { data, records } = r.take(1 << 20);
  assert.ok(Buffer.isBuffer(data));
  assert.equal(records, 4);
  assert.equal(text(data), line(3) + line(4) + '{"u":"☕"}\n' + line(5));
});

test('over a bound, records that did not wait are dropped oldest first too, counted exactly', () => {
  const byCount = new ByteRing(5, 1 << 20);
  let dropped = 0;
  for (let i = 0; i < 8; i++) dropped += byCount.push(line(i), false);
  assert.equal(dropped, 3);
  assert.deepEqual(drain(byCount).map(numberOf), [3, 4, 5, 6, 7]);

  const one = Buffer.byteLength(line(0, 50));
  const byBytes = new ByteRing(1000, 4 * one);
  dropped = 0;
  for (let i = 0; i < 10; i++) dropped += byBytes.push(line(i, 50), false);
  assert.equal(dropped, 6);
  assert.equal(byBytes.chars, 4 * one);
  assert.deepEqual(drain(byBytes).map(numberOf), [6, 7, 8, 9]);

  const cleared = new ByteRing(100, 1 << 20);
  cleared.push(line(0), true);
  cleared.push(line(1), true);
  assert.equal(cleared.clear(), 2);
  cleared.push(line(2), false);
  assert.equal(cleared.clear(), 1, 'clear counts records that did not wait too');
  assert.equal(cleared.chars, 0);
});
