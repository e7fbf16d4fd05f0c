import { isAscii } from 'node:buffer';

/**
 * Bytes of partial lines (received, newline not yet) held across all connections. Each
 * connection may hold up to `--max-record-bytes`, but hung clients are many: without a shared
 * bound 300 of them held 300 MiB that no queue bound or `--memory-limit` sees.
 */
export class PartialLineBudget {
  used = 0;
  constructor(readonly maxBytes: number) {}

  take(bytes: number): boolean {
    if (this.used + bytes > this.maxBytes) return false;
    this.used += bytes;
    return true;
  }

  give(bytes: number): void {
    this.used -= bytes;
  }
}

/** JSON's whitespace but the LF that ends a line. */
const isSpace = (byte: number | undefined) => byte === 0x20 || byte === 0x09 || byte === 0x0d;

/**
 * NDJSON framing on raw bytes. A line longer than `maxLineBytes` (not counting a CR before its
 * LF) is reported once and skipped up to its newline without ever being buffered whole, so one
 * huge or endless line costs neither memory nor the records after it. So is a line whose partial
 * bytes would not fit in the shared `budget`, if any.
 */
export class LineSplitter {
  private partial: Buffer[] = [];
  private partialBytes = 0;
  /** Inside an over-long line: drop bytes until the next newline. */
  private discarding = false;

  constructor(
    private readonly maxLineBytes: number,
    /**
     * Called with each complete line's bytes (without `\n` / `\r\n`, or a leading UTF-8 BOM);
     * blank lines (empty, or only spaces, tabs and CRs) are skipped.
     * `ascii`: the bytes are known to be ASCII (the consumer may decode them as latin1, a copy).
     */
    private readonly onLine: (buf: Buffer, start: number, end: number, ascii: boolean) => void,
    /** `budget`: the line fit `maxLineBytes` but not the shared budget. */
    private readonly onTooLong: (cause: 'line' | 'budget') => void,
    private readonly budget?: PartialLineBudget,
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
      } else if (this.tooLong(this.partialBytes + (nl - pos), chunk, pos, nl)) {
        this.resetPartial();
        this.onTooLong('line');
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

  /** Whether part of a line is held, waiting for the rest. */
  get holding(): boolean {
    return this.partialBytes > 0;
  }

  /** Whether a line over the limit is being skipped, its newline not received yet. */
  get skipping(): boolean {
    return this.discarding;
  }

  /** Bytes held (a partial line); connections that end without a newline drop them with this. */
  discard(): void {
    this.discarding = false;
    this.resetPartial();
  }

  private keep(chunk: Buffer, pos: number): void {
    if (this.discarding || pos === chunk.length) return;
    const more = chunk.length - pos;
    // A CR at the end may be the CRLF's: it does not count toward the limit.
    const tooLong = this.partialBytes + more - (chunk[chunk.length - 1] === 13 ? 1 : 0) > this.maxLineBytes;
    if (tooLong || (this.budget && !this.budget.take(more))) {
      this.resetPartial();
      this.discarding = true;
      this.onTooLong(tooLong ? 'line' : 'budget');
      return;
    }
    // Copy: a subarray would pin the whole (possibly 64 KiB) chunk for a few bytes.
    const rest = Buffer.from(chunk.subarray(pos));
    this.partial.push(rest);
    this.partialBytes += rest.length;
  }

  /**
   * Whether the line of `bytes` ending at `nl` (LF) is over the limit. A CR before the LF does not
   * count; it is looked for only when it decides (one byte over), not on every line.
   */
  private tooLong(bytes: number, chunk: Buffer, pos: number, nl: number): boolean {
    if (bytes <= this.maxLineBytes) return false;
    if (bytes > this.maxLineBytes + 1) return true;
    if (nl > pos) return chunk[nl - 1] !== 13;
    const last = this.partial.at(-1);
    return last === undefined || last[last.length - 1] !== 13;
  }

  private emit(buf: Buffer, start: number, end: number, ascii: boolean): void {
    if (end > start && buf[end - 1] === 13) end--; // tolerate CRLF
    // A UTF-8 BOM (Windows editors, PowerShell's utf8) may be ignored (RFC 8259 §8.1), as the
    // OTLP/JSON route and Fastify's JSON parser do: read as JSON, it cost the first record.
    if (end - start >= 3 && buf[start] === 0xef && buf[start + 1] === 0xbb && buf[start + 2] === 0xbf) start += 3;
    if (end === start) return;
    // Whitespace alone is a blank line, as for JSON and NDJSON readers (jq), not invalid JSON.
    // Scanned only when the line starts with whitespace: a record starts with `{`.
    if (isSpace(buf[start]) && blank(buf, start, end)) return;
    this.onLine(buf, start, end, ascii);
  }

  private resetPartial(): void {
    this.budget?.give(this.partialBytes);
    this.partial = [];
    this.partialBytes = 0;
  }
}

/** Whether `buf[start..end)` is JSON whitespace alone. */
function blank(buf: Buffer, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (!isSpace(buf[i])) return false;
  return true;
}
