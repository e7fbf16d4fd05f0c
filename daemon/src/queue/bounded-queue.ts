/**
 * A small FIFO bounded by item count with the span queue's semantics: `push` never blocks and
 * never fails; when full, the OLDEST item is dropped and reported to `onDrop`.
 *
 * For low-volume side channels (scores), where the span queue's byte accounting and batcher
 * wake-ups do not apply. Storage is an array read from a moving head, compacted once the
 * consumed prefix outgrows the live part: amortized O(1) push and shift.
 */
export class BoundedQueue<T> {
  private items: (T | undefined)[] = [];
  private head = 0;

  constructor(
    readonly maxItems: number,
    private readonly onDrop: (item: T) => void,
  ) {
    if (!(maxItems >= 1)) throw new RangeError('maxItems must be at least 1');
  }

  get length(): number {
    return this.items.length - this.head;
  }

  push(item: T): void {
    if (this.length >= this.maxItems) this.onDrop(this.shift() as T);
    this.items.push(item);
  }

  /** The oldest item, removed; `undefined` when empty. */
  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head];
    this.items[this.head] = undefined;
    this.head++;
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
    return out;
  }
}
