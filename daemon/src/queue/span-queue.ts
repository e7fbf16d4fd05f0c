/**
 * The bounded queue between ingest and export. `push` never blocks and never fails: when a
 * bound (spans or bytes) would be exceeded, the OLDEST spans are dropped to make room and
 * reported to `onDrop`. Fresh telemetry is worth more than old (Fluent Bit's choice; the
 * OpenTelemetry SDK and Collector drop the newest instead).
 *
 * A growable ring buffer: O(1) push, drop-oldest and take, no array shifting.
 */
import type { QueuedSpan } from '../model.js';

export interface QueueBounds {
  maxSpans: number;
  maxBytes: number;
}

export class SpanQueue {
  private ring: (QueuedSpan | undefined)[] = new Array(1024);
  private head = 0;
  private count = 0;
  private byteCount = 0;
  /** One waiter at a time (the batcher): woken once spans or bytes reach its threshold. */
  private waiter: { spans: number; bytes: number; resolve: () => void } | undefined;
  /** Date.now() when the queue last went from empty to non-empty: how long the oldest span has waited, roughly. */
  pendingSince = 0;

  constructor(
    readonly bounds: QueueBounds,
    private readonly onDrop: (spans: number, bytes: number) => void,
  ) {}

  get spans(): number {
    return this.count;
  }
  get bytes(): number {
    return this.byteCount;
  }

  push(item: QueuedSpan): void {
    if (item.bytes > this.bounds.maxBytes) {
      // Could never fit: keeping it would evict everything else.
      this.onDrop(1, item.bytes);
      return;
    }
    let droppedSpans = 0;
    let droppedBytes = 0;
    while (this.count >= this.bounds.maxSpans || this.byteCount + item.bytes > this.bounds.maxBytes) {
      const old = this.shift()!;
      droppedSpans++;
      droppedBytes += old.bytes;
    }
    if (droppedSpans) this.onDrop(droppedSpans, droppedBytes);
    if (this.count === 0) this.pendingSince = Date.now();
    if (this.count === this.ring.length) this.grow();
    this.ring[(this.head + this.count) & (this.ring.length - 1)] = item;
    this.count++;
    this.byteCount += item.bytes;
    const w = this.waiter;
    if (w && (this.count >= w.spans || this.byteCount >= w.bytes)) this.wake();
  }

  /** Remove and return up to `maxSpans` spans / `maxBytes` bytes from the front (at least one if any). */
  take(maxSpans: number, maxBytes: number): QueuedSpan[] {
    const out: QueuedSpan[] = [];
    let bytes = 0;
    while (this.count > 0 && out.length < maxSpans) {
      const next = this.ring[this.head]!;
      if (out.length > 0 && bytes + next.bytes > maxBytes) break;
      out.push(this.shift()!);
      bytes += next.bytes;
    }
    return out;
  }

  /** Everything still queued, oldest first (for the spool at shutdown). */
  drain(): QueuedSpan[] {
    return this.take(Infinity, Infinity);
  }

  /** Resolves once the queue holds at least `spans` spans or `bytes` bytes, or on `wake()`. */
  until(spans: number, bytes: number): Promise<void> {
    if (this.count >= spans || this.byteCount >= bytes) return Promise.resolve();
    this.wake();
    return new Promise((resolve) => {
      this.waiter = { spans, bytes, resolve };
    });
  }

  /** Wake the waiter, if any, whatever the queue holds (timer, flush, shutdown). */
  wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.resolve();
  }

  private shift(): QueuedSpan | undefined {
    if (this.count === 0) return undefined;
    const item = this.ring[this.head];
    this.ring[this.head] = undefined;
    this.head = (this.head + 1) & (this.ring.length - 1);
    this.count--;
    this.byteCount -= item!.bytes;
    return item;
  }

  private grow(): void {
    const next: (QueuedSpan | undefined)[] = new Array(this.ring.length * 2);
    for (let i = 0; i < this.count; i++) next[i] = this.ring[(this.head + i) & (this.ring.length - 1)];
    this.ring = next;
    this.head = 0;
  }
}
