/**
 * A Langfuse-shaped OTLP sink for benchmarks: it gunzips each request and counts the distinct
 * span ids by walking the protobuf wire format (no full decode), so the measuring process spends
 * as little CPU as possible; a batch delivered twice (a retry) counts once. Correctness is the
 * tests' job (daemon/test uses the decoding fake Langfuse).
 */
import { createServer, type Server } from 'node:http';
import { gunzip } from 'node:zlib';
import { promisify } from 'node:util';

const gunzipAsync = promisify(gunzip);

function readVarint(buf: Uint8Array, pos: number): [number, number] {
  let result = 0;
  let shift = 0;
  for (;;) {
    const b = buf[pos++]!;
    result += (b & 0x7f) * 2 ** shift;
    if (b < 0x80) return [result, pos];
    shift += 7;
  }
}

/**
 * Calls `onField(field, start, end)` for each length-delimited field of the message in
 * buf[start, end), until it returns true.
 */
function eachLenField(buf: Uint8Array, start: number, end: number, onField: (field: number, s: number, e: number) => boolean | void): void {
  let pos = start;
  while (pos < end) {
    const [tag, p1] = readVarint(buf, pos);
    const field = Math.floor(tag / 8);
    const wire = tag & 7;
    pos = p1;
    if (wire === 0) pos = readVarint(buf, pos)[1];
    else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else if (wire === 2) {
      const [len, p2] = readVarint(buf, pos);
      if (onField(field, p2, p2 + len) === true) return;
      pos = p2 + len;
    } else throw new Error(`unexpected wire type ${wire}`);
  }
}

/** The span_id (field 2) of the Span message in buf[start, end), as a latin1 string; '' if it has none. */
function spanIdOf(buf: Buffer, start: number, end: number): string {
  let id = '';
  // Encoders write fields in order: the id comes second, after trace_id, so the walk stops early.
  eachLenField(buf, start, end, (field, s, e) => {
    if (field !== 2) return false;
    id = buf.toString('latin1', s, e);
    return true;
  });
  return id;
}

/** The span ids in an ExportTraceServiceRequest (protobuf). */
export function protobufSpanIds(buf: Buffer): string[] {
  const ids: string[] = [];
  eachLenField(buf, 0, buf.length, (f1, s1, e1) => {
    if (f1 !== 1) return; // resource_spans
    eachLenField(buf, s1, e1, (f2, s2, e2) => {
      if (f2 !== 2) return; // scope_spans
      eachLenField(buf, s2, e2, (f3, s3, e3) => {
        if (f3 === 2) ids.push(spanIdOf(buf, s3, e3)); // spans
      });
    });
  });
  return ids;
}

const JSON_SPAN_ID = /"spanId"\s*:\s*"([^"]*)"/g;

/**
 * The span ids in an ExportTraceServiceRequest (OTLP JSON), without parsing it: the values of the
 * `"spanId":` keys (links, which also carry one, are not used by the benchmarks; a parent's key is
 * `"parentSpanId"`). Parsing hundreds of KB per request would make this backend answer late, which it must not.
 */
export function jsonSpanIds(body: Buffer): string[] {
  return Array.from(body.toString('utf8').matchAll(JSON_SPAN_ID), (m) => m[1]!);
}

export interface CountingBackend {
  url: string;
  /** Distinct span ids delivered since the start or the last reset(). */
  spans: number;
  /** Spans that arrived again (a retried batch): not in `spans`. */
  duplicates: number;
  requests: number;
  /** Answer every request with this status (e.g. 503 for "backend down"); 200 when undefined. */
  failWith: number | undefined;
  /** Delay before answering, as a remote Langfuse would (ms). */
  delayMs: number;
  waitFor(spans: number, timeoutMs: number): Promise<number>;
  /** Forgets the ids seen: the next run counts from 0 (and the set stays one run's size). */
  reset(): void;
  close(): Promise<void>;
}

export async function startCountingBackend(): Promise<CountingBackend> {
  const waiters: { spans: number; resolve: (t: number) => void }[] = [];
  let seen = new Set<string>();
  const backend: CountingBackend = {
    url: '',
    spans: 0,
    duplicates: 0,
    requests: 0,
    failWith: undefined,
    delayMs: 0,
    waitFor(spans, timeoutMs) {
      if (backend.spans >= spans) return Promise.resolve(performance.now());
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`only ${backend.spans} of ${spans} spans arrived within ${timeoutMs} ms`)), timeoutMs);
        waiters.push({ spans, resolve: (t) => (clearTimeout(timer), resolve(t)) });
      });
    },
    reset() {
      seen = new Set();
      backend.spans = 0;
      backend.duplicates = 0;
    },
    close: () => new Promise((r) => (server.closeAllConnections(), server.close(() => r()))),
  };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', async () => {
      backend.requests++;
      const answer = () => {
        res.writeHead(backend.failWith ?? 200, { 'content-type': 'application/json' });
        res.end('{}');
      };
      if (backend.failWith) return void setTimeout(answer, backend.delayMs);
      let body = Buffer.concat(chunks);
      // One large output chunk: zlib's default 16 KiB chunks cost a callback and a Buffer each (~1.5 µs
      // of this process's CPU per span, on the 2 cores the daemon under test needs).
      if (req.headers['content-encoding'] === 'gzip') body = await gunzipAsync(body, { chunkSize: 4 * 1024 * 1024 });
      const ids = req.headers['content-type']?.includes('json') ? jsonSpanIds(body) : protobufSpanIds(body);
      setTimeout(() => {
        for (const id of ids) {
          if (seen.has(id)) backend.duplicates++;
          else seen.add(id);
        }
        backend.spans = seen.size;
        const now = performance.now();
        for (let i = waiters.length - 1; i >= 0; i--) {
          if (backend.spans >= waiters[i]!.spans) waiters.splice(i, 1)[0]!.resolve(now);
        }
        answer();
      }, backend.delayMs);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const address = server.address();
  if (!address || typeof address === 'string') throw new Error('no address');
  backend.url = `http://127.0.0.1:${address.port}`;
  return backend;
}
