/**
 * dspy-o11y: trace LLM apps (spans, generations, DSPy-style modules, events) into the
 * dspy-o11yd sidecar over a Unix socket or HTTP. See DESIGN §4.
 */
export {
  span,
  generation,
  startSpan,
  startGeneration,
  withActiveSpan,
  getActiveSpan,
  withTrace,
  event,
  injectTraceparent,
  score,
  type SpanOptions,
  type GenerationOptions,
  type TraceOptions,
  type TraceHandle,
} from './api.js';
export type { ScoreOptions, SpanScoreOptions, ScoreValue, ScoreDataType } from './score.js';
export { configure, flush, shutdown, sdkStats, isDisabled, type SdkStats } from './state.js';
export type { ConfigureOptions } from './config.js';
export { extractTraceparent, parseTraceparent, formatTraceparent, type TraceContext, type HeaderCarrier } from './traceparent.js';
export type { SpanHandle, GenerationHandle, Usage, TraceFields } from './span.js';
export { subscribe, type EventHandler, type EventContext } from './events.js';
export { TokenBudget, BudgetExceededError, type TokenBudgetOptions } from './budget.js';
export { wrapOpenAI, type WrapOptions } from './wrappers/openai.js';
export { wrapAnthropic } from './wrappers/anthropic.js';
export {
  predict,
  chainOfThought,
  react,
  codeAct,
  type LM,
  type LMRequest,
  type LMResponse,
  type ModuleOptions,
  type ReActOptions,
  type CodeActOptions,
  type Tool,
  type ToolInfo,
  type Step,
  type AgentResult,
  type Module,
  type ModuleName,
  type Fields,
} from './modules.js';
export { ATTR, EVENT_NAMES, SPAN_NAMES, PRICES_AS_OF, costUsd, type ObservationType, type Level, type ModelPrice } from '@dspy-o11y/proto';
