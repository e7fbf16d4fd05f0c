/**
 * The Unix transport's record buffer: bounded by records and by bytes, dropping the OLDEST when
 * full (as {@link Ring}), but the records wait as UTF-8 bytes in a few large Buffers outside the
 * V8 heap instead of as strings.
 *
 * Why: while the daemon reads slower than the app writes, records wait. As strings they survive
 * every young-generation GC and are copied by each one: measured with the SDK benchmark's app
 * (`node --trace-gc`), scavenges took 3-23 ms each and ~250 ms per 100,000 spans with a daemon on
 * the same 2 cores, against ~1 ms each and ~55 ms when the reader kept up. Those pauses were the
 * app's event-loop p99. As bytes here, a record's string dies young and nothing per record is left
 * for the GC (offsets and lengths live in typed arrays).
 *
 * Records are appended to the newest chunk (a record never spans two); a chunk whose records have
 * all been taken or dropped is reused. `take` copies the oldest records out into one Buffer, so a
 * chunk is never read by a write in progress while it is being reused.
 *
 * Records that will not wait (nothing is stored, no write in progress: the daemon keeps up) stay
 * one string, written as such on the next turn, as before this ring: encoding each into a chunk
 * and copying it out again cost that usual path ~0.4 µs per span.
 */
import { writeUtf8 } from '@dspy-o11y/proto/bytes';
import { Ring, type RecordBuffer } from './ring.js';

/** Chunk size; a record longer than a quarter of it gets a chunk of its own (not reused). */
const CHUNK_BYTES = 256 * 1024;
const OWN_CHUNK_ABOVE = CHUNK_BYTES / 4;
/** Empty chunks kept for reuse (1 MiB). */
const MAX_FREE_CHUNKS = 4;

interface Chunk {
  readonly buf: Buffer;
  /** Write position. */
  used: number;
  /** Records in it still queued. */
  live: number;
}

export class ByteRing implements RecordBuffer {
  // The records, oldest first, in three parallel rings: chunk, offset and length.
  private chunkOf: (Chunk | undefined)[];
  private offsets: Int32Array;
  private lengths: Int32Array;
  private head = 0;
  private count = 0;
  private current: Chunk | undefined;
  private readonly free: Chunk[] = [];
  /** Newest records that did not wait, as strings; only while no bytes are stored. */
  private readonly fresh: Ring;
  /** Bytes stored, and stored ever (fresh records count in `fresh` until they are stored). */
  private bytes = 0;
  private pushedBytes = 0;

  constructor(
    readonly maxRecords: number,
    readonly maxBytes: number,
  ) {
    this.fresh = new Ring(maxRecords, maxBytes);
    const slots = Math.min(maxRecords, 1024);
    this.chunkOf = new Array<Chunk | undefined>(slots);
    this.offsets = new Int32Array(slots);
    this.lengths = new Int32Array(slots);
  }

  get size(): number {
    return this.count + this.fresh.size;
  }

  /** What `maxBytes` bounds: bytes stored, plus the fresh records' characters. */
  get chars(): number {
    return this.bytes + this.fresh.chars;
  }

  /** A running total of `chars` pushed: the difference of two readings is what arrived between them. */
  get pushed(): number {
    return this.pushedBytes + this.fresh.pushed;
  }

  /**
   * Appends `line`: as bytes if it will wait or bytes are stored already (order), else as a string
   * in the fresh ring. Returns how many old records were dropped.
   */
  push(line: string, willWait = true): number {
    // With no bytes stored, the fresh ring bounds (and drops from) everything queued.
    if (!willWait && this.count === 0) return this.fresh.push(line);
    // Older than this one: the fresh records go first.
    const dropped = this.fresh.size > 0 ? this.storeFresh() : 0;
    return dropped + this.store(line, false);
  }

  /**
   * Stores `line` as bytes; returns how many old records were dropped to make room. `moved`: a
   * fresh record being stored (already counted in `pushed`; the byte bound applies at the next push).
   */
  private store(line: string, moved: boolean): number {
    // At most 3 bytes per UTF-16 unit: with that much room the line is written without measuring it first.
    const current = this.current;
    let bytes = current && line.length * 3 <= CHUNK_BYTES - current.used ? -1 : Buffer.byteLength(line, 'utf8');
    let dropped = 0;
    if (this.count === this.chunkOf.length) {
      if (this.count >= this.maxRecords) {
        this.dropOldest();
        dropped++;
      } else this.grow();
    }
    let chunk: Chunk;
    let offset: number;
    if (bytes < 0) {
      chunk = current!;
      offset = chunk.used;
      bytes = writeUtf8(chunk.buf, line, offset, chunk.buf.length - offset);
    } else {
      chunk = this.room(bytes);
      offset = chunk.used;
      writeUtf8(chunk.buf, line, offset, bytes);
    }
    chunk.used += bytes;
    chunk.live++;
    const slot = (this.head + this.count) % this.chunkOf.length;
    this.chunkOf[slot] = chunk;
    this.offsets[slot] = offset;
    this.lengths[slot] = bytes;
    this.count++;
    this.bytes += bytes;
    if (moved) return dropped;
    this.pushedBytes += bytes;
    while (this.bytes > this.maxBytes && this.count > 1) {
      this.dropOldest();
      dropped++;
    }
    return dropped;
  }

  /**
   * Removes records from the front up to `maxBytes` bytes (at least one record) and returns them
   * as one Buffer of their own, after `prefix` (UTF-8), with how many records it holds.
   */
  take(maxBytes: number, prefix = ''): { data: Buffer | string; records: number } {
    if (this.count === 0) {
      // Only fresh records: one string, as the socket takes it.
      const before = this.fresh.size;
      const data = prefix + this.fresh.take(maxBytes);
      return { data, records: before - this.fresh.size };
    }
    let n = 0;
    let bytes = 0;
    const len = this.chunkOf.length;
    while (n < this.count) {
      const b = this.lengths[(this.head + n) % len];
      if (n > 0 && bytes + b > maxBytes) break;
      bytes += b;
      n++;
    }
    const prefixBytes = prefix ? Buffer.byteLength(prefix, 'utf8') : 0;
    const data = Buffer.allocUnsafe(prefixBytes + bytes);
    let pos = prefixBytes ? writeUtf8(data, prefix, 0, prefixBytes) : 0;
    for (let i = 0; i < n; i++) {
      const slot = this.head;
      const chunk = this.chunkOf[slot]!;
      const start = this.offsets[slot];
      // Records that follow each other in one chunk are copied as one run.
      let end = start + this.lengths[slot];
      this.release(slot);
      while (i + 1 < n && this.chunkOf[this.head] === chunk && this.offsets[this.head] === end) {
        end += this.lengths[this.head];
        this.release(this.head);
        i++;
      }
      pos += chunk.buf.copy(data, pos, start, end);
    }
    return { data, records: n };
  }

  clear(): number {
    const n = this.fresh.clear() + this.count;
    while (this.count > 0) this.dropOldest();
    return n;
  }

  /** The fresh records as bytes, oldest first; returns how many old records the record bound dropped meanwhile. */
  private storeFresh(): number {
    let dropped = 0;
    for (let line = this.fresh.shift(); line !== undefined; line = this.fresh.shift()) dropped += this.store(line, true);
    return dropped;
  }

  private dropOldest(): void {
    this.release(this.head);
  }

  /** The front record leaves the ring (taken or dropped); its chunk is reused once empty. */
  private release(slot: number): void {
    const chunk = this.chunkOf[slot]!;
    this.chunkOf[slot] = undefined;
    this.bytes -= this.lengths[slot];
    this.head = (this.head + 1) % this.chunkOf.length;
    this.count--;
    if (--chunk.live === 0) {
      if (chunk === this.current) chunk.used = 0;
      else if (chunk.buf.length === CHUNK_BYTES && this.free.length < MAX_FREE_CHUNKS) this.free.push(chunk);
    }
  }

  /** A chunk with `bytes` free at its end: the current one, a reused one or a new one. */
  private room(bytes: number): Chunk {
    if (bytes > OWN_CHUNK_ABOVE) return { buf: Buffer.allocUnsafeSlow(bytes), used: 0, live: 0 };
    const c = this.current;
    if (c && c.used + bytes <= c.buf.length) return c;
    if (c && c.live === 0) {
      c.used = 0;
      return c;
    }
    const next = this.free.pop() ?? { buf: Buffer.allocUnsafeSlow(CHUNK_BYTES), used: 0, live: 0 };
    next.used = 0;
    this.current = next;
    return next;
  }

  private grow(): void {
    const size = Math.min(this.chunkOf.length * 2, this.maxRecords);
    const len = this.chunkOf.length;
    const chunkOf = new Array<Chunk | undefined>(size);
    const offsets = new Int32Array(size);
    const lengths = new Int32Array(size);
    for (let i = 0; i < this.count; i++) {
      const j = (this.head + i) % len;
      chunkOf[i] = this.chunkOf[j];
      offsets[i] = this.offsets[j];
      lengths[i] = this.lengths[j];
    }
    this.chunkOf = chunkOf;
    this.offsets = offsets;
    this.lengths = lengths;
    this.head = 0;
  }
}
