/**
 * Langfuse's own JS SDK (`@langfuse/otel` LangfuseSpanProcessor + `@langfuse/tracing`) with its
 * base URL on a real dspy-o11yd child process: it posts to Langfuse's path
 * (`/api/public/otel/v1/traces`, Basic auth with the project's keys), and its spans reach the fake
 * Langfuse with their ids and `langfuse.*` attributes as the SDK set them. Basic credentials of
 * another project are refused (401), never exported to the daemon's project; with
 * `--ingest-token`, the daemon's Langfuse keys or the bearer token pass, nothing else. The rest of
 * Langfuse's API answers 404 with a JSON message.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { context } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { LangfuseSpanProcessor } from '@langfuse/otel';
import { propagateAttributes, setLangfuseTracerProvider, startObservation } from '@langfuse/tracing';
import type { FakeLangfuse, RecordedSpan } from 'dspy-o11yd/dist/test/support/fake-langfuse.js';
import { useLangfuseDaemon, type DaemonProcess } from 'dspy-o11yd/dist/test/support/daemon-process.js';
import { AlsContextManager } from '../lib/als-context.js';

const KEYS = { LANGFUSE_PUBLIC_KEY: 'pk-lf-sidecar', LANGFUSE_SECRET_KEY: 'sk-lf-sidecar-secret' };
const TRACES_PATH = '/api/public/otel/v1/traces';
const basic = (publicKey: string, secretKey: string) => `Basic ${Buffer.from(`${publicKey}:${secretKey}`).toString('base64')}`;

// propagateAttributes needs a context manager, as in any app set up by Langfuse's docs.
context.setGlobalContextManager(new AlsContextManager().enable());

/** A tracer provider whose spans go through LangfuseSpanProcessor to `baseUrl`; `sent` keeps what the SDK ended. */
function langfuseSdk(baseUrl: string, keys: { publicKey: string; secretKey: string }) {
  const processor = new LangfuseSpanProcessor({ ...keys, baseUrl, environment: 'staging', mediaUploadEnabled: false });
  const sent = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [processor, new SimpleSpanProcessor(sent)] });
  setLangfuseTracerProvider(provider);
  return {
    sent,
    flush: () => processor.forceFlush(),
    shutdown: async () => {
      await provider.shutdown();
      setLangfuseTracerProvider(null);
    },
  };
}

/** A parent span and a generation with model and usage, as an app instrumented with Langfuse records them. */
function run(user: string): { rootId: string; generationId: string; traceId: string } {
  return propagateAttributes({ userId: user, sessionId: 'session-7', traceName: 'support-answer', tags: ['sidecar'] }, () => {
    const root = startObservation('answer-question', { input: { question: 'Where is my order?' } }, { asType: 'agent' });
    const generation = root.startObservation(
      'llm-call',
      { model: 'gpt-4o-mini', modelParameters: { temperature: 0.2 }, input: [{ role: 'user', content: 'Where is my order?' }] },
      { asType: 'generation' },
    );
    generation.update({ output: { role: 'assistant', content: 'It ships tomorrow.' }, usageDetails: { input: 12, output: 5, total: 17 }, costDetails: { total: 0.00021 } });
    generation.end();
    root.update({ output: 'It ships tomorrow.' });
    root.end();
    return { rootId: root.id, generationId: generation.id, traceId: root.traceId };
  });
}

const ns = (t: ReadableSpan['startTime']) => (BigInt(t[0]) * 1_000_000_000n + BigInt(t[1])).toString();
const langfuseKeys = (attrs: Record<string, unknown>) => Object.keys(attrs).filter((k) => k.startsWith('langfuse.')).sort();

/** The span as the fake Langfuse received it equals the span as the SDK ended it: ids, name, times, every attribute. */
function assertArrivedAsSent(got: RecordedSpan | undefined, sent: ReadableSpan): asserts got is RecordedSpan {
  assert.ok(got, `span ${sent.name} arrived`);
  assert.equal(got.traceId, sent.spanContext().traceId);
  assert.equal(got.parentSpanId, sent.parentSpanContext?.spanId);
  assert.equal(got.name, sent.name);
  assert.equal(got.startTimeUnixNano, ns(sent.startTime));
  assert.equal(got.endTimeUnixNano, ns(sent.endTime));
  assert.deepEqual(langfuseKeys(got.attributes), langfuseKeys(sent.attributes), `${sent.name}: the same langfuse.* keys, none added or lost`);
  for (const [k, v] of Object.entries(sent.attributes)) assert.deepEqual(got.attributes[k], v, `${sent.name}: ${k}`);
}

async function post(url: string, headers: Record<string, string>, method = 'POST'): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url, { method, headers: { 'content-type': 'application/json', ...headers }, body: method === 'POST' ? '{}' : undefined });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

const received = (d: DaemonProcess) => d.metric('dspy_o11yd_records_received_total', { transport: 'otlp', type: 'span' });

describe("Langfuse's JS SDK → dspy-o11yd → Langfuse", () => {
  let fake: FakeLangfuse;
  let daemon: DaemonProcess;
  useLangfuseDaemon(KEYS, ['--socket', '', '--http', '127.0.0.1:0', '--flush-interval', '20'], (f, d) => ((fake = f), (daemon = d)));

  test('with the daemon\'s keys: the parent span and the generation arrive with their ids and langfuse.* attributes, counted as otlp', async () => {
    const sdk = langfuseSdk(daemon.httpUrl, { publicKey: KEYS.LANGFUSE_PUBLIC_KEY, secretKey: KEYS.LANGFUSE_SECRET_KEY });
    const ids = run('user-42');
    await sdk.flush();
    await fake.waitForSpans(2);
    const sent = sdk.sent.getFinishedSpans();
    assert.equal(sent.length, 2);
    const root = fake.span(ids.rootId);
    const generation = fake.span(ids.generationId);
    assertArrivedAsSent(root, sent.find((s) => s.spanContext().spanId === ids.rootId)!);
    assertArrivedAsSent(generation, sent.find((s) => s.spanContext().spanId === ids.generationId)!);
    // What the comparison covers, spelled out: the trace, the tree, the generation's model and usage.
    assert.equal(root.traceId, ids.traceId);
    assert.equal(generation.traceId, ids.traceId);
    assert.equal(root.parentSpanId, undefined);
    assert.equal(generation.parentSpanId, ids.rootId);
    assert.equal(generation.attributes['langfuse.observation.type'], 'generation');
    assert.equal(generation.attributes['langfuse.observation.model.name'], 'gpt-4o-mini');
    assert.deepEqual(JSON.parse(String(generation.attributes['langfuse.observation.usage_details'])), { input: 12, output: 5, total: 17 });
    assert.deepEqual(JSON.parse(String(generation.attributes['langfuse.observation.cost_details'])), { total: 0.00021 });
    assert.equal(root.attributes['langfuse.observation.type'], 'agent');
    for (const s of [root, generation]) {
      assert.equal(s.attributes['user.id'], 'user-42');
      assert.equal(s.attributes['langfuse.trace.name'], 'support-answer');
      assert.equal(s.attributes['langfuse.environment'], 'staging');
    }
    // Sent by the daemon (its queue, batching and retries), not by the SDK directly.
    assert.equal(fake.requests[root.requestIndex]!.headers['x-langfuse-sdk-name'], 'dspy-o11yd');
    assert.equal(await received(daemon), 2);
    await sdk.shutdown();
  });

  test("another project's keys: 401 with a JSON message naming no key, and nothing of it reaches the daemon's project", async () => {
    const before = await received(daemon);
    const exportsBefore = fake.spans.length;
    const sdk = langfuseSdk(daemon.httpUrl, { publicKey: 'pk-lf-other-project', secretKey: 'sk-lf-other-secret' });
    run('user-other');
    // The SDK's exporter reports the refusal: a 401, which it does not retry.
    await assert.rejects(sdk.flush(), (err: { code?: unknown }) => err.code === 401);
    assert.equal(sdk.sent.getFinishedSpans().length, 2, 'the SDK did try to export');
    await sdk.shutdown();
    assert.equal(await received(daemon), before, 'refused before the queue');

    const refused = await post(daemon.httpUrl + TRACES_PATH, { authorization: basic('pk-lf-other-project', 'sk-lf-other-secret') });
    assert.equal(refused.status, 401);
    assert.match(String(refused.body.message), /not the daemon's LANGFUSE_PUBLIC_KEY: dspy-o11yd exports to another Langfuse project/);
    for (const secret of [KEYS.LANGFUSE_PUBLIC_KEY, KEYS.LANGFUSE_SECRET_KEY, 'pk-lf-other-project', 'sk-lf-other-secret']) {
      assert.ok(!JSON.stringify(refused.body).includes(secret), `the answer does not echo ${secret}`);
    }
    // The daemon's public key with a wrong secret: refused too, as Langfuse would.
    const wrongSecret = await post(daemon.httpUrl + TRACES_PATH, { authorization: basic(KEYS.LANGFUSE_PUBLIC_KEY, 'sk-lf-guess') });
    assert.equal(wrongSecret.status, 401);
    assert.match(String(wrongSecret.body.message), /wrong secret key/);
    // No credentials and no --ingest-token: accepted, like /v1/traces.
    assert.equal((await post(daemon.httpUrl + TRACES_PATH, {})).status, 200);
    // Whatever the daemon was still delivering has gone out: none of it came from the refused SDK.
    await daemon.eventually(async () => {
      const { spans } = await daemon.status();
      assert.equal(spans.queued + spans.inFlight, 0);
    });
    assert.equal(fake.spans.length, exportsBefore);
  });

  test("the rest of Langfuse's API (prompts, scores, datasets) is 404 with a JSON message pointing at the Langfuse host", async () => {
    const auth = { authorization: basic(KEYS.LANGFUSE_PUBLIC_KEY, KEYS.LANGFUSE_SECRET_KEY) };
    for (const [method, path] of [
      ['GET', '/api/public/v2/prompts/support-answer'],
      ['POST', '/api/public/scores'],
      ['GET', '/api/public/datasets/faq'],
      ['GET', TRACES_PATH],
    ] as const) {
      const r = await post(daemon.httpUrl + path, auth, method);
      assert.equal(r.status, 404, `${method} ${path}`);
      assert.match(String(r.body.message), /takes only traces from Langfuse's SDKs .*to the Langfuse host itself/, `${method} ${path}`);
    }
  });
});

describe("Langfuse's JS SDK → dspy-o11yd with --ingest-token", () => {
  let fake: FakeLangfuse;
  let daemon: DaemonProcess;
  const token = 'lf-sidecar-ingest-token-5678';
  useLangfuseDaemon(KEYS, ['--socket', '', '--http', '127.0.0.1:0', '--flush-interval', '20', '--ingest-token', token], (f, d) => ((fake = f), (daemon = d)));
  let url: string;
  before(() => (url = daemon.httpUrl + TRACES_PATH));
  after(() => setLangfuseTracerProvider(null));

  test("the SDK with the daemon's keys delivers (Basic in place of the token)", async () => {
    const sdk = langfuseSdk(daemon.httpUrl, { publicKey: KEYS.LANGFUSE_PUBLIC_KEY, secretKey: KEYS.LANGFUSE_SECRET_KEY });
    const ids = run('user-token');
    await sdk.flush();
    await fake.waitForSpans(2);
    assertArrivedAsSent(fake.span(ids.generationId), sdk.sent.getFinishedSpans().find((s) => s.spanContext().spanId === ids.generationId)!);
    await sdk.shutdown();
  });

  test('the bearer token passes; no credentials, a wrong token, a wrong secret or a Basic token do not', async () => {
    assert.equal((await post(url, { authorization: `Bearer ${token}` })).status, 200);
    assert.equal((await post(url, { authorization: basic(KEYS.LANGFUSE_PUBLIC_KEY, KEYS.LANGFUSE_SECRET_KEY) })).status, 200);
    for (const headers of [{} as Record<string, string>, { authorization: 'Bearer not-the-token' }, { authorization: basic(KEYS.LANGFUSE_PUBLIC_KEY, 'sk-lf-guess') }, { authorization: basic(token, '') }]) {
      const r = await post(url, headers);
      assert.equal(r.status, 401, JSON.stringify(headers));
      assert.equal(typeof r.body.message, 'string', 'answered as Langfuse does: {"message": …}');
    }
    // The daemon's own routes take the token only.
    assert.equal((await post(`${daemon.httpUrl}/v1/traces`, { authorization: basic(KEYS.LANGFUSE_PUBLIC_KEY, KEYS.LANGFUSE_SECRET_KEY) })).status, 401);
    assert.equal((await post(`${daemon.httpUrl}/v1/traces`, { authorization: `Bearer ${token}` })).status, 200);
  });
});
