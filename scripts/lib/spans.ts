/** The daemon benchmarks' spans: realistic LLM generations as the SDK sends them. */
import { closeSync, openSync, writeSync } from 'node:fs';
import { newSpanId, newTraceId } from '@dspy-o11y/proto';

export const BENCH_RESOURCE = { 'service.name': 'bench', 'service.version': '1.0.0' };

export const helloLine = () => JSON.stringify({ v: 1, type: 'hello', resource: BENCH_RESOURCE, sdk: { name: 'dspy-o11y', version: '0.1.0' } });

/**
 * Span lines `from`..`from + n - 1`: a generation with model, usage, cost, input and output;
 * `perTrace` spans per trace (10: children of one parent; 1: each span the root of its own trace,
 * as in the SDK benchmark, where the Langfuse mapping remembers a trace per span).
 */
export function benchSpanLines(n: number, from = 0, perTrace = 10): string[] {
  const out: string[] = [];
  let traceId = newTraceId();
  const t0 = BigInt(Date.now()) * 1_000_000n;
  for (let i = from; i < from + n; i++) {
    if (i % perTrace === 0) traceId = newTraceId();
    const start = t0 + BigInt(i) * 1000n;
    out.push(
      JSON.stringify({
        v: 1, type: 'span', traceId, spanId: newSpanId(), parentSpanId: perTrace > 1 ? newSpanId() : undefined, name: 'llm.generate',
        startTimeUnixNano: start.toString(), endTimeUnixNano: (start + 250_000_000n).toString(), status: { code: 'ok' },
        attributes: {
          'dspy.observation.type': 'generation', 'gen_ai.provider.name': 'openai', 'gen_ai.request.model': 'gpt-4o-mini',
          'gen_ai.request.temperature': 0.2, 'gen_ai.usage.input_tokens': 120 + (i % 50), 'gen_ai.usage.output_tokens': 30, 'gen_ai.usage.total_tokens': 150 + (i % 50),
          'gen_ai.usage.cost': 0.0000366, 'dspy.input': JSON.stringify([{ role: 'user', content: `What is on the menu today? customer ${i}` }]),
          'dspy.output': '"Latte, mocha and a cold brew."', 'dspy.trace.name': 'coffee-order', 'user.id': `u-${i % 100}`,
        },
      }),
    );
  }
  return out;
}

/** Writes a hello and `n` span lines to `file` in slices (a million lines do not fit in one string); returns the bytes written. */
export function writeBenchFile(file: string, n: number): number {
  const fd = openSync(file, 'w');
  let bytes = writeSync(fd, helloLine() + '\n');
  try {
    for (let from = 0; from < n; from += 50_000) {
      bytes += writeSync(fd, benchSpanLines(Math.min(50_000, n - from), from).join('\n') + '\n');
    }
  } finally {
    closeSync(fd);
  }
  return bytes;
}
