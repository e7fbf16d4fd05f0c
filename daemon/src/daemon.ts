/**
 * Wires the pipeline — ingest (socket, HTTP) → record sink → queue → batcher → export loop →
 * exporter — plus the ops endpoints, and owns startup and graceful shutdown.
 */
import { createServer as createHttpServer } from 'node:http';
import { isIP } from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import { isLoopback, type DaemonConfig } from './config.js';
import { oncePer, type Logger } from './log.js';
import { Batcher } from './batch/batcher.js';
import { createExporter } from './export/create-exporter.js';
import { shownProxy } from './export/outbound.js';
import { ExportLoop } from './export/export-loop.js';
import { createScoreSink } from './export/scores.js';
import { PROXY_REFUSED_CREDENTIALS, type SpanExporter } from './export/types.js';
import { LANGFUSE_TRACES_PATH } from './export/http-exporter.js';
import { authorize, REFUSAL_LOG_MS, refusalWarner, schemeOf, type AuthOptions } from './ingest/auth.js';
import { registerIngestRoutes } from './ingest/http.js';
import { LANGFUSE_API_PREFIX, OTLP_TRACES_PATH, registerOtlpRoutes } from './ingest/otlp-http.js';
import { LineSplitter } from './ingest/line-splitter.js';
import { RecordSink } from './ingest/record-sink.js';
import { listenSocket, type SocketReceiver } from './ingest/socket.js';
import { createMetrics } from './ops/metrics.js';
import { MAX_TAIL_READERS, registerOpsRoutes, type DaemonStatus } from './ops/routes.js';
import { Stats } from './ops/stats.js';
import { setQueueMemoryCeiling, type QueuedSpan, type Resource } from './model.js';
import { SpanQueue } from './queue/span-queue.js';
import { recoverSpoolTmp, removeSpoolFiles, replaySpool, type ReplayedFile } from './queue/spool.js';
import { StallGuard } from './queue/spool-stall.js';
import { lockSpoolDir } from './queue/spool-lock.js';
import { spoolUndelivered, type Undelivered } from './queue/spool-undelivered.js';
import { VERSION } from './version.js';
import { TIMED_OUT, within } from './within.js';

export interface RunningDaemon {
  readonly config: DaemonConfig;
  readonly stats: Stats;
  readonly exporter: SpanExporter;
  /** `http://host:port` of the HTTP listener, if any (the real port when 0 was asked). */
  readonly httpUrl: string | undefined;
  status(): DaemonStatus;
  /** Close listeners, flush within the shutdown timeout, spool or count the rest. */
  stop(): Promise<void>;
  /** During `stop()`: stop waiting for deliveries now; the rest is spooled or counted as dropped. */
  hurry(): void;
}

const OVERFLOW_LOG_INTERVAL_MS = 10_000;
/** How long clients get to close their connections after EOF at shutdown (capped by --shutdown-timeout). */
const SOCKET_CLOSE_GRACE_MS = 1_000;
/** How long HTTP requests in progress at shutdown get to finish (capped by --shutdown-timeout); then they are cut off. */
const HTTP_CLOSE_GRACE_MS = 1_000;
/**
 * With --spool-dir, the end of --shutdown-timeout kept for writing the spool (at most a fifth of
 * it): what the disk has not taken by the deadline is counted as dropped.
 */
const SPOOL_WRITE_TIMEOUT_MS = 2_000;
/**
 * How long one disk operation of the start's spool replay may take before the start stops waiting
 * for the spool dir (a hung mount) and listens: the apps' telemetry must not wait on a disk.
 */
const SPOOL_STALL_MS = 5_000;
/** How often the daemon checks whether the replayed spool has left it (then removes its files). */
const SPOOL_WATCH_MS = 1_000;
/** How long shutdown waits for the exporter (and the score sender) to close once nothing is left to send. */
const CLOSE_GRACE_MS = 250;

export async function startDaemon(config: DaemonConfig, log: Logger): Promise<RunningDaemon> {
  const started = Date.now();
  const stats = new Stats();

  let overflowSinceLog = 0;
  let lastOverflowLog = 0;
  const queue = new SpanQueue(config.queue, (spans) => {
    stats.drop('queue_overflow', spans);
    overflowSinceLog += spans;
    const now = Date.now();
    if (now - lastOverflowLog >= OVERFLOW_LOG_INTERVAL_MS) {
      log.warn({ dropped: overflowSinceLog, queueSpans: queue.spans, queueBytes: queue.bytes, rss: process.memoryUsage.rss(), memoryLimit: config.memoryLimitBytes }, 'queue full (--queue-max-spans, --queue-max-bytes or --memory-limit): dropped the oldest spans');
      overflowSinceLog = 0;
      lastOverflowLog = now;
    }
  });
  setQueueMemoryCeiling(config.memoryLimitBytes > 0 ? { maxRssBytes: config.memoryLimitBytes, reclaim: () => queue.dropOldestOne(), queuedBytes: () => queue.bytes } : undefined);
  const scores = createScoreSink(config, stats, log);
  const sink = new RecordSink(queue, stats, log, {
    sampleRatio: config.sampleRatio,
    onScore: (score, session) => scores.submit(score, session.resource),
    resourceDefaults: config.resourceDefaults,
  });
  const batcher = new Batcher(queue, { maxSpans: config.batch.maxSpans, maxBytes: config.batch.maxBytes, flushIntervalMs: config.batch.flushIntervalMs });
  const exporter = createExporter(config, (reason) => stats.repairs.add([reason]));
  let exportLoop: ExportLoop | undefined;
  /** Set once listening (below); the gauges and status read it meanwhile. */
  let socket: SocketReceiver | undefined;
  const metrics = createMetrics(stats, () => ({
    spans: queue.spans,
    bytes: queue.bytes,
    inFlightSpans: exportLoop?.inFlightSpans ?? 0,
    maxSpans: config.queue.maxSpans,
    maxBytes: config.queue.maxBytes,
  }), () => ({ uds: socket?.connections ?? 0, http: httpConnections, tailReaders: sink.tailListeners.size }));
  exportLoop = new ExportLoop(batcher, exporter, stats, log, { exportTimeoutMs: config.exportTimeoutMs, maxRetries: config.maxRetries }, metrics.exportDuration);
  const loop = exportLoop;

  // What a previous run could not deliver goes first (queued before the listeners bind). The
  // files are removed only once what they held has left the daemon (see spoolGone): a failed
  // start, or a crash before that, must not lose them.
  let spoolFiles: ReplayedFile[] = [];
  /** The resources of the replayed spans (the spool's `hello`s): they tell its spans from the apps'. */
  const spoolResources = new WeakSet<Resource>();
  let spooledSpans = 0;
  let spooledScores = 0;
  // Ours alone from here to the exit (released by stop() once no spool write goes on, or below if the start fails).
  const releaseSpool = config.spoolDir ? await lockSpoolDir(config.spoolDir) : () => undefined;
  if (config.spoolDir) {
    const guard = new StallGuard(SPOOL_STALL_MS);
    // With the lock held no live daemon is writing here: a `.tmp` is a write cut short (SIGKILL, crash).
    const leftover = await recoverSpoolTmp(config.spoolDir, guard).catch((err: unknown) => {
      if (!guard.stalled) throw err;
      return undefined;
    });
    if (leftover?.files) {
      log.warn(
        { files: leftover.files, bytes: leftover.bytes, recovered: leftover.recovered, recoveredBytes: leftover.recoveredBytes },
        'spool: temporary files left by a write cut short (kill or crash); their whole records are replayed, the rest removed',
      );
    }
    let splitter: LineSplitter | undefined;
    // The spool has a `hello` at each change of resource, so one resource (connections of one app
    // whose spans interleaved) comes back many times: one object again, its bytes counted once, as
    // when it was queued. Counted with each `hello`, the spool no longer fit the queue it came from.
    const resources = new Map<string, Resource>();
    // A full queue was spooled with the batches in flight then (the one being sent and the next,
    // already taken): room for those, or the replay itself dropped what the bounds had held.
    queue.lend(2 * config.batch.maxSpans, 2 * config.batch.maxBytes);
    spoolFiles = await replaySpool(config.spoolDir, {
      begin: () => {
        // A resource of its own even before a `hello`: the replayed spans are told apart by theirs.
        const session = sink.session('spool', { attributes: {} });
        // No --max-record-bytes here: these lines were accepted once (an OTLP span has only the body
        // limit, an event grows as it becomes a span); refusing them now would lose them.
        splitter = new LineSplitter(
          Number.MAX_SAFE_INTEGER,
          (buf, s, e, ascii) => {
            const before = session.resource;
            sink.acceptLine(session, buf, s, e, ascii);
            if (session.resource !== before) {
              const hello = buf.toString('latin1', s, e);
              const known = resources.get(hello);
              if (known) {
                session.resource = known;
                session.resourceBytes = 0;
              } else resources.set(hello, session.resource);
            }
            spoolResources.add(session.resource);
          },
          () => undefined,
        );
      },
      chunk: (bytes) => splitter?.push(bytes),
      end: () => splitter?.end(),
      skip: (path, why, readTo) => {
        if (guard.stalled) return; // said once, below
        if (readTo === undefined) log.warn({ file: path, why }, 'a spool file could not be read: skipped and left in place');
        else log.warn({ file: path, why, readTo }, 'a spool file could not be read to its end: what was read is replayed, the rest at the next start');
      },
    }, guard);
    if (guard.stalled) {
      log.warn(
        { dir: config.spoolDir, waitedMs: SPOOL_STALL_MS, files: spoolFiles.length },
        'the spool dir does not answer (a hung disk?): listening without the rest of its replay; what it has not read stays for the next start',
      );
    }
    queue.trimLoan();
    spooledSpans = queue.spans;
    spooledScores = stats.scoresReceived;
  }
  // The replayed spans have all left the daemon (exported, or dropped and counted) once none is
  // queued or in flight. Not a count of spans gone: the apps' spans dropped while the replayed
  // ones were in flight (a full queue, the backend down) counted too, and the spool was removed
  // under spans a crash then lost. They were queued before any other, and the queue keeps its
  // order (a batch put back goes to the front): none is queued once the oldest queued span is
  // not one. Every score received so far came from the spool, and the sender sends its queue in
  // order: the spool's have all left once as many have left the sender's queue (delivered, or
  // dropped there) as the spool put in it. Not counting the scores dropped as they arrive
  // (invalid, sampled, …): an app's refused there never waited behind the spool's.
  const isSpooled = (q: QueuedSpan) => spoolResources.has(q.resource);
  const spansGone = () => !(queue.oldestResource && spoolResources.has(queue.oldestResource)) && !loop.holdsAny(isSpooled);
  const { scoresDropped } = stats;
  const scoresLeftSender = () => stats.scoresExported + scoresDropped.queue_overflow + scoresDropped.retries_exhausted + scoresDropped.rejected;
  const spooledScoresSent = spooledScores - (scoresDropped.invalid + scoresDropped.sampled + scoresDropped.unsupported_exporter + scoresDropped.shutdown);
  const spoolGone = () => spansGone() && scoresLeftSender() >= spooledScoresSent;
  let spoolWatch: NodeJS.Timeout | undefined;

  let httpUrl: string | undefined;
  /** HTTP connections open now (those refused past --http-max-connections are never opened). */
  let httpConnections = 0;
  const status = (): DaemonStatus => {
    const dropped = { ...stats.dropped };
    // A 407 is the proxy's answer (the backend never saw the request): say who refused.
    const refuser = (status: number) => (status === PROXY_REFUSED_CREDENTIALS ? 'the proxy' : 'exporter');
    const notReadyReason = loop.refusal
      ? `${refuser(loop.refusal.status)} refused: ${loop.refusal.status} ${loop.refusal.body}`.slice(0, 512)
      : scores.refusal
        ? `${refuser(scores.refusal.status)} refused a score: ${scores.refusal.status} ${scores.refusal.body}`.slice(0, 512)
        : undefined;
    return {
      version: VERSION,
      pid: process.pid,
      uptimeSeconds: Math.round((Date.now() - started) / 1000),
      ready: !notReadyReason,
      notReadyReason,
      exporter: {
        kind: exporter.kind,
        destination: exporter.destination,
        state: loop.state,
        lastError: loop.lastError,
        lastSuccessAt: loop.lastSuccessAt?.toISOString(),
      },
      listeners: { socket: config.socket, http: httpUrl },
      connections: {
        open: socket?.connections ?? 0,
        max: config.maxConnections,
        refused: stats.connectionsRefused.get(['uds']),
        http: { open: httpConnections, max: config.httpMaxConnections, refused: stats.connectionsRefused.get(['http']) },
      },
      requests: { refused: stats.requestsRefused.toRecord() },
      tail: { readers: sink.tailListeners.size, max: MAX_TAIL_READERS },
      queue: { spans: queue.spans, bytes: queue.bytes, maxSpans: config.queue.maxSpans, maxBytes: config.queue.maxBytes, inFlightSpans: loop.inFlightSpans, memoryLimit: config.memoryLimitBytes, rss: process.memoryUsage.rss() },
      spans: { received: stats.spansReceived, exported: stats.spansExported, dropped, queued: queue.spans, inFlight: loop.inFlightSpans },
      records: {
        received: stats.recordsReceived.toRecord(),
        invalid: stats.recordsInvalid.toRecord(),
      },
      export: { requests: stats.exportRequests.toRecord(), retries: stats.exportRetries },
      scores: {
        received: stats.scoresReceived,
        exported: stats.scoresExported,
        dropped: { ...stats.scoresDropped },
        queued: scores.queued,
        inFlight: scores.inFlight,
        state: scores.state,
        lastError: scores.lastError,
      },
    };
  };

  let app: FastifyInstance | undefined;
  try {
    if (config.socket) {
      socket = await listenSocket(config.socket, sink, log, config.maxRecordBytes, config.partialLineTimeoutMs, {
        maxConnections: config.maxConnections,
        onRefused: () => stats.connectionsRefused.add(['uds']),
      });
    }
    if (config.http) {
      app = buildHttp(config, sink, stats, log, { status, registry: metrics.registry, sink });
      app.server.on('connection', (c: NodeJS.EventEmitter) => {
        httpConnections++;
        c.once('close', () => httpConnections--);
      });
      const { host, port } = config.http;
      // Name the flag: "listen EADDRINUSE … 127.0.0.1:4318" alone does not say what to change.
      const address = await app.listen({ host, port }).catch((err: NodeJS.ErrnoException) => {
        const hint = err.code === 'EADDRINUSE' ? ': another process listens there (choose another port, or --http \'\' for none)' : '';
        throw new Error(`--http ${host}:${port}: ${err.message}${hint}`);
      });
      httpUrl = address;
    }
  } catch (err) {
    await socket?.close();
    await app?.close();
    releaseSpool();
    throw err;
  }
  loop.start();
  if (spoolFiles.length) {
    log.info({ files: spoolFiles.length, spans: spooledSpans, scores: spooledScores }, 'replaying the spool of the last run');
    const files = spoolFiles;
    spoolWatch = setInterval(() => {
      if (!spoolGone()) return;
      clearInterval(spoolWatch);
      spoolWatch = undefined;
      spoolFiles = [];
      // A file read in part is not removed: its unread rest is for the next start (its `.resume`).
      const readInPart = files.filter((f) => f.readTo !== undefined).length;
      void removeSpoolFiles(files).then((notRemoved) => {
        if (notRemoved.length > 0) {
          // Left in place, they are replayed again at every start (upserted, not doubled): the user must remove them.
          log.warn({ files: notRemoved.map((f) => f.path) }, 'the replayed spool has left the daemon, but the disk could not remove these files: remove them, or each start replays them again');
        } else if (readInPart) {
          log.info({ files: files.length, readInPart }, 'the replayed spool has left the daemon: its files are removed, but for the unread rest of those read in part (replayed at the next start)');
        } else log.info({ files: files.length }, 'the replayed spool has left the daemon: its files are removed');
      });
    }, SPOOL_WATCH_MS);
    spoolWatch.unref();
  }

  // The exporter's own encoding, not --encoding: console and file write OTLP/JSON whatever it says.
  log.info(
    // The proxy by its origin only: its URL may hold credentials.
    { version: VERSION, socket: config.socket, http: httpUrl, exporter: exporter.kind, destination: exporter.destination, encoding: exporter.encoding, proxy: exporter.kind === 'langfuse' || exporter.kind === 'otlp' ? shownProxy(config.outbound.proxy, exporter.destination) : undefined },
    `dspy-o11yd ${VERSION} listening on ${[config.socket && `unix:${config.socket}`, httpUrl].filter(Boolean).join(' and ')}; exporting to ${exporter.kind} at ${exporter.destination}`,
  );
  if (config.exporterNote) log.warn(config.exporterNote);

  /** Stop listening; requests in progress are answered, or cut off after `graceMs`. */
  const closeHttp = async (graceMs: number) => {
    if (!app) return;
    const server = app.server;
    const force = setTimeout(() => server.closeAllConnections(), graceMs);
    try {
      await app.close();
    } finally {
      clearTimeout(force);
    }
  };

  let stopping: Promise<void> | undefined;
  const hurried = new AbortController();
  /** Stop sending spans and scores within `exportMs` (or at hurry()), and take back what was not delivered. */
  const stopDelivering = async (exportMs: number): Promise<Undelivered> => {
    const [left, unsent] = await Promise.all([
      loop.stop(exportMs, () => queue.drain(), hurried.signal),
      // Bounded here too: a stuck score request must not hold the exit; a repeated signal cuts it short.
      within(scores.stop(exportMs, hurried.signal), exportMs + CLOSE_GRACE_MS),
    ]);
    // Stuck past its bound: what it held is taken back all the same, to be spooled or counted.
    if (unsent === TIMED_OUT) log.warn('shutdown: the score sender did not return after the deadline; giving up on its request');
    return { spans: left, scores: unsent === TIMED_OUT ? scores.abandon() : unsent };
  };
  const stop = () =>
    (stopping ??= (async () => {
      // --shutdown-timeout counts from the signal: closing the listeners (an app that keeps its
      // connection open is cut off within it) is part of it, not added before it.
      const deadlineAt = Date.now() + config.shutdownTimeoutMs;
      const remaining = () => Math.max(0, deadlineAt - Date.now());
      // With a spool, the end of the timeout is kept for writing it, so the exit stays within it
      // (an orchestrator's grace period is usually the same 10 s, then SIGKILL).
      const spoolReserveMs = config.spoolDir ? Math.min(SPOOL_WRITE_TIMEOUT_MS, config.shutdownTimeoutMs / 5) : 0;
      await Promise.all([socket?.close(Math.min(SOCKET_CLOSE_GRACE_MS, config.shutdownTimeoutMs)), closeHttp(Math.min(HTTP_CLOSE_GRACE_MS, config.shutdownTimeoutMs))]);
      clearInterval(spoolWatch);
      // Scores stop with the spans, before the spool's share: scores still retrying (Langfuse down)
      // held the spool write, and so the exit, until past the timeout.
      const exportMs = Math.max(0, remaining() - spoolReserveMs);
      const undelivered = await stopDelivering(exportMs);
      const { spans: left, scores: scoresUnsent } = undelivered;
      const dropLeft = (spans: number, scoreCount: number) => {
        stats.drop('shutdown', spans);
        stats.scoresDropped.shutdown += scoreCount;
      };
      const anyLeft = left.length > 0 || scoresUnsent.length > 0;
      const spool = anyLeft && config.spoolDir
        ? await spoolUndelivered(undelivered, {
          dir: config.spoolDir,
          oldFiles: spoolFiles,
          isOld: isSpooled,
          oldScoresUnsent: spooledScoresSent - scoresLeftSender(),
          writeTimeMs: () => Math.max(remaining(), spoolReserveMs),
          graceMs: CLOSE_GRACE_MS,
          log,
        })
        : undefined;
      if (spool) dropLeft(spool.droppedSpans, spool.droppedScores);
      else if (anyLeft) {
        // The counters die with the process: say what was lost.
        dropLeft(left.length, scoresUnsent.length);
        log.warn({ spans: left.length, scores: scoresUnsent.length, lastScoreError: scores.lastError }, 'shutdown timeout: dropped what was not delivered (set --spool-dir to keep it)');
      }
      // Nothing was spooled (nothing left): the old files go. Else spoolUndelivered removed them, or kept them for their records.
      if (!spool && spoolFiles.length) await removeSpoolFiles(spoolFiles);
      // Held until the write has ended (or the process exits, which a write stuck in the kernel
      // delays too): a daemon that took the dir meanwhile would replay a `.tmp` still being written.
      if (spool?.stillWriting) void spool.stillWriting.then(releaseSpool, releaseSpool);
      else releaseSpool();
      // Nothing left to deliver: closing is only tidiness, and the process exits right after.
      await within(exporter.close(), Math.min(CLOSE_GRACE_MS, remaining()));
      setQueueMemoryCeiling(undefined);
      log.info({ received: stats.spansReceived, exported: stats.spansExported, dropped: stats.dropped, spooled: spool?.spooledSpans ?? 0, spoolUnfinished: spool?.unfinishedSpans }, 'dspy-o11yd stopped');
    })());

  return { config, stats, exporter, httpUrl, status, stop, hurry: () => hurried.abort() };
}

/** One warning about refused HTTP connections per this many ms at most. */
const HTTP_REFUSED_LOG_MS = 10_000;

/**
 * --http-max-connections, by Node's own cap: past it a connection is closed as it is accepted,
 * unread. Unlike the socket's refusal (EOF, then reading what the SDK already wrote), nothing is
 * lost: an HTTP client sees no answer and sends its request again.
 */
function limitHttpConnections(app: FastifyInstance, max: number, stats: Stats, log: Logger): void {
  if (max <= 0) return;
  app.server.maxConnections = max;
  const warnNow = oncePer(HTTP_REFUSED_LOG_MS);
  let refusedSince = 0;
  app.server.on('drop', () => {
    stats.connectionsRefused.add(['http']);
    refusedSince++;
    if (!warnNow()) return;
    log.warn({ maxConnections: max, refused: refusedSince }, `HTTP connections at --http-max-connections (${max}): new ones are closed unanswered until some close (clients retry). A client that opens connections and holds them takes the others' slots; if that many clients share this daemon, raise --http-max-connections`);
    refusedSince = 0;
  });
}

/** Ingest routes, by the transport their records are counted under. */
const INGEST_ROUTES: Readonly<Record<string, 'http' | 'otlp'>> = { '/v1/ingest': 'http', [OTLP_TRACES_PATH]: 'otlp', [LANGFUSE_TRACES_PATH]: 'otlp' };

/** Routes that stay open with --ingest-token: liveness, readiness, Prometheus. */
const OPEN_ROUTES = new Set(['/healthz', '/readyz', '/metrics']);

/**
 * The host a Host header names (`name`, `name:port`, `[v6]:port`), lowercased, without the port
 * or a final dot (`localhost.` is the same name, written fully qualified).
 */
const hostOf = (header: string) => {
  const h = header.trim().toLowerCase();
  return h.startsWith('[') ? h.slice(1, h.indexOf(']')) : h.replace(/:\d*$/, '').replace(/\.$/, '');
};

/**
 * A Host a browser cannot have been rebound to: an IP literal (the page was reached by that very
 * address; clients also call a local listener 0.0.0.0) or localhost and its subdomains (RFC 6761:
 * never sent to DNS). DNS rebinding needs a name an attacker's DNS answers for.
 */
const notRebindable = (host: string) => isIP(host) !== 0 || host === 'localhost' || host.endsWith('.localhost');

function buildHttp(config: DaemonConfig, sink: RecordSink, stats: Stats, log: Logger, ops: Parameters<typeof registerOpsRoutes>[1]): FastifyInstance {
  const bodyLimit = Math.max(32 * 1024 * 1024, config.maxRecordBytes * 4);
  // requestTimeout: a client that sends part of a body and then nothing (or a trickle) is cut off
  // (408) instead of holding up to a body's worth of memory for ever, like the partial lines of
  // the socket (--partial-line-timeout). Twelve such clients held 360 MB and made --memory-limit
  // drop queued spans.
  const readTimeoutMs = config.httpReadTimeoutMs;
  const app = Fastify({
    logger: false,
    bodyLimit,
    // At close, idle connections go at once; a request in progress is answered (its records are
    // being accepted: cut off, its client would send them all again), within stop()'s grace.
    forceCloseConnections: 'idle',
    // Node checks request deadlines every connectionsCheckingInterval (30 s by default): a 500 ms
    // timeout fired after 30 to 90 s. Checked at least every second here.
    serverFactory: (handler) => createHttpServer({ requestTimeout: readTimeoutMs, connectionsCheckingInterval: Math.min(1_000, readTimeoutMs) }, handler),
  });
  limitHttpConnections(app, config.httpMaxConnections, stats, log);
  // Once closing, answers close their connection: a keep-alive one would otherwise hold the close.
  app.addHook('onSend', async (_request, reply, payload) => {
    if (!app.server.listening) void reply.header('connection', 'close');
    return payload;
  });
  app.removeAllContentTypeParsers();
  // Bodies stay raw: each route frames and validates them itself (NDJSON lines). The OTLP routes
  // read any media type in a scope of their own; here protobuf was read as NDJSON lines, answered
  // 202 to an OpenTelemetry exporter pointed at /v1/ingest, and its spans were lost as invalid JSON.
  // Protobuf is read only for /v1/ingest to refuse it with a message naming /v1/traces (http.ts).
  app.addContentTypeParser(['application/json', 'application/x-ndjson', 'application/x-protobuf'], { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  // DNS rebinding: a web page whose name is re-pointed at 127.0.0.1 reaches a loopback listener
  // from the user's browser as its own origin, and read /v1/tail's live prompts (loopback needs no
  // token). A client of a loopback listener names it by an address or localhost in Host.
  if (config.http && isLoopback(config.http.host)) {
    const warnNow = oncePer(REFUSAL_LOG_MS);
    app.addHook('onRequest', async (request, reply) => {
      const host = request.headers.host;
      if (host === undefined || notRebindable(hostOf(host))) return;
      // The Host sent is the client's text: not logged.
      if (warnNow()) log.warn({ path: request.url.split('?')[0]!.slice(0, 200), remoteAddress: request.ip }, 'HTTP request refused (403): its Host header is a name other than localhost, and this listener is loopback-only (a web page rebinding its name to 127.0.0.1, or a client calling the daemon by another name: use 127.0.0.1 or localhost)');
      return reply.code(403).send({ error: 'the Host header must be an IP address or localhost (127.0.0.1, localhost, [::1]): this listener is loopback-only and refuses other names (DNS rebinding)' });
    });
  }
  const auth: AuthOptions = {
    token: config.ingestToken,
    langfuseKeys: config.exporter === 'langfuse' && config.langfuse.publicKey && config.langfuse.secretKey
      ? { publicKey: config.langfuse.publicKey, secretKey: config.langfuse.secretKey }
      : undefined,
  };
  if (auth.token !== undefined || auth.langfuseKeys) {
    const warnRefused = refusalWarner(log);
    app.addHook('onRequest', async (request, reply) => {
      // Probes and scrapers cannot send a token and get no record contents; everything else
      // (ingest, /v1/tail's live records, /v1/status's exporter errors) needs it.
      if ((request.method === 'GET' || request.method === 'HEAD') && OPEN_ROUTES.has(request.routeOptions.url ?? '')) return;
      const langfusePath = request.url.startsWith(`${LANGFUSE_API_PREFIX}/`);
      const refusal = authorize(request.headers.authorization, langfusePath, auth);
      if (refusal === undefined) return;
      // Counted and logged, or only the app would see its 401. Ingest routes under their records'
      // transport label; the rest (status, tail, unknown paths) as `other`.
      const transport = INGEST_ROUTES[request.routeOptions.url ?? ''] ?? 'other';
      stats.requestsRefused.add([transport, refusal.reason]);
      warnRefused(refusal, {
        transport,
        method: request.method,
        // No query (a client may put anything there), and bounded: the path is the client's text.
        path: request.url.split('?')[0]!.slice(0, 200),
        remoteAddress: request.ip,
        scheme: schemeOf(request.headers.authorization),
      });
      // Langfuse answers `{"message": …}`: what its SDKs and their users expect there.
      return reply.code(401).send(langfusePath ? { message: refusal.message } : { error: refusal.message });
    });
  }
  // Bodies Fastify refuses before a route runs (past the body limit, a media type no route reads)
  // are refused ingest all the same: counted like the routes' own refusals.
  app.addHook('onError', async (request, _reply, error) => {
    const transport = INGEST_ROUTES[request.routeOptions.url ?? ''];
    const status = (error as { statusCode?: number }).statusCode;
    if (transport && (status === 413 || status === 415)) sink.rejectBody(transport, status === 413 ? 'too_large' : transport === 'otlp' ? 'invalid_otlp' : 'invalid_body');
  });
  registerIngestRoutes(app, sink, config.maxRecordBytes, bodyLimit);
  registerOtlpRoutes(app, sink, {
    maxBodyBytes: bodyLimit,
    normalizeDialects: config.exporter === 'langfuse',
    keepScopes: config.exporter !== 'langfuse',
    countRefused: (reason) => stats.recordsInvalid.add(['otlp', reason]),
  });
  registerOpsRoutes(app, ops);
  return app;
}
