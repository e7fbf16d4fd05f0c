/**
 * Unix socket receiver: many concurrent connections (up to --max-connections), each an NDJSON
 * stream with its own `hello` resource. Reads as fast as the kernel delivers; nothing here waits
 * on export.
 */
import { chmod, lstat, unlink } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { basename, dirname } from 'node:path';
import { oncePer, type Logger } from '../log.js';
import { LockHeldError, lockForProcess } from '../process-lock.js';
import { LineSplitter, PartialLineBudget } from './line-splitter.js';
import type { RecordSink } from './record-sink.js';

export interface SocketReceiver {
  readonly path: string;
  /** Connections open now within --max-connections (refused ones being closed are not counted). */
  readonly connections: number;
  /** Stop listening; connections still open after `forceAfterMs` (default 1000) are destroyed. */
  close(forceAfterMs?: number): Promise<void>;
}

export class SocketInUseError extends Error {}

/**
 * Partial lines held across all connections: this many records of --max-record-bytes (16 MiB by
 * default). Past it, the line that does not fit is rejected as too_large and skipped to its
 * newline; its connection and the other records live on.
 */
export const PARTIAL_LINES_BUDGET_RECORDS = 16;

/**
 * Refused connections (past --max-connections) still open. A refused connection is sent EOF at
 * once and read until its client closes: an SDK writes its first batch as soon as it connects,
 * before it can see the EOF, and closing without reading (Node's `server.maxConnections`) lost
 * that batch on every reconnect. Past this many, the oldest is destroyed, so that a client that
 * never closes cannot hold more descriptors this way.
 */
export const REFUSED_MAX_OPEN = 64;
/** How long a refused connection may stay open after our EOF: an SDK closes it within a turn of its event loop. */
export const REFUSED_CLOSE_GRACE_MS = 5_000;
/** One warning about refused connections per this many ms at most: a leaking client is refused as fast as it connects. */
export const REFUSED_LOG_MS = 10_000;

export interface SocketLimits {
  /** Connections open at once at most (--max-connections; 0: no limit). */
  readonly maxConnections: number;
  /** Each refused connection, as it is refused (for the counters). */
  readonly onRefused?: () => void;
}

/**
 * One daemon at a time per socket path, from before the stale check until its file is removed:
 * two starting in the same instant both judged the file stale, both removed it and both bound,
 * the second removing the first's live socket (which then served nobody, unseen). Elsewhere than
 * Linux ({@link lockForProcess}), as before, the stale check alone.
 */
async function lockSocketPath(path: string): Promise<() => void> {
  // The directory exists (config.ts checks it).
  return lockForProcess('socket', dirname(path), basename(path)).catch((err: unknown) => {
    throw err instanceof LockHeldError ? new SocketInUseError(`another daemon is already listening on ${path}, or starting on it`) : err;
  });
}

/** A socket file left by a dead daemon is replaced; a live daemon on it is an error. */
async function clearStaleSocket(path: string): Promise<void> {
  let stat;
  try {
    stat = await lstat(path);
  } catch {
    return; // nothing there
  }
  if (!stat.isSocket()) throw new SocketInUseError(`${path} exists and is not a socket; refusing to replace it`);
  const alive = await new Promise<boolean | NodeJS.ErrnoException>((resolve) => {
    const probe = createConnection(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    // Only "nobody listens" (or the file just went away) proves the file stale. Anything else,
    // e.g. EAGAIN from a live daemon whose accept backlog is full, must not cost it its socket.
    probe.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED' || err.code === 'ENOENT' ? false : err));
  });
  if (alive === true) throw new SocketInUseError(`another daemon is already listening on ${path}`);
  if (alive !== false) {
    throw new SocketInUseError(`cannot tell whether a daemon is listening on ${path} (connect: ${alive.code ?? alive.message}); refusing to replace it`);
  }
  await unlink(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
}

/**
 * `partialLineTimeoutMs`: a connection holding part of a line that sends nothing more for this
 * long is closed and the part counted invalid (`incomplete`): a hung client must not keep its
 * share of the partial-line budget forever. Idle connections between records are left alone.
 */
export async function listenSocket(
  path: string,
  sink: RecordSink,
  log: Logger,
  maxRecordBytes: number,
  partialLineTimeoutMs = 60_000,
  limits: SocketLimits = { maxConnections: 0 },
): Promise<SocketReceiver> {
  const unlock = await lockSocketPath(path);
  try {
    await clearStaleSocket(path);
  } catch (err) {
    unlock();
    throw err;
  }
  const open = new Set<Socket>();
  /** Refused connections not closed yet, oldest first. */
  const refusing = new Set<Socket>();
  const refusalWarning = oncePer(REFUSED_LOG_MS);
  /** Refused since the last warning. */
  let refusedSince = 0;
  const budget = new PartialLineBudget(PARTIAL_LINES_BUDGET_RECORDS * maxRecordBytes);

  /**
   * Past --max-connections: EOF now, so the client goes and reconnects later (the SDK with its
   * backoff, keeping its records); what it writes meanwhile is read as usual. No idle timeout
   * closes accepted connections instead: an SDK's one connection may rightly idle for hours.
   */
  const refuse = (socket: Socket) => {
    limits.onRefused?.();
    if (refusing.size >= REFUSED_MAX_OPEN) {
      const oldest = refusing.values().next().value!;
      refusing.delete(oldest);
      oldest.destroy();
    }
    refusing.add(socket);
    socket.end();
    const grace = setTimeout(() => socket.destroy(), REFUSED_CLOSE_GRACE_MS);
    grace.unref();
    socket.once('close', () => clearTimeout(grace));
    refusedSince++;
    if (!refusalWarning()) return;
    log.warn(
      { maxConnections: limits.maxConnections, connections: open.size, refused: refusedSince },
      `Unix socket connections at --max-connections (${limits.maxConnections}): new ones are refused (told to reconnect later; what they already wrote is kept). A client that opens connections and never closes them holds the others; if that many apps share this daemon, raise --max-connections`,
    );
    refusedSince = 0;
  };

  const server: Server = createServer((socket) => {
    if (limits.maxConnections > 0 && open.size >= limits.maxConnections) refuse(socket);
    else open.add(socket);
    const session = sink.session('uds');
    let warned = false;
    const splitter = new LineSplitter(
      maxRecordBytes,
      (buf, start, end, ascii) => sink.acceptLine(session, buf, start, end, ascii),
      (cause) => {
        sink.rejectTooLarge(session, maxRecordBytes);
        if (cause === 'budget' && !warned) {
          warned = true;
          log.warn({ heldBytes: budget.used, budgetBytes: budget.maxBytes, connections: open.size }, 'partial lines of all connections over their budget (16 × --max-record-bytes): a record was rejected as too_large');
        }
      },
      budget,
    );
    socket.on('data', (chunk: Buffer) => splitter.push(chunk));
    // Node re-arms this on every read; 'timeout' only reports the idle time, closing is ours.
    if (partialLineTimeoutMs > 0) socket.setTimeout(partialLineTimeoutMs);
    socket.on('timeout', () => {
      // A line being skipped (over --max-record-bytes, already counted too_large) holds no bytes
      // but is no more a record boundary: a client hung there kept its connection for ever.
      if (splitter.skipping) {
        log.warn({ idleMs: partialLineTimeoutMs }, 'a socket client sent part of a record over --max-record-bytes and then nothing: connection closed (the record was counted too_large)');
      } else if (splitter.holding) {
        sink.rejectIncomplete(session);
        log.warn({ idleMs: partialLineTimeoutMs }, 'a socket client sent part of a record and then nothing: connection closed, the part counted invalid (incomplete)');
      } else return;
      splitter.discard();
      socket.destroy();
    });
    socket.on('end', () => {
      splitter.end();
      socket.end();
    });
    socket.on('error', (err) => log.debug({ err }, 'socket connection error'));
    socket.on('close', () => {
      open.delete(socket);
      refusing.delete(socket);
      splitter.discard(); // a partial line left by a client gone without a newline
    });
  });

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
    // Only the daemon's user and group may write telemetry into it.
    await chmod(path, 0o660);
  } catch (err) {
    server.close();
    unlock();
    throw err;
  }
  server.on('error', (err) => log.error({ err }, 'socket server error'));

  return {
    path,
    get connections() {
      return open.size;
    },
    async close(forceAfterMs = 1000) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Clients get EOF; whatever they already wrote has been read by then.
      for (const socket of open) socket.end();
      const forced = setTimeout(() => [...open, ...refusing].forEach((s) => s.destroy()), forceAfterMs);
      await closed;
      clearTimeout(forced);
      await unlink(path).catch(() => undefined);
      unlock(); // only once the file is gone: a daemon starting now finds none to judge
    },
  };
}
