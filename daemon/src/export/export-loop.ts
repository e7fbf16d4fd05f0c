/**
 * The one delivery loop: takes due batches from the batcher and sends each through the
 * exporter with exactly one request in flight. Retries network errors, timeouts, 408/429/5xx
 * with backoff; splits a batch on 413; drops a batch the backend refuses (other 4xx).
 *
 * Pipelined one batch deep: while a batch's request is in flight (or waiting to retry), the
 * next due batch is already taken from the queue and prepared (`SpanExporter.prepare`: mapped,
 * encoded and compressed, in a worker thread for the HTTP exporters), so preparing overlaps the
 * network wait instead of following it. A batch is prepared once; retries resend the same body.
 * Both batches count as in flight (`inFlightSpans`) until delivered or dropped. While a batch
 * waits to be retried (backend down), the next one stays in (or goes back to) the queue, where
 * drop-oldest applies to it: holding it would shield those spans from overflow.
 */
import type { Logger } from '../log.js';
import { releaseAll, type QueuedSpan } from '../model.js';
import type { Stats } from '../ops/stats.js';
import type { Batcher } from '../batch/batcher.js';
import { PROXY_REFUSED_CREDENTIALS, REFUSED_CREDENTIALS, type ExportOutcome, type PreparedBatch, type SpanExporter } from './types.js';
import { DEFAULT_BACKOFF, backoffDelay, deadline, sleep, unlessAborted, type BackoffPolicy } from './backoff.js';
import type { Histogram } from 'prom-client';

export interface ExportLoopOptions {
  exportTimeoutMs: number;
  maxRetries: number;
  backoff?: BackoffPolicy;
}

export type ExporterState = 'idle' | 'exporting' | 'backoff' | 'refused';

/** A batch taken from the queue, with its preparation (already under way). */
interface Job {
  readonly batch: QueuedSpan[];
  readonly prepared: Promise<PreparedBatch> | undefined;
}

/** Past the shutdown deadline, how long `stop()` still waits for the loop to unwind before it gives up on it. */
const STOP_GRACE_MS = 250;

/** `take()` put the batch it got back into the queue (a retry is pending): take again later. */
const PUT_BACK = Symbol('put back');
type Taken = Job | typeof PUT_BACK | undefined;

export class ExportLoop {
  /** Spans taken from the queue and not yet delivered or dropped (in a request, or waiting to retry). */
  inFlightSpans = 0;
  state: ExporterState = 'idle';
  lastError: string | undefined;
  lastSuccessAt: Date | undefined;
  /** The last refusal of our credentials, and how many scores had been exported then. */
  private refused: { status: number; body: string; scoresExported: number } | undefined;

  /**
   * Set when the backend refused our credentials (401/403, or the proxy's 407): readiness is 503
   * until a span batch is delivered. A proxy's 407 also clears with a delivered score: it went
   * through the same proxy, which takes our credentials again (an app may send only scores for hours).
   */
  get refusal(): { status: number; body: string } | undefined {
    const { refused } = this;
    if (refused?.status === PROXY_REFUSED_CREDENTIALS && this.stats.scoresExported !== refused.scoresExported) return undefined;
    return refused;
  }

  private readonly loggedRefusals = new Set<number>();
  private readonly stopping = new AbortController();
  /** Batches cut short by shutdown, handed back to the caller (spooled or counted as dropped). */
  private readonly unfinished: QueuedSpan[] = [];
  private running: Promise<void> | undefined;
  /** The one outstanding `take()` (the batcher serves one waiter at a time). */
  private nextJob: Promise<Taken> | undefined;
  /** Set while the batch being delivered waits to be retried: the next batch stays queued. */
  private holding = false;
  /**
   * Batches taken and not yet settled (delivered, dropped or handed to `unfinished`); a 413
   * split replaces a batch by its halves. What `stop()` returns if the loop does not unwind.
   */
  private readonly unsettled = new Set<QueuedSpan[]>();
  /** `stop()` gave up waiting and returned the unsettled batches: later outcomes change nothing. */
  private abandoned = false;

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
   * be delivered in time (in flight or never sent), oldest first. `cutShort` ends the wait early
   * (a repeated SIGTERM).
   */
  async stop(timeoutMs: number, queued: () => QueuedSpan[], cutShort?: AbortSignal): Promise<QueuedSpan[]> {
    this.batcher.close();
    const abort = () => this.stopping.abort();
    const timer = setTimeout(abort, timeoutMs);
    if (cutShort?.aborted) abort();
    cutShort?.addEventListener('abort', abort, { once: true });
    // Hard deadline: a send that ignores its signal (or anything else stuck) must not hold the
    // shutdown past the timeout; what is still unsettled then is handed back like `unfinished`.
    let grace: NodeJS.Timeout | undefined;
    const gaveUp = new Promise<true>((resolve) => {
      const onAbort = () => (grace = setTimeout(() => resolve(true), STOP_GRACE_MS));
      if (this.stopping.signal.aborted) onAbort();
      else this.stopping.signal.addEventListener('abort', onAbort, { once: true });
    });
    const stuck = await Promise.race([this.running?.then(() => false) ?? false, gaveUp]);
    clearTimeout(timer);
    clearTimeout(grace);
    cutShort?.removeEventListener('abort', abort);
    if (!stuck) return [...this.unfinished, ...queued()];
    this.abandoned = true;
    const left = [...this.unsettled].flat();
    this.unsettled.clear();
    this.inFlightSpans -= left.length;
    this.log.warn({ spans: left.length }, 'shutdown: the exporter did not return after the deadline; giving up on its batch');
    return [...left, ...this.unfinished, ...queued()];
  }

  /** Whether a span taken from the queue and not yet delivered or dropped passes `test`. */
  holdsAny(test: (span: QueuedSpan) => boolean): boolean {
    for (const batch of this.unsettled) if (batch.some(test)) return true;
    return false;
  }

  /** `batch` is no longer in flight. False once `stop()` gave up on the loop (it already returned the batch). */
  private settle(batch: QueuedSpan[]): boolean {
    if (this.abandoned) return false;
    this.unsettled.delete(batch);
    this.inFlightSpans -= batch.length;
    return true;
  }

  private async run(): Promise<void> {
    for (;;) {
      const job = await (this.nextJob ?? this.take());
      this.nextJob = undefined;
      if (job === PUT_BACK) continue;
      if (!job) return;
      // Take (and start preparing) the following batch now, so it is ready when this one is done.
      this.nextJob = this.take();
      if (this.abandoned) return;
      if (this.stopping.signal.aborted) {
        // keep draining the batcher into `unfinished` until it is empty
        if (this.settle(job.batch)) this.unfinished.push(...job.batch);
        continue;
      }
      await this.deliver(job.batch, job.prepared);
      if (this.abandoned) return;
      this.holding = false;
      this.state = this.refusal ? 'refused' : 'idle';
    }
  }

  /** The next due batch (undefined once closed and empty), counted in flight, its preparation started. */
  private async take(): Promise<Taken> {
    const batch = await this.batcher.next();
    if (batch.length === 0) return undefined;
    if (this.holding) {
      this.batcher.putBack(batch);
      return PUT_BACK;
    }
    this.inFlightSpans += batch.length;
    this.unsettled.add(batch);
    // Past the shutdown deadline batches only go to `unfinished`: no point preparing them.
    return { batch, prepared: this.stopping.signal.aborted ? undefined : this.prepare(batch) };
  }

  /** The batch being delivered will be retried: return the next batch, if already taken, to the queue. */
  private holdBack(): void {
    this.holding = true;
    const pending = this.nextJob;
    if (!pending) return;
    this.nextJob = pending.then((job) => {
      if (!job || job === PUT_BACK) return job;
      if (this.settle(job.batch)) this.batcher.putBack(job.batch);
      return PUT_BACK;
    });
  }

  private prepare(batch: readonly QueuedSpan[]): Promise<PreparedBatch> | undefined {
    if (!this.exporter.prepare) return undefined;
    try {
      return this.exporter.prepare(batch).catch((err: unknown) => ({ error: `could not prepare the batch: ${(err as Error).message}` }));
    } catch (err) {
      return Promise.resolve({ error: `could not prepare the batch: ${(err as Error).message}` });
    }
  }

  private async deliver(batch: QueuedSpan[], prepared: Promise<PreparedBatch> | undefined): Promise<void> {
    for (let retry = 0; ; retry++) {
      const outcome = await this.sendOnce(batch, prepared);
      switch (outcome.kind) {
        case 'delivered':
          if (!this.settle(batch)) return;
          releaseAll(batch);
          this.stats.spansExported += batch.length;
          this.lastSuccessAt = new Date();
          this.refused = undefined;
          return;
        case 'too_large': {
          if (batch.length === 1) {
            // Nothing left to split: the span is lost, which must show in the log and status.
            this.lastError = `413: ${outcome.body ?? ''}`.slice(0, 1100);
            if (!this.loggedRefusals.has(413)) {
              this.loggedRefusals.add(413);
              this.log.warn({ status: 413, answer: outcome.body, destination: this.exporter.destination }, 'backend refused a single span as too large (413); dropping it (logged once)');
            }
            this.giveUp(batch, 'rejected', 'a single span is too large for the backend (413)');
            return;
          }
          this.log.warn({ spans: batch.length }, 'backend answered 413: splitting the batch in halves');
          const first = batch.slice(0, batch.length >> 1);
          const second = batch.slice(batch.length >> 1);
          if (this.abandoned) return;
          this.unsettled.delete(batch);
          this.unsettled.add(first).add(second);
          const preparedFirst = this.prepare(first);
          const preparedSecond = this.prepare(second);
          await this.deliver(first, preparedFirst);
          await this.deliver(second, preparedSecond);
          return;
        }
        case 'refused':
          this.onRefused(outcome);
          this.giveUp(batch, 'rejected', `backend refused the batch with ${outcome.status}`);
          return;
        case 'retryable': {
          // Cut off by the shutdown: spooled or counted by stop(); lastError keeps the backend's last answer.
          if (this.stopping.signal.aborted) {
            if (this.settle(batch)) this.unfinished.push(...batch);
            return;
          }
          this.lastError = outcome.reason;
          if (retry >= this.options.maxRetries) {
            this.giveUp(batch, 'retries_exhausted', `giving up after ${retry} retries: ${outcome.reason}`);
            return;
          }
          const delay = backoffDelay(retry, outcome.retryAfterMs, this.options.backoff ?? DEFAULT_BACKOFF);
          this.log.warn({ spans: batch.length, retry: retry + 1, delayMs: delay, reason: outcome.reason }, 'export failed, will retry');
          this.state = 'backoff';
          this.holdBack();
          this.stats.exportRetries++;
          await sleep(delay, this.stopping.signal);
        }
      }
    }
  }

  private async sendOnce(batch: QueuedSpan[], preparing: Promise<PreparedBatch> | undefined): Promise<ExportOutcome> {
    this.state = 'exporting';
    // Usually ready already (prepared while the previous request was in flight). Shutdown does
    // not wait for it past its deadline.
    let prepared: PreparedBatch | undefined;
    if (preparing) {
      prepared = await unlessAborted(preparing, this.stopping.signal);
      if (!prepared) return { kind: 'retryable', reason: 'aborted' };
    }
    const started = process.hrtime.bigint();
    const request = deadline(this.options.exportTimeoutMs, this.stopping.signal);
    const signal = request.signal;
    let outcome: ExportOutcome;
    try {
      // Raced against the signal: an exporter stuck in I/O that ignores it (a FIFO nobody
      // reads, a hung mount) must not hold the loop past the export timeout or the shutdown.
      outcome = (await unlessAborted(this.exporter.send(batch, signal, prepared), signal)) ?? { kind: 'retryable', reason: 'aborted' };
    } catch (err) {
      // Exporters should not throw; if one does, treat it like a network error rather than die.
      outcome = { kind: 'retryable', reason: `exporter error: ${(err as Error).message}` };
    } finally {
      request.done();
    }
    if (outcome.kind === 'retryable' && request.timedOut) {
      outcome = { ...outcome, reason: `export timed out after ${this.options.exportTimeoutMs} ms` };
    }
    this.stats.exportRequests.add([outcome.kind]);
    this.duration?.observe({ outcome: outcome.kind }, Number(process.hrtime.bigint() - started) / 1e9);
    return outcome;
  }

  private onRefused(outcome: Extract<ExportOutcome, { kind: 'refused' }>): void {
    this.lastError = `${outcome.status}: ${outcome.body}`;
    if (REFUSED_CREDENTIALS.has(outcome.status)) this.refused = { status: outcome.status, body: outcome.body, scoresExported: this.stats.scoresExported };
    // Logged once per status: a misconfigured key must not flood the log.
    if (!this.loggedRefusals.has(outcome.status)) {
      this.loggedRefusals.add(outcome.status);
      // A 407 is the proxy's answer: the backend never saw the batch.
      const refuser = outcome.status === PROXY_REFUSED_CREDENTIALS ? 'the proxy' : 'backend';
      this.log.error({ status: outcome.status, answer: outcome.body, destination: this.exporter.destination }, `${refuser} refused a batch; dropping it (permanent error)`);
    }
  }

  private giveUp(batch: QueuedSpan[], reason: 'rejected' | 'retries_exhausted', message: string): void {
    if (!this.settle(batch)) return;
    releaseAll(batch);
    this.stats.drop(reason, batch.length);
    if (reason === 'retries_exhausted') this.log.error({ spans: batch.length }, message);
  }
}
