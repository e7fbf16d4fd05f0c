/**
 * The cost of a generation, as `costUsd` of @dspy-o11y/proto computes it, with the model's price
 * looked up once per model name (the lookup normalises the name with several regular
 * expressions: it was ~5 % of a span's cost when done for every generation).
 */
import { MAX_MODEL_NAME_LENGTH, costAtPrice, resolveModelPrice, type ModelPrice, type TokenUsage } from '@dspy-o11y/proto';
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

/** `costUsd(model, usage, config.prices)` with the price cached per model name. */
export function generationCost(model: string, usage: TokenUsage, config: ResolvedConfig): number | undefined {
  // Longer names have no price (resolveModelPrice's bound) and are not cached either: 1,024 of
  // them (a response's model is the server's word) would have held 64 MB.
  if (model.length > MAX_MODEL_NAME_LENGTH) return undefined;
  const price = priceOf(model, config);
  return price ? costAtPrice(price, usage) : undefined;
}
