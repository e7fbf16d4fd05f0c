/**
 * Other SDKs' LLM dialects → the neutral vocabulary (DESIGN §3), for spans received over OTLP.
 *
 * The Langfuse mapper (export/langfuse-map.ts) understands the neutral vocabulary only. Spans from
 * other OpenTelemetry instrumentations speak one of two dialects: the OpenTelemetry GenAI
 * semantic conventions (including their deprecated keys, still common) and Arize's OpenInference.
 * {@link normalizeDialects} rewrites those keys into the neutral ones, at ingest and before
 * validation, so that an LLM call from any of them becomes a Langfuse generation with its model,
 * usage, input and output.
 *
 * Rules:
 * - a span that already carries any `langfuse.*` attribute is left exactly as it is (it speaks
 *   Langfuse's dialect; the mapper passes it through unchanged);
 * - a key is moved (the dialect key removed) only when its neutral key is absent: a value the
 *   span states in the neutral vocabulary always wins, and nothing is ever overwritten;
 * - values are moved, not copied, so Langfuse does not show them twice (every attribute it does
 *   not interpret lands in the observation's metadata); small keys that still mean something
 *   (`gen_ai.operation.name`, `openinference.span.kind`, `llm.invocation_parameters`) stay;
 * - the observation type follows Langfuse's own precedence (FACTS.md): `openinference.span.kind`,
 *   then `gen_ai.operation.name`, then "a model or token usage is present" → generation.
 *
 * The daemon applies it only when exporting to Langfuse: an `otlp`, `file` or `console` exporter
 * receives the attributes exactly as the instrumentation sent them.
 */
import { ATTR, type AttributeValue, type ObservationType } from '@dspy-o11y/proto';

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
  oiInvocationParameters: 'llm.invocation_parameters',
  oiInputValue: 'input.value',
  oiInputMimeType: 'input.mime_type',
  oiOutputValue: 'output.value',
  oiOutputMimeType: 'output.mime_type',
  oiTags: 'tag.tags',
} as const;

/** Plain renames: dialect key → neutral key (moved when the neutral key is absent). */
const RENAMES: readonly (readonly [string, string])[] = [
  [DIALECT.genAiSystem, ATTR.providerName],
  [DIALECT.genAiPromptTokens, ATTR.usageInputTokens],
  [DIALECT.genAiCompletionTokens, ATTR.usageOutputTokens],
  [DIALECT.oiModelName, ATTR.requestModel],
  [DIALECT.oiEmbeddingModelName, ATTR.requestModel],
  [DIALECT.oiProvider, ATTR.providerName],
  [DIALECT.oiSystem, ATTR.providerName],
  [DIALECT.oiPromptTokens, ATTR.usageInputTokens],
  [DIALECT.oiCompletionTokens, ATTR.usageOutputTokens],
  [DIALECT.oiTotalTokens, ATTR.usageTotalTokens],
];

/** `llm.invocation_parameters` (a JSON object) → the request parameters the mapper knows. */
const INVOCATION_PARAMETERS: readonly (readonly [string, string])[] = [
  ['temperature', ATTR.requestTemperature],
  ['max_tokens', ATTR.requestMaxTokens],
  ['max_completion_tokens', ATTR.requestMaxTokens],
  ['top_p', ATTR.requestTopP],
];

/** Does the span speak one of the dialects at all? (cheap prefix test before any work) */
function speaksDialect(attrs: MutableAttributes): boolean {
  let found = false;
  for (const k in attrs) {
    if (k.startsWith('langfuse.')) return false;
    if (
      !found &&
      (k.startsWith('gen_ai.') ||
        k.startsWith('llm.') ||
        k === DIALECT.oiSpanKind ||
        k === DIALECT.oiInputValue ||
        k === DIALECT.oiOutputValue ||
        k === DIALECT.oiEmbeddingModelName ||
        k === DIALECT.oiTags)
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
}

function observationType(attrs: MutableAttributes): ObservationType | undefined {
  const kind = attrs[DIALECT.oiSpanKind];
  if (typeof kind === 'string') {
    const t = OPENINFERENCE_KIND_TYPES[kind.toUpperCase()];
    if (t) return t;
  }
  const op = attrs[ATTR.operationName];
  if (typeof op === 'string' && Object.hasOwn(GENAI_OPERATION_TYPES, op)) return GENAI_OPERATION_TYPES[op];
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

/**
 * GenAI span events that carry the messages → `dspy.input` / `dspy.output`, in the shape Langfuse
 * gives them when it reads the events itself (its OTel ingestion does, for these events only):
 * input the `gen_ai.<role>.message` events as `[{role, ...attributes}]`, output the
 * `gen_ai.choice` attributes (an array when several); else the `gen_ai.prompt` / `gen_ai.completion`
 * of the `gen_ai.content.prompt` / `.completion` events. Without this the events became child
 * `event` observations and the generation arrived without its input and output. Moved, not
 * copied: returns the events left. Like {@link normalizeDialects}, it leaves `langfuse.*` spans
 * and a neutral key the span already has alone.
 */
export function messagesFromEvents(attrs: MutableAttributes, events: readonly WireEvent[]): readonly WireEvent[] {
  if (events.length === 0) return events;
  for (const k in attrs) if (k.startsWith('langfuse.')) return events;
  const used = new Set<WireEvent>();
  if (!(ATTR.input in attrs)) {
    const messages = events.filter((e) => GENAI_INPUT_EVENTS.has(e.name));
    if (messages.length > 0) {
      attrs[ATTR.input] = JSON.stringify(messages.map((e) => ({ role: e.name.slice('gen_ai.'.length, -'.message'.length), ...e.attributes })));
      for (const e of messages) used.add(e);
    } else {
      const prompt = events.find((e) => e.name === GENAI_PROMPT_EVENT);
      if (prompt) {
        const a = prompt.attributes ?? {};
        attrs[ATTR.input] = DIALECT.genAiPrompt in a ? asJson(a[DIALECT.genAiPrompt]!) : JSON.stringify(a);
        used.add(prompt);
      }
    }
  }
  if (!(ATTR.output in attrs)) {
    const choices = events.filter((e) => e.name === GENAI_CHOICE_EVENT);
    if (choices.length > 0) {
      const outputs = choices.map((e) => e.attributes ?? {});
      attrs[ATTR.output] = JSON.stringify(outputs.length === 1 ? outputs[0] : outputs);
      for (const e of choices) used.add(e);
    } else {
      const completion = events.find((e) => e.name === GENAI_COMPLETION_EVENT);
      if (completion) {
        const a = completion.attributes ?? {};
        attrs[ATTR.output] = DIALECT.genAiCompletion in a ? asJson(a[DIALECT.genAiCompletion]!) : JSON.stringify(a);
        used.add(completion);
      }
    }
  }
  return used.size === 0 ? events : events.filter((e) => !used.has(e));
}

/**
 * Rewrite GenAI / OpenInference keys of `attrs` into the neutral vocabulary, in place, and return
 * it. Spans with `langfuse.*` attributes, or in neither dialect, are returned untouched.
 */
export function normalizeDialects(attrs: MutableAttributes): MutableAttributes {
  if (!speaksDialect(attrs)) return attrs;
  for (const [from, to] of RENAMES) move(attrs, from, to);
  invocationParameters(attrs);
  // Input / output: OpenInference values, then GenAI messages, then the deprecated GenAI keys.
  moveValue(attrs, DIALECT.oiInputValue, DIALECT.oiInputMimeType, ATTR.input);
  moveValue(attrs, DIALECT.oiOutputValue, DIALECT.oiOutputMimeType, ATTR.output);
  moveJson(attrs, DIALECT.genAiInputMessages, ATTR.input);
  moveJson(attrs, DIALECT.genAiOutputMessages, ATTR.output);
  moveJson(attrs, DIALECT.genAiPrompt, ATTR.input);
  moveJson(attrs, DIALECT.genAiCompletion, ATTR.output);
  const tags = attrs[DIALECT.oiTags];
  if (Array.isArray(tags) && tags.every((t) => typeof t === 'string')) move(attrs, DIALECT.oiTags, ATTR.traceTags);
  if (!(ATTR.observationType in attrs)) {
    const type = observationType(attrs);
    if (type) attrs[ATTR.observationType] = type;
  }
  return attrs;
}
