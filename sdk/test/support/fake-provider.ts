/**
 * A fake OpenAI / Anthropic HTTP API on 127.0.0.1 for driving the REAL client packages in tests.
 * Each request takes the next scripted reply from the queue of its path.
 */
import { after, before, beforeEach } from 'node:test';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export type Reply =
  | { status: number; json: unknown; headers?: Record<string, string> }
  /** A body sent as it is (e.g. one that does not parse). */
  | { status: number; raw: string; headers?: Record<string, string> }
  /** SSE: `data` lines, optionally with `event:` names (Anthropic), each after its `delayMs`. */
  | { sse: Array<{ event?: string; data: unknown; delayMs?: number }> }
  /** Built from the request body (e.g. to honour stream_options.include_usage). */
  | { fn: (body: Record<string, unknown>) => Reply };

export interface Seen {
  path: string;
  body: Record<string, unknown>;
  headers: http.IncomingHttpHeaders;
}

export class FakeProvider {
  readonly seen: Seen[] = [];
  private readonly queues = new Map<string, Reply[]>();

  private constructor(
    private readonly server: http.Server,
    readonly port: number,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  static async start(): Promise<FakeProvider> {
    let self: FakeProvider | undefined;
    const server = http.createServer((req, res) => {
      let raw = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (raw += c));
      req.on('end', () => {
        const me = self as FakeProvider;
        const path = (req.url ?? '').split('?')[0] ?? '';
        let body: Record<string, unknown> = {};
        try {
          body = JSON.parse(raw) as Record<string, unknown>;
        } catch {
          /* keep {} */
        }
        me.seen.push({ path, body, headers: req.headers });
        let reply = me.queues.get(path)?.shift();
        if (!reply) {
          res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: `nothing scripted for ${path}` } }));
          return;
        }
        while ('fn' in reply) reply = reply.fn(body);
        if ('sse' in reply) {
          res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
          const events = reply.sse;
          void (async () => {
            for (const e of events) {
              if (e.delayMs) await new Promise((r) => setTimeout(r, e.delayMs));
              if (res.destroyed) return;
              const data = typeof e.data === 'string' ? e.data : JSON.stringify(e.data);
              res.write(`${e.event ? `event: ${e.event}\n` : ''}data: ${data}\n\n`);
            }
            res.end();
          })();
          return;
        }
        res.writeHead(reply.status, { 'content-type': 'application/json', ...reply.headers }).end('raw' in reply ? reply.raw : JSON.stringify(reply.json));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    self = new FakeProvider(server, (server.address() as AddressInfo).port);
    return self;
  }

  script(path: string, ...replies: Reply[]): void {
    const q = this.queues.get(path) ?? [];
    q.push(...replies);
    this.queues.set(path, q);
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

// --- canned OpenAI chat completions ---

export function chatCompletion(text: string, opts: { model?: string; prompt?: number; completion?: number; cached?: number; reasoning?: number } = {}): unknown {
  const prompt = opts.prompt ?? 10;
  const completion = opts.completion ?? 5;
  return {
    id: 'chatcmpl-1',
    object: 'chat.completion',
    created: 1732700000,
    model: opts.model ?? 'gpt-4o-mini-2024-07-18',
    choices: [{ index: 0, message: { role: 'assistant', content: text, refusal: null }, finish_reason: 'stop', logprobs: null }],
    usage: {
      prompt_tokens: prompt,
      completion_tokens: completion,
      total_tokens: prompt + completion,
      ...(opts.cached !== undefined ? { prompt_tokens_details: { cached_tokens: opts.cached } } : {}),
      ...(opts.reasoning !== undefined ? { completion_tokens_details: { reasoning_tokens: opts.reasoning, audio_tokens: 0 } } : {}),
    },
  };
}

/** SSE chunks of a streamed chat completion; usage only when the request asked for it (like OpenAI). */
export function chatStream(pieces: string[], opts: { model?: string; prompt?: number; completion?: number } = {}): Reply {
  return {
    fn: (body) => {
      const model = opts.model ?? 'gpt-4o-mini-2024-07-18';
      const base = { id: 'chatcmpl-2', object: 'chat.completion.chunk', created: 1732700000, model, system_fingerprint: 'fp' };
      const usage = askedUsage(body, base, opts.prompt ?? 10, opts.completion ?? pieces.length);
      const sse: Array<{ data: unknown }> = [{ data: { ...base, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }], ...usage.extra } }];
      for (const p of pieces) sse.push({ data: { ...base, choices: [{ index: 0, delta: { content: p }, finish_reason: null }], ...usage.extra } });
      sse.push({ data: { ...base, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }], ...usage.extra } });
      return { sse: [...sse, ...usage.last, { data: '[DONE]' }] };
    },
  };
}

/**
 * What OpenAI adds to a stream whose request asks for `stream_options.include_usage`: `usage: null`
 * on every chunk (`extra`), then a usage-only chunk with no choices (`last`); nothing otherwise.
 */
function askedUsage(body: Record<string, unknown>, base: object, prompt: number, completion: number): { extra: object; last: Array<{ data: unknown }> } {
  const so = body.stream_options as { include_usage?: boolean } | undefined;
  if (so?.include_usage !== true) return { extra: {}, last: [] };
  const usage = { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
  return { extra: { usage: null }, last: [{ data: { ...base, choices: [], usage } }] };
}

// --- canned OpenAI legacy text completions (`/v1/completions`) ---

export function textCompletion(texts: string | string[], opts: { model?: string; prompt?: number; completion?: number } = {}): unknown {
  const prompt = opts.prompt ?? 10;
  const completion = opts.completion ?? 5;
  const list = typeof texts === 'string' ? [texts] : texts;
  return {
    id: 'cmpl-1',
    object: 'text_completion',
    created: 1732700000,
    model: opts.model ?? 'gpt-3.5-turbo-instruct',
    choices: list.map((text, index) => ({ text, index, logprobs: null, finish_reason: 'stop' })),
    usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion },
  };
}

/**
 * SSE chunks of a streamed text completion (`choices[].text` deltas, the finish reason on the
 * last piece); usage only when the request asked for it (like OpenAI): `usage: null` on every
 * chunk, then a usage-only chunk with no choices.
 */
export function textCompletionStream(pieces: string[], opts: { model?: string; prompt?: number; completion?: number } = {}): Reply {
  return {
    fn: (body) => {
      const base = { id: 'cmpl-2', object: 'text_completion', created: 1732700000, model: opts.model ?? 'gpt-3.5-turbo-instruct' };
      const usage = askedUsage(body, base, opts.prompt ?? 10, opts.completion ?? pieces.length);
      const sse: Array<{ data: unknown }> = pieces.map((text, i) => ({
        data: { ...base, choices: [{ text, index: 0, logprobs: null, finish_reason: i === pieces.length - 1 ? 'length' : null }], ...usage.extra },
      }));
      return { sse: [...sse, ...usage.last, { data: '[DONE]' }] };
    },
  };
}

// --- canned Anthropic messages ---

export function anthropicMessage(text: string, opts: { model?: string; input?: number; output?: number; cacheRead?: number } = {}): unknown {
  return {
    id: 'msg_1',
    type: 'message',
    role: 'assistant',
    model: opts.model ?? 'claude-sonnet-4-5-20250929',
    content: [{ type: 'text', text }],
    stop_reason: 'end_turn',
    stop_sequence: null,
    usage: { input_tokens: opts.input ?? 20, output_tokens: opts.output ?? 7, cache_read_input_tokens: opts.cacheRead ?? 0, cache_creation_input_tokens: 0 },
  };
}

export function anthropicStream(pieces: string[], opts: { model?: string; input?: number; output?: number } = {}): Reply {
  const ev = (event: string, data: unknown) => ({ event, data });
  return {
    sse: [
      ev('message_start', {
        type: 'message_start',
        message: { id: 'msg_2', type: 'message', role: 'assistant', model: opts.model ?? 'claude-sonnet-4-5-20250929', content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: opts.input ?? 20, output_tokens: 1 } },
      }),
      ev('content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }),
      ev('ping', { type: 'ping' }),
      ...pieces.map((p) => ev('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: p } })),
      ev('content_block_stop', { type: 'content_block_stop', index: 0 }),
      ev('message_delta', { type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: opts.output ?? 7 } }),
      ev('message_stop', { type: 'message_stop' }),
    ],
  };
}

/** One fake provider for a whole test file: started before the first test, its log cleared before each, closed after the last. */
export function useFakeProvider(set: (p: FakeProvider) => void): void {
  let p: FakeProvider;
  before(async () => {
    p = await FakeProvider.start();
    set(p);
  });
  after(() => p.close());
  beforeEach(() => {
    p.seen.length = 0;
  });
}
