/**
 * For preloads that stand in for a bad disk under the start's spool replay: routes each read of a
 * spool file (`spool-….ndjson`) to `onSpoolRead`, other reads to fs.read. Linux only
 * (/proc/self/fd names the file).
 */
import fs, { readlinkSync } from 'node:fs';

type Read = (fd: number, ...rest: unknown[]) => void;

/** `proceed` does the read as asked; `callback` is the read's own, to answer it instead. */
export type SpoolRead = (proceed: () => void, callback: (err: NodeJS.ErrnoException) => void) => void;

export function interceptSpoolReads(onSpoolRead: SpoolRead): void {
  const read = fs.read as unknown as Read;
  const isSpoolFile = (fd: number) => {
    try {
      return /\/spool-[^/]*\.ndjson$/.test(readlinkSync(`/proc/self/fd/${fd}`));
    } catch {
      return false;
    }
  };
  // The read stream of a spool replay calls fs.read(fd, buffer, offset, length, position, callback).
  (fs as unknown as { read: Read }).read = function (fd: number, ...rest: unknown[]) {
    const proceed = () => read.call(fs, fd, ...rest);
    if (!isSpoolFile(fd)) return proceed();
    onSpoolRead(proceed, rest[rest.length - 1] as (err: NodeJS.ErrnoException) => void);
  };
}
