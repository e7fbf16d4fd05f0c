/**
 * HTTP exporters (DESIGN §5, §6): OTLP/HTTP to Langfuse or any OTLP endpoint on one keep-alive
 * dispatcher (outbound.ts: a pool, direct or through the proxy).
 * The local sinks (console, file) are in local-exporters.ts.
 *
 * An exporter turns one batch into one request and maps the answer to an {@link ExportOutcome};
 * it never retries (the export loop does) and `send` never rejects. Secrets (Langfuse keys, OTLP
 * headers, URL credentials) live only in request headers: never in `destination`, outcomes or
 * errors.
 */
import type { Dispatcher } from 'undici';
import type { QueuedSpan } from '../model.js';
import { VERSION } from '../version.js';
import type { LangfuseMapper, RepairReason } from './langfuse-map.js';
import { MAX_ERROR_BODY_BYTES, abortReason, appendUrlPath, credentialScrubber, networkReason, outcomeForStatus, readLimited, safeDestination, urlCredentials } from './http-common.js';
import type { OtlpEncoding } from './otlp-encode.js';
import { closeDispatcher, createDispatcher, proxyAuthorizations, proxyRefusal, requestUntilAborted, type Outbound } from './outbound.js';
import { LocalPreparer, WorkerPreparer, type BatchPreparer, type Compression, type PrepareOptions } from './prepare.js';
import type { ExportOutcome, ExporterKind, PreparedBatch, SpanExporter } from './types.js';

export type { Compression } from './prepare.js';
/** Shared with the SDK's transport (one rule); exported here too, where it always was. */
export { parseRetryAfter } from '@dspy-o11y/proto';

/** Instrumentation scope name of everything the daemon exports (never `langfuse-sdk…`). */
export const SCOPE_NAME = 'dspy-o11y';

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
  /** Proxy (and TLS) settings from the configuration; default: direct, whatever the environment says. */
  readonly outbound?: Outbound;
}

// ---------------------------------------------------------------------------------------------
// OTLP/HTTP

class HttpExporter implements SpanExporter {
  readonly kind: ExporterKind;
  readonly destination: string;
  private readonly dispatcher: Dispatcher;
  private readonly origin: string;
  private readonly path: string;
  private readonly headers: Record<string, string>;
  private readonly scrub: (text: string) => string;
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
    const fromUrl = urlCredentials(url);
    if (fromUrl && headers.authorization === undefined) headers.authorization = fromUrl;
    // Every header given may be a credential (OTLP headers: API keys), except Langfuse's protocol ones.
    // And the proxy's credentials: a proxy's error page may echo the request's headers.
    this.scrub = credentialScrubber({ ...Object.fromEntries(Object.entries(headers).filter(([k]) => !k.startsWith('x-langfuse-'))), ...proxyAuthorizations(o.outbound?.proxy) });
    headers['content-type'] = this.encoding === 'json' ? 'application/json' : 'application/x-protobuf';
    if (this.compression === 'gzip') headers['content-encoding'] = 'gzip';
    else delete headers['content-encoding'];
    headers['user-agent'] ??= `dspy-o11yd/${VERSION}`;
    this.headers = headers;
    this.origin = url.origin;
    this.dispatcher = createDispatcher(url.origin, o.outbound, { connections: o.connections ?? 2, keepAliveTimeout: 30_000, keepAliveMaxTimeout: 120_000 });
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
      res = await requestUntilAborted(this.dispatcher, { origin: this.origin, method: 'POST', path: this.path, headers: this.headers, body, signal });
    } catch (err) {
      return proxyRefusal(err) ?? { kind: 'retryable', reason: networkReason(err, signal) };
    }
    const status = res.statusCode;
    try {
      if (status >= 200 && status < 300) {
        // Langfuse answers JSON even to protobuf: nothing in it we need.
        await res.body.dump({ limit: 64 * 1024, signal });
        return { kind: 'delivered' };
      }
      const text = this.scrub(await readLimited(res.body, MAX_ERROR_BODY_BYTES));
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
    await closeDispatcher(this.dispatcher);
  }
}

/** A generic OTLP/HTTP exporter. */
export function createHttpExporter(options: HttpExporterOptions): SpanExporter {
  return new HttpExporter(options);
}

export interface LangfuseExporterOptions {
  /** e.g. `https://cloud.langfuse.com` (a path prefix and a query string are kept: {@link appendUrlPath}). */
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
  readonly outbound?: Outbound;
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
    url: appendUrlPath(o.host, LANGFUSE_TRACES_PATH),
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
    outbound: o.outbound,
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
  readonly outbound?: Outbound;
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
    outbound: o.outbound,
  });
}
