/**
 * The spool: spans still queued when the shutdown timeout runs out, and scores not yet delivered,
 * are written to `--spool-dir` as wire-protocol NDJSON (a `hello` before each resource's records)
 * and fed back through ingest at the next start, so a restart does not lose what could be kept.
 */
import { mkdir, readdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ScoreRecord } from '@dspy-o11y/proto';
import type { QueuedSpan, Resource } from '../model.js';

const SUFFIX = '.ndjson';

export async function writeSpool(
  dir: string,
  spans: readonly QueuedSpan[],
  scores: readonly { readonly record: ScoreRecord; readonly resource: Resource }[] = [],
): Promise<string | undefined> {
  if (spans.length === 0 && scores.length === 0) return undefined;
  await mkdir(dir, { recursive: true });
  const lines: string[] = [];
  let current: Resource | undefined;
  const add = (line: string, resource: Resource) => {
    if (resource !== current) {
      current = resource;
      lines.push(JSON.stringify({ v: 1, type: 'hello', resource: resource.attributes, sdk: resource.sdk }));
    }
    lines.push(line);
  };
  for (const { line, resource } of spans) add(line, resource);
  for (const { record, resource } of scores) add(JSON.stringify(record), resource);
  const name = `spool-${Date.now()}-${process.pid}`;
  // Write then rename: a crash mid-write never leaves a half file that looks complete.
  await writeFile(join(dir, `${name}.tmp`), lines.join('\n') + '\n', { mode: 0o600 });
  await rename(join(dir, `${name}.tmp`), join(dir, name + SUFFIX));
  return join(dir, name + SUFFIX);
}

/**
 * Read every spool file (oldest first) and hand each file's bytes to `ingest`. Returns the files
 * read; they are not deleted here: the caller removes them ({@link removeSpoolFiles}) only once
 * the daemon has started, so a failed start leaves the spool for the next attempt.
 */
export async function replaySpool(dir: string, ingest: (content: Buffer) => void): Promise<string[]> {
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => n.startsWith('spool-') && n.endsWith(SUFFIX)).sort();
  } catch {
    return [];
  }
  const paths: string[] = [];
  for (const name of names) {
    const path = join(dir, name);
    ingest(await readFile(path));
    paths.push(path);
  }
  return paths;
}

export async function removeSpoolFiles(paths: readonly string[]): Promise<void> {
  for (const path of paths) await unlink(path).catch(() => undefined);
}
