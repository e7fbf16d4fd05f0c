/**
 * Options (from `configure()` and the environment) and the resource sent in `hello`.
 */
import { readFileSync } from 'node:fs';
import { MAX_ATTRIBUTE_KEY_LENGTH, parseDecimal, type AttributeValue, type ModelPrice } from '@dspy-o11y/proto';
import { TRUNCATION_MARKER } from './json.js';

/** Characters of resource attributes sent in `hello`, at most: a quarter of the daemon's line limit. */
const MAX_RESOURCE_CHARS = 256 * 1024;

export const SDK_NAME = 'dspy-o11y';
export const SDK_VERSION: string = (() => {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : '0.0.0';
  } catch {
    return '0.0.0';
  }
})();

export const DEFAULT_ENDPOINT = 'unix:///tmp/dspy-o11yd.sock';

export interface ConfigureOptions {
  /** `unix:///path/to.sock` or `http://host:port` (env `DSPY_O11Y_ENDPOINT`; default `unix:///tmp/dspy-o11yd.sock`). */
  endpoint?: string;
  /** `service.name` of the resource (else `service.name` in `resource`, env `OTEL_SERVICE_NAME`, then `service.name` in `OTEL_RESOURCE_ATTRIBUTES`). */
  serviceName?: string;
  /** `service.version` of the resource (Langfuse release; env `LANGFUSE_RELEASE`, then `service.version` in `OTEL_RESOURCE_ATTRIBUTES`). */
  serviceVersion?: string;
  /** `deployment.environment.name` of the resource (Langfuse environment; env `LANGFUSE_TRACING_ENVIRONMENT`, then `OTEL_RESOURCE_ATTRIBUTES`). */
  environment?: string;
  /** More resource attributes; win over the environment (`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_SERVICE_NAME`, Langfuse's). */
  resource?: Record<string, string | number | boolean>;
  /** Turn telemetry off: every call becomes a cheap no-op (env `DSPY_O11Y_DISABLED=1`, Langfuse's `LANGFUSE_TRACING_ENABLED=false` or OpenTelemetry's `OTEL_SDK_DISABLED=true`). */
  disabled?: boolean;
  /** Bearer token for the HTTP transport (env `DSPY_O11Y_INGEST_TOKEN`); leading and trailing whitespace is trimmed. */
  ingestToken?: string;
  /** Cap, in characters, of each captured input/output/attribute string (default 32768). */
  maxValueLength?: number;
  /**
   * Records buffered while the daemon is down or slow before the oldest are dropped (default
   * 100000). With records of ~1 KB, `maxBufferBytes` is the bound that applies first.
   */
  maxBufferRecords?: number;
  /**
   * Characters buffered before the oldest records are dropped (default 64 MiB). Buffered records
   * are flat strings, so this is about the memory they take (plus ~50 bytes per record); it is
   * used only while the daemon is behind or unreachable. The default absorbs a burst of 100,000
   * LLM spans emitted as fast as Node can while the daemon ingests at ~20,000/s (npm run bench:sdk):
   * 10,000 records / 8 MiB lost a third of them.
   */
  maxBufferBytes?: number;
  /** Largest single socket write / HTTP body, in characters (default 1 MiB / 512 KiB). */
  maxBatchBytes?: number;
  /** Default timeout of `flush()` and `shutdown()` in ms (default 2000). */
  flushTimeoutMs?: number;
  /** Per-million-token prices that extend or override the built-in table (matched like it). */
  prices?: Record<string, ModelPrice>;
  /** Record inputs and outputs (default true). False keeps only structure, timings, usage and cost. */
  captureIO?: boolean;
  /** Called on each captured input/output before it is serialized, e.g. to redact PII. */
  mask?: (value: unknown, kind: 'input' | 'output') => unknown;
  /**
   * Fraction of traces sent, 0 to 1 (env `DSPY_O11Y_SAMPLE_RATIO`, else Langfuse's
   * `LANGFUSE_SAMPLE_RATE`; default 1, everything).
   * Decided per trace by `keepTrace(traceId, ratio)`, the daemon's `--sample-ratio` rule: a trace
   * is sent whole or not at all (its spans, generations, events and scores), callbacks and
   * subscribers run either way, and skipped records are counted in `sdkStats().sampledOut`.
   * An invalid value (not a number in [0, 1]) keeps the default, with a debug message.
   */
  sampleRatio?: number;
  /**
   * A span that starts a trace joins the active OpenTelemetry span's trace, as its child, when the
   * app runs OpenTelemetry (env `DSPY_O11Y_OTEL_CONTEXT`; default true). False: a new trace, as without it.
   */
  otelContext?: boolean;
}

export interface ResolvedConfig {
  endpoint: string;
  disabled: boolean;
  ingestToken: string | undefined;
  maxValueLength: number;
  maxBufferRecords: number;
  maxBufferBytes: number;
  maxBatchBytes: number | undefined;
  flushTimeoutMs: number;
  prices: Record<string, ModelPrice> | undefined;
  captureIO: boolean;
  mask: ((value: unknown, kind: 'input' | 'output') => unknown) | undefined;
  sampleRatio: number;
  otelContext: boolean;
  resource: Record<string, AttributeValue>;
}

/** 1/true/yes/on or 0/false/no/off (any case, trimmed); undefined for anything else. The one yes/no rule of the variables and configure(). */
function yesNoWord(v: string): boolean | undefined {
  const t = v.trim();
  if (/^(1|true|yes|on)$/i.test(t)) return true;
  if (/^(0|false|no|off)$/i.test(t)) return false;
  return undefined;
}
const truthy = (v: string | undefined): boolean => v !== undefined && yesNoWord(v) === true;

/**
 * A yes/no variable of ours or Langfuse's: 1/true/yes/on or 0/false/no/off, any case; undefined
 * when unset or empty, or for any other value, which is said in a debug line (OpenTelemetry's rule
 * for a value it does not know: the safe default, with a warning), rather than ignored silently.
 */
function onOff(env: NodeJS.ProcessEnv, name: string, stays = 'telemetry stays on'): boolean | undefined {
  const v = env[name]?.trim();
  if (!v) return undefined;
  const yes = yesNoWord(v);
  if (yes !== undefined) return yes;
  debug(`${name}=${JSON.stringify(v)} is not one of 1, true, yes, on, 0, false, no, off; ${stays}`);
  return undefined;
}

/**
 * OpenTelemetry's off switch, read by its rule for booleans: only "true" (any case) is true, and
 * any value but "false" is false with a warning. Langfuse's SDKs stop with it too (they run on
 * OpenTelemetry's), so an app that sets it for every SDK expects ours off as well.
 */
function otelSdkDisabled(env: NodeJS.ProcessEnv): boolean {
  const v = env.OTEL_SDK_DISABLED?.trim();
  if (!v) return false;
  if (/^true$/i.test(v)) return true;
  if (!/^false$/i.test(v)) debug(`OTEL_SDK_DISABLED=${JSON.stringify(v)} is neither true nor false; telemetry stays on`);
  return false;
}

/** The first of `names` set to something in `env`: [name, value]. */
function firstSet(env: NodeJS.ProcessEnv, ...names: string[]): [string, string] | undefined {
  for (const name of names) {
    const v = env[name];
    if (v !== undefined && v.trim() !== '') return [name, v.trim()];
  }
  return undefined;
}

/** A ratio in [0, 1] from the option, else the environment, else 1 (an invalid one is ignored, with a debug message). */
function ratio(opt: number | undefined, env: NodeJS.ProcessEnv): number {
  let v: unknown = opt;
  let from = 'sampleRatio';
  const raw = v === undefined ? firstSet(env, 'DSPY_O11Y_SAMPLE_RATIO', 'LANGFUSE_SAMPLE_RATE') : undefined;
  if (raw) {
    // The daemon's rule (parseDecimal): Number() read 0x0 and 0b0 as 0, and dropped every trace.
    v = parseDecimal(raw[1]) ?? Number.NaN;
    from = raw[0];
  }
  if (v === undefined) return 1;
  if (typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= 1) return v;
  debug(`${from} must be a number from 0 to 1; sending every trace`);
  return 1;
}

/** A whole number from 1 (rounded down), else `dflt`: 0.5 became 0, and a ring of 0 records lost everything (NaN slots). */
function posInt(name: keyof ConfigureOptions, v: unknown, dflt: number): number {
  if (typeof v === 'number' && Number.isFinite(v) && v >= 1) return Math.floor(v);
  if (v !== undefined && v !== null) debug(`configure({ ${name} }) must be a whole number from 1; the default is used`);
  return dflt;
}

/*
 * configure() is called from JavaScript too, where nothing checks the types. An option of the
 * wrong type never throws; it is read the way its caller surely meant, or ignored (its variable or
 * default applies) with a debug line, never taken by JavaScript's truthiness: disabled: 'false'
 * turned telemetry off, captureIO: 'false' captured everything, a resource string became one
 * attribute per character. null is unset, as undefined.
 */

/** A boolean, or a string or number read like the yes/no variables (1/true/yes/on, 0/false/no/off). */
function yesNo(name: keyof ConfigureOptions, v: unknown): boolean | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'boolean') return v;
  if (typeof v === 'string' || typeof v === 'number') {
    const yes = yesNoWord(String(v));
    if (yes !== undefined) return yes;
  }
  debug(`configure({ ${name} }) must be a boolean (or 1/true/yes/on, 0/false/no/off); ignored`);
  return undefined;
}

/** A string; a finite number is written as one (serviceVersion: 2). */
function text(name: keyof ConfigureOptions, v: unknown): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string') return v;
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  debug(`configure({ ${name} }) must be a string; ignored`);
  return undefined;
}

/** A plain object of attributes (not an array, not a string spread into characters). */
function attributes(v: unknown): Record<string, unknown> | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
  debug('configure({ resource }) must be an object of attributes; ignored');
  return undefined;
}

/**
 * `OTEL_RESOURCE_ATTRIBUTES`: `k=v,k2=v2`, keys and values trimmed and percent-decoded (the spec
 * has `,` and `=` percent-encoded in both: a key was kept encoded), empty entries ignored. The spec
 * would discard the whole value for one malformed entry; like the Go SDK, only that entry is
 * skipped, with a debug line (by position: values may be private).
 */
export function parseResourceAttributes(raw: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!raw) return out;
  const parts = raw.split(',');
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    if (part.trim() === '') continue;
    const eq = part.indexOf('=');
    let key: string | undefined;
    let value: string | undefined;
    try {
      // The first `=` ends the key: a raw `=` in a value is kept, as most SDKs read it.
      if (eq > 0) [key, value] = [decodeURIComponent(part.slice(0, eq).trim()), decodeURIComponent(part.slice(eq + 1).trim())];
    } catch {
      key = undefined;
    }
    if (key && value !== undefined) out[key] = value;
    else debug(`OTEL_RESOURCE_ATTRIBUTES: entry ${i + 1} is not key=value with a percent-encoded key and value; skipped`);
  }
  return out;
}

/**
 * What the wire protocol's AttributeValue accepts: a string, a finite number, a boolean, or an
 * array of one of those. By hand, stopping at the first odd element: zod listed an issue for every
 * element of a sparse 10^7-item array (out of memory).
 */
function isAttributeValue(v: unknown): boolean {
  const t = typeof v;
  if (t === 'string' || t === 'boolean') return true;
  if (t === 'number') return Number.isFinite(v);
  if (!Array.isArray(v)) return false;
  const first = typeof v[0];
  if (v.length > 0 && first !== 'string' && first !== 'number' && first !== 'boolean') return false;
  for (const x of v) if (typeof x !== first || (first === 'number' && !Number.isFinite(x))) return false;
  return true;
}

/**
 * A mask that is not a function cannot mask: what it was meant to hide is not sent, each value
 * replaced by the marker of a mask that threw, as before, and now a debug line says why.
 */
function maskOf(v: unknown): ResolvedConfig['mask'] {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'function') return v as ResolvedConfig['mask'];
  debug('configure({ mask }) must be a function; inputs and outputs are replaced by "[mask threw]"');
  return () => {
    throw new TypeError('mask is not a function');
  };
}

export function resolveConfig(opts: ConfigureOptions, env: NodeJS.ProcessEnv = process.env): ResolvedConfig {
  const resource: Record<string, AttributeValue> = { ...parseResourceAttributes(env.OTEL_RESOURCE_ATTRIBUTES) };
  // Langfuse's own variables, as its SDKs read them: they win over the generic OTEL_RESOURCE_ATTRIBUTES.
  const lfEnvironment = firstSet(env, 'LANGFUSE_TRACING_ENVIRONMENT');
  if (lfEnvironment) resource['deployment.environment.name'] = lfEnvironment[1];
  const lfRelease = firstSet(env, 'LANGFUSE_RELEASE');
  if (lfRelease) resource['service.version'] = lfRelease[1];
  // The app's own resource wins over the environment (the spec merges OTEL_RESOURCE_ATTRIBUTES
  // under it), service.name included: the default used to overwrite `resource: {'service.name'}`.
  // Empty (or blank) is unset, as OpenTelemetry reads its variables: `OTEL_SERVICE_NAME=` was a name of "".
  const own = attributes(opts.resource);
  const ownName = typeof own?.['service.name'] === 'string' ? own['service.name'] : undefined;
  const serviceName = text('serviceName', opts.serviceName) ?? ownName ?? firstSet(env, 'OTEL_SERVICE_NAME')?.[1] ?? resource['service.name'] ?? 'unknown_service:node';
  Object.assign(resource, own ?? {});
  resource['service.name'] = serviceName;
  const serviceVersion = text('serviceVersion', opts.serviceVersion);
  if (serviceVersion !== undefined) resource['service.version'] = serviceVersion;
  const environment = text('environment', opts.environment);
  if (environment !== undefined) resource['deployment.environment.name'] = environment;
  // What the wire protocol does not take is left out: one such value (null, NaN, an object) made
  // the whole `hello` invalid, so the daemon used a default resource (no service.name) for the
  // connection, and a BigInt made `hello` throw, so nothing was ever sent (or counted). Strings
  // are cut at maxValueLength, as attribute values, and past MAX_RESOURCE_CHARS in all the rest
  // is left out (service.name first): a hello over the daemon's line limit is dropped whole too.
  const max = posInt('maxValueLength', opts.maxValueLength, 32 * 1024);
  const clean: Record<string, AttributeValue> = {};
  let room = MAX_RESOURCE_CHARS;
  for (const k of ['service.name', ...Object.keys(resource)]) {
    let v = resource[k];
    if (Object.hasOwn(clean, k) || k.length > MAX_ATTRIBUTE_KEY_LENGTH) continue;
    if (!isAttributeValue(v)) {
      if (v !== undefined && v !== null) debug(`resource attribute ${JSON.stringify(k.slice(0, 64))} is not a string, a finite number, a boolean or an array of one of those; left out`);
      continue;
    }
    if (typeof v === 'string' && v.length > max) v = v.slice(0, max) + TRUNCATION_MARKER;
    room -= k.length + JSON.stringify(v).length;
    if (room < 0) break;
    clean[k] = v;
  }
  clean['service.name'] ??= 'unknown_service:node';
  return {
    endpoint: opts.endpoint ?? (env.DSPY_O11Y_ENDPOINT?.trim() || DEFAULT_ENDPOINT),
    // Each switch is read (and its odd value said) on its own; any that says off wins.
    disabled: yesNo('disabled', opts.disabled) ?? [onOff(env, 'DSPY_O11Y_DISABLED') === true, onOff(env, 'LANGFUSE_TRACING_ENABLED') === false, otelSdkDisabled(env)].includes(true),
    ingestToken: opts.ingestToken ?? (env.DSPY_O11Y_INGEST_TOKEN || undefined),
    maxValueLength: max,
    maxBufferRecords: posInt('maxBufferRecords', opts.maxBufferRecords, 100_000),
    maxBufferBytes: posInt('maxBufferBytes', opts.maxBufferBytes, 64 * 1024 * 1024),
    maxBatchBytes: opts.maxBatchBytes === undefined ? undefined : posInt('maxBatchBytes', opts.maxBatchBytes, 1024 * 1024),
    flushTimeoutMs: posInt('flushTimeoutMs', opts.flushTimeoutMs, 2000),
    prices: opts.prices,
    captureIO: yesNo('captureIO', opts.captureIO) ?? true,
    mask: maskOf(opts.mask),
    sampleRatio: ratio(opts.sampleRatio, env),
    otelContext: yesNo('otelContext', opts.otelContext) ?? onOff(env, 'DSPY_O11Y_OTEL_CONTEXT', 'the active OpenTelemetry trace is still joined') ?? true,
    resource: clean,
  };
}

export function helloLine(resource: Record<string, AttributeValue>): string {
  return JSON.stringify({ v: 1, type: 'hello', resource, sdk: { name: SDK_NAME, version: SDK_VERSION } }) + '\n';
}

/** Diagnostics to stderr, only with `DSPY_O11Y_DEBUG=1`; each message once (the first 1,000 distinct ones). */
const SAID_MAX = 1000;
const said = new Set<string>();
export function debug(message: string): void {
  // Bounded: a server answering with a different body each time must not grow this forever.
  if (!truthy(process.env.DSPY_O11Y_DEBUG) || said.has(message) || said.size >= SAID_MAX) return;
  said.add(message);
  try {
    process.stderr.write(`[dspy-o11y] ${message}\n`);
  } catch {
    /* never throw */
  }
}
