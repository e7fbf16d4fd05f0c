/**
 * A token budget, the seed article's TokenBudgetTracker: it subscribes to `llm.*`, adds up
 * `gen_ai.usage.total_tokens`, and throws {@link BudgetExceededError} from the generation whose
 * end pushes the total over the limit — and from every later one — which stops the run (a
 * ReAct loop, a request handler) the way any error from the LLM call would.
 *
 * Where it throws: subscribers hear `llm.generate` when a generation ENDS (its usage is final
 * then, and its span is already recorded), so the error comes out of `generation(...)`, a
 * generation handle's `end()`, or — with `wrapOpenAI`/`wrapAnthropic` — the awaited client call
 * or the last step of the stream iteration. `setUsage` never throws.
 */
import { ATTR } from '@dspy-o11y/proto';
import { debug } from './config.js';
import { subscribe, type EventContext } from './events.js';

export class BudgetExceededError extends Error {
  constructor(
    readonly used: number,
    readonly limit: number,
  ) {
    super(`token budget exceeded: ${used} tokens used, limit ${limit}`);
    this.name = 'BudgetExceededError';
  }
}

export interface TokenBudgetOptions {
  /** Event pattern to count (default `llm.*`). */
  pattern?: string;
  /** Count only the events of this trace (a per-request budget in a concurrent server). */
  traceId?: string;
}

const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : 0);

/** What a bad limit is, for the message (its type; never its value). */
const kindOf = (v: unknown): string => (v === null ? 'null' : typeof v === 'number' ? 'NaN' : typeof v);

export class TokenBudget {
  /** The limit in tokens; Infinity (count only) when the one given was not a number. */
  readonly limit: number;
  private readonly options: TokenBudgetOptions;
  private usedTokens = 0;
  private off: (() => void) | undefined;

  /**
   * `limit`: tokens, a number from 0 (`Infinity`: count, never stop). A bad one does not throw,
   * as no other SDK call does for bad input: one that is not a number (or NaN) makes a budget that
   * counts but never stops a run, a negative one is taken as 0 (spent); either way with a
   * `DSPY_O11Y_DEBUG` message. A Symbol or BigInt limit used to throw a TypeError out of the
   * app's generation() calls.
   */
  constructor(limit: number, options: TokenBudgetOptions = {}) {
    const l: unknown = limit;
    if (typeof l !== 'number' || Number.isNaN(l)) {
      debug(`TokenBudget: limit must be a number of tokens from 0, not ${kindOf(l)}; this budget counts but never stops a run`);
      this.limit = Infinity;
    } else if (l < 0) {
      debug('TokenBudget: limit must be a number of tokens from 0; a negative one is taken as 0');
      this.limit = 0;
    } else this.limit = l;
    // Not an object (null): start() read options.pattern and threw.
    this.options = options !== null && typeof options === 'object' ? options : {};
  }

  /** Subscribe (idempotent); returns this. */
  start(): this {
    this.off ??= subscribe(this.options.pattern ?? 'llm.*', (_name, attributes, context) => this.count(attributes, context));
    return this;
  }

  /** Unsubscribe. */
  stop(): void {
    this.off?.();
    this.off = undefined;
  }

  get used(): number {
    return this.usedTokens;
  }

  get remaining(): number {
    return Math.max(0, this.limit - this.usedTokens);
  }

  reset(): void {
    this.usedTokens = 0;
  }

  private count(attributes: Readonly<Record<string, unknown>>, context: EventContext): void {
    if (this.options.traceId !== undefined && context.traceId !== this.options.traceId) return;
    const total = num(attributes[ATTR.usageTotalTokens]) || num(attributes[ATTR.usageInputTokens]) + num(attributes[ATTR.usageOutputTokens]);
    this.usedTokens += total;
    if (this.usedTokens > this.limit) throw new BudgetExceededError(this.usedTokens, this.limit);
  }
}
