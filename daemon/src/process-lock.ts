/**
 * A lock held by this process for as long as it lives: an abstract Unix socket (Linux) named
 * after a file. Binding it is atomic, and the kernel frees it when its process dies, so there is
 * never a stale lock to judge: two daemons that both judged a file-based lock stale (a socket
 * file, a spool dir's `.lock`) both took it. It covers daemons of one network namespace
 * (containers sharing only a volume are not), and not other systems: there it always succeeds.
 */
import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import { createServer } from 'node:net';

/** Another process holds the lock. */
export class LockHeldError extends Error {}

/**
 * Takes the lock `kind` of the entry `entry` of the directory `dir` (which exists), or of `dir`
 * itself, and returns its release; rejects with {@link LockHeldError} while another process holds it.
 * The directory is named by its device and inode, not its path: one file is one lock through
 * symlinks, and the same path in another mount namespace sharing this network namespace
 * (systemd's PrivateTmp, a container on the host network) is another file.
 */
export async function lockForProcess(kind: string, dir: string, entry = ''): Promise<() => void> {
  if (process.platform !== 'linux') return () => undefined;
  const { dev, ino } = statSync(dir);
  const file = `${dev}:${ino}/${entry}`;
  const name = `\0dspy-o11yd-${kind}-${createHash('sha256').update(file).digest('hex').slice(0, 32)}`;
  const lock = createServer((peer) => peer.destroy());
  await new Promise<void>((resolve, reject) => {
    lock.once('error', (err: NodeJS.ErrnoException) => reject(err.code === 'EADDRINUSE' ? new LockHeldError(`${kind} lock of ${dir}/${entry} held`) : err));
    lock.listen(name, () => resolve());
  });
  // Nobody is meant to connect; one who does (an accept failing at EMFILE) must not crash the daemon.
  lock.on('error', () => undefined);
  lock.unref(); // held for the process, never keeping it alive
  return () => lock.close();
}
