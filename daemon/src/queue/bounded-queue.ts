/**
 * A small FIFO bounded by item count, and optionally by bytes, with the span queue's semantics:
 * `push` never blocks and never fails; when full, the OLDEST items are dropped and reported to
 * `onDrop` (the newest item always stays, even alone over the byte bound).
 *
 * For low-volume side channels (scores), where the span queue's byte accounting and batcher
 * wake-ups do not apply. Storage is an array read from a moving head, compacted once the
 * consumed prefix outgrows the live part: amortized O(1) push and shift.
 */
export interface ByteBound<T> {
  readonly maxBytes: number;
  readonly sizeOf: (item: T) => number;
}

export class BoundedQueue<T> {
  private items: (T | undefined)[] = [];
  private head = 0;
  /** Bytes of the queued items (0 without a byte bound). */
  bytes = 0;

  constructor(
    readonly maxItems: number,
    private readonly onDrop: (item: T) => void,
    private readonly byteBound?: ByteBound<T>,
  ) {
    if (!(maxItems >= 1)) throw new RangeError('maxItems must be at least 1');
  }

  get length(): number {
    return this.items.length - this.head;
  }

  push(item: T): void {
    if (this.length >= this.maxItems) this.onDrop(this.shift() as T);
    this.items.push(item);
    const bound = this.byteBound;
    if (!bound) return;
    this.bytes += bound.sizeOf(item);
    while (this.bytes > bound.maxBytes && this.length > 1) this.onDrop(this.shift() as T);
  }

  /** The oldest item, removed; `undefined` when empty. */
  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head] as T;
    this.items[this.head] = undefined;
    this.head++;
    if (this.byteBound) this.bytes -= this.byteBound.sizeOf(item);
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }

  /** Everything still queued, oldest first; the queue is empty afterwards. */
  drain(): T[] {
    const out = this.items.slice(this.head) as T[];
    this.items = [];
    this.head = 0;
    this.bytes = 0;
    return out;
  }
}
