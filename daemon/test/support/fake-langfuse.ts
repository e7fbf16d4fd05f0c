/**
 * A fake Langfuse for the whole test suite (daemon end-to-end, SDK, goldens, benchmarks).
 *
 * `POST /api/public/otel/v1/traces` behaves like Langfuse's OTLP endpoint (FACTS.md): Basic auth
 * against the configured keys (401 JSON otherwise), content type JSON or protobuf (400
 * otherwise), gzip understood, `x-langfuse-ingestion-version` above 4 refused, the body decoded
 * with the daemon's OTLP decoder, the whole batch refused (400) when a span lacks ids or cannot
 * be read, 200 with a JSON body otherwise. Stricter than Langfuse on one point: a JSON body with
 * snake_case OTLP field names is a 400 here (Langfuse silently reads it as empty; a test should
 * fail loudly). `POST /api/public/scores` stores the JSON body and answers 200 `{id}`; like
 * Langfuse it upserts by id (a score sent again with the same id replaces the stored one), and
 * every attempt is kept in `scoreRequests`, faults (`failScores`) included.
 *
 * Everything is recorded: requests (headers, content type/encoding, sizes, span count, status),
 * every span of every accepted batch, flattened, with its attributes' OTLP types, and the most
 * export requests seen in flight at once. Faults: one-shot (`fail`) and sticky (`mode`), plus
 * `down()`/`up()`.
 *
 * Listens on 127.0.0.1, random port, only.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { promisify } from 'node:util';
import { gunzip as gunzipCallback } from 'node:zlib';
import {
  attributeTypes,
  decodeTraceRequest,
  encodingOfContentType,
  flattenAttributes,
  type AnyValueType,
  type DecodedTraceRequest,
  type FlatValue,
  type OtlpEncoding,
  type StatusCode,
} from '../../src/otlp/decode.js';

const gunzip = promisify(gunzipCallback);

export const TRACES_PATH = '/api/public/otel/v1/traces';
export const SCORES_PATH = '/api/public/scores';

export interface FakeLangfuseOptions {
  /** Default `pk-lf-test`. */
  readonly publicKey?: string;
  /** Default `sk-lf-test`. */
  readonly secretKey?: string;
  /** Default 0 (a random free port). */
  readonly port?: number;
  /** Bodies above this many bytes (as received) get 413. Default 64 MiB. */
  readonly maxBodyBytes?: number;
}

/**
 * What to do with one request instead of (or before) answering it normally. Fields combine in
 * this order: `delayMs` (wait, then go on), `release` (wait for it, then go on), `reset` (destroy
 * the socket), `hang` (never answer),
 * `status` (answer with it), `tooLargeAboveSpans`/`tooLargeAboveBytes` (413 when the batch is
 * bigger, else answer normally).
 */
export interface Fault {
  readonly status?: number;
  /** Response body for `status` (default a JSON `{message}`). */
  readonly body?: string;
  /** `Retry-After: <seconds>` with `status`. */
  readonly retryAfterSeconds?: number;
  /** `Retry-After: <HTTP-date>` with `status`. */
  readonly retryAfterDate?: Date;
  readonly headers?: Readonly<Record<string, string>>;
  readonly tooLargeAboveSpans?: number;
  readonly tooLargeAboveBytes?: number;
  readonly hang?: boolean;
  readonly reset?: boolean;
  readonly delayMs?: number;
  /** Hold the answer until this settles: requests kept in flight for as long as the test needs, whatever the machine's speed. */
  readonly release?: Promise<unknown>;
}

export interface RecordedRequest {
  /** Arrival order, from 0. */
  readonly index: number;
  readonly method: string;
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  readonly contentType: string | undefined;
  readonly contentEncoding: string | undefined;
  /** Body size as received (compressed). */
  bytes: number;
  /** Body size after gunzip (= bytes when not compressed). */
  decodedBytes: number;
  /** Spans in the body (0 when it could not be decoded). */
  spanCount: number;
  encoding: OtlpEncoding | undefined;
  /** HTTP status answered; 0 while unanswered, or for `hang` / `reset`. */
  status: number;
  /** The fault applied, if any. */
  fault: Fault | undefined;
  /** Why a 4xx was answered (our message). */
  error: string | undefined;
  /** Date.now() when the request arrived / was answered. */
  readonly receivedAt: number;
  answeredAt: number | undefined;
}

export interface RecordedEvent {
  readonly name: string;
  readonly timeUnixNano: string;
  readonly attributes: Record<string, FlatValue>;
  readonly attributeTypes: Record<string, AnyValueType>;
}

export interface RecordedSpan {
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId: string | undefined;
  readonly name: string;
  /** OTLP SpanKind number (1 = internal). */
  readonly kind: number;
  readonly startTimeUnixNano: string;
  readonly endTimeUnixNano: string;
  readonly status: { readonly code: StatusCode; readonly message: string | undefined };
  readonly attributes: Record<string, FlatValue>;
  /** OTLP type of each attribute: `int` vs `double`, `array`, … */
  readonly attributeTypes: Record<string, AnyValueType>;
  readonly events: readonly RecordedEvent[];
  readonly resource: Record<string, FlatValue>;
  readonly resourceTypes: Record<string, AnyValueType>;
  readonly scope: { readonly name: string; readonly version: string; readonly attributes: Record<string, FlatValue> };
  /** `requests[requestIndex]` carried it. */
  readonly requestIndex: number;
}

export interface RecordedScore {
  readonly id: string;
  readonly body: unknown;
  readonly receivedAt: number;
}

/** One `POST /api/public/scores` attempt, whatever it was answered. */
export interface RecordedScoreRequest {
  readonly headers: IncomingHttpHeaders;
  /** The parsed JSON body (undefined when unreadable). */
  readonly body: unknown;
  readonly status: number;
  readonly fault: Fault | undefined;
}

interface Waiter {
  readonly check: () => boolean;
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
  readonly timer: NodeJS.Timeout;
}

const json = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void => {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
};

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export class FakeLangfuse {
  readonly publicKey: string;
  readonly secretKey: string;
  readonly requests: RecordedRequest[] = [];
  readonly spans: RecordedSpan[] = [];
  /** Stored scores, one per id (upserted like Langfuse). */
  readonly scores: RecordedScore[] = [];
  readonly scoreRequests: RecordedScoreRequest[] = [];
  /** Export requests being handled right now / the most at once since start or `reset()`. */
  inFlight = 0;
  maxInFlight = 0;
  /** TCP connections accepted so far (keep-alive reuse shows as fewer connections than requests). */
  connectionsAccepted = 0;

  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly faults: Fault[] = [];
  private readonly scoreFaults: Fault[] = [];
  private sticky: Fault | null = null;
  private readonly waiters = new Set<Waiter>();
  private readonly maxBodyBytes: number;
  private listening = false;
  private closed = false;
  private portNumber: number;

  private constructor(options: FakeLangfuseOptions) {
    this.publicKey = options.publicKey ?? 'pk-lf-test';
    this.secretKey = options.secretKey ?? 'sk-lf-test';
    this.maxBodyBytes = options.maxBodyBytes ?? 64 * 1024 * 1024;
    this.portNumber = options.port ?? 0;
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        if (!res.headersSent && !res.destroyed) json(res, 500, { message: `fake-langfuse: ${(err as Error).message}` });
        else res.destroy();
      });
    });
    this.server.keepAliveTimeout = 5_000;
    this.server.on('connection', (socket) => {
      this.connectionsAccepted++;
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
  }

  static async start(options: FakeLangfuseOptions = {}): Promise<FakeLangfuse> {
    const fake = new FakeLangfuse(options);
    await fake.up();
    return fake;
  }

  /** `http://127.0.0.1:<port>`: the Langfuse host (`LANGFUSE_HOST`). */
  get url(): string {
    return `http://127.0.0.1:${this.portNumber}`;
  }

  get port(): number {
    return this.portNumber;
  }

  /** `Authorization` value for the configured keys. */
  get authorization(): string {
    return `Basic ${Buffer.from(`${this.publicKey}:${this.secretKey}`).toString('base64')}`;
  }

  // -------------------------------------------------------------------------------------------
  // Faults

  /** Apply `fault` to each of the next `times` export requests (queued after earlier ones). */
  fail(fault: Fault, times = 1): void {
    for (let i = 0; i < times; i++) this.faults.push(fault);
  }

  /** Apply `fault` to every export request with no one-shot fault queued; `null` back to normal. */
  mode(fault: Fault | null): void {
    this.sticky = fault;
  }

  /** Answer each of the next `times` score requests with `fault.status` (and `Retry-After`, and `body`: JSON), before auth. */
  failScores(fault: Fault, times = 1): void {
    for (let i = 0; i < times; i++) this.scoreFaults.push(fault);
  }

  /** Resolves with the stored scores once at least `n` are stored; rejects after `timeoutMs`. */
  waitForScores(n: number, timeoutMs = 15_000): Promise<RecordedScore[]> {
    return this.waitFor(() => this.scores.length >= n, timeoutMs, () => `${n} scores (got ${this.scores.length})`).then(() => this.scores);
  }

  /** Drop queued one-shot faults and the sticky mode. */
  clearFaults(): void {
    this.faults.length = 0;
    this.scoreFaults.length = 0;
    this.sticky = null;
  }

  /** Stop listening and cut every connection: clients see connection refused until `up()`. */
  async down(): Promise<void> {
    if (!this.listening) return;
    this.listening = false;
    const closing = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const s of this.sockets) s.destroy();
    await closing;
  }

  /** Listen again (on the same port once it has one). */
  async up(): Promise<void> {
    if (this.listening || this.closed) return;
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.server.once('error', onError);
      this.server.listen(this.portNumber, '127.0.0.1', () => {
        this.server.off('error', onError);
        resolve();
      });
    });
    this.portNumber = (this.server.address() as AddressInfo).port;
    this.listening = true;
  }

  // -------------------------------------------------------------------------------------------
  // Queries

  /** Resolves with all spans once at least `n` were accepted; rejects after `timeoutMs`. */
  waitForSpans(n: number, timeoutMs = 15_000): Promise<RecordedSpan[]> {
    return this.waitFor(() => this.spans.length >= n, timeoutMs, () => `${n} spans (got ${this.spans.length})`).then(() => this.spans);
  }

  /** Resolves once at least `n` export requests were answered (any status, or hang/reset). */
  waitForRequests(n: number, timeoutMs = 15_000): Promise<RecordedRequest[]> {
    const done = () => this.requests.filter((r) => r.answeredAt !== undefined).length;
    return this.waitFor(() => done() >= n, timeoutMs, () => `${n} requests (got ${done()})`).then(() => this.requests);
  }

  spansByTrace(traceId: string): RecordedSpan[] {
    return this.spans.filter((s) => s.traceId === traceId);
  }

  span(spanId: string): RecordedSpan | undefined {
    return this.spans.find((s) => s.spanId === spanId);
  }

  /** Forget recorded requests, spans, scores and maxInFlight (faults stay). */
  reset(): void {
    this.requests.length = 0;
    this.spans.length = 0;
    this.scores.length = 0;
    this.scoreRequests.length = 0;
    this.maxInFlight = this.inFlight;
  }

  /** Close the server and destroy every connection, including hanging requests. */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.down();
    this.closed = true;
    for (const w of this.waiters) {
      clearTimeout(w.timer);
      w.reject(new Error('fake-langfuse closed'));
    }
    this.waiters.clear();
  }

  private waitFor(check: () => boolean, timeoutMs: number, what: () => string): Promise<void> {
    if (check()) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        check,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters.delete(waiter);
          reject(new Error(`fake-langfuse: timed out after ${timeoutMs} ms waiting for ${what()}`));
        }, timeoutMs),
      };
      this.waiters.add(waiter);
    });
  }

  private notify(): void {
    for (const w of this.waiters) {
      if (w.check()) {
        clearTimeout(w.timer);
        this.waiters.delete(w);
        w.resolve();
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // Handling

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method === 'POST' && path === TRACES_PATH) return this.traces(req, res);
    if (req.method === 'POST' && path === SCORES_PATH) return this.score(req, res);
    json(res, 404, { message: `fake-langfuse: no route ${req.method} ${path}` });
  }

  private authorized(req: IncomingMessage): boolean {
    return req.headers.authorization === this.authorization;
  }

  private async readBody(req: IncomingMessage): Promise<Buffer | undefined> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req) {
      size += (chunk as Buffer).length;
      if (size > this.maxBodyBytes) return undefined;
      chunks.push(chunk as Buffer);
    }
    return Buffer.concat(chunks);
  }

  private async traces(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    res.once('close', () => {
      this.inFlight--;
    });
    const record: RecordedRequest = {
      index: this.requests.length,
      method: req.method ?? 'POST',
      path: req.url ?? '',
      headers: { ...req.headers },
      contentType: req.headers['content-type'],
      contentEncoding: req.headers['content-encoding'],
      bytes: 0,
      decodedBytes: 0,
      spanCount: 0,
      encoding: undefined,
      status: 0,
      fault: undefined,
      error: undefined,
      receivedAt: Date.now(),
      answeredAt: undefined,
    };
    this.requests.push(record);
    const answer = (status: number, body: unknown, headers: Record<string, string> = {}, error?: string) => {
      record.status = status;
      record.error = error;
      record.answeredAt = Date.now();
      json(res, status, body, headers);
      this.notify();
    };

    const raw = await this.readBody(req);
    if (raw === undefined) {
      answer(413, { message: 'Request Entity Too Large' }, { connection: 'close' }, 'body above maxBodyBytes');
      return;
    }
    record.bytes = raw.length;

    const fault = this.faults.shift() ?? this.sticky ?? undefined;
    record.fault = fault;
    if (fault?.delayMs) await sleep(fault.delayMs);
    if (fault?.release) await fault.release.catch(() => undefined);
    if (res.destroyed) return;
    if (fault?.reset) {
      record.answeredAt = Date.now();
      req.socket.destroy();
      this.notify();
      return;
    }
    if (fault?.hang) {
      // Never answered: the client aborts, or close()/down() destroys the socket.
      record.answeredAt = Date.now();
      this.notify();
      return;
    }
    if (fault?.status !== undefined) {
      const headers: Record<string, string> = { ...fault.headers };
      if (fault.retryAfterSeconds !== undefined) headers['retry-after'] = String(fault.retryAfterSeconds);
      if (fault.retryAfterDate !== undefined) headers['retry-after'] = fault.retryAfterDate.toUTCString();
      record.status = fault.status;
      record.answeredAt = Date.now();
      if (fault.body !== undefined) {
        res.writeHead(fault.status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(fault.body), ...headers });
        res.end(fault.body);
        this.notify();
      } else {
        answer(fault.status, { message: `fake-langfuse: injected ${fault.status}` }, headers, 'injected');
      }
      return;
    }

    // Like Langfuse: auth, then content type and version, then the body.
    if (!this.authorized(req)) {
      answer(401, { message: 'Invalid credentials. Confirm that you have used the correct host and keys.' }, {}, 'unauthorized');
      return;
    }
    const encoding = encodingOfContentType(record.contentType);
    record.encoding = encoding;
    if (!encoding) {
      answer(400, { message: 'Unsupported content type' }, {}, `content-type ${record.contentType ?? '(none)'}`);
      return;
    }
    const version = req.headers['x-langfuse-ingestion-version'];
    if (typeof version === 'string' && Number(version) > 4) {
      answer(400, { message: `Unsupported ingestion version ${version}` }, {}, 'ingestion version');
      return;
    }
    let body: Buffer = raw;
    const ce = (record.contentEncoding ?? '').toLowerCase().trim();
    if (ce === 'gzip') {
      try {
        body = await gunzip(raw);
      } catch (err) {
        answer(400, { message: 'Invalid gzip body' }, {}, `gunzip: ${(err as Error).message}`);
        return;
      }
    } else if (ce !== '' && ce !== 'identity') {
      answer(400, { message: `Unsupported content encoding ${ce}` }, {}, `content-encoding ${ce}`);
      return;
    }
    record.decodedBytes = body.length;
    let decoded: DecodedTraceRequest;
    try {
      decoded = decodeTraceRequest(body, encoding, { strictFieldNames: true });
    } catch (err) {
      answer(400, { message: 'Invalid OTLP trace export', error: (err as Error).message }, {}, (err as Error).message);
      return;
    }
    const spans = flatten(decoded, record.index);
    record.spanCount = spans.length;
    if (fault?.tooLargeAboveSpans !== undefined && spans.length > fault.tooLargeAboveSpans) {
      answer(413, { message: 'Request Entity Too Large' }, {}, `${spans.length} spans > ${fault.tooLargeAboveSpans}`);
      return;
    }
    if (fault?.tooLargeAboveBytes !== undefined && raw.length > fault.tooLargeAboveBytes) {
      answer(413, { message: 'Request Entity Too Large' }, {}, `${raw.length} bytes > ${fault.tooLargeAboveBytes}`);
      return;
    }
    for (const s of spans) this.spans.push(s);
    answer(200, { id: randomUUID(), status: 'accepted', spans: spans.length });
  }

  private async score(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const raw = await this.readBody(req);
    let body: unknown;
    try {
      body = raw === undefined ? undefined : JSON.parse(raw.toString('utf8'));
    } catch {
      body = undefined;
    }
    const answer = (status: number, payload: unknown, fault?: Fault, headers: Record<string, string> = {}) => {
      this.scoreRequests.push({ headers: { ...req.headers }, body, status, fault });
      json(res, status, payload, headers);
      this.notify();
    };
    const fault = this.scoreFaults.shift();
    if (fault?.status !== undefined) {
      const headers: Record<string, string> = { ...fault.headers };
      if (fault.retryAfterSeconds !== undefined) headers['retry-after'] = String(fault.retryAfterSeconds);
      answer(fault.status, fault.body !== undefined ? JSON.parse(fault.body) : { message: `fake-langfuse: injected ${fault.status}` }, fault, headers);
      return;
    }
    if (!this.authorized(req)) {
      answer(401, { message: 'Invalid credentials. Confirm that you have used the correct host and keys.' });
      return;
    }
    if (raw === undefined) {
      answer(413, { message: 'Request Entity Too Large' });
      return;
    }
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      answer(400, { message: 'A score must be a JSON object' });
      return;
    }
    const refusal = scoreRefusal(body as Record<string, unknown>);
    if (refusal) {
      answer(400, { message: refusal });
      return;
    }
    const given = (body as { id?: unknown }).id;
    const id = typeof given === 'string' && given !== '' ? given : randomUUID();
    // Langfuse upserts by id: the same id twice is one score.
    const existing = this.scores.findIndex((s) => s.id === id);
    if (existing >= 0) this.scores.splice(existing, 1);
    this.scores.push({ id, body, receivedAt: Date.now() });
    answer(200, { id });
  }
}

/** Langfuse's environment rule (packages/shared/src/server/ingestion/types.ts). */
const LANGFUSE_ENVIRONMENT = /^(?!langfuse)[a-z0-9-_]+$/;

/** Why Langfuse's scores API answers 400 to this body (its validation, the rules a test can trip), or undefined. */
function scoreRefusal(body: Record<string, unknown>): string | undefined {
  const targets = ['traceId', 'sessionId', 'datasetRunId'].filter((k) => body[k] !== undefined && body[k] !== null);
  if (targets.length !== 1) return `Provide exactly one of traceId, sessionId or datasetRunId (got ${targets.join(', ') || 'none'})`;
  if (body.environment !== undefined && (typeof body.environment !== 'string' || !LANGFUSE_ENVIRONMENT.test(body.environment))) return `Invalid environment ${JSON.stringify(body.environment)}`;
  return undefined;
}

/** Where Langfuse's OTel ingestion reads the environment, key by key (span, then resource): its `extractEnvironment`. */
const LANGFUSE_ENVIRONMENT_KEYS = ['langfuse.environment', 'deployment.environment.name', 'deployment.environment'];

/**
 * Why Langfuse's OTel ingestion would drop this span's observation without a word ("Failed to
 * parse otel observation"), or undefined: the environment (the first of its keys set, on the span
 * then the resource) must pass its rule, the version (span `langfuse.version`, then resource
 * `service.version`) be a string, and a prompt name come with a version (a version of 0 counts as none).
 */
export function langfuseWouldDrop(span: RecordedSpan): string | undefined {
  let env: unknown;
  for (const k of LANGFUSE_ENVIRONMENT_KEYS) {
    env = span.attributes[k] || span.resource[k] || undefined;
    if (env !== undefined) break;
  }
  if (env !== undefined && (typeof env !== 'string' || !LANGFUSE_ENVIRONMENT.test(env))) return `environment ${JSON.stringify(env)}`;
  const version = span.attributes['langfuse.version'] ?? span.resource['service.version'];
  if (version !== undefined && typeof version !== 'string') return `version ${JSON.stringify(version)} is not a string`;
  const promptName = span.attributes['langfuse.observation.prompt.name'];
  const promptVersion = span.attributes['langfuse.observation.prompt.version'];
  if (Boolean(promptName) !== Boolean(promptVersion)) return `prompt name ${JSON.stringify(promptName)} with version ${JSON.stringify(promptVersion)}`;
  return undefined;
}

/** Start a fake Langfuse on 127.0.0.1 (random port unless `port` is given). */
export function startFakeLangfuse(options: FakeLangfuseOptions = {}): Promise<FakeLangfuse> {
  return FakeLangfuse.start(options);
}

/** A decoded request → recorded spans. */
export function flatten(decoded: DecodedTraceRequest, requestIndex: number): RecordedSpan[] {
  const out: RecordedSpan[] = [];
  for (const rs of decoded.resourceSpans) {
    const resource = flattenAttributes(rs.resource.attributes);
    const resourceTypes = attributeTypes(rs.resource.attributes);
    for (const ss of rs.scopeSpans) {
      const scope = { name: ss.scope.name, version: ss.scope.version, attributes: flattenAttributes(ss.scope.attributes) };
      for (const s of ss.spans) {
        out.push({
          traceId: s.traceId,
          spanId: s.spanId,
          parentSpanId: s.parentSpanId,
          name: s.name,
          kind: s.kind,
          startTimeUnixNano: s.startTimeUnixNano,
          endTimeUnixNano: s.endTimeUnixNano,
          status: { code: s.status.code, message: s.status.message },
          attributes: flattenAttributes(s.attributes),
          attributeTypes: attributeTypes(s.attributes),
          events: s.events.map((e) => ({
            name: e.name,
            timeUnixNano: e.timeUnixNano,
            attributes: flattenAttributes(e.attributes),
            attributeTypes: attributeTypes(e.attributes),
          })),
          resource,
          resourceTypes,
          scope,
          requestIndex,
        });
      }
    }
  }
  return out;
}
