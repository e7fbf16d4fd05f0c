/**
 * Scores (wire record `score`, proto/SCORES.md) → Langfuse's REST API, `POST {host}/api/public/scores`.
 *
 * Scores do not travel with spans: Langfuse's OTLP endpoint has no score, so they go to the
 * public scores API with the same Basic auth. That API takes ONE score per request, so the
 * sender posts them one at a time, with exactly one request in flight (like the span export
 * loop: a backend that slows down is never hit harder). Its own bounded queue drops the oldest
 * score when full, and never blocks ingest.
 *
 * Retries follow the span exporter's rules and backoff module: network errors, timeouts, 408,
 * 429 and 5xx are retried with exponential backoff and full jitter, honouring `Retry-After`;
 * other 4xx (and 413) are permanent: the score is dropped and the answer logged once per status.
 * Every score carries an id (the record's, else one derived from its content), and Langfuse
 * upserts by id: a retry after a lost answer, or the same record sent twice, never duplicates.
 *
 * For exporters other than `langfuse`, scores are counted and dropped (`unsupported_exporter`),
 * with one warning. Counters (ops/stats.ts): received = exported + dropped + queued + in flight.
 */
import { createHash } from 'node:crypto';
import type { Dispatcher } from 'undici';
import { keepTrace, RESOURCE, type ScoreRecord } from '@dspy-o11y/proto';
import type { DaemonConfig } from '../config.js';
import type { Logger } from '../log.js';
import { EMPTY_RESOURCE, type Resource } from '../model.js';
import type { ScoreDropReason, Stats } from '../ops/stats.js';
import { BoundedQueue } from '../queue/bounded-queue.js';
import { VERSION } from '../version.js';
import { DEFAULT_BACKOFF, backoffDelay, deadline, sleep, type BackoffPolicy } from './backoff.js';
import { MAX_ERROR_BODY_BYTES, appendUrlPath, credentialScrubber, networkReason, outcomeForStatus, readLimited } from './http-common.js';
import { closeDispatcher, createDispatcher, proxyAuthorizations, proxyRefusal, requestUntilAborted, type Outbound } from './outbound.js';
import { langfuseEnvironment, resourceEnvironment } from './langfuse-map.js';
import { PROXY_REFUSED_CREDENTIALS, REFUSED_CREDENTIALS, type ExportOutcome } from './types.js';

export const LANGFUSE_SCORES_PATH = '/api/public/scores';
/** Scores waiting to be sent, at most; beyond it the oldest is dropped. */
export const DEFAULT_MAX_QUEUED_SCORES = 10_000;
/**
 * Bytes of queued score bodies, at most; beyond it the oldest is dropped. A score record may be as
 * large as --max-record-bytes (a long comment), so the count alone would let 10,000 of them hold
 * gigabytes while Langfuse is down, outside --queue-max-bytes and --memory-limit.
 */
export const DEFAULT_MAX_QUEUED_SCORE_BYTES = 32 * 1024 * 1024;

export type ScoreDataType = 'NUMERIC' | 'CATEGORICAL' | 'BOOLEAN';

/** The body of `POST /api/public/scores` (Langfuse's CreateScoreRequest, the fields we fill). */
export interface LangfuseScoreBody {
  id: string;
  traceId?: string;
  observationId?: string;
  sessionId?: string;
  name: string;
  /** A number for NUMERIC and BOOLEAN (0 or 1), a string for CATEGORICAL. */
  value: number | string;
  dataType?: ScoreDataType;
  comment?: string;
  /** ISO 8601, from `timeUnixNano` (millisecond precision). */
  timestamp?: string;
  /** From the sender's resource `deployment.environment.name`, sanitized like the spans' (langfuseEnvironment). */
  environment?: string;
}

export type ScoreConversion = { ok: true; body: LangfuseScoreBody } | { ok: false; message: string };

/**
 * A stable id for a score without one: a UUID (version 8, RFC 9562 "custom") made of the SHA-256
 * of the score's content. The same record always gets the same id, so Langfuse's upsert by id
 * makes resends harmless; two scores differing in anything (e.g. their timestamp) differ in id.
 */
export function scoreId(score: ScoreRecord): string {
  const content = JSON.stringify([
    score.traceId ?? null, score.observationId ?? null, score.sessionId ?? null, score.name, score.value,
    score.dataType ?? null, score.comment ?? null, score.timeUnixNano ?? null,
  ]);
  const h = createHash('sha256').update(content).digest('hex');
  const variant = ((parseInt(h[16]!, 16) & 0x3) | 0x8).toString(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-8${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

function nsToIso(ns: string): string {
  return new Date(Number(BigInt(ns) / 1_000_000n)).toISOString();
}

/** The value and data type Langfuse accepts for the record's, or why there are none. */
function scoreValue(value: ScoreRecord['value'], dataType: ScoreDataType | undefined): { value: number | string; dataType?: ScoreDataType } | string {
  if (typeof value === 'boolean') {
    if (dataType !== undefined && dataType !== 'BOOLEAN') return `a boolean value needs dataType BOOLEAN, not ${dataType}`;
    return { value: value ? 1 : 0, dataType: 'BOOLEAN' };
  }
  if (typeof value === 'number') {
    if (dataType === 'CATEGORICAL') return 'a CATEGORICAL score needs a string value';
    if (dataType === 'BOOLEAN' && value !== 0 && value !== 1) return 'a BOOLEAN score needs true/false (or 0/1)';
    return dataType ? { value, dataType } : { value };
  }
  if (dataType !== undefined && dataType !== 'CATEGORICAL') return `a string value needs dataType CATEGORICAL, not ${dataType}`;
  return dataType ? { value, dataType } : { value };
}

/** A validated score record → the Langfuse body, or why Langfuse would refuse it. */
export function toLangfuseScore(score: ScoreRecord, resource: Resource): ScoreConversion {
  if (!score.traceId && !score.sessionId) return { ok: false, message: 'a score needs a traceId or a sessionId' };
  if (score.observationId && !score.traceId) return { ok: false, message: 'an observationId needs the traceId of its trace' };
  const v = scoreValue(score.value, score.dataType);
  if (typeof v === 'string') return { ok: false, message: v };
  const body: LangfuseScoreBody = { id: score.id ?? scoreId(score), name: score.name, value: v.value };
  if (score.traceId) body.traceId = score.traceId;
  if (score.observationId) body.observationId = score.observationId;
  // Langfuse takes a trace (and observation) or a session, never both (a 400 otherwise): the trace is the more precise.
  if (score.sessionId && !score.traceId) body.sessionId = score.sessionId;
  if (v.dataType) body.dataType = v.dataType;
  if (score.comment !== undefined) body.comment = score.comment;
  if (score.timeUnixNano) body.timestamp = nsToIso(score.timeUnixNano);
  const env = resourceEnvironment(resource.attributes);
  // Like the spans' (langfuse-map.ts): an environment Langfuse would refuse is left out (its default then applies).
  const environment = env === undefined || env === '' ? undefined : langfuseEnvironment(String(env));
  if (environment !== undefined) body.environment = environment;
  return { ok: true, body };
}

/** A score the shutdown could not deliver: its wire record and resource, for the spool. */
export interface UnsentScore {
  readonly record: ScoreRecord;
  readonly resource: Resource;
}

/**
 * A Langfuse body back to the wire record that makes the same body again (same id, value,
 * millisecond timestamp and environment), so spooled scores replay through ingest like spans.
 * `resources` shares one resource per environment, so the spool writes one `hello` per run of them.
 */
export function unsentScore(body: LangfuseScoreBody, resources: Map<string, Resource>): UnsentScore {
  const record: ScoreRecord = { v: 1, type: 'score', id: body.id, name: body.name, value: body.value };
  if (body.traceId) record.traceId = body.traceId;
  if (body.observationId) record.observationId = body.observationId;
  if (body.sessionId) record.sessionId = body.sessionId;
  if (body.dataType) record.dataType = body.dataType;
  if (body.comment !== undefined) record.comment = body.comment;
  if (body.timestamp) {
    // Millisecond 0 (a time within the first ms of 1970) as "1": the wire format has no 0, and "0000000" made the spooled record invalid at replay.
    const ms = Date.parse(body.timestamp);
    record.timeUnixNano = ms > 0 ? `${ms}000000` : '1';
  }
  const env = body.environment ?? '';
  let resource = env === '' ? EMPTY_RESOURCE : resources.get(env);
  if (!resource) resources.set(env, (resource = { attributes: { [RESOURCE.environment]: env } }));
  return { record, resource };
}

/** Where RecordSink's `onScore` hands valid score records. */
export interface ScoreSink {
  submit(score: ScoreRecord, resource: Resource): void;
  /** Scores waiting in the queue / in the request in flight (or waiting to be retried). */
  readonly queued: number;
  readonly inFlight: number;
  readonly state: string;
  readonly lastError: string | undefined;
  /** Set when Langfuse refused our credentials (401/403, or the proxy's 407) on a score: readiness is 503 until a score or a span batch is delivered. */
  readonly refusal?: { status: number; body: string } | undefined;
  /**
   * Send what is queued within `timeoutMs`, then close and return what was not delivered, oldest
   * first (the caller spools or counts it, as for spans). `cutShort` ends the wait early (a
   * repeated SIGTERM), as for the span export loop.
   */
  stop(timeoutMs: number, cutShort?: AbortSignal): Promise<UnsentScore[]>;
  /**
   * `stop()` did not return in time (a request stuck past its abort): hand back every score not
   * delivered yet, the one in flight included, so the caller spools or counts them; whatever that
   * request does later changes no counter.
   */
  abandon(): UnsentScore[];
}

export interface ScoreSenderOptions {
  /** Langfuse base URL (a path prefix and a query string are kept, as for traces). */
  readonly host: string;
  readonly publicKey: string;
  readonly secretKey: string;
  readonly sdkVersion: string;
  /** Per request; then the request is abandoned and retried. */
  readonly requestTimeoutMs: number;
  readonly maxRetries: number;
  readonly maxQueued?: number;
  /** Bytes of queued bodies (JSON text length) at most; the newest score is always kept. */
  readonly maxQueuedBytes?: number;
  readonly backoff?: BackoffPolicy;
  /** The daemon's `--sample-ratio`: a score of a trace that is sampled out is dropped too. */
  readonly sampleRatio?: number;
  /** Proxy (and TLS) settings, as the span exporter's; default: direct. */
  readonly outbound?: Outbound;
}

interface PendingScore {
  readonly id: string;
  readonly json: string;
}

type SenderState = 'idle' | 'sending' | 'backoff' | 'stopped';

/** Sends scores to Langfuse one at a time, one request in flight, with retries. */
export class ScoreSender implements ScoreSink {
  state: SenderState = 'idle';
  lastError: string | undefined;
  inFlight = 0;
  /** The last 401/403/407, and how many spans had been exported then. */
  private refused: { status: number; body: string; spansExported: number } | undefined;

  /**
   * Our keys refused on a score, until a score is delivered, or a span batch is (the same keys,
   * the same Langfuse): scores can be hours apart, and until the next one /readyz stayed 503.
   */
  get refusal(): { status: number; body: string } | undefined {
    return this.refused && this.stats.spansExported === this.refused.spansExported ? this.refused : undefined;
  }

  /** Bounded by count and by the queued bodies' lengths (not counting the one in flight). */
  private readonly queue: BoundedQueue<PendingScore>;
  private readonly dispatcher: Dispatcher;
  private readonly origin: string;
  private readonly path: string;
  private readonly headers: Record<string, string>;
  /** Cuts our credentials out of an answer that echoes them (see credentialScrubber). */
  private readonly scrub: (text: string) => string;
  private readonly stopping = new AbortController();
  private readonly loggedRefusals = new Set<number>();
  /** Scores whose delivery the shutdown cut off, in order: stop() hands them back. */
  private readonly cutOff: PendingScore[] = [];
  /** The score being delivered (sent, or waiting for its retry). */
  private current: PendingScore | undefined;
  /** abandon() handed everything back: later outcomes are not counted. */
  private abandoned = false;
  private loggedInvalid = false;
  private closing = false;
  private active = false;
  private running: Promise<void> | undefined;

  constructor(
    private readonly options: ScoreSenderOptions,
    private readonly stats: Stats,
    private readonly log: Logger,
  ) {
    const url = new URL(appendUrlPath(options.host, LANGFUSE_SCORES_PATH));
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`Langfuse host must be http(s), got ${url.protocol}`);
    // The traces' rule: the host's path prefix and query string are kept.
    this.path = `${url.pathname}${url.search}`;
    // One connection: one request in flight, kept alive between scores.
    this.origin = url.origin;
    this.dispatcher = createDispatcher(url.origin, options.outbound, { connections: 1 });
    this.headers = {
      authorization: `Basic ${Buffer.from(`${options.publicKey}:${options.secretKey}`).toString('base64')}`,
      'content-type': 'application/json',
      'x-langfuse-sdk-name': 'dspy-o11yd',
      'x-langfuse-sdk-version': options.sdkVersion,
      // As the span exporter's: undici sends none, and proxies and WAFs in front of Langfuse may refuse a request without one.
      'user-agent': `dspy-o11yd/${VERSION}`,
    };
    this.scrub = credentialScrubber({ authorization: this.headers.authorization, ...proxyAuthorizations(options.outbound?.proxy) });
    this.queue = new BoundedQueue<PendingScore>(options.maxQueued ?? DEFAULT_MAX_QUEUED_SCORES, () => this.drop('queue_overflow'), {
      maxBytes: options.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_SCORE_BYTES,
      sizeOf: (score) => score.json.length,
    });
  }

  /** Bytes of the queued score bodies. */
  get bytes(): number {
    return this.queue.bytes;
  }

  get queued(): number {
    return this.queue.length;
  }

  submit(score: ScoreRecord, resource: Resource): void {
    this.stats.scoresReceived++;
    const ratio = this.options.sampleRatio ?? 1;
    if (ratio < 1 && score.traceId && !keepTrace(score.traceId, ratio)) return this.drop('sampled');
    const converted = toLangfuseScore(score, resource);
    if (!converted.ok) {
      // The first one is worth a warning; the metric counts the rest.
      this.log[this.loggedInvalid ? 'debug' : 'warn']({ score: score.name, error: converted.message }, 'score Langfuse would refuse: dropped');
      this.loggedInvalid = true;
      return this.drop('invalid');
    }
    if (this.closing) return this.drop('shutdown');
    this.queue.push({ id: converted.body.id, json: JSON.stringify(converted.body) });
    if (!this.active) {
      this.active = true;
      this.running = this.run();
    }
  }

  async stop(timeoutMs: number, cutShort?: AbortSignal): Promise<UnsentScore[]> {
    this.closing = true;
    const abort = () => this.stopping.abort();
    const timer = setTimeout(abort, timeoutMs);
    if (cutShort?.aborted) abort();
    cutShort?.addEventListener('abort', abort, { once: true });
    await this.running;
    clearTimeout(timer);
    cutShort?.removeEventListener('abort', abort);
    this.state = 'stopped';
    await closeDispatcher(this.dispatcher);
    // Taken only now, after the last await: a caller that gave up on stop() meanwhile (its bound
    // is shorter than the close's grace) gets them from abandon() instead of losing them here.
    return unsent([...this.cutOff.splice(0), ...this.queue.drain()]);
  }

  abandon(): UnsentScore[] {
    this.closing = true;
    this.abandoned = true;
    this.stopping.abort();
    const current = this.current && !this.cutOff.includes(this.current) ? [this.current] : [];
    const left = [...this.cutOff.splice(0), ...current, ...this.queue.drain()];
    this.current = undefined;
    this.inFlight = 0;
    this.state = 'stopped';
    return unsent(left);
  }

  private drop(reason: ScoreDropReason): void {
    this.stats.scoresDropped[reason]++;
  }

  private async run(): Promise<void> {
    try {
      for (let item = this.queue.shift(); item && !this.abandoned; item = this.queue.shift()) {
        this.inFlight = 1;
        this.current = item;
        await this.deliver(item);
        this.current = undefined;
        this.inFlight = 0;
      }
    } finally {
      this.current = undefined;
      this.inFlight = 0;
      this.active = false;
      if (this.state !== 'stopped') this.state = 'idle';
    }
  }

  private async deliver(item: PendingScore): Promise<void> {
    for (let retry = 0; ; retry++) {
      const outcome = await this.sendOnce(item);
      // Already handed back by abandon(): spooled or counted there.
      if (this.abandoned) return;
      if (outcome.kind === 'delivered') {
        this.stats.scoresExported++;
        this.lastError = undefined;
        this.refused = undefined;
        return;
      }
      if (outcome.kind !== 'retryable') {
        // 413 included: one score that is too large will not shrink on a retry.
        const status = outcome.kind === 'refused' ? outcome.status : 413;
        this.lastError = `${status}${outcome.kind === 'refused' ? `: ${outcome.body}` : ''}`;
        // Bad keys refuse scores as they refuse spans: a daemon sending only scores must not look ready.
        if (outcome.kind === 'refused' && REFUSED_CREDENTIALS.has(status)) this.refused = { status, body: outcome.body, spansExported: this.stats.spansExported };
        if (!this.loggedRefusals.has(status)) {
          this.loggedRefusals.add(status);
          // A 407 is the proxy's answer: Langfuse never saw the score.
          const refuser = status === PROXY_REFUSED_CREDENTIALS ? 'the proxy' : 'Langfuse';
          this.log.error({ status, answer: outcome.kind === 'refused' ? outcome.body : undefined, id: item.id }, `${refuser} refused a score; dropping it (permanent error)`);
        }
        return this.drop('rejected');
      }
      // Cut off by the shutdown: handed back by stop(); lastError keeps the backend's last answer.
      if (this.stopping.signal.aborted) {
        this.cutOff.push(item);
        return;
      }
      this.lastError = outcome.reason;
      if (retry >= this.options.maxRetries) {
        this.log.error({ id: item.id, reason: outcome.reason }, `giving up on a score after ${retry} retries`);
        return this.drop('retries_exhausted');
      }
      const delay = backoffDelay(retry, outcome.retryAfterMs, this.options.backoff ?? DEFAULT_BACKOFF);
      this.log.warn({ id: item.id, retry: retry + 1, delayMs: delay, reason: outcome.reason }, 'score export failed, will retry');
      this.state = 'backoff';
      await sleep(delay, this.stopping.signal);
    }
  }

  private async sendOnce(item: PendingScore): Promise<ExportOutcome> {
    if (this.stopping.signal.aborted) return { kind: 'retryable', reason: 'aborted' };
    this.state = 'sending';
    const request = deadline(this.options.requestTimeoutMs, this.stopping.signal);
    try {
      return await this.post(item, request.signal);
    } finally {
      request.done();
    }
  }

  private async post(item: PendingScore, signal: AbortSignal): Promise<ExportOutcome> {
    let res: Dispatcher.ResponseData;
    try {
      res = await requestUntilAborted(this.dispatcher, { origin: this.origin, method: 'POST', path: this.path, headers: this.headers, body: item.json, signal });
    } catch (err) {
      return proxyRefusal(err) ?? { kind: 'retryable', reason: networkReason(err, signal) };
    }
    const status = res.statusCode;
    const ok = status >= 200 && status < 300;
    try {
      if (ok) {
        await res.body.dump({ limit: 64 * 1024, signal });
        return { kind: 'delivered' };
      }
      return outcomeForStatus(status, res.headers, this.scrub(await readLimited(res.body, MAX_ERROR_BODY_BYTES)));
    } catch (err) {
      // The status line arrived; only the body failed. A 2xx is delivered all the same.
      return ok ? { kind: 'delivered' } : outcomeForStatus(status, res.headers, `(answer body unreadable: ${networkReason(err, signal)})`);
    }
  }
}

/** For exporters other than Langfuse: scores are counted and dropped, with one warning. */
export class UnsupportedScoreSink implements ScoreSink {
  readonly queued = 0;
  readonly inFlight = 0;
  readonly state = 'unsupported';
  readonly lastError = undefined;
  private warned = false;

  constructor(
    private readonly exporterKind: string,
    private readonly stats: Stats,
    private readonly log: Logger,
  ) {}

  submit(): void {
    this.stats.scoresReceived++;
    this.stats.scoresDropped.unsupported_exporter++;
    if (!this.warned) {
      this.warned = true;
      this.log.warn({ exporter: this.exporterKind }, `scores are only exported to Langfuse; the ${this.exporterKind} exporter drops them (counted in dspy_o11yd_scores_dropped_total{reason="unsupported_exporter"})`);
    }
  }

  async stop(): Promise<UnsentScore[]> {
    return [];
  }

  abandon(): UnsentScore[] {
    return [];
  }
}

/** Pending bodies back to wire records, one resource per environment. */
function unsent(left: readonly PendingScore[]): UnsentScore[] {
  const resources = new Map<string, Resource>();
  return left.map((p) => unsentScore(JSON.parse(p.json) as LangfuseScoreBody, resources));
}

/** The score sink the configuration implies: Langfuse's scores API, or counting and dropping. */
export function createScoreSink(config: DaemonConfig, stats: Stats, log: Logger): ScoreSink {
  if (config.exporter !== 'langfuse') return new UnsupportedScoreSink(config.exporter, stats, log);
  return new ScoreSender(
    {
      host: config.langfuse.host,
      publicKey: config.langfuse.publicKey!,
      secretKey: config.langfuse.secretKey!,
      sdkVersion: VERSION,
      requestTimeoutMs: config.exportTimeoutMs,
      maxRetries: config.maxRetries,
      sampleRatio: config.sampleRatio,
      outbound: config.outbound,
    },
    stats,
    log,
  );
}
