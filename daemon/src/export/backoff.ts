/** Exponential backoff with full jitter (AWS's recommendation), and `Retry-After` as a floor; waits and deadlines that end when a signal aborts. */
import { MAX_RETRY_AFTER_MS, retryAfterFloor } from '@dspy-o11y/proto';

export interface BackoffPolicy {
  initialMs: number;
  maxMs: number;
  /** Longest `Retry-After` honoured: a server asking for an hour must not stall the pipeline that long. */
  maxRetryAfterMs: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { initialMs: 200, maxMs: 30_000, maxRetryAfterMs: MAX_RETRY_AFTER_MS };

/** Delay before retry number `retry` (0-based). */
export function backoffDelay(retry: number, retryAfterMs: number | undefined, policy: BackoffPolicy = DEFAULT_BACKOFF, random = Math.random): number {
  const ceiling = Math.min(policy.maxMs, policy.initialMs * 2 ** Math.min(retry, 30));
  const jittered = Math.floor(random() * ceiling);
  return retryAfterFloor(jittered, retryAfterMs, policy.maxRetryAfterMs);
}

/** Sleep that ends early, resolving false, when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
  if (signal?.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** `p`'s value, or undefined as soon as `signal` aborts (`p` goes on). */
export function unlessAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T | undefined> {
  if (signal.aborted) return Promise.resolve(undefined);
  return new Promise<T | undefined>((resolve, reject) => {
    const onAbort = () => resolve(undefined);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => (signal.removeEventListener('abort', onAbort), resolve(v)),
      (e: unknown) => (signal.removeEventListener('abort', onAbort), reject(e)),
    );
  });
}

/** A request's signal: aborted after its timeout or when the long-lived `parent` aborts. */
export interface Deadline {
  readonly signal: AbortSignal;
  /** Whether it was the timeout (not the parent) that aborted it. */
  readonly timedOut: boolean;
  /** Releases the timer and the parent's listener: call it when the request is over. */
  done(): void;
}

/**
 * `AbortSignal.any([AbortSignal.timeout(ms), parent])` without what that costs per call on a parent
 * that lives as long as the daemon: Node 20 (fixed in 22.12, back in 24.13) keeps a WeakRef to each
 * combined signal on the parent until the parent aborts, ~60 bytes per request, forever (a soak
 * run: 239,347 of them after 239,300 score requests). The reason on timeout is a `TimeoutError`,
 * as AbortSignal.timeout's.
 */
export function deadline(ms: number, parent: AbortSignal): Deadline {
  const controller = new AbortController();
  let timedOut = false;
  const onParentAbort = () => controller.abort(parent.reason);
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort(new DOMException(`The operation timed out after ${ms} ms`, 'TimeoutError'));
  }, ms);
  timer.unref(); // like AbortSignal.timeout's: a pending request keeps the process up, not its timer
  if (parent.aborted) onParentAbort();
  else parent.addEventListener('abort', onParentAbort, { once: true });
  return {
    signal: controller.signal,
    get timedOut() {
      return timedOut;
    },
    done() {
      clearTimeout(timer);
      parent.removeEventListener('abort', onParentAbort);
    },
  };
}
