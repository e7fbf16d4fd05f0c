/**
 * The contract between the export loop (retries, backoff, single flight, 413 splitting) and the
 * exporters (how one batch becomes one request). An exporter never retries by itself.
 */
import type { QueuedSpan } from '../model.js';

export type ExportOutcome =
  /** Any 2xx (or a local sink that wrote the batch). */
  | { kind: 'delivered' }
  /** Network error, timeout, 408, 429, 5xx: try again later; `retryAfterMs` from `Retry-After`. */
  | { kind: 'retryable'; reason: string; status?: number; retryAfterMs?: number }
  /** 413: the loop splits the batch in halves and sends each. */
  | { kind: 'too_large' }
  /** Other 4xx: permanent. `body` is the backend's answer, for one log line. 401/403 make readiness 503. */
  | { kind: 'refused'; status: number; body: string };

export type ExporterKind = 'langfuse' | 'otlp' | 'console' | 'file';

export interface SpanExporter {
  readonly kind: ExporterKind;
  /** Where spans go, for the startup line and `/v1/status`. Never contains a secret. */
  readonly destination: string;
  /** Send one batch as one request. Must resolve (never reject) and must honour `signal` (the export timeout). */
  send(batch: readonly QueuedSpan[], signal: AbortSignal): Promise<ExportOutcome>;
  close(): Promise<void>;
}
