/**
 * Preloaded into a daemon under test (`node --import <this file>`), with DSPY_TEST_HANG_READ_FIFO
 * set to a FIFO: stands in for a disk that hangs under the start's spool replay. The first read of
 * a spool file (`spool-….ndjson`) blocks a libuv thread in the kernel (opening the FIFO for
 * writing) until the test opens the FIFO for reading, as a read(2) from a hung mount would; then
 * it reads. Linux only (/proc/self/fd names the file).
 */
import fs from 'node:fs';
import { interceptSpoolReads } from './spool-reads.js';

const fifo = process.env.DSPY_TEST_HANG_READ_FIFO;
if (fifo) {
  let hung = false;
  interceptSpoolReads((proceed) => {
    if (hung) return proceed();
    hung = true;
    fs.open(fifo, 'w', (err, blocker) => {
      if (!err) fs.closeSync(blocker);
      proceed();
    });
  });
}
