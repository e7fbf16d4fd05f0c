/**
 * Cuts batches from the queue: a batch is due when it is full (max spans or max bytes), when the
 * oldest queued span has waited `flushIntervalMs`, or at once while flushing or closing.
 */
import type { QueuedSpan } from '../model.js';
import type { SpanQueue } from '../queue/span-queue.js';

export interface BatchLimits {
  maxSpans: number;
  maxBytes: number;
  flushIntervalMs: number;
}

export class Batcher {
  /** Set at shutdown: hand out whatever is queued without waiting; `next()` returns [] once empty. */
  private closing = false;
  private flushRequested = false;

  constructor(
    private readonly queue: SpanQueue,
    readonly limits: BatchLimits,
  ) {}

  /** The next due batch; [] only when closing and the queue is empty. */
  async next(): Promise<QueuedSpan[]> {
    const { maxSpans, maxBytes, flushIntervalMs } = this.limits;
    for (;;) {
      const q = this.queue;
      if (q.spans === 0) {
        this.flushRequested = false;
        if (this.closing) return [];
        await q.until(1, 1);
        continue;
      }
      const waited = performance.now() - q.pendingSince;
      if (this.closing || this.flushRequested || q.spans >= maxSpans || q.bytes >= maxBytes || waited >= flushIntervalMs) {
        return q.take(maxSpans, maxBytes);
      }
      const timer = setTimeout(() => q.wake(), flushIntervalMs - waited);
      await q.until(maxSpans, maxBytes);
      clearTimeout(timer);
    }
  }

  /** Return a batch taken by `next()` to the front of the queue (it becomes due at once). */
  putBack(batch: readonly QueuedSpan[]): void {
    this.queue.putBack(batch);
  }

  /** Send what is queued now instead of waiting for the interval. */
  flush(): void {
    this.flushRequested = true;
    this.queue.wake();
  }

  close(): void {
    this.closing = true;
    this.queue.wake();
  }
}
