/** The SDK benchmark's report: per-contender summaries over the rounds, the table, the goals. */
import { mib } from './proc.js';
import { median, medianRatio } from './stats.js';
import type { AppResult, Contender } from './sdk-app.js';

export const LABEL: Record<Contender, string> = {
  floor: 'floor (JSON.stringify + batched socket write)',
  'dspy-o11y': 'dspy-o11y (SDK → dspy-o11yd)',
  otel: 'OpenTelemetry JS (BatchSpanProcessor + OTLP/HTTP)',
  langfuse: 'Langfuse JS v5 (LangfuseSpanProcessor)',
  'dspy-o11y-direct': 'dspy-o11y SDK → discard reader (diagnostic, no daemon)',
};

/** One contender's run in one round. */
export interface Run {
  contender: Contender;
  app: AppResult;
  /** Distinct spans counted by the backend (or the reader's span count). */
  delivered: number;
  /** Spans the backend received again (retried batches), not in `delivered`. */
  duplicates: number;
  daemonCpuMs: number | undefined;
  profile?: string;
  daemonProfile?: string;
}

export const fmt = (x: number, digits = 1) => x.toFixed(digits);

/** Medians over the rounds of one contender. */
export interface Summary {
  contender: Contender;
  rounds: number;
  /** App CPU µs per span of each round, in round order: ratios are taken round by round. */
  cpuPerRound: number[];
  cpuUs: number;
  cpuMin: number;
  cpuMax: number;
  p99Ms: number;
  peakRss: number;
  deliveredPct: number;
  deliveredMinPct: number;
  daemonUs: number | undefined;
  emitMs: number;
  flushMs: number;
}

export function summarise(runs: Run[]): Summary {
  const per = runs.map((r) => r.app.cpuUs / r.app.spans);
  const pct = runs.map((r) => (100 * r.delivered) / r.app.spans);
  const daemon = runs.filter((r) => r.daemonCpuMs !== undefined).map((r) => (r.daemonCpuMs! * 1000) / Math.max(1, r.delivered));
  return {
    contender: runs[0]!.contender,
    rounds: runs.length,
    cpuPerRound: per,
    cpuUs: median(per),
    cpuMin: Math.min(...per),
    cpuMax: Math.max(...per),
    p99Ms: median(runs.map((r) => r.app.eld.p99Ms)),
    peakRss: median(runs.map((r) => r.app.peakRss)),
    deliveredPct: median(pct),
    deliveredMinPct: Math.min(...pct),
    daemonUs: daemon.length ? median(daemon) : undefined,
    emitMs: median(runs.map((r) => r.app.emitWallMs)),
    flushMs: median(runs.map((r) => r.app.wallMs - r.app.emitWallMs)),
  };
}

export function table(rows: Summary[]): string {
  const floor = rows.find((r) => r.contender === 'floor');
  const lines = [
    '| contender | app CPU µs/span (min–max) | ratio to floor | event-loop p99 ms | peak RSS MiB | delivered % | daemon CPU µs per delivered span | emit + flush ms |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of rows) {
    const spread = r.rounds > 1 ? ` (${fmt(r.cpuMin)}–${fmt(r.cpuMax)})` : '';
    const ratio = floor ? `${fmt(medianRatio(r.cpuPerRound, floor.cpuPerRound), 2)}×` : '–';
    const delivered = r.deliveredMinPct < r.deliveredPct ? `${fmt(r.deliveredPct)} (min ${fmt(r.deliveredMinPct)})` : fmt(r.deliveredPct);
    lines.push(
      `| ${LABEL[r.contender]} | ${fmt(r.cpuUs)}${spread} | ${ratio} | ${fmt(r.p99Ms, 2)} | ${mib(r.peakRss)} | ${delivered} | ${r.daemonUs === undefined ? '–' : fmt(r.daemonUs)} | ${fmt(r.emitMs, 0)} + ${fmt(r.flushMs, 0)} |`,
    );
  }
  return lines.join('\n');
}

export interface Verdict {
  text: string;
  ok: boolean;
}

export function goals(rows: Summary[]): Verdict[] {
  const get = (c: Contender) => rows.find((r) => r.contender === c);
  const ours = get('dspy-o11y');
  if (!ours) return [];
  const out: Verdict[] = [];
  const ratio = (other: Contender, max: number, what: string) => {
    const o = get(other);
    if (!o) return;
    const x = medianRatio(ours.cpuPerRound, o.cpuPerRound);
    out.push({ text: `app CPU ours/${what} = ${fmt(x, 2)} (goal ≤ ${max})`, ok: x <= max });
  };
  ratio('otel', 0.5, 'OTel');
  ratio('langfuse', 0.25, 'Langfuse');
  ratio('floor', 1.3, 'floor');
  out.push({ text: `event-loop p99 ours = ${fmt(ours.p99Ms, 2)} ms (goal < 1 ms)`, ok: ours.p99Ms < 1 });
  out.push({ text: `delivered ours = ${fmt(ours.deliveredMinPct)} % in the worst round (goal: all)`, ok: ours.deliveredMinPct >= 100 });
  return out;
}
