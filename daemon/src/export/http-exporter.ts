/**
 * Exporters (DESIGN §5, §6): OTLP/HTTP to Langfuse or any OTLP endpoint on one undici Pool, and
 * local sinks (console, file) writing one OTLP/JSON ExportTraceServiceRequest per line per batch.
 *
 * An exporter turns one batch into one request and maps the answer to an {@link ExportOutcome};
 * it never retries (the export loop does) and `send` never rejects. Secrets (Langfuse keys, OTLP
 * headers, URL credentials) live only in request headers: never in `destination`, outcomes or
 * errors.
 */
import { once } from 'node:events';
import { constants } from 'node:fs';
import { mkdir, open, stat, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { parseRetryAfter } from '@dspy-o11y/proto';
import { Pool, type Dispatcher } from 'undici';
import { spanOf, type QueuedSpan } from '../model.js';
import { VERSION } from '../version.js';
import type { LangfuseMapper, RepairReason } from './langfuse-map.js';
import { encodeTraces, type EncodableSpan, type OtlpEncoding } from './otlp-encode.js';
import { LocalPreparer, WorkerPreparer, type BatchPreparer, type Compression, type PrepareOptions } from './prepare.js';
import type { ExportOutcome, ExporterKind, PreparedBatch, SpanExporter } from './types.js';
import { sleep, unlessAborted } from './backoff.js';

export type { Compression } from './prepare.js';
/** Shared with the SDK's transport (one rule); exported here too, where it always was. */
export { parseRetryAfter };

/** Instrumentation scope name of everything the daemon exports (never `langfuse-sdk…`). */
export const SCOPE_NAME = 'dspy-o11y';
/** Refused answers are kept to this many bytes (one log line). */
export const MAX_ERROR_BODY_BYTES = 1024;

export interface HttpExporterOptions {
  readonly kind: Extract<ExporterKind, 'langfuse' | 'otlp'>;
  /** Full URL of the traces endpoint. Credentials in it are moved to an Authorization header. */
  readonly url: string;
  /** Extra request headers (auth, …). Never logged or shown. */
  readonly headers?: Readonly<Record<string, string>>;
  readonly encoding?: OtlpEncoding;
  readonly compression?: Compression;
  /** Instrumentation scope version; default the daemon's version. */
  readonly scopeVersion?: string;
  /** Apply the Langfuse mapping (DESIGN §6) before encoding. */
  readonly langfuse?: { readonly maxTraces?: number; readonly onRepair?: (reason: RepairReason) => void };
  /**
   * Prepare batches (parse, map, encode, gzip) on a worker thread instead of the calling thread.
   * The daemon does (create-exporter.ts); default false.
   */
  readonly worker?: boolean;
  /** Pool connections (keep-alive). The export loop keeps one request in flight; default 2. */
  readonly connections?: number;
}

// ---------------------------------------------------------------------------------------------
// Helpers

/**
 * `OTEL_EXPORTER_OTLP_HEADERS` format: `k=v,k2=v2`, values URL-decoded (keys too), whitespace
 * around items trimmed, keys lowercased, malformed items skipped.
 */
export function parseOtlpHeaders(value: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of value.split(',')) {
    const eq = item.indexOf('=');
    if (eq <= 0) continue;
    const key = decode(item.slice(0, eq).trim()).toLowerCase();
    if (key === '') continue;
    out[key] = decode(item.slice(eq + 1).trim());
  }
  return out;
}

function decode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** Map an HTTP answer to an outcome (the body is only used for `refused`). */
export function outcomeForStatus(status: number, headers: Record<string, string | string[] | undefined>, body: string): ExportOutcome {
  if (status >= 200 && status < 300) return { kind: 'delivered' };
  if (status === 413) return body ? { kind: 'too_large', body } : { kind: 'too_large' };
  if (status === 408 || status === 429 || status >= 500) {
    const retryAfterMs = parseRetryAfter(headers['retry-after']);
    return retryAfterMs === undefined
      ? { kind: 'retryable', reason: `http_${status}`, status }
      : { kind: 'retryable', reason: `http_${status}`, status, retryAfterMs };
  }
  return { kind: 'refused', status, body };
}

/** Read at most `limit` bytes of a body as text, then discard the rest (the body is always consumed). */
export async function readLimited(body: Dispatcher.ResponseData['body'], limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    const buf = chunk as Buffer;
    if (size < limit) chunks.push(buf.subarray(0, limit - size));
    size += buf.length;
    // Past the limit: stop reading; leaving the loop destroys the stream (and that connection).
    if (size >= limit) break;
  }
  const text = Buffer.concat(chunks).toString('utf8');
  return size > limit ? `${text}…` : text;
}

function abortReason(signal: AbortSignal): string {
  const r: unknown = signal.reason;
  return r instanceof Error && r.name === 'TimeoutError' ? 'timeout' : 'aborted';
}

/** Why a request failed, for logs and status: `timeout`, `aborted`, or `network_<code>: <message>`. */
export function networkReason(err: unknown, signal: AbortSignal): string {
  if (signal.aborted) return abortReason(signal);
  const e = err as { code?: unknown; name?: unknown; message?: unknown };
  const code = typeof e?.code === 'string' ? e.code : typeof e?.name === 'string' ? e.name : 'error';
  // undici's messages name the host and the failure, never headers: safe to show.
  const message = typeof e?.message === 'string' && e.message !== '' ? `: ${e.message.slice(0, 200)}` : '';
  return `network_${code}${message}`;
}

/** `destination`: origin and path only (no credentials, no query string). */
function safeDestination(url: URL): string {
  return `${url.origin}${url.pathname}`;
}

// ---------------------------------------------------------------------------------------------
// OTLP/HTTP

class HttpExporter implements SpanExporter {
  readonly kind: ExporterKind;
  readonly destination: string;
  private readonly pool: Pool;
  private readonly path: string;
  private readonly headers: Record<string, string>;
  readonly encoding: OtlpEncoding;
  private readonly compression: Compression;
  readonly preparer: BatchPreparer;
  private closed = false;

  constructor(o: HttpExporterOptions) {
    const url = new URL(o.url);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`exporter URL must be http(s), got ${url.protocol}`);
    this.kind = o.kind;
    this.destination = safeDestination(url);
    this.path = `${url.pathname}${url.search}`;
    this.encoding = o.encoding ?? 'protobuf';
    this.compression = o.compression ?? 'gzip';
    const prepareOptions: PrepareOptions = {
      encoding: this.encoding,
      compression: this.compression,
      scope: { name: SCOPE_NAME, version: o.scopeVersion ?? VERSION },
      langfuse: o.langfuse ? { maxTraces: o.langfuse.maxTraces } : undefined,
    };
    const onRepair = o.langfuse?.onRepair;
    this.preparer = o.worker ? new WorkerPreparer(prepareOptions, onRepair) : new LocalPreparer(prepareOptions, onRepair);
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(o.headers ?? {})) headers[k.toLowerCase()] = v;
    if ((url.username || url.password) && headers.authorization === undefined) {
      headers.authorization = `Basic ${Buffer.from(`${decode(url.username)}:${decode(url.password)}`).toString('base64')}`;
    }
    headers['content-type'] = this.encoding === 'json' ? 'application/json' : 'application/x-protobuf';
    if (this.compression === 'gzip') headers['content-encoding'] = 'gzip';
    else delete headers['content-encoding'];
    headers['user-agent'] ??= `dspy-o11yd/${VERSION}`;
    this.headers = headers;
    this.pool = new Pool(url.origin, {
      connections: o.connections ?? 2,
      pipelining: 1,
      keepAliveTimeout: 30_000,
      keepAliveMaxTimeout: 120_000,
    });
  }

  prepare(batch: readonly QueuedSpan[]): Promise<PreparedBatch> {
    return this.preparer.prepare(batch);
  }

  async send(batch: readonly QueuedSpan[], signal: AbortSignal, prepared?: PreparedBatch): Promise<ExportOutcome> {
    if (this.closed) return { kind: 'retryable', reason: 'exporter_closed' };
    if (signal.aborted) return { kind: 'retryable', reason: abortReason(signal) };
    prepared ??= await this.prepare(batch);
    // A bug, not a backend answer: retrying the same batch cannot help.
    if ('error' in prepared) return { kind: 'refused', status: 0, body: prepared.error.slice(0, MAX_ERROR_BODY_BYTES) };
    const body = prepared.body;
    if (signal.aborted) return { kind: 'retryable', reason: abortReason(signal) };

    let res: Dispatcher.ResponseData;
    try {
      res = await this.pool.request({ method: 'POST', path: this.path, headers: this.headers, body, signal });
    } catch (err) {
      return { kind: 'retryable', reason: networkReason(err, signal) };
    }
    const status = res.statusCode;
    try {
      if (status >= 200 && status < 300) {
        // Langfuse answers JSON even to protobuf: nothing in it we need.
        await res.body.dump({ limit: 64 * 1024, signal });
        return { kind: 'delivered' };
      }
      const text = await readLimited(res.body, MAX_ERROR_BODY_BYTES);
      return outcomeForStatus(status, res.headers, text);
    } catch (err) {
      // The status line arrived; only the body failed. A 2xx is delivered all the same.
      if (status >= 200 && status < 300) return { kind: 'delivered' };
      return outcomeForStatus(status, res.headers, `(answer body unreadable: ${networkReason(err, signal)})`);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.preparer.close();
    // Graceful first (lets a finishing request complete), bounded, then forceful.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.pool.close().catch(() => {}),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, 2000);
        timer.unref();
      }),
    ]);
    if (timer) clearTimeout(timer);
    if (!this.pool.destroyed) await this.pool.destroy().catch(() => {});
  }
}

/** A generic OTLP/HTTP exporter. */
export function createHttpExporter(options: HttpExporterOptions): SpanExporter {
  return new HttpExporter(options);
}

export interface LangfuseExporterOptions {
  /** e.g. `https://cloud.langfuse.com` (a path prefix is kept; trailing slashes are not). */
  readonly host: string;
  readonly publicKey: string;
  readonly secretKey: string;
  readonly encoding?: OtlpEncoding;
  /** Sent as `x-langfuse-sdk-version` and used as the scope version. */
  readonly sdkVersion: string;
  /** Called once per value repaired or removed by the mapping (see `RepairReason`). */
  readonly onRepair?: (reason: string) => void;
  readonly compression?: Compression;
  /** Traces remembered for trace-level attributes across batches. Default 10,000. */
  readonly maxTraces?: number;
  /** Prepare batches on a worker thread (see {@link HttpExporterOptions.worker}). Default false. */
  readonly worker?: boolean;
}

export const LANGFUSE_TRACES_PATH = '/api/public/otel/v1/traces';

export interface LangfuseExporter extends SpanExporter {
  /** The mapping state (remembered traces), for status and tests; it lives where batches are prepared. */
  readonly mapper: Pick<LangfuseMapper, 'rememberedTraces'>;
}

/** OTLP/HTTP to Langfuse with the neutral → Langfuse mapping applied (DESIGN §6). */
export function createLangfuseExporter(o: LangfuseExporterOptions): LangfuseExporter {
  const onRepair = o.onRepair;
  const exporter = new HttpExporter({
    kind: 'langfuse',
    url: `${o.host.replace(/\/+$/, '')}${LANGFUSE_TRACES_PATH}`,
    encoding: o.encoding ?? 'protobuf',
    compression: o.compression ?? 'gzip',
    scopeVersion: o.sdkVersion,
    headers: {
      authorization: `Basic ${Buffer.from(`${o.publicKey}:${o.secretKey}`).toString('base64')}`,
      'x-langfuse-ingestion-version': '4',
      'x-langfuse-sdk-name': 'dspy-o11yd',
      'x-langfuse-sdk-version': o.sdkVersion,
    },
    langfuse: { maxTraces: o.maxTraces, onRepair: onRepair ? (r: RepairReason) => onRepair(r) : undefined },
    worker: o.worker,
  });
  const preparer = exporter.preparer;
  return Object.assign(exporter, {
    mapper: {
      get rememberedTraces() {
        return preparer.rememberedTraces;
      },
    },
  });
}

export interface OtlpExporterOptions {
  /** Full traces URL, e.g. `http://collector:4318/v1/traces`. */
  readonly endpoint: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly encoding?: OtlpEncoding;
  readonly compression?: Compression;
  readonly scopeVersion?: string;
  /** Prepare batches on a worker thread (see {@link HttpExporterOptions.worker}). Default false. */
  readonly worker?: boolean;
}

/** The batch as one OTLP/JSON line, or the `refused` outcome when it cannot be encoded (a bug: retrying cannot help). */
function encodeLine(batch: readonly QueuedSpan[], scopeVersion: string): Buffer | ExportOutcome {
  try {
    return jsonLine(batch, scopeVersion);
  } catch (err) {
    return { kind: 'refused', status: 0, body: `could not encode the batch: ${(err as Error).message}` };
  }
}

/** Plain OTLP/HTTP: neutral attributes, span events stay span events. */
export function createOtlpExporter(o: OtlpExporterOptions): SpanExporter {
  return new HttpExporter({
    kind: 'otlp',
    url: o.endpoint,
    headers: o.headers,
    encoding: o.encoding ?? 'protobuf',
    compression: o.compression ?? 'gzip',
    scopeVersion: o.scopeVersion,
    worker: o.worker,
  });
}

// ---------------------------------------------------------------------------------------------
// Local sinks: one OTLP/JSON ExportTraceServiceRequest per line per batch.

const NEWLINE = Buffer.from('\n');

function jsonLine(batch: readonly QueuedSpan[], scopeVersion: string): Buffer {
  const spans: EncodableSpan[] = batch.map((q) => ({ span: spanOf(q), resource: q.resource }));
  const body = encodeTraces(spans, { encoding: 'json', scope: { name: SCOPE_NAME, version: scopeVersion } });
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
  ) {}

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
        return fifo ? open(this.destination, constants.O_WRONLY | constants.O_APPEND | constants.O_NONBLOCK) : open(this.destination, 'a');
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
      const st = await fh.stat();
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
