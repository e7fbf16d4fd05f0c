/**
 * What flows through the daemon after ingest: validated spans with the resource they came
 * with and their size, which the queue's byte bound counts.
 */
import type { Attributes, SpanRecord } from '@dspy-o11y/proto';

/** One per `hello` (or per connection without one): spans share it, so exporters can group by identity. */
export interface Resource {
  readonly attributes: Attributes;
  readonly sdk?: { name: string; version: string };
}

export interface QueuedSpan {
  /** A span record; standalone events arrive here already as zero-length spans of type `event`. */
  readonly span: SpanRecord;
  readonly resource: Resource;
  /** Bytes the record took on the wire: what `--queue-max-bytes` and `--batch-max-bytes` count. */
  readonly bytes: number;
}
