/**
 * HTTP ingest of the native protocol: `POST /v1/ingest` with NDJSON (`application/x-ndjson`) or
 * JSON (`application/json`: one record or an array). Answers 202 with what was accepted and
 * the first errors (DESIGN §2). Each body is its own session: a `hello` applies to the records
 * after it in the same body.
 */
import type { FastifyInstance } from 'fastify';
import { LineSplitter } from './line-splitter.js';
import type { Rejection, RecordSink } from './record-sink.js';

export interface IngestAnswer {
  accepted: number;
  rejected: number;
  errors: { index: number; message: string }[];
}

const MAX_LISTED_ERRORS = 10;

export function registerIngestRoutes(app: FastifyInstance, sink: RecordSink, maxRecordBytes: number): void {
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
    const body = request.body as Buffer;
    const session = sink.session('http');
    const { answer, count } = tally();
    if (request.headers['content-type']?.startsWith('application/json')) {
      let value: unknown;
      try {
        value = JSON.parse(body.toString('utf8'));
      } catch (err) {
        return reply.code(400).send({ error: `body is not JSON: ${(err as Error).message}` });
      }
      const records = Array.isArray(value) ? value : [value];
      // Sizes of parsed values are not known exactly; each gets its share of the body.
      const share = Math.ceil(body.length / Math.max(1, records.length));
      for (const record of records) {
        count(share > maxRecordBytes ? sink.rejectTooLarge(session, maxRecordBytes) : sink.acceptValue(session, record, share));
      }
    } else {
      const splitter = new LineSplitter(
        maxRecordBytes,
        (buf, start, end, ascii) => count(sink.acceptLine(session, buf, start, end, ascii)),
        () => count(sink.rejectTooLarge(session, maxRecordBytes)),
      );
      splitter.push(body);
      splitter.end();
    }
    return reply.code(202).send(answer);
  });
}
