/**
 * `npm run demo`: the coffee-shop ReAct agent serves five customers concurrently; the SDK sends
 * every span to a dspy-o11yd it starts, which exports them to Langfuse. Without Langfuse keys the
 * "Langfuse" is a local fake that decodes what it receives, so you can see what Langfuse would get.
 * With OPENAI_API_KEY set (and optionally OPENAI_BASE_URL / DEMO_MODEL) the agent uses a real
 * OpenAI-compatible model through `wrapOpenAI`; otherwise a deterministic fake LLM.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configure, flush, shutdown, subscribe, wrapOpenAI, type LM } from 'dspy-o11y';
import { startFakeLangfuse, type FakeLangfuse, type RecordedSpan as FakeSpan } from 'dspy-o11yd/dist/test/support/fake-langfuse.js';
import { CUSTOMERS, serveCustomers, fakeLLM } from './lib/coffee-shop.js';
import { runDaemon } from './lib/run-daemon.js';

async function realLLM(): Promise<LM | undefined> {
  if (!process.env.OPENAI_API_KEY) return undefined;
  const { default: OpenAI } = await import('openai');
  const client = wrapOpenAI(new OpenAI({ baseURL: process.env.OPENAI_BASE_URL }));
  const model = process.env.DEMO_MODEL ?? 'gpt-4o-mini';
  return async (req) => {
    const res = await client.chat.completions.create({
      model,
      response_format: { type: 'json_object' },
      messages: [
        { role: 'system', content: `You are ${req.signature}, a ${req.module} step. Answer in JSON. ReAct: {"thought","action","action_input"}; action is one of ${JSON.stringify(req.tools?.map((t) => t.name) ?? [])} or "finish" (then add "answer").` },
        { role: 'user', content: JSON.stringify({ input: req.input, trajectory: req.trajectory }) },
      ],
    });
    return { output: JSON.parse(res.choices[0]?.message.content ?? '{}') as Record<string, unknown> };
  };
}

function tree(spans: FakeSpan[], traceId: string): string[] {
  const inTrace = spans.filter((s) => s.traceId === traceId).sort((a, b) => (a.startTimeUnixNano < b.startTimeUnixNano ? -1 : 1));
  const lines: string[] = [];
  const walk = (parent: string | undefined, depth: number) => {
    for (const s of inTrace.filter((x) => x.parentSpanId === parent)) {
      const type = String(s.attributes['langfuse.observation.type'] ?? 'span');
      const ms = Number(BigInt(s.endTimeUnixNano) - BigInt(s.startTimeUnixNano)) / 1e6;
      const usage = s.attributes['langfuse.observation.usage_details'];
      const cost = s.attributes['langfuse.observation.cost_details'];
      lines.push(`${'  '.repeat(depth)}${s.name} [${type}] ${ms.toFixed(1)} ms${usage ? ` usage=${String(usage)}` : ''}${cost ? ` cost=${String(cost)}` : ''}`);
      walk(s.spanId, depth + 1);
    }
  };
  walk(undefined, 1);
  return lines;
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'dspy-o11y-demo-'));
  const keys = process.env.LANGFUSE_PUBLIC_KEY && process.env.LANGFUSE_SECRET_KEY;
  let fake: FakeLangfuse | undefined;
  if (!keys) fake = await startFakeLangfuse({ publicKey: 'pk-lf-demo', secretKey: 'sk-lf-demo' });
  const env = keys
    ? { LANGFUSE_PUBLIC_KEY: process.env.LANGFUSE_PUBLIC_KEY, LANGFUSE_SECRET_KEY: process.env.LANGFUSE_SECRET_KEY, LANGFUSE_HOST: process.env.LANGFUSE_BASE_URL ?? process.env.LANGFUSE_HOST }
    : { LANGFUSE_PUBLIC_KEY: 'pk-lf-demo', LANGFUSE_SECRET_KEY: 'sk-lf-demo', LANGFUSE_HOST: fake!.url };
  const daemon = await runDaemon(join(dir, 'dspy-o11yd.sock'), ['--http', '', '--flush-interval', '200'], env);
  try {
    configure({ endpoint: `unix://${daemon.socket}`, serviceName: 'coffee-shop' });
    let tokens = 0;
    const off = subscribe('llm.generate', (_name, attrs) => (tokens += Number(attrs['gen_ai.usage.total_tokens'] ?? 0)));
    const llm = (await realLLM()) ?? fakeLLM;
    console.log(`Serving ${CUSTOMERS.length} customers concurrently with ${llm === fakeLLM ? 'a deterministic fake LLM' : 'a real model'}…`);
    const t0 = performance.now();
    const results = await serveCustomers(llm);
    const ms = performance.now() - t0;
    off();
    results.forEach((r, i) => console.log(`  ${CUSTOMERS[i]!.id.padEnd(5)} ${CUSTOMERS[i]!.request.padEnd(46)} → ${String(r.output.answer ?? '(no answer)')}`));
    console.log(`Done in ${ms.toFixed(0)} ms; ${tokens} tokens counted by an in-process subscriber.`);
    await flush();
    await shutdown();
    await daemon.stop(); // SIGTERM: the daemon flushes its queue before exiting
    if (fake) {
      const traces = [...new Set(fake.spans.map((s) => s.traceId))];
      console.log(`\ndspy-o11yd delivered ${fake.spans.length} observations in ${traces.length} traces to a local fake Langfuse at ${fake.url}`);
      console.log(`(${fake.requests.length} OTLP request(s), ${fake.requests[0]?.contentType}, ${fake.requests[0]?.contentEncoding ?? 'identity'}). The first trace, as Langfuse would show it:`);
      for (const line of tree(fake.spans, traces[0]!)) console.log(line);
      console.log('\nSet LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY (and LANGFUSE_HOST) to send the same traces to your Langfuse.');
    } else {
      console.log(`\nTraces went to Langfuse at ${env.LANGFUSE_HOST ?? 'https://cloud.langfuse.com'} (look for traces named "coffee-order").`);
    }
  } finally {
    await daemon.stop();
    await fake?.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
