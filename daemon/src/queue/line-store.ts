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

export class LineStore {
  private current: Slab | undefined;
  private readonly free: Slab[] = [];

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
        slab = this.free.pop() ?? new Slab(SLAB_BYTES);
        slab.used = 0;
        this.current = slab;
      }
    }
    const offset = slab.used;
    slab.used += length;
    slab.live++;
    return { slab, offset };
  }

  /** One line of `slab` has left the daemon. Call exactly once per `alloc`. */
  release(slab: Slab): void {
    slab.live--;
    if (slab.live === 0 && slab !== this.current && slab.buf.length === SLAB_BYTES && this.free.length < MAX_FREE_SLABS) {
      this.free.push(slab);
    }
  }
}
