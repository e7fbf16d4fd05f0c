/** Builds the exporter the configuration names (DESIGN §5: langfuse | otlp | console | file). */
import type { DaemonConfig } from '../config.js';
import type { SpanExporter } from './types.js';
import { parseOtlpHeaders } from './http-common.js';
import { createLangfuseExporter, createOtlpExporter } from './http-exporter.js';
import { createConsoleExporter, createFileExporter } from './local-exporters.js';
import { VERSION } from '../version.js';

export function createExporter(config: DaemonConfig, onRepair: (reason: string) => void): SpanExporter {
  switch (config.exporter) {
    case 'langfuse':
      return createLangfuseExporter({
        host: config.langfuse.host,
        publicKey: config.langfuse.publicKey!,
        secretKey: config.langfuse.secretKey!,
        encoding: config.encoding,
        sdkVersion: VERSION,
        onRepair,
        // Parse, map, encode and gzip off the main thread, which keeps ingesting meanwhile.
        worker: true,
        outbound: config.outbound,
      });
    case 'otlp':
      return createOtlpExporter({
        endpoint: config.otlp.endpoint!,
        headers: parseOtlpHeaders(config.otlp.headers ?? ''),
        encoding: config.encoding,
        compression: config.otlp.compression,
        worker: true,
        outbound: config.outbound,
      });
    case 'file':
      return createFileExporter(config.file!);
    case 'console':
      return createConsoleExporter(process.stdout);
  }
}
