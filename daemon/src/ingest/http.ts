/**
 * HTTP ingest of the native protocol: `POST /v1/ingest` with NDJSON (`application/x-ndjson`) or
 * JSON (`application/json`: one record or an array), raw or `content-encoding: gzip` / `deflate`
 * (anything else is 415). Answers 202 with what was accepted and the first errors (DESIGN §2);
 * 400 when a JSON body does not parse or a compressed body does not inflate, 413 when it inflates
 * beyond the body limit. Each body is its own session: a `hello` applies to the records after it
 * in the same body.
 */
import { isUtf8 } from 'node:buffer';
import type { FastifyInstance } from 'fastify';
import { encodingOfContentType } from '../otlp/content-type.js';
import { decodeBody } from './content-encoding.js';
import { LineSplitter } from './line-splitter.js';
import type { Rejection, RecordSink } from './record-sink.js';

export interface IngestAnswer {
  accepted: number;
  rejected: number;
  errors: { index: number; message: string }[];
}

const MAX_LISTED_ERRORS = 10;

/**
 * What an OpenTelemetry exporter pointed at /v1/ingest instead of /v1/traces gets: a 4xx it logs
 * (a 202 told it its spans were delivered, while they were one invalid record). Answered 415 as
 * RFC 9110 allows after inspecting the data: the format, not the media type, is not this route's.
 */
const OTLP_ON_INGEST_MESSAGE = 'this is an OTLP trace export: send it to /v1/traces (OTLP/HTTP); /v1/ingest takes the native NDJSON/JSON records';

/** A top-level OTLP/JSON ExportTraceServiceRequest: an object with `resourceSpans` and no record `type`. */
const isOtlpJson = (value: unknown): boolean =>
  typeof value === 'object' && value !== null && !Array.isArray(value) && Object.hasOwn(value, 'resourceSpans') && !Object.hasOwn(value, 'type');

/**
 * A body within the size limit can hold millions of tiny records (32 MiB of `0\n`): read in one
 * go it held the event loop for seconds (socket ingest, export, /healthz all waiting; a liveness
 * probe with a 1 s timeout failed). It is read in slices, yielding in between.
 */
const YIELD_EVERY_RECORDS = 10_000;
const YIELD_EVERY_BYTES = 256 * 1024;
const yieldToOthers = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * A record's size as JSON; undefined for one nested deeper than JSON.stringify can go (a few
 * thousand levels: it recurses), which no wire record is. Thrown, that answered 500 and lost the
 * body's records after it, uncounted; now it is counted too_large like any record past the limit.
 */
function jsonBytes(record: unknown): number | undefined {
  try {
    return Buffer.byteLength(JSON.stringify(record) ?? '');
  } catch {
    return undefined;
  }
}

export function registerIngestRoutes(app: FastifyInstance, sink: RecordSink, maxRecordBytes: number, maxBodyBytes: number): void {
  const tally = () => {
    const answer: IngestAnswer = { accepted: 0, rejected: 0, errors: [] };
    let index = 0;
    const count = (rejection: Rejection | undefined) => {
      if (rejection) {
        answer.rejected++;
        if (answer.errors.length < MAX_LISTED_ERRORS) answer.errors.push({ index, message: `${rejection.reason}: ${rejection.message}` });
      } else answer.accepted++;
      index++;
    };
    return { answer, count };
  };

  app.post('/v1/ingest', async (request, reply) => {
    const mediaType = String(request.headers['content-type'] ?? '').trimStart().toLowerCase();
    if (encodingOfContentType(mediaType) === 'protobuf') {
      sink.rejectBody('http', 'invalid_body');
      return reply.code(415).send({ error: OTLP_ON_INGEST_MESSAGE });
    }
    const decoded = await decodeBody(Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0), String(request.headers['content-encoding'] ?? ''), maxBodyBytes);
    if (!Buffer.isBuffer(decoded)) {
      sink.rejectBody('http', decoded.status === 413 ? 'too_large' : 'invalid_body');
      return reply.code(decoded.status).send({ error: decoded.error });
    }
    const body = decoded;
    const session = sink.session('http');
    const { answer, count } = tally();
    // Media types are case-insensitive (RFC 9110 §8.3.1).
    if (mediaType.startsWith('application/json')) {
      let value: unknown;
      try {
        // Refused like an OTLP/JSON body: decoded, bad bytes became U+FFFD in accepted records.
        if (!isUtf8(body)) throw new Error('the body is not valid UTF-8');
        const text = body.toString('utf8');
        // A leading BOM is ignored, as in NDJSON (line-splitter.ts): JSON.parse refuses it.
        value = JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
      } catch (err) {
        const message = `body is not JSON: ${(err as Error).message}`;
        sink.rejectInvalidJson(session, message);
        return reply.code(400).send({ error: message });
      }
      if (isOtlpJson(value)) {
        sink.rejectBody('http', 'invalid_body');
        return reply.code(415).send({ error: OTLP_ON_INGEST_MESSAGE });
      }
      const records = Array.isArray(value) ? value : [value];
      // Against --max-record-bytes: no record can be longer than a body within the limit; past it,
      // each record is measured, as its JSON, against the limit.
      const measure = body.length > maxRecordBytes;
      for (let i = 0; i < records.length; i++) {
        if (i > 0 && i % YIELD_EVERY_RECORDS === 0) await yieldToOthers();
        const record: unknown = records[i];
        const bytes = measure ? jsonBytes(record) : 0;
        if (bytes === undefined) count({ ...sink.rejectTooLarge(session, maxRecordBytes), message: 'record nested too deep to measure against --max-record-bytes' });
        else count(bytes > maxRecordBytes ? sink.rejectTooLarge(session, maxRecordBytes) : sink.acceptValue(session, record));
      }
    } else {
      const splitter = new LineSplitter(
        maxRecordBytes,
        (buf, start, end, ascii) => count(sink.acceptLine(session, buf, start, end, ascii)),
        () => count(sink.rejectTooLarge(session, maxRecordBytes)),
      );
      // A slice at a time, letting the socket, the exporter and /healthz run in between.
      for (let at = 0; at < body.length; at += YIELD_EVERY_BYTES) {
        if (at > 0) await yieldToOthers();
        splitter.push(body.subarray(at, Math.min(body.length, at + YIELD_EVERY_BYTES)));
      }
      splitter.end();
    }
    return reply.code(202).send(answer);
  });
}
