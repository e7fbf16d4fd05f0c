/**
 * Local sinks (DESIGN §5): `console` (stdout) and `file`, each writing one OTLP/JSON
 * ExportTraceServiceRequest per line per batch, so `dspy-o11yd start | jq` or a log shipper reads
 * the spans. Same contract as the HTTP exporters (http-exporter.ts): one batch, one outcome,
 * never a retry (the export loop does), `send` never rejects; a stalled reader or a full disk is
 * a `retryable` outcome, never an unbounded buffer.
 */
import { constants } from 'node:fs';
import { mkdir, open, stat, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { spanOf, type QueuedSpan } from '../model.js';
import { VERSION } from '../version.js';
import { sleep, unlessAborted } from './backoff.js';
import { abortReason } from './http-common.js';
import { SCOPE_NAME } from './http-exporter.js';
import { encodeTraces, type EncodableSpan } from './otlp-encode.js';
import type { ExportOutcome, SpanExporter } from './types.js';

/** The batch as one OTLP/JSON line, or the `refused` outcome when it cannot be encoded (a bug: retrying cannot help). */
function encodeLine(batch: readonly QueuedSpan[], scopeVersion: string): Buffer | ExportOutcome {
  try {
    return jsonLine(batch, scopeVersion);
  } catch (err) {
    return { kind: 'refused', status: 0, body: `could not encode the batch: ${(err as Error).message}` };
  }
}


const NEWLINE = Buffer.from('\n');

function jsonLine(batch: readonly QueuedSpan[], scopeVersion: string): Buffer {
  const spans: EncodableSpan[] = batch.map((q) => ({ span: spanOf(q), resource: q.resource }));
  const body = encodeTraces(spans, { encoding: 'json', scope: { name: SCOPE_NAME, version: scopeVersion }, keepScopes: true });
  return Buffer.concat([body, NEWLINE]);
}

class StreamExporter implements SpanExporter {
  readonly kind = 'console' as const;
  readonly encoding = 'json' as const;
  /**
   * The last line handed to the stream whose write has not completed (the reader stalls). Only
   * one at a time: nothing more is written until it is, so the stream's buffer stays bounded.
   */
  private pending: { batch: readonly QueuedSpan[]; written: Promise<Error | null | undefined> } | undefined;

  constructor(
    private readonly stream: NodeJS.WritableStream,
    readonly destination: string,
    private readonly scopeVersion: string,
  ) {
    // A failed write reaches its callback (a retryable outcome); without a listener its 'error'
    // event too, unhandled: a reader gone (EPIPE, `start | head` once head exits) killed the daemon.
    stream.on('error', () => undefined);
  }

  async send(batch: readonly QueuedSpan[], signal: AbortSignal): Promise<ExportOutcome> {
    if (signal.aborted) return { kind: 'retryable', reason: abortReason(signal) };
    const previous = this.pending;
    if (previous) {
      const err = await unlessAborted(previous.written, signal);
      if (err === undefined) return { kind: 'retryable', reason: `${this.destination} is not read (${abortReason(signal)})` };
      this.pending = undefined;
      // The retry of a batch whose line did get through at last: done, not written twice.
      if (previous.batch === batch && !err) return { kind: 'delivered' };
    }
    const line = encodeLine(batch, this.scopeVersion);
    if (!Buffer.isBuffer(line)) return line;
    let written: Promise<Error | null | undefined>;
    try {
      written = new Promise((resolve) => this.stream.write(line, (err?: Error | null) => resolve(err ?? null)));
    } catch (err) {
      return { kind: 'retryable', reason: `write_${(err as { code?: string }).code ?? 'error'}` };
    }
    this.pending = { batch, written };
    const err = await unlessAborted(written, signal);
    // Still in the stream's buffer when the export timeout ran out: not delivered (nobody may
    // ever read it). The batch stays ours; its retry waits for this write instead of repeating it.
    if (err === undefined) return { kind: 'retryable', reason: `${this.destination} is not read (${abortReason(signal)})` };
    this.pending = undefined;
    if (err) return { kind: 'retryable', reason: `write_${(err as { code?: string }).code ?? 'error'}` };
    return { kind: 'delivered' };
  }

  async close(): Promise<void> {}
}

/** Writes each batch as one OTLP/JSON line to `stream` (e.g. stdout). */
export function createConsoleExporter(stream: NodeJS.WritableStream, options: { scopeVersion?: string } = {}): SpanExporter {
  const destination = stream === process.stdout ? 'stdout' : stream === process.stderr ? 'stderr' : 'stream';
  return new StreamExporter(stream, destination, options.scopeVersion ?? VERSION);
}

/** How often a write to a full FIFO is tried again. */
const FIFO_POLL_MS = 20;

class FileExporter implements SpanExporter {
  readonly kind = 'file' as const;
  readonly encoding = 'json' as const;
  private handle: Promise<FileHandle> | undefined;
  private closed = false;
  /**
   * The rest of a line cut short in a FIFO (the send's signal aborted while the pipe was full):
   * written before anything else so the reader never sees a torn line; a retry of that batch is
   * then done.
   */
  private tail: { batch: readonly QueuedSpan[]; rest: Buffer } | undefined;
  /**
   * An append `send` stopped waiting for (its signal aborted while open or write was blocked: a
   * FIFO nobody reads, a hung mount). The next send waits for it first, so appends never overlap,
   * and a retry of that batch whose append did finish is not written twice.
   */
  private abandoned: { batch: readonly QueuedSpan[]; append: Promise<ExportOutcome> } | undefined;

  constructor(
    readonly destination: string,
    private readonly scopeVersion: string,
  ) {}

  private file(): Promise<FileHandle> {
    if (!this.handle) {
      const p = (async () => {
        await mkdir(dirname(this.destination), { recursive: true });
        // A FIFO is opened non-blocking: a blocking open (no reader) or write (reader stalled)
        // would pin a libuv thread, and process.exit joins those threads: the daemon could never
        // exit. Without a reader the open fails (ENXIO) and the batch is retried.
        const fifo = await stat(this.destination).then((st) => st.isFIFO(), () => false);
        // Created owner-only, as the spool files: the spans carry prompts and completions.
        return fifo ? open(this.destination, constants.O_WRONLY | constants.O_APPEND | constants.O_NONBLOCK) : open(this.destination, 'a', 0o600);
      })();
      // A failed open is retried on the next send.
      p.catch(() => {
        if (this.handle === p) this.handle = undefined;
      });
      this.handle = p;
    }
    return this.handle;
  }

  async send(batch: readonly QueuedSpan[], signal: AbortSignal): Promise<ExportOutcome> {
    if (this.closed) return { kind: 'retryable', reason: 'exporter_closed' };
    if (signal.aborted) return { kind: 'retryable', reason: abortReason(signal) };
    const previous = this.abandoned;
    if (previous) {
      const outcome = await unlessAborted(previous.append, signal);
      if (!outcome) return { kind: 'retryable', reason: `file_blocked (${abortReason(signal)})` };
      this.abandoned = undefined;
      if (previous.batch === batch && outcome.kind === 'delivered') return outcome;
    }
    const tail = this.tail;
    if (tail) {
      const outcome = await this.settled(tail.batch, this.append(tail.rest, signal), signal);
      if (outcome.kind !== 'delivered') return outcome;
      if (tail.batch === batch) return outcome;
    }
    const line = encodeLine(batch, this.scopeVersion);
    if (!Buffer.isBuffer(line)) return line;
    return this.settled(batch, this.append(line, signal), signal);
  }

  /** `append`'s outcome, or retryable once `signal` aborts (the append, if blocked, is remembered). */
  private async settled(batch: readonly QueuedSpan[], append: Promise<ExportOutcome | { rest: Buffer }>, signal: AbortSignal): Promise<ExportOutcome> {
    const outcome = await unlessAborted(append, signal);
    if (!outcome) {
      this.abandoned = { batch, append: append.then((o) => this.keepTail(batch, o)) };
      return { kind: 'retryable', reason: abortReason(signal) };
    }
    return this.keepTail(batch, outcome);
  }

  private keepTail(batch: readonly QueuedSpan[], outcome: ExportOutcome | { rest: Buffer }): ExportOutcome {
    if ('rest' in outcome) {
      this.tail = { batch, rest: outcome.rest };
      return { kind: 'retryable', reason: 'file_EAGAIN: the FIFO stayed full' };
    }
    if (outcome.kind === 'delivered') this.tail = undefined;
    return outcome;
  }

  /**
   * Never rejects. `{ rest }`: a FIFO stayed full until `signal` aborted, after part of the line
   * went in; `rest` is what is left to write.
   */
  private async append(line: Buffer, signal: AbortSignal): Promise<ExportOutcome | { rest: Buffer }> {
    let fh: FileHandle | undefined;
    let sizeBefore: number | undefined;
    let offset = 0;
    try {
      fh = await this.file();
      let st = await fh.stat();
      // The path no longer names the open file (removed, or renamed by log rotation): writing on
      // would put the line where nobody looks, or nowhere at all, counted as exported. Reopen.
      const named = await stat(this.destination).catch(() => undefined);
      if (!named || named.ino !== st.ino || named.dev !== st.dev) {
        this.handle = undefined;
        await fh.close().catch(() => undefined);
        fh = undefined;
        if (this.closed) return { kind: 'retryable', reason: 'exporter_closed' };
        fh = await this.file();
        st = await fh.stat();
      }
      if (st.isFile()) sizeBefore = st.size;
      // One write of the whole line to a file opened with O_APPEND: lines never interleave.
      while (offset < line.length) {
        try {
          const { bytesWritten } = await fh.write(line, offset, line.length - offset);
          offset += bytesWritten;
        } catch (err) {
          // Non-blocking FIFO, pipe full: wait for the reader, as long as the signal allows.
          if ((err as { code?: string }).code !== 'EAGAIN') throw err;
          if (!(await sleep(FIFO_POLL_MS, signal))) return offset > 0 ? { rest: line.subarray(offset) } : { kind: 'retryable', reason: 'file_EAGAIN' };
        }
      }
      return { kind: 'delivered' };
    } catch (err) {
      // A short write (disk full, file size limit) left part of the line: cut it off, so the
      // retry starts on a clean line instead of appending after a torn one.
      if (fh && sizeBefore !== undefined && offset > 0) await fh.truncate(sizeBefore).catch(() => undefined);
      return { kind: 'retryable', reason: `file_${(err as { code?: string }).code ?? 'error'}` };
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const h = this.handle;
    this.handle = undefined;
    if (h) await h.then((fh) => fh.close()).catch(() => {});
  }
}

/** Appends each batch as one OTLP/JSON line to `path` (created, with its directory, if missing). */
export function createFileExporter(path: string, options: { scopeVersion?: string } = {}): SpanExporter {
  return new FileExporter(path, options.scopeVersion ?? VERSION);
}
