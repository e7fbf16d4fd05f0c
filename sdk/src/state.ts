/**
 * Process-wide SDK state: the resolved configuration and the transport, created lazily on first
 * use so that importing the SDK costs nothing and the environment is read when it is used.
 */
import { type ConfigureOptions, type ResolvedConfig, debug, helloLine, resolveConfig } from './config.js';
import { type Transport, type Unusable, counters, createTransport } from './transport/index.js';

let options: ConfigureOptions = {};
let config: ResolvedConfig | undefined;
let transport: Transport | undefined;
/** Drops a replaced transport did not get to report, for the next one to report. */
const unreportedDrops = new Map<string, number>();
/** Transports being flushed before they close (shutdown(), replaced by configure()): sdkStats() counts what they hold. */
const retiring = new Set<Transport>();

/** The shutdown() in progress, if any. */
let closing: Promise<boolean> | undefined;
let transportKey = '';
/** After `shutdown()`: records are discarded until `configure()` is called again. */
let stopped = false;
/** Why the endpoint or token is unusable (logged with DSPY_O11Y_DEBUG=1): records are discarded under this reason. */
let unusable: Unusable | undefined;

/** The resolved configuration (read from the environment on first use). */
export function cfg(): ResolvedConfig {
  return config ?? init();
}

function init(): ResolvedConfig {
  let c: ResolvedConfig;
  try {
    c = resolveConfig(options);
  } catch (e) {
    debug(`bad configuration (${(e as Error).message}); telemetry is off`);
    c = { ...resolveConfig({}), disabled: true };
  }
  config = c;
  return c;
}

/** Whether telemetry is off (`DSPY_O11Y_DISABLED=1` or `configure({ disabled: true })`). */
export function isDisabled(): boolean {
  return (config ?? init()).disabled;
}

/** Strings as they are, anything else by its type: JSON.stringify threw on a BigInt endpoint or token, and send() lost the record uncounted. */
const keyPart = (v: unknown): string => (typeof v === 'string' ? v : `(${typeof v})`);

function keyOf(c: ResolvedConfig): string {
  return JSON.stringify([keyPart(c.endpoint), keyPart(c.ingestToken ?? ''), c.maxBufferRecords, c.maxBufferBytes, c.maxBatchBytes ?? 0, c.resource]);
}

function currentTransport(): Transport | undefined {
  if (transport || stopped || unusable) return transport;
  const c = cfg();
  if (c.disabled) return undefined;
  const made = createTransport(c.endpoint, {
    hello: helloLine(c.resource),
    maxBufferRecords: c.maxBufferRecords,
    maxBufferBytes: c.maxBufferBytes,
    maxBatchBytes: c.maxBatchBytes,
    ingestToken: c.ingestToken,
    // Read at exit: configure({ flushTimeoutMs }) alone does not replace the transport.
    exitFlushMs: () => cfg().flushTimeoutMs,
  });
  if (typeof made === 'string') {
    unusable = made;
    return undefined;
  }
  transport = made;
  transportKey = keyOf(c);
  if (unreportedDrops.size > 0) {
    transport.adoptUnreported(unreportedDrops);
    unreportedDrops.clear();
  }
  return transport;
}

/** Hand one finished NDJSON line to the transport. Never throws. */
export function send(line: string): void {
  const t = transport ?? currentTransport();
  if (t) t.send(line);
  else if (!cfg().disabled) {
    counters.enqueued++;
    const reason = stopped ? 'shutdown' : (unusable ?? 'invalid_endpoint');
    counters.dropped++;
    counters.droppedByReason[reason] = (counters.droppedByReason[reason] ?? 0) + 1;
  }
}

/** A record of a sampled-out trace was skipped (not built, not enqueued). */
export function countSampledOut(): void {
  counters.sampledOut++;
}

/**
 * A record the SDK refused to send (bad input): produced, then dropped with `reason`, and counted
 * as rejected. Not reported to the daemon: nothing was lost on the way, the record was bad.
 */
export function countInvalid(reason: string): void {
  if (cfg().disabled) return;
  counters.enqueued++;
  counters.dropped++;
  counters.droppedByReason[reason] = (counters.droppedByReason[reason] ?? 0) + 1;
  counters.rejected++;
}

const OPTION_KEYS = Object.keys({
  endpoint: 0,
  serviceName: 0,
  serviceVersion: 0,
  environment: 0,
  resource: 0,
  disabled: 0,
  ingestToken: 0,
  maxValueLength: 0,
  maxBufferRecords: 0,
  maxBufferBytes: 0,
  maxBatchBytes: 0,
  flushTimeoutMs: 0,
  prices: 0,
  captureIO: 0,
  mask: 0,
  sampleRatio: 0,
  otelContext: 0,
} satisfies Record<keyof ConfigureOptions, 0>) as (keyof ConfigureOptions)[];

/**
 * Configure the SDK (optional: everything has an environment variable or a default). Options
 * merge with those of earlier calls. Changing the endpoint, token, buffer bounds or resource
 * switches to a new transport; the old one is flushed and closed in the background.
 */
export function configure(opts: ConfigureOptions = {}): void {
  try {
    // The known options only: merging the whole object kept anything else in it for good, and
    // copied it at every later configure() (a string spreads into one key per character:
    // configure('x'.repeat(2e6)) made each later call take seconds).
    const next: Record<string, unknown> = { ...options };
    if (opts && typeof opts === 'object') {
      for (const k of OPTION_KEYS) if (Object.prototype.propertyIsEnumerable.call(opts, k)) next[k] = opts[k];
    }
    options = next as ConfigureOptions;
    const c = resolveConfig(options);
    config = c;
    stopped = false;
    unusable = undefined;
    if (transport && (c.disabled || keyOf(c) !== transportKey)) {
      const old = transport;
      transport = undefined;
      retiring.add(old);
      // Not holding the process: an app that ends now is held by its exit flush alone, which
      // covers this transport too, one flushTimeoutMs in all (this wait, then that one, was two).
      void old.flush(c.flushTimeoutMs, false).then(() => {
        retiring.delete(old);
        handOverDrops(old.close());
      });
    }
  } catch (e) {
    debug(`configure() failed: ${(e as Error).message}`);
  }
}

/** Hands a closed transport's unreported drops to the current transport, or keeps them for the next. */
function handOverDrops(drops: ReadonlyMap<string, number>): void {
  try {
    if (transport) transport.adoptUnreported(drops);
    else for (const [reason, n] of drops) unreportedDrops.set(reason, (unreportedDrops.get(reason) ?? 0) + n);
  } catch {
    /* never throw */
  }
}

/**
 * Resolves once buffered records are written (true; over HTTP, accepted with a 2xx), or after
 * `timeoutMs`, at once when no daemon listens, or when the daemon refused some for good (a 4xx:
 * a wrong ingest token's 401) or some were lost with the socket connection their write was on
 * (`connection_lost`, `write_timeout`; false). Never rejects.
 */
export function flush(timeoutMs?: number): Promise<boolean> {
  try {
    return flushAll(transport, timeoutMs ?? cfg().flushTimeoutMs);
  } catch {
    return Promise.resolve(false);
  }
}

/**
 * `t`'s flush and those of the transports being retired (a configure() replaced them): true when
 * each answers true. Their records are buffered too (sdkStats() counts them): flush() and
 * shutdown() answered true at once while those were still on their way, and an app that exited
 * right after lost them.
 */
function flushAll(t: Transport | undefined, timeoutMs: number): Promise<boolean> {
  const all = [...retiring];
  if (t && !retiring.has(t)) all.push(t);
  if (all.length === 0) return Promise.resolve(true);
  if (all.length === 1) return (all[0] as Transport).flush(timeoutMs);
  return Promise.all(all.map((x) => x.flush(timeoutMs))).then((oks) => oks.every(Boolean));
}

/**
 * Flush (within `timeoutMs`), then close the connection. Records produced afterwards are
 * discarded (counted as dropped, reason `shutdown`) until `configure()` is called again.
 * Never rejects.
 */
export function shutdown(timeoutMs?: number): Promise<boolean> {
  const t = transport;
  stopped = true;
  transport = undefined;
  let wait: number;
  try {
    wait = timeoutMs ?? cfg().flushTimeoutMs;
  } catch {
    wait = 0;
  }
  // A second call while the first is flushing answers with the first's outcome, not a premature true.
  if (!t) return closing ?? flushAll(undefined, wait);
  const done = closeTransport(t, wait).finally(() => {
    if (closing === done) closing = undefined;
  });
  closing = done;
  return done;
}

async function closeTransport(t: Transport, timeoutMs: number): Promise<boolean> {
  let ok = false;
  retiring.add(t);
  try {
    ok = await flushAll(t, timeoutMs);
  } catch {
    ok = false;
  }
  retiring.delete(t);
  try {
    // Drops it could not report go to the transport of a later configure(), as when configure() replaces one.
    handOverDrops(t.close());
  } catch {
    /* never throw */
  }
  return ok;
}

export interface SdkStats {
  /** Records produced (spans, events, scores) and handed to the transport (or dropped before it). */
  enqueued: number;
  /** Records written to the daemon. */
  sent: number;
  /**
   * Records lost, total and by reason (`buffer_full`, `connection_lost`, `write_timeout`,
   * `http_<status>`, `record_too_large`, `shutdown`, `exit` (still unsent as the process exits),
   * and for scores the SDK refused: `invalid_score`, `score_without_target`). With an endpoint or ingest token the SDK cannot
   * use, every record: `invalid_endpoint`, `invalid_ingest_token`.
   */
  dropped: number;
  droppedByReason: Record<string, number>;
  /**
   * Records rejected as invalid: by the SDK before sending (a score with bad input or no target;
   * also in `dropped`), or by the daemon (HTTP transport only: the Unix socket has no answers).
   */
  rejected: number;
  /** Records not sent because their trace is sampled out (`sampleRatio`); not in `enqueued`. */
  sampledOut: number;
  /** Records waiting in the buffer, and their size in characters. */
  buffered: number;
  bufferedBytes: number;
  /** Records in the write or request in progress. */
  inFlight: number;
  /** Whether the transport currently has a working connection. */
  connected: boolean;
  connects: number;
  failures: number;
}

/** Counters of the SDK's own delivery (process-wide, cumulative). */
export function sdkStats(): SdkStats {
  const t = transport;
  // Records still waiting in transports being flushed and closed (shutdown(), a configure() that
  // replaced them) are buffered or in flight too: enqueued = sent + dropped + buffered + in flight.
  let buffered = t?.buffered ?? 0;
  let bufferedBytes = t?.bufferedChars ?? 0;
  let inFlight = t?.inFlightRecords ?? 0;
  for (const r of retiring) {
    buffered += r.buffered;
    bufferedBytes += r.bufferedChars;
    inFlight += r.inFlightRecords;
  }
  return {
    enqueued: counters.enqueued,
    sent: counters.sent,
    dropped: counters.dropped,
    droppedByReason: { ...counters.droppedByReason },
    rejected: counters.rejected,
    sampledOut: counters.sampledOut,
    buffered,
    bufferedBytes,
    inFlight,
    connected: t?.connected ?? false,
    connects: counters.connects,
    failures: counters.failures,
  };
}
