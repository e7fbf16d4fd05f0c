/**
 * The cost of a generation, as `costUsd` of @dspy-o11y/proto computes it, with the model's price
 * looked up once per model name (the lookup normalises the name with several regular
 * expressions: it was ~5 % of a span's cost when done for every generation).
 */
import { resolveModelPrice, type ModelPrice, type TokenUsage } from '@dspy-o11y/proto';
import type { ResolvedConfig } from './config.js';

const CACHE_MAX = 1024;
/** Prices by model name, for the configuration they were resolved with (its `prices` overrides). */
let cache = new Map<string, ModelPrice | null>();
let cachedFor: ResolvedConfig | undefined;

function priceOf(model: string, config: ResolvedConfig): ModelPrice | undefined {
  if (cachedFor !== config) {
    cache = new Map();
    cachedFor = config;
  }
  let p = cache.get(model);
  if (p === undefined) {
    p = resolveModelPrice(model, config.prices) ?? null;
    if (cache.size >= CACHE_MAX) cache.clear();
    cache.set(model, p);
  }
  return p ?? undefined;
}

const finite = (n: number | undefined): number => (typeof n === 'number' && Number.isFinite(n) && n > 0 ? n : 0);

/** `costUsd(model, usage, config.prices)`, the same arithmetic (kept equal by sdk/test/prices.test.ts). */
export function generationCost(model: string, usage: TokenUsage, config: ResolvedConfig): number | undefined {
  const price = priceOf(model, config);
  if (!price) return undefined;
  const input = finite(usage.input);
  const output = finite(usage.output);
  if (usage.input === undefined && usage.output === undefined) return undefined;
  const cacheRead = Math.min(finite(usage.cacheRead), input);
  const cacheWrite = Math.min(finite(usage.cacheWrite), input - cacheRead);
  const uncached = input - cacheRead - cacheWrite;
  const usd =
    (uncached * price.input +
      cacheRead * (price.cachedInput ?? price.input) +
      cacheWrite * (price.cacheWrite ?? price.input) +
      output * price.output) /
    1_000_000;
  // Round to 1e-10 USD: avoids float noise like 0.000123000000001 in the UI.
  return Math.round(usd * 1e10) / 1e10;
}
