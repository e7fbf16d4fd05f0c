/**
 * The SDK's record buffer: a deque of NDJSON lines bounded by count and by characters, that
 * drops the OLDEST lines when full (new telemetry is worth more than old) and says how many.
 */
export class Ring {
  private buf: (string | undefined)[];
  private head = 0;
  private count = 0;
  chars = 0;
  /** Characters ever pushed (a running total: the difference of two readings is what arrived between them). */
  pushed = 0;

  constructor(
    readonly maxRecords: number,
    readonly maxChars: number,
  ) {
    this.buf = new Array<string | undefined>(Math.min(maxRecords, 1024));
  }

  get size(): number {
    return this.count;
  }

  /** Appends `line`; returns how many old lines were dropped to make room. */
  push(line: string): number {
    let dropped = 0;
    if (this.count === this.buf.length) {
      if (this.count >= this.maxRecords) {
        this.shift();
        dropped++;
      } else this.grow();
    }
    this.buf[(this.head + this.count) % this.buf.length] = line;
    this.count++;
    this.chars += line.length;
    this.pushed += line.length;
    while (this.chars > this.maxChars && this.count > 1) {
      this.shift();
      dropped++;
    }
    return dropped;
  }

  /** Puts `lines` back at the front (they are older than everything queued); returns drops. */
  unshiftAll(lines: readonly string[]): number {
    let dropped = 0;
    for (let i = lines.length - 1; i >= 0; i--) {
      const line = lines[i] as string;
      if (this.count >= this.maxRecords || this.chars + line.length > this.maxChars) {
        // The ring is full: the line being put back is the oldest of all, so it is the one to drop.
        dropped += i + 1;
        break;
      }
      if (this.count === this.buf.length) this.grow();
      this.head = (this.head - 1 + this.buf.length) % this.buf.length;
      this.buf[this.head] = line;
      this.count++;
      this.chars += line.length;
    }
    return dropped;
  }

  shift(): string | undefined {
    if (this.count === 0) return undefined;
    const line = this.buf[this.head] as string;
    this.buf[this.head] = undefined;
    this.head = (this.head + 1) % this.buf.length;
    this.count--;
    this.chars -= line.length;
    return line;
  }

  /**
   * Removes lines from the front up to `maxChars` characters (at least one line), appending them
   * to `out`; returns them concatenated.
   */
  take(maxChars: number, out?: string[]): string {
    let s = '';
    while (this.count > 0) {
      const next = this.buf[this.head] as string;
      if (s.length > 0 && s.length + next.length > maxChars) break;
      this.shift();
      s += next;
      out?.push(next);
    }
    return s;
  }

  clear(): number {
    const n = this.count;
    this.buf = new Array<string | undefined>(Math.min(this.maxRecords, 1024));
    this.head = 0;
    this.count = 0;
    this.chars = 0;
    return n;
  }

  private grow(): void {
    const size = Math.min(this.buf.length * 2, this.maxRecords);
    const next = new Array<string | undefined>(size);
    for (let i = 0; i < this.count; i++) next[i] = this.buf[(this.head + i) % this.buf.length];
    this.buf = next;
    this.head = 0;
  }
}
