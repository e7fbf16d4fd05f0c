/**
 * What the Unix-socket and HTTP transports share: the bounded drop-oldest buffer, drop accounting
 * and its `stats` report to the daemon, reconnect backoff, `flush()` waiters and the final flush
 * at `beforeExit`.
 *
 * Rules: `send()` never blocks, never awaits and never throws; no timer, socket or immediate
 * keeps the process alive, except the timer of an explicit `flush()` the app is awaiting.
 */
import { retryAfterFloor } from '@dspy-o11y/proto';
import type { RecordBuffer } from './ring.js';

/** Records waiting beyond which a new one is taken to wait even with no write in progress. */
const BACKLOG = 1024;

export interface TransportOptions {
  hello: string;
  maxBufferRecords: number;
  maxBufferBytes: number;
  maxBatchBytes?: number | undefined;
  ingestToken?: string | undefined;
  /** Write/request stall after which the connection is dropped (ms). */
  writeTimeoutMs?: number;
  /** How long the flush at `beforeExit` may hold the process, in all (ms; the SDK's current flushTimeoutMs). */
  exitFlushMs?: () => number;
}

/** Process-wide counters, kept across transports (`configure()` may replace the transport). */
export interface Counters {
  /** Records handed to a transport. */
  enqueued: number;
  /** Records written to the daemon's socket / accepted in a 2xx HTTP answer. */
  sent: number;
  /** Records lost, total (= sum of `droppedByReason`). */
  dropped: number;
  droppedByReason: Record<string, number>;
  /** Records rejected as invalid: by the daemon (HTTP answers), or by the SDK before sending (scores). */
  rejected: number;
  /** Successful connections (Unix socket). */
  connects: number;
  /** Failed connection attempts and failed HTTP requests. */
  failures: number;
  /** Records not produced because their trace is sampled out (`sampleRatio`): never enqueued. */
  sampledOut: number;
}

export const counters: Counters = { enqueued: 0, sent: 0, dropped: 0, droppedByReason: {}, rejected: 0, connects: 0, failures: 0, sampledOut: 0 };

const MIN_BACKOFF_MS = 100;
/** The longest delay setTimeout honours. */
const MAX_TIMER_MS = 2 ** 31 - 1;
const MAX_BACKOFF_MS = 5000;
/**
 * A connection that lived this long resets the backoff when it goes. One the daemon ends sooner
 * (past its --max-connections it sends EOF at once) backs off like a failed attempt: resetting on
 * every accepted connect made a refused app reconnect every 50-100 ms for as long as the daemon
 * stayed full (~14 connects a second per app).
 */
const STABLE_CONNECTION_MS = 1000;
const DEFAULT_EXIT_FLUSH_MS = 2000;

interface Waiter {
  resolve: (ok: boolean) => void;
  timer: NodeJS.Timeout;
  /** Records it waited for were refused for good or lost with a connection: it answers false, whatever follows. */
  refused?: boolean;
  /** Whether it keeps the process up (an app's own flush) or not (configure()'s flush of a replaced transport). */
  hold: boolean;
}

/**
 * Transports not yet closed, and one `beforeExit` / `exit` listener for all of them: a listener
 * per transport passed Node's limit of 10 (a MaxListenersExceededWarning on the app's stderr) when
 * an app switched endpoints while old transports were still flushing.
 */
const openTransports = new Set<Transport>();
let listening = false;
function listenForExit(): void {
  if (listening) return;
  listening = true;
  process.on('beforeExit', () => {
    for (const t of [...openTransports]) t.onProcessBeforeExit();
  });
  process.on('exit', () => {
    for (const t of [...openTransports]) t.onProcessExit();
  });
}

export abstract class Transport<B extends RecordBuffer = RecordBuffer> {
  /** Drops not yet reported to the daemon in a `stats` record, by reason. */
  private unreported = new Map<string, number>();
  /** Records in the write/request in progress (0: none). */
  protected inFlight = 0;
  protected closed = false;
  /**
   * Until when the flush at `beforeExit` holds the process (0: not exiting). A daemon that accepts
   * writes but never reads, or answers slowly, would otherwise hold it for as long as each attempt
   * moves a few records (a minute and more for a full buffer): past it, the process is let go and
   * what is left counts as dropped (`exit`).
   */
  private exitUntil = 0;
  /** `counters.enqueued` when exitUntil was set: records produced after it start a new exit flush. */
  private exitEnqueued = -1;
  private waiters: Waiter[] = [];
  private backoffMs = 0;
  private nextAttemptAt = 0;
  /** Until when the daemon asked not to be retried (`Retry-After`; 0: no such ask). A flush does not skip it. */
  private retryAfterUntil = 0;
  protected retryTimer: NodeJS.Timeout | undefined;
  /** The pending `tick()` of `schedule()`, if any. */
  private immediate: NodeJS.Immediate | undefined;
  private lastExitMark = '';

  constructor(
    protected readonly opts: TransportOptions,
    /** Where records wait, bounded by `maxBufferRecords` and `maxBufferBytes`. */
    protected readonly ring: B,
  ) {
    openTransports.add(this);
    listenForExit();
  }

  /** At `beforeExit`: the final flush. */
  onProcessBeforeExit(): void {
    try {
      this.exitFlush();
    } catch {
      /* never throw from a process event */
    }
  }

  /** At `exit` nothing more can be sent: count what is left, so `sdkStats()` read at exit adds up. */
  onProcessExit(): void {
    const n = this.ring.size + this.inFlight;
    if (n > 0) {
      this.ring.clear();
      this.inFlight = 0;
      this.drop('exit', n);
    }
  }

  /** Queue one NDJSON line (with its newline). Never throws, never blocks. */
  send(line: string): void {
    counters.enqueued++;
    if (this.closed) {
      this.drop('shutdown', 1);
      return;
    }
    // Whether it will wait (a write in progress, no connection, a backlog): the buffer may store it differently.
    const dropped = this.ring.push(line, this.inFlight > 0 || this.ring.size >= BACKLOG || !this.connected);
    if (dropped) this.drop('buffer_full', dropped);
    this.kick();
  }

  get buffered(): number {
    return this.ring.size;
  }
  get bufferedChars(): number {
    return this.ring.chars;
  }
  get inFlightRecords(): number {
    return this.inFlight;
  }
  abstract get connected(): boolean;

  protected drop(reason: string, n: number): void {
    if (n <= 0) return;
    counters.dropped += n;
    counters.droppedByReason[reason] = (counters.droppedByReason[reason] ?? 0) + n;
    if (reason !== 'shutdown' && reason !== 'exit') this.unreported.set(reason, (this.unreported.get(reason) ?? 0) + n);
  }

  /** `stats` lines for the drops not yet reported, and what to acknowledge once they are sent. */
  protected takeStats(): { text: string; snapshot: Map<string, number> | undefined } {
    if (this.unreported.size === 0) return { text: '', snapshot: undefined };
    let text = '';
    const snapshot = new Map(this.unreported);
    for (const [reason, n] of snapshot) text += `{"v":1,"type":"stats","droppedRecords":${n},"reason":${JSON.stringify(reason)}}\n`;
    return { text, snapshot };
  }

  protected ackStats(snapshot: Map<string, number> | undefined): void {
    if (!snapshot) return;
    for (const [reason, n] of snapshot) {
      const left = (this.unreported.get(reason) ?? 0) - n;
      if (left > 0) this.unreported.set(reason, left);
      else this.unreported.delete(reason);
    }
  }

  protected get hasUnreported(): boolean {
    return this.unreported.size > 0;
  }

  /** Run `tick()` on the next turn of the event loop (coalescing every record of this turn). */
  protected schedule(): void {
    if (this.immediate) return;
    this.immediate = setImmediate(() => {
      this.immediate = undefined;
      try {
        this.tick();
      } catch {
        /* never throw */
      }
    });
    // Unref'd, so telemetry never keeps the process up; but Node only runs an unref'd immediate
    // when something else wakes the event loop, so while `flush()` or the exit flush waits on it,
    // it is ref'd (else the write would wait for the next timer or I/O, up to the 250 ms watchdog).
    if (!this.exiting && !this.waiters.some((w) => w.hold)) this.immediate.unref();
  }

  /** Something to send: write now-ish, or (re)connect. */
  protected abstract kick(): void;
  /** Write one batch if possible. */
  protected abstract tick(): void;
  /** Flush requested: skip any backoff wait. */
  protected abstract urgent(): void;
  /** Release sockets. */
  protected abstract release(): void;

  /** Whether an attempt may start now; if not, a retry is scheduled. */
  protected mayAttempt(): boolean {
    if (this.retryTimer) return false;
    const wait = this.nextAttemptAt - Date.now();
    if (wait <= 0) return true;
    this.armRetry(wait);
    return false;
  }

  /**
   * After a failure: back off (100 ms doubling to 5 s, equal jitter), or for as long as the
   * answer's `Retry-After` asks if that is longer (up to 5 min: the daemon exporter's rule).
   * `nobodyListening` (the connection was refused, the socket file is missing): flush waiters hear
   * false at once, so an app run without a daemon does not wait out every `flush()`. Any other
   * failure (a 503, a 429, a reset, a timeout) is a daemon that is there: waiters keep waiting for
   * the retries within their timeout; giving up at the first one made `shutdown()` and
   * `configure()` drop everything.
   */
  protected failed(nobodyListening: boolean, retryAfterMs?: number): void {
    counters.failures++;
    this.backoffMs = this.backoffMs ? Math.min(this.backoffMs * 2, MAX_BACKOFF_MS) : MIN_BACKOFF_MS;
    const now = Date.now();
    const backoff = this.backoffMs / 2 + Math.random() * (this.backoffMs / 2);
    const delay = retryAfterFloor(backoff, retryAfterMs);
    this.nextAttemptAt = now + delay;
    // The daemon's ask alone (capped): what a flush does not skip.
    const pause = retryAfterFloor(0, retryAfterMs);
    this.retryAfterUntil = pause > 0 ? now + pause : 0;
    if (nobodyListening) this.resolveWaiters(false);
    if (this.ring.size > 0 || this.hasUnreported) this.armRetry(delay);
    // At exit, a daemon that answered (a 503, a 429, a reset) is retried as a flush() retries it,
    // while the exit flush lasts: a short script whose first request met a 503 lost every record.
    if (this.exiting && !nobodyListening && this.nextAttemptAt < this.exitUntil) this.holdRetry();
  }

  /** After a success: the next failure starts from the smallest backoff again. */
  protected succeeded(): void {
    this.backoffMs = 0;
    this.madeConnection();
  }

  /**
   * A connection was made: attempts may start at once again. The backoff itself is kept until
   * the connection proves stable ({@link lost}): a daemon that accepts and ends it at once is
   * not one that works.
   */
  protected madeConnection(): void {
    this.nextAttemptAt = 0;
    this.retryAfterUntil = 0;
  }

  /**
   * A connection went away after `livedMs`: reconnect soon (not immediately) if it had lived,
   * else with a longer backoff than the last time, as after a failed attempt.
   */
  protected lost(livedMs: number): void {
    this.backoffMs = livedMs >= STABLE_CONNECTION_MS ? 0 : Math.min(this.backoffMs * 2, MAX_BACKOFF_MS);
    this.failedSoft();
  }

  private failedSoft(): void {
    this.backoffMs = this.backoffMs || MIN_BACKOFF_MS;
    const delay = this.backoffMs / 2 + Math.random() * (this.backoffMs / 2);
    this.nextAttemptAt = Date.now() + delay;
    if (this.ring.size > 0 || this.hasUnreported) this.armRetry(delay);
  }

  private armRetry(delay: number): void {
    if (this.retryTimer || this.closed) return;
    const timer = setTimeout(() => {
      this.retryTimer = undefined;
      try {
        this.kick();
      } catch {
        /* never throw */
      }
      // Timers run on the event loop's clock, at times a few ms before `nextAttemptAt` by Date.now():
      // mayAttempt() then waits the rest, and a timer that held the process (exitFlush) still does.
      if (timer.hasRef()) this.holdRetry();
    }, Math.max(0, delay));
    timer.unref();
    this.retryTimer = timer;
  }

  /** The pending retry keeps the process up (only the exit flush asks for this). */
  private holdRetry(): void {
    this.retryTimer?.ref();
  }

  protected clearRetry(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.nextAttemptAt = 0;
  }

  /**
   * Flush requested: skip the backoff wait, but not a pause the daemon asked for (`Retry-After`):
   * the retry then waits for that alone, and the flush's own timeout still bounds the wait.
   * Returns whether an attempt may start now.
   */
  protected skipBackoff(): boolean {
    this.clearRetry();
    const left = this.retryAfterUntil - Date.now();
    if (left <= 0) return true;
    this.nextAttemptAt = this.retryAfterUntil;
    this.armRetry(left);
    return false;
  }

  /**
   * Records were refused for good (an HTTP 4xx: dropped, never retried) or lost with the
   * connection their write was on (Unix socket): the flushes waiting now answer false when they
   * end, even if the records after them are accepted. They resolved true, as if the records had
   * been written, and `sent` did not count them.
   */
  protected refusedRecords(): void {
    for (const w of this.waiters) w.refused = true;
  }

  /** Everything written: resolve the flush waiters. */
  protected settle(): void {
    if (this.ring.size === 0 && this.inFlight === 0) this.resolveWaiters(true);
  }

  private resolveWaiters(ok: boolean): void {
    if (this.waiters.length === 0) return;
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) {
      clearTimeout(w.timer);
      w.resolve(ok && !w.refused);
    }
  }

  /**
   * Resolves true once everything buffered is written (over HTTP: accepted, a 2xx); false on
   * timeout, at once when nobody listens (see `failed`), or when some of it was refused for good
   * or lost with a connection (`refusedRecords`): a daemon that fails a request is retried
   * meanwhile. Never rejects.
   * `timeoutMs` beyond what a timer can wait (~24.8 days, e.g. Infinity) waits that long; a negative
   * or NaN one does not wait. `hold: false`: the wait does not keep the process up (nobody awaits
   * it: configure() flushing a transport it replaced); if the app ends meanwhile, the exit flush
   * delivers what is left within its one flushTimeoutMs, instead of after this wait.
   */
  flush(timeoutMs: number, hold = true): Promise<boolean> {
    if (this.ring.size === 0 && this.inFlight === 0) return Promise.resolve(true);
    if (this.closed) return Promise.resolve(false);
    // setTimeout turns anything above 2^31-1 ms (or NaN) into 1 ms, which gave up on the flush at once.
    const waitMs = timeoutMs >= 0 ? Math.min(timeoutMs, MAX_TIMER_MS) : 0;
    return new Promise<boolean>((resolve) => {
      const w: Waiter = {
        resolve,
        // Deliberately ref'd (unless `hold` is false): the app is awaiting this promise.
        timer: setTimeout(() => {
          this.waiters = this.waiters.filter((x) => x !== w);
          resolve(false);
        }, waitMs),
        hold,
      };
      if (!hold) w.timer.unref();
      this.waiters.push(w);
      if (hold) this.immediate?.ref();
      try {
        this.urgent();
      } catch {
        /* never throw */
      }
    });
  }

  /** Set while flushing at `beforeExit`: the process stays up just long enough for it. */
  protected get exiting(): boolean {
    return this.exitUntil !== 0 && Date.now() < this.exitUntil;
  }

  /** While exiting: how long the exit flush may still hold the process (ms). */
  protected get exitLeftMs(): number {
    return Math.max(0, this.exitUntil - Date.now());
  }

  /**
   * The app is done but for a write of ours the daemon is slow to take: the pending write holds
   * the event loop, so `beforeExit` has not come, but this is the exit flush all the same. Starts
   * its deadline (flushTimeoutMs) as `exitFlush` does, or goes on with the one running; returns
   * whether the write may still be waited for.
   */
  protected exitFlushWaitingForWrite(): boolean {
    if (this.closed) return false;
    this.startExitFlush(Date.now());
    return this.exiting;
  }

  /** The first exit flush, or the app produced more since the last one: a new one, with its deadline. False if none starts. */
  private startExitFlush(now: number): boolean {
    if (counters.enqueued === this.exitEnqueued) return false;
    this.exitEnqueued = counters.enqueued;
    this.exitUntil = now + Math.min(this.opts.exitFlushMs?.() ?? DEFAULT_EXIT_FLUSH_MS, MAX_TIMER_MS);
    return true;
  }

  /** At `beforeExit`: one more attempt to deliver what is buffered, if it can make progress in time. */
  private exitFlush(): void {
    if (this.closed || (this.ring.size === 0 && this.inFlight === 0 && !this.hasUnreported)) return;
    const now = Date.now();
    // The first beforeExit, or the app produced more since the last one: a new exit flush.
    if (!this.startExitFlush(now) && now >= this.exitUntil) return;
    // Retry only if the last attempt delivered something or the app produced more since: a daemon
    // that is down or stuck gets one attempt, then the process is let go.
    const mark = `${counters.sent}/${counters.enqueued}`;
    if (mark === this.lastExitMark) return;
    this.lastExitMark = mark;
    this.immediate?.ref();
    if (!this.skipBackoff()) {
      // The daemon asked for a pause: hold the process for it if it ends in time, else let it go.
      if (this.nextAttemptAt < this.exitUntil) this.holdRetry();
      return;
    }
    this.urgent();
  }

  /**
   * Drops another transport could not report (`configure()` replaced it): this one reports them
   * with its own, at its next write.
   */
  adoptUnreported(drops: ReadonlyMap<string, number>): void {
    if (this.closed || drops.size === 0) return;
    for (const [reason, n] of drops) this.unreported.set(reason, (this.unreported.get(reason) ?? 0) + n);
    try {
      this.kick();
    } catch {
      /* never throw */
    }
  }

  /**
   * Stop: count what is left as dropped, release sockets and timers. Returns the drops not yet
   * reported to the daemon (a replacing transport may report them).
   */
  close(): ReadonlyMap<string, number> {
    if (this.closed) return new Map();
    this.closed = true;
    openTransports.delete(this);
    this.clearRetry();
    // Flush waiters learn whether everything got out: nothing buffered, nothing in flight.
    const delivered = this.ring.size === 0 && this.inFlight === 0;
    this.drop('shutdown', this.ring.clear());
    // The write or request in progress is cut short and counted here, at once (release() must
    // not count it again), so sdkStats() adds up as soon as close() returns.
    this.release();
    this.resolveWaiters(delivered);
    const unreported = this.unreported;
    this.unreported = new Map();
    return unreported;
  }
}
