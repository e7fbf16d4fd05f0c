/**
 * An OTLP body's encoding from its `content-type`, apart from the decoder (which loads protobufjs):
 * the native ingest route refuses OTLP bodies by it too.
 */

/** `content-type` → encoding: anything mentioning json is JSON, `application/x-protobuf` (or `application/protobuf`) protobuf. */
export function encodingOfContentType(contentType: string | undefined): 'protobuf' | 'json' | undefined {
  const ct = (contentType ?? '').toLowerCase();
  if (ct.includes('application/json')) return 'json';
  if (ct.includes('application/x-protobuf') || ct.includes('application/protobuf')) return 'protobuf';
  return undefined;
}
