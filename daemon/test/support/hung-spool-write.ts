/**
 * Preloaded into a daemon under test (`node --import <this file>`), with DSPY_TEST_HANG_FIFO set
 * to a FIFO: stands in for a disk that hangs in the middle of the shutdown's spool write. The
 * first write to a spool `.tmp` (or a carried spool's) puts half its lines in the file, then blocks a libuv thread in
 * the kernel (opening the FIFO for writing) until the test opens the FIFO for reading, as a
 * write(2) to a hung mount would. Like one, it also holds up process.exit, which joins libuv's
 * threads: the process outlives its "stopped" line until the "disk" comes back. Linux only
 * (/proc/self/fd names the file). DSPY_TEST_HANG_ONLY=spool hangs a new spool's write only, not a
 * carried one's.
 */
import { readlinkSync } from 'node:fs';
import { open } from 'node:fs/promises';

type Write = (this: { fd: number }, data: unknown, ...rest: unknown[]) => Promise<unknown>;

const fifo = process.env.DSPY_TEST_HANG_FIFO;
if (fifo) {
  const probe = await open(process.execPath, 'r');
  const proto = Object.getPrototypeOf(probe) as { write: Write };
  await probe.close();
  const write = proto.write;
  let hung = false;
  const isSpoolTmp = (fd: number) => {
    try {
      return (process.env.DSPY_TEST_HANG_ONLY === 'spool' ? /\/spool-\d+-\d+\.tmp$/ : /\/(spool|carry)-\d+-\d+\.tmp$/).test(readlinkSync(`/proc/self/fd/${fd}`));
    } catch {
      return false;
    }
  };
  proto.write = async function (this: { fd: number }, data: unknown, ...rest: unknown[]) {
    if (hung || typeof data !== 'string' || !isSpoolTmp(this.fd)) return write.call(this, data, ...rest);
    hung = true;
    const cut = data.lastIndexOf('\n', data.length >> 1) + 1;
    const first = (await write.call(this, data.slice(0, cut))) as { bytesWritten: number };
    await (await open(fifo, 'w')).close();
    const second = (await write.call(this, data.slice(cut))) as { bytesWritten: number };
    // One write as the caller sees it: all of it taken, once the disk is back.
    return { bytesWritten: first.bytesWritten + second.bytesWritten, buffer: data };
  };
}
