/**
 * The shutdown's spool step, with --spool-dir: what the export loop and the score sender could not
 * deliver by the deadline is written for the next start, and the outcome is turned into counts
 * (spooled, unfinished, dropped) so the last log line adds up. Bounded: a spool dir on a hung mount
 * must not keep the daemon from exiting.
 */
import type { Logger } from '../log.js';
import type { QueuedSpan } from '../model.js';
import { TIMED_OUT, within } from '../within.js';
import { removeSpoolFiles, writeSpool, type ReplayedFile, type SpoolProgress, type SpoolScore } from './spool.js';

/** What the shutdown could not deliver, oldest first. */
export interface Undelivered {
  readonly spans: readonly QueuedSpan[];
  readonly scores: readonly SpoolScore[];
}

export interface SpoolUndeliveredOptions {
  readonly dir: string;
  /** The last run's spool files, if what they held has not all left yet (else empty). */
  readonly oldFiles: readonly ReplayedFile[];
  /** A span replayed from those files. */
  readonly isOld: (q: QueuedSpan) => boolean;
  /** How many of the scores (the first ones: the sender keeps its order) came from those files, at most. */
  readonly oldScoresUnsent: number;
  /** How long the write may take from now: read at the start, and again to bound the wait for it. */
  readonly writeTimeMs: () => number;
  /** How long past that the write is waited for before it is given up on. */
  readonly graceMs: number;
  readonly log: Logger;
}

export interface SpoolOutcome {
  /** Spans kept in the spool (new, carried, or left in the old files): neither exported nor dropped. */
  readonly spooledSpans: number;
  /** Spans in a write the disk had not finished when it was given up on: kept or not, as the disk decides. */
  readonly unfinishedSpans: number | undefined;
  /** Neither spooled nor unfinished: the caller counts them dropped at shutdown. */
  readonly droppedSpans: number;
  readonly droppedScores: number;
  /** A write given up on but still going (a hung disk): the spool dir's lock waits for its end. */
  readonly stillWriting: Promise<unknown> | undefined;
}

/**
 * Writes `undelivered` to the spool dir, and removes the last run's files once what is left of them
 * is safe elsewhere (else they stay, and hold it). Logs what was kept and what was lost.
 */
export async function spoolUndelivered(undelivered: Undelivered, options: SpoolUndeliveredOptions): Promise<SpoolOutcome> {
  const { spans: left, scores: scoresUnsent } = undelivered;
  const { dir, oldFiles, isOld, log } = options;
  // What is left of the last run's spool (still in its files) is carried to a file of its
  // own before the new records are written: a write cut short there (a hung disk, a kill)
  // leaves the old files and a `carry-….tmp` the next start removes. Written first in one
  // file with the new records, such a `.tmp` was replayed beside the old files: twice.
  const oldSpans = oldFiles.length ? left.filter(isOld) : [];
  const oldScoreCount = oldFiles.length ? Math.min(scoresUnsent.length, Math.max(0, options.oldScoresUnsent)) : 0;
  const newSpans = oldSpans.length ? left.filter((q) => !isOld(q)) : left;
  const newScores = scoresUnsent.slice(oldScoreCount);
  const progress: SpoolProgress = { spans: 0, scores: 0, pendingSpans: 0, pendingScores: 0 };
  // The last run's files, while what is left of them is among `left`: they go once the new
  // spool holds that; else they stay, and keep it (so does a write that fails before that).
  let keepOldSpool = false;
  let givenUp = false;
  const writeBy = Date.now() + options.writeTimeMs();
  const carryOldThenWriteNew = async () => {
    const oldRecordsLeft = oldSpans.length > 0 || oldScoreCount > 0;
    const carryWritten = oldRecordsLeft ? await writeSpool(dir, oldSpans, scoresUnsent.slice(0, oldScoreCount), { deadlineAt: writeBy, carry: true }) : undefined;
    // Not all of them (the disk full), or too late (counted as kept in the old files): the old files stay.
    if (oldRecordsLeft && (givenUp || !carryWritten || carryWritten.spans < oldSpans.length || carryWritten.scores < oldScoreCount)) {
      if (carryWritten) await removeSpoolFiles([{ path: carryWritten.file }]);
      keepOldSpool = true;
    }
    if (!keepOldSpool) {
      const notRemoved = await removeSpoolFiles(oldFiles);
      // None would go (a disk refusing unlink): the carry file goes instead, or both were replayed.
      // Some went: the carry file stays, the rest is replayed twice (upserted), never lost.
      if (carryWritten && oldFiles.length > 0 && notRemoved.length === oldFiles.length) {
        await removeSpoolFiles([{ path: carryWritten.file }]);
        keepOldSpool = true;
      }
    }
    // Given up on meanwhile: the new records are counted as dropped, so none is written.
    if (givenUp) return undefined;
    return writeSpool(dir, newSpans, newScores, { deadlineAt: writeBy, progress });
  };
  const writing = carryOldThenWriteNew();
  try {
    // Bounded: a spool dir on a hung mount (or somewhere mkdir never returns) must not keep
    // the daemon from exiting; a slow disk stops at the deadline and keeps what it wrote.
    const written = await within(writing, options.writeTimeMs() + options.graceMs);
    if (written === TIMED_OUT) {
      givenUp = true;
      throw new Error('writing the spool did not finish in time');
    }
    const spans = oldSpans.length + (written?.spans ?? 0);
    const scoreCount = oldScoreCount + (written?.scores ?? 0);
    const droppedSpans = left.length - spans;
    const droppedScores = scoresUnsent.length - scoreCount;
    log.warn(
      { spans, scores: scoreCount, droppedSpans, droppedScores, file: written?.file, keptOldSpool: keepOldSpool ? oldFiles.map((f) => f.path) : undefined, diskError: written?.error },
      'shutdown timeout: spooled what was not delivered for the next start',
    );
    return { spooledSpans: spans, unfinishedSpans: undefined, droppedSpans, droppedScores, stillWriting: undefined };
  } catch (err) {
    if (givenUp) {
      // Given up on, the write is still in the kernel and the process exits without running
      // it again: what it wrote is taken from its `.tmp` at the next start (spooled), what it
      // is writing lands or not as the disk decides (neither kept nor dropped for sure), the
      // rest is never written (dropped). Counted all dropped, the next start replayed some.
      const spooledSpans = oldSpans.length + progress.spans;
      const droppedSpans = newSpans.length - progress.spans - progress.pendingSpans;
      log.error(
        { err, spans: spooledSpans, scores: oldScoreCount + progress.scores, unfinishedSpans: progress.pendingSpans, unfinishedScores: progress.pendingScores, droppedSpans },
        'could not write the spool in time (the disk hangs): what it wrote is replayed at the next start, what it is writing only if the disk takes it before the process ends; dropping the rest',
      );
      return {
        spooledSpans,
        unfinishedSpans: progress.pendingSpans,
        droppedSpans,
        droppedScores: newScores.length - progress.scores - progress.pendingScores,
        stillWriting: writing,
      };
    }
    // What is left of the last run's spool is kept (carried, or in its files), not dropped.
    log.error({ err, spans: newSpans.length, scores: newScores.length, keptInOldSpool: oldSpans.length || undefined }, 'could not write the spool; dropping what was not delivered');
    return { spooledSpans: oldSpans.length, unfinishedSpans: undefined, droppedSpans: newSpans.length, droppedScores: newScores.length, stillWriting: undefined };
  }
}
