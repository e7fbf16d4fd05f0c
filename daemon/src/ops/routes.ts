/** Operations endpoints: liveness, readiness, Prometheus metrics, JSON status, live tail. */
import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import type { RecordSink } from '../ingest/record-sink.js';

export interface DaemonStatus {
  version: string;
  pid: number;
  uptimeSeconds: number;
  ready: boolean;
  notReadyReason?: string;
  exporter: { kind: string; destination: string; state: string; lastError?: string; lastSuccessAt?: string };
  listeners: { socket?: string; http?: string };
  queue: {
    spans: number;
    bytes: number;
    maxSpans: number;
    maxBytes: number;
    inFlightSpans: number;
    /** `--memory-limit` (0: none) and the process's RSS now, both in bytes. */
    memoryLimit: number;
    rss: number;
  };
  /**
   * Unix socket connections open now, their cap (`--max-connections`, 0: none) and those refused past it since start;
   * `http`: the same for the HTTP listener (`--http-max-connections`; open 0 without one).
   */
  connections: { open: number; max: number; refused: number; http: { open: number; max: number; refused: number } };
  /** HTTP requests refused (401) since start, by `transport/reason` (`requests_refused_total`). */
  requests: { refused: Record<string, number> };
  /** `/v1/tail` readers connected now and their cap. */
  tail: { readers: number; max: number };
  spans: { received: number; exported: number; dropped: Record<string, number>; queued: number; inFlight: number };
  records: { received: Record<string, number>; invalid: Record<string, number> };
  export: { requests: Record<string, number>; retries: number };
  /** Scores sent to Langfuse's REST API (export/scores.ts): received = exported + dropped + queued + inFlight. */
  scores: { received: number; exported: number; dropped: Record<string, number>; queued: number; inFlight: number; state: string; lastError?: string };
}

export interface OpsHooks {
  status(): DaemonStatus;
  registry: Registry;
  sink: RecordSink;
}

/** Empty line on an idle `/v1/tail` stream, under common proxy idle timeouts (60 s). */
export const TAIL_HEARTBEAT_MS = 30_000;
/**
 * `/v1/tail` readers at once at most; the next is answered 503. Each holds a connection, and up
 * to TAIL_BUFFER_BYTES of lines while it reads slower than records arrive: a script that opens
 * readers and never closes them must not run the daemon out of descriptors or memory. A person
 * watching needs one or two.
 */
export const MAX_TAIL_READERS = 16;
/** Lines a `/v1/tail` reader may have waiting; past it, it loses lines rather than growing the daemon's memory. */
export const TAIL_BUFFER_BYTES = 1024 * 1024;

export function registerOpsRoutes(app: FastifyInstance, hooks: OpsHooks): void {
  // Tail streams never end by themselves: ended at shutdown, not left to hold the listener's
  // close. Ended, not destroyed: a cut stream made `dspy-o11yd tail` report a broken stream
  // (exit 1) at every restart; a reader too slow to take the rest is cut by the close's grace.
  const tails = new Set<() => void>();
  app.addHook('preClose', (done) => {
    for (const end of tails) end();
    done();
  });

  app.get('/healthz', async () => ({ status: 'ok' }));

  app.get('/readyz', async (_request, reply) => {
    const s = hooks.status();
    if (s.ready) return { ready: true };
    return reply.code(503).send({ ready: false, reason: s.notReadyReason });
  });

  app.get('/metrics', async (_request, reply) => {
    const text = await hooks.registry.metrics();
    return reply.type(hooks.registry.contentType).send(text);
  });

  app.get('/v1/status', async () => hooks.status());

  // The live record stream for `dspy-o11yd tail`: NDJSON, one line per accepted record.
  app.get('/v1/tail', (request, reply) => {
    const readers = hooks.sink.tailListeners.size;
    if (readers >= MAX_TAIL_READERS) {
      // 503, not 429: the daemon is full because of other readers, not because of this client's rate.
      void reply.code(503).send({ error: `too many /v1/tail readers: ${readers} connected, ${MAX_TAIL_READERS} at most; stop one (or wait for one to end) and try again` });
      return;
    }
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
    // Headers now, not with the first record: an idle daemon would otherwise hit the client's
    // headers timeout (undici: 300 s) and `tail` would report that no daemon answers.
    res.flushHeaders();
    const listener = (line: string) => {
      // A slow reader loses lines rather than growing the daemon's memory.
      if (res.writableLength < TAIL_BUFFER_BYTES) res.write(line + '\n');
    };
    // An empty line now and then keeps idle proxies and body timeouts from cutting the stream;
    // NDJSON readers skip blank lines (and so does `dspy-o11yd tail`).
    const heartbeat = setInterval(() => {
      if (res.writableLength === 0) res.write('\n');
    }, TAIL_HEARTBEAT_MS);
    heartbeat.unref();
    // Nothing may be written after end(): records and heartbeats stop first.
    const stop = () => {
      clearInterval(heartbeat);
      hooks.sink.tailListeners.delete(listener);
      tails.delete(end);
    };
    const end = () => {
      stop();
      res.end();
    };
    hooks.sink.tailListeners.add(listener);
    tails.add(end);
    request.raw.on('close', stop);
  });
}
