/**
 * The spool dir's lock: one daemon per --spool-dir. Two daemons on one dir would both replay it
 * (everything delivered twice) and delete files the other is reading.
 */
import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { LockHeldError, lockForProcess } from '../process-lock.js';

/** Another live daemon holds the spool dir. */
export class SpoolInUseError extends Error {}

const LOCK = '.lock';

/** Another daemon holds the spool dir (`holder`: `pid N`, or `starting`). */
const inUse = (dir: string, holder: string) => new SpoolInUseError(`another dspy-o11yd (${holder}) uses the spool dir ${dir}; give each daemon its own --spool-dir`);

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // alive, another user's
  }
};

/**
 * When process `pid` started, in clock ticks since boot (field 22 of /proc/<pid>/stat: Linux), or
 * '' where that cannot be read. Unlike a wall-clock time, no clock step changes it.
 */
function startTicks(pid: number): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // After the command name (in parentheses, which it may contain too) comes field 3.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? '';
  } catch {
    return '';
  }
}

/**
 * Takes the spool dir for this process (a `.lock` file holding its pid, and when it started) and
 * returns its release. A lock whose process is gone (or is this one: a
 * container restarted with the same pid) is taken over; so is one whose pid another process has
 * now (started at another time: a daemon that crashed, then the machine rebooted), which refused
 * every start. Pids only tell within one pid namespace: containers sharing a spool volume are not
 * told apart (give each its own dir). The file is judged and replaced under a process lock
 * ({@link lockForProcess}): two daemons starting at once both judged a dead daemon's lock stale,
 * both replaced it, and both took the dir.
 */
export async function lockSpoolDir(dir: string): Promise<() => void> {
  const path = join(dir, LOCK);
  const unlock = await lockForProcess('spool', dir).catch((err: unknown) => {
    if (!(err instanceof LockHeldError)) throw err;
    // Its pid, for the message; no file yet: it is taking the dir now.
    let holder = '';
    try {
      holder = readFileSync(path, 'utf8').split(' ')[0] ?? '';
    } catch {
      /* not written yet */
    }
    throw inUse(dir, /^\d+$/.test(holder) ? `pid ${holder}` : 'starting');
  });
  try {
    return takeLockFile(dir, path, unlock);
  } catch (err) {
    unlock();
    throw err;
  }
}

function takeLockFile(dir: string, path: string, unlock: () => void): () => void {
  const mine = `${process.pid} ${startTicks(process.pid)}`.trim();
  for (let attempt = 0; ; attempt++) {
    try {
      const fd = openSync(path, 'wx', 0o600);
      writeSync(fd, mine);
      closeSync(fd);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw err;
      const [pid = '', started] = readFileSync(path, 'utf8').split(' ');
      const holder = Number.parseInt(pid, 10);
      // A lock without a start time (an older daemon's, or not Linux) goes by the pid alone.
      const now = started === undefined ? '' : startTicks(holder);
      const reused = now !== '' && now !== started;
      if (Number.isSafeInteger(holder) && holder > 0 && holder !== process.pid && alive(holder) && !reused) {
        throw inUse(dir, `pid ${holder}`);
      }
      unlinkSync(path); // stale: its daemon is gone
    }
  }
  return () => {
    try {
      if (readFileSync(path, 'utf8') === mine) unlinkSync(path);
    } catch {
      /* already gone */
    }
    unlock(); // only once the file is gone: a daemon starting now finds none to judge
  };
}
