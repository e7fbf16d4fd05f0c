/**
 * Preparing a batch for an OTLP/HTTP request: queued lines → span records → (Langfuse mapping)
 * → OTLP protobuf/JSON (otlp-transformer) → gzip. This is most of the daemon's CPU per span, so
 * the HTTP exporters can run it on a worker thread (prepare-worker.ts) while the main thread
 * keeps ingesting; `LocalPreparer` runs the same steps on the calling thread (tests, library use).
 *
 * Per span of the daemon benchmark (scripts/bench-stages.ts, CPU time, quiet machine): JSON.parse
 * of the batch ~2.6 µs, Langfuse mapping ~2 µs, protobuf encoding ~2.7 µs (otlp-protobuf.ts), gzip
 * level 1 ~1 µs; the main thread's share per span is JSON.parse ~2–3 µs and validation ~0.5 µs.
 */
import { isAscii } from 'node:buffer';
import { Worker } from 'node:worker_threads';
import { promisify } from 'node:util';
import { gzip as gzipCallback, gzipSync } from 'node:zlib';
import type { SpanRecord } from '@dspy-o11y/proto';
import { QueuedSpan, cleanSpan, spanOf, type Resource } from '../model.js';
import { LangfuseMapper, type RepairReason } from './langfuse-map.js';
import { encodeTraces, type EncodableSpan, type OtlpEncoding } from './otlp-encode.js';
import type { PreparedBatch } from './types.js';

const gzipAsync = promisify(gzipCallback);

export type Compression = 'gzip' | 'none';

/**
 * gzip level of export bodies. Level 1 costs less than half the CPU of zlib's default (6) on span
 * batches (~1.1 vs ~2.8 µs per span, scripts/bench-stages.ts) for bodies ~6 % larger: telemetry
 * batches repeat keys and values so much that the fastest level already gets most of the ratio
 * (benchmark spans: 787 bytes of protobuf per span → 53 bytes at level 1, 50 at level 6).
 */
export const GZIP_LEVEL = 1;

export interface PrepareOptions {
  readonly encoding: OtlpEncoding;
  readonly compression: Compression;
  readonly scope: { readonly name: string; readonly version: string };
  /** Apply the Langfuse mapping (DESIGN §6) before encoding; traces remembered across batches. */
  readonly langfuse?: { readonly maxTraces?: number };
}

/** Maps (when Langfuse) and encodes spans: one ExportTraceServiceRequest body, uncompressed. */
export class BatchEncoder {
  readonly mapper: LangfuseMapper | undefined;

  constructor(
    private readonly options: PrepareOptions,
    onRepair?: (reason: RepairReason) => void,
  ) {
    this.mapper = options.langfuse ? new LangfuseMapper({ onRepair, maxTraces: options.langfuse.maxTraces }) : undefined;
  }

  encode(spans: readonly EncodableSpan[]): Uint8Array {
    return this.encodeEach(spans.length, (i) => spans[i]);
  }

  /**
   * The same, with the spans produced one at a time by `spanAt(0…count-1)`: with the Langfuse
   * mapping, each parsed span is garbage as soon as it is mapped, so a batch's parsed records die
   * young instead of surviving (being copied by) the scavenges that run while it is encoded.
   */
  encodeEach(count: number, spanAt: (i: number) => EncodableSpan): Uint8Array {
    let spans: EncodableSpan[];
    if (this.mapper) {
      const mapping = this.mapper.begin();
      for (let i = 0; i < count; i++) mapping.add(spanAt(i));
      spans = mapping.finish();
    } else {
      spans = new Array(count);
      for (let i = 0; i < count; i++) spans[i] = spanAt(i);
    }
    // Langfuse gets everything under our scope (DESIGN §6); other backends each span's own.
    return encodeTraces(spans, { encoding: this.options.encoding, scope: this.options.scope, keepScopes: !this.options.langfuse });
  }
}

const failed = (err: unknown): PreparedBatch => ({ error: `could not encode the batch: ${(err as Error)?.message ?? String(err)}` });

export interface BatchPreparer {
  prepare(batch: readonly QueuedSpan[]): Promise<PreparedBatch>;
  /** Traces the mapping remembers (0 without mapping). */
  readonly rememberedTraces: number;
  close(): Promise<void>;
}

/** Prepares on the calling thread; gzip runs on libuv's thread pool. */
export class LocalPreparer implements BatchPreparer {
  readonly encoder: BatchEncoder;

  constructor(
    private readonly options: PrepareOptions,
    onRepair?: (reason: RepairReason) => void,
  ) {
    this.encoder = new BatchEncoder(options, onRepair);
  }

  get rememberedTraces(): number {
    return this.encoder.mapper?.rememberedTraces ?? 0;
  }

  // Not `async`-first: map and encode run synchronously at call time, so calls are mapped in order.
  prepare(batch: readonly QueuedSpan[]): Promise<PreparedBatch> {
    let body: Uint8Array;
    try {
      body = this.encoder.encodeEach(batch.length, (i) => ({ span: spanOf(batch[i]), resource: batch[i].resource }));
    } catch (err) {
      return Promise.resolve(failed(err));
    }
    if (this.options.compression !== 'gzip') return Promise.resolve({ body });
    return gzipAsync(body, { level: GZIP_LEVEL }).then(
      (gz) => ({ body: gz }),
      (err: unknown) => failed(err),
    );
  }

  async close(): Promise<void> {}
}

// ---------------------------------------------------------------------------------------------
// Worker thread

/** Main → worker: one batch. */
export interface PrepareRequest {
  readonly id: number;
  /** The batch's lines, UTF-8, separated by newlines (transferred, not copied). */
  readonly lines: Uint8Array;
  /**
   * Resource id of each span. Float64: ids are never reused (one per resource the daemon ever
   * prepared: each OTLP request's, each body or connection with a `hello`), and in an Int32Array
   * id 2^31 became -2^31, unknown to the worker: from then on every batch failed and its spans
   * were dropped as rejected (~50 days of an SDK posting 500 bodies a second). Exact up to 2^53.
   */
  readonly resourceIds: Float64Array;
  /** Resources the worker has not seen yet. */
  readonly defs: readonly (readonly [number, Resource])[];
  /** Resources no span refers to any more (garbage-collected on the main thread). */
  readonly forget: readonly number[];
}

/** Worker → main. */
export type PrepareResponse =
  | { readonly id: number; readonly body: Uint8Array; readonly repairs: readonly (readonly [RepairReason, number])[]; readonly traces: number }
  | { readonly id: number; readonly error: string };

export interface WorkerData {
  readonly options: PrepareOptions;
}

/** In the worker: turn one request into a response (the gzip is synchronous: this is the worker's job). */
export function prepareInWorker(
  encoder: BatchEncoder,
  compression: Compression,
  resources: Map<number, Resource>,
  m: PrepareRequest,
  repairs: Map<RepairReason, number>,
): { response: PrepareResponse; transfer: ArrayBuffer[] } {
  for (const id of m.forget) resources.delete(id);
  for (const [id, resource] of m.defs) resources.set(id, resource);
  try {
    // Lines never contain a raw newline (NDJSON framing; JSON.stringify escapes them).
    const bytes = Buffer.from(m.lines.buffer, m.lines.byteOffset, m.lines.byteLength);
    // All-ASCII batches (the usual case) decode as latin1, a plain copy: ~0.08 µs per span instead
    // of ~0.65 for the UTF-8 decoder; the check itself is a SIMD scan (~0.01 µs per span).
    const text = bytes.toString(isAscii(bytes) ? 'latin1' : 'utf8');
    let start = 0;
    let body = encoder.encodeEach(m.resourceIds.length, (i) => {
      let end = text.indexOf('\n', start);
      if (end === -1) end = text.length;
      const span = cleanSpan(JSON.parse(text.slice(start, end)) as SpanRecord);
      start = end + 1;
      const resource = resources.get(m.resourceIds[i]);
      if (!resource) throw new Error(`unknown resource ${m.resourceIds[i]}`);
      return { span, resource };
    });
    if (compression === 'gzip') body = gzipSync(body, { level: GZIP_LEVEL });
    // Transfer, not copy: only a buffer the body owns whole. zlib's output is a view into a larger
    // buffer (Node 22+: its pool, marked untransferable, so transferring it throws and kills the
    // worker); Buffer#slice would not copy, so copy into a Uint8Array of exactly the body.
    if (body.byteOffset !== 0 || body.byteLength !== body.buffer.byteLength) body = new Uint8Array(body);
    const response: PrepareResponse = { id: m.id, body, repairs: [...repairs], traces: encoder.mapper?.rememberedTraces ?? 0 };
    return { response, transfer: [body.buffer as ArrayBuffer] };
  } catch (err) {
    return { response: { id: m.id, ...(failed(err) as { error: string }) }, transfer: [] };
  } finally {
    repairs.clear();
  }
}

/**
 * Prepares on a worker thread (prepare-worker.ts), in request order. The worker parses the
 * lines again, maps, encodes and gzips, and transfers the body back without a copy. Resources
 * are sent once each (by id) and forgotten when the main thread no longer holds them.
 *
 * What it costs: one memcpy of each batch's lines, and JSON.parse again on the worker (~2 µs per
 * span), plus the worker's own heap (~25 MB under load). What it buys, measured on this project's
 * 2 cores with the daemon benchmark: ~14 % of the floor end to end instead of ~11 % (medians of 6
 * rounds), the main thread keeping ~10 µs per span free for ingest.
 *
 * Should the worker die (it never should), its pending batches and every later one are prepared
 * on the calling thread instead (a LocalPreparer, with a fresh trace memory), with a process
 * warning: slower, but nothing is lost.
 */
export class WorkerPreparer implements BatchPreparer {
  private worker: Worker | undefined;
  private local: LocalPreparer | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, { readonly batch: readonly QueuedSpan[]; readonly resolve: (result: PreparedBatch) => void }>();
  private readonly resourceIds = new WeakMap<Resource, number>();
  private nextResourceId = 1;
  /** Resource ids the current worker holds. */
  private readonly known = new Set<number>();
  private forgotten: number[] = [];
  private readonly registry = new FinalizationRegistry<number>((id) => {
    if (this.known.delete(id)) this.forgotten.push(id);
  });
  private traces = 0;
  private closed = false;

  constructor(
    private readonly options: PrepareOptions,
    private readonly onRepair?: (reason: RepairReason) => void,
  ) {
    this.start();
  }

  get rememberedTraces(): number {
    return this.local ? this.local.rememberedTraces : this.traces;
  }

  prepare(batch: readonly QueuedSpan[]): Promise<PreparedBatch> {
    if (this.closed) return Promise.resolve({ error: 'could not encode the batch: exporter closed' });
    if (this.local) return this.local.prepare(batch);
    const worker = this.worker ?? this.start();
    const resourceIds = new Float64Array(batch.length);
    const defs: [number, Resource][] = [];
    // The lines' bytes copied once into a buffer of their own, which is then transferred.
    const lines = QueuedSpan.joinLines(batch);
    let lastResource: Resource | undefined;
    let lastId = 0;
    for (let i = 0; i < batch.length; i++) {
      const q = batch[i];
      if (q.resource !== lastResource) {
        lastResource = q.resource;
        lastId = this.idOf(q.resource, defs);
      }
      resourceIds[i] = lastId;
    }
    const id = this.nextId++;
    const request: PrepareRequest = { id, lines, resourceIds, defs, forget: this.forgotten };
    this.forgotten = [];
    return new Promise<PreparedBatch>((resolve) => {
      if (this.pending.size === 0) worker.ref();
      this.pending.set(id, { batch, resolve });
      worker.postMessage(request, [lines.buffer as ArrayBuffer, resourceIds.buffer]);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    const w = this.worker;
    this.worker = undefined;
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) p.resolve({ error: 'could not encode the batch: exporter closed' });
    if (w) await w.terminate();
  }

  private idOf(resource: Resource, defs: [number, Resource][]): number {
    let id = this.resourceIds.get(resource);
    if (id === undefined) {
      id = this.nextResourceId++;
      this.resourceIds.set(resource, id);
      this.registry.register(resource, id);
    }
    if (!this.known.has(id)) {
      this.known.add(id);
      defs.push([id, resource]);
    }
    return id;
  }

  private start(): Worker {
    const workerData: WorkerData = { options: this.options };
    const worker = new Worker(new URL('./prepare-worker.js', import.meta.url), { workerData });
    worker.unref(); // ref'd only while a batch is pending: an idle worker never keeps the process alive
    worker.on('message', (m: PrepareResponse) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (this.pending.size === 0) worker.unref();
      if ('error' in m) return p.resolve({ error: m.error });
      this.traces = m.traces;
      if (this.onRepair) for (const [reason, n] of m.repairs) for (let i = 0; i < n; i++) this.onRepair(reason);
      p.resolve({ body: m.body });
    });
    worker.on('error', (err) => this.died(worker, `the export worker failed: ${err.message}`));
    worker.on('exit', (code) => this.died(worker, `the export worker exited with code ${code}`));
    this.worker = worker;
    return worker;
  }

  /** Prepare here from now on, starting with the batches the worker did not answer (in order). */
  private died(worker: Worker, why: string): void {
    if (this.worker !== worker) return; // closed, or already handled
    this.worker = undefined;
    this.local = new LocalPreparer(this.options, this.onRepair);
    process.emitWarning(`${why}; preparing batches on the main thread from now on`, { code: 'DSPY_O11YD_WORKER' });
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) void this.local.prepare(p.batch).then(p.resolve);
  }
}
