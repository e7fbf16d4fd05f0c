/**
 * The replay's resume markers (`<spool file>.resume`): where the next start reads on in a spool
 * file whose read failed partway (spool.ts: `replaySpool` reads them, `removeSpoolFiles` writes them).
 */
import { readFile, writeFile } from 'node:fs/promises';

/**
 * Beside a file read in part: `{ "offset": …, "hello": …, "size": … }`, where the next start resumes
 * it (what came before has left the daemon). Unreadable (a write cut short), or not this file's (its
 * size differs, or the offset is past its end: a file since written under that name), the file is
 * read from its start: its first part twice (upserted), not lost.
 */
export const RESUME = '.resume';
export const resumeOf = (path: string) => `${path}${RESUME}`;

export async function readResume(path: string, size: number): Promise<{ offset: number; hello?: string } | undefined> {
  try {
    const { offset, hello, size: markedSize } = JSON.parse(await readFile(resumeOf(path), 'utf8')) as { offset?: unknown; hello?: unknown; size?: unknown };
    if (!Number.isSafeInteger(offset) || (offset as number) <= 0 || (offset as number) >= size || markedSize !== size) return undefined;
    return { offset: offset as number, ...(typeof hello === 'string' ? { hello } : {}) };
  } catch {
    return undefined;
  }
}

/** Records `offset` (and the `hello` and `size` it applies to) beside the file at `path`. */
export async function writeResume(path: string, offset: number, hello: string | undefined, size: number | undefined): Promise<void> {
  await writeFile(resumeOf(path), JSON.stringify({ offset, hello, size }), { mode: 0o600 });
}
