/**
 * Where queued spans keep their bytes: the span's JSON line (UTF-8) copied into large, reused
 * buffers ("slabs") outside the V8 heap.
 *
 * Why not keep the parsed record, or the line as a string? Memory that a byte bound can trust.
 * A parsed span takes 2–3× its wire size on the heap, and either form is garbage the moment the
 * queue drops or exports it — garbage V8 collects when it likes: during a flood against a dead
 * backend its old generation grew to ~4× the live queue before a full GC (measured: a 64 MiB
 * queue of strings peaked at 560 MiB RSS). Slabs are freed explicitly: a slab whose spans have
 * all left the daemon (exported, dropped) goes back to a small free list and is written again,
 * so the memory held is the bytes queued or in flight plus a few slabs, whatever the GC does.
 * It is also cheaper: the main thread copies each line once (memcpy from the socket chunk) and
 * nothing long-lived is left for the garbage collector to trace or promote.
 */

/** Slab size. A line longer than a quarter of it gets a buffer of its own (not reused). */
export const SLAB_BYTES = 256 * 1024;
const OWN_BUFFER_ABOVE = SLAB_BYTES / 4;
/** Empty slabs kept for reuse (2 MiB); more go to the garbage collector. */
const MAX_FREE_SLABS = 8;

export class Slab {
  readonly buf: Buffer;
  /** Write position. */
  used = 0;
  /** Lines stored here and not yet released. */
  live = 0;

  constructor(size: number) {
    // Not from Node's shared pool: its own memory, reusable and never shared with other Buffers.
    this.buf = Buffer.allocUnsafeSlow(size);
  }
}

/**
 * A ceiling on the process's memory for the store (`--memory-limit`): past it, the store does not
 * take a new slab but recycles one, after `reclaim` drops the oldest queued lines (their slabs go
 * back to the free list). The queue's byte bound counts the queue; this also covers what it
 * cannot see (V8's heaps, the export worker, sockets), so RSS stays under the limit whatever the
 * overhead does — as the OpenTelemetry Collector's memory_limiter does by refusing data.
 */
export interface MemoryCeiling {
  readonly maxRssBytes: number;
  /** Drops the oldest queued line; false when nothing is left to drop. */
  readonly reclaim: () => boolean;
  /** Reads the RSS (default process.memoryUsage.rss: a /proc read, ~10 µs idle, ~130 µs measured under load). */
  readonly rss?: () => number;
}

/** Far from the ceiling, the RSS is read again after this many new slabs (4 MiB)… */
const RSS_READ_EVERY_SLABS = 16;
/** …or as soon as the estimate (last reading + the slabs taken since) comes this close to it. */
const RSS_READ_MARGIN = 8 * 1024 * 1024;

export class LineStore {
  private current: Slab | undefined;
  private readonly free: Slab[] = [];
  private ceiling: MemoryCeiling | undefined;
  private rssAtRead = 0;
  private slabsSinceRead = RSS_READ_EVERY_SLABS;

  /** Sets or (undefined) lifts the ceiling; the next new slab reads the RSS. */
  setCeiling(ceiling: MemoryCeiling | undefined): void {
    this.ceiling = ceiling;
    this.slabsSinceRead = RSS_READ_EVERY_SLABS;
  }

  /** Room for `length` bytes; the caller writes them at `offset` of the returned slab. */
  alloc(length: number): { slab: Slab; offset: number } {
    if (length > OWN_BUFFER_ABOVE) {
      const own = new Slab(length);
      own.used = length;
      own.live = 1;
      return { slab: own, offset: 0 };
    }
    let slab = this.current;
    if (!slab || slab.used + length > slab.buf.length) {
      if (slab && slab.live === 0) slab.used = 0; // full, but everything in it is gone already
      else {
        slab = this.free.pop() ?? this.newSlab();
        slab.used = 0;
        this.current = slab;
      }
    }
    const offset = slab.used;
    slab.used += length;
    slab.live++;
    return { slab, offset };
  }

  /** A new slab, or under the memory ceiling a recycled one (oldest lines dropped to free it). */
  private newSlab(): Slab {
    const c = this.ceiling;
    if (c && this.rssEstimate(c) + SLAB_BYTES > c.maxRssBytes) {
      while (this.free.length === 0 && c.reclaim()) {
        /* drop the oldest until one of their slabs is empty */
      }
      const recycled = this.free.pop();
      if (recycled) return recycled;
    }
    this.slabsSinceRead++;
    return new Slab(SLAB_BYTES);
  }

  /** The RSS, read when it may matter; in between, the last reading plus the slabs taken since. */
  private rssEstimate(c: MemoryCeiling): number {
    const estimate = this.rssAtRead + this.slabsSinceRead * SLAB_BYTES;
    if (this.slabsSinceRead >= RSS_READ_EVERY_SLABS || estimate + SLAB_BYTES + RSS_READ_MARGIN > c.maxRssBytes) {
      this.rssAtRead = (c.rss ?? process.memoryUsage.rss)();
      this.slabsSinceRead = 0;
      return this.rssAtRead;
    }
    return estimate;
  }

  /** One line of `slab` has left the daemon. Call exactly once per `alloc`. */
  release(slab: Slab): void {
    slab.live--;
    if (slab.live === 0 && slab !== this.current && slab.buf.length === SLAB_BYTES && this.free.length < MAX_FREE_SLABS) {
      this.free.push(slab);
    }
  }
}
