/**
 * Prometheus exposition (DESIGN §5 names, prefix `dspy_o11yd_`). prom-client owns the format;
 * values are read from Stats and the queue at scrape time, so the record path never touches
 * prom-client's label hashing.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Stats } from './stats.js';
import { DROP_REASONS, SCORE_DROP_REASONS } from './stats.js';

export interface QueueGauges {
  readonly spans: number;
  readonly bytes: number;
  readonly inFlightSpans: number;
  readonly maxSpans: number;
  readonly maxBytes: number;
}

/** Connections held now: the Unix socket's (within --max-connections), HTTP's (within --http-max-connections) and /v1/tail's readers. */
export interface ConnectionGauges {
  readonly uds: number;
  readonly http: number;
  readonly tailReaders: number;
}

const P = 'dspy_o11yd_';

export interface Metrics {
  readonly registry: Registry;
  readonly exportDuration: Histogram<'outcome'>;
}

export function createMetrics(stats: Stats, queue: () => QueueGauges, connections: () => ConnectionGauges): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: P });

  const fromCounts = <L extends string>(name: string, help: string, labelNames: L[], read: () => Iterable<[Record<L, string>, number]>) =>
    new Counter({
      name: P + name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        this.reset();
        for (const [labels, value] of read()) this.inc(labels as Partial<Record<L, string | number>>, value);
      },
    });

  fromCounts('records_received_total', 'Records accepted, by transport and record type', ['transport', 'type'], () => stats.recordsReceived.entries());
  fromCounts('records_invalid_total', 'Records rejected (and dropped) by validation, by transport and reason', ['transport', 'reason'], () => stats.recordsInvalid.entries());
  fromCounts('spans_exported_total', 'Spans delivered to the backend', [], () => [[{}, stats.spansExported]]);
  fromCounts('spans_dropped_total', 'Spans dropped, by reason', ['reason'], () => DROP_REASONS.map((reason) => [{ reason }, stats.dropped[reason]] as [Record<'reason', string>, number]));
  fromCounts('export_requests_total', 'Export requests, by outcome', ['outcome'], () => stats.exportRequests.entries());
  fromCounts('export_retries_total', 'Export retries (a batch sent again)', [], () => [[{}, stats.exportRetries]]);
  fromCounts('scores_received_total', 'Score records received (valid ones)', [], () => [[{}, stats.scoresReceived]]);
  fromCounts('scores_exported_total', 'Scores delivered to the backend', [], () => [[{}, stats.scoresExported]]);
  fromCounts('scores_dropped_total', 'Scores dropped, by reason', ['reason'], () => SCORE_DROP_REASONS.map((reason) => [{ reason }, stats.scoresDropped[reason]] as [Record<'reason', string>, number]));
  fromCounts('langfuse_repairs_total', 'Span values Langfuse would silently drop, repaired or removed before export', ['reason'], () => stats.repairs.entries());
  fromCounts('requests_refused_total', "HTTP requests refused (401: --ingest-token, the daemon's Langfuse keys), by transport (http, otlp, other) and reason", ['transport', 'reason'], () => stats.requestsRefused.entries());
  fromCounts('connections_refused_total', 'Connections refused past the cap, by transport (uds: --max-connections, http: --http-max-connections)', ['transport'], () => stats.connectionsRefused.entries());

  const gauge = (name: string, help: string, read: () => number) =>
    new Gauge({ name: P + name, help, registers: [registry], collect() { this.set(read()); } });
  gauge('queue_spans', 'Spans waiting in the queue', () => queue().spans);
  gauge('queue_bytes', 'Bytes of spans waiting in the queue', () => queue().bytes);
  gauge('queue_capacity_spans', 'Queue bound in spans', () => queue().maxSpans);
  gauge('queue_capacity_bytes', 'Queue bound in bytes', () => queue().maxBytes);
  gauge('inflight_spans', 'Spans in the export request in flight (or waiting to be retried)', () => queue().inFlightSpans);
  new Gauge({
    name: P + 'connections',
    help: 'Connections open now, by transport (uds: the Unix socket, at most --max-connections; http: the HTTP listener, at most --http-max-connections)',
    labelNames: ['transport'],
    registers: [registry],
    collect() {
      const open = connections();
      this.set({ transport: 'uds' }, open.uds);
      this.set({ transport: 'http' }, open.http);
    },
  });
  gauge('tail_readers', 'Readers of /v1/tail (dspy-o11yd tail) connected now', () => connections().tailReaders);

  const exportDuration = new Histogram({
    name: P + 'export_duration_seconds',
    help: 'Duration of export requests',
    labelNames: ['outcome'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  return { registry, exportDuration };
}
