/**
 * Preloaded into daemons under test (`node --import <this file>`), with DSPY_TEST_RENDEZVOUS_DIR
 * set to a directory shared by two daemons and DSPY_TEST_RENDEZVOUS_SOCKET to their socket path:
 * widens the window between judging the socket file stale and removing it. A daemon about to
 * remove that file notes its arrival in the directory and waits for the other one (at most 5 s,
 * a hang guard) before going on, as two daemons starting in the same instant would both be.
 * With DSPY_TEST_RENDEZVOUS_LOCK (a spool dir's `.lock`) instead, the same before removing that
 * file, which the spool lock does synchronously (so the wait blocks, as its caller would).
 */
import fs, { readdirSync, writeFileSync } from 'node:fs';
import fsPromises from 'node:fs/promises';
import { syncBuiltinESMExports } from 'node:module';
import { join } from 'node:path';

const dir = process.env.DSPY_TEST_RENDEZVOUS_DIR;
const lock = process.env.DSPY_TEST_RENDEZVOUS_LOCK;
if (dir && lock) {
  const unlinkSync = fs.unlinkSync;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  fs.unlinkSync = (path) => {
    if (path === lock) {
      writeFileSync(join(dir, `arrived-${process.pid}`), '');
      const deadline = Date.now() + 5_000;
      while (readdirSync(dir).filter((n) => n.startsWith('arrived-')).length < 2 && Date.now() < deadline) Atomics.wait(pause, 0, 0, 20);
    }
    unlinkSync(path);
  };
  syncBuiltinESMExports();
}
const socket = process.env.DSPY_TEST_RENDEZVOUS_SOCKET;
if (dir && socket) {
  const unlink = fsPromises.unlink;
  fsPromises.unlink = async (path, ...rest) => {
    if (path === socket) {
      writeFileSync(join(dir, `arrived-${process.pid}`), '');
      const deadline = Date.now() + 5_000;
      while (readdirSync(dir).filter((n) => n.startsWith('arrived-')).length < 2 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
    return unlink(path, ...rest);
  };
  syncBuiltinESMExports();
}
