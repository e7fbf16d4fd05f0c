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
 * A ceiling on the process's memory for the store (`--memory-limit`): past it, the store takes
 * room for a new line by dropping about as many bytes of the oldest queued lines (`reclaim`), and
 * recycles a slab that this frees rather than taking a new one. The queue's byte bound counts the
 * queue; this also covers what it cannot see (V8's heaps, the export worker, sockets), so memory
 * stops growing whatever the overhead does — as the OpenTelemetry Collector's memory_limiter does
 * by refusing data.
 */
export interface MemoryCeiling {
  readonly maxRssBytes: number;
  /** Drops the oldest queued line; returns the bytes it counted, 0 when nothing is left to drop. */
  readonly reclaim: () => number;
  /** Bytes queued now (what `reclaim` can still drop). */
  readonly queuedBytes: () => number;
  /** Reads the RSS (default process.memoryUsage.rss: a /proc read, ~10 µs idle, ~130 µs measured under load). */
  readonly rss?: () => number;
}

/** Far from the ceiling, the RSS is read again after this many bytes of new buffers (4 MiB)… */
const RSS_READ_EVERY_BYTES = 16 * SLAB_BYTES;
/** …or as soon as the estimate (last reading + the buffers taken since) comes this close to it. */
const RSS_READ_MARGIN = 8 * 1024 * 1024;
/**
 * The ceiling never shrinks the queue below this: when the process alone is over the limit
 * (a limit below Node's own RSS), dropping the last spans would free nothing worth having.
 */
export const MIN_QUEUE_KEPT_BYTES = 4 * SLAB_BYTES;

export class LineStore {
  private current: Slab | undefined;
  private readonly free: Slab[] = [];
  private ceiling: MemoryCeiling | undefined;
  private rssAtRead = 0;
  private bytesSinceRead = RSS_READ_EVERY_BYTES;

  /** Sets or (undefined) lifts the ceiling; the next new buffer reads the RSS. */
  setCeiling(ceiling: MemoryCeiling | undefined): void {
    this.ceiling = ceiling;
    this.bytesSinceRead = RSS_READ_EVERY_BYTES;
  }

  /** Room for `length` bytes; the caller writes them at `offset` of the returned slab. */
  alloc(length: number): { slab: Slab; offset: number } {
    if (length > OWN_BUFFER_ABOVE) {
      // Not reusable, but memory all the same: over the ceiling, as many old bytes go first.
      const c = this.ceiling;
      if (c && this.overCeiling(c, length)) this.reclaim(c, length, false);
      this.bytesSinceRead += length;
      const own = new Slab(length);
      own.used = length;
      own.live = 1;
      return { slab: own, offset: 0 };
    }
    let slab = this.current;
    if (!slab || slab.used + length > slab.buf.length) {
      slab = this.nextSlab();
      slab.used = 0;
      this.current = slab;
    }
    const offset = slab.used;
    slab.used += length;
    slab.live++;
    return { slab, offset };
  }

  /** The current slab again if all its lines are gone, else a free one, else a new one (see MemoryCeiling). */
  private nextSlab(): Slab {
    const cur = this.current;
    if (cur && cur.live === 0) return cur;
    const free = this.free.pop();
    if (free) return free;
    const c = this.ceiling;
    if (c && this.overCeiling(c, SLAB_BYTES)) {
      // Up to two slabs' worth: the oldest slab may be shared with spans in flight.
      this.reclaim(c, 2 * SLAB_BYTES, true);
      // The current slab is not on the free list: it may be the one the drops emptied.
      if (cur && cur.live === 0) return cur;
      const recycled = this.free.pop();
      if (recycled) return recycled;
    }
    this.bytesSinceRead += SLAB_BYTES;
    return new Slab(SLAB_BYTES);
  }

  /**
   * Drops the oldest lines until `bytes` have gone (or, `untilSlabFree`, a slab is free first), or
   * the queue is down to MIN_QUEUE_KEPT_BYTES. Bounded, so one allocation never empties the queue
   * when the drops free no slab (lines in buffers of their own, the current slab, a process over
   * the limit by itself).
   */
  private reclaim(c: MemoryCeiling, bytes: number, untilSlabFree: boolean): void {
    const cur = this.current;
    let dropped = 0;
    while (dropped < bytes && c.queuedBytes() > MIN_QUEUE_KEPT_BYTES && !(untilSlabFree && (this.free.length > 0 || cur?.live === 0))) {
      const d = c.reclaim();
      if (d === 0) break;
      dropped += d;
    }
  }

  /** Whether `bytes` more would pass the ceiling (by the RSS estimate). */
  private overCeiling(c: MemoryCeiling, bytes: number): boolean {
    return this.rssEstimate(c) + bytes > c.maxRssBytes;
  }

  /** The RSS, read when it may matter; in between, the last reading plus the buffers taken since. */
  private rssEstimate(c: MemoryCeiling): number {
    const estimate = this.rssAtRead + this.bytesSinceRead;
    if (this.bytesSinceRead >= RSS_READ_EVERY_BYTES || estimate + SLAB_BYTES + RSS_READ_MARGIN > c.maxRssBytes) {
      this.rssAtRead = (c.rss ?? process.memoryUsage.rss)();
      this.bytesSinceRead = 0;
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
