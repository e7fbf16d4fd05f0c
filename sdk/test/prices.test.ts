import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_MODEL_NAME_LENGTH, MODEL_PRICES, PRICES_AS_OF, costAtPrice, costUsd, normalizeModelName, resolveModelPrice } from '@dspy-o11y/proto';
import { costUsd as sdkCostUsd } from '../src/index.js';

test('the price table is dated and covers current OpenAI, Anthropic and Google models', () => {
  assert.match(PRICES_AS_OF, /^\d{4}-\d{2}-\d{2}$/);
  for (const m of ['gpt-5', 'gpt-5-mini', 'gpt-4.1', 'gpt-4o-mini', 'o4-mini', 'claude-sonnet-4-5', 'claude-haiku-4-5', 'claude-opus-4-1', 'gemini-2.5-pro', 'gemini-2.5-flash']) {
    const p = MODEL_PRICES[m];
    assert.ok(p && p.input > 0 && p.output > 0, m);
  }
});

test('dated snapshots, provider prefixes and cloud spellings resolve to their model', () => {
  const same = (a: string, b: string) => assert.deepEqual(resolveModelPrice(a), MODEL_PRICES[b], `${a} → ${b}`);
  same('gpt-4o-mini-2024-07-18', 'gpt-4o-mini');
  same('gpt-4o-2024-08-06', 'gpt-4o');
  same('GPT-4o-Mini', 'gpt-4o-mini');
  same('openai/gpt-4.1-mini-2025-04-14', 'gpt-4.1-mini');
  same('o3-mini-2025-01-31', 'o3-mini');
  same('claude-sonnet-4-5-20250929', 'claude-sonnet-4-5');
  same('claude-3-5-sonnet-20241022', 'claude-3-5-sonnet');
  same('claude-3-5-sonnet-v2@20241022', 'claude-3-5-sonnet');
  same('us.anthropic.claude-sonnet-4-5-20250929-v1:0', 'claude-sonnet-4-5');
  same('claude-3.7-sonnet-latest', 'claude-3-7-sonnet');
  same('models/gemini-2.5-flash', 'gemini-2.5-flash');
  same('gemini-2.5-flash-preview-05-20', 'gemini-2.5-flash');
  same('gemini-2.0-flash-001', 'gemini-2.0-flash');
  same('gpt-4-0613', 'gpt-4');
  // an exact entry wins over the family
  assert.deepEqual(resolveModelPrice('gpt-4o-2024-05-13'), MODEL_PRICES['gpt-4o-2024-05-13']);
  assert.equal(normalizeModelName('gpt-4o-mini-2024-07-18'), 'gpt-4o-mini');
});

test('a prefix never crosses a priced qualifier or a non-boundary', () => {
  assert.equal(resolveModelPrice('gpt-5.1-mini'), undefined, 'not priced as gpt-5.1');
  assert.equal(resolveModelPrice('gpt-4o-mini-audio-preview'), undefined);
  // Deep research models cost 5x (o3: 10/40) and 2x (o4-mini: 2/8) their family's price.
  assert.equal(resolveModelPrice('o3-deep-research'), undefined, 'not priced as o3');
  assert.equal(resolveModelPrice('o3-deep-research-2025-06-26'), undefined);
  assert.equal(resolveModelPrice('o4-mini-deep-research'), undefined, 'not priced as o4-mini');
  assert.notDeepEqual(resolveModelPrice('gpt-4o'), MODEL_PRICES['gpt-4']);
  assert.equal(resolveModelPrice('gpt-4x'), undefined);
  assert.equal(resolveModelPrice('llama-3-70b'), undefined);
  assert.equal(resolveModelPrice(''), undefined);
});

test('costUsd: uncached, cached and cache-write input, output; overrides; unknown models', () => {
  assert.equal(costUsd('gpt-4o-mini', { input: 1_000_000, output: 1_000_000 }), 0.75);
  assert.equal(costUsd('gpt-4o-mini', { input: 1_000_000, output: 0, cacheRead: 500_000 }), 0.1125);
  // Anthropic: cache writes at 1.25x, reads at 0.1x
  assert.equal(costUsd('claude-sonnet-4-5', { input: 3_000_000, output: 0, cacheRead: 1_000_000, cacheWrite: 1_000_000 }), 3 + 0.3 + 3.75);
  // Of the cache writes, those with Anthropic's 1-hour TTL at 2x input; the count is bounded by the writes.
  assert.equal(costUsd('claude-sonnet-4-5', { input: 3_000_000, output: 0, cacheWrite: 2_000_000, cacheWrite1h: 1_500_000 }), 3 + 0.5 * 3.75 + 1.5 * 6);
  assert.equal(costUsd('claude-sonnet-4-5', { input: 1_000_000, output: 0, cacheWrite: 1_000_000, cacheWrite1h: 5_000_000 }), 6);
  // A model without a 1-hour price (no cache-write price at all): its writes at input, as before.
  assert.equal(costUsd('gpt-4o', { input: 1_000_000, output: 0, cacheWrite: 1_000_000, cacheWrite1h: 1_000_000 }), costUsd('gpt-4o', { input: 1_000_000, output: 0 }));
  assert.equal(costUsd('mystery', { input: 10, output: 10 }), undefined);
  assert.equal(costUsd('gpt-4o-mini', {}), undefined);
  assert.equal(costUsd('mystery-2025-01-01', { input: 1_000_000 }, { mystery: { input: 2, output: 4 } }), 2);
  assert.equal(costUsd('gpt-4o-mini', { input: 1_000_000 }, { 'gpt-4o-mini': { input: 9, output: 9 } }), 9, 'overrides win');
  assert.equal(costUsd('claude-opus-4-5', { input: 1_000_000 }, { 'claude-opus-4': { input: 9, output: 9 } }), 5, 'a more specific name in the table beats an override\'s prefix');
  assert.equal(costUsd('claude-opus-4-0', { input: 1_000_000 }, { 'claude-opus-4': { input: 9, output: 9 } }), 9, 'an override\'s prefix beats the table\'s on a tie');
  assert.equal(costUsd('gpt-4o-mini', { input: -5, output: NaN }), 0);
  // A price that is not a table of numbers (an override without `input`, a negative one): no cost, not NaN.
  assert.equal(costUsd('half-priced', { input: 10, output: 10 }, { 'half-priced': { output: 2 } as never }), undefined);
  assert.equal(costUsd('negative', { input: 10, output: 10 }, { negative: { input: -1, output: -1 } }), undefined);
});

test('a model name longer than 256 characters has no price, whatever its shape: bounded work, not quadratic in its length', () => {
  const usage = { input: 1_000_000, output: 0 };
  // At the bound a name is still looked up (here priced as gpt-4o by prefix)…
  const atBound = 'gpt-4o-' + 'a'.repeat(256 - 7);
  assert.equal(atBound.length, 256);
  assert.equal(costUsd(atBound, usage), 2.5);
  // …one character more is not, even where a lookup would find a price. These names priced as
  // gpt-4o before, after work growing with the square of their length (a 40,000-character one
  // took seconds; the 1 MB ones, hours).
  assert.equal(costUsd(atBound + 'a', usage), undefined);
  const mb = 1024 * 1024;
  for (const name of ['gpt-4o' + '-a'.repeat(mb / 2), 'gpt-4o' + '-0001'.repeat(mb / 5), '-v1'.repeat(mb / 3) + 'x', 'gpt-4o' + ' '.repeat(mb)]) {
    assert.equal(costUsd(name, usage), undefined);
    assert.equal(resolveModelPrice(name, { [name]: { input: 1, output: 1 } }), undefined, 'an override with such a key too');
  }
  assert.equal(MAX_MODEL_NAME_LENGTH, 256);
  // Not a string (costUsd is public, and re-exported by the SDK): no price, nothing thrown.
  assert.equal(costUsd(42 as never, usage), undefined);
});

test('the cost helpers given no usage, no price or no name answer undefined (or no name), never throw', () => {
  // What an API gives for a call without usage (OpenAI's `usage: null` in a stream) reaches the
  // public helpers as is; a plain JS caller is not stopped by the types.
  for (const usage of [undefined, null, 'lots', 42]) {
    assert.equal(costUsd('gpt-4o-mini', usage as never), undefined, String(usage));
    assert.equal(sdkCostUsd('gpt-4o-mini', usage as never), undefined, `SDK's costUsd, ${String(usage)}`);
    assert.equal(costAtPrice(MODEL_PRICES['gpt-4o-mini']!, usage as never), undefined, String(usage));
  }
  assert.equal(costUsd('gpt-4o-mini', { input: 1_000_000 }, null as never), 0.15, 'null overrides: the built-in table');
  for (const price of [undefined, null, 'cheap']) assert.equal(costAtPrice(price as never, { input: 10 }), undefined, String(price));
  for (const model of [undefined, null, 42]) assert.equal(normalizeModelName(model as never), '', String(model));
});

test('a dated snapshot priced apart from its family keeps its price under a provider prefix or Azure spelling', () => {
  // Langfuse's patterns `^(openai\/)?(gpt-4o-2024-05-13)$` and `^(openai\/)?(gpt-)(35|3.5)(-turbo-1106)$` match
  // these; stripping the snapshot suffix first priced them as the (cheaper) family.
  const usage = { input: 1_000_000, output: 1_000_000 };
  assert.equal(costUsd('openai/gpt-4o-2024-05-13', usage), 20, 'not gpt-4o\'s 12.5');
  assert.equal(costUsd('azure/gpt-3.5-turbo-1106', usage), 3, 'not gpt-3.5-turbo\'s 2');
  assert.equal(costUsd('gpt-35-turbo-1106', usage), 3);
  assert.equal(costUsd('gpt-35-turbo-0613', usage), 3.5);
  assert.equal(costUsd('openai/gpt-3.5-turbo-16k-0613', usage), 7);
  // Azure's spelling of the other gpt-3.5 variants found no price at all.
  assert.equal(costUsd('gpt-35-turbo-16k-0613', usage), 7);
  assert.equal(costUsd('gpt-35-turbo-16k', usage), 2);
  assert.equal(costUsd('gpt-35-turbo-instruct', usage), 3.5);
  assert.equal(costUsd('gpt-35-turbo', usage), 2);
});

test('variants Langfuse prices apart from their family are not priced as the family', () => {
  const usage = { input: 1_000_000, output: 1_000_000 };
  // Langfuse: gpt-3.5-turbo-0301 2/2 (not gpt-3.5-turbo's 0.5/1.5), gpt-4-preview 10/30 (not
  // gpt-4's 30/60), gemini-1.0-pro-latest 0.25/0.5 (not gemini-1.0-pro's 0.125/0.375).
  assert.equal(costUsd('gpt-3.5-turbo-0301', usage), 4);
  assert.equal(costUsd('openai/gpt-35-turbo-0301', usage), 4);
  assert.equal(costUsd('gpt-4-preview', usage), 40);
  assert.equal(costUsd('gemini-1.0-pro-latest', usage), 0.75);
  assert.equal(costUsd('models/gemini-1.0-pro-latest', usage), 0.75);
  assert.equal(costUsd('gemini-1.0-pro-001', usage), 0.5, 'the family is unchanged');
});

test('gpt-4 vision previews, which Langfuse prices (gpt-4(-\\d{4})?-vision-preview), have a price', () => {
  const usage = { input: 1_000_000, output: 1_000_000 };
  assert.equal(costUsd('gpt-4-vision-preview', usage), 40);
  assert.equal(costUsd('openai/gpt-4-1106-vision-preview', usage), 40);
  assert.equal(resolveModelPrice('gpt-4-vision'), undefined, 'still no prefix match across `vision`');
});

test("an app's price keyed by Azure's gpt-35 spelling still prices that model under a provider prefix or snapshot suffix", () => {
  // Before the table priced Azure's spelling, an app gave it in configure({ prices }); its price, not
  // the built-in gpt-3.5 one, is the one that names the model as the app's deployment does.
  const usage = { input: 1_000_000, output: 1_000_000 };
  const overrides = { 'gpt-35-turbo-instruct': { input: 7, output: 7 }, 'gpt-35-turbo-16k': { input: 9, output: 9 } };
  assert.equal(costUsd('gpt-35-turbo-instruct', usage, overrides), 14);
  assert.equal(costUsd('azure/gpt-35-turbo-instruct', usage, overrides), 14);
  assert.equal(costUsd('azure/gpt-35-turbo-instruct-0914', usage, overrides), 14);
  assert.equal(costUsd('gpt-35-turbo-16k-0613', usage, overrides), 18);
  assert.equal(costUsd('azure/gpt-35-turbo-instruct-0914', usage), 3.5, 'without it, the built-in price');
});
