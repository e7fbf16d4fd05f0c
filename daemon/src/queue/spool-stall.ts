/** A bound on the start's wait for the spool dir's disk (a hung mount must not keep the daemon from listening). */

/** The spool dir gave no answer in time (a hung disk): the start stopped waiting for it. */
class SpoolStalledError extends Error {}

/**
 * Bounds each disk operation of the start's spool work (spool.ts: `recoverSpoolTmp`, `replaySpool`):
 * one that has not finished within `ms` (a hung mount) gives up on all of them, so the daemon can
 * listen. Per operation, not in all: a large spool on a slow disk takes as long as it needs. What
 * was given up on goes on in the kernel; whatever it returns later is ignored.
 */
export class StallGuard {
  private readonly abort = new AbortController();
  constructor(readonly ms: number) {}

  get stalled(): boolean {
    return this.abort.signal.aborted;
  }

  step<T>(op: Promise<T>): Promise<T> {
    const { signal } = this.abort;
    return new Promise<T>((resolve, reject) => {
      const fail = () => reject(signal.reason as Error);
      if (signal.aborted) {
        op.catch(() => undefined);
        return fail();
      }
      const timer = Number.isFinite(this.ms) ? setTimeout(() => this.abort.abort(new SpoolStalledError(`the spool dir did not answer within ${this.ms} ms`)), this.ms) : undefined;
      signal.addEventListener('abort', fail, { once: true });
      const settle = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', fail);
      };
      op.then(
        (v) => (settle(), resolve(v)),
        (err: unknown) => (settle(), reject(err as Error)),
      );
    });
  }
}
