/**
 * `wrapOpenAI(client)`: traces `chat.completions.create`, `responses.create` and the legacy
 * text-completions API `completions.create` of the official `openai` client (and the helpers
 * built on them, e.g. `chat.completions.parse`/`stream`), streamed or not, as `llm.generate` generations with model, provider, parameters, usage, cost,
 * time to first token, retries and errors. The client is patched in place and returned.
 */
import type { GenerationHandle, Usage } from '../span.js';
import { appendCapped, isObj, num, patchDerivedClients, patchFetch, patchMethod, pick, slot, str, type Adapter, type Obj, type StreamObserver, type WrapOptions } from './common.js';

export type { WrapOptions } from './common.js';

const CHAT_PARAMS = ['temperature', 'max_tokens', 'max_completion_tokens', 'top_p', 'frequency_penalty', 'presence_penalty', 'seed', 'n', 'reasoning_effort'] as const;
const RESPONSES_PARAMS = ['temperature', 'max_output_tokens', 'top_p'] as const;
const COMPLETIONS_PARAMS = ['temperature', 'max_tokens', 'top_p', 'frequency_penalty', 'presence_penalty', 'seed', 'n', 'best_of'] as const;

/** A `*_tokens_details` count, when the details object is there. */
const detail = (details: unknown, key: string): number | undefined => (isObj(details) ? num(details[key]) : undefined);

/** Reasoning tokens are part of OpenAI's completion / output count (billed with it). */
function chatUsage(u: unknown): Usage | undefined {
  if (!isObj(u)) return undefined;
  const cacheRead = detail(u.prompt_tokens_details, 'cached_tokens');
  return { input: num(u.prompt_tokens), output: num(u.completion_tokens), total: num(u.total_tokens), cacheRead, reasoning: detail(u.completion_tokens_details, 'reasoning_tokens') };
}

function responsesUsage(u: unknown): Usage | undefined {
  if (!isObj(u)) return undefined;
  const cacheRead = detail(u.input_tokens_details, 'cached_tokens');
  return { input: num(u.input_tokens), output: num(u.output_tokens), total: num(u.total_tokens), cacheRead, reasoning: detail(u.output_tokens_details, 'reasoning_tokens') };
}

interface ToolCallAcc {
  id?: string;
  type: string;
  function: { name: string; arguments: string };
}

/**
 * A streamed request asks for usage (`stream_options.include_usage`) unless the caller set it or
 * `includeUsage` is false: returns the body to send (a copy when changed).
 */
function askUsage(options: WrapOptions): (body: Obj) => Obj {
  const includeUsage = options.includeUsage ?? true;
  return (body: Obj): Obj => {
    if (!includeUsage || body.stream !== true) return body;
    const so = isObj(body.stream_options) ? body.stream_options : undefined;
    if (so && so.include_usage !== undefined) return body;
    return { ...body, stream_options: { ...so, include_usage: true } };
  };
}

/**
 * The app did not ask for usage (`injected`): hide what asking added, the usage-only chunk
 * (returns true) and the `usage: null` of the others. Usage a server sends on a chunk with
 * choices unasked (some OpenAI-compatible ones do) is the app's, asked or not: left alone.
 */
function hideAskedUsage(chunk: Obj, choices: unknown[] | undefined, injected: boolean): boolean {
  if (!injected || !('usage' in chunk)) return false;
  if (choices && choices.length === 0 && isObj(chunk.usage)) return true;
  if (chunk.usage === null) delete chunk.usage;
  return false;
}

/** A chat or text completion request: model, parameters, input (messages or prompt). */
function recordRequest(g: GenerationHandle, body: Obj, params: readonly string[], input: unknown): void {
  const model = str(body.model);
  if (model) g.setModel(model);
  g.setParameters(pick(body, params));
  g.setInput(input);
}

/** A chat or text completion answer: model, usage, each choice's output (`message` or `text`; one choice: itself), finish reasons. */
function recordChoices(g: GenerationHandle, data: unknown, output: (choice: Obj) => unknown): void {
  if (!isObj(data)) return;
  const model = str(data.model);
  if (model) g.setResponseModel(model);
  const usage = chatUsage(data.usage);
  if (usage) g.setUsage(usage);
  const choices = Array.isArray(data.choices) ? (data.choices as unknown[]).filter(isObj) : [];
  const outputs = choices.map(output);
  g.setOutput(outputs.length === 1 ? outputs[0] : outputs);
  g.setFinishReasons(choices.map((c) => c.finish_reason).filter((r): r is string => typeof r === 'string'));
}

/**
 * What the chat and text completion streams both keep from their chunks: the model, the usage (the
 * final chunk's), each choice's finish reason; `onChoice` takes the rest of each choice (index i).
 */
function choiceChunks(injected: boolean, onChoice: (i: number, choice: Obj) => void) {
  const finish: string[] = [];
  let model: string | undefined;
  let usage: Usage | undefined;
  return {
    finish,
    item(chunk: unknown): boolean {
      if (!isObj(chunk)) return false;
      model = str(chunk.model) ?? model;
      if (isObj(chunk.usage)) usage = chatUsage(chunk.usage);
      const choices = Array.isArray(chunk.choices) ? (chunk.choices as unknown[]) : undefined;
      for (const c of choices ?? []) {
        if (!isObj(c)) continue;
        const i = slot(c.index ?? 0);
        if (i === undefined) continue;
        onChoice(i, c);
        if (typeof c.finish_reason === 'string') finish[i] = c.finish_reason;
      }
      return hideAskedUsage(chunk, choices, injected);
    },
    /** Every one of the `n` choices seen has its finish reason: an app that stops reading here has the whole answer. */
    answered(n: number): boolean {
      if (n === 0) return false;
      for (let i = 0; i < n; i++) if (finish[i] === undefined) return false;
      return true;
    },
    /** The model, usage and finish reasons on the generation. */
    totals(g: GenerationHandle): void {
      if (model) g.setResponseModel(model);
      if (usage) g.setUsage(usage);
      g.setFinishReasons(finish.filter((r) => typeof r === 'string'));
    },
  };
}

function chatAdapter(options: WrapOptions): Adapter {
  return {
    provider: options.provider ?? 'openai',
    prepare: askUsage(options),
    request: (g, body) => recordRequest(g, body, CHAT_PARAMS, body.messages),
    response: (g, data) => recordChoices(g, data, (c) => c.message),
    stream(g: GenerationHandle, body: Obj, sent: Obj): StreamObserver {
      const texts: string[] = [];
      /** A refusal comes in its own delta key, instead of the content (structured outputs). */
      const refusals: string[] = [];
      const tools: ToolCallAcc[][] = [];
      let first = true;
      const chunks = choiceChunks(sent !== body, (i, c) => {
        const d = isObj(c.delta) ? c.delta : undefined;
        if (!d) return;
        // The first chunk carries the role and an empty content: the first token is the first non-empty piece.
        if (first && ((typeof d.content === 'string' && d.content !== '') || (Array.isArray(d.tool_calls) && d.tool_calls.length > 0) || (typeof d.refusal === 'string' && d.refusal !== ''))) {
          first = false;
          g.setCompletionStart();
        }
        if (typeof d.content === 'string') texts[i] = appendCapped(texts[i] ?? '', d.content);
        if (typeof d.refusal === 'string') refusals[i] = appendCapped(refusals[i] ?? '', d.refusal);
        if (Array.isArray(d.tool_calls)) {
          const acc = (tools[i] ??= []);
          for (const tc of d.tool_calls as unknown[]) {
            if (!isObj(tc)) continue;
            const k = slot(tc.index ?? 0);
            if (k === undefined) continue;
            const t = (acc[k] ??= { type: 'function', function: { name: '', arguments: '' } });
            if (str(tc.id)) t.id = tc.id as string;
            const f = isObj(tc.function) ? tc.function : undefined;
            if (f) {
              // Appended, as the name may come in pieces; but some servers send the whole name
              // again in every chunk (it came out as get_weatherget_weather): a piece that repeats
              // the name so far replaces it.
              const name = str(f.name);
              if (name) t.function.name = name.startsWith(t.function.name) ? name : appendCapped(t.function.name, name);
              t.function.arguments = appendCapped(t.function.arguments, f.arguments);
            }
          }
        }
      });
      return {
        item: chunks.item,
        // Every choice seen so far, a refusing one included (its deltas carry no content).
        answered: () => chunks.answered(Math.max(texts.length, refusals.length, tools.length, chunks.finish.length)),
        finish(): void {
          chunks.totals(g);
          const n = Math.max(texts.length, refusals.length, tools.length, chunks.finish.length, 1);
          const messages: Obj[] = [];
          for (let i = 0; i < n; i++) {
            const m: Obj = { role: 'assistant', content: texts[i] ?? null };
            if (refusals[i]) m.refusal = refusals[i];
            if (tools[i]?.length) m.tool_calls = tools[i]?.filter(Boolean);
            messages.push(m);
          }
          g.setOutput(messages.length === 1 ? messages[0] : messages);
        },
      };
    },
  };
}

/**
 * The legacy text-completions API, `completions.create({ model, prompt, … })`: input the prompt,
 * output the `choices[].text` (one string for one choice), usage as in chat completions.
 */
function completionsAdapter(options: WrapOptions): Adapter {
  return {
    provider: options.provider ?? 'openai',
    operation: 'text_completion',
    prepare: askUsage(options),
    request: (g, body) => recordRequest(g, body, COMPLETIONS_PARAMS, body.prompt),
    response: (g, data) => recordChoices(g, data, (c) => c.text),
    stream(g: GenerationHandle, body: Obj, sent: Obj): StreamObserver {
      const texts: string[] = [];
      let first = true;
      const chunks = choiceChunks(sent !== body, (i, c) => {
        if (typeof c.text !== 'string') return;
        if (first && c.text !== '') {
          first = false;
          g.setCompletionStart();
        }
        texts[i] = appendCapped(texts[i] ?? '', c.text);
      });
      return {
        item: chunks.item,
        answered: () => chunks.answered(Math.max(texts.length, chunks.finish.length)),
        finish(): void {
          chunks.totals(g);
          const n = Math.max(texts.length, chunks.finish.length, 1);
          const out: string[] = [];
          for (let i = 0; i < n; i++) out.push(texts[i] ?? '');
          g.setOutput(out.length === 1 ? out[0] : out);
        },
      };
    },
  };
}

/**
 * A failure the API reports in an answer rather than as an HTTP error (a `failed` response, a
 * stream's `error` event): the app gets no exception, the generation is still in error.
 */
function failed(g: GenerationHandle, message: string, code: string | undefined): void {
  g.setStatus('error', message);
  g.setLevel('ERROR');
  g.setAttribute('error.type', code ?? 'response_failed');
}

/**
 * A response's text as the client's `output_text` gives it: its messages' `output_text` parts
 * joined. Streamed responses have no `output_text` (the client adds it to parsed answers only).
 */
function responseText(r: Obj): string {
  if (typeof r.output_text === 'string') return r.output_text;
  let text = '';
  for (const item of Array.isArray(r.output) ? (r.output as unknown[]) : []) {
    if (!isObj(item) || item.type !== 'message' || !Array.isArray(item.content)) continue;
    for (const part of item.content as unknown[]) if (isObj(part) && part.type === 'output_text') text = appendCapped(text, part.text);
  }
  return text;
}

function responsesAdapter(options: WrapOptions): Adapter {
  /** `streamedText`: the text deltas of a stream, for a final response that lists no output. */
  const fromResponse = (g: GenerationHandle, r: Obj, streamedText = ''): void => {
    const model = str(r.model);
    if (model) g.setResponseModel(model);
    const usage = responsesUsage(r.usage);
    if (usage) g.setUsage(usage);
    // The text when there is any, streamed or not (one shape for both); when no message has
    // text (a function call, say), the output items are the answer (Langfuse's OpenAI
    // integration makes the same choice).
    const text = responseText(r) || streamedText;
    g.setOutput(text !== '' ? text : r.output);
    if (str(r.status)) g.setFinishReasons([r.status as string]);
    if (r.status === 'failed') {
      const e = isObj(r.error) ? r.error : {};
      failed(g, str(e.message) ?? 'response failed', str(e.code));
    }
  };
  return {
    provider: options.provider ?? 'openai',
    request(g: GenerationHandle, body: Obj): void {
      const model = str(body.model);
      if (model) g.setModel(model);
      g.setParameters(pick(body, RESPONSES_PARAMS));
      g.setInput(body.instructions !== undefined ? { instructions: body.instructions, input: body.input } : body.input);
    },
    response(g: GenerationHandle, data: unknown): void {
      if (isObj(data)) fromResponse(g, data);
    },
    stream(g: GenerationHandle): StreamObserver {
      let text = '';
      let final: Obj | undefined;
      let error: Obj | undefined;
      let first = true;
      return {
        item(ev: unknown): boolean {
          if (!isObj(ev)) return false;
          // The first output of any kind (text, a function call's arguments, a refusal, reasoning) is the first token.
          if (first && typeof ev.type === 'string' && ev.type.startsWith('response.') && ev.type.endsWith('.delta')) {
            first = false;
            g.setCompletionStart();
          }
          if (ev.type === 'response.output_text.delta') {
            text = appendCapped(text, ev.delta);
          } else if ((ev.type === 'response.completed' || ev.type === 'response.incomplete' || ev.type === 'response.failed') && isObj(ev.response)) {
            final = ev.response;
          } else if (ev.type === 'error') {
            error = ev;
          }
          return false;
        },
        // response.completed (or incomplete, failed) is the last event and brings the whole
        // response with its usage: an app that stops reading there has not cancelled anything.
        answered: () => final !== undefined,
        finish(): void {
          if (final) fromResponse(g, final, text);
          else if (text) g.setOutput(text);
          if (error) failed(g, str(error.message) ?? 'stream error', str(error.code));
        },
      };
    },
  };
}

/**
 * Traces the `openai` client's `chat.completions.create`, `responses.create` and
 * `completions.create` (patched in place;
 * idempotent) and returns the same client. What the app receives is unchanged: the same
 * `APIPromise`, the same `Stream` objects and chunks (minus the usage-only chunk that the wrapper
 * itself asked for), the same errors.
 */
export function wrapOpenAI<T extends object>(client: T, options: WrapOptions = {}): T {
  try {
    const c = client as Obj;
    const chat = isObj(c.chat) ? c.chat : undefined;
    patchMethod(chat?.completions, 'create', chatAdapter(options), options);
    patchMethod(c.responses, 'create', responsesAdapter(options), options);
    patchMethod(c.completions, 'create', completionsAdapter(options), options);
    patchFetch(c);
    // withOptions() (per-call timeouts, retries) makes a new client: traced like this one.
    patchDerivedClients(c, (derived) => wrapOpenAI(derived, options));
  } catch {
    /* never throw: an unrecognised client is returned as it is */
  }
  return client;
}
