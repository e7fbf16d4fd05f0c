/**
 * Preloaded into a daemon under test (`node --import <this file>`), with DSPY_TEST_SPOOL_READ_EIO
 * set to a count: stands in for a flaky disk under the start's spool replay. Reads of a spool file
 * (`spool-….ndjson`) succeed for that many chunks, then one fails with EIO, as read(2) does on a
 * bad sector; later reads succeed again. Linux only (/proc/self/fd names the file).
 */
import fs, { readlinkSync } from 'node:fs';

type Read = (fd: number, ...rest: unknown[]) => void;

const after = Number(process.env.DSPY_TEST_SPOOL_READ_EIO ?? NaN);
if (Number.isInteger(after) && after >= 0) {
  const read = fs.read as unknown as Read;
  let reads = 0;
  const isSpoolFile = (fd: number) => {
    try {
      return /\/spool-[^/]*\.ndjson$/.test(readlinkSync(`/proc/self/fd/${fd}`));
    } catch {
      return false;
    }
  };
  // The read stream of a spool replay calls fs.read(fd, buffer, offset, length, position, callback).
  (fs as unknown as { read: Read }).read = function (fd: number, ...rest: unknown[]) {
    if (!isSpoolFile(fd) || reads++ !== after) return read.call(fs, fd, ...rest);
    const callback = rest[rest.length - 1] as (err: NodeJS.ErrnoException) => void;
    process.nextTick(() => callback(Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO', errno: -5, syscall: 'read' })));
  };
}
