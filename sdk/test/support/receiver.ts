/**
 * A stand-in for the daemon in tests: a Unix-socket (or HTTP) server that splits NDJSON and
 * validates EVERY line with the wire protocol's `parseLine`. Tests assert on what arrived.
 */
import { after, before, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configure, flush, type ConfigureOptions } from '../../src/index.js';
import { parseLine, type EventRecord, type HelloRecord, type ScoreRecord, type SpanRecord, type StatsRecord, type WireRecord } from '@dspy-o11y/proto';

export interface Invalid {
  line: string;
  message: string;
}

export function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'dspy-o11y-sdk-'));
}

export abstract class Receiver {
  records: WireRecord[] = [];
  /** The valid records' lines as they arrived. */
  lines: string[] = [];
  invalid: Invalid[] = [];
  /** Incomplete trailing data seen at a connection's end (a cut record). */
  partials = 0;
  connections = 0;

  abstract readonly endpoint: string;
  abstract close(): Promise<void>;

  protected accept(line: string): void {
    if (!line) return;
    const r = parseLine(line);
    if (r.ok) {
      this.records.push(r.record);
      this.lines.push(line);
    } else this.invalid.push({ line: line.slice(0, 500), message: `${r.reason}: ${r.message}` });
  }

  spans(): SpanRecord[] {
    return this.records.filter((r): r is SpanRecord => r.type === 'span');
  }
  events(): EventRecord[] {
    return this.records.filter((r): r is EventRecord => r.type === 'event');
  }
  hellos(): HelloRecord[] {
    return this.records.filter((r): r is HelloRecord => r.type === 'hello');
  }
  stats(): StatsRecord[] {
    return this.records.filter((r): r is StatsRecord => r.type === 'stats');
  }
  scores(): ScoreRecord[] {
    return this.records.filter((r): r is ScoreRecord => r.type === 'score');
  }
  span(name: string): SpanRecord {
    const s = this.spans().find((x) => x.name === name);
    if (!s) throw new Error(`no span named ${name}; have ${this.spans().map((x) => x.name).join(', ')}`);
    return s;
  }

  /**
   * Polls `pred` until true; rejects after `timeoutMs` with a description of what arrived. Generous:
   * what is waited for is asynchronous, and a loaded CI machine can hold a process for seconds.
   */
  async waitFor(pred: () => boolean, timeoutMs = 15_000, what = 'condition'): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (!pred()) {
      if (Date.now() > until) {
        throw new Error(`timed out waiting for ${what}: ${this.records.length} records (${this.spans().length} spans), ${this.invalid.length} invalid`);
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  waitForSpans(n: number, timeoutMs = 15_000): Promise<void> {
    return this.waitFor(() => this.spans().length >= n, timeoutMs, `${n} spans`);
  }

  reset(): void {
    this.records = [];
    this.lines = [];
    this.invalid = [];
  }
}

export class UnixReceiver extends Receiver {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  private paused = false;
  /** The next this many connections get EOF at once and are still read, as from a daemon past its --max-connections. */
  endNext = 0;
  readonly dir: string;
  readonly path: string;

  private constructor(dir?: string) {
    super();
    this.dir = dir ?? tempDir();
    this.path = join(this.dir, 'd.sock');
  }

  get endpoint(): string {
    return `unix://${this.path}`;
  }

  /** A receiver listening at a fresh path (or, with `listen: false`, only the path). */
  static async create(opts: { listen?: boolean } = {}): Promise<UnixReceiver> {
    const r = new UnixReceiver();
    if (opts.listen !== false) await r.listen();
    return r;
  }

  listen(): Promise<void> {
    rmSync(this.path, { force: true });
    const server = net.createServer((sock) => {
      this.connections++;
      this.sockets.add(sock);
      sock.setEncoding('utf8');
      let buf = '';
      sock.on('data', (chunk: string) => {
        buf += chunk;
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          this.accept(buf.slice(0, nl));
          buf = buf.slice(nl + 1);
        }
      });
      sock.on('close', () => {
        if (buf.length > 0) this.partials++;
        this.sockets.delete(sock);
      });
      sock.on('error', () => undefined);
      if (this.paused) sock.pause();
      if (this.endNext > 0) {
        this.endNext--;
        sock.end();
      }
    });
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.path, () => resolve());
    });
  }

  /** Accept, but stop reading: the SDK's writes back up. */
  stopReading(): void {
    this.paused = true;
    for (const s of this.sockets) s.pause();
  }

  resumeReading(): void {
    this.paused = false;
    for (const s of this.sockets) s.resume();
  }

  /** Reset every connection (unread data included), still listening: a daemon killed and restarted at once. */
  dropConnections(): void {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }

  get openConnections(): number {
    return this.sockets.size;
  }

  /** Kill: drop every connection and stop listening (the path can be listened on again). */
  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    rmSync(this.path, { force: true });
  }

  async dispose(): Promise<void> {
    await this.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface HttpRequestSeen {
  path: string;
  contentType: string | undefined;
  authorization: string | undefined;
  lines: number;
  status: number;
}

export class HttpReceiver extends Receiver {
  readonly requests: HttpRequestSeen[] = [];
  /** When each of `requests` arrived and was answered (Date.now(), measured here, on the server side). */
  readonly times: { arrived: number; answered: number }[] = [];
  /** Answer with this status instead of 202 (e.g. 500 to test retries), for the next `failNext` requests. */
  failStatus = 500;
  failNext = 0;
  /** `Retry-After` of the next failed answers, one value each (none once used up). */
  failRetryAfter: string[] = [];
  /** Bodies longer than this (bytes) are refused with 413, as a proxy with a body limit does. */
  maxBodyBytes = Infinity;
  /** Answer this long after the body arrived (a slow daemon). */
  answerDelayMs = 0;
  /** For the next `trickleNext` requests: send the headers, then one byte of the answer every `trickleMs`, never ending it. */
  trickleNext = 0;
  trickleMs = 500;
  private sockets = new Set<net.Socket>();

  private constructor(
    private readonly server: http.Server,
    readonly port: number,
  ) {
    super();
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  static async create(port = 0): Promise<HttpReceiver> {
    let self: HttpReceiver | undefined;
    const server = http.createServer((req, res) => {
      const arrived = Date.now();
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (body += c));
      req.on('end', () => setTimeout(answer, (self as HttpReceiver).answerDelayMs));
      const answer = () => {
        const me = self as HttpReceiver;
        const lines = body.split('\n').filter(Boolean);
        let status = 202;
        if (me.trickleNext > 0) {
          me.trickleNext--;
          me.requests.push({ path: req.url ?? '', contentType: req.headers['content-type'], authorization: req.headers.authorization, lines: lines.length, status: 0 });
          me.times.push({ arrived, answered: Date.now() });
          res.writeHead(202, { 'content-type': 'application/json' });
          const drip = setInterval(() => res.write(' '), me.trickleMs);
          res.on('close', () => clearInterval(drip));
          return;
        }
        if (Buffer.byteLength(body) > me.maxBodyBytes) status = 413;
        else if (me.failNext > 0) {
          me.failNext--;
          status = me.failStatus;
        }
        me.requests.push({ path: req.url ?? '', contentType: req.headers['content-type'], authorization: req.headers.authorization, lines: lines.length, status });
        me.times.push({ arrived, answered: Date.now() });
        if (status !== 202) {
          const retryAfter = me.failRetryAfter.shift();
          res.writeHead(status, { 'content-type': 'application/json', ...(retryAfter === undefined ? {} : { 'retry-after': retryAfter }) });
          res.end('{"message":"test failure"}');
          return;
        }
        const before = me.invalid.length;
        for (const l of lines) me.accept(l);
        const rejected = me.invalid.length - before;
        res.writeHead(202, { 'content-type': 'application/json' }).end(JSON.stringify({ accepted: lines.length - rejected, rejected, errors: [] }));
      };
    });
    server.on('connection', (s) => {
      self?.sockets.add(s);
      s.on('close', () => self?.sockets.delete(s));
    });
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', () => resolve()));
    const addr = server.address() as net.AddressInfo;
    self = new HttpReceiver(server, addr.port);
    return self;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** Every span's parent exists in `spans` (or it is a root). */
export function assertTreeComplete(spans: SpanRecord[]): void {
  const ids = new Set(spans.map((s) => s.spanId));
  for (const s of spans) {
    if (s.parentSpanId !== undefined && !ids.has(s.parentSpanId)) throw new Error(`span ${s.name} has a missing parent ${s.parentSpanId}`);
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** `p`, or `fallback` if `p` has not settled after `ms` (a liveness bound); the timer never lingers. */
export async function within<T, F>(p: Promise<T>, ms: number, fallback: F): Promise<T | F> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<F>((resolve) => (timer = setTimeout(() => resolve(fallback), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * One receiver for a whole test file: the SDK is configured to it before the first test, it is
 * drained and reset before each test, and closed after the last. `set` hands it to the file.
 */
export function useReceiver(options: ConfigureOptions, set: (r: UnixReceiver) => void): void {
  let r: UnixReceiver;
  before(async () => {
    r = await UnixReceiver.create();
    set(r);
    configure({ endpoint: r.endpoint, ...options });
  });
  after(async () => {
    await flush();
    await r.dispose();
  });
  beforeEach(async () => {
    await flush();
    r.reset();
  });
}

/** After a flush: the first `n` (or more) `llm.generate` spans the receiver got, none of its records invalid. */
export async function flushedGenerations(r: UnixReceiver, n: number): Promise<SpanRecord[]> {
  assert.equal(await flush(), true);
  await r.waitFor(() => r.spans().filter((s) => s.name === 'llm.generate').length >= n, 15_000, `${n} generations`);
  assert.deepEqual(r.invalid, []);
  return r.spans().filter((s) => s.name === 'llm.generate');
}
