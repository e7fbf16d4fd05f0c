/**
 * In-process, synchronous event subscribers (DSPy.rb's `subscribe`): `*` matches any run of
 * characters, patterns are anchored. Every handler of an event runs even if one throws; the
 * first error is then rethrown to the code that emitted the event — the one deliberate way for
 * telemetry to throw into the app (a token budget stopping a run).
 */

export interface EventContext {
  traceId: string | undefined;
  spanId: string | undefined;
}

/** `attributes` are the event's attributes as given (not serialized); do not mutate them. */
export type EventHandler = (name: string, attributes: Readonly<Record<string, unknown>>, context: EventContext) => void;

interface Subscription {
  readonly pattern: string;
  readonly re: RegExp;
  readonly handler: EventHandler;
}

let subscriptions: Subscription[] = [];
/** event name → matching handlers, reset on every (un)subscribe. */
let cache = new Map<string, EventHandler[]>();
const NONE: EventHandler[] = [];

export function patternToRegExp(pattern: string): RegExp {
  const body = pattern
    .split('*')
    .map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
    .join('.*');
  return new RegExp(`^${body}$`);
}

/**
 * Calls `handler(name, attributes, context)` synchronously for every event whose name matches
 * `pattern` (`*` = any run of characters, anchored): `llm.*`, `react.*`, `*`. Returns the
 * function that unsubscribes.
 */
export function subscribe(pattern: string, handler: EventHandler): () => void {
  const sub: Subscription = { pattern, re: patternToRegExp(pattern), handler };
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

export function handlersFor(name: string): EventHandler[] {
  if (subscriptions.length === 0) return NONE;
  let hs = cache.get(name);
  if (hs === undefined) {
    hs = [];
    for (const s of subscriptions) if (s.re.test(name)) hs.push(s.handler);
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
