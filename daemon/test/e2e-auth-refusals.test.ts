/**
 * Requests the auth check refuses (401: --ingest-token, the daemon's Langfuse keys on Langfuse's
 * path) are counted in `requests_refused_total{transport,reason}` and `/v1/status`, and logged at
 * most once per reason per minute, naming the path, the reason and the remote address, never a
 * credential. Through the real CLI, over real HTTP.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { refusalWarner, type RefusedRequest } from '../src/ingest/auth.js';
import { useLangfuseDaemon, type DaemonProcess, type LogLine } from './support/daemon-process.js';

const KEYS = { LANGFUSE_PUBLIC_KEY: 'pk-lf-refusals', LANGFUSE_SECRET_KEY: 'sk-lf-refusals-secret' };
const TOKEN = 'refusals-ingest-token-5678';
const OTHER = { publicKey: 'pk-lf-another-project', secretKey: 'sk-lf-another-project-secret' };
const ARGS = ['--socket', '', '--http', '127.0.0.1:0', '--flush-interval', '50', '--ingest-token', TOKEN];

const basic = (publicKey: string, secretKey: string) => `Basic ${Buffer.from(`${publicKey}:${secretKey}`).toString('base64')}`;
const bearer = `Bearer ${TOKEN}`;
const span = (id: string) => JSON.stringify({ v: 1, type: 'span', traceId: 'd'.repeat(32), spanId: id, name: 'refusals', startTimeUnixNano: '1732700000000000000', endTimeUnixNano: '1732700000000000005' });

async function post(url: string, path: string, authorization: string | undefined, body = '{}', contentType = 'application/json'): Promise<number> {
  const res = await fetch(url + path, { method: 'POST', headers: { 'content-type': contentType, ...(authorization ? { authorization } : {}) }, body });
  await res.arrayBuffer();
  return res.status;
}

const refusalLines = (d: DaemonProcess): LogLine[] => d.logs.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('HTTP request refused'));

describe('refused requests are counted by transport and reason', () => {
  let daemon: DaemonProcess;
  useLangfuseDaemon(KEYS, ARGS, (_f, d) => (daemon = d));

  test('in /metrics and /v1/status; accepted requests and the open probes are not', async () => {
    const url = daemon.httpUrl;
    // Accepted: none of these counts.
    assert.equal(await post(url, '/v1/ingest', bearer, span('d000000000000001'), 'application/x-ndjson'), 202);
    assert.equal(await post(url, '/v1/traces', bearer), 200);
    assert.equal(await post(url, '/api/public/otel/v1/traces', basic(KEYS.LANGFUSE_PUBLIC_KEY, KEYS.LANGFUSE_SECRET_KEY)), 200);
    assert.equal(await post(url, '/api/public/otel/v1/traces', bearer), 200);
    assert.equal((await fetch(`${url}/healthz`)).status, 200);
    const refusedBefore = await daemon.metrics();
    assert.ok(!refusedBefore.includes('dspy_o11yd_requests_refused_total{'), refusedBefore.split('\n').filter((l) => l.includes('refused')).join('\n'));

    // Refused, each for what authorize() tells apart.
    const refused: [string, string | undefined][] = [
      ['/v1/ingest', undefined],
      ['/v1/ingest', 'Bearer wrong-token'],
      ['/v1/ingest', basic(KEYS.LANGFUSE_PUBLIC_KEY, KEYS.LANGFUSE_SECRET_KEY)], // Basic is for Langfuse's path only
      ['/v1/traces', undefined],
      ['/api/public/otel/v1/traces', undefined],
      ['/api/public/otel/v1/traces', basic(OTHER.publicKey, OTHER.secretKey)],
      ['/api/public/otel/v1/traces', basic(OTHER.publicKey, KEYS.LANGFUSE_SECRET_KEY)],
      ['/api/public/otel/v1/traces', basic(KEYS.LANGFUSE_PUBLIC_KEY, OTHER.secretKey)],
    ];
    for (const [path, authorization] of refused) assert.equal(await post(url, path, authorization), 401, `${path} ${authorization}`);
    assert.equal((await fetch(`${url}/v1/status`)).status, 401);

    const expected: Record<string, number> = {
      'http/unauthorized': 3,
      'otlp/unauthorized': 2,
      'otlp/wrong_public_key': 2,
      'otlp/wrong_secret_key': 1,
      'other/unauthorized': 1,
    };
    for (const [key, n] of Object.entries(expected)) {
      const [transport, reason] = key.split('/') as [string, string];
      assert.equal(await daemon.metric('dspy_o11yd_requests_refused_total', { transport, reason }), n, key);
    }
    const text = await daemon.metrics();
    assert.equal(text.split('\n').filter((l) => l.startsWith('dspy_o11yd_requests_refused_total{')).length, Object.keys(expected).length, 'no other label pair');
    const status = (await (await fetch(`${url}/v1/status`, { headers: { authorization: bearer } })).json()) as { requests: { refused: Record<string, number> } };
    assert.deepEqual(status.requests.refused, expected);
  });
});

describe('refused requests are logged once per reason per minute, with no credential', () => {
  let daemon: DaemonProcess;
  useLangfuseDaemon(KEYS, ARGS, (_f, d) => (daemon = d));

  test('a flood of refusals is one line per reason naming path, reason and remote address', async () => {
    const url = daemon.httpUrl;
    for (let i = 0; i < 30; i++) assert.equal(await post(url, i % 2 ? '/v1/ingest' : '/v1/traces', i % 3 ? `Bearer wrong-${TOKEN}` : undefined), 401);
    for (let i = 0; i < 10; i++) assert.equal(await post(url, '/api/public/otel/v1/traces', basic(OTHER.publicKey, OTHER.secretKey)), 401);
    // One refusal of a reason not seen yet: its line comes after any the floods wrote (one log
    // stream, in order), so once it is there every line of the floods is too.
    assert.equal(await post(url, '/api/public/otel/v1/traces', basic(KEYS.LANGFUSE_PUBLIC_KEY, OTHER.secretKey)), 401);
    await daemon.waitForLog((l) => l.reason === 'wrong_secret_key');

    const lines = refusalLines(daemon);
    assert.deepEqual(lines.map((l) => l.reason), ['unauthorized', 'wrong_public_key', 'wrong_secret_key'], JSON.stringify(lines));
    for (const l of lines) {
      assert.equal(l.level, 40, 'warn');
      assert.equal(l.remoteAddress, '127.0.0.1');
      assert.equal(l.refused, 1, 'the first of its reason');
    }
    assert.deepEqual(
      lines.map((l) => ({ transport: l.transport, path: l.path, scheme: l.scheme })),
      [
        { transport: 'otlp', path: '/v1/traces', scheme: 'none' },
        { transport: 'otlp', path: '/api/public/otel/v1/traces', scheme: 'basic' },
        { transport: 'otlp', path: '/api/public/otel/v1/traces', scheme: 'basic' },
      ],
    );
    assert.match(lines[0]!.msg, /--ingest-token/);
    assert.match(lines[1]!.msg, /not the daemon's LANGFUSE_PUBLIC_KEY/);
    // No credential, sent or expected, in any form: the daemon's public key is not logged either.
    for (const secret of [TOKEN, KEYS.LANGFUSE_SECRET_KEY, KEYS.LANGFUSE_PUBLIC_KEY, OTHER.publicKey, OTHER.secretKey, basic(OTHER.publicKey, OTHER.secretKey).slice(6), basic(KEYS.LANGFUSE_PUBLIC_KEY, OTHER.secretKey).slice(6)]) {
      assert.ok(!daemon.stderr.includes(secret), `${secret} in the log`);
    }
  });
});

describe('refusalWarner', () => {
  test('past the first line of a reason, the next says how many were refused for it since', () => {
    const lines: { fields: Record<string, unknown>; msg: string }[] = [];
    const log = { warn: (fields: Record<string, unknown>, msg: string) => void lines.push({ fields, msg }) };
    let open = true;
    const warn = refusalWarner(log as Parameters<typeof refusalWarner>[0], () => () => {
      const was = open;
      open = false;
      return was;
    });
    const request: RefusedRequest = { transport: 'http', method: 'POST', path: '/v1/ingest', remoteAddress: '127.0.0.1', scheme: 'none' };
    for (let i = 0; i < 5; i++) warn({ reason: 'unauthorized', message: 'missing or wrong bearer token (--ingest-token)' }, request);
    assert.equal(lines.length, 1);
    assert.equal(lines[0]!.fields.refused, 1);
    open = true; // the interval has passed
    warn({ reason: 'unauthorized', message: 'missing or wrong bearer token (--ingest-token)' }, request);
    assert.equal(lines.length, 2);
    assert.equal(lines[1]!.fields.refused, 5, 'the 4 held back and this one');
    assert.equal(lines[1]!.msg, 'HTTP request refused (401): missing or wrong bearer token (--ingest-token)');
  });
});
