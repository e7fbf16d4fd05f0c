/**
 * The contract between the export loop (retries, backoff, single flight, 413 splitting) and the
 * exporters (how one batch becomes one request). An exporter never retries by itself.
 */
import type { QueuedSpan } from '../model.js';
import type { OtlpEncoding } from './otlp-encode.js';

export type ExportOutcome =
  /** Any 2xx (or a local sink that wrote the batch). */
  | { kind: 'delivered' }
  /** Network error, timeout, 408, 429, 5xx: try again later; `retryAfterMs` from `Retry-After`. */
  | { kind: 'retryable'; reason: string; status?: number; retryAfterMs?: number }
  /** 413: the loop splits the batch in halves and sends each. `body`: the answer, for the log when one span is refused. */
  | { kind: 'too_large'; body?: string }
  /** Other 4xx: permanent. `body` is the backend's answer, for one log line. 401/403 (and a proxy's 407) make readiness 503. */
  | { kind: 'refused'; status: number; body: string };

/** A proxy's refusal of its credentials (407 Proxy Authentication Required). */
export const PROXY_REFUSED_CREDENTIALS = 407;

/** Statuses that refuse our credentials (the backend's keys, the proxy's): readiness is 503 until a delivery. */
export const REFUSED_CREDENTIALS: ReadonlySet<number> = new Set([401, 403, PROXY_REFUSED_CREDENTIALS]);

export type ExporterKind = 'langfuse' | 'otlp' | 'console' | 'file';

/** A batch made ready to send (mapped, encoded, compressed), or why it could not be. */
export type PreparedBatch = { readonly body: Uint8Array } | { readonly error: string };

export interface SpanExporter {
  readonly kind: ExporterKind;
  /** Where spans go, for the startup line and `/v1/status`. Never contains a secret. */
  readonly destination: string;
  /**
   * What `send` writes, for the startup line: the HTTP exporters follow `--encoding`; console and
   * file always write OTLP/JSON lines.
   */
  readonly encoding: OtlpEncoding;
  /**
   * Optional: turn a batch into what `send` transmits, once per batch. The export loop calls it
   * in batch order as soon as it takes a batch — while the previous batch's request is still in
   * flight — and hands the result to every `send` of that batch (retries reuse it; the halves of
   * a 413 split are prepared anew). Must resolve (never reject). No request is made here.
   */
  prepare?(batch: readonly QueuedSpan[]): Promise<PreparedBatch>;
  /**
   * Send one batch as one request. Must resolve (never reject) and must honour `signal` (the
   * export timeout). `prepared` is what `prepare(batch)` gave; without it the exporter prepares
   * the batch itself.
   */
  send(batch: readonly QueuedSpan[], signal: AbortSignal, prepared?: PreparedBatch): Promise<ExportOutcome>;
  close(): Promise<void>;
}
