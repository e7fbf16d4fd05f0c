import { test } from 'node:test';
import assert from 'node:assert/strict';
import { median, medianRatio } from '../lib/stats.js';

test('median: the middle value of an odd count, whatever the order', () => {
  assert.equal(median([5, 1, 3]), 3);
  assert.equal(median([7]), 7);
});

test('median: the mean of the two middle values of an even count, not the upper one', () => {
  // `--rounds 2` reported the faster round of each side as its "median".
  assert.equal(median([306_827, 261_850]), 284_338.5);
  assert.equal(median([4, 1, 3, 2]), 2.5);
});

test('median: sorts numerically and leaves its input alone', () => {
  const xs = [10, 9, 100];
  assert.equal(median(xs), 10);
  assert.deepEqual(xs, [10, 9, 100]);
});

test('medianRatio: round by round, then the median', () => {
  assert.equal(medianRatio([8, 12, 30], [4, 12, 10]), 2);
  assert.throws(() => medianRatio([1, 2], [1]));
});
