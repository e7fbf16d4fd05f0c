/**
 * Model prices (USD per million tokens) and cost computation, shared by the SDK (which sets
 * `gen_ai.usage.cost`) and anything else that needs a cost estimate.
 *
 * Source: transcribed from Langfuse's default model price table
 * (langfuse/langfuse `worker/src/constants/default-model-prices.json`, standard tier, newest
 * entries dated 2026-07-11). Models released after that date are absent, and so get no cost:
 * add them, or correct a price, with `configure({ prices })` in the SDK or the `overrides`
 * argument of {@link costUsd}. Long-context tiers (e.g. > 200k input tokens) are not modelled:
 * the standard price is used.
 */

/** The date the prices below were taken (ISO 8601 date). */
export const PRICES_AS_OF = '2026-07-11';

export interface ModelPrice {
  /** USD per million input tokens (uncached). */
  input: number;
  /** USD per million output tokens (reasoning tokens included). */
  output: number;
  /** USD per million input tokens read from the prompt cache; defaults to `input`. */
  cachedInput?: number;
  /** USD per million input tokens written to the prompt cache (Anthropic); defaults to `input`. */
  cacheWrite?: number;
  /** USD per million cache writes with a 1-hour TTL (Anthropic: 2× input); defaults to `cacheWrite`. */
  cacheWrite1h?: number;
}

export type PriceTable = Readonly<Record<string, ModelPrice>>;

/**
 * Token counts, with OpenTelemetry GenAI semantics: `input` counts every input token, cached ones
 * included; `cacheRead` and `cacheWrite` say how many of those were read from / written to a
 * prompt cache.
 */
export interface TokenUsage {
  input?: number;
  output?: number;
  cacheRead?: number;
  cacheWrite?: number;
  /** Of `cacheWrite`, the tokens written with a 1-hour TTL (Anthropic's `ephemeral_1h_input_tokens`). */
  cacheWrite1h?: number;
}

/** Only Anthropic's entries have a cache-write price; its 1-hour writes cost 2× input (5-minute: 1.25×). */
const p = (input: number, output: number, cachedInput?: number, cacheWrite?: number): ModelPrice =>
  cacheWrite !== undefined
    ? { input, output, cachedInput, cacheWrite, cacheWrite1h: input * 2 }
    : cachedInput !== undefined
      ? { input, output, cachedInput }
      : { input, output };

/**
 * Canonical model names (lowercase) → price. Dated snapshots (`gpt-4o-mini-2024-07-18`,
 * `claude-sonnet-4-20250514`) resolve to these through {@link resolveModelPrice}; a snapshot is
 * listed separately only where its price differs from its alias.
 */
export const MODEL_PRICES: PriceTable = {
  // OpenAI
  'gpt-5.6-sol': p(5, 30, 0.5),
  'gpt-5.6-terra': p(2.5, 15, 0.25),
  'gpt-5.6-luna': p(1, 6, 0.1),
  'gpt-5.5': p(5, 30, 0.5),
  'gpt-5.5-pro': p(30, 180),
  'gpt-5.4': p(2.5, 15, 0.25),
  'gpt-5.4-pro': p(30, 180),
  'gpt-5.4-mini': p(0.75, 4.5, 0.075),
  'gpt-5.4-nano': p(0.2, 1.25, 0.02),
  'gpt-5.3-codex': p(1.75, 14, 0.175),
  'gpt-5.2': p(1.75, 14, 0.175),
  'gpt-5.2-pro': p(21, 168),
  'gpt-5.1': p(1.25, 10, 0.125),
  'gpt-5': p(1.25, 10, 0.125),
  'gpt-5-chat-latest': p(1.25, 10, 0.125),
  'gpt-5-pro': p(15, 120),
  'gpt-5-mini': p(0.25, 2, 0.025),
  'gpt-5-nano': p(0.05, 0.4, 0.005),
  'gpt-4.1': p(2, 8, 0.5),
  'gpt-4.1-mini': p(0.4, 1.6, 0.1),
  'gpt-4.1-nano': p(0.1, 0.4, 0.025),
  'gpt-4.5-preview': p(75, 150, 37.5),
  'gpt-4o': p(2.5, 10, 1.25),
  'gpt-4o-2024-05-13': p(5, 15),
  'gpt-4o-mini': p(0.15, 0.6, 0.075),
  'chatgpt-4o-latest': p(5, 15),
  'gpt-4-turbo': p(10, 30),
  'gpt-4-turbo-preview': p(10, 30),
  'gpt-4-0125-preview': p(10, 30),
  'gpt-4-1106-preview': p(10, 30),
  'gpt-4-preview': p(10, 30),
  'gpt-4-vision-preview': p(10, 30),
  'gpt-4-1106-vision-preview': p(10, 30),
  'gpt-4': p(30, 60),
  'gpt-4-32k': p(60, 120),
  'gpt-3.5-turbo': p(0.5, 1.5),
  'gpt-3.5-turbo-1106': p(1, 2),
  'gpt-3.5-turbo-0613': p(1.5, 2),
  'gpt-3.5-turbo-0301': p(2, 2),
  'gpt-3.5-turbo-16k': p(0.5, 1.5),
  'gpt-3.5-turbo-16k-0613': p(3, 4),
  'gpt-3.5-turbo-instruct': p(1.5, 2),
  o1: p(15, 60, 7.5),
  'o1-preview': p(15, 60, 7.5),
  'o1-mini': p(1.1, 4.4, 0.55),
  'o1-pro': p(150, 600),
  o3: p(2, 8, 0.5),
  'o3-mini': p(1.1, 4.4, 0.55),
  'o3-pro': p(20, 80),
  'o4-mini': p(1.1, 4.4, 0.275),
  // Anthropic
  'claude-fable-5': p(10, 50, 1, 12.5),
  'claude-mythos-5': p(10, 50, 1, 12.5),
  'claude-sonnet-5': p(2, 10, 0.2, 2.5),
  'claude-opus-4-8': p(5, 25, 0.5, 6.25),
  'claude-opus-4-7': p(5, 25, 0.5, 6.25),
  'claude-opus-4-6': p(5, 25, 0.5, 6.25),
  'claude-opus-4-5': p(5, 25, 0.5, 6.25),
  'claude-opus-4-1': p(15, 75, 1.5, 18.75),
  'claude-opus-4': p(15, 75, 1.5, 18.75),
  'claude-sonnet-4-6': p(3, 15, 0.3, 3.75),
  'claude-sonnet-4-5': p(3, 15, 0.3, 3.75),
  'claude-sonnet-4': p(3, 15, 0.3, 3.75),
  'claude-haiku-4-5': p(1, 5, 0.1, 1.25),
  'claude-3-7-sonnet': p(3, 15, 0.3, 3.75),
  'claude-3-5-sonnet': p(3, 15, 0.3, 3.75),
  'claude-3-5-haiku': p(0.8, 4, 0.08, 1),
  'claude-3-opus': p(15, 75),
  'claude-3-sonnet': p(3, 15, 0.3, 3.75),
  'claude-3-haiku': p(0.25, 1.25),
  // Google
  'gemini-3.5-flash': p(1.5, 9, 0.15),
  'gemini-3.1-pro-preview': p(2, 12, 0.2),
  'gemini-3.1-flash-lite': p(0.25, 1.5, 0.025),
  'gemini-3-pro-preview': p(2, 12, 0.2),
  'gemini-3-flash-preview': p(0.5, 3, 0.05),
  'gemini-2.5-pro': p(1.25, 10, 0.125),
  'gemini-2.5-flash': p(0.3, 2.5, 0.03),
  'gemini-2.5-flash-lite': p(0.1, 0.4, 0.01),
  'gemini-2.0-flash': p(0.1, 0.4),
  'gemini-2.0-flash-lite': p(0.075, 0.3),
  'gemini-1.5-pro': p(2.5, 7.5),
  'gemini-1.0-pro': p(0.125, 0.375),
  'gemini-1.0-pro-latest': p(0.25, 0.5),
};

/** Alternative spellings → canonical names (after normalisation). */
export const MODEL_ALIASES: Readonly<Record<string, string>> = {
  'claude-3.7-sonnet': 'claude-3-7-sonnet',
  'claude-3.5-sonnet': 'claude-3-5-sonnet',
  'claude-3.5-haiku': 'claude-3-5-haiku',
  'claude-4-5-haiku': 'claude-haiku-4-5',
  'gpt-35-turbo': 'gpt-3.5-turbo',
  'gemini-pro': 'gemini-1.0-pro',
};

// Provider prefixes ("openai/gpt-4o", "models/gemini-2.5-pro", Bedrock's
// "us.anthropic.claude-sonnet-4-5-20250929-v1:0") and version suffixes
// ("-2024-07-18", "-20250514", "@20240620", "-v1:0", "-latest", "-001").
const PREFIX = /^(?:openai|anthropic|google(?:ai)?|vertex_ai|azure|bedrock|models)\//;
const BEDROCK = /^(?:[a-z]{2,6}\.)?anthropic\./;
const SUFFIXES = [/-v\d+(?::\d+)?$/, /@[a-z0-9-]+$/, /-\d{4}-\d{2}-\d{2}$/, /-\d{8}$/, /-\d{4}$/, /-latest$/, /-0\d\d$/];

/** `model` lowercase, without provider prefix; snapshot suffixes and Azure's `gpt-35-` spelling kept. */
const withoutProvider = (model: string): string => model.trim().toLowerCase().replace(PREFIX, '').replace(BEDROCK, '');

/** Azure's `gpt-35-…` spelled as the table does, `gpt-3.5-…`. */
const tableSpelling = (name: string): string => name.replace(/^gpt-35-/, 'gpt-3.5-');

/** `model` as the price table spells names (lowercase, provider prefixes and snapshot suffixes stripped); '' for anything but a string (a public helper never throws). */
export function normalizeModelName(model: string): string {
  return typeof model === 'string' ? withoutSuffixes(tableSpelling(withoutProvider(model))) : '';
}

/** `name` without its snapshot suffixes (dates, versions, `-latest`), then its alias resolved. */
function withoutSuffixes(name: string): string {
  let m = name;
  for (let changed = true; changed; ) {
    changed = false;
    for (const re of SUFFIXES) {
      const next = m.replace(re, '');
      if (next !== m && next.length > 0) {
        m = next;
        changed = true;
      }
    }
  }
  return MODEL_ALIASES[m] ?? m;
}

function lookup(table: PriceTable, name: string): ModelPrice | undefined {
  if (Object.prototype.hasOwnProperty.call(table, name)) return table[name];
  return undefined;
}

// A variant qualifier after a known family name usually means another price (`gpt-5.1-mini` is not
// `gpt-5.1`): no prefix match across one of these.
const PRICED_QUALIFIERS = new Set([
  'mini', 'nano', 'pro', 'lite', 'flash', 'turbo', 'audio', 'realtime', 'search', 'codex', 'haiku', 'sonnet',
  'opus', 'large', 'small', 'max', '16k', '32k', 'vision', 'image', 'transcribe', 'tts', 'embedding', 'thinking',
  'deep', // o3-deep-research is 10/40, not o3's 2/8
]);

/**
 * The longest key of `tables` (the first one's on a tie) equal to `name` or a prefix of it
 * ending at a `-` boundary, so `gemini-2.5-flash-preview-05-20` finds `gemini-2.5-flash` and
 * `gpt-4o` never matches `gpt-4`.
 * A prefix never skips a priced qualifier (`-mini`, `-pro`, …).
 */
function prefixMatch(tables: readonly PriceTable[], name: string): ModelPrice | undefined {
  for (let end = name.length; end > 0; end = name.lastIndexOf('-', end - 1)) {
    if (end < name.length && PRICED_QUALIFIERS.has(name.slice(end + 1).split('-')[0] ?? '')) return undefined;
    for (const table of tables) {
      const hit = lookup(table, name.slice(0, end));
      if (hit) return hit;
    }
  }
  return undefined;
}

/**
 * Longest model name that has a price (no model's name comes near it). Longer ones are not looked
 * up: normalising strips snapshot suffixes one at a time and the prefix match tries every `-`
 * boundary, each step copying the name, so the work grew with the square of its length (a 40,000
 * character name took seconds, one of 1 MB hours). Bounded, it is bounded work whatever the input.
 */
export const MAX_MODEL_NAME_LENGTH = 256;

/**
 * The price of `model`: the overrides by name (exact, then normalised), the built-in table by
 * name, then the longest prefix in either (an override's on a tie). An override's prefix used to
 * come before the table's names: one for `claude-opus-4` also priced `claude-opus-4-5`, which has
 * its own entry. Undefined when unknown, and for a name longer than
 * {@link MAX_MODEL_NAME_LENGTH} (an override with such a key included).
 */
export function resolveModelPrice(model: string, overrides?: PriceTable): ModelPrice | undefined {
  if (!model || typeof model !== 'string' || model.length > MAX_MODEL_NAME_LENGTH) return undefined;
  const lower = model.trim().toLowerCase();
  const bare = withoutProvider(model);
  // Before the suffixes go: a snapshot with its own price (`openai/gpt-4o-2024-05-13`) is not its family.
  const stripped = tableSpelling(bare);
  const norm = withoutSuffixes(stripped);
  // An app's price keyed by Azure's spelling (`gpt-35-turbo-instruct`, which the table once lacked)
  // still prices `azure/gpt-35-turbo-instruct-0914`, before the table's `gpt-3.5-` entry does.
  const azure = overrides && bare !== stripped ? withoutSuffixes(bare) : undefined;
  const tables = overrides ? [overrides, MODEL_PRICES] : [MODEL_PRICES];
  for (const table of tables) {
    const hit =
      lookup(table, model) ?? lookup(table, lower) ?? lookup(table, stripped) ?? lookup(table, norm) ?? (table === overrides && azure !== undefined ? lookup(table, azure) : undefined);
    if (hit) return hit;
  }
  return prefixMatch(tables, norm);
}

const finite = (n: number | undefined): number => (typeof n === 'number' && Number.isFinite(n) && n > 0 ? n : 0);

/**
 * Cost in USD of one call, or undefined when the model's price is unknown (a name longer than
 * {@link MAX_MODEL_NAME_LENGTH} included) or there is no usage (`usage` undefined, null, or
 * without `input` and `output`). Never throws.
 * Cached input is priced at `cachedInput`, cache writes at `cacheWrite` (1-hour ones at
 * `cacheWrite1h`), the rest at `input`.
 */
export function costUsd(model: string, usage: TokenUsage | null | undefined, overrides?: PriceTable): number | undefined {
  const price = resolveModelPrice(model, overrides);
  return price ? costAtPrice(price, usage) : undefined;
}

/**
 * The arithmetic of `costUsd` for an already resolved price (the SDK caches prices per model).
 * Undefined, not NaN or a negative sum, for a price that is not a table of non-negative numbers
 * (an override without `input`): a cost of NaN is written as null, and the daemon refuses the span.
 * Undefined too for no usage, as `costUsd`.
 */
export function costAtPrice(price: ModelPrice, usage: TokenUsage | null | undefined): number | undefined {
  // A JS caller is not held to the types: no usage (a call that reported none), or no price, is
  // no cost rather than a TypeError thrown into the app.
  if (!usage || typeof usage !== 'object' || !price || typeof price !== 'object') return undefined;
  const input = finite(usage.input);
  const output = finite(usage.output);
  if (usage.input === undefined && usage.output === undefined) return undefined;
  const cacheRead = Math.min(finite(usage.cacheRead), input);
  const cacheWrite = Math.min(finite(usage.cacheWrite), input - cacheRead);
  const cacheWrite1h = Math.min(finite(usage.cacheWrite1h), cacheWrite);
  const uncached = input - cacheRead - cacheWrite;
  const writePrice = price.cacheWrite ?? price.input;
  const usd =
    (uncached * price.input +
      cacheRead * (price.cachedInput ?? price.input) +
      (cacheWrite - cacheWrite1h) * writePrice +
      cacheWrite1h * (price.cacheWrite1h ?? writePrice) +
      output * price.output) /
    1_000_000;
  if (!Number.isFinite(usd) || usd < 0) return undefined;
  // Round to 1e-10 USD: avoids float noise like 0.000123000000001 in the UI.
  return Math.round(usd * 1e10) / 1e10;
}
