/**
 * In-process, synchronous event subscribers (DSPy.rb's `subscribe`): `*` matches any run of
 * characters, patterns are anchored. Every handler of an event runs even if one throws; the
 * first error is then rethrown to the code that emitted the event — the one deliberate way for
 * telemetry to throw into the app (a token budget stopping a run).
 */
import { debug } from './config.js';

export interface EventContext {
  traceId: string | undefined;
  spanId: string | undefined;
}

/** `attributes` are the event's attributes as given (not serialized); do not mutate them. */
export type EventHandler = (name: string, attributes: Readonly<Record<string, unknown>>, context: EventContext) => void;

interface Subscription {
  readonly pattern: string;
  readonly handler: EventHandler;
}

let subscriptions: Subscription[] = [];
/** event name → matching handlers, reset on every (un)subscribe. */
let cache = new Map<string, EventHandler[]>();
const NONE: EventHandler[] = [];
/** Longer names are matched every time, not cached: the cache must not hold on to an app's huge strings. */
const CACHED_NAME_MAX = 1024;
const STAR = 42;

/**
 * Whether `name` matches `pattern` (`*` = any run of characters, anchored; every other character
 * literal, line breaks included). A greedy match that backs up to the last `*` only: at worst
 * name × pattern steps. The regular expression it replaces (`^.*a.*b$`) backtracked
 * exponentially: `*a*a*a*a*b` against 200 characters took 15 s, and `.` missed line breaks.
 */
export function matchesPattern(pattern: string, name: string): boolean {
  let p = 0;
  let n = 0;
  let star = -1;
  let resume = 0;
  while (n < name.length) {
    if (p < pattern.length && pattern.charCodeAt(p) === STAR) {
      star = p++;
      resume = n;
    } else if (p < pattern.length && pattern.charCodeAt(p) === name.charCodeAt(n)) {
      p++;
      n++;
    } else if (star >= 0) {
      // The last `*` takes one more character; the rest of the pattern is tried again after it.
      p = star + 1;
      n = ++resume;
    } else return false;
  }
  while (p < pattern.length && pattern.charCodeAt(p) === STAR) p++;
  return p === pattern.length;
}

const noop = (): void => undefined;

/**
 * Calls `handler(name, attributes, context)` synchronously for every event whose name matches
 * `pattern` (`*` = any run of characters, anchored): `llm.*`, `react.*`, `*`. Returns the
 * function that unsubscribes. A pattern that is not a string or a handler that is not a function
 * subscribes nothing (with a debug message): it would have made every matching event throw.
 */
export function subscribe(pattern: string, handler: EventHandler): () => void {
  if (typeof pattern !== 'string' || typeof handler !== 'function') {
    debug('subscribe() needs a string pattern and a function: nothing subscribed');
    return noop;
  }
  const sub: Subscription = { pattern, handler };
  subscriptions = [...subscriptions, sub];
  cache = new Map();
  return () => {
    const next = subscriptions.filter((s) => s !== sub);
    if (next.length !== subscriptions.length) {
      subscriptions = next;
      cache = new Map();
    }
  };
}

export function hasSubscribers(): boolean {
  return subscriptions.length > 0;
}

/** The handlers of an event name; none for a name that is not a string (events are recorded under `event` then). */
export function handlersFor(name: string): EventHandler[] {
  if (subscriptions.length === 0 || typeof name !== 'string') return NONE;
  let hs = cache.get(name);
  if (hs === undefined) {
    hs = [];
    for (const s of subscriptions) if (matchesPattern(s.pattern, name)) hs.push(s.handler);
    if (name.length > CACHED_NAME_MAX) return hs;
    if (cache.size > 10_000) cache = new Map();
    cache.set(name, hs);
  }
  return hs;
}

/** Runs every handler; rethrows the first error after all ran. */
export function dispatch(handlers: EventHandler[], name: string, attributes: Readonly<Record<string, unknown>>, context: EventContext): void {
  let first: { error: unknown } | undefined;
  for (const h of handlers) {
    try {
      h(name, attributes, context);
    } catch (error) {
      first ??= { error };
    }
  }
  if (first) throw first.error;
}
