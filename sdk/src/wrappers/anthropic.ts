/**
 * `wrapAnthropic(client)`: traces `messages.create` of the official `@anthropic-ai/sdk` client
 * (and `messages.stream`, which is built on it), streamed or not; also `beta.messages.create`
 * and, on 0.26-0.32, `beta.promptCaching.messages.create`.
 */
import type { GenerationHandle, Usage } from '../span.js';
import { appendCapped, isObj, num, patchDerivedClients, patchFetch, patchMethod, pick, slot, str, type Adapter, type Obj, type StreamObserver, type WrapOptions } from './common.js';

const PARAMS = ['max_tokens', 'temperature', 'top_p', 'top_k'] as const;

/**
 * Anthropic's `input_tokens` excludes cache reads and writes; OpenTelemetry's input includes them.
 * `cache_creation` splits the writes by TTL: the 1-hour ones cost more (2× input, not 1.25×).
 */
function usageOf(u: Obj, prev?: Usage): Usage {
  const cacheRead = num(u.cache_read_input_tokens) ?? prev?.cacheRead;
  const cacheWrite = num(u.cache_creation_input_tokens) ?? prev?.cacheWrite;
  const cacheWrite1h = (isObj(u.cache_creation) ? num(u.cache_creation.ephemeral_1h_input_tokens) : undefined) ?? prev?.cacheWrite1h;
  const uncached = num(u.input_tokens);
  const input = uncached !== undefined ? uncached + (cacheRead ?? 0) + (cacheWrite ?? 0) : prev?.input;
  const usage: Usage = { input, output: num(u.output_tokens) ?? prev?.output, cacheRead, cacheWrite };
  if (cacheWrite1h) usage.cacheWrite1h = cacheWrite1h;
  return usage;
}

function adapter(options: WrapOptions): Adapter {
  return {
    provider: options.provider ?? 'anthropic',
    request(g: GenerationHandle, body: Obj): void {
      const model = str(body.model);
      if (model) g.setModel(model);
      g.setParameters(pick(body, PARAMS));
      g.setInput(body.system !== undefined ? [{ role: 'system', content: body.system }, ...(Array.isArray(body.messages) ? body.messages : [])] : body.messages);
    },
    response(g: GenerationHandle, data: unknown): void {
      if (!isObj(data)) return;
      const model = str(data.model);
      if (model) g.setResponseModel(model);
      if (isObj(data.usage)) g.setUsage(usageOf(data.usage));
      g.setOutput({ role: 'assistant', content: data.content });
      if (str(data.stop_reason)) g.setFinishReasons([data.stop_reason as string]);
    },
    stream(g: GenerationHandle): StreamObserver {
      let model: string | undefined;
      let usage: Usage | undefined;
      let stop: string | undefined;
      let first = true;
      const blocks: Obj[] = [];
      /** Blocks whose `input` arrives as `input_json_delta` text (tool_use, server_tool_use, mcp_tool_use). */
      const jsonInputs = new Set<Obj>();
      return {
        item(ev: unknown): boolean {
          if (!isObj(ev)) return false;
          switch (ev.type) {
            case 'message_start': {
              const m = isObj(ev.message) ? ev.message : undefined;
              model = str(m?.model) ?? model;
              // Its output_tokens is a placeholder (1): the count comes with message_delta, so a
              // stream left before it records no output count rather than a wrong one.
              if (m && isObj(m.usage)) usage = { ...usageOf(m.usage, usage), output: undefined };
              break;
            }
            case 'content_block_start': {
              const i = slot(ev.index ?? blocks.length);
              if (i === undefined) break;
              // The block as it starts (a thinking block's `thinking` and `signature`, a tool result's
              // content), its deltas appended below.
              const b: Obj = isObj(ev.content_block) ? { ...ev.content_block } : {};
              if (!str(b.type)) b.type = 'text';
              if ('input' in b) {
                b.input = '';
                jsonInputs.add(b);
              }
              blocks[i] = b;
              break;
            }
            case 'content_block_delta': {
              if (first) {
                first = false;
                g.setCompletionStart();
              }
              const i = slot(ev.index ?? 0);
              if (i === undefined) break;
              const d = isObj(ev.delta) ? ev.delta : {};
              const b = (blocks[i] ??= { type: 'text', text: '' });
              if (d.type === 'text_delta') b.text = appendCapped(String(b.text ?? ''), d.text);
              else if (d.type === 'input_json_delta') b.input = appendCapped(String(b.input ?? ''), d.partial_json);
              else if (d.type === 'thinking_delta') b.thinking = appendCapped(String(b.thinking ?? ''), d.thinking);
              else if (d.type === 'signature_delta' && typeof d.signature === 'string') b.signature = d.signature;
              else if (d.type === 'citations_delta' && d.citation !== undefined) b.citations = [...(Array.isArray(b.citations) ? b.citations : []), d.citation];
              break;
            }
            case 'message_delta': {
              const d = isObj(ev.delta) ? ev.delta : {};
              stop = str(d.stop_reason) ?? stop;
              if (isObj(ev.usage)) usage = usageOf(ev.usage, usage);
              break;
            }
            default:
              break;
          }
          return false;
        },
        answered(): boolean {
          // message_delta brings the stop reason with the final usage: the answer is complete.
          return stop !== undefined;
        },
        finish(): void {
          if (model) g.setResponseModel(model);
          if (usage) g.setUsage(usage);
          for (const b of blocks) {
            if (b && jsonInputs.has(b) && typeof b.input === 'string') {
              try {
                b.input = b.input ? (JSON.parse(b.input) as unknown) : {};
              } catch {
                /* keep the partial JSON text */
              }
            }
          }
          g.setOutput({ role: 'assistant', content: blocks.filter(Boolean) });
          if (stop) g.setFinishReasons([stop]);
        },
      };
    },
  };
}

/**
 * Traces the `@anthropic-ai/sdk` client's `messages.create`, `beta.messages.create` and (0.26-0.32)
 * `beta.promptCaching.messages.create` (patched in place; idempotent) and returns the same
 * client; what the app receives is unchanged.
 */
export function wrapAnthropic<T extends object>(client: T, options: WrapOptions = {}): T {
  try {
    const c = client as Obj;
    patchMethod(c.messages, 'create', adapter(options), options);
    const beta = isObj(c.beta) ? c.beta : undefined;
    patchMethod(beta?.messages, 'create', adapter(options), options);
    // 0.26-0.32 had prompt caching as a beta of its own (`beta.promptCaching.messages`, whose
    // `stream()` helper calls its `create`); 0.33 made it part of `messages`.
    const caching = beta && isObj(beta.promptCaching) ? beta.promptCaching : undefined;
    patchMethod(caching?.messages, 'create', adapter(options), options);
    patchFetch(c);
    // withOptions() (per-call timeouts, retries) makes a new client: traced like this one.
    patchDerivedClients(c, (derived) => wrapAnthropic(derived, options));
  } catch {
    /* never throw */
  }
  return client;
}
