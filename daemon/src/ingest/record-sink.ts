/**
 * Where every ingest transport hands its records: validation with the proto schemas, per-session
 * resource (`hello`), standalone events turned into zero-length spans, client drop reports,
 * sampling, and the push into the queue. A bad record is counted with its reason and dropped;
 * nothing here throws back into a transport.
 */
import { isUtf8 } from 'node:buffer';
import { ATTR, RESOURCE, keepTrace, newSpanId, parseLine, validateRecord, type AttributeValue, type Attributes, type EventRecord, type ScoreRecord, type SpanRecord, type ValidationResult, type WireRecord } from '@dspy-o11y/proto';
import { oncePer, type Logger } from '../log.js';
import { EMPTY_RESOURCE, QueuedSpan, queuedSpan, type Resource } from '../model.js';
import type { SpanQueue } from '../queue/span-queue.js';
import { spooledScope } from '../queue/spool.js';
import type { Stats, Transport } from '../ops/stats.js';

/** One connection or one HTTP body: the resource its `hello` set applies to the records after it. */
export interface IngestSession {
  readonly transport: Transport;
  resource: Resource;
  /**
   * The size of `resource` until a span is queued with it, which then counts it (then 0). A
   * resource is held by every span queued with it, and those count only their lines: one small span
   * after each 60 KB `hello`, or OTLP requests of one span and a large resource, held hundreds of
   * MB the queue counted as a few, past --queue-max-bytes and --memory-limit alike.
   */
  resourceBytes: number;
}

export type Rejection = { reason: string; message: string };

/** A line whose bytes are not UTF-8: no JSON text (RFC 8259 §8.1), so `invalid_json`. */
const NOT_UTF8: ValidationResult = { ok: false, reason: 'invalid_json', message: 'not JSON: the line is not valid UTF-8' };

/**
 * Other keys a sender may state a default's value under, all read by Langfuse (the older
 * `deployment.environment`; Langfuse's Python SDK's resource keys): a resource with one of them
 * sets its own, and the default inserted beside it would win (deployment.environment.name is read
 * first; service.version would become every observation's version).
 */
const SAME_AS: Readonly<Record<string, readonly string[]>> = {
  [RESOURCE.environment]: ['deployment.environment', 'langfuse.environment'],
  [RESOURCE.serviceVersion]: ['langfuse.release'],
};

/** Client drop reports are logged at most this often (the rest summed into the next warning). */
export const CLIENT_DROPS_LOG_MS = 10_000;

export interface RecordSinkOptions {
  sampleRatio: number;
  /** Scores go to their own sender (Langfuse's REST API), not the span queue. */
  onScore?: (score: ScoreRecord, session: IngestSession) => void;
  /**
   * Attributes every sender's resource gets where it has none of its own (`--environment`,
   * `--release`), like the OpenTelemetry Collector's resource processor with `insert`: the app's
   * own value, being more specific, wins.
   */
  resourceDefaults?: Attributes;
}

export class RecordSink {
  /** Live listeners of `dspy-o11yd tail`. */
  readonly tailListeners = new Set<(line: string) => void>();
  private readonly defaults: readonly (readonly [string, AttributeValue])[];
  /** The resource of a session that sends no `hello`: the defaults alone, one object for all. */
  private readonly emptyResource: Resource;
  /** Client drop reports since the last warning about them (warnClientDrops). */
  private clientDrops = { records: 0, reports: 0 };
  private readonly clientDropsWarning = oncePer(CLIENT_DROPS_LOG_MS);

  constructor(
    private readonly queue: SpanQueue,
    private readonly stats: Stats,
    private readonly log: Logger,
    private readonly options: RecordSinkOptions,
  ) {
    this.defaults = Object.entries(options.resourceDefaults ?? {});
    this.emptyResource = this.withDefaults(EMPTY_RESOURCE);
  }

  /**
   * One warning per {@link CLIENT_DROPS_LOG_MS} at most, with what was reported meanwhile: every
   * `stats` record was a line of its own, so a client could write the log as fast as it wrote to
   * the socket. The counts are exact in `spans_dropped_total{reason="client_buffer"}`.
   */
  private warnClientDrops(session: IngestSession, dropped: number, reason: string): void {
    this.clientDrops.records += dropped;
    this.clientDrops.reports++;
    if (!this.clientDropsWarning()) return;
    const { records, reports } = this.clientDrops;
    this.clientDrops = { records: 0, reports: 0 };
    const since = reports > 1 ? { reports, droppedInAll: records } : {};
    this.log.warn({ transport: session.transport, dropped, reason, service: session.resource.attributes['service.name'], ...since }, 'a client reports records it dropped before sending');
  }

  /** A session whose records have `resource` (with the defaults), or none until a `hello`. */
  session(transport: Transport, resource?: Resource): IngestSession {
    const session: IngestSession = { transport, resource: this.emptyResource, resourceBytes: 0 };
    if (resource) this.useResource(session, resource);
    return session;
  }

  /**
   * The resource of the session's records from now on, measured (its attributes and scope as JSON) to be
   * counted with the first span queued with it. The shared default resource is not counted.
   */
  private useResource(session: IngestSession, resource: Resource): void {
    session.resource = this.withDefaults(resource);
    const scope = session.resource.scope;
    session.resourceBytes = Buffer.byteLength(JSON.stringify(session.resource.attributes)) + (scope ? Buffer.byteLength(JSON.stringify(scope)) : 0);
  }

  /** `resource`, or a copy with the default attributes it lacks (the same object when it lacks none). */
  private withDefaults(resource: Resource): Resource {
    const has = (k: string) => Object.hasOwn(resource.attributes, k);
    const missing = this.defaults.filter(([k]) => !has(k) && !(SAME_AS[k] ?? []).some(has));
    if (missing.length === 0) return resource;
    return { ...resource, attributes: { ...resource.attributes, ...Object.fromEntries(missing) } };
  }

  /** One NDJSON line (bytes without the newline; `ascii` when known to be ASCII). Returns the rejection, if any. */
  acceptLine(session: IngestSession, buf: Buffer, start: number, end: number, ascii = false): Rejection | undefined {
    // The wire is UTF-8 (DESIGN §2; RFC 8259 §8.1), as OTLP/JSON requires it: decoded, bad bytes
    // became U+FFFD and the record was accepted with text its sender never wrote. Checked only
    // for lines not known to be ASCII (a SIMD scan).
    if (!ascii && !isUtf8(buf.subarray(start, end))) return this.accept(session, NOT_UTF8);
    // For ASCII bytes latin1 gives the same string as UTF-8, by copying instead of decoding.
    const line = buf.toString(ascii ? 'latin1' : 'utf8', start, end);
    // A valid span is queued as its wire line itself (model.ts), not re-serialized.
    return this.accept(session, parseLine(line), line, ascii);
  }

  /** One already-parsed value (JSON bodies, OTLP spans). */
  acceptValue(session: IngestSession, value: unknown): Rejection | undefined {
    return this.accept(session, validateRecord(value));
  }

  /** A line that was over `--max-record-bytes`, skipped by the splitter. */
  rejectTooLarge(session: IngestSession, limit: number): Rejection {
    this.stats.recordsInvalid.add([session.transport, 'too_large']);
    return { reason: 'too_large', message: `record longer than --max-record-bytes (${limit} bytes)` };
  }

  /** The part of a line a connection held when it was closed for sending nothing more (--partial-line-timeout). */
  rejectIncomplete(session: IngestSession): Rejection {
    this.stats.recordsInvalid.add([session.transport, 'incomplete']);
    return { reason: 'incomplete', message: 'record without its newline when the connection went idle (--partial-line-timeout)' };
  }

  /** A JSON body that does not parse: no record of it can be read, it counts as one invalid record. */
  rejectInvalidJson(session: IngestSession, message: string): Rejection {
    this.stats.recordsInvalid.add([session.transport, 'invalid_json']);
    return { reason: 'invalid_json', message };
  }

  /** A whole body refused before any record is read: over the size limit, or not readable (content coding, media type). */
  rejectBody(transport: Transport, reason: 'too_large' | 'invalid_body' | 'invalid_otlp'): void {
    this.stats.recordsInvalid.add([transport, reason]);
  }

  private accept(session: IngestSession, result: ValidationResult, line?: string, ascii = false): Rejection | undefined {
    if (!result.ok) {
      this.stats.recordsInvalid.add([session.transport, result.reason]);
      this.log.debug({ transport: session.transport, reason: result.reason, error: result.message }, 'invalid record dropped');
      return { reason: result.reason, message: result.message };
    }
    const record = result.record;
    this.stats.recordsReceived.add([session.transport, record.type]);
    if (this.tailListeners.size) this.tail(record);
    switch (record.type) {
      case 'hello': {
        // A scope is the spool's own (queue/spool.ts), not part of the wire protocol: no sender sets one.
        const scope = session.transport === 'spool' && line !== undefined ? spooledScope(line) : undefined;
        this.useResource(session, { attributes: record.resource ?? {}, sdk: record.sdk, ...(scope && { scope }) });
        break;
      }
      case 'span':
        this.enqueue(session, record, line, ascii);
        break;
      case 'event':
        this.enqueue(session, eventAsSpan(record));
        break;
      case 'stats':
        this.stats.drop('client_buffer', record.droppedRecords);
        this.warnClientDrops(session, record.droppedRecords, record.reason);
        break;
      case 'score':
        if (this.options.onScore) this.options.onScore(record, session);
        break;
    }
    return undefined;
  }

  /**
   * `line`: the span's wire line when it has one (`ascii` when known to be), else the record is
   * serialized. The first span queued with the session's resource also counts the resource's bytes.
   */
  private enqueue(session: IngestSession, span: SpanRecord, line?: string, ascii = false): void {
    this.stats.spansReceived++;
    if (this.options.sampleRatio < 1 && !keepTrace(span.traceId, this.options.sampleRatio)) {
      this.stats.drop('sampled', 1);
      return;
    }
    const resource = session.resource;
    const resourceBytes = session.resourceBytes;
    session.resourceBytes = 0;
    this.queue.push(line === undefined ? queuedSpan(span, resource, resourceBytes) : QueuedSpan.fromLine(line, resource, ascii, resourceBytes));
  }

  private tail(record: WireRecord): void {
    const line = JSON.stringify(record);
    for (const listener of this.tailListeners) listener(line);
  }
}

/** A point event is exported as a zero-length observation of type `event` (Langfuse ignores span events). */
export function eventAsSpan(e: EventRecord): SpanRecord {
  return {
    v: 1,
    type: 'span',
    traceId: e.traceId,
    spanId: e.spanId ?? newSpanId(),
    parentSpanId: e.parentSpanId,
    name: e.name,
    startTimeUnixNano: e.timeUnixNano,
    endTimeUnixNano: e.timeUnixNano,
    attributes: { ...e.attributes, [ATTR.observationType]: 'event' },
  };
}
