/**
 * `unix:///path`: one persistent, unref'd socket to the daemon. Records of one event-loop turn
 * are coalesced into ONE write on the next turn (setImmediate); at most one write is in flight,
 * so while the daemon is slow the records wait in the bounded ring (dropping the oldest) rather
 * than in an unbounded socket buffer. The ring keeps waiting records as UTF-8 bytes outside the
 * V8 heap (byte-ring.ts); a write is one string (nothing waited) or one Buffer. Every connection
 * starts with `hello`; drops not yet reported go out as `stats` records in front of the next batch.
 */
import net from 'node:net';
import { debug } from '../config.js';
import { Transport, counters, type TransportOptions } from './base.js';
import { ByteRing } from './byte-ring.js';

const WRITE_WATCH_MS = 250;
/**
 * Backlog a write takes on top of what arrived since the previous write finished. While a write
 * waits for the daemon, records pile up; writing them all at once when it finishes made one turn
 * of the event loop copy up to a MiB (1-2 ms with strings). Instead each write carries the
 * app's recent output plus this much of the backlog, which drains over the next turns.
 */
const CATCH_UP_BYTES = 128 * 1024;
const WRITE_WRAPS = new Set(['SimpleWriteWrap', 'WriteWrap', 'ShutdownWrap']);

/**
 * stdout and stderr, and stdin while it is not being read: listed among active handles without
 * keeping the process up. stdin being read (an interactive CLI, `cat x | node app`) does keep it up,
 * so the app is not done.
 */
const isIdleStdio = (h: unknown): boolean => {
  const s = h as { fd?: unknown; readableFlowing?: unknown; _handle?: { reading?: unknown } } | null;
  const fd = s?.fd;
  if (fd === 1 || fd === 2) return true;
  return fd === 0 && s?.readableFlowing !== true && s?._handle?.reading !== true;
};

/**
 * True when nothing but pending socket writes (ours: our socket itself is unref'd) and the
 * process's stdio keeps the event loop alive, i.e. the app is done and would exit but for a write
 * the daemon is not reading. Any timer, immediate, request or other handle means "still busy".
 */
function onlyWritesKeepProcessAlive(): boolean {
  const p = process as { getActiveResourcesInfo?: () => string[]; _getActiveHandles?: () => unknown[] };
  if (typeof p.getActiveResourcesInfo !== 'function') return false;
  let handles = 0;
  for (const r of p.getActiveResourcesInfo()) {
    if (WRITE_WRAPS.has(r)) continue;
    if (r === 'PipeWrap' || r === 'TTYWrap') {
      handles++;
      continue;
    }
    return false;
  }
  if (handles === 0) return true;
  // Pipes and TTYs listed: fine if they are only stdio that does not hold the process (listed even when idle).
  if (typeof p._getActiveHandles !== 'function') return false;
  const list = p._getActiveHandles();
  return Array.isArray(list) && list.every(isIdleStdio);
}

/**
 * The longest socket path a Unix socket address holds (`sun_path`, with its NUL: 108 bytes on
 * Linux, 104 on macOS and the BSDs). A longer one is cut by the system, so the daemon is looked
 * for at another path and all the app saw was ENOENT.
 */
const MAX_SOCKET_PATH_BYTES = process.platform === 'linux' ? 107 : process.platform === 'win32' ? Infinity : 103; // Windows: a named pipe

type State = 'idle' | 'connecting' | 'connected';

export class UnixTransport extends Transport<ByteRing> {
  private socket: net.Socket | undefined;
  private state: State = 'idle';
  /** The error code of the connection attempt in progress, if it failed. */
  private connectError: string | undefined;
  private needHello = false;
  /** When the current connection was made (Date.now()), to tell a stable one from one ended at once. */
  private connectedAt = 0;
  private writeId = 0;
  private inFlightId = 0;
  private inFlightSince = 0;
  private inFlightStats: Map<string, number> | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  /** `ring.pushed` when the last write finished (or started, or the connection opened). */
  private pushedAtWrite = 0;
  private readonly maxBatch: number;
  private readonly writeTimeoutMs: number;

  constructor(
    private readonly path: string,
    opts: TransportOptions,
  ) {
    super(opts, new ByteRing(opts.maxBufferRecords, opts.maxBufferBytes));
    this.maxBatch = opts.maxBatchBytes ?? 1024 * 1024;
    this.writeTimeoutMs = opts.writeTimeoutMs ?? 10_000;
    const bytes = Buffer.byteLength(path);
    if (bytes > MAX_SOCKET_PATH_BYTES) {
      debug(`socket path ${path} is too long: ${bytes} bytes, over the ${MAX_SOCKET_PATH_BYTES} bytes a Unix socket address holds; the system cuts it, so the daemon is not found there (ENOENT): use a shorter path`);
    }
  }

  get connected(): boolean {
    return this.state === 'connected';
  }

  protected kick(): void {
    if (this.state === 'connected') {
      if (this.inFlightId === 0) this.schedule();
    } else if (this.state === 'idle' && this.mayAttempt()) this.connect();
  }

  protected urgent(): void {
    if (this.state === 'idle') {
      this.clearRetry();
      this.connect();
    } else if (this.state === 'connected' && this.inFlightId === 0) {
      if (this.exiting) this.tick();
      else this.schedule();
    }
  }

  private connect(): void {
    if (this.closed) return;
    this.state = 'connecting';
    let socket: net.Socket;
    try {
      socket = net.createConnection({ path: this.path });
    } catch {
      this.state = 'idle';
      this.failed(true);
      return;
    }
    this.socket = socket;
    // Always unref'd, even while flushing at exit: the pending connect and write requests keep
    // the process up exactly as long as they are in progress, and the stall check below relies on
    // our socket never holding the event loop by itself.
    socket.unref();
    socket.on('connect', () => {
      if (this.socket !== socket) return;
      this.state = 'connected';
      this.connectedAt = Date.now();
      counters.connects++;
      this.madeConnection();
      this.needHello = true;
      // What was buffered while disconnected is backlog too: it drains like the rest.
      this.pushedAtWrite = this.ring.pushed;
      // Read (and discard) so the daemon closing the connection is noticed at once.
      socket.resume();
      if (this.exiting) this.tick();
      else this.schedule();
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      // 'close' follows. Without a diagnostic, an app whose daemon is not running (the usual
      // first mistake) was silent even under DSPY_O11Y_DEBUG=1, while the HTTP transport says so.
      if (this.socket === socket && this.state === 'connecting') {
        this.connectError = err.code;
        debug(
          err.code === 'EAGAIN'
            ? `dspy-o11yd at ${this.path} has more connections waiting than it accepts yet (EAGAIN): retrying with backoff`
            : `cannot connect to ${this.path} (${err.code ?? err.message}): is dspy-o11yd running? retrying with backoff`,
        );
      }
    });
    socket.on('close', () => this.onClose(socket));
  }

  private onClose(socket: net.Socket): void {
    if (this.socket !== socket) return;
    this.socket = undefined;
    const wasConnected = this.state === 'connected';
    this.state = 'idle';
    this.abortInFlight('connection_lost');
    this.stopWatchdog();
    if (this.closed) return;
    if (wasConnected) this.lost(Date.now() - this.connectedAt);
    // Could not connect: nobody listens on the socket, unless its queue of connections waiting to
    // be accepted was full (EAGAIN: a daemon that is there, busy, as when many apps start at once),
    // which flush() and the exit flush wait for like any other failure of a daemon that is there.
    else this.failed(this.connectError !== 'EAGAIN');
    this.connectError = undefined;
  }

  protected tick(): void {
    const socket = this.socket;
    if (this.state !== 'connected' || this.inFlightId !== 0 || !socket) return;
    // The daemon ended the connection (shutting down, or past its --max-connections): it still
    // reads what was written before, but a write now fails (EPIPE) and its records were dropped.
    // They wait in the ring for the reconnect that 'close' brings.
    if (socket.readableEnded || !socket.writable) return;
    let prefix = '';
    const hello = this.needHello;
    if (hello) prefix = this.opts.hello;
    const stats = this.takeStats();
    prefix += stats.text;
    const fresh = this.ring.pushed - this.pushedAtWrite;
    this.pushedAtWrite = this.ring.pushed;
    if (!prefix && this.ring.size === 0) {
      this.settle();
      return;
    }
    // One Buffer of its own per write: the hello/stats prefix, then the oldest records.
    const { data, records: n } = this.ring.take(Math.min(this.maxBatch, fresh + CATCH_UP_BYTES), prefix);
    const id = ++this.writeId;
    this.inFlightId = id;
    this.inFlight = n;
    this.inFlightSince = Date.now();
    this.inFlightStats = stats.snapshot;
    this.needHello = false;
    try {
      // A write the connection's reset cut short (the daemon killed with it unread) completes
      // without an error, the socket already destroyed: it was counted sent, and never reported.
      socket.write(data, (err) => this.onWritten(id, err ?? (socket.destroyed ? new Error('connection lost') : undefined)));
    } catch {
      this.abortInFlight('connection_lost');
      socket.destroy();
      return;
    }
    this.armWatchdog();
  }

  private onWritten(id: number, err: Error | undefined): void {
    if (id !== this.inFlightId) return;
    if (err) {
      this.abortInFlight('connection_lost');
      this.socket?.destroy();
      return;
    }
    counters.sent += this.inFlight;
    this.pushedAtWrite = this.ring.pushed;
    this.ackStats(this.inFlightStats);
    this.inFlightId = 0;
    this.inFlight = 0;
    this.inFlightStats = undefined;
    if (this.ring.size > 0 || this.hasUnreported) {
      if (this.exiting) this.tick();
      else this.schedule();
    } else this.settle();
  }

  private abortInFlight(reason: string): void {
    if (this.inFlightId === 0) return;
    this.inFlightId = 0;
    this.drop(reason, this.inFlight);
    // The flushes waiting for these records answer false, as for records an HTTP daemon refused:
    // they answered true once the rest was written on a new connection.
    if (this.inFlight > 0) this.refusedRecords();
    this.inFlight = 0;
    this.inFlightStats = undefined;
  }

  private armWatchdog(): void {
    if (this.watchdog) return;
    this.watchdog = setInterval(() => this.checkStall(), WRITE_WATCH_MS);
    this.watchdog.unref();
  }

  private stopWatchdog(): void {
    if (this.watchdog) clearInterval(this.watchdog);
    this.watchdog = undefined;
  }

  /**
   * A write the daemon does not read holds the event loop open (libuv counts the write request),
   * which would keep an app that is done from exiting. While the app is busy, give up on it after
   * `writeTimeoutMs`. Once nothing else keeps the app up it is done: that wait is its exit flush,
   * and the write is given up on when the exit flush's time (flushTimeoutMs) is over. Giving up
   * at the first check (250 ms) lost the batch of a finished app whose daemon was briefly slow
   * to read (a CPU-starved daemon, a GC pause), whatever flushTimeoutMs allowed.
   */
  private checkStall(): void {
    if (this.inFlightId === 0) {
      this.stopWatchdog();
      return;
    }
    const age = Date.now() - this.inFlightSince;
    const done = age >= WRITE_WATCH_MS && onlyWritesKeepProcessAlive();
    if (done ? !this.exitFlushWaitingForWrite() : age >= this.writeTimeoutMs) {
      this.abortInFlight('write_timeout');
      this.socket?.destroy();
    }
  }

  protected release(): void {
    this.stopWatchdog();
    const s = this.socket;
    this.socket = undefined;
    this.state = 'idle';
    if (s) {
      if (this.inFlightId !== 0) {
        // Node completes a write cut short by destroy() without an error: count it lost here, not sent there.
        this.abortInFlight('shutdown');
        s.destroy();
      } else {
        // Closed once our end is flushed, not when the daemon answers with its own end: a daemon
        // that stopped reading never does, and each replaced connection kept its descriptor and
        // its transport (buffer included). What was written stays readable on the daemon's side.
        s.end(() => s.destroy());
      }
      s.unref();
    }
  }
}
