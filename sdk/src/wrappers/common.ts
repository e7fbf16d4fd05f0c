/**
 * Shared machinery of `wrapOpenAI` / `wrapAnthropic`: trace one client method call as an
 * `llm.generate` generation without changing what the app receives.
 *
 * - The client's `APIPromise` is kept: it is re-derived with its own `_thenUnwrap` (what the
 *   clients' helpers use), so `.withResponse()`, `.asResponse()` and `instanceof` still work.
 * - A stream is the same `Stream` object: only its internal iterator factory is wrapped, so
 *   `for await`, `.tee()`, `.toReadableStream()` and `controller.abort()` behave as before.
 * - Errors are the client's errors, rethrown unchanged; retries are seen through the client's
 *   `fetch` (one `llm.retry` event per extra attempt).
 * Structural types only: the SDK does not depend on the client packages.
 */
import { EVENT_NAMES } from '@dspy-o11y/proto';
import { activeScope, adoptLiteGeneration, runWithSpan, startGeneration } from '../api.js';
import { hasSubscribers } from '../events.js';
import { SpanImpl, type GenerationHandle } from '../span.js';
import { cfg, isDisabled } from '../state.js';

export interface WrapOptions {
  /** `gen_ai.provider.name` (default `openai` / `anthropic`), e.g. `azure.ai.openai`. */
  provider?: string;
  /** Span name (default `llm.generate`). */
  name?: string;
  /**
   * OpenAI streams: add `stream_options.include_usage` when the caller did not set it, so usage
   * (and cost) is known; the extra usage-only chunk is not shown to the app (default true).
   */
  includeUsage?: boolean;
}

export type Obj = Record<string, unknown>;
export const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null;
export const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

/** Choices, tool calls or content blocks of one answer that are recorded, by their index. */
const MAX_SLOTS = 1024;
/**
 * A stream's `index` (of a choice, a tool call, a content block) as an array slot: a whole number
 * below {@link MAX_SLOTS}, else undefined (the piece is not recorded). The index is the server's
 * word: texts[1e7] made a 10^7-slot array that the stream's end walked (1.7 s and 660 MB; 4e9 is
 * a crash), where the app, reading the raw stream, never looks at it.
 */
export const slot = (v: unknown): number | undefined => (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < MAX_SLOTS ? v : undefined);
export const str = (v: unknown): string | undefined => (typeof v === 'string' && v ? v : undefined);

/** What a provider adapter knows about one method. */
export interface Adapter {
  provider: string;
  /** `gen_ai.operation.name` of the generation it starts (default `chat`). */
  operation?: string;
  /** May return a modified copy of the request body to send instead (e.g. usage in streams). */
  prepare?(body: Obj): Obj;
  /** Request attributes: model, parameters, input. */
  request(g: GenerationHandle, body: Obj): void;
  /** A non-streamed answer. */
  response(g: GenerationHandle, data: unknown): void;
  /** Observer of a streamed answer. */
  stream(g: GenerationHandle, body: Obj, sent: Obj): StreamObserver;
}

export interface StreamObserver {
  /** Sees each item; returns true to hide it from the app. */
  item(item: unknown): boolean;
  /** The stream is over (completely or not): put the totals on the generation. */
  finish(): void;
  /** Whether the answer is complete already (every choice has its finish reason): an app that stops reading then has not cancelled anything. */
  answered?(): boolean;
}

const WRAPPED = Symbol.for('dspy-o11y.wrapped');
const FETCH_WRAPPED = Symbol.for('dspy-o11y.fetch-wrapped');

const DERIVED_WRAPPED = Symbol.for('dspy-o11y.derived-wrapped');

/**
 * `client.withOptions(...)` returns a new client (same class, other timeouts or retries) whose
 * resources are its own: `wrap` is applied to each one it returns (once per client).
 */
export function patchDerivedClients(client: Obj, wrap: (derived: object) => unknown): void {
  const orig = client.withOptions;
  if (typeof orig !== 'function' || (client as Record<symbol, unknown>)[DERIVED_WRAPPED]) return;
  (client as Record<symbol, unknown>)[DERIVED_WRAPPED] = true;
  Object.defineProperty(client, 'withOptions', {
    configurable: true,
    writable: true,
    value: function withOptions(this: unknown, ...args: unknown[]): unknown {
      const derived = (orig as (...a: unknown[]) => unknown).apply(this, args);
      try {
        if (isObj(derived)) wrap(derived);
      } catch {
        /* never throw: the app gets its client either way */
      }
      return derived;
    },
  });
}

/** Replaces `obj[method]` with a traced version (once). */
export function patchMethod(obj: unknown, method: string, adapter: Adapter, options: WrapOptions): void {
  if (!isObj(obj)) return;
  const orig = obj[method];
  if (typeof orig !== 'function' || (orig as unknown as Obj)[WRAPPED as unknown as string]) return;
  const name = options.name ?? 'llm.generate';
  const traced = function (this: unknown, ...args: unknown[]): unknown {
    return tracedCall(orig as (...a: unknown[]) => unknown, this, args, adapter, name);
  };
  Object.defineProperty(traced, WRAPPED, { value: orig });
  Object.defineProperty(traced, 'name', { value: (orig as { name: string }).name });
  obj[method] = traced;
}

/**
 * Wraps the client's `fetch` (an instance property on both clients, called once per attempt)
 * to count attempts of the traced call in progress: each attempt after the first is an
 * `llm.retry` event with the previous attempt's status or error. Other requests pass through.
 */
export function patchFetch(client: unknown): void {
  if (!isObj(client)) return;
  const orig = client.fetch;
  if (typeof orig !== 'function' || (orig as unknown as Obj)[FETCH_WRAPPED as unknown as string]) return;
  const patched = function (this: unknown, ...args: unknown[]): unknown {
    const scope = activeScope();
    const call = scope instanceof SpanImpl && !scope.ended ? scope.llmCall : undefined;
    if (call) {
      call.attempts++;
      if (call.attempts > 1) {
        try {
          (scope as SpanImpl).event(EVENT_NAMES.llmRetry, {
            attempt: call.attempts,
            'http.response.status_code': call.lastStatus,
            'error.type': call.lastError,
          });
        } catch {
          // A subscriber throwing here would be taken by the client for a network error and retried: ignore it.
        }
      }
    }
    const p = (orig as (...a: unknown[]) => unknown).apply(this, args);
    if (call && isObj(p) && typeof (p as { then?: unknown }).then === 'function') {
      (p as unknown as PromiseLike<unknown>).then(
        (r) => {
          call.lastStatus = num(isObj(r) ? r.status : undefined);
          call.lastError = undefined;
        },
        (e: unknown) => {
          call.lastStatus = undefined;
          call.lastError = e instanceof Error ? e.name : 'Error';
        },
      );
    }
    return p;
  };
  Object.defineProperty(patched, FETCH_WRAPPED, { value: orig });
  client.fetch = patched;
}

interface Call {
  gen: GenerationHandle;
  /** False when the call fills in a generation a module helper opened (it ends it). */
  owned: boolean;
  done: boolean;
}

function begin(name: string, adapter: Adapter, body: Obj): Call | undefined {
  if (isDisabled() && !hasSubscribers()) return undefined;
  const scope = activeScope();
  let call: Call;
  if (scope instanceof SpanImpl && scope.isGeneration && !scope.ended && (scope.adoptable || scope.attempt?.failedAt !== undefined)) {
    // A module's generation, still to fill in, or whose wrapped call failed and its `llm` tries
    // again: the failed attempt goes beside it (not the module's step left in ERROR, the retry
    // nested under it), as DSPy.rb records one llm.generate per call.
    if (scope.attempt) scope.splitFailedAttempt(scope.attempt);
    scope.adoptable = false;
    scope.attempt = scope.markAttempt();
    call = { gen: scope, owned: false, done: false };
  } else {
    // Telemetry off: the module's disabled-mode generation, filled in as when on.
    const lite = isDisabled() ? adoptLiteGeneration() : undefined;
    call = lite
      ? { gen: lite, owned: false, done: false }
      : { gen: startGeneration(name, { provider: adapter.provider, operation: adapter.operation ?? 'chat' }), owned: true, done: false };
  }
  const g = call.gen;
  g.setProvider(adapter.provider);
  adapter.request(g, body);
  if (g instanceof SpanImpl) g.llmCall = { attempts: 0, lastStatus: undefined, lastError: undefined };
  return call;
}

/** The call succeeded: end the generation (a budget subscriber may throw from here, on purpose). */
function succeed(call: Call): void {
  if (call.done) return;
  call.done = true;
  if (call.owned) call.gen.end();
  // An answer that reported its failure (a `failed` response, a stream's `error` event): the app
  // got no exception, but an llm that tries again retries a failed attempt all the same.
  else if (call.gen instanceof SpanImpl && call.gen.inError) markFailedAttempt(call.gen);
}

/** A module's generation: if its `llm` tries again, this attempt goes beside it (see begin()). */
function markFailedAttempt(gen: SpanImpl): void {
  if (gen.attempt) gen.attempt.failedAt = gen.timeNow();
}

function fail(call: Call, error: unknown): void {
  if (call.done) return;
  call.done = true;
  try {
    call.gen.recordError(error);
    if (call.owned) call.gen.end();
    else if (call.gen instanceof SpanImpl) markFailedAttempt(call.gen);
  } catch {
    /* the app's error wins */
  }
}

type APIPromiseLike = PromiseLike<unknown> & {
  _thenUnwrap?: (transform: (data: unknown, props: unknown) => unknown) => unknown;
  asResponse?: () => PromiseLike<unknown>;
  /** The request itself (both clients keep it on the APIPromise): settles with the response, or the request's failure. */
  responsePromise?: unknown;
};

function tracedCall(orig: (...a: unknown[]) => unknown, self: unknown, args: unknown[], adapter: Adapter, name: string): unknown {
  const body = args[0];
  if (!isObj(body)) return orig.apply(self, args);
  let call: Call | undefined;
  let sent = body;
  try {
    call = begin(name, adapter, body);
    if (call && adapter.prepare) sent = adapter.prepare(body);
  } catch {
    call = undefined;
    sent = body;
  }
  if (!call) return orig.apply(self, args);
  const c = call;
  const callArgs = sent === body ? args : [sent, ...args.slice(1)];
  let result: unknown;
  try {
    result = c.gen instanceof SpanImpl ? runWithSpan(c.gen, () => orig.apply(self, callArgs)) : orig.apply(self, callArgs);
  } catch (e) {
    fail(c, e);
    throw e;
  }
  const streaming = sent.stream === true;
  const onData = (data: unknown): unknown => {
    if (streaming && isObj(data)) {
      if (instrumentStream(data, c, adapter.stream(c.gen, body, sent))) return data;
    } else {
      try {
        adapter.response(c.gen, data);
      } catch {
        /* never throw */
      }
    }
    succeed(c);
    return data;
  };
  if (!isObj(result) && typeof result !== 'function') {
    succeed(c);
    return result;
  }
  const p = result as unknown as APIPromiseLike;
  if (typeof p.then !== 'function') {
    succeed(c);
    return result;
  }
  if (typeof p._thenUnwrap === 'function') {
    let wrapped: unknown;
    try {
      wrapped = p._thenUnwrap((data: unknown) => onData(data));
      if (isObj(wrapped)) observeRawReads(wrapped, c);
    } catch {
      wrapped = undefined;
    }
    if (wrapped !== undefined) {
      // The request's own failure (after the client's retries), seen without parsing the body.
      // responsePromise, not asResponse(): on Anthropic's client asResponse() also ends the
      // client's own OpenTelemetry span when no parse was started on that promise (ours is on
      // the promise _thenUnwrap made), cutting it at the headers, without its usage.
      const rp = p.responsePromise;
      const responded = isObj(rp) && typeof rp.then === 'function' ? (rp as unknown as PromiseLike<unknown>) : undefined;
      try {
        if (responded) responded.then(undefined, (e: unknown) => fail(c, e));
        else if (typeof p.asResponse === 'function') p.asResponse().then(undefined, (e: unknown) => fail(c, e));
      } catch {
        /* ignore */
      }
      return wrapped;
    }
  }
  return p.then(onData, (e: unknown) => {
    fail(c, e);
    throw e;
  });
}

/**
 * The generation of an `APIPromise` also ends when its body is never parsed into data:
 * - a body that fails to parse (a 2xx answer that is not valid JSON): the parse error;
 * - `.asResponse()`, the raw `Response` for the app to read: when it arrives, unless a parse of
 *   the body has begun by then (`.withResponse()` starts one before it asks for the response).
 * Both are instance properties of the client's `APIPromise` (`parseResponse` is set by its
 * constructor); anything else is left alone.
 */
function observeRawReads(wrapped: Obj, call: Call): void {
  let parsing = false;
  const parse = wrapped.parseResponse;
  if (typeof parse === 'function' && Object.prototype.hasOwnProperty.call(wrapped, 'parseResponse')) {
    wrapped.parseResponse = function (this: unknown, ...a: unknown[]): unknown {
      parsing = true;
      let r: unknown;
      try {
        r = (parse as (...x: unknown[]) => unknown).apply(this, a);
      } catch (e) {
        fail(call, e);
        throw e;
      }
      if (!isObj(r) || typeof (r as { then?: unknown }).then !== 'function') return r;
      return (r as unknown as PromiseLike<unknown>).then(undefined, (e: unknown) => {
        // After the data was handed on (`done`), this is a subscriber's error: already reported.
        fail(call, e);
        throw e;
      });
    };
  }
  const asResponse = wrapped.asResponse;
  if (typeof asResponse === 'function') {
    wrapped.asResponse = function (this: unknown, ...a: unknown[]): unknown {
      const res = (asResponse as (...x: unknown[]) => unknown).apply(this, a);
      if (isObj(res) && typeof (res as { then?: unknown }).then === 'function') {
        (res as unknown as PromiseLike<unknown>).then(
          (response) => {
            if (parsing || call.done) return;
            try {
              const status = isObj(response) ? num(response.status) : undefined;
              if (status !== undefined) call.gen.setAttribute('http.response.status_code', status);
              succeed(call);
            } catch {
              /* a subscriber's error has nowhere to go: the app holds the raw response */
            }
          },
          () => undefined, // the request's failure: seen by the original promise's `asResponse()`
        );
      }
      return res;
    };
  }
}

/**
 * Observe a client `Stream` in place. Both clients' `Stream` keeps its iterator factory in the
 * `iterator` property, used by `[Symbol.asyncIterator]` and `tee()`; wrapping it keeps the
 * object, its class and every method. Returns false if the stream cannot be observed.
 */
function instrumentStream(stream: Obj, call: Call, observer: StreamObserver): boolean {
  let finished = false;
  /** `next()` calls of the app waiting for the client's iterator. */
  let reading = 0;
  const controller = isObj(stream.controller) ? stream.controller : undefined;
  const signal = controller && isObj(controller.signal) ? (controller.signal as unknown as AbortSignal) : undefined;
  const markCancelled = (): void => {
    if (call.gen instanceof SpanImpl) call.gen.setAttribute('dspy.stream.cancelled', true);
  };
  const onAbort = (): void => {
    // A read in progress ends on its own (quietly for the app's abort, with the error when the
    // client aborts its own request after a failure); otherwise the app aborted the stream
    // before (or between) reads, and may never read it again.
    if (reading > 0 || finished) return;
    markCancelled();
    try {
      complete();
    } catch {
      /* a subscriber's error: the app is not reading */
    }
  };
  const complete = (error?: unknown): void => {
    if (finished) return;
    finished = true;
    try {
      signal?.removeEventListener('abort', onAbort);
    } catch {
      /* ignore */
    }
    try {
      observer.finish();
    } catch {
      /* never throw */
    }
    if (error !== undefined) fail(call, error);
    else succeed(call);
  };
  try {
    if (signal && typeof signal.addEventListener === 'function') {
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
    }
  } catch {
    /* not a DOM AbortSignal: the iterator alone tells */
  }
  const observe = (it: AsyncIterator<unknown>): AsyncIterator<unknown> => {
    const onResult = (r: IteratorResult<unknown>): IteratorResult<unknown> | Promise<IteratorResult<unknown>> => {
      if (r.done) {
        reading--;
        if (signal?.aborted && !finished) markCancelled();
        complete();
        return r;
      }
      let hide = false;
      try {
        hide = observer.item(r.value);
      } catch {
        hide = false;
      }
      if (hide) return it.next().then(onResult, onError);
      reading--;
      return r;
    };
    const onError = (e: unknown): never => {
      reading--;
      complete(e);
      throw e;
    };
    const wrapped: AsyncIterator<unknown> & AsyncIterable<unknown> = {
      next: () => {
        reading++;
        let p: Promise<IteratorResult<unknown>>;
        try {
          p = it.next();
        } catch (e) {
          reading--;
          throw e;
        }
        return p.then(onResult, onError);
      },
      return: (value?: unknown) => {
        let answered = false;
        try {
          answered = observer.answered?.() ?? false;
        } catch {
          /* never throw */
        }
        if (!finished && !answered) markCancelled();
        try {
          complete();
        } catch {
          /* a subscriber's error must not break the app's `break` */
        }
        return it.return ? it.return(value) : Promise.resolve({ done: true as const, value });
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    };
    if (it.throw) wrapped.throw = (e?: unknown) => (it.throw as (e?: unknown) => Promise<IteratorResult<unknown>>)(e);
    return wrapped;
  };
  const factory = stream.iterator;
  if (typeof factory === 'function' && Object.prototype.hasOwnProperty.call(stream, 'iterator')) {
    stream.iterator = function (this: unknown) {
      return observe((factory as () => AsyncIterator<unknown>).call(this));
    };
    return true;
  }
  const iter = (stream as { [Symbol.asyncIterator]?: unknown })[Symbol.asyncIterator];
  if (typeof iter === 'function') {
    Object.defineProperty(stream, Symbol.asyncIterator, {
      configurable: true,
      writable: true,
      value: function (this: unknown) {
        return observe((iter as () => AsyncIterator<unknown>).call(this));
      },
    });
    return true;
  }
  return false;
}

/** Appends to a capped text accumulator. */
export function appendCapped(acc: string, piece: unknown): string {
  if (typeof piece !== 'string' || acc.length >= cfg().maxValueLength) return acc;
  return acc + piece;
}

/** Picks request parameters worth recording. */
export function pick(body: Obj, keys: readonly string[]): Obj {
  const out: Obj = {};
  for (const k of keys) if (body[k] !== undefined && body[k] !== null) out[k] = body[k];
  return out;
}
