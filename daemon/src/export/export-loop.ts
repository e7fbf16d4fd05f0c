/**
 * The one delivery loop: takes due batches from the batcher and sends each through the
 * exporter with exactly one request in flight. Retries network errors, timeouts, 408/429/5xx
 * with backoff; splits a batch on 413; drops a batch the backend refuses (other 4xx).
 */
import type { Logger } from '../log.js';
import type { QueuedSpan } from '../model.js';
import type { Stats } from '../ops/stats.js';
import type { Batcher } from '../batch/batcher.js';
import type { ExportOutcome, SpanExporter } from './types.js';
import { DEFAULT_BACKOFF, backoffDelay, sleep, type BackoffPolicy } from './backoff.js';
import type { Histogram } from 'prom-client';

export interface ExportLoopOptions {
  exportTimeoutMs: number;
  maxRetries: number;
  backoff?: BackoffPolicy;
}

export type ExporterState = 'idle' | 'exporting' | 'backoff' | 'refused';

export class ExportLoop {
  /** Spans taken from the queue and not yet delivered or dropped (in a request, or waiting to retry). */
  inFlightSpans = 0;
  state: ExporterState = 'idle';
  lastError: string | undefined;
  lastSuccessAt: Date | undefined;
  /** Set when the backend refused our credentials (401/403): readiness is 503 until a delivery succeeds. */
  refusal: { status: number; body: string } | undefined;

  private readonly loggedRefusals = new Set<number>();
  private readonly stopping = new AbortController();
  /** Batches cut short by shutdown, handed back to the caller (spooled or counted as dropped). */
  private readonly unfinished: QueuedSpan[] = [];
  private running: Promise<void> | undefined;

  constructor(
    private readonly batcher: Batcher,
    private readonly exporter: SpanExporter,
    private readonly stats: Stats,
    private readonly log: Logger,
    private readonly options: ExportLoopOptions,
    private readonly duration?: Histogram<'outcome'>,
  ) {}

  start(): void {
    this.running ??= this.run();
  }

  /**
   * Deliver what is queued within `timeoutMs`, then stop. Resolves with the spans that could not
   * be delivered in time (in flight or never sent), oldest first.
   */
  async stop(timeoutMs: number, queued: () => QueuedSpan[]): Promise<QueuedSpan[]> {
    this.batcher.close();
    const deadline = setTimeout(() => this.stopping.abort(), timeoutMs);
    await this.running;
    clearTimeout(deadline);
    return [...this.unfinished, ...queued()];
  }

  private async run(): Promise<void> {
    for (;;) {
      const batch = await this.batcher.next();
      if (batch.length === 0) return;
      if (this.stopping.signal.aborted) {
        this.unfinished.push(...batch);
        continue; // keep draining the batcher into `unfinished` until it is empty
      }
      this.inFlightSpans = batch.length;
      await this.deliver(batch);
      this.inFlightSpans = 0;
      this.state = this.refusal ? 'refused' : 'idle';
    }
  }

  private async deliver(batch: QueuedSpan[]): Promise<void> {
    for (let retry = 0; ; retry++) {
      const outcome = await this.sendOnce(batch);
      switch (outcome.kind) {
        case 'delivered':
          this.stats.spansExported += batch.length;
          this.inFlightSpans -= batch.length;
          this.lastSuccessAt = new Date();
          this.refusal = undefined;
          return;
        case 'too_large':
          if (batch.length === 1) {
            this.giveUp(batch, 'rejected', 'a single span is too large for the backend (413)');
            return;
          }
          this.log.warn({ spans: batch.length }, 'backend answered 413: splitting the batch in halves');
          await this.deliver(batch.slice(0, batch.length >> 1));
          await this.deliver(batch.slice(batch.length >> 1));
          return;
        case 'refused':
          this.onRefused(outcome);
          this.giveUp(batch, 'rejected', `backend refused the batch with ${outcome.status}`);
          return;
        case 'retryable': {
          this.lastError = outcome.reason;
          if (this.stopping.signal.aborted) {
            this.unfinished.push(...batch);
            this.inFlightSpans -= batch.length;
            return;
          }
          if (retry >= this.options.maxRetries) {
            this.giveUp(batch, 'retries_exhausted', `giving up after ${retry} retries: ${outcome.reason}`);
            return;
          }
          const delay = backoffDelay(retry, outcome.retryAfterMs, this.options.backoff ?? DEFAULT_BACKOFF);
          this.log.warn({ spans: batch.length, retry: retry + 1, delayMs: delay, reason: outcome.reason }, 'export failed, will retry');
          this.state = 'backoff';
          this.stats.exportRetries++;
          await sleep(delay, this.stopping.signal);
        }
      }
    }
  }

  private async sendOnce(batch: QueuedSpan[]): Promise<ExportOutcome> {
    this.state = 'exporting';
    const started = process.hrtime.bigint();
    const timeout = AbortSignal.timeout(this.options.exportTimeoutMs);
    const signal = AbortSignal.any([timeout, this.stopping.signal]);
    let outcome: ExportOutcome;
    try {
      outcome = await this.exporter.send(batch, signal);
    } catch (err) {
      // Exporters should not throw; if one does, treat it like a network error rather than die.
      outcome = { kind: 'retryable', reason: `exporter error: ${(err as Error).message}` };
    }
    if (outcome.kind === 'retryable' && timeout.aborted) {
      outcome = { ...outcome, reason: `export timed out after ${this.options.exportTimeoutMs} ms` };
    }
    this.stats.exportRequests.add([outcome.kind]);
    this.duration?.observe({ outcome: outcome.kind }, Number(process.hrtime.bigint() - started) / 1e9);
    return outcome;
  }

  private onRefused(outcome: Extract<ExportOutcome, { kind: 'refused' }>): void {
    this.lastError = `${outcome.status}: ${outcome.body}`;
    if (outcome.status === 401 || outcome.status === 403) this.refusal = { status: outcome.status, body: outcome.body };
    // Logged once per status: a misconfigured key must not flood the log.
    if (!this.loggedRefusals.has(outcome.status)) {
      this.loggedRefusals.add(outcome.status);
      this.log.error({ status: outcome.status, answer: outcome.body, destination: this.exporter.destination }, 'backend refused a batch; dropping it (permanent error)');
    }
  }

  private giveUp(batch: QueuedSpan[], reason: 'rejected' | 'retries_exhausted', message: string): void {
    this.stats.drop(reason, batch.length);
    this.inFlightSpans -= batch.length;
    if (reason === 'retries_exhausted') this.log.error({ spans: batch.length }, message);
  }
}
