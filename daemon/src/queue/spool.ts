/**
 * The spool: spans still queued when the shutdown timeout runs out, and scores not yet delivered,
 * are written to `--spool-dir` as wire-protocol NDJSON (a `hello` before each resource's records;
 * the `hello` of OTLP-ingested spans also holds their instrumentation scope, which only the spool's
 * replay reads) and fed back through ingest at the next start, so a restart does not lose what
 * could be kept.
 *
 * Both ways stream, a chunk at a time: a spool is as large as the queue (hundreds of MB), and
 * building it as one string took ~5× its size at the worst moment (shutdown), or failed outright
 * past V8's string limit; reading it whole at the next start counted it against --memory-limit.
 */
import { createReadStream } from 'node:fs';
import { lstat, mkdir, open, readdir, rename, truncate, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { Attributes, type ScoreRecord } from '@dspy-o11y/proto';
import type { QueuedSpan, Resource, Scope } from '../model.js';
import { readResume, RESUME, resumeOf, writeResume } from './spool-resume.js';
import { StallGuard } from './spool-stall.js';

const SUFFIX = '.ndjson';
/** {@link writeSpool}'s temporary name: `spool-<ms>-<pid>.tmp`. */
const TMP_NAME = /^spool-\d+-\d+\.tmp$/;
/** Its temporary name for a carried spool (`carry`): `carry-<ms>-<pid>.tmp`. */
const CARRY_TMP_NAME = /^carry-\d+-\d+\.tmp$/;
/** How every file {@link writeSpool} writes begins. */
const HELLO_START = Buffer.from('{"v":1,"type":"hello",');
/** Bytes gathered before each write. */
const CHUNK_CHARS = 1 << 20;

/** A score to spool: its wire record, and the resource its `hello` names. */
export interface SpoolScore {
  readonly record: ScoreRecord;
  readonly resource: Resource;
}

export interface SpoolWritten {
  readonly file: string;
  /** How many of the spans and scores given are in it (all, unless `deadlineAt` came first). */
  readonly spans: number;
  readonly scores: number;
  /** Why the write stopped early, when the disk refused it (ENOSPC, EIO): what it took is kept. */
  readonly error?: string;
}

/**
 * How far a {@link writeSpool} has got, for a caller that stops waiting for it (a hung disk).
 * Once it gives up, the process exits without running the writer again: what is on disk then
 * (`spans`, `scores`: written, in whole lines) is taken at the next start; what the write the
 * kernel still holds (`pendingSpans`, `pendingScores`) lands or not, as the disk decides; the rest
 * is never written.
 */
export interface SpoolProgress {
  spans: number;
  scores: number;
  pendingSpans: number;
  pendingScores: number;
}

/** How {@link writeSpool} writes: by when, reporting its progress where, and whether it carries old records. */
export interface SpoolWriteOptions {
  /** Past it, the write stops at the chunk it is in and keeps what it wrote (Infinity: no deadline). */
  readonly deadlineAt: number;
  /** Updated as chunks are written, for a caller that stops waiting (a hung disk). */
  readonly progress?: SpoolProgress;
  /** The records are what is left of the spool files being replayed (see {@link writeSpool}). */
  readonly carry?: boolean;
}

/**
 * Write a spool file: scores first (few, and nothing else keeps them), then spans, oldest first.
 * Past `deadlineAt` it stops at the chunk it is in and keeps what it wrote (whole lines): a slow
 * disk costs the newest spans, not the whole spool; so does a full disk (the whole lines it took
 * are kept, and counted), and a write the disk refuses outright (ENOSPC once the disk is full at a
 * chunk's end, EIO): the chunks it took before are kept and counted, never left as a `.tmp` that
 * the next start would replay while this one counted it all as dropped. Written to a temporary
 * name, then renamed, so a crash mid-write never leaves a file that looks complete.
 *
 * `carry`: the records are what is left of the spool files being replayed, which stay until this
 * file is whole. Its temporary name is its own (`carry-…`): one left by a write cut short only
 * repeats those files, and {@link recoverSpoolTmp} removes it instead of replaying it again.
 */
export async function writeSpool(
  dir: string,
  spans: readonly QueuedSpan[],
  scores: readonly SpoolScore[] = [],
  options: SpoolWriteOptions = { deadlineAt: Infinity },
): Promise<SpoolWritten | undefined> {
  const { deadlineAt, progress = { spans: 0, scores: 0, pendingSpans: 0, pendingScores: 0 }, carry = false } = options;
  if (spans.length === 0 && scores.length === 0) return undefined;
  await mkdir(dir, { recursive: true });
  const stamp = `${Date.now()}-${process.pid}`;
  // The carried file sorts before a new one written in the same millisecond ('-' < '.'): oldest first.
  const name = carry ? `spool-${stamp}-carry` : `spool-${stamp}`;
  const tmp = join(dir, `${carry ? 'carry' : 'spool'}-${stamp}.tmp`);
  const fh = await open(tmp, 'w', 0o600);
  let spansWritten = 0;
  let scoresWritten = 0;
  /** Bytes on disk, all of them whole lines. */
  let size = 0;
  let refused: unknown;
  /** The file cannot be cut back to its whole lines: it goes, and its records count as not written. */
  let discard = false;
  try {
    let chunk = '';
    let current: Resource | undefined;
    /** What each line of `chunk` is: a hello, a score or a span (counted once on disk). */
    let kinds: ('hello' | 'score' | 'span')[] = [];
    const add = (line: string, resource: Resource, kind: 'score' | 'span') => {
      if (resource !== current) {
        current = resource;
        chunk += JSON.stringify({ v: 1, type: 'hello', resource: resource.attributes, sdk: resource.sdk, scope: resource.scope }) + '\n';
        kinds.push('hello');
      }
      chunk += line + '\n';
      kinds.push(kind);
    };
    /** The disk took part of a chunk only (full): its whole lines are kept, nothing more is written. */
    let full = false;
    const write = async () => {
      const text = chunk;
      chunk = '';
      progress.pendingSpans = kinds.filter((k) => k === 'span').length;
      progress.pendingScores = kinds.filter((k) => k === 'score').length;
      // A full disk takes what fits and says so only in the count (the next write would fail).
      const { bytesWritten } = await fh.write(text).finally(() => {
        progress.pendingSpans = 0;
        progress.pendingScores = 0;
      });
      let end = Buffer.byteLength(text);
      let lines = kinds.length;
      if (bytesWritten < end) {
        const buf = Buffer.from(text);
        end = bytesWritten > 0 ? buf.lastIndexOf(0x0a, bytesWritten - 1) + 1 : 0;
        lines = 0;
        for (let i = buf.indexOf(0x0a); i !== -1 && i < end; i = buf.indexOf(0x0a, i + 1)) lines++;
        await fh.truncate(size + end);
        full = true;
      }
      size += end;
      for (let i = 0; i < lines; i++) {
        if (kinds[i] === 'score') scoresWritten++;
        else if (kinds[i] === 'span') spansWritten++;
      }
      kinds = [];
      progress.spans = spansWritten;
      progress.scores = scoresWritten;
    };
    for (const { record, resource } of scores) add(JSON.stringify(record), resource, 'score');
    for (const q of spans) {
      if (chunk.length >= CHUNK_CHARS) {
        await write();
        if (full || Date.now() >= deadlineAt) break;
      }
      add(q.line, q.resource, 'span');
    }
    if (chunk && !full && (Date.now() < deadlineAt || spansWritten + scoresWritten === 0)) await write();
  } catch (err) {
    refused = err;
    // A failed write(2) may still have left bytes past the last whole line.
    await fh.truncate(size).catch(() => (discard = true));
  } finally {
    // close(2) may report a write the disk took back (NFS, a quota): what it holds cannot be
    // trusted, and left as a `.tmp` it would be replayed while the caller counts it dropped.
    await fh.close().catch((err: unknown) => {
      refused ??= err;
      discard = true;
    });
  }
  if (discard || spansWritten + scoresWritten === 0) {
    await unlink(tmp).catch(() => undefined);
    if (refused !== undefined) throw refused;
    return undefined;
  }
  const file = join(dir, name + SUFFIX);
  // Not renamed, the `.tmp` would still be replayed at the next start (recoverSpoolTmp): gone, it matches the count.
  await rename(tmp, file).catch(async (err: unknown) => {
    await unlink(tmp).catch(() => undefined);
    throw err;
  });
  const error = refused === undefined ? undefined : ((refused as NodeJS.ErrnoException).code ?? (refused as Error).message);
  return { file, spans: spansWritten, scores: scoresWritten, ...(error === undefined ? {} : { error }) };
}

/** The instrumentation scope a spool's `hello` line holds ({@link writeSpool}), if any. */
export function spooledScope(helloLine: string): Scope | undefined {
  const scope = (JSON.parse(helloLine) as { scope?: unknown }).scope;
  if (typeof scope !== 'object' || scope === null) return undefined;
  const { name, version, attributes } = scope as Record<string, unknown>;
  if (typeof name !== 'string' || typeof version !== 'string') return undefined;
  return attributes !== undefined && Attributes.safeParse(attributes).success ? { name, version, attributes: attributes as Attributes } : { name, version };
}

/** What {@link recoverSpoolTmp} found: temporary files left by a write that never finished. */
export interface LeftoverTmp {
  readonly files: number;
  readonly bytes: number;
  /** Of those, renamed to spool files (their whole records, replayed with the others). */
  readonly recovered: number;
  readonly recoveredBytes: number;
}

/**
 * A `spool-<ms>-<pid>.tmp` is what {@link writeSpool} had written when its process died (SIGKILL,
 * a crash, the machine going down) before the rename; nothing else would ever read or remove it.
 * Call it only with the spool dir locked (lockSpoolDir, spool-lock.ts): then no live daemon is writing it.
 *
 * Kept rather than deleted, when it can be told safely: the file is appended to in whole lines,
 * each record a self-contained NDJSON line (stable ids: a record replayed twice is upserted, not
 * doubled) after the `hello` of its resource, so any prefix of it that ends at a newline holds
 * only whole records, each with its own resource. What a kill cuts short is the tail: one torn
 * line at most, cut off here. A machine that died before writing back the file's pages can leave
 * them as zeros, anywhere: JSON.stringify never writes a NUL byte, so the file is kept only up to
 * the last newline before its first NUL (a lost page must not drop a `hello` and give the records
 * after it another resource). A file that does not begin with a `hello`, or holds no whole line
 * before that point, is not one we can read: it is removed. The kept part is renamed to a spool
 * file and replayed like one (removed once it has left the daemon). Entries that are not regular
 * files, or not of that name, are not ours: left alone. A `carry-<ms>-<pid>.tmp` (a carried
 * spool cut short, {@link writeSpool}) is removed: the files it repeats were kept.
 */
export async function recoverSpoolTmp(dir: string, guard = new StallGuard(Infinity)): Promise<LeftoverTmp> {
  const step = <T>(op: Promise<T>) => guard.step(op);
  let names: string[];
  try {
    names = (await step(readdir(dir))).filter((n) => TMP_NAME.test(n) || CARRY_TMP_NAME.test(n));
  } catch (err) {
    if (guard.stalled) throw err;
    names = [];
  }
  let files = 0;
  let bytes = 0;
  let recovered = 0;
  let recoveredBytes = 0;
  for (const name of names) {
    const path = join(dir, name);
    try {
      const st = await step(lstat(path));
      if (!st.isFile()) continue;
      files++;
      bytes += st.size;
      // Only repeats the spool files its writer kept: replayed, it would send their records twice.
      if (CARRY_TMP_NAME.test(name)) {
        await step(unlink(path));
        continue;
      }
      const keep = await wholeLinesOf(path, guard);
      const target = join(dir, name.slice(0, -'.tmp'.length) + SUFFIX);
      const taken = await step(lstat(target)).then(
        () => true,
        (err: unknown) => (guard.stalled ? Promise.reject(err as Error) : false),
      );
      if (keep > 0 && !taken) {
        if (keep < st.size) await step(truncate(path, keep));
        await step(rename(path, target));
        recovered++;
        recoveredBytes += keep;
        continue;
      }
    } catch (err) {
      // Not unreadable: not answering (a hung disk). Left as it is, for the next start.
      if (guard.stalled) throw err;
      /* unreadable: removed below */
    }
    await step(unlink(path)).catch((err: unknown) => {
      if (guard.stalled) throw err;
    });
  }
  return { files, bytes, recovered, recoveredBytes };
}

/** Bytes of a spool `.tmp` that can be replayed: up to its last newline before any NUL; 0 if it does not begin with a `hello`. */
async function wholeLinesOf(path: string, guard: StallGuard): Promise<number> {
  const fh = await guard.step(open(path, 'r'));
  try {
    const buf = Buffer.alloc(CHUNK_CHARS);
    let offset = 0;
    let keep = 0;
    for (;;) {
      const { bytesRead } = await guard.step(fh.read(buf, 0, buf.length, offset));
      if (bytesRead === 0) break;
      const chunk = buf.subarray(0, bytesRead);
      if (offset === 0 && (bytesRead < HELLO_START.length || !chunk.subarray(0, HELLO_START.length).equals(HELLO_START))) return 0;
      const nul = chunk.indexOf(0);
      const nl = chunk.subarray(0, nul === -1 ? bytesRead : nul).lastIndexOf(0x0a);
      if (nl !== -1) keep = offset + nl + 1;
      if (nul !== -1) break;
      offset += bytesRead;
    }
    return keep;
  } finally {
    // A close waits for a read given up on (hung): the guard does not.
    await guard.step(fh.close());
  }
}

/** Replay events of one spool file. */
export interface SpoolReader {
  /** A file begins: its chunks follow, in order. */
  begin(path: string): void;
  chunk(bytes: Buffer): void;
  /** The file is read to its end. */
  end(): void;
  /**
   * A file that cannot be read (not a regular file, no permission, …): skipped and left in place.
   * `readTo`: a read failed partway (EIO), after the chunks before it were handed over; their whole
   * lines (up to that offset) are replayed, the rest of the file at the next start.
   */
  skip(path: string, why: string, readTo?: number): void;
}

/** A spool file replayed by {@link replaySpool}: whole, or up to `readTo` (a read failed there). */
export interface ReplayedFile {
  readonly path: string;
  /** Where its unread part begins (just past a whole line), and the `hello` whose resource it has. */
  readonly readTo?: number;
  readonly hello?: string;
  /** Its size when read: the marker holds it, and applies to a file of that size only. */
  readonly size?: number;
}

/**
 * Follows the bytes handed over from one spool file: how far its whole lines go, and the last
 * `hello` among them (the resource of what follows), for a read that fails partway.
 */
class ReadPoint {
  /** File offset just past the last whole line. */
  wholeTo: number;
  hello: string | undefined;
  private at: number;
  /** The current line's bytes so far while it is, or may be, a `hello`; undefined once it is not one. */
  private line: Buffer[] | undefined = [];
  private lineBytes = 0;

  constructor(
    readonly start: number,
    hello: string | undefined,
  ) {
    this.wholeTo = this.at = start;
    this.hello = hello;
  }

  push(chunk: Buffer): void {
    for (let s = 0; s < chunk.length; ) {
      const nl = chunk.indexOf(0x0a, s);
      const e = nl === -1 ? chunk.length : nl + 1;
      if (this.line) {
        this.line.push(chunk.subarray(s, e));
        this.lineBytes += e - s;
        const told = this.lineBytes >= HELLO_START.length;
        if ((told || nl !== -1) && !(told && Buffer.concat(this.line, HELLO_START.length).equals(HELLO_START))) this.line = undefined;
      }
      if (nl === -1) break;
      if (this.line) this.hello = Buffer.concat(this.line).toString('utf8');
      this.line = [];
      this.lineBytes = 0;
      this.wholeTo = this.at + e;
      s = e;
    }
    this.at += chunk.length;
  }
}

/**
 * Read every spool file (oldest first), a chunk at a time. Returns the files read; they are not
 * deleted here: the caller removes them ({@link removeSpoolFiles}) once what they held has left
 * the daemon (delivered, or dropped and counted), so a crash or a failed start before that
 * replays them again (span and score ids are stable: Langfuse upserts, nothing is doubled).
 *
 * A read that fails partway (a flaky disk) has already handed over the chunks before it: those
 * whole lines are replayed, and the file is returned with how far it was read; once they have
 * left, {@link removeSpoolFiles} records that point beside it, and the next start reads on from
 * there (under the `hello` before it) instead of replaying its first part again.
 */
export async function replaySpool(dir: string, reader: SpoolReader, guard = new StallGuard(Infinity)): Promise<ReplayedFile[]> {
  const step = <T>(op: Promise<T>) => guard.step(op);
  let names: string[];
  try {
    const entries = await step(readdir(dir));
    names = entries.filter((n) => n.startsWith('spool-') && n.endsWith(SUFFIX)).sort();
    // A marker whose file is gone (removed by hand, or a removal cut short between the two) would
    // stay for ever, and apply to a file written under that name later.
    const spoolNames = new Set(names);
    for (const n of entries) {
      if (n.startsWith('spool-') && n.endsWith(SUFFIX + RESUME) && !spoolNames.has(n.slice(0, -RESUME.length))) await step(unlink(join(dir, n))).catch(() => undefined);
    }
  } catch {
    return [];
  }
  const files: ReplayedFile[] = [];
  for (const name of names) {
    const path = join(dir, name);
    let point: ReadPoint | undefined;
    let size = 0;
    try {
      // Never open a FIFO or a device: reading one could block the start for ever.
      const st = await step(lstat(path));
      if (!st.isFile()) {
        reader.skip(path, 'not a regular file');
        continue;
      }
      size = st.size;
      const resume = await step(readResume(path, size));
      const start = resume?.offset ?? 0;
      const stream = createReadStream(path, { highWaterMark: CHUNK_CHARS, start });
      // Opened before the first chunk is handed over: a file that cannot be read is skipped whole.
      // Given up on (a stall), the stream goes: its hung read's late answer is never handed over.
      const orDestroy = (err: unknown) => {
        stream.destroy();
        throw err;
      };
      await step(new Promise<void>((resolve, reject) => stream.once('ready', resolve).once('error', reject))).catch(orDestroy);
      reader.begin(path);
      point = new ReadPoint(start, resume?.hello);
      // The records after the resume point are those of the last `hello` before it.
      if (resume?.hello !== undefined) reader.chunk(Buffer.from(resume.hello));
      const chunks = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
      for (;;) {
        const next = await step(chunks.next()).catch(orDestroy);
        if (next.done) break;
        reader.chunk(next.value);
        point.push(next.value);
      }
      reader.end();
      files.push({ path });
    } catch (err) {
      const why = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      // Whole lines were handed over (and queued): only the rest of the file is still to replay.
      if (point && point.wholeTo > point.start) {
        reader.skip(path, why, point.wholeTo);
        files.push({ path, readTo: point.wholeTo, size, ...(point.hello === undefined ? {} : { hello: point.hello }) });
      } else reader.skip(path, why);
      // The disk hangs: the files not read yet stay for the next start.
      if (guard.stalled) break;
    }
  }
  return files;
}

/**
 * Removes the files whose records have left the daemon; of a file read in part, records where its
 * unread rest begins instead (a failed write leaves it as it was: its first part is replayed again).
 * Returns the files the disk would not remove or mark (EIO, EROFS, …): they replay whole again.
 */
export async function removeSpoolFiles(files: readonly ReplayedFile[]): Promise<ReplayedFile[]> {
  const notRemoved: ReplayedFile[] = [];
  const refused = (file: ReplayedFile) => (err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') notRemoved.push(file);
  };
  for (const file of files) {
    const { path, readTo, hello, size } = file;
    if (readTo === undefined) {
      const before = notRemoved.length;
      await unlink(path).catch(refused(file));
      // Its resume point goes with it, not before: kept, the file still resumes where it was.
      if (notRemoved.length === before) await unlink(resumeOf(path)).catch(() => undefined);
    } else await writeResume(path, readTo, hello, size).catch(refused(file));
  }
  return notRemoved;
}
