/**
 * The daemon's counters as plain numbers: cheap to bump on the per-record path, read by
 * `/metrics` (ops/metrics.ts), `/v1/status` and the tests' invariant:
 *   spans received = exported + dropped (all reasons but client_buffer) + queued + in flight.
 */
export type Transport = 'uds' | 'http' | 'otlp' | 'spool';
export type DropReason = 'queue_overflow' | 'retries_exhausted' | 'rejected' | 'shutdown' | 'client_buffer' | 'sampled';
export type ExportOutcomeLabel = 'delivered' | 'retryable' | 'too_large' | 'refused';

export const DROP_REASONS: readonly DropReason[] = ['queue_overflow', 'retries_exhausted', 'rejected', 'shutdown', 'client_buffer', 'sampled'];

/** Why a score was not delivered (export/scores.ts). */
export type ScoreDropReason = 'queue_overflow' | 'retries_exhausted' | 'rejected' | 'invalid' | 'unsupported_exporter' | 'sampled' | 'shutdown';
export const SCORE_DROP_REASONS: readonly ScoreDropReason[] = ['queue_overflow', 'retries_exhausted', 'rejected', 'invalid', 'unsupported_exporter', 'sampled', 'shutdown'];

/** A counter keyed by a tuple of label values. */
export class LabeledCounts<L extends string> {
  readonly values = new Map<string, number>();
  // The last labels' key: the per-record path bumps the same labels (uds, span) over and over,
  // and building the key string each time cost ~0.3 µs per record.
  private lastLabels: readonly string[] = [];
  private lastKey = '';
  constructor(readonly labelNames: readonly L[]) {}
  add(labels: readonly string[], n = 1): void {
    const key = this.keyOf(labels);
    this.values.set(key, (this.values.get(key) ?? 0) + n);
  }
  private keyOf(labels: readonly string[]): string {
    const last = this.lastLabels;
    let same = labels.length === last.length;
    for (let i = 0; same && i < labels.length; i++) same = labels[i] === last[i];
    if (same) return this.lastKey;
    this.lastLabels = labels.slice();
    return (this.lastKey = labels.join('\u0000'));
  }
  get(labels: readonly string[]): number {
    return this.values.get(labels.join('\u0000')) ?? 0;
  }
  *entries(): Generator<[Record<L, string>, number]> {
    for (const [key, value] of this.values) {
      const parts = key.split('\u0000');
      const labels = Object.fromEntries(this.labelNames.map((n, i) => [n, parts[i] ?? ''])) as Record<L, string>;
      yield [labels, value];
    }
  }
  /** The counts keyed by their label values joined with `/` (`uds/span`), as `/v1/status` shows them. */
  toRecord(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [key, value] of this.values) out[key.split('\u0000').join('/')] = value;
    return out;
  }
  total(): number {
    let t = 0;
    for (const v of this.values.values()) t += v;
    return t;
  }
}

export class Stats {
  readonly recordsReceived = new LabeledCounts<'transport' | 'type'>(['transport', 'type']);
  readonly recordsInvalid = new LabeledCounts<'transport' | 'reason'>(['transport', 'reason']);
  readonly exportRequests = new LabeledCounts<'outcome'>(['outcome']);
  readonly repairs = new LabeledCounts<'reason'>(['reason']);
  /** Connections refused past a cap (`uds`: --max-connections). */
  readonly connectionsRefused = new LabeledCounts<'transport'>(['transport']);
  /** HTTP requests refused (401) by the auth check (ingest/auth.ts), by route transport and reason. */
  readonly requestsRefused = new LabeledCounts<'transport' | 'reason'>(['transport', 'reason']);
  readonly dropped: Record<DropReason, number> = {
    queue_overflow: 0, retries_exhausted: 0, rejected: 0, shutdown: 0, client_buffer: 0, sampled: 0,
  };
  /** Spans accepted into the pipeline (span records + standalone events). */
  spansReceived = 0;
  spansExported = 0;
  exportRetries = 0;
  /** Scores: received = exported + dropped (all reasons) + queued + in flight. */
  scoresReceived = 0;
  scoresExported = 0;
  readonly scoresDropped: Record<ScoreDropReason, number> = {
    queue_overflow: 0, retries_exhausted: 0, rejected: 0, invalid: 0, unsupported_exporter: 0, sampled: 0, shutdown: 0,
  };

  drop(reason: DropReason, n: number): void {
    this.dropped[reason] += n;
  }

  /** Drops of spans this daemon received (client_buffer drops happened in the app, before us). */
  droppedInDaemon(): number {
    return DROP_REASONS.reduce((t, r) => (r === 'client_buffer' ? t : t + this.dropped[r]), 0);
  }
}
