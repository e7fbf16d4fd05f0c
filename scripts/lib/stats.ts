/** Statistics shared by the benchmark scripts. */

/** The median: the middle value, or the mean of the two middle values of an even count. */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new Error('median of no values');
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/**
 * The median of xs[i] / ys[i]: a ratio of two series measured side by side (interleaved rounds),
 * each round against its own counterpart rather than one side's median against the other's.
 */
export function medianRatio(xs: readonly number[], ys: readonly number[]): number {
  if (xs.length !== ys.length) throw new Error(`ratio of ${xs.length} values to ${ys.length}`);
  return median(xs.map((x, i) => x / ys[i]!));
}
