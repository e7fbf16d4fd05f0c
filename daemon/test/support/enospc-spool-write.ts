/**
 * Preloaded into a daemon under test (`node --import <this file>`), with DSPY_TEST_SPOOL_ENOSPC set:
 * stands in for a disk that fills up exactly at a chunk boundary of the shutdown's spool write.
 * The first write to a spool `.tmp` is taken whole; every later one fails with ENOSPC, as a
 * write(2) does once the disk is full (a write the disk takes in part says so in its count
 * instead, without an error: see the ulimit test). Linux only (/proc/self/fd names the file).
 */
import { readlinkSync } from 'node:fs';
import { open } from 'node:fs/promises';

type Write = (this: { fd: number }, data: unknown, ...rest: unknown[]) => Promise<unknown>;

if (process.env.DSPY_TEST_SPOOL_ENOSPC) {
  const probe = await open(process.execPath, 'r');
  const proto = Object.getPrototypeOf(probe) as { write: Write };
  await probe.close();
  const write = proto.write;
  let taken = 0;
  const isSpoolTmp = (fd: number) => {
    try {
      return /\/spool-\d+-\d+\.tmp$/.test(readlinkSync(`/proc/self/fd/${fd}`));
    } catch {
      return false;
    }
  };
  proto.write = async function (this: { fd: number }, data: unknown, ...rest: unknown[]) {
    if (!isSpoolTmp(this.fd)) return write.call(this, data, ...rest);
    if (taken++ === 0) return write.call(this, data, ...rest);
    throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' });
  };
}
