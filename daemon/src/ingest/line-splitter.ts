import { isAscii } from 'node:buffer';

/**
 * NDJSON framing on raw bytes. A line longer than `maxLineBytes` (not counting a CR before its
 * LF) is reported once and skipped up
 * to its newline without ever being buffered whole, so one huge or endless line costs neither
 * memory nor the records after it.
 */
export class LineSplitter {
  private partial: Buffer[] = [];
  private partialBytes = 0;
  /** Inside an over-long line: drop bytes until the next newline. */
  private discarding = false;

  constructor(
    private readonly maxLineBytes: number,
    /**
     * Called with each complete line's bytes (without `\n` / `\r\n`); empty lines are skipped.
     * `ascii`: the bytes are known to be ASCII (the consumer may decode them as latin1, a copy).
     */
    private readonly onLine: (buf: Buffer, start: number, end: number, ascii: boolean) => void,
    private readonly onTooLong: () => void,
  ) {}

  push(chunk: Buffer): void {
    let pos = 0;
    // One SIMD scan per chunk (~0.01 µs per line) lets every line of an ASCII chunk skip UTF-8 decoding.
    const ascii = isAscii(chunk);
    for (;;) {
      const nl = chunk.indexOf(10, pos);
      if (nl === -1) {
        this.keep(chunk, pos);
        return;
      }
      if (this.discarding) {
        this.discarding = false;
      } else if (this.partialBytes + (nl - pos) - (this.crBefore(chunk, pos, nl) ? 1 : 0) > this.maxLineBytes) {
        this.resetPartial();
        this.onTooLong();
      } else if (this.partialBytes > 0) {
        const line = Buffer.concat([...this.partial, chunk.subarray(pos, nl)]);
        this.resetPartial();
        this.emit(line, 0, line.length, isAscii(line));
      } else {
        this.emit(chunk, pos, nl, ascii);
      }
      pos = nl + 1;
    }
  }

  /** End of stream: a last line without a newline still counts. */
  end(): void {
    if (this.discarding) {
      this.discarding = false;
      return;
    }
    if (this.partialBytes > 0) {
      const line = Buffer.concat(this.partial);
      this.resetPartial();
      this.emit(line, 0, line.length, isAscii(line));
    }
  }

  private keep(chunk: Buffer, pos: number): void {
    if (this.discarding || pos === chunk.length) return;
    // A CR at the end may be the CRLF's: it does not count toward the limit.
    if (this.partialBytes + (chunk.length - pos) - (chunk[chunk.length - 1] === 13 ? 1 : 0) > this.maxLineBytes) {
      this.resetPartial();
      this.discarding = true;
      this.onTooLong();
      return;
    }
    // Copy: a subarray would pin the whole (possibly 64 KiB) chunk for a few bytes.
    const rest = Buffer.from(chunk.subarray(pos));
    this.partial.push(rest);
    this.partialBytes += rest.length;
  }

  /** Whether the line ending at `nl` (LF) has a CR before it, in this chunk or the partial bytes. */
  private crBefore(chunk: Buffer, pos: number, nl: number): boolean {
    if (nl > pos) return chunk[nl - 1] === 13;
    const last = this.partial.at(-1);
    return last !== undefined && last[last.length - 1] === 13;
  }

  private emit(buf: Buffer, start: number, end: number, ascii: boolean): void {
    if (end > start && buf[end - 1] === 13) end--; // tolerate CRLF
    if (end > start) this.onLine(buf, start, end, ascii);
  }

  private resetPartial(): void {
    this.partial = [];
    this.partialBytes = 0;
  }
}
