/**
 * Request bodies as they were sent: `content-encoding` undone within the body limit, for both
 * ingest routes. Both take gzip and deflate: OTLP/HTTP names only gzip, but the Python OTLP
 * exporter offers deflate (`OTEL_EXPORTER_OTLP_COMPRESSION=deflate`) and the Collector's receiver
 * takes it; refusing it cost such an app every span.
 */
import { promisify } from 'node:util';
import { gunzip as gunzipCallback, inflate as inflateCallback, inflateRaw as inflateRawCallback, type InputType, type ZlibOptions } from 'node:zlib';

const gunzip = promisify<InputType, ZlibOptions, Buffer>(gunzipCallback);
const inflate = promisify<InputType, ZlibOptions, Buffer>(inflateCallback);
const inflateRaw = promisify<InputType, ZlibOptions, Buffer>(inflateRawCallback);

/** Why a body cannot be read: the HTTP status to answer and a message. */
export interface UnreadableBody {
  readonly status: 400 | 413 | 415;
  readonly error: string;
}

/** The body as sent, or why it cannot be read. */
export async function decodeBody(body: Buffer, contentEncoding: string, maxBodyBytes: number): Promise<Buffer | UnreadableBody> {
  const coding = contentEncoding.trim().toLowerCase();
  if (coding === '' || coding === 'identity') return body;
  const gzip = coding === 'gzip' || coding === 'x-gzip';
  if (!gzip && coding !== 'deflate') return { status: 415, error: `content-encoding must be gzip, deflate or none, got ${coding}` };
  // The same bound as the compressed body's: a small bomb must not inflate past it.
  const options = { maxOutputLength: maxBodyBytes };
  try {
    if (gzip) return await gunzip(body, options);
    // HTTP's deflate is zlib-wrapped, but some clients send raw deflate.
    try {
      return await inflate(body, options);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'Z_DATA_ERROR') throw err;
      return await inflateRaw(body, options);
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') return { status: 413, error: `body inflates beyond ${maxBodyBytes} bytes` };
    return { status: 400, error: `invalid ${coding} body: ${(err as Error).message}` };
  }
}
