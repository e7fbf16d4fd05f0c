export { startDaemon, type RunningDaemon } from './daemon.js';
export { resolveConfig, ConfigError, OPTIONS, type DaemonConfig } from './config.js';
export { createLogger } from './log.js';
export type { QueuedSpan, Resource } from './model.js';
export type { SpanExporter, ExportOutcome } from './export/types.js';
