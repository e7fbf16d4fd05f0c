/**
 * What flows through the daemon after ingest: validated spans with the resource they came
 * with and their size, which the queue's byte bound counts.
 *
 * A queued span is kept as its JSON line — UTF-8 bytes in a slab outside the V8 heap
 * (queue/line-store.ts) — not as the parsed record: the parsed object is dropped right after
 * validation, and the export stage parses the lines again where it maps and encodes them (in a
 * worker thread, export/prepare-worker.ts). For a record that came over the Unix socket or as an
 * NDJSON body the line is the wire line itself (one memcpy from the chunk); other records (JSON
 * bodies, OTLP, standalone events turned into spans) are serialized once with JSON.stringify.
 */
import type { Attributes, SpanRecord } from '@dspy-o11y/proto';
import { writeLatin1, writeUtf8 } from '@dspy-o11y/proto/bytes';
import { LineStore, type MemoryCeiling, type Slab } from './queue/line-store.js';

/** An OpenTelemetry instrumentation scope, as an OTLP sender stated it. */
export interface Scope {
  readonly name: string;
  readonly version: string;
  readonly attributes?: Attributes;
}

/**
 * One per `hello` (or per connection without one), per OTLP ResourceSpans, or, when the exporter
 * keeps scopes, per (ResourceSpans, ScopeSpans) pair: spans share it, so exporters can group by
 * identity.
 */
export interface Resource {
  readonly attributes: Attributes;
  readonly sdk?: { name: string; version: string };
  /**
   * The spans' instrumentation scope (OTLP ingest with an exporter other than `langfuse`), which
   * the `otlp`, `console` and `file` exporters send them under; without one (the SDK's spans),
   * the daemon's own.
   */
  readonly scope?: Scope;
}

/** The resource of a session that sent no `hello`. */
export const EMPTY_RESOURCE: Resource = Object.freeze({ attributes: Object.freeze({}) });

/**
 * Bytes a queued span costs besides its line's bytes: the newline stored after the line, and its
 * slot in the queue's five columns (queue/span-queue.ts: two pointers and three int32, 28 bytes),
 * counted twice because the ring's capacity is a power of two, up to twice the spans it holds.
 */
export const QUEUED_SPAN_OVERHEAD_BYTES = 1 + 2 * 28;

const store = new LineStore();

/** Sets (or with undefined, lifts) the memory ceiling of the queued lines' store (one per process). */
export function setQueueMemoryCeiling(ceiling: MemoryCeiling | undefined): void {
  store.setCeiling(ceiling);
}

export class QueuedSpan {
  /** Undefined once released (the span has left the daemon). */
  private slab: Slab | undefined;
  private readonly offset: number;
  /** UTF-8 bytes of the line. */
  readonly length: number;
  /**
   * What `--queue-max-bytes` and `--batch-max-bytes` count: the line's bytes plus the span's
   * fixed overhead ({@link QUEUED_SPAN_OVERHEAD_BYTES}), plus `resourceBytes`; the memory the
   * queued span holds.
   */
  readonly bytes: number;

  private constructor(
    slab: Slab | undefined,
    offset: number,
    length: number,
    readonly resource: Resource,
    /**
     * The size of `resource` (its attributes as JSON) when this is the first span queued with
     * it, else 0: a resource is counted once, with its first span, so spans of large resources
     * cannot hold memory no bound sees.
     */
    readonly resourceBytes = 0,
  ) {
    this.slab = slab;
    this.offset = offset;
    this.length = length;
    this.bytes = length + QUEUED_SPAN_OVERHEAD_BYTES + resourceBytes;
  }

  /**
   * A span from its line (the bytes are copied into a slab, followed by a newline, so that
   * consecutive spans form NDJSON that {@link joinLines} copies in one go).
   *
   * The size is measured from the string, not taken from the wire: the string is what was
   * validated and what is queued (ingest refuses lines that are not UTF-8; were one to get here,
   * its bad bytes would be U+FFFD, 3 bytes each).
   * `ascii`: the line is known to be ASCII (its UTF-8 bytes are its characters, copied as latin1).
   * `resourceBytes`: see {@link resourceBytes}.
   */
  static fromLine(line: string, resource: Resource, ascii = false, resourceBytes = 0): QueuedSpan {
    const utf8Bytes = ascii ? line.length : Buffer.byteLength(line, 'utf8');
    const { slab, offset } = store.alloc(utf8Bytes + 1);
    // Writing the string (~0.3 µs with measuring it) costs less than Buffer#copy from the wire chunk (~0.4 µs).
    if (ascii) writeLatin1(slab.buf, line, offset, utf8Bytes);
    else writeUtf8(slab.buf, line, offset, utf8Bytes);
    slab.buf[offset + utf8Bytes] = 0x0a;
    return new QueuedSpan(slab, offset, utf8Bytes, resource, resourceBytes);
  }

  /**
   * The batch's lines, newline-separated, in one new buffer of its own (transferable). Spans that
   * sit next to each other in a slab — the usual case, they were queued in order — are copied as
   * one run.
   */
  static joinLines(batch: readonly QueuedSpan[]): Buffer {
    let size = 0;
    for (const q of batch) size += q.length + 1;
    const out = Buffer.allocUnsafeSlow(Math.max(0, size - 1));
    let pos = 0;
    let i = 0;
    while (i < batch.length) {
      const first = batch[i];
      const buf = first.bytesOf();
      const start = first.offset;
      let end = start + first.length + 1;
      i++;
      while (i < batch.length && batch[i].slab === first.slab && batch[i].offset === end) {
        end += batch[i].length + 1;
        i++;
      }
      // The last line's newline is not copied.
      pos += buf.copy(out, pos, start, Math.min(end, start + out.length - pos));
    }
    return out;
  }

  /** For the queue: a span that owns `length` bytes at `offset` of `slab` (from {@link handOver}). */
  static adopt(slab: Slab, offset: number, length: number, resource: Resource, resourceBytes: number): QueuedSpan {
    return new QueuedSpan(slab, offset, length, resource, resourceBytes);
  }

  /** For the queue: release bytes it holds without a QueuedSpan (a dropped span). */
  static releaseBytes(slab: Slab): void {
    store.release(slab);
  }

  /**
   * For the queue: give up the bytes (the caller now owns them, and must release or adopt them);
   * this object is spent.
   */
  handOver(): { slab: Slab; offset: number } {
    const slab = this.slab;
    if (!slab) throw new Error('queued span handed over after release');
    this.slab = undefined;
    return { slab, offset: this.offset };
  }

  /** The span record as one JSON line (no newline). It may carry top-level fields the schema does not know: read it with {@link spanOf}. */
  get line(): string {
    return this.bytesOf().toString('utf8', this.offset, this.offset + this.length);
  }

  /**
   * The span has left the daemon (exported or dropped): its bytes may be reused. Idempotent;
   * reading the line afterwards throws.
   */
  release(): void {
    const slab = this.slab;
    if (!slab) return;
    this.slab = undefined;
    store.release(slab);
  }

  private bytesOf(): Buffer {
    if (!this.slab) throw new Error('queued span read after release');
    return this.slab.buf;
  }
}

/** A queued span from a validated record object (JSON bodies, OTLP ingest, events, tests). */
export function queuedSpan(span: SpanRecord, resource: Resource, resourceBytes = 0): QueuedSpan {
  return QueuedSpan.fromLine(JSON.stringify(span), resource, false, resourceBytes);
}

/** Releases every span of a batch (see {@link QueuedSpan.release}). */
export function releaseAll(batch: readonly QueuedSpan[]): void {
  for (const q of batch) q.release();
}

/**
 * The span record of a queued line, as the exporters read it. Attribute keys `__proto__` are
 * removed, as the schema's parsing does (the validated record never has them).
 */
export function spanOf(q: QueuedSpan): SpanRecord {
  return cleanSpan(JSON.parse(q.line) as SpanRecord);
}

/** Removes `__proto__` attribute keys (JSON.parse makes them own data properties; zod drops them). */
export function cleanSpan(span: SpanRecord): SpanRecord {
  const attrs = span.attributes;
  if (attrs && Object.hasOwn(attrs, '__proto__')) delete (attrs as Record<string, unknown>)['__proto__'];
  const events = span.events;
  if (events) {
    for (const e of events) {
      if (e.attributes && Object.hasOwn(e.attributes, '__proto__')) delete (e.attributes as Record<string, unknown>)['__proto__'];
    }
  }
  return span;
}
