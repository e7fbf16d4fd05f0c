/**
 * The bounded queue between ingest and export. `push` never blocks and never fails: when a
 * bound (spans or bytes) would be exceeded, the OLDEST spans are dropped to make room and
 * reported to `onDrop`. Fresh telemetry is worth more than old (Fluent Bit's choice; the
 * OpenTelemetry SDK and Collector drop the newest instead).
 *
 * A growable ring buffer: O(1) push, drop-oldest and take, no array shifting. It stores each
 * span's parts in columns (slab, offset, length, resource, resource bytes) rather than the
 * QueuedSpan objects: a queue of a million spans is then five arrays, not a million small
 * long-lived objects for the garbage collector to promote and trace (model.ts, queue/line-store.ts). `push` takes over the
 * span's bytes; `take` hands out new QueuedSpans that own them. A dropped span's bytes are
 * released here; taken spans are released by the export loop once delivered or dropped.
 */
import { QUEUED_SPAN_OVERHEAD_BYTES, QueuedSpan, type Resource } from '../model.js';
import type { Slab } from './line-store.js';

export interface QueueBounds {
  maxSpans: number;
  maxBytes: number;
}

export class SpanQueue {
  private capacity = 1024;
  private slabs: (Slab | undefined)[] = new Array(this.capacity);
  private resources: (Resource | undefined)[] = new Array(this.capacity);
  private offsets = new Int32Array(this.capacity);
  private lengths = new Int32Array(this.capacity);
  private resourceBytes = new Int32Array(this.capacity);
  private head = 0;
  private count = 0;
  private byteCount = 0;
  /** One waiter at a time (the batcher): woken once spans or bytes reach its threshold. */
  private waiter: { spans: number; bytes: number; resolve: () => void } | undefined;
  /**
   * performance.now() when the queue last went from empty to non-empty: how long the oldest span
   * has waited, roughly. A monotonic clock: by Date.now(), a wall clock stepped back (NTP) held a
   * partial batch for as long as the step.
   */
  pendingSince = 0;
  /** Room over the bounds lent to a spool's replay ({@link lend}), given back as spans leave for export. */
  private lentSpans = 0;
  private lentBytes = 0;

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

  /** The resource of the oldest queued span; undefined when the queue is empty. */
  get oldestResource(): Resource | undefined {
    return this.count > 0 ? this.resources[this.head] : undefined;
  }

  /** Queue a span (the queue takes over its bytes: `item` is spent). */
  push(item: QueuedSpan): void {
    if (item.bytes > this.bounds.maxBytes) {
      // Could never fit: keeping it would evict everything else.
      item.release();
      this.onDrop(1, item.bytes);
      return;
    }
    let droppedSpans = 0;
    let droppedBytes = 0;
    while (this.count >= this.bounds.maxSpans + this.lentSpans || this.byteCount + item.bytes > this.bounds.maxBytes + this.lentBytes) {
      droppedBytes += this.dropOldest();
      droppedSpans++;
    }
    if (droppedSpans) this.onDrop(droppedSpans, droppedBytes);
    if (this.count === 0) this.pendingSince = performance.now();
    if (this.count === this.capacity) this.grow();
    this.store((this.head + this.count) & (this.capacity - 1), item);
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
      const next = this.lengths[this.head] + QUEUED_SPAN_OVERHEAD_BYTES + this.resourceBytes[this.head];
      if (out.length > 0 && bytes + next > maxBytes) break;
      out.push(this.shift());
      bytes += next;
    }
    this.trimLoan();
    return out;
  }

  /**
   * Let the queue hold up to `spans` / `bytes` more than its bounds: for a spool's replay, which
   * holds a full queue plus the batches in flight at shutdown (outside the queue then). Call
   * {@link trimLoan} once the replay is queued: what it did not use is taken back at once, the
   * rest as spans leave for export, so the apps' spans find the queue as the shutdown left it.
   */
  lend(spans: number, bytes: number): void {
    this.lentSpans = spans;
    this.lentBytes = bytes;
  }

  /** Shrink the loan to what the queue holds over its bounds now; it never grows back. */
  trimLoan(): void {
    this.lentSpans = Math.max(0, Math.min(this.lentSpans, this.count - this.bounds.maxSpans));
    this.lentBytes = Math.max(0, Math.min(this.lentBytes, this.byteCount - this.bounds.maxBytes));
  }

  /**
   * Put taken spans back at the front (they are older than anything queued), as if never taken.
   * The bounds apply at once: over a bound, the oldest go first, these included.
   */
  putBack(items: readonly QueuedSpan[]): void {
    if (items.length === 0) return;
    while (this.capacity - this.count < items.length) this.grow();
    const mask = this.capacity - 1;
    for (let i = items.length - 1; i >= 0; i--) {
      this.head = (this.head - 1) & mask;
      this.store(this.head, items[i]);
      this.byteCount += items[i].bytes;
    }
    this.count += items.length;
    // They were due when taken: due again at once.
    this.pendingSince = -Infinity;
    let droppedSpans = 0;
    let droppedBytes = 0;
    while (this.count > this.bounds.maxSpans + this.lentSpans || this.byteCount > this.bounds.maxBytes + this.lentBytes) {
      droppedBytes += this.dropOldest();
      droppedSpans++;
    }
    if (droppedSpans) this.onDrop(droppedSpans, droppedBytes);
    const w = this.waiter;
    if (w && (this.count >= w.spans || this.byteCount >= w.bytes)) this.wake();
  }

  /** Drop the oldest span (counted through `onDrop`), for the memory ceiling; returns its bytes, 0 when empty. */
  dropOldestOne(): number {
    if (this.count === 0) return 0;
    const bytes = this.dropOldest();
    this.trimLoan();
    this.onDrop(1, bytes);
    return bytes;
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

  private store(i: number, item: QueuedSpan): void {
    const { slab, offset } = item.handOver();
    this.slabs[i] = slab;
    this.offsets[i] = offset;
    this.lengths[i] = item.length;
    this.resourceBytes[i] = item.resourceBytes;
    this.resources[i] = item.resource;
  }

  /** Remove the front span and hand it out as a QueuedSpan that owns its bytes. */
  private shift(): QueuedSpan {
    const i = this.head;
    const q = QueuedSpan.adopt(this.slabs[i]!, this.offsets[i], this.lengths[i], this.resources[i]!, this.resourceBytes[i]);
    this.clear(i);
    return q;
  }

  /** Drop the front span, releasing its bytes; returns the bytes it counted. */
  private dropOldest(): number {
    const i = this.head;
    const bytes = this.lengths[i] + QUEUED_SPAN_OVERHEAD_BYTES + this.resourceBytes[i];
    QueuedSpan.releaseBytes(this.slabs[i]!);
    this.clear(i);
    return bytes;
  }

  private clear(i: number): void {
    this.byteCount -= this.lengths[i] + QUEUED_SPAN_OVERHEAD_BYTES + this.resourceBytes[i];
    this.slabs[i] = undefined;
    this.resources[i] = undefined;
    this.head = (i + 1) & (this.capacity - 1);
    this.count--;
  }

  private grow(): void {
    const capacity = this.capacity * 2;
    const slabs: (Slab | undefined)[] = new Array(capacity);
    const resources: (Resource | undefined)[] = new Array(capacity);
    const offsets = new Int32Array(capacity);
    const lengths = new Int32Array(capacity);
    const resourceBytes = new Int32Array(capacity);
    const mask = this.capacity - 1;
    for (let k = 0; k < this.count; k++) {
      const i = (this.head + k) & mask;
      slabs[k] = this.slabs[i];
      resources[k] = this.resources[i];
      offsets[k] = this.offsets[i];
      lengths[k] = this.lengths[i];
      resourceBytes[k] = this.resourceBytes[i];
    }
    this.slabs = slabs;
    this.resources = resources;
    this.offsets = offsets;
    this.lengths = lengths;
    this.resourceBytes = resourceBytes;
    this.capacity = capacity;
    this.head = 0;
  }
}
