/**
 * Counts spans in an NDJSON stream as it arrives, by their `"spanId":` key: the floor's lines and
 * the SDK's `span` records carry one each (a parent's is `"parentSpanId":`, and a key inside a
 * string value has its quotes escaped); `hello` and `stats` records carry none. Span links, which
 * also carry one, are not used by the benchmarks. No parse: the reader must keep up cheaply.
 */
const KEY = Buffer.from('"spanId":');

export class SpanCounter {
  spans = 0;
  /** The previous chunk's last KEY.length - 1 bytes, copied: a key may be cut between chunks. */
  private tail = Buffer.alloc(0);

  add(chunk: Buffer): void {
    if (this.tail.length > 0) {
      // Only a key that starts in the tail and ends in this chunk: one wholly in either is counted there.
      const seam = Buffer.concat([this.tail, chunk.subarray(0, KEY.length - 1)]);
      if (seam.indexOf(KEY) !== -1) this.spans++;
    }
    for (let at = chunk.indexOf(KEY); at !== -1; at = chunk.indexOf(KEY, at + KEY.length)) this.spans++;
    const keep = Math.min(KEY.length - 1, chunk.length);
    this.tail = Buffer.concat([this.tail, chunk.subarray(chunk.length - keep)]).subarray(-(KEY.length - 1));
  }
}
