/**
 * The neutral attribute vocabulary (DESIGN §3). The SDK speaks it; each daemon exporter
 * translates it into its backend's dialect (e.g. `langfuse.*`).
 */
export const ATTR = {
  observationType: 'dspy.observation.type',
  input: 'dspy.input',
  output: 'dspy.output',
  module: 'dspy.module',
  signature: 'dspy.signature',
  level: 'dspy.level',
  traceName: 'dspy.trace.name',
  traceTags: 'dspy.trace.tags',
  /** prefix: `dspy.trace.metadata.<key>` */
  traceMetadataPrefix: 'dspy.trace.metadata.',
  userId: 'user.id',
  sessionId: 'session.id',
  promptName: 'dspy.prompt.name',
  promptVersion: 'dspy.prompt.version',
  completionStartTime: 'dspy.completion_start_time',
  /**
   * True on a span whose parent is not one of this SDK's (the active OpenTelemetry span, a remote
   * `traceparent`): the top of this app's part of the trace, which the backend cannot see as a root.
   */
  appRoot: 'dspy.app_root',
  providerName: 'gen_ai.provider.name',
  operationName: 'gen_ai.operation.name',
  requestModel: 'gen_ai.request.model',
  responseModel: 'gen_ai.response.model',
  requestTemperature: 'gen_ai.request.temperature',
  requestMaxTokens: 'gen_ai.request.max_tokens',
  requestTopP: 'gen_ai.request.top_p',
  responseFinishReasons: 'gen_ai.response.finish_reasons',
  usageInputTokens: 'gen_ai.usage.input_tokens',
  usageOutputTokens: 'gen_ai.usage.output_tokens',
  usageTotalTokens: 'gen_ai.usage.total_tokens',
  /** Output tokens spent on reasoning (thinking): part of `usageOutputTokens`, as GenAI defines it. */
  usageReasoningTokens: 'gen_ai.usage.reasoning.output_tokens',
  usageCost: 'gen_ai.usage.cost',
} as const;

export type AttrKey = (typeof ATTR)[keyof typeof ATTR];

export const OBSERVATION_TYPES = [
  'span', 'generation', 'event', 'agent', 'tool', 'chain', 'retriever', 'embedding', 'evaluator', 'guardrail',
] as const;
export type ObservationType = (typeof OBSERVATION_TYPES)[number];

export const LEVELS = ['DEBUG', 'DEFAULT', 'WARNING', 'ERROR'] as const;
export type Level = (typeof LEVELS)[number];

/** Resource keys the daemon reads (OpenTelemetry semantic conventions). */
export const RESOURCE = {
  serviceName: 'service.name',
  serviceVersion: 'service.version',
  environment: 'deployment.environment.name',
} as const;

/** Span names from DSPy.rb (DESIGN §3). */
export const SPAN_NAMES = {
  llmGenerate: 'llm.generate',
  reactIteration: 'react.iteration',
  reactToolCall: 'react.tool_call',
  codeactIteration: 'codeact.iteration',
  codeactExecution: 'codeact.code_execution',
} as const;

/** Event names from DSPy.rb. */
export const EVENT_NAMES = {
  reasoningComplete: 'chain_of_thought.reasoning_complete',
  reactIterationComplete: 'react.iteration_complete',
  reactMaxIterations: 'react.max_iterations',
  codeactIterationComplete: 'codeact.iteration_complete',
  codeactMaxIterations: 'codeact.max_iterations',
  llmRetry: 'llm.retry',
  llmGenerate: 'llm.generate',
} as const;
