/**
 * A decimal number as people write one (`0.25`, `.5`, `1e-2`, `+1`), the one rule for numbers the
 * SDK and the daemon read from text. Not `Number()`, which also takes `0x10`, `0b1`, `0o7`,
 * `Infinity` and a blank (0): a sample ratio of `0x0` dropped every trace.
 */
export const DECIMAL_NUMBER = /^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$/;

/** `text` (surrounding whitespace ignored) as a decimal number, or undefined. */
export function parseDecimal(text: string): number | undefined {
  const t = text.trim();
  return DECIMAL_NUMBER.test(t) ? Number(t) : undefined;
}
