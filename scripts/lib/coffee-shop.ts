/**
 * The coffee-shop agent from DSPy.rb's article, in TypeScript: a ReAct agent with three tools
 * serving customers, through a deterministic fake LLM (the default, for the demo and the tests)
 * or any OpenAI-compatible endpoint (wrapped with `wrapOpenAI`, so every call is a generation).
 */
import { chainOfThought, react, withTrace, type AgentResult, type LM, type LMRequest } from 'dspy-o11y';

export const MENU = { latte: 4.5, mocha: 5, 'cold brew': 4, espresso: 3 } as const;
type Item = keyof typeof MENU;

export const CUSTOMERS = [
  { id: 'ana', request: 'One oat latte to go, please' },
  { id: 'bo', request: 'What is cold today?' },
  { id: 'chen', request: 'Tell me a coffee joke and get me an espresso' },
  { id: 'dee', request: 'A mocha, extra hot' },
  { id: 'eli', request: 'Surprise me' },
];

const tools = [
  { name: 'get_menu', description: 'The menu with prices', run: () => MENU },
  {
    name: 'place_order',
    description: 'Order one item from the menu',
    run: (input: unknown) => {
      const item = (input as { item?: string }).item as Item;
      if (!(item in MENU)) throw new Error(`not on the menu: ${String(item)}`);
      return { item, price: MENU[item], ready_in_minutes: 3 };
    },
  },
  { name: 'tell_joke', description: 'A coffee joke', run: () => 'How are coffee beans like kids? Always grounded.' },
];

/** What a customer wants, decided deterministically from the request text. */
function wants(request: string): Item {
  const r = request.toLowerCase();
  return (Object.keys(MENU) as Item[]).find((k) => r.includes(k)) ?? (r.includes('cold') ? 'cold brew' : 'latte');
}

/** A deterministic LLM: menu → order → (joke) → finish, with token usage like a real model's. */
export const fakeLLM: LM = (req: LMRequest) => {
  const request = String(req.input.request ?? '');
  const usage = { input: 180 + 40 * (req.iteration ?? 1) + request.length, output: 24 + (req.iteration ?? 1) * 3 };
  const base = { usage, model: 'gpt-4o-mini', provider: 'openai' };
  if (req.module === 'ChainOfThought') {
    return { ...base, output: { reasoning: `The customer asked: "${request}". Summarise kindly.`, summary: `Order for: ${request}` } };
  }
  const step = req.iteration ?? 1;
  const item = wants(request);
  const joke = request.toLowerCase().includes('joke');
  if (step === 1) return { ...base, output: { thought: 'Check the menu first', action: 'get_menu', action_input: {} } };
  if (step === 2) return { ...base, output: { thought: `Order a ${item}`, action: 'place_order', action_input: { item } } };
  if (step === 3 && joke) return { ...base, output: { thought: 'They asked for a joke', action: 'tell_joke', action_input: {} } };
  return { ...base, output: { thought: 'Done', action: 'finish', answer: `Your ${item} will be ready in 3 minutes.` } };
};

export const coffeeAgent = (llm: LM = fakeLLM) => react('CoffeeShopAgent', { llm, tools, maxIterations: 5 });
export const summarize = (llm: LM = fakeLLM) => chainOfThought('SummarizeOrder', { llm });

/** Serve every customer concurrently, each in a trace of their own. */
export async function serveCustomers(llm: LM = fakeLLM, customers = CUSTOMERS): Promise<AgentResult[]> {
  const agent = coffeeAgent(llm);
  return Promise.all(
    customers.map((c) =>
      withTrace({ name: 'coffee-order', userId: c.id, sessionId: `shift-1-${c.id}`, tags: ['demo', 'coffee'], metadata: { shop: 'downtown' } }, () =>
        agent({ request: c.request }),
      ),
    ),
  );
}
