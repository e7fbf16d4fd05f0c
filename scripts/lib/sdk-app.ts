/**
 * The "app" of the SDK benchmark, run as its own process so that its CPU time, RSS and event-loop
 * delay are its own. argv[2] is a JSON {@link AppConfig}. It sets its contender up with that
 * SDK's default settings, prints "ready", waits for "go" on stdin, then emits `spans` identical
 * LLM generations in bursts of `burst` per macrotask (setImmediate, back to back: an app under
 * load), flushes the way the SDK's docs say, and prints one line
 * `result {json}` ({@link AppResult}); then it shuts the SDK down and exits.
 *
 * Measured from "go" to the end of the flush: process.cpuUsage() (user + system); from "go" to
 * the last burst: monitorEventLoopDelay with a 10 ms resolution, reported as how late that timer
 * fired (the recorded interval minus the 10 ms), i.e. how long a callback that became ready had to wait.
 * Peak RSS is process.resourceUsage().maxRSS (the whole life of the process).
 */
import { createConnection, type Socket } from 'node:net';
import { newSpanId, newTraceId, nowUnixNano } from '@dspy-o11y/proto';
import { measureRun, type Contestant } from './app-measure.js';

/** `dspy-o11y-direct`: this SDK writing to the floor's discard reader instead of a daemon (diagnostic: the SDK's cost when the daemon keeps up). */
export type Contender = 'floor' | 'dspy-o11y' | 'otel' | 'langfuse' | 'dspy-o11y-direct';

export interface AppConfig {
  contender: Contender;
  spans: number;
  burst: number;
  /** floor, dspy-o11y-direct: the discard reader's socket; dspy-o11y: the daemon's socket; otel/langfuse: the backend's base URL. */
  target: string;
}

export interface AppResult {
  contender: Contender;
  spans: number;
  /** CPU (user + system) from "go" to the end of the flush, µs. */
  cpuUs: number;
  /** Of which emission (the bursts), µs; the rest is the flush. */
  emitCpuUs: number;
  wallMs: number;
  emitWallMs: number;
  flushOk: boolean;
  eld: { p50Ms: number; p99Ms: number; maxMs: number; samples: number };
  /** process.resourceUsage().maxRSS, and RSS at "ready", in bytes. */
  peakRss: number;
  readyRss: number;
  /** Involuntary context switches in the window: the OS took the CPU away (other load on the machine). */
  preempted: number;
  /** process.hrtime in µs at "go" and at the end of the flush (same clock as a .cpuprofile). */
  windowUs: [number, number];
  /** SDK-reported counters, where the SDK has them. */
  stats?: unknown;
}

// ---------------------------------------------------------------------------------------------
// The span every contender creates: one LLM call of a coffee-shop assistant, 12 attributes.

export const MODEL = 'gpt-4o-mini';
export const PROVIDER = 'openai';
export const TEMPERATURE = 0.2;
export const OUTPUT = 'Latte, mocha and a cold brew.';
export const TRACE_NAME = 'coffee-order';
export const COST_USD = 0.0000366;

/** The chat input, ~200 characters of JSON. */
export function messages(i: number): { role: string; content: string }[] {
  return [
    { role: 'system', content: 'You are a barista. Answer in one short sentence.' },
    { role: 'user', content: `What is on the menu today? I am customer ${i} and would like something warm with oat milk.` },
  ];
}
export const inputTokens = (i: number) => 120 + (i % 50);
export const OUTPUT_TOKENS = 30;
export const userId = (i: number) => `u-${i % 100}`;

// ---------------------------------------------------------------------------------------------

/** The floor: JSON.stringify of the same span + one batched socket write per tick, nothing else. */
async function floor(socketPath: string): Promise<Contestant> {
  const socket: Socket = await new Promise((resolve, reject) => {
    const s = createConnection(socketPath, () => resolve(s));
    s.once('error', reject);
  });
  let pending = '';
  let scheduled = false;
  const write = () => {
    scheduled = false;
    if (pending) socket.write(pending);
    pending = '';
  };
  return {
    emit(i) {
      const start = nowUnixNano();
      const input = inputTokens(i);
      const record = {
        traceId: newTraceId(),
        spanId: newSpanId(),
        name: 'llm.generate',
        startTimeUnixNano: start,
        endTimeUnixNano: nowUnixNano(),
        attributes: {
          'dspy.observation.type': 'generation',
          'gen_ai.request.model': MODEL,
          'gen_ai.provider.name': PROVIDER,
          'gen_ai.request.temperature': TEMPERATURE,
          'gen_ai.usage.input_tokens': input,
          'gen_ai.usage.output_tokens': OUTPUT_TOKENS,
          'gen_ai.usage.total_tokens': input + OUTPUT_TOKENS,
          'gen_ai.usage.cost': COST_USD,
          'dspy.input': JSON.stringify(messages(i)),
          'dspy.output': JSON.stringify(OUTPUT),
          'dspy.trace.name': TRACE_NAME,
          'user.id': userId(i),
        },
      };
      pending += JSON.stringify(record) + '\n';
      if (!scheduled) {
        scheduled = true;
        setImmediate(write);
      }
    },
    flush() {
      write();
      // Writes complete in order: the callback of an empty write means everything before is out.
      return new Promise((resolve) => socket.write('', (err) => resolve(!err)));
    },
    async shutdown() {
      await new Promise<void>((resolve) => socket.end(resolve));
    },
  };
}

/** This SDK, as an app uses it: a trace per request, one generation in it. */
async function ours(socketPath: string): Promise<Contestant> {
  const o11y = await import('dspy-o11y');
  o11y.configure({ endpoint: `unix://${socketPath}`, serviceName: 'bench' });
  return {
    emit(i) {
      o11y.withTrace({ name: TRACE_NAME, userId: userId(i) }, () =>
        o11y.generation('llm.generate', { model: MODEL, provider: PROVIDER, parameters: { temperature: TEMPERATURE }, input: messages(i) }, (g) => {
          g.setUsage({ input: inputTokens(i), output: OUTPUT_TOKENS });
          g.setOutput(OUTPUT);
        }),
      );
    },
    flush: () => o11y.flush(),
    async shutdown() {
      await o11y.shutdown();
    },
    stats: () => o11y.sdkStats(),
  };
}

/** What `NodeTracerProvider.register()` does besides the provider: an ALS context manager. */
async function registerOtel(provider: import('@opentelemetry/api').TracerProvider): Promise<void> {
  const api = await import('@opentelemetry/api');
  const { AlsContextManager } = await import('./als-context.js');
  api.context.setGlobalContextManager(new AlsContextManager().enable());
  api.trace.setGlobalTracerProvider(provider);
}

/** OpenTelemetry JS: BasicTracerProvider + BatchSpanProcessor + OTLP/HTTP (JSON) exporter, defaults. */
async function otel(backendUrl: string): Promise<Contestant> {
  const { BasicTracerProvider, BatchSpanProcessor } = await import('@opentelemetry/sdk-trace-base');
  const { OTLPTraceExporter } = await import('@opentelemetry/exporter-trace-otlp-http');
  const { resourceFromAttributes } = await import('@opentelemetry/resources');
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': 'bench' }),
    spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url: `${backendUrl}/v1/traces` }))],
  });
  await registerOtel(provider);
  const tracer = provider.getTracer('bench');
  return {
    emit(i) {
      const span = tracer.startSpan('llm.generate', {
        attributes: {
          'langfuse.observation.type': 'generation',
          'langfuse.trace.name': TRACE_NAME,
          'user.id': userId(i),
          'gen_ai.request.model': MODEL,
          'gen_ai.provider.name': PROVIDER,
          'gen_ai.request.temperature': TEMPERATURE,
          'langfuse.observation.input': JSON.stringify(messages(i)),
        },
      });
      const input = inputTokens(i);
      span.setAttributes({
        'gen_ai.usage.input_tokens': input,
        'gen_ai.usage.output_tokens': OUTPUT_TOKENS,
        'gen_ai.usage.total_tokens': input + OUTPUT_TOKENS,
        'gen_ai.usage.cost': COST_USD,
        'langfuse.observation.output': JSON.stringify(OUTPUT),
      });
      span.end();
    },
    async flush() {
      await provider.forceFlush();
      return true;
    },
    shutdown: () => provider.shutdown(),
  };
}

/** Langfuse JS SDK v5: LangfuseSpanProcessor on a registered provider, startObservation + propagateAttributes. */
async function langfuse(backendUrl: string): Promise<Contestant> {
  const { BasicTracerProvider } = await import('@opentelemetry/sdk-trace-base');
  const { LangfuseSpanProcessor } = await import('@langfuse/otel');
  const processor = new LangfuseSpanProcessor({ publicKey: 'pk-lf-bench', secretKey: 'sk-lf-bench', baseUrl: backendUrl });
  const provider = new BasicTracerProvider({ spanProcessors: [processor] });
  await registerOtel(provider);
  const { startObservation, propagateAttributes } = await import('@langfuse/tracing');
  return {
    emit(i) {
      propagateAttributes({ traceName: TRACE_NAME, userId: userId(i) }, () => {
        const g = startObservation(
          'llm.generate',
          { model: MODEL, modelParameters: { temperature: TEMPERATURE }, input: messages(i), metadata: { provider: PROVIDER } },
          { asType: 'generation' },
        );
        const input = inputTokens(i);
        g.update({ output: OUTPUT, usageDetails: { input, output: OUTPUT_TOKENS, total: input + OUTPUT_TOKENS }, costDetails: { total: COST_USD } });
        g.end();
      });
    },
    async flush() {
      await processor.forceFlush();
      return true;
    },
    shutdown: () => provider.shutdown(),
  };
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const cfg = JSON.parse(process.argv[2]!) as AppConfig;
  const make = { floor, 'dspy-o11y': ours, 'dspy-o11y-direct': ours, otel, langfuse }[cfg.contender];
  const c = await make(cfg.target);
  const readyRss = process.memoryUsage().rss;
  process.stdout.write('ready\n');
  await new Promise<void>((resolve) => process.stdin.once('data', () => resolve()));
  process.stdin.pause();

  const result = await measureRun(c, cfg, readyRss);
  process.stdout.write(`result ${JSON.stringify(result)}\n`);
  try {
    await c.shutdown();
  } catch {
    /* the measurement is done */
  }
  process.exit(0);
}

await main();
