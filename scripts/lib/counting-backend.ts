/**
 * A Langfuse-shaped OTLP sink for benchmarks: it gunzips each request and counts the spans by
 * walking the protobuf wire format (no full decode), so the measuring process spends as little
 * CPU as possible. Correctness is the tests' job (daemon/test uses the decoding fake Langfuse).
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

/** Calls `onField(field, start, end)` for each length-delimited field of the message in buf[start, end). */
function eachLenField(buf: Uint8Array, start: number, end: number, onField: (field: number, s: number, e: number) => void): void {
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
      onField(field, p2, p2 + len);
      pos = p2 + len;
    } else throw new Error(`unexpected wire type ${wire}`);
  }
}

/** Spans in an ExportTraceServiceRequest (protobuf). */
export function countSpans(buf: Uint8Array): number {
  let n = 0;
  eachLenField(buf, 0, buf.length, (f1, s1, e1) => {
    if (f1 !== 1) return; // resource_spans
    eachLenField(buf, s1, e1, (f2, s2, e2) => {
      if (f2 !== 2) return; // scope_spans
      eachLenField(buf, s2, e2, (f3) => {
        if (f3 === 2) n++; // spans
      });
    });
  });
  return n;
}

/**
 * Spans in an ExportTraceServiceRequest (OTLP JSON), without parsing it: the `"spanId":` keys
 * (links, which also carry one, are not used by the benchmarks). Parsing hundreds of KB per
 * request would make this backend answer late, which it must not.
 */
export function countJsonSpans(body: Uint8Array): number {
  return (Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8').match(/"spanId"\s*:/g) ?? []).length;
}

export interface CountingBackend {
  url: string;
  spans: number;
  requests: number;
  /** Answer every request with this status (e.g. 503 for "backend down"); 200 when undefined. */
  failWith: number | undefined;
  /** Delay before answering, as a remote Langfuse would (ms). */
  delayMs: number;
  waitFor(spans: number, timeoutMs: number): Promise<number>;
  close(): Promise<void>;
}

export async function startCountingBackend(): Promise<CountingBackend> {
  const waiters: { spans: number; resolve: (t: number) => void }[] = [];
  const backend: CountingBackend = {
    url: '',
    spans: 0,
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
      let body: Uint8Array = Buffer.concat(chunks);
      // One large output chunk: zlib's default 16 KiB chunks cost a callback and a Buffer each (~1.5 µs
      // of this process's CPU per span, on the 2 cores the daemon under test needs).
      if (req.headers['content-encoding'] === 'gzip') body = await gunzipAsync(body, { chunkSize: 4 * 1024 * 1024 });
      const n = req.headers['content-type']?.includes('json') ? countJsonSpans(body) : countSpans(body);
      setTimeout(() => {
        backend.spans += n;
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
