/**
 * Unix-epoch nanoseconds for records: the monotonic clock (sub-millisecond, never backwards) plus
 * an anchor to the wall clock. Anchored once, at load (proto's `nowUnixNano`), every record of a
 * long-running app was off for good by however long the machine had been suspended (a laptop's
 * sleep, a paused VM: the monotonic clock does not count it) or however far NTP had stepped the
 * wall clock; OpenTelemetry JS had the same bug (#852) and anchors per root span since.
 *
 * Here the anchor is checked against `Date.now()` at most every 100 ms of monotonic time and moved
 * when they differ by more than 100 ms. A span keeps the anchor it started with, and its children
 * take their parent's: a span never ends before it starts (the daemon refuses such a span) and a
 * child stays inside its parent, whatever the wall clock did meanwhile.
 */
export const monotonicNs: () => bigint = process.hrtime.bigint;

const CHECK_EVERY_NS = 100_000_000n;
const MAX_DRIFT_NS = 100_000_000n;

let anchor = BigInt(Date.now()) * 1_000_000n - monotonicNs();
let checkedAt = monotonicNs();

/** The anchor (unix ns minus monotonic ns) to use at monotonic time `now`. */
export function anchorAt(now: bigint): bigint {
  if (now - checkedAt >= CHECK_EVERY_NS) {
    checkedAt = now;
    const drift = BigInt(Date.now()) * 1_000_000n - (anchor + now);
    if (drift > MAX_DRIFT_NS || drift < -MAX_DRIFT_NS) anchor += drift;
  }
  return anchor;
}

/** Now, as a unix-ns decimal string. */
export function nowUnixNano(): string {
  const now = monotonicNs();
  return (anchorAt(now) + now).toString();
}
