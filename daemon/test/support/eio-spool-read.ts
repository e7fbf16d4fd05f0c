/**
 * Preloaded into a daemon under test (`node --import <this file>`), with DSPY_TEST_SPOOL_READ_EIO
 * set to a count: stands in for a flaky disk under the start's spool replay. Reads of a spool file
 * (`spool-….ndjson`) succeed for that many chunks, then one fails with EIO, as read(2) does on a
 * bad sector; later reads succeed again. Linux only (/proc/self/fd names the file).
 */
import { interceptSpoolReads } from './spool-reads.js';

const after = Number(process.env.DSPY_TEST_SPOOL_READ_EIO ?? NaN);
if (Number.isInteger(after) && after >= 0) {
  let reads = 0;
  interceptSpoolReads((proceed, callback) => {
    if (reads++ !== after) return proceed();
    process.nextTick(() => callback(Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO', errno: -5, syscall: 'read' })));
  });
}
