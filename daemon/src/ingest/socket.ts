/**
 * Unix socket receiver: many concurrent connections, each an NDJSON stream with its own
 * `hello` resource. Reads as fast as the kernel delivers; nothing here waits on export.
 */
import { chmod, lstat, unlink } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import type { Logger } from '../log.js';
import { LineSplitter, PartialLineBudget } from './line-splitter.js';
import type { RecordSink } from './record-sink.js';

export interface SocketReceiver {
  readonly path: string;
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
export async function listenSocket(path: string, sink: RecordSink, log: Logger, maxRecordBytes: number, partialLineTimeoutMs = 60_000): Promise<SocketReceiver> {
  await clearStaleSocket(path);
  const open = new Set<Socket>();
  const budget = new PartialLineBudget(PARTIAL_LINES_BUDGET_RECORDS * maxRecordBytes);

  const server: Server = createServer((socket) => {
    open.add(socket);
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
      if (!splitter.holding) return;
      sink.rejectIncomplete(session);
      log.warn({ idleMs: partialLineTimeoutMs }, 'a socket client sent part of a record and then nothing: connection closed, the part counted invalid (incomplete)');
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
      splitter.discard(); // a partial line left by a client gone without a newline
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
  // Only the daemon's user and group may write telemetry into it.
  await chmod(path, 0o660);
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
      const forced = setTimeout(() => open.forEach((s) => s.destroy()), forceAfterMs);
      await closed;
      clearTimeout(forced);
      await unlink(path).catch(() => undefined);
    },
  };
}
