/**
 * OTLP/HTTP trace ingest: `POST /v1/traces`, as the OTLP specification (protocol/otlp.md,
 * "OTLP/HTTP") asks of a server, so any OpenTelemetry SDK's default exporter can send here.
 *
 * - Bodies: binary protobuf (`application/x-protobuf`) or OTLP/JSON (`application/json`), raw
 *   or `content-encoding: gzip` (or deflate, which the Python exporter offers); anything else is 415 (unsupported media type or content coding).
 * - Each ResourceSpans's resource becomes one daemon Resource shared by its spans (with an
 *   exporter that keeps scopes, one per ScopeSpans, carrying its scope: model.ts); each span is
 *   converted (otlp-convert.ts), normalized from the GenAI / OpenInference dialects when
 *   exporting to Langfuse (otlp-dialects.ts) and validated by the record sink with the proto
 *   schema (transport label `otlp`; invalid spans counted by reason and dropped).
 * - Answers (in the request's encoding): 200 with an ExportTraceServiceResponse, empty when every
 *   span was accepted, else with `partialSuccess {rejectedSpans, errorMessage}`; 400 with a
 *   google.rpc.Status when the body cannot be decoded (nothing of it is accepted); 413 when it
 *   inflates beyond the body limit or holds more than MAX_REQUEST_ELEMENTS messages (decode.ts).
 *   `--ingest-token` is enforced by the server's onRequest hook (ingest/auth.ts).
 * - The same handler serves Langfuse's path, `POST /api/public/otel/v1/traces`, so that Langfuse's
 *   own SDKs (which append that fixed path to their base URL) can export through the daemon; the
 *   rest of Langfuse's API (`/api/public/…`: prompts, scores, datasets, media) is not served here
 *   and answers 404 with a JSON message saying so.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { DecodedTraceRequest, OtlpEncoding } from '../otlp/decode.js';
import { LANGFUSE_TRACES_PATH } from '../export/http-exporter.js';
import { decodeBody } from './content-encoding.js';
import type { RecordSink } from './record-sink.js';

// The decoder (protobufjs) and converter are loaded on demand: `cli.ts` imports the daemon for
// every command, and `status` / `tail` should not pay ~50-90 ms for a protobuf parser. The daemon
// starts loading them in the background when it registers the route.
type OtlpModules = [typeof import('../otlp/decode.js'), typeof import('./otlp-convert.js')];
let modules: Promise<OtlpModules> | undefined;
const loadModules = (): Promise<OtlpModules> => (modules ??= Promise.all([import('../otlp/decode.js'), import('./otlp-convert.js')]));


export const OTLP_TRACES_PATH = '/v1/traces';
/** Where Langfuse's API lives on its host; its OTLP path is the one served under it. */
export const LANGFUSE_API_PREFIX = '/api/public';
/** What the rest of Langfuse's API gets (404): the daemon is no Langfuse host. */
export const LANGFUSE_API_NOT_SERVED = `dspy-o11yd takes only traces from Langfuse's SDKs (POST ${LANGFUSE_TRACES_PATH}): send prompt, score, dataset and media requests to the Langfuse host itself`;
const PROTOBUF = 'application/x-protobuf';
const JSON_TYPE = 'application/json';
/** google.rpc.Code INVALID_ARGUMENT, the code of an undecodable request. */
const INVALID_ARGUMENT = 3;
/** Rejected spans described in `partialSuccess.errorMessage`, at most. */
const MAX_LISTED_REJECTIONS = 5;

export interface OtlpRouteOptions {
  /** Largest body accepted after gunzip (the server's bodyLimit bounds the compressed size). */
  readonly maxBodyBytes: number;
  /** Rewrite GenAI / OpenInference attributes into the neutral vocabulary (Langfuse exporter). */
  readonly normalizeDialects: boolean;
  /** Keep each span's instrumentation scope (all exporters but Langfuse's, which sends ours: DESIGN §6). */
  readonly keepScopes: boolean;
  /**
   * Counts a request refused whole (4xx: nothing of it can be read), as one invalid record:
   * `too_large` (413) or `invalid_otlp` (400, 415).
   */
  readonly countRefused?: (reason: 'too_large' | 'invalid_otlp') => void;
}

/** Protobuf base-128 varint of a non-negative integer (≤ 2^53). */
function varint(out: number[], n: number): void {
  while (n > 127) {
    out.push((n % 128) | 128);
    n = Math.floor(n / 128);
  }
  out.push(n);
}

/** A length-delimited field (wire type 2) holding `bytes`. */
function lengthDelimited(out: number[], field: number, bytes: ArrayLike<number>): void {
  varint(out, (field << 3) | 2);
  varint(out, bytes.length);
  for (let i = 0; i < bytes.length; i++) out.push(bytes[i]!);
}

/** ExportTraceServiceResponse { ExportTracePartialSuccess partial_success = 1 } in protobuf. */
export function encodeExportResponse(rejectedSpans: number, errorMessage: string): Uint8Array {
  if (rejectedSpans === 0 && errorMessage === '') return new Uint8Array(0);
  // ExportTracePartialSuccess { int64 rejected_spans = 1; string error_message = 2 }
  const partial: number[] = [];
  if (rejectedSpans !== 0) {
    varint(partial, (1 << 3) | 0);
    varint(partial, rejectedSpans);
  }
  if (errorMessage !== '') lengthDelimited(partial, 2, Buffer.from(errorMessage, 'utf8'));
  const out: number[] = [];
  lengthDelimited(out, 1, partial);
  return Uint8Array.from(out);
}

/** google.rpc.Status { int32 code = 1; string message = 2 } in protobuf (code ≥ 0). */
export function encodeStatus(code: number, message: string): Uint8Array {
  const out: number[] = [];
  varint(out, (1 << 3) | 0);
  varint(out, code);
  lengthDelimited(out, 2, Buffer.from(message, 'utf8'));
  return Uint8Array.from(out);
}

function sendStatus(reply: FastifyReply, httpStatus: number, encoding: OtlpEncoding | undefined, message: string): FastifyReply {
  reply.code(httpStatus);
  if (encoding === 'protobuf') return reply.type(PROTOBUF).send(Buffer.from(encodeStatus(INVALID_ARGUMENT, message)));
  return reply.type(JSON_TYPE).send({ code: INVALID_ARGUMENT, message });
}

export function registerOtlpRoutes(app: FastifyInstance, sink: RecordSink, options: OtlpRouteOptions): void {
  loadModules().catch(() => {}); // warm up; a failure shows on the first request
  const refuse = (reply: FastifyReply, httpStatus: 400 | 413 | 415, encoding: OtlpEncoding | undefined, message: string): FastifyReply => {
    options.countRefused?.(httpStatus === 413 ? 'too_large' : 'invalid_otlp');
    return sendStatus(reply, httpStatus, encoding, message);
  };
  // Its own scope, which reads a body of any media type: OTLP wants every refusal as a Status
  // message, so the route answers an unknown one (415) itself instead of Fastify doing it in JSON.
  void app.register(async (scope) => {
    scope.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));
    scope.post(OTLP_TRACES_PATH, handle);
    scope.post(LANGFUSE_TRACES_PATH, handle);
  });
  // Fastify's own 404 would say only "Route GET:/api/public/v2/prompts/x not found".
  void app.register(
    async (scope) => {
      scope.setNotFoundHandler((_request, reply) => reply.code(404).send({ message: LANGFUSE_API_NOT_SERVED, error: 'Not Found', statusCode: 404 }));
    },
    { prefix: LANGFUSE_API_PREFIX },
  );
  async function handle(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    const [{ countSpans, decodeTraceRequest, encodingOfContentType, OtlpTooLargeError }, { toResource, toSpanRecord, withScope }] = await loadModules();
    const contentType = request.headers['content-type'];
    const encoding = encodingOfContentType(contentType);
    if (!encoding) {
      return refuse(reply, 415, undefined, `content-type must be ${PROTOBUF} or ${JSON_TYPE}, got ${contentType ?? 'none'}`);
    }
    const body = await decodeBody(Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0), String(request.headers['content-encoding'] ?? ''), options.maxBodyBytes);
    if (!Buffer.isBuffer(body)) return refuse(reply, body.status, encoding, body.error);

    let decoded: DecodedTraceRequest;
    try {
      decoded = decodeTraceRequest(body, encoding);
    } catch (err) {
      if (err instanceof OtlpTooLargeError) return refuse(reply, 413, encoding, `OTLP trace export too large: ${err.message}`);
      return refuse(reply, 400, encoding, `invalid OTLP trace export: ${(err as Error).message}`);
    }

    const total = countSpans(decoded);
    let rejected = 0;
    const reasons: string[] = [];
    for (const rs of decoded.resourceSpans) {
      // Each request's resource is an object of its own, held by its spans: counted with the first.
      const resource = toResource(rs.resource);
      const shared = options.keepScopes ? undefined : sink.session('otlp', resource);
      for (const ss of rs.scopeSpans) {
        const session = shared ?? sink.session('otlp', withScope(resource, ss.scope));
        for (const span of ss.spans) {
          const rejection = sink.acceptValue(session, toSpanRecord(span, options));
          if (!rejection) continue;
          rejected++;
          if (reasons.length < MAX_LISTED_REJECTIONS) reasons.push(`span ${span.spanId}: ${rejection.reason}: ${rejection.message}`);
        }
      }
    }
    const errorMessage = rejected === 0 ? '' : `${rejected} of ${total} spans rejected: ${reasons.join('; ')}${rejected > reasons.length ? '; …' : ''}`;

    reply.code(200);
    if (encoding === 'protobuf') return reply.type(PROTOBUF).send(Buffer.from(encodeExportResponse(rejected, errorMessage)));
    // proto3 JSON mapping: int64 as a decimal string.
    return reply.type(JSON_TYPE).send(rejected === 0 ? {} : { partialSuccess: { rejectedSpans: String(rejected), errorMessage } });
  }
}
