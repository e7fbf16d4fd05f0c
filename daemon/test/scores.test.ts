/**
 * Scores: `score` records over the Unix socket and HTTP reach the fake Langfuse's
 * `POST /api/public/scores` with Langfuse's body and the Basic auth of the span exporter; a 5xx
 * or 429 is retried with the same id (no duplicate), a 4xx is permanent; invalid score records
 * are counted; other exporters count and drop scores. Units: ids, body conversion, the bounded
 * queue and the sender's drop accounting.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { parseLine, type ScoreRecord } from '@dspy-o11y/proto';
import { scoreId, ScoreSender, toLangfuseScore, unsentScore, type ScoreSenderOptions } from '../src/export/scores.js';
import type { Resource } from '../src/model.js';
import { createLogger } from '../src/log.js';
import { Stats } from '../src/ops/stats.js';
import { VERSION } from '../src/version.js';
import { BoundedQueue } from '../src/queue/bounded-queue.js';
import { startFakeLangfuse, type FakeLangfuse } from './support/fake-langfuse.js';
import { postIngest, sendOverSocket, startDaemonProcess, tempDir, useLangfuseDaemon, type DaemonProcess } from './support/daemon-process.js';

/** Runs `body` with a ScoreSender to a fresh fake Langfuse (no retries unless `options` say so), closed after. */
async function withSender(options: Partial<ScoreSenderOptions>, body: (sender: ScoreSender, fake: FakeLangfuse, stats: Stats) => Promise<void>): Promise<void> {
  const fake = await startFakeLangfuse();
  const stats = new Stats();
  const sender = new ScoreSender({ host: fake.url, publicKey: fake.publicKey, secretKey: fake.secretKey, sdkVersion: 'test', requestTimeoutMs: 5_000, maxRetries: 0, ...options }, stats, createLogger('silent'));
  try {
    await body(sender, fake, stats);
  } finally {
    await fake.close();
  }
}

const KEYS = { LANGFUSE_PUBLIC_KEY: 'pk-lf-scores', LANGFUSE_SECRET_KEY: 'sk-lf-scores-secret' };
const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN = '00f067aa0ba902b7';
const score = (fields: Partial<ScoreRecord> & { name: string; value: ScoreRecord['value'] }): ScoreRecord => ({ v: 1, type: 'score', ...fields });
const NO_RESOURCE = { attributes: {} };

describe('scores through the real CLI to Langfuse', () => {
  let fake: FakeLangfuse;
  let daemon: DaemonProcess;
  const tmp = tempDir();
  const socket = join(tmp.dir, 'd.sock');

  useLangfuseDaemon(KEYS, ['--socket', socket, '--http', '127.0.0.1:0', '--flush-interval', '50'], (f, d) => ((fake = f), (daemon = d)), { socketPath: socket });
  after(() => tmp.cleanup());

  test('a score over the socket arrives with the right body, auth and the hello environment', async () => {
    const record = score({ traceId: TRACE, observationId: SPAN, name: 'helpfulness', value: 0.9, dataType: 'NUMERIC', comment: 'good answer', timeUnixNano: '1732700000123456789' });
    await sendOverSocket(socket, [
      JSON.stringify({ v: 1, type: 'hello', resource: { 'service.name': 'scorer', 'deployment.environment.name': 'Production' } }),
      JSON.stringify(record),
    ]);
    const [stored] = await fake.waitForScores(1);
    assert.deepEqual(stored!.body, {
      id: scoreId(record),
      traceId: TRACE,
      observationId: SPAN,
      name: 'helpfulness',
      value: 0.9,
      dataType: 'NUMERIC',
      comment: 'good answer',
      timestamp: '2024-11-27T09:33:20.123Z',
      environment: 'production',
    });
    const request = fake.scoreRequests.at(-1)!;
    assert.equal(request.status, 200);
    assert.equal(request.headers.authorization, fake.authorization);
    assert.match(String(request.headers['content-type']), /^application\/json/);
    assert.equal(request.headers['x-langfuse-sdk-name'], 'dspy-o11yd');
    // Named as the span requests are: a WAF in front of Langfuse (AWS WAF's NoUserAgent_HEADER rule)
    // refuses requests without a User-Agent, which would refuse the scores and pass the spans.
    assert.equal(request.headers['user-agent'], `dspy-o11yd/${VERSION}`);
  });

  test('a score naming both a trace and a session (what the SDK sends for score({ sessionId, observationId }) in a span) reaches Langfuse as the trace score', async () => {
    fake.reset();
    const record = score({ traceId: TRACE, observationId: SPAN, sessionId: 'session-9', name: 'both', value: 1 });
    await sendOverSocket(socket, [JSON.stringify(record)]);
    const [stored] = await fake.waitForScores(1);
    const body = stored!.body as Record<string, unknown>;
    assert.equal(body.traceId, TRACE);
    assert.equal(body.sessionId, undefined);
    assert.equal(fake.scoreRequests.at(-1)!.status, 200, 'Langfuse refuses a body with both (400)');
  });

  test('scores over HTTP: boolean and categorical values, session scores, ids given or derived', async () => {
    fake.reset();
    const correct = score({ traceId: TRACE, name: 'correct', value: true });
    const sentiment = score({ id: 'my-own-id', sessionId: 'session-1', name: 'sentiment', value: 'positive' });
    const res = await postIngest(daemon.httpUrl, JSON.stringify([correct, sentiment]), 'application/json');
    assert.deepEqual({ status: res.status, accepted: res.body.accepted }, { status: 202, accepted: 2 });
    await fake.waitForScores(2);
    const byName = new Map(fake.scores.map((s) => [(s.body as { name: string }).name, s.body]));
    assert.deepEqual(byName.get('correct'), { id: scoreId(correct), traceId: TRACE, name: 'correct', value: 1, dataType: 'BOOLEAN' });
    assert.deepEqual(byName.get('sentiment'), { id: 'my-own-id', sessionId: 'session-1', name: 'sentiment', value: 'positive' });
    // Sent one score per request, never more than one in flight (one connection).
    assert.equal(fake.scoreRequests.length, 2);
  });

  test('429 and 500 are retried with the same id: one score in Langfuse, no duplicate', async () => {
    fake.reset();
    fake.failScores({ status: 429, retryAfterSeconds: 0 });
    fake.failScores({ status: 500 });
    const record = score({ traceId: TRACE, name: 'retried', value: 3 });
    const exportedBefore = await daemon.metric('dspy_o11yd_scores_exported_total');
    await postIngest(daemon.httpUrl, JSON.stringify(record), 'application/json');
    await fake.waitForScores(1);
    assert.deepEqual(fake.scoreRequests.map((r) => r.status), [429, 500, 200]);
    const ids = fake.scoreRequests.map((r) => (r.body as { id: string }).id);
    assert.deepEqual(ids, [scoreId(record), scoreId(record), scoreId(record)]);
    assert.equal(fake.scores.length, 1);
    await daemon.eventually(async () => assert.equal(await daemon.metric('dspy_o11yd_scores_exported_total'), exportedBefore + 1));

    // The same record sent again gets the same id: Langfuse upserts, still one score.
    await postIngest(daemon.httpUrl, JSON.stringify(record), 'application/json');
    await daemon.eventually(() => assert.equal(fake.scoreRequests.length, 4));
    assert.equal(fake.scores.length, 1);
  });

  test('a 4xx answer is permanent: the score is dropped as rejected after one attempt', async () => {
    fake.reset();
    fake.failScores({ status: 400 });
    await postIngest(daemon.httpUrl, JSON.stringify(score({ traceId: TRACE, name: 'refused', value: 1 })), 'application/json');
    await daemon.eventually(async () => assert.equal(await daemon.metric('dspy_o11yd_scores_dropped_total', { reason: 'rejected' }), 1));
    assert.equal(fake.scoreRequests.length, 1);
    assert.equal(fake.scores.length, 0);
  });

  test('invalid score records are counted: by the schema (records_invalid_total) and by Langfuse rules (scores_dropped_total)', async () => {
    fake.reset();
    const res = await postIngest(
      daemon.httpUrl,
      JSON.stringify([
        { v: 1, type: 'score', traceId: TRACE, value: 1 },
        { v: 1, type: 'score', traceId: 'not-hex', name: 'n', value: 1 },
        { v: 1, type: 'score', traceId: TRACE, name: 'n', value: { nested: true } },
        { v: 1, type: 'score', name: 'no-target', value: 1 },
        { v: 1, type: 'score', traceId: TRACE, name: 'mismatch', value: 'text', dataType: 'NUMERIC' },
      ]),
      'application/json',
    );
    assert.deepEqual({ accepted: res.body.accepted, rejected: res.body.rejected }, { accepted: 2, rejected: 3 });
    assert.equal(await daemon.metric('dspy_o11yd_records_invalid_total', { transport: 'http', reason: 'invalid_name' }), 1);
    assert.equal(await daemon.metric('dspy_o11yd_records_invalid_total', { transport: 'http', reason: 'invalid_trace_id' }), 1);
    assert.equal(await daemon.metric('dspy_o11yd_records_invalid_total', { transport: 'http', reason: 'invalid_value' }), 1);
    assert.equal(await daemon.metric('dspy_o11yd_scores_dropped_total', { reason: 'invalid' }), 2);
    assert.equal(fake.scoreRequests.length, 0);
  });

  test('status and metrics balance: received = exported + dropped + queued + in flight', async () => {
    await daemon.eventually(async () => {
      const s = await daemon.status();
      const dropped = Object.values(s.scores.dropped).reduce((a, b) => a + b, 0);
      assert.equal(s.scores.received, s.scores.exported + dropped + s.scores.queued + s.scores.inFlight);
      assert.equal(s.scores.received, 9);
      assert.equal(s.scores.exported, 6);
      assert.equal(s.scores.state, 'idle');
      assert.equal(await daemon.metric('dspy_o11yd_scores_received_total'), 9);
    });
  });

  test('Langfuse refusing our credentials on a score (401) makes /readyz 503 with the reason, as for spans, until a score is delivered', async () => {
    fake.reset();
    assert.equal((await fetch(`${daemon.httpUrl}/readyz`)).status, 200);
    fake.failScores({ status: 401 });
    await postIngest(daemon.httpUrl, JSON.stringify(score({ traceId: TRACE, name: 'bad-keys', value: 1 })), 'application/json');
    await daemon.eventually(async () => assert.equal(await daemon.metric('dspy_o11yd_scores_dropped_total', { reason: 'rejected' }), 2));
    const refused = await fetch(`${daemon.httpUrl}/readyz`);
    assert.equal(refused.status, 503);
    assert.match(((await refused.json()) as { reason: string }).reason, /401/);
    const status = await daemon.status();
    assert.equal(status.ready, false);
    assert.ok(!JSON.stringify(status).includes(KEYS.LANGFUSE_SECRET_KEY));
    // Delivered again (the keys work): ready again.
    await postIngest(daemon.httpUrl, JSON.stringify(score({ traceId: TRACE, name: 'good-keys', value: 1 })), 'application/json');
    await fake.waitForScores(1);
    await daemon.eventually(async () => assert.equal((await fetch(`${daemon.httpUrl}/readyz`)).status, 200));
  });

  test("a proxy's 407 on a score makes /readyz 503 with a reason naming the proxy, not the exporter", async () => {
    fake.reset();
    fake.failScores({ status: 407 });
    const rejected = (await daemon.metric('dspy_o11yd_scores_dropped_total', { reason: 'rejected' })) ?? 0;
    await postIngest(daemon.httpUrl, JSON.stringify(score({ traceId: TRACE, name: 'proxy-refused', value: 1 })), 'application/json');
    await daemon.eventually(async () => assert.equal(await daemon.metric('dspy_o11yd_scores_dropped_total', { reason: 'rejected' }), rejected + 1));
    const refused = await fetch(`${daemon.httpUrl}/readyz`);
    assert.equal(refused.status, 503);
    const { reason } = (await refused.json()) as { reason: string };
    assert.match(reason, /^the proxy refused a score: 407 /);
    // Delivered again: ready again, for the tests that follow.
    await postIngest(daemon.httpUrl, JSON.stringify(score({ traceId: TRACE, name: 'proxy-takes-it', value: 1 })), 'application/json');
    await fake.waitForScores(1);
    await daemon.eventually(async () => assert.equal((await fetch(`${daemon.httpUrl}/readyz`)).status, 200));
  });

  test('a score refusal (401) no longer makes /readyz 503 once spans are delivered with the same keys: no score may follow for hours', async () => {
    fake.reset();
    fake.failScores({ status: 401 });
    const rejected = (await daemon.metric('dspy_o11yd_scores_dropped_total', { reason: 'rejected' })) ?? 0;
    await postIngest(daemon.httpUrl, JSON.stringify(score({ traceId: TRACE, name: 'refused-once', value: 1 })), 'application/json');
    await daemon.eventually(async () => assert.equal(await daemon.metric('dspy_o11yd_scores_dropped_total', { reason: 'rejected' }), rejected + 1));
    assert.equal((await fetch(`${daemon.httpUrl}/readyz`)).status, 503);
    // Langfuse takes our keys again: a span batch is delivered with them, and no score comes.
    const span = { v: 1, type: 'span', traceId: TRACE, spanId: 'c00000000000000e', name: 'after-refusal', startTimeUnixNano: '1732700000000000000', endTimeUnixNano: '1732700000000000005' };
    await postIngest(daemon.httpUrl, JSON.stringify(span), 'application/json');
    await fake.waitForSpans(1);
    await daemon.eventually(async () => assert.equal((await fetch(`${daemon.httpUrl}/readyz`)).status, 200));
  });

  test("a proxy's 407 on a span batch no longer makes /readyz 503 once a score goes through the same proxy: no span may follow for hours", async () => {
    fake.reset();
    // As the exporter reports a proxy's 407 (the fake answers it itself; the loops see the same status).
    fake.fail({ status: 407 });
    const span = { v: 1, type: 'span', traceId: TRACE, spanId: 'c00000000000000f', name: 'refused-span', startTimeUnixNano: '1732700000000000000', endTimeUnixNano: '1732700000000000005' };
    await postIngest(daemon.httpUrl, JSON.stringify(span), 'application/json');
    await daemon.eventually(async () => assert.equal((await fetch(`${daemon.httpUrl}/readyz`)).status, 503));
    // The proxy takes our credentials again (one fault only): a score goes through it, and no span comes.
    await postIngest(daemon.httpUrl, JSON.stringify(score({ traceId: TRACE, name: 'after-span-refusal', value: 1 })), 'application/json');
    await fake.waitForScores(1);
    await daemon.eventually(async () => assert.equal((await fetch(`${daemon.httpUrl}/readyz`)).status, 200));
  });

  test('a backend answer echoing our credentials (a proxy, a verbose error) shows them nowhere: not in /readyz, /v1/status or the logs', async () => {
    fake.reset();
    const basic = Buffer.from(`${KEYS.LANGFUSE_PUBLIC_KEY}:${KEYS.LANGFUSE_SECRET_KEY}`).toString('base64');
    const echo = JSON.stringify({ message: 'invalid credentials', authorization: `Basic ${basic}`, secretKey: KEYS.LANGFUSE_SECRET_KEY });
    fake.fail({ status: 401, body: echo });
    fake.failScores({ status: 401, body: echo });
    await postIngest(daemon.httpUrl, JSON.stringify({ v: 1, type: 'span', traceId: TRACE, spanId: 'e000000000000001', name: 'echoed', startTimeUnixNano: '1732700000000000000', endTimeUnixNano: '1732700000000000005' }), 'application/json');
    await postIngest(daemon.httpUrl, JSON.stringify(score({ traceId: TRACE, name: 'echoed', value: 1 })), 'application/json');
    await daemon.eventually(async () => {
      const status = (await daemon.status()) as unknown as { exporter: { lastError?: string }; scores: { lastError?: string } };
      assert.match(status.exporter.lastError ?? '', /^401: .*invalid credentials/);
      assert.match(status.scores.lastError ?? '', /^401: .*invalid credentials/);
    });
    const readyz = await (await fetch(`${daemon.httpUrl}/readyz`)).text();
    const status = JSON.stringify(await daemon.status());
    for (const [where, text] of [['/readyz', readyz], ['/v1/status', status], ['the logs', daemon.stderr]] as const) {
      assert.ok(!text.includes(KEYS.LANGFUSE_SECRET_KEY), `${where}: ${text.slice(0, 2000)}`);
      assert.ok(!text.includes(basic), `${where}: ${text.slice(0, 2000)}`);
    }
    assert.match(status, /invalid credentials/, 'the rest of the answer is kept');
    // Delivered again: ready again, for the tests after this one.
    await postIngest(daemon.httpUrl, JSON.stringify(score({ traceId: TRACE, name: 'good-keys-again', value: 1 })), 'application/json');
    await fake.waitForScores(1);
    await postIngest(daemon.httpUrl, JSON.stringify({ v: 1, type: 'span', traceId: TRACE, spanId: 'e000000000000002', name: 'ok', startTimeUnixNano: '1732700000000000000', endTimeUnixNano: '1732700000000000005' }), 'application/json');
    await daemon.eventually(async () => assert.equal((await fetch(`${daemon.httpUrl}/readyz`)).status, 200));
  });
});

describe('scores with an exporter other than Langfuse', () => {
  let daemon: DaemonProcess;
  const tmp = tempDir();

  before(async () => {
    daemon = await startDaemonProcess(['--socket', '', '--http', '127.0.0.1:0', '--exporter', 'file', '--file', join(tmp.dir, 'out.jsonl')]);
  });
  after(async () => {
    await daemon.stop();
    tmp.cleanup();
  });

  test('are counted and dropped as unsupported_exporter, with one warning', async () => {
    const body = JSON.stringify([score({ traceId: TRACE, name: 'a', value: 1 }), score({ traceId: TRACE, name: 'b', value: 2 })]);
    const res = await postIngest(daemon.httpUrl, body, 'application/json');
    assert.equal(res.body.accepted, 2);
    assert.equal(await daemon.metric('dspy_o11yd_scores_received_total'), 2);
    assert.equal(await daemon.metric('dspy_o11yd_scores_dropped_total', { reason: 'unsupported_exporter' }), 2);
    await daemon.waitForLog((l) => /scores are only exported to Langfuse/.test(l.msg));
    assert.equal(daemon.logs.filter((l) => /scores are only exported to Langfuse/.test(l.msg)).length, 1);
  });
});

describe('score units', () => {
  test('derived ids are stable UUIDs that change with the content', () => {
    const a = score({ traceId: TRACE, name: 'n', value: 1, timeUnixNano: '1732700000000000000' });
    assert.equal(scoreId(a), scoreId({ ...a }));
    assert.match(scoreId(a), /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.notEqual(scoreId(a), scoreId({ ...a, timeUnixNano: '1732700000000000001' }));
    assert.notEqual(scoreId(a), scoreId({ ...a, value: '1' }));
  });

  test('bodies follow Langfuse: BOOLEAN as 0/1, targets required, value types matching dataType', () => {
    const ok = (r: ScoreRecord) => {
      const c = toLangfuseScore(r, NO_RESOURCE);
      assert.ok(c.ok, c.ok ? '' : c.message);
      return c.body;
    };
    const fails = (r: ScoreRecord, pattern: RegExp) => {
      const c = toLangfuseScore(r, NO_RESOURCE);
      assert.ok(!c.ok && pattern.test(c.message), JSON.stringify(c));
    };
    assert.deepEqual(ok(score({ traceId: TRACE, name: 'b', value: false })), { id: ok(score({ traceId: TRACE, name: 'b', value: false })).id, traceId: TRACE, name: 'b', value: 0, dataType: 'BOOLEAN' });
    assert.equal(ok(score({ traceId: TRACE, name: 'b', value: 1, dataType: 'BOOLEAN' })).value, 1);
    assert.equal(ok(score({ traceId: TRACE, name: 'c', value: 'x', dataType: 'CATEGORICAL' })).dataType, 'CATEGORICAL');
    assert.equal(ok(score({ sessionId: 's', name: 'n', value: 0.5 })).sessionId, 's');
    fails(score({ name: 'n', value: 1 }), /traceId or a sessionId/);
    fails(score({ sessionId: 's', observationId: SPAN, name: 'n', value: 1 }), /observationId needs/);
    fails(score({ traceId: TRACE, name: 'n', value: 2, dataType: 'BOOLEAN' }), /BOOLEAN/);
    fails(score({ traceId: TRACE, name: 'n', value: 2, dataType: 'CATEGORICAL' }), /CATEGORICAL/);
    fails(score({ traceId: TRACE, name: 'n', value: true, dataType: 'NUMERIC' }), /BOOLEAN/);
    const env = toLangfuseScore(score({ traceId: TRACE, name: 'n', value: 1 }), { attributes: { 'deployment.environment.name': 'EU Prod' } });
    assert.ok(env.ok && env.body.environment === 'eu-prod');
    // The key before semantic conventions 1.27, which Langfuse reads next (as the spans' mapping does).
    const legacy = toLangfuseScore(score({ traceId: TRACE, name: 'n', value: 1 }), { attributes: { 'deployment.environment': 'Staging' } });
    assert.ok(legacy.ok && legacy.body.environment === 'staging', JSON.stringify(legacy));
    // Langfuse's own key comes first (its Python SDK's resource), as for the spans.
    const own = toLangfuseScore(score({ traceId: TRACE, name: 'n', value: 1 }), { attributes: { 'langfuse.environment': 'prod-eu', 'deployment.environment.name': 'production' } });
    assert.ok(own.ok && own.body.environment === 'prod-eu', JSON.stringify(own));
    // What Langfuse would refuse (nothing valid left, its reserved prefix): no environment, so Langfuse's default applies.
    for (const bad of ['!!!', 'langfuse-dev']) {
      const none = toLangfuseScore(score({ traceId: TRACE, name: 'n', value: 1 }), { attributes: { 'deployment.environment.name': bad } });
      assert.ok(none.ok && !('environment' in none.body), JSON.stringify(none));
    }
    // Langfuse takes a trace or a session, never both (400): the trace, the more precise, is kept.
    const both = ok(score({ traceId: TRACE, observationId: SPAN, sessionId: 's', name: 'n', value: 1 }));
    assert.equal(both.traceId, TRACE);
    assert.equal(both.observationId, SPAN);
    assert.equal('sessionId' in both, false);
  });

  test('a body turned back into its wire record (the spool) converts to the same body again', () => {
    const resources = new Map<string, Resource>();
    const cases: [ScoreRecord, Resource][] = [
      [score({ traceId: TRACE, observationId: SPAN, name: 'n', value: 0.25, comment: 'c', timeUnixNano: '1732700000123456789' }), { attributes: { 'deployment.environment.name': 'EU Prod' } }],
      [score({ traceId: TRACE, name: 'b', value: true }), NO_RESOURCE],
      [score({ traceId: TRACE, name: 'b', value: 0, dataType: 'BOOLEAN' }), { attributes: { 'deployment.environment.name': '!!!' } }],
      [score({ sessionId: 's', name: 'c', value: 'good', dataType: 'CATEGORICAL', id: 'my-id' }), { attributes: { 'deployment.environment.name': 'eu-prod' } }],
      // Within the first millisecond of 1970: valid on the wire, its timestamp 0 ms.
      [score({ traceId: TRACE, name: 't', value: 1, timeUnixNano: '999999' }), NO_RESOURCE],
    ];
    const unsent = cases.map(([record, resource]) => {
      const first = toLangfuseScore(record, resource);
      assert.ok(first.ok);
      const back = unsentScore(first.body, resources);
      // The spool replays it through ingest: it must pass the wire schema again.
      const line = parseLine(JSON.stringify(back.record));
      assert.ok(line.ok, line.ok ? '' : line.message);
      const again = toLangfuseScore(back.record, back.resource);
      assert.ok(again.ok);
      assert.deepEqual(again.body, first.body);
      return back;
    });
    // One resource per environment: the spool writes one hello per run of scores sharing it.
    assert.equal(unsent[0]!.resource, unsent[3]!.resource);
    assert.deepEqual(unsent[1]!.resource.attributes, {});
  });

  test("a proxy's 407 on a score is logged as the proxy's refusal, not Langfuse's", async () => {
    const lines: string[] = [];
    const log = pino({ level: 'error' }, { write: (line: string) => void lines.push(line) });
    const fake = await startFakeLangfuse();
    const sender = new ScoreSender({ host: fake.url, publicKey: fake.publicKey, secretKey: fake.secretKey, sdkVersion: 'test', requestTimeoutMs: 5_000, maxRetries: 0 }, new Stats(), log);
    try {
      fake.failScores({ status: 407 });
      sender.submit(score({ traceId: TRACE, name: 'through-the-proxy', value: 1 }), NO_RESOURCE);
      await sender.stop(5_000);
    } finally {
      await fake.close();
    }
    const refusal = lines.map((l) => JSON.parse(l) as { msg: string; status?: number }).find((l) => l.status === 407);
    assert.match(refusal?.msg ?? '', /^the proxy refused a score/);
  });

  test('the bounded queue drops the oldest', () => {
    const dropped: number[] = [];
    const q = new BoundedQueue<number>(3, (n) => dropped.push(n));
    for (let i = 1; i <= 5; i++) q.push(i);
    assert.deepEqual(dropped, [1, 2]);
    assert.equal(q.length, 3);
    assert.equal(q.shift(), 3);
    assert.deepEqual(q.drain(), [4, 5]);
    assert.equal(q.shift(), undefined);
    for (let i = 0; i < 5000; i++) q.push(i);
    for (let i = 4997; i < 5000; i++) assert.equal(q.shift(), i);
  });

  test('the queue is bounded in bytes too: large scores push out the oldest, whatever their count', async () => {
    await withSender({ maxQueuedBytes: 250_000 }, async (sender, fake, stats) => {
      fake.failScores({ status: 503 }, 20);
      const comment = 'x'.repeat(100_000);
      // s0 goes in flight; s1…s9 are queued, about 100 kB each: only the two newest fit in 250 kB.
      for (let i = 0; i < 10; i++) sender.submit(score({ traceId: TRACE, name: `s${i}`, value: i, comment }), NO_RESOURCE);
      assert.deepEqual({ queued: sender.queued, inFlight: sender.inFlight }, { queued: 2, inFlight: 1 });
      assert.ok(sender.bytes <= 250_000 && sender.bytes > 200_000, String(sender.bytes));
      assert.equal(stats.scoresDropped.queue_overflow, 7);
      // One score larger than the whole bound is still kept (and replaces everything queued).
      sender.submit(score({ traceId: TRACE, name: 'huge', value: 1, comment: 'y'.repeat(300_000) }), NO_RESOURCE);
      assert.equal(sender.queued, 1);
      assert.equal(stats.scoresDropped.queue_overflow, 9);
      await sender.stop(5_000);
      assert.deepEqual(fake.scoreRequests.map((r) => (r.body as { name: string }).name), ['s0', 'huge']);
      assert.equal(sender.bytes, 0);
      assert.equal(stats.scoresReceived, stats.scoresExported + Object.values(stats.scoresDropped).reduce((a, b) => a + b, 0));
    });
  });

  test('stop() cut short (a repeated SIGTERM) ends the wait at once and hands back every undelivered score, oldest first', { timeout: 20_000 }, async () => {
    // Retried for as long as stop() lets it: the first retry is due in minutes.
    await withSender({ maxRetries: 5, backoff: { initialMs: 600_000, maxMs: 600_000, maxRetryAfterMs: 600_000 } }, async (sender, fake, stats) => {
      fake.failScores({ status: 503 }, 10);
      for (let i = 0; i < 3; i++) sender.submit(score({ traceId: TRACE, name: `s${i}`, value: i }), NO_RESOURCE);
      while (sender.state !== 'backoff') await new Promise((r) => setImmediate(r));
      const hurry = new AbortController();
      const stopped = sender.stop(60_000, hurry.signal);
      hurry.abort();
      const unsent = await stopped;
      // s0 was waiting for its retry, s1 and s2 in the queue: the caller spools or counts them.
      assert.deepEqual(unsent.map((u) => u.record.name), ['s0', 's1', 's2']);
      assert.equal(stats.scoresDropped.shutdown, 0);
      assert.deepEqual({ queued: sender.queued, inFlight: sender.inFlight, state: sender.state }, { queued: 0, inFlight: 0, state: 'stopped' });
      assert.equal(sender.lastError, 'http_503', 'the last answer, not the shutdown');
    });
  });

  test('the sender keeps one score in flight, drops the oldest queued on overflow and accounts for every score', async () => {
    await withSender({ maxQueued: 2 }, async (sender, fake, stats) => {
      fake.failScores({ status: 503 }, 5);
      for (let i = 0; i < 5; i++) sender.submit(score({ traceId: TRACE, name: `s${i}`, value: i }), NO_RESOURCE);
      // s0 is in flight, s1 and s2 were pushed out by s3 and s4.
      assert.deepEqual({ queued: sender.queued, inFlight: sender.inFlight }, { queued: 2, inFlight: 1 });
      assert.equal(stats.scoresDropped.queue_overflow, 2);
      await sender.stop(5_000);
      assert.deepEqual(fake.scoreRequests.map((r) => (r.body as { name: string }).name), ['s0', 's3', 's4']);
      assert.equal(stats.scoresReceived, 5);
      assert.equal(stats.scoresDropped.retries_exhausted, 3);
      assert.equal(stats.scoresExported, 0);
      // After stop, a score is counted as a shutdown drop, not sent.
      sender.submit(score({ traceId: TRACE, name: 'late', value: 1 }), NO_RESOURCE);
      assert.equal(stats.scoresDropped.shutdown, 1);
    });
  });
});

describe('scores at a shutdown that outlasts the score sender', () => {
  test('a score request stuck past the shutdown timeout: its score and the queued ones are spooled and delivered at the next start', async (t) => {
    const tmp = tempDir();
    const socket = join(tmp.dir, 'd.sock');
    const spool = join(tmp.dir, 'spool');
    const fake = await startFakeLangfuse({ publicKey: KEYS.LANGFUSE_PUBLIC_KEY, secretKey: KEYS.LANGFUSE_SECRET_KEY });
    const env = { ...KEYS, LANGFUSE_HOST: fake.url };
    const stuck = fileURLToPath(new URL('./support/stuck-score-request.js', import.meta.url));
    const d = await startDaemonProcess(['--socket', socket, '--http', '127.0.0.1:0', '--shutdown-timeout', '1000', '--spool-dir', spool], { ...env, DSPY_TEST_STUCK_SCORES: '1' }, socket, ['--import', stuck]);
    let next: DaemonProcess | undefined;
    t.after(async () => {
      await d.stop('SIGKILL');
      await next?.stop('SIGKILL');
      await fake.close();
      tmp.cleanup();
    });
    const records = [0, 1, 2].map((i) => score({ traceId: TRACE, name: `stuck-${i}`, value: i }));
    await sendOverSocket(socket, records.map((r) => JSON.stringify(r)));
    await d.eventually(async () => assert.deepEqual([(await d.status()).scores.received, (await d.status()).scores.inFlight], [3, 1]));
    d.child.kill('SIGTERM');
    assert.deepEqual(await d.exited, { code: 0, signal: null });
    next = await startDaemonProcess(['--socket', join(tmp.dir, 'next.sock'), '--http', '127.0.0.1:0', '--spool-dir', spool], env);
    const stored = await fake.waitForScores(3, 10_000);
    assert.deepEqual(stored.map((s) => (s.body as { name: string }).name).sort(), ['stuck-0', 'stuck-1', 'stuck-2']);
  });
});

describe('scores handed back when the shutdown gives up on stop()', () => {
  test('abandon() while stop() is still closing its connection hands back every score not delivered', async () => {
    const { Pool } = await import('undici');
    const close = Pool.prototype.close;
    let reached: () => void = () => undefined;
    const closeReached = new Promise<void>((resolve) => (reached = resolve));
    let finish: () => void = () => undefined;
    // A close that takes its time (closeDispatcher allows it 2 s; the daemon waits CLOSE_GRACE_MS past the deadline).
    Pool.prototype.close = function (this: InstanceType<typeof Pool>) {
      reached();
      return new Promise<void>((resolve) => (finish = () => void close.call(this).then(resolve, resolve)));
    } as typeof close;
    try {
      await withSender({}, async (sender, fake) => {
        fake.mode({ hang: true });
        sender.submit(score({ traceId: TRACE, name: 'first', value: 1 }), NO_RESOURCE);
        sender.submit(score({ traceId: TRACE, name: 'second', value: 2 }), NO_RESOURCE);
        const stopping = sender.stop(0);
        await closeReached;
        // The daemon's bound on stop() ran out here: what stop() would have returned must come back now.
        const back = sender.abandon().map((u) => u.record.name);
        finish();
        await stopping;
        assert.deepEqual(back, ['first', 'second']);
      });
    } finally {
      Pool.prototype.close = close;
    }
  });
});
