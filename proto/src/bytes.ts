/**
 * Writing strings into Buffers on the per-record paths of the SDK and the daemon. A subpath of its
 * own (`@dspy-o11y/proto/bytes`): the daemon's export worker loads it without zod's schemas.
 */

/**
 * Buffer's own UTF-8 writer, which `write()` calls after normalising its arguments (a third of
 * its cost on short strings). Not documented, so `write()` where it is missing.
 */
type Utf8Writer = Buffer & { utf8Write?(s: string, offset: number, length: number): number };
export const writeUtf8: (buf: Buffer, s: string, offset: number, length: number) => number =
  typeof (Buffer.prototype as Utf8Writer).utf8Write === 'function'
    ? (buf, s, offset, length) => (buf as Required<Utf8Writer>).utf8Write(s, offset, length)
    : (buf, s, offset, length) => buf.write(s, offset, length, 'utf8');

/** The same for latin1 (a plain copy of a one-byte string: for ASCII text, its UTF-8 bytes). */
type Latin1Writer = Buffer & { latin1Write?(s: string, offset: number, length: number): number };
export const writeLatin1: (buf: Buffer, s: string, offset: number, length: number) => number =
  typeof (Buffer.prototype as Latin1Writer).latin1Write === 'function'
    ? (buf, s, offset, length) => (buf as Required<Latin1Writer>).latin1Write(s, offset, length)
    : (buf, s, offset, length) => buf.write(s, offset, length, 'latin1');
