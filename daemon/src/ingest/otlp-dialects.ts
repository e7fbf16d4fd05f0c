/**
 * Other SDKs' LLM dialects → the neutral vocabulary (DESIGN §3), for spans received over OTLP.
 *
 * The Langfuse mapper (export/langfuse-map.ts) understands the neutral vocabulary only. Spans from
 * other OpenTelemetry instrumentations speak one of three dialects: the OpenTelemetry GenAI
 * semantic conventions (including their deprecated keys, still common), Arize's OpenInference and
 * the Vercel AI SDK's `ai.*` keys (`experimental_telemetry`); a few frameworks add keys of their own
 * that Langfuse reads (OpenLLMetry's cache counts, Pydantic AI's agent run).
 * {@link normalizeDialects} rewrites those keys into the neutral ones, at ingest and before
 * validation, so that an LLM call from any of them becomes a Langfuse generation with its model,
 * usage, input and output.
 *
 * Rules:
 * - a span that carries a `langfuse.observation.*` attribute is left exactly as it is (Langfuse's
 *   own SDKs set `langfuse.observation.type` on every observation; the mapper passes it through
 *   unchanged); other `langfuse.*` keys (LangfuseSpanProcessor's `langfuse.environment` on a
 *   Vercel AI SDK span) do not stop the dialects;
 * - a key is moved (the dialect key removed) only when its neutral key is absent: a value the
 *   span states in the neutral vocabulary always wins, and nothing is ever overwritten;
 * - values are moved, not copied, so Langfuse does not show them twice (every attribute it does
 *   not interpret lands in the observation's metadata); small keys that still mean something
 *   (`gen_ai.operation.name`, `openinference.span.kind`, `llm.invocation_parameters`) stay;
 * - the observation type follows Langfuse's own precedence (FACTS.md): `openinference.span.kind`,
 *   then `gen_ai.operation.name`, then the Vercel AI SDK's `ai.operationId` or a Pydantic AI run,
 *   then "a model or token usage is present" → generation.
 *
 * Vercel AI SDK spans: Langfuse reads their input, output, model parameters and usage from the
 * `ai.*` keys only when the instrumentation scope is `ai` (langfuse/langfuse,
 * packages/shared/src/server/otel/OtelIngestionProcessor.ts), and the daemon re-sends every span
 * under its own scope; so they are detected by `ai.operationId` and mapped here as Langfuse maps
 * them (see {@link normalizeVercel}).
 *
 * The daemon applies it only when exporting to Langfuse: an `otlp`, `file` or `console` exporter
 * receives the attributes exactly as the instrumentation sent them.
 */
import { ATTR, MAX_ATTRIBUTE_KEY_LENGTH, type AttributeValue, type ObservationType } from '@dspy-o11y/proto';

export type MutableAttributes = Record<string, AttributeValue>;

/** OpenInference `openinference.span.kind` → observation type (unknown kinds, e.g. RERANKER, fall through). */
export const OPENINFERENCE_KIND_TYPES: Readonly<Record<string, ObservationType>> = {
  LLM: 'generation',
  EMBEDDING: 'embedding',
  CHAIN: 'chain',
  RETRIEVER: 'retriever',
  TOOL: 'tool',
  AGENT: 'agent',
  GUARDRAIL: 'guardrail',
  EVALUATOR: 'evaluator',
};

/** GenAI `gen_ai.operation.name` → observation type, as Langfuse infers it (FACTS.md). */
export const GENAI_OPERATION_TYPES: Readonly<Record<string, ObservationType>> = {
  chat: 'generation',
  completion: 'generation',
  text_completion: 'generation',
  generate_content: 'generation',
  generate: 'generation',
  embeddings: 'embedding',
  invoke_agent: 'agent',
  create_agent: 'agent',
  execute_tool: 'tool',
};

/** Dialect keys read here. */
export const DIALECT = {
  // OpenTelemetry GenAI (deprecated names and message keys)
  genAiSystem: 'gen_ai.system',
  genAiPromptTokens: 'gen_ai.usage.prompt_tokens',
  genAiCompletionTokens: 'gen_ai.usage.completion_tokens',
  // OpenLLMetry (Traceloop)'s cache counts
  genAiCacheReadInputTokens: 'gen_ai.usage.cache_read_input_tokens',
  genAiCacheCreationInputTokens: 'gen_ai.usage.cache_creation_input_tokens',
  genAiReasoningTokens: 'gen_ai.usage.reasoning_tokens',
  genAiInputMessages: 'gen_ai.input.messages',
  genAiOutputMessages: 'gen_ai.output.messages',
  genAiPrompt: 'gen_ai.prompt',
  genAiCompletion: 'gen_ai.completion',
  // OpenInference
  oiSpanKind: 'openinference.span.kind',
  oiModelName: 'llm.model_name',
  oiEmbeddingModelName: 'embedding.model_name',
  oiProvider: 'llm.provider',
  oiSystem: 'llm.system',
  oiPromptTokens: 'llm.token_count.prompt',
  oiCompletionTokens: 'llm.token_count.completion',
  oiTotalTokens: 'llm.token_count.total',
  oiCacheReadTokens: 'llm.token_count.prompt_details.cache_read',
  oiCacheWriteTokens: 'llm.token_count.prompt_details.cache_write',
  oiReasoningTokens: 'llm.token_count.completion_details.reasoning',
  oiInvocationParameters: 'llm.invocation_parameters',
  oiInputValue: 'input.value',
  oiInputMimeType: 'input.mime_type',
  oiOutputValue: 'output.value',
  oiOutputMimeType: 'output.mime_type',
  oiTags: 'tag.tags',
  // Vercel AI SDK
  aiOperationId: 'ai.operationId',
  aiModelId: 'ai.model.id',
  aiModelProvider: 'ai.model.provider',
  aiPromptMessages: 'ai.prompt.messages',
  aiPrompt: 'ai.prompt',
  aiPromptToolChoice: 'ai.prompt.toolChoice',
  aiToolCallArgs: 'ai.toolCall.args',
  aiToolCallResult: 'ai.toolCall.result',
  aiResponseText: 'ai.response.text',
  aiResponseObject: 'ai.response.object',
  aiResponseToolCalls: 'ai.response.toolCalls',
  // before ai 4.0
  aiResultText: 'ai.result.text',
  aiResultObject: 'ai.result.object',
  aiResultToolCalls: 'ai.result.toolCalls',
  aiSettingsPrefix: 'ai.settings.',
  aiProviderMetadata: 'ai.response.providerMetadata',
  // Pydantic AI: cache counts (usage details: Anthropic's own names; other releases' names), agent run span
  pydanticCacheReadDetail: 'gen_ai.usage.details.cache_read_input_tokens',
  pydanticCacheReadTokens: 'gen_ai.usage.cache_read_tokens',
  pydanticCacheReadTokensDetail: 'gen_ai.usage.details.cache_read_tokens',
  pydanticCacheWriteDetail: 'gen_ai.usage.details.cache_creation_input_tokens',
  pydanticCacheWriteTokens: 'gen_ai.usage.cache_write_tokens',
  pydanticReasoningDetail: 'gen_ai.usage.details.reasoning_tokens',
  pydanticAllMessages: 'pydantic_ai.all_messages',
  pydanticFinalResult: 'final_result',
} as const;

/** OpenTelemetry GenAI's cache counts, which the Langfuse mapper prices as Langfuse's cache keys. */
const USAGE_CACHE_READ = 'gen_ai.usage.cache_read.input_tokens';
const USAGE_CACHE_CREATION = 'gen_ai.usage.cache_creation.input_tokens';

/**
 * `ai.operationId` → observation type, as Langfuse's ObservationTypeMapper gives it: the model
 * calls (`ai.*.do*`, which carry a model) are generations and embeddings, `ai.toolCall` a tool,
 * every other operation (the `ai.generateText` … around the calls) a span.
 */
export const VERCEL_OPERATION_TYPES: Readonly<Record<string, ObservationType>> = {
  'ai.generateText.doGenerate': 'generation',
  'ai.streamText.doStream': 'generation',
  'ai.generateObject.doGenerate': 'generation',
  'ai.streamObject.doStream': 'generation',
  'ai.embed.doEmbed': 'embedding',
  'ai.embedMany.doEmbed': 'embedding',
  'ai.toolCall': 'tool',
};

/**
 * Usage of a model-call span, first name first: ai ≥ 5, then ai 3/4 (the embedding calls' one
 * count is their input). Only on model calls: the operation around them carries the sum of its
 * steps, which would count every token twice in the trace (Langfuse gives it none either).
 */
const VERCEL_USAGE: readonly (readonly [string, string])[] = [
  ['ai.usage.inputTokens', ATTR.usageInputTokens],
  ['ai.usage.promptTokens', ATTR.usageInputTokens],
  ['ai.usage.outputTokens', ATTR.usageOutputTokens],
  ['ai.usage.completionTokens', ATTR.usageOutputTokens],
  ['ai.usage.totalTokens', ATTR.usageTotalTokens],
  ['ai.usage.inputTokenDetails.cacheReadTokens', USAGE_CACHE_READ],
  ['ai.usage.cachedInputTokens', USAGE_CACHE_READ],
  ['ai.usage.inputTokenDetails.cacheWriteTokens', USAGE_CACHE_CREATION],
  ['ai.usage.outputTokenDetails.reasoningTokens', ATTR.usageReasoningTokens],
  ['ai.usage.reasoningTokens', ATTR.usageReasoningTokens],
];
/** ai 6's breakdown of a model call's input count (which includes the cache), as it names it. */
const AI6_INPUT_DETAILS = ['noCacheTokens', 'cacheReadTokens', 'cacheWriteTokens'].map((k) => `ai.usage.inputTokenDetails.${k}`);
const VERCEL_EMBEDDING_USAGE: readonly (readonly [string, string])[] = [['ai.usage.tokens', ATTR.usageInputTokens]];

/**
 * `ai.settings.<name>` → request parameter, for the SDK's settings (ai 3–6) written out: the
 * regex of {@link snakeCase} cost ~0.7 of the ~5 µs a model-call span took. Other names: snake_case.
 */
const VERCEL_SETTINGS: ReadonlyMap<string, string> = new Map([
  ['maxOutputTokens', ATTR.requestMaxTokens],
  ['maxTokens', ATTR.requestMaxTokens],
  ['temperature', ATTR.requestTemperature],
  ['topP', ATTR.requestTopP],
  ['topK', 'gen_ai.request.top_k'],
  ['presencePenalty', 'gen_ai.request.presence_penalty'],
  ['frequencyPenalty', 'gen_ai.request.frequency_penalty'],
  ['stopSequences', 'gen_ai.request.stop_sequences'],
  ['seed', 'gen_ai.request.seed'],
  ['maxRetries', 'gen_ai.request.max_retries'],
  ['maxSteps', 'gen_ai.request.max_steps'],
  ['timeout', 'gen_ai.request.timeout'],
  ['mode', 'gen_ai.request.mode'],
  ['output', 'gen_ai.request.output'],
]);

/** Plain renames: dialect key → neutral key (moved when the neutral key is absent). */
const RENAMES: readonly (readonly [string, string])[] = [
  [DIALECT.genAiSystem, ATTR.providerName],
  [DIALECT.genAiPromptTokens, ATTR.usageInputTokens],
  [DIALECT.genAiCompletionTokens, ATTR.usageOutputTokens],
  [DIALECT.genAiCacheReadInputTokens, USAGE_CACHE_READ],
  [DIALECT.genAiCacheCreationInputTokens, USAGE_CACHE_CREATION],
  [DIALECT.oiModelName, ATTR.requestModel],
  [DIALECT.oiEmbeddingModelName, ATTR.requestModel],
  [DIALECT.oiProvider, ATTR.providerName],
  [DIALECT.oiSystem, ATTR.providerName],
  [DIALECT.oiPromptTokens, ATTR.usageInputTokens],
  [DIALECT.oiCompletionTokens, ATTR.usageOutputTokens],
  [DIALECT.oiTotalTokens, ATTR.usageTotalTokens],
  // Cache counts (included in the prompt count, as GenAI's are in input), OpenLLMetry's above:
  // the mapper prices them and takes them out of input; left as they were, the usage it sends
  // had none of them.
  [DIALECT.oiCacheReadTokens, USAGE_CACHE_READ],
  [DIALECT.oiCacheWriteTokens, USAGE_CACHE_CREATION],
  // Pydantic AI's, in the order Langfuse reads them (under the scope `pydantic-ai` only).
  [DIALECT.pydanticCacheReadTokens, USAGE_CACHE_READ],
  [DIALECT.pydanticCacheReadDetail, USAGE_CACHE_READ],
  [DIALECT.pydanticCacheReadTokensDetail, USAGE_CACHE_READ],
  [DIALECT.pydanticCacheWriteTokens, USAGE_CACHE_CREATION],
  [DIALECT.pydanticCacheWriteDetail, USAGE_CACHE_CREATION],
  // Reasoning counts (part of the completion count, as GenAI's are of output): the mapper gives
  // them Langfuse's key and takes them out of output.
  [DIALECT.genAiReasoningTokens, ATTR.usageReasoningTokens],
  [DIALECT.oiReasoningTokens, ATTR.usageReasoningTokens],
  [DIALECT.pydanticReasoningDetail, ATTR.usageReasoningTokens],
];

/** `llm.invocation_parameters` (a JSON object) → the request parameters the mapper knows. */
const INVOCATION_PARAMETERS: readonly (readonly [string, string])[] = [
  ['temperature', ATTR.requestTemperature],
  ['max_tokens', ATTR.requestMaxTokens],
  ['max_completion_tokens', ATTR.requestMaxTokens],
  ['top_p', ATTR.requestTopP],
];

/**
 * A key only Langfuse's own SDKs' observations carry (JS v4/v5 and Python v3 set
 * `langfuse.observation.type` on each); the mapper's `speaksLangfuse` uses the same test.
 */
const isLangfuseObservationKey = (k: string): boolean => k.startsWith('langfuse.observation.');

/** Does the span speak one of the dialects at all? (cheap prefix test before any work) */
function speaksDialect(attrs: MutableAttributes): boolean {
  let found = false;
  for (const k in attrs) {
    if (isLangfuseObservationKey(k)) return false;
    if (
      !found &&
      (k.startsWith('gen_ai.') ||
        k.startsWith('llm.') ||
        k === DIALECT.oiSpanKind ||
        k === DIALECT.oiInputValue ||
        k === DIALECT.oiOutputValue ||
        k === DIALECT.oiEmbeddingModelName ||
        k === DIALECT.oiTags ||
        k === DIALECT.aiOperationId ||
        k === DIALECT.pydanticAllMessages)
    ) {
      found = true;
    }
  }
  return found;
}

function move(attrs: MutableAttributes, from: string, to: string): void {
  if (!(from in attrs) || to in attrs) return;
  attrs[to] = attrs[from];
  delete attrs[from];
}

/** A value that should be JSON (`dspy.input`/`dspy.output` are JSON strings): strings are taken as already JSON. */
const asJson = (v: AttributeValue): string => (typeof v === 'string' ? v : JSON.stringify(v));

/** OpenInference values carry a mime type; text (the default) is JSON-encoded into a JSON string. */
function moveValue(attrs: MutableAttributes, valueKey: string, mimeKey: string, to: string): void {
  if (!(valueKey in attrs) || to in attrs) return;
  const value = attrs[valueKey];
  const mime = attrs[mimeKey];
  attrs[to] = typeof value === 'string' && mime !== 'application/json' ? JSON.stringify(value) : asJson(value);
  delete attrs[valueKey];
  delete attrs[mimeKey];
}

function moveJson(attrs: MutableAttributes, from: string, to: string): void {
  if (!(from in attrs) || to in attrs) return;
  attrs[to] = asJson(attrs[from]);
  delete attrs[from];
}

function invocationParameters(attrs: MutableAttributes): void {
  const raw = attrs[DIALECT.oiInvocationParameters];
  if (typeof raw !== 'string') return;
  let params: unknown;
  try {
    params = JSON.parse(raw);
  } catch {
    return;
  }
  if (typeof params !== 'object' || params === null || Array.isArray(params)) return;
  const p = params as Record<string, unknown>;
  for (const [from, to] of INVOCATION_PARAMETERS) {
    const v = p[from];
    if (typeof v === 'number' && Number.isFinite(v) && !(to in attrs)) attrs[to] = v;
  }
  // Every other one (but the model) too, as gen_ai.request.<name>: Langfuse reads no
  // llm.invocation_parameters once the mapper has set the model parameters from gen_ai.request.*.
  for (const name of Object.keys(p)) {
    const v = p[name];
    const to = `gen_ai.request.${name}`;
    if (v === null || name === '' || name === 'model' || INVOCATION_PARAMETER_NAMES.has(name) || to in attrs || to.length > MAX_ATTRIBUTE_KEY_LENGTH) continue;
    // Attribute values as they are; anything else (objects, mixed arrays) as JSON text, as Langfuse shows it.
    attrs[to] = isPlainAttributeValue(v) ? v : JSON.stringify(v);
  }
}

const INVOCATION_PARAMETER_NAMES = new Set(INVOCATION_PARAMETERS.map(([from]) => from));

const PLAIN_KINDS = ['string', 'number', 'boolean'];

/** A string, finite number or boolean, or an array of one kind of them. */
function isPlainAttributeValue(v: unknown): v is AttributeValue {
  const plain = (x: unknown, kind: string) => typeof x === kind && (kind !== 'number' || Number.isFinite(x));
  if (!Array.isArray(v)) return PLAIN_KINDS.some((kind) => plain(v, kind));
  // An array of objects or nulls (OpenAI's `tools`) is not one: kept as is, the schema refused the span.
  if (v.length === 0) return true;
  const kind = typeof v[0];
  return PLAIN_KINDS.includes(kind) && v.every((x) => plain(x, kind));
}

/** `maxRetries` → `max_retries`. */
const snakeCase = (name: string) => name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/** A JSON string's value, or the string itself when it is not JSON. */
function parsedOrString(v: AttributeValue): unknown {
  if (typeof v !== 'string') return v;
  try {
    return JSON.parse(v) as unknown;
  } catch {
    return v;
  }
}

/**
 * Pydantic AI's agent run span: input `pydantic_ai.all_messages` (JSON), output `final_result`
 * (the output itself when text, else its JSON), which Langfuse reads only under the scope
 * `pydantic-ai` (lost under the daemon's). Known by its messages: `final_result` alone is no
 * Pydantic AI key.
 */
function pydanticRun(attrs: MutableAttributes): void {
  if (!(DIALECT.pydanticAllMessages in attrs)) return;
  moveJson(attrs, DIALECT.pydanticAllMessages, ATTR.input);
  const result = attrs[DIALECT.pydanticFinalResult];
  if (result === undefined || ATTR.output in attrs) return;
  attrs[ATTR.output] = typeof result === 'string' && !isJson(result) ? JSON.stringify(result) : asJson(result);
  delete attrs[DIALECT.pydanticFinalResult];
}

function isJson(s: string): boolean {
  try {
    JSON.parse(s);
    return true;
  } catch {
    return false;
  }
}

/** The output Langfuse reads from an `ai`-scope span (first present wins), as a JSON string. */
function vercelOutput(attrs: MutableAttributes): void {
  if (ATTR.output in attrs) return;
  const text = attrs[DIALECT.aiResponseText];
  const toolCalls = attrs[DIALECT.aiResponseToolCalls];
  // Text and tool calls together: one assistant message, as Langfuse builds it (the calls parsed).
  if (text !== undefined && toolCalls !== undefined) {
    attrs[ATTR.output] = JSON.stringify({ role: 'assistant', content: text, tool_calls: parsedOrString(toolCalls) });
    delete attrs[DIALECT.aiResponseText];
    delete attrs[DIALECT.aiResponseToolCalls];
    return;
  }
  // Texts are text (JSON-encoded here); the rest the SDK already wrote as JSON.
  if (text !== undefined && text !== '') return moveText(attrs, DIALECT.aiResponseText);
  if (DIALECT.aiResultText in attrs) return moveText(attrs, DIALECT.aiResultText);
  for (const k of [DIALECT.aiToolCallResult, DIALECT.aiResponseObject, DIALECT.aiResultObject, DIALECT.aiResponseToolCalls, DIALECT.aiResultToolCalls]) {
    if (k in attrs) return moveJson(attrs, k, ATTR.output);
  }
}

function moveText(attrs: MutableAttributes, from: string): void {
  const v = attrs[from]!;
  attrs[ATTR.output] = typeof v === 'string' ? JSON.stringify(v) : asJson(v);
  delete attrs[from];
}

/** A JSON object's member that is an object, or undefined. */
const member = (o: unknown, key: string): Record<string, unknown> | undefined => {
  const v = typeof o === 'object' && o !== null && !Array.isArray(o) ? (o as Record<string, unknown>)[key] : undefined;
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
};
const count = (v: unknown): number | undefined => (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : undefined);

function setAbsent(attrs: MutableAttributes, key: string, v: number | undefined): void {
  if (v !== undefined && !(key in attrs)) attrs[key] = v;
}

/**
 * The cache and reasoning counts a model call's `ai.response.providerMetadata` (JSON) holds, where
 * the `ai.usage.*` keys had none, as Langfuse reads them from an `ai`-scope span: OpenAI's
 * `cachedPromptTokens` / `reasoningTokens` (ai 4); Anthropic's `cacheReadInputTokens` /
 * `cacheCreationInputTokens` (ai 4) or its raw `usage` (ai 5, 6). The metadata itself stays.
 *
 * Anthropic's `input_tokens` leaves the cache out, and ai 4 and 5 give it as the input count;
 * GenAI's input (which the mapper takes the cache counts out of again) has them: they are added
 * back, to the total too when it was input + output. Known by the raw usage's `input_tokens`
 * equal to the input count (ai 6 counts the cache in), or by ai 4's shape. Returns whether
 * Anthropic's metadata was there to tell.
 */
function providerMetadataUsage(attrs: MutableAttributes): boolean {
  const raw = attrs[DIALECT.aiProviderMetadata];
  if (typeof raw !== 'string') return false;
  const meta = parsedOrString(raw);
  const openai = member(meta, 'openai');
  if (openai) {
    setAbsent(attrs, USAGE_CACHE_READ, count(openai.cachedPromptTokens));
    setAbsent(attrs, ATTR.usageReasoningTokens, count(openai.reasoningTokens));
  }
  const anthropic = member(meta, 'anthropic');
  if (!anthropic) return false;
  const usage = member(anthropic, 'usage');
  const read = count(usage ? usage.cache_read_input_tokens : anthropic.cacheReadInputTokens);
  const write = count(usage ? usage.cache_creation_input_tokens : anthropic.cacheCreationInputTokens);
  setAbsent(attrs, USAGE_CACHE_READ, read);
  setAbsent(attrs, USAGE_CACHE_CREATION, write);
  const input = attrs[ATTR.usageInputTokens];
  if (typeof input !== 'number') return true;
  if (usage ? count(usage.input_tokens) === input : 'cacheReadInputTokens' in anthropic) addCacheToInput(attrs, input, (read ?? 0) + (write ?? 0));
  return true;
}

/** The cache counts added to an input count that left them out, and to a total of input + output. */
function addCacheToInput(attrs: MutableAttributes, input: number, cached: number): void {
  if (cached === 0) return;
  attrs[ATTR.usageInputTokens] = input + cached;
  const output = attrs[ATTR.usageOutputTokens];
  const total = attrs[ATTR.usageTotalTokens];
  if (typeof total === 'number' && total === input + (typeof output === 'number' ? output : 0)) attrs[ATTR.usageTotalTokens] = total + cached;
}

/**
 * The providers (`ai.model.provider`) whose ai 5 input count is the API's own, without the cache:
 * Anthropic's messages API (`anthropic.messages`, on Vertex `vertex.anthropic.messages`) and
 * Bedrock's Converse (`amazon-bedrock`). Other ai 5 providers (OpenAI's, Google's) pass on counts
 * that include it, and ai 6 counts it in for all (it then sends `ai.usage.inputTokenDetails.*`).
 */
const INPUT_WITHOUT_CACHE_PROVIDER = /^(?:(?:vertex\.)?anthropic\.messages|amazon-bedrock)$/;

/**
 * ai 5's cache reads (`ai.usage.cachedInputTokens`) added to such a provider's input count when no
 * provider metadata said so (Bedrock sends it only with cache writes or a trace): the mapper takes
 * them out of input again, which left Langfuse an input short of them and a total without them.
 */
function cacheReadsOutsideInput(attrs: MutableAttributes): void {
  const provider = attrs[ATTR.providerName];
  const input = attrs[ATTR.usageInputTokens];
  const read = count(attrs[USAGE_CACHE_READ]);
  if (typeof provider !== 'string' || !INPUT_WITHOUT_CACHE_PROVIDER.test(provider) || typeof input !== 'number' || read === undefined) return;
  addCacheToInput(attrs, input, read);
}

/**
 * The output count with the reasoning tokens in it, as GenAI's is. ai 5's Google provider gives
 * Gemini's candidates as `outputTokens` and its thoughts apart (Google bills both as output):
 * a total of input + output + reasoning says so exactly.
 */
function outputWithReasoning(attrs: MutableAttributes): void {
  const input = attrs[ATTR.usageInputTokens];
  const output = attrs[ATTR.usageOutputTokens];
  const reasoning = attrs[ATTR.usageReasoningTokens];
  const total = attrs[ATTR.usageTotalTokens];
  if (typeof input !== 'number' || typeof output !== 'number' || typeof reasoning !== 'number' || typeof total !== 'number') return;
  if (reasoning > 0 && total === input + output + reasoning) attrs[ATTR.usageOutputTokens] = output + reasoning;
}

/**
 * A Vercel AI SDK span (`ai.operationId`) → the neutral vocabulary, reading what Langfuse reads
 * from an `ai`-scope span: input `ai.prompt.messages` (the model call's), else `ai.prompt` (the
 * operation's), else `ai.toolCall.args`; output `ai.response.text` / `.toolCalls` / `.object` or
 * `ai.toolCall.result` (`ai.result.*` before ai 4); model `ai.model.id` and provider
 * `ai.model.provider`; model parameters `ai.settings.*` and `ai.prompt.toolChoice`; the type from
 * the operation; usage on model calls only ({@link VERCEL_USAGE}). The keys the SDK also sets in
 * the GenAI dialect (`gen_ai.request.*`, `gen_ai.usage.*` on model calls) were read before and win.
 */
function normalizeVercel(attrs: MutableAttributes, operation: string): ObservationType {
  move(attrs, DIALECT.aiModelId, ATTR.requestModel);
  move(attrs, DIALECT.aiModelProvider, ATTR.providerName);
  const type = Object.hasOwn(VERCEL_OPERATION_TYPES, operation) ? VERCEL_OPERATION_TYPES[operation]! : 'span';
  // ai 6's breakdown of its input count, which includes the cache for every provider.
  const inputCountsCache = type === 'generation' && AI6_INPUT_DETAILS.some((k) => k in attrs);
  if (type === 'generation' || type === 'embedding') {
    for (const [from, to] of type === 'generation' ? VERCEL_USAGE : VERCEL_EMBEDDING_USAGE) move(attrs, from, to);
  }
  if (type === 'generation' && !providerMetadataUsage(attrs) && !inputCountsCache) cacheReadsOutsideInput(attrs);
  for (const k of Object.keys(attrs)) {
    if (!k.startsWith(DIALECT.aiSettingsPrefix)) continue;
    const name = k.slice(DIALECT.aiSettingsPrefix.length);
    if (name === '' || name.includes('.')) continue;
    const to = VERCEL_SETTINGS.get(name) ?? `gen_ai.request.${snakeCase(name)}`;
    if (to.length <= MAX_ATTRIBUTE_KEY_LENGTH) move(attrs, k, to);
  }
  move(attrs, DIALECT.aiPromptToolChoice, 'gen_ai.request.tool_choice');
  for (const k of [DIALECT.aiPromptMessages, DIALECT.aiPrompt, DIALECT.aiToolCallArgs]) {
    if (k in attrs) {
      moveJson(attrs, k, ATTR.input);
      break;
    }
  }
  vercelOutput(attrs);
  outputWithReasoning(attrs);
  // Langfuse makes a model call without a model a span; the SDK always sets one.
  return (type === 'generation' || type === 'embedding') && !(ATTR.requestModel in attrs) && !(ATTR.responseModel in attrs) ? 'span' : type;
}

function observationType(attrs: MutableAttributes, frameworkType: ObservationType | undefined): ObservationType | undefined {
  const kind = attrs[DIALECT.oiSpanKind];
  if (typeof kind === 'string') {
    const t = OPENINFERENCE_KIND_TYPES[kind.toUpperCase()];
    if (t) return t;
  }
  const op = attrs[ATTR.operationName];
  if (typeof op === 'string' && Object.hasOwn(GENAI_OPERATION_TYPES, op)) return GENAI_OPERATION_TYPES[op];
  // Explicit even for a span: a Vercel operation around its model calls has their model, not their
  // type; a Pydantic AI run has their usage.
  if (frameworkType) return frameworkType;
  if (
    ATTR.requestModel in attrs ||
    ATTR.responseModel in attrs ||
    ATTR.usageInputTokens in attrs ||
    ATTR.usageOutputTokens in attrs ||
    ATTR.usageTotalTokens in attrs
  ) {
    return 'generation';
  }
  return undefined;
}

/** A span event as the converter makes it (otlp-convert.ts). */
export interface WireEvent {
  readonly name: string;
  readonly timeUnixNano: string;
  readonly attributes?: MutableAttributes;
}

/** GenAI message events (`gen_ai.<role>.message`) that Langfuse reads as a span's input. */
const GENAI_INPUT_EVENTS = new Set(['gen_ai.system.message', 'gen_ai.user.message', 'gen_ai.assistant.message', 'gen_ai.tool.message']);
const GENAI_CHOICE_EVENT = 'gen_ai.choice';
/** The GenAI conventions before messages became events of their own (Semantic Kernel still sends them). */
const GENAI_PROMPT_EVENT = 'gen_ai.content.prompt';
const GENAI_COMPLETION_EVENT = 'gen_ai.content.completion';

/** A `gen_ai.content.*` event's `key` (its JSON as sent), else all its attributes as JSON. */
function contentOf(event: WireEvent, key: string): string {
  const a = event.attributes ?? {};
  return key in a ? asJson(a[key]!) : JSON.stringify(a);
}

/**
 * GenAI span events that carry the messages → `dspy.input` / `dspy.output`, in the shape Langfuse
 * gives them when it reads the events itself (its OTel ingestion does, for these events only):
 * input the `gen_ai.<role>.message` events as `[{role, ...attributes}]`, output the
 * `gen_ai.choice` attributes (an array when several); else the `gen_ai.prompt` / `gen_ai.completion`
 * of the `gen_ai.content.prompt` / `.completion` events. Without this the events became child
 * `event` observations and the generation arrived without its input and output. Moved, not
 * copied: returns the events left. Like {@link normalizeDialects}, it leaves Langfuse's own spans
 * (a `langfuse.observation.*` key) and a neutral key the span already has alone.
 */
export function messagesFromEvents(attrs: MutableAttributes, events: readonly WireEvent[]): readonly WireEvent[] {
  if (events.length === 0) return events;
  for (const k in attrs) if (isLangfuseObservationKey(k)) return events;
  const used = new Set<WireEvent>();
  const role = (e: WireEvent) => e.name.slice('gen_ai.'.length, -'.message'.length);
  fromEvents(attrs, ATTR.input, events, used, {
    many: (e) => GENAI_INPUT_EVENTS.has(e.name),
    json: (messages) => messages.map((e) => ({ role: role(e), ...e.attributes })),
    single: GENAI_PROMPT_EVENT,
    singleKey: DIALECT.genAiPrompt,
  });
  fromEvents(attrs, ATTR.output, events, used, {
    many: (e) => e.name === GENAI_CHOICE_EVENT,
    json: (choices) => (choices.length === 1 ? (choices[0]!.attributes ?? {}) : choices.map((e) => e.attributes ?? {})),
    single: GENAI_COMPLETION_EVENT,
    singleKey: DIALECT.genAiCompletion,
  });
  return used.size === 0 ? events : events.filter((e) => !used.has(e));
}

/**
 * `attrs[key]`, when absent, from the events: every one `many` picks (as JSON of `json(them)`),
 * else the first `single` event's content (Semantic Kernel's); the events taken go into `used`.
 */
function fromEvents(
  attrs: MutableAttributes,
  key: string,
  events: readonly WireEvent[],
  used: Set<WireEvent>,
  how: { many: (e: WireEvent) => boolean; json: (picked: readonly WireEvent[]) => unknown; single: string; singleKey: string },
): void {
  if (key in attrs) return;
  const picked = events.filter(how.many);
  if (picked.length > 0) {
    attrs[key] = JSON.stringify(how.json(picked));
    for (const e of picked) used.add(e);
    return;
  }
  const one = events.find((e) => e.name === how.single);
  if (one) {
    attrs[key] = contentOf(one, how.singleKey);
    used.add(one);
  }
}

/**
 * Rewrite GenAI / OpenInference / Vercel AI SDK keys of `attrs` into the neutral vocabulary, in
 * place, and return it. Langfuse's own spans (a `langfuse.observation.*` key), or spans in no
 * dialect, are returned untouched.
 */
export function normalizeDialects(attrs: MutableAttributes): MutableAttributes {
  if (!speaksDialect(attrs)) return attrs;
  for (const [from, to] of RENAMES) move(attrs, from, to);
  invocationParameters(attrs);
  const operation = attrs[DIALECT.aiOperationId];
  const vercelType = typeof operation === 'string' && operation.startsWith('ai.') ? normalizeVercel(attrs, operation) : undefined;
  // Input / output: OpenInference values, then Pydantic AI's run, then GenAI messages, then the
  // deprecated GenAI keys (Langfuse's order).
  moveValue(attrs, DIALECT.oiInputValue, DIALECT.oiInputMimeType, ATTR.input);
  moveValue(attrs, DIALECT.oiOutputValue, DIALECT.oiOutputMimeType, ATTR.output);
  // A Pydantic AI run without gen_ai.operation.name (older releases) is a span, as Langfuse types
  // it: its usage is the sum of its model requests', which a generation would count twice.
  const pydanticType: ObservationType | undefined = DIALECT.pydanticAllMessages in attrs ? 'span' : undefined;
  pydanticRun(attrs);
  moveJson(attrs, DIALECT.genAiInputMessages, ATTR.input);
  moveJson(attrs, DIALECT.genAiOutputMessages, ATTR.output);
  moveJson(attrs, DIALECT.genAiPrompt, ATTR.input);
  moveJson(attrs, DIALECT.genAiCompletion, ATTR.output);
  const tags = attrs[DIALECT.oiTags];
  if (Array.isArray(tags) && tags.every((t) => typeof t === 'string')) move(attrs, DIALECT.oiTags, ATTR.traceTags);
  if (!(ATTR.observationType in attrs)) {
    const type = observationType(attrs, vercelType ?? pydanticType);
    if (type) attrs[ATTR.observationType] = type;
  }
  return attrs;
}
