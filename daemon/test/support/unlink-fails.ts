/**
 * Preloaded into a daemon under test (`node --import <this file>`): a disk that refuses to remove
 * the spool files of the last run (`spool-<ms>-<pid>.ndjson`, EIO) and takes every other change,
 * as a flaky disk may. Set before the daemon's modules load, so their `unlink` is this one.
 */
import { syncBuiltinESMExports } from 'node:module';
import fsp from 'node:fs/promises';

const unlink = fsp.unlink;
fsp.unlink = async (path) => {
  if (/\/spool-\d+-\d+\.ndjson$/.test(String(path))) throw Object.assign(new Error(`EIO: i/o error, unlink '${String(path)}'`), { code: 'EIO' });
  return unlink(path);
};
syncBuiltinESMExports();
