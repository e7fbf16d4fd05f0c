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

export class TokenBudget {
  private usedTokens = 0;
  private off: (() => void) | undefined;

  constructor(
    readonly limit: number,
    private readonly options: TokenBudgetOptions = {},
  ) {}

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
