/**
 * `dspy-o11yd check`: the configuration is valid (else exit 2 before we get here) and the
 * exporter's destination accepts us. For Langfuse and OTLP an empty export request is sent:
 * it carries no span, so nothing shows up in the project, but auth and reachability are tested.
 */
import { gzipSync } from 'node:zlib';
import type { DaemonConfig } from './config.js';
import { closeDispatcher, createDispatcher, proxyAuthorizations, proxyRefusal, proxySecrets, requestUntilAborted } from './export/outbound.js';
import { proxyFor } from './export/proxy-choice.js';
import { secretScrubber } from './log.js';
import { appendUrlPath, credentialScrubber, parseOtlpHeaders, safeDestination, urlCredentials } from './export/http-common.js';
import { LANGFUSE_TRACES_PATH, type Compression } from './export/http-exporter.js';

export async function checkCredentials(config: DaemonConfig): Promise<{ ok: boolean; message: string }> {
  let url: string;
  let headers: Record<string, string>;
  // Langfuse takes both encodings; JSON is what check has always sent it.
  let encoding: 'json' | 'protobuf' = 'json';
  // gzip as start sends it (Langfuse's exporter always; otlp by --otlp-compression, whose default
  // differs from OpenTelemetry's none): a backend refusing it failed start after check said OK.
  let compression: Compression = 'gzip';
  switch (config.exporter) {
    // What `start` would warn about (missing keys, an --encoding these exporters ignore), said here too.
    case 'console':
      return { ok: true, message: `configuration valid; exporter console (stdout)${config.exporterNote ? `: ${config.exporterNote}` : ''}` };
    case 'file':
      return { ok: true, message: `configuration valid; exporter file (${config.file})${config.exporterNote ? `: ${config.exporterNote}` : ''}` };
    case 'langfuse': {
      url = appendUrlPath(config.langfuse.host, LANGFUSE_TRACES_PATH);
      const auth = Buffer.from(`${config.langfuse.publicKey}:${config.langfuse.secretKey}`).toString('base64');
      headers = { authorization: `Basic ${auth}`, 'x-langfuse-ingestion-version': '4' };
      break;
    }
    case 'otlp': {
      url = config.otlp.endpoint!;
      headers = parseOtlpHeaders(config.otlp.headers ?? '');
      // As the exporter sends them: undici drops a URL's credentials, and check said 401 where start delivered.
      const fromUrl = urlCredentials(new URL(url));
      if (fromUrl && headers.authorization === undefined) headers.authorization = fromUrl;
      // As the exporter sends: a backend taking only protobuf answered JSON with 415 and check said FAILED (or the reverse).
      encoding = config.encoding;
      compression = config.otlp.compression;
      break;
    }
  }
  // Shown without credentials or query string, as the exporter shows its destination.
  const shown = safeDestination(new URL(url));
  const note = config.exporterNote ? ` (${config.exporterNote})` : '';
  // Through the proxy (and with the TLS settings) the exporters use: check must go where start goes.
  const target = new URL(url);
  // An empty ExportTraceServiceRequest: in protobuf, no bytes at all.
  const emptyRequest = encoding === 'json' ? Buffer.from(JSON.stringify({ resourceSpans: [] })) : Buffer.alloc(0);
  const dispatcher = createDispatcher(target.origin, config.outbound, { connections: 1 });
  try {
    const res = await requestUntilAborted(dispatcher, {
      origin: target.origin,
      path: `${target.pathname}${target.search}`,
      method: 'POST',
      headers: { ...headers, 'content-type': encoding === 'json' ? 'application/json' : 'application/x-protobuf', ...(compression === 'gzip' && { 'content-encoding': 'gzip' }) },
      body: compression === 'gzip' ? gzipSync(emptyRequest) : emptyRequest,
      signal: AbortSignal.timeout(config.exportTimeoutMs),
    });
    // As the exporters do: an answer echoing the credentials sent shows it without them.
    const body = credentialScrubber({ ...headers, ...proxyAuthorizations(config.outbound.proxy) })(await res.body.text()).slice(0, 300);
    if (res.statusCode >= 200 && res.statusCode < 300) return { ok: true, message: `${config.exporter} at ${shown} accepted an empty export (${res.statusCode})${note}` };
    return { ok: false, message: `${config.exporter} at ${shown} answered ${res.statusCode}: ${body}${note}` };
  } catch (err) {
    // A 407 (undici's error, not an answer): the proxy reached, our proxy credentials refused.
    const refusal = proxyRefusal(err);
    if (refusal) return { ok: false, message: `${config.exporter} at ${shown}: ${refusal.body}${note}` };
    // undici's messages name no credentials; the proxy's are cut all the same, as the logger cuts them.
    const why = secretScrubber(proxySecrets(config.outbound.proxy)).scrub((err as Error).message);
    // Through a proxy, the address undici names is the proxy's: say so, or it reads as the destination's.
    const proxy = proxyFor(target.origin, config.outbound.proxy);
    const via = proxy ? ` through the proxy ${new URL(proxy).origin}` : '';
    return { ok: false, message: `${config.exporter} at ${shown} is unreachable${via}: ${why}${note}` };
  } finally {
    await closeDispatcher(dispatcher, 0);
  }
}
