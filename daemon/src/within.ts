/** Waiting on a promise with a bound: shutdown steps must not hold the exit past their share of --shutdown-timeout. */

export const TIMED_OUT = Symbol('timed out');

/** `p`'s value, or TIMED_OUT after `ms` (p goes on; a rejection after that is ignored). */
export function within<T>(p: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<typeof TIMED_OUT>((resolve) => (timer = setTimeout(() => resolve(TIMED_OUT), ms)));
  p.catch(() => undefined);
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
