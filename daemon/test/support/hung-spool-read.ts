/**
 * Preloaded into a daemon under test (`node --import <this file>`), with DSPY_TEST_HANG_READ_FIFO
 * set to a FIFO: stands in for a disk that hangs under the start's spool replay. The first read of
 * a spool file (`spool-….ndjson`) blocks a libuv thread in the kernel (opening the FIFO for
 * writing) until the test opens the FIFO for reading, as a read(2) from a hung mount would; then
 * it reads. Linux only (/proc/self/fd names the file).
 */
import fs, { readlinkSync } from 'node:fs';

type Read = (fd: number, ...rest: unknown[]) => void;

const fifo = process.env.DSPY_TEST_HANG_READ_FIFO;
if (fifo) {
  const read = fs.read as unknown as Read;
  let hung = false;
  const isSpoolFile = (fd: number) => {
    try {
      return /\/spool-[^/]*\.ndjson$/.test(readlinkSync(`/proc/self/fd/${fd}`));
    } catch {
      return false;
    }
  };
  // The read stream of a spool replay calls fs.read(fd, buffer, offset, length, position, callback).
  (fs as unknown as { read: Read }).read = function (fd: number, ...rest: unknown[]) {
    if (hung || !isSpoolFile(fd)) return read.call(fs, fd, ...rest);
    hung = true;
    fs.open(fifo, 'w', (err, blocker) => {
      if (!err) fs.closeSync(blocker);
      read.call(fs, fd, ...rest);
    });
  };
}
