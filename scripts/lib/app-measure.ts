/**
 * The measured part of the SDK benchmark's app (scripts/lib/sdk-app.ts): from "go", emit the
 * spans in bursts, flush, and report CPU and wall time (both phases) and the event-loop delay
 * (the emission only).
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { AppConfig, AppResult } from './sdk-app.js';

/** Event-loop monitor resolution; the reported delay is the recorded interval minus this. */
export const ELD_RESOLUTION_MS = 10;

/** One contender's SDK, set up with its defaults. */
export interface Contestant {
  emit(i: number): void;
  flush(): Promise<boolean>;
  shutdown(): Promise<void>;
  stats?(): unknown;
}

/** What the measurement needs of perf_hooks' event-loop delay histogram. */
export interface DelayMonitor {
  enable(): unknown;
  disable(): unknown;
  percentile(p: number): number;
  readonly max: number;
  readonly count: number;
}

const hrUs = () => Number(process.hrtime.bigint() / 1000n);
const cpuUs = () => {
  const c = process.cpuUsage();
  return c.user + c.system;
};

export async function measureRun(
  c: Contestant,
  cfg: AppConfig,
  readyRss: number,
  newMonitor: () => DelayMonitor = () => monitorEventLoopDelay({ resolution: ELD_RESOLUTION_MS }),
): Promise<AppResult> {
  const eld = newMonitor();
  const t0 = performance.now();
  const hr0 = hrUs();
  const cpu0 = cpuUs();
  const ctx0 = process.resourceUsage().involuntaryContextSwitches;
  eld.enable();
  let i = 0;
  await new Promise<void>((resolve) => {
    const burst = () => {
      const end = Math.min(i + cfg.burst, cfg.spans);
      for (; i < end; i++) c.emit(i);
      if (i < cfg.spans) setImmediate(burst);
      else resolve();
    };
    setImmediate(burst);
  });
  const cpuEmit = cpuUs();
  const tEmit = performance.now();
  // The event-loop goal is about the app's loop while it emits; the flush is what an app does at shutdown.
  eld.disable();
  let flushOk = false;
  try {
    flushOk = await c.flush();
  } catch (e) {
    process.stderr.write(`flush failed: ${(e as Error).message}\n`);
  }
  const cpu1 = cpuUs();
  const hr1 = hrUs();
  const t1 = performance.now();
  const late = (ns: number) => Math.max(0, ns / 1e6 - ELD_RESOLUTION_MS);
  const result: AppResult = {
    contender: cfg.contender,
    spans: cfg.spans,
    cpuUs: cpu1 - cpu0,
    emitCpuUs: cpuEmit - cpu0,
    wallMs: t1 - t0,
    emitWallMs: tEmit - t0,
    flushOk,
    eld: { p50Ms: late(eld.percentile(50)), p99Ms: late(eld.percentile(99)), maxMs: late(eld.max), samples: eld.count },
    peakRss: process.resourceUsage().maxRSS * 1024,
    preempted: process.resourceUsage().involuntaryContextSwitches - ctx0,
    readyRss,
    windowUs: [hr0, hr1],
    stats: c.stats?.(),
  };
  return result;
}
