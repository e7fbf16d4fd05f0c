/**
 * `http://host:port`: batched `POST /v1/ingest` of NDJSON, one request in flight, through a
 * keep-alive agent with one socket (node:http: no dependency, and with one request at a time
 * undici's pipelining would buy nothing). Each body starts with `hello` (the daemon scopes a
 * resource to a body) and any unreported drops as `stats`. Network errors, 408, 429 and 5xx put
 * the batch back at the front of the ring and back off (no sooner than an answer's `Retry-After`);
 * 413 halves the batch (down to one record); other 4xx drop the batch (counted), and a flush
 * waiting for it answers false. Sockets are unref'd except while flushing at exit.
 */
import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import { parseRetryAfter } from '@dspy-o11y/proto';
import { debug } from '../config.js';
import { Transport, counters, type TransportOptions } from './base.js';
import { Ring } from './ring.js';

const MAX_ANSWER = 64 * 1024;
/** Connection errors that mean no daemon is there (as opposed to one that failed a request). */
const NOBODY_LISTENING = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);

export class HttpTransport extends Transport<Ring> {
  private readonly agent: http.Agent;
  private readonly mod: typeof http | typeof https;
  private readonly target: { hostname: string; port: string; path: string };
  private maxBatch: number;
  private readonly timeoutMs: number;
  private busy = false;
  private req: http.ClientRequest | undefined;
  private reqSocket: Socket | undefined;
  /** The whole request's deadline (`req.setTimeout` only counts idle time: a trickling answer never hit it). */
  private reqDeadline: NodeJS.Timeout | undefined;
  /** Id of the request in progress; release() moves it on, so a request it cut short settles nothing. */
  private requestId = 0;
  private ok = false;

  constructor(url: URL, opts: TransportOptions) {
    super(opts, new Ring(opts.maxBufferRecords, opts.maxBufferBytes));
    this.mod = url.protocol === 'https:' ? https : http;
    this.agent = new this.mod.Agent({ keepAlive: true, maxSockets: 1 });
    const base = url.pathname.replace(/\/+$/, '');
    this.target = { hostname: url.hostname.replace(/^\[|\]$/g, ''), port: url.port, path: `${base}/v1/ingest` };
    this.maxBatch = opts.maxBatchBytes ?? 512 * 1024;
    this.timeoutMs = opts.writeTimeoutMs ?? 10_000;
  }

  get connected(): boolean {
    return this.ok;
  }

  protected kick(): void {
    if (!this.busy && this.mayAttempt()) this.schedule();
  }

  protected urgent(): void {
    if (this.busy) {
      // Waiting for the answer on an unref'd socket: hold the process for it while exiting, as
      // long as the exit flush may (flushTimeoutMs), and no longer.
      if (this.exiting) {
        this.reqSocket?.ref();
        this.armDeadline(this.exitLeftMs, true);
      }
      return;
    }
    if (!this.skipBackoff()) return;
    if (this.exiting) this.tick();
    else this.schedule();
  }

  protected tick(): void {
    if (this.busy || this.closed) return;
    const stats = this.takeStats();
    const lines: string[] = [];
    const body = this.opts.hello + stats.text + this.ring.take(this.maxBatch, lines);
    if (lines.length === 0 && !stats.text) {
      this.settle();
      return;
    }
    this.busy = true;
    this.inFlight = lines.length;
    const id = ++this.requestId;
    const finish = (status: number, answer: string, error?: Error, retryAfter?: string): void => {
      if (id !== this.requestId) return; // answered already, or cut short by release()
      this.requestId++;
      this.clearDeadline();
      this.busy = false;
      this.req = undefined;
      this.reqSocket = undefined;
      this.inFlight = 0;
      this.onAnswer(status, answer, error, lines, stats.snapshot, retryAfter);
    };
    const headers: http.OutgoingHttpHeaders = {
      'content-type': 'application/x-ndjson',
      'content-length': Buffer.byteLength(body),
    };
    if (this.opts.ingestToken) headers.authorization = `Bearer ${this.opts.ingestToken}`;
    let req: http.ClientRequest;
    try {
      req = this.mod.request({ ...this.target, method: 'POST', agent: this.agent, headers });
    } catch (e) {
      finish(0, '', e as Error);
      return;
    }
    this.req = req;
    req.on('socket', (s: Socket) => {
      this.reqSocket = s;
      if (!this.exiting) s.unref();
      else s.ref();
    });
    this.armDeadline(this.exiting ? this.exitLeftMs : this.timeoutMs, this.exiting);
    req.on('error', (e) => finish(0, '', e));
    req.on('response', (res) => {
      let answer = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        if (answer.length < MAX_ANSWER) answer += c;
      });
      res.on('end', () => finish(res.statusCode ?? 0, answer, undefined, res.headers['retry-after']));
      res.on('error', (e) => finish(0, '', e));
    });
    req.end(body);
  }

  private onAnswer(status: number, answer: string, error: Error | undefined, lines: string[], snapshot: Map<string, number> | undefined, retryAfter?: string): void {
    if (status >= 200 && status < 300) {
      this.ok = true;
      counters.sent += lines.length;
      this.ackStats(snapshot);
      try {
        const parsed = JSON.parse(answer) as { rejected?: unknown };
        if (typeof parsed.rejected === 'number' && parsed.rejected > 0) counters.rejected += parsed.rejected;
      } catch {
        /* answer is informational */
      }
      this.succeeded();
      if (this.ring.size > 0 || this.hasUnreported) {
        if (this.exiting) this.tick();
        else this.schedule();
      } else this.settle();
      return;
    }
    this.ok = false;
    if (this.closed) {
      this.drop('shutdown', lines.length);
      return;
    }
    if (status === 413 && lines.length > 1) {
      // Half of what was refused (not of the limit: small records made 16 KiB bodies that a tighter
      // proxy kept refusing, in a loop). Every retry carries fewer records, down to one, which is
      // either accepted or dropped as too large below: it always ends.
      let refused = 0;
      for (const l of lines) refused += l.length;
      this.maxBatch = Math.max(1, Math.floor(Math.min(this.maxBatch, refused) / 2));
      this.drop('buffer_full', this.ring.unshiftAll(lines));
      this.schedule();
      return;
    }
    if (status === 0 || status === 408 || status === 429 || status >= 500) {
      debug(`ingest request failed (${error?.message ?? `HTTP ${status}`}); retrying with backoff`);
      this.drop('buffer_full', this.ring.unshiftAll(lines));
      // A 429 or 503 may say when to come back (Retry-After): no sooner, whatever the backoff says.
      this.failed(NOBODY_LISTENING.has((error as NodeJS.ErrnoException | undefined)?.code ?? ''), parseRetryAfter(retryAfter));
      return;
    }
    // A permanent refusal (400, 401, 403, 413 for a single record, …): retrying cannot help.
    debug(`ingest refused with HTTP ${status}: ${answer.slice(0, 200)}`);
    this.drop(status === 413 ? 'record_too_large' : `http_${status}`, lines.length);
    if (lines.length > 0) this.refusedRecords();
    counters.failures++;
    if (this.ring.size > 0) this.schedule();
    else this.settle();
  }

  /** (Re)arms the deadline of the request in progress: past it the request is destroyed (a retryable failure). */
  private armDeadline(ms: number, holdProcess: boolean): void {
    this.clearDeadline();
    const req = this.req;
    if (!req) return;
    this.reqDeadline = setTimeout(() => req.destroy(new Error('request timed out')), ms);
    // While exiting the socket holds the process anyway; otherwise telemetry never does.
    if (!holdProcess) this.reqDeadline.unref();
  }

  private clearDeadline(): void {
    if (this.reqDeadline) clearTimeout(this.reqDeadline);
    this.reqDeadline = undefined;
  }

  protected release(): void {
    if (this.busy) {
      // Cut short: counted now (close() reads the stats right after), and its answer ignored.
      this.requestId++;
      this.busy = false;
      this.drop('shutdown', this.inFlight);
      this.inFlight = 0;
    }
    this.clearDeadline();
    this.req?.destroy();
    this.req = undefined;
    this.reqSocket = undefined;
    this.agent.destroy();
  }
}
