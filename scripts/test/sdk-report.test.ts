/**
 * The SDK benchmark's report. Rounds are interleaved, so each round of a contender has a floor
 * (and peers) measured next to it: a ratio is taken per round, then the median of those, never a
 * median of one side divided by a median of the other, which may come from different rounds.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { goals, summarise, table, type Run } from '../lib/sdk-report.js';
import type { AppResult, Contender } from '../lib/sdk-app.js';

const SPANS = 1000;

function run(contender: Contender, cpuUsPerSpan: number): Run {
  const app: AppResult = {
    contender, spans: SPANS, cpuUs: cpuUsPerSpan * SPANS, emitCpuUs: cpuUsPerSpan * SPANS, wallMs: 100, emitWallMs: 100, flushOk: true,
    eld: { p50Ms: 0, p99Ms: 0.5, maxMs: 1, samples: 10 }, peakRss: 64 * 2 ** 20, readyRss: 60 * 2 ** 20, preempted: 0, windowUs: [0, 100_000],
  };
  return { contender, app, delivered: SPANS, duplicates: 0, daemonCpuMs: undefined };
}

const rows = (perRound: Record<string, number[]>) => Object.entries(perRound).map(([c, xs]) => summarise(xs.map((x) => run(c as Contender, x))));

test('ratio to the floor: the median of the per-round ratios, not median over median', () => {
  // Round by round the SDK costs 2×, 1× and 3× its floor: 2×. Median over median would say 12 / 10 = 1.2×.
  const r = rows({ floor: [4, 12, 10], 'dspy-o11y': [8, 12, 30], otel: [16, 24, 60] });
  const ours = table(r).split('\n').find((l) => l.startsWith('| dspy-o11y (SDK'))!;
  assert.equal(ours.split('|')[3]!.trim(), '2.00×');
  const floorRow = table(r).split('\n').find((l) => l.startsWith('| floor'))!;
  assert.equal(floorRow.split('|')[3]!.trim(), '1.00×');
  const texts = goals(r).map((g) => g.text);
  assert.ok(texts.includes('app CPU ours/floor = 2.00 (goal ≤ 1.3)'), texts.join('\n'));
  assert.ok(texts.includes('app CPU ours/OTel = 0.50 (goal ≤ 0.5)'), texts.join('\n'));
  // The CPU column itself stays the median of the contender's own rounds.
  assert.equal(ours.split('|')[2]!.trim(), '12.0 (8.0–30.0)');
});
