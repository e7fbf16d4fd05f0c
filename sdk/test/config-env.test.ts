/**
 * How users configure the SDK, as users of OpenTelemetry and Langfuse write it: the real SDK in a
 * child app (test/fixtures/app.ts), its environment and configure() as they come, and a receiver
 * on a Unix socket in a temp dir that sees what the app sent.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runApp, type ChildRun } from './support/child.js';
import { UnixReceiver } from './support/receiver.js';

/** Runs the fixture app (a few spans) with `env`; its `hello` resource and the run. */
async function resourceOf(env: Record<string, string>): Promise<{ resource: Record<string, unknown> | undefined; run: ChildRun }> {
  const r = await UnixReceiver.create();
  try {
    const run = await runApp({ DSPY_O11Y_ENDPOINT: r.endpoint, FIXTURE_SPANS: '2', ...env });
    assert.equal(run.code, 0, run.stderr);
    if ((run.report?.stats.sent ?? 0) > 0) await r.waitFor(() => r.hellos().length > 0, 15_000, 'hello');
    return { resource: r.hellos()[0]?.resource as Record<string, unknown> | undefined, run };
  } finally {
    await r.dispose();
  }
}

test('OTEL_SERVICE_NAME: empty is unset (the spec), so service.name in OTEL_RESOURCE_ATTRIBUTES or the default applies; surrounding whitespace is trimmed', async () => {
  const cases: [Record<string, string>, string][] = [
    // Was service.name "": an empty variable counted as a name.
    [{ OTEL_SERVICE_NAME: '', OTEL_RESOURCE_ATTRIBUTES: 'service.name=from-attrs' }, 'from-attrs'],
    [{ OTEL_SERVICE_NAME: '' }, 'unknown_service:node'],
    [{ OTEL_SERVICE_NAME: ' \n', OTEL_RESOURCE_ATTRIBUTES: 'service.name=from-attrs' }, 'from-attrs'],
    [{ OTEL_SERVICE_NAME: ' coffee-shop\n' }, 'coffee-shop'],
    [{ OTEL_SERVICE_NAME: 'coffee-shop', OTEL_RESOURCE_ATTRIBUTES: 'service.name=from-attrs' }, 'coffee-shop'],
  ];
  for (const [env, name] of cases) {
    const { resource } = await resourceOf(env);
    assert.equal(resource?.['service.name'], name, JSON.stringify(env));
  }
});

test("service.name: configure({ serviceName }) > configure({ resource }) > OTEL_SERVICE_NAME > OTEL_RESOURCE_ATTRIBUTES > default (the app's own resource wins over the environment, as the spec merges them)", async () => {
  const cfg = (o: unknown) => ({ FIXTURE_CONFIGURE: JSON.stringify(o) });
  const cases: [Record<string, string>, string][] = [
    // Was unknown_service:node: the resource option's service.name was overwritten by the default.
    [cfg({ resource: { 'service.name': 'from-code', team: 'a' } }), 'from-code'],
    [{ ...cfg({ resource: { 'service.name': 'from-code' } }), OTEL_SERVICE_NAME: 'from-env', OTEL_RESOURCE_ATTRIBUTES: 'service.name=from-attrs' }, 'from-code'],
    [{ ...cfg({ serviceName: 'option', resource: { 'service.name': 'from-code' } }), OTEL_SERVICE_NAME: 'from-env' }, 'option'],
    [{ ...cfg({ resource: { team: 'a' } }), OTEL_SERVICE_NAME: 'from-env' }, 'from-env'],
  ];
  for (const [env, name] of cases) {
    const { resource } = await resourceOf(env);
    assert.equal(resource?.['service.name'], name, JSON.stringify(env));
  }
});

test('OTEL_RESOURCE_ATTRIBUTES: keys and values trimmed and percent-decoded (the spec encodes "," and "=" in both), empty entries ignored, a malformed entry skipped with a debug line naming its position', async () => {
  const { resource, run } = await resourceOf({
    DSPY_O11Y_DEBUG: '1',
    OTEL_RESOURCE_ATTRIBUTES: ' service.name = svc , , team=a%2Cb,k=a=b, my%2Ckey=v, deployment.environment.name=prod%20eu,broken,bad=%E0%A4%A,=novalue,',
  });
  assert.deepEqual(resource, { 'service.name': 'svc', team: 'a,b', k: 'a=b', 'my,key': 'v', 'deployment.environment.name': 'prod eu' });
  for (const i of [7, 8, 9]) assert.match(run.stderr, new RegExp(`OTEL_RESOURCE_ATTRIBUTES: entry ${i} is not key=value with a percent-encoded key and value; skipped`));
});

test("DSPY_O11Y_SAMPLE_RATIO / LANGFUSE_SAMPLE_RATE are decimal numbers, the daemon's rule: 0x0 or 0b0 is no ratio (it was 0: every trace dropped)", async () => {
  const cases: [Record<string, string>, 'all' | 'none'][] = [
    [{ DSPY_O11Y_SAMPLE_RATIO: '0x0' }, 'all'],
    [{ LANGFUSE_SAMPLE_RATE: '0b0' }, 'all'],
    [{ DSPY_O11Y_SAMPLE_RATIO: 'Infinity' }, 'all'],
    [{ DSPY_O11Y_SAMPLE_RATIO: 'NaN' }, 'all'],
    [{ DSPY_O11Y_SAMPLE_RATIO: ' ' }, 'all'],
    [{ DSPY_O11Y_SAMPLE_RATIO: ' 0.0\n' }, 'none'],
    [{ DSPY_O11Y_SAMPLE_RATIO: '0e0' }, 'none'],
    [{ LANGFUSE_SAMPLE_RATE: '.0' }, 'none'],
  ];
  for (const [env, kept] of cases) {
    const r = await UnixReceiver.create();
    try {
      const run = await runApp({ DSPY_O11Y_ENDPOINT: r.endpoint, DSPY_O11Y_DEBUG: '1', FIXTURE_SPANS: '5', ...env });
      assert.equal(run.code, 0, run.stderr);
      const stats = run.report!.stats;
      if (kept === 'all') {
        assert.equal(stats.sampledOut, 0, `${JSON.stringify(env)}: ${JSON.stringify(stats)}`);
        assert.equal(stats.sent, 7);
      } else assert.equal(stats.sent, 0, `${JSON.stringify(env)}: ${JSON.stringify(stats)}`);
      const name = Object.keys(env)[0]!;
      if (kept === 'all' && env[name]!.trim() !== '') assert.match(run.stderr, new RegExp(`${name} must be a number from 0 to 1`));
    } finally {
      await r.dispose();
    }
  }
});

test('DSPY_O11Y_ENDPOINT unix forms: unix:///abs, unix:/abs, unix:relative (to the working directory, as gRPC reads it), unix://relative (as before); unix://host/path is refused (it was /path: the first segment taken as a host)', async () => {
  const { relative } = await import('node:path');
  const r = await UnixReceiver.create();
  try {
    for (const endpoint of [`unix://${r.path}`, `unix:${r.path}`, `unix:${relative(process.cwd(), r.path)}`, r.path]) {
      r.reset();
      const run = await runApp({ DSPY_O11Y_ENDPOINT: endpoint, FIXTURE_SPANS: '2' });
      assert.equal(run.report?.stats.sent, 4, `${endpoint}: ${JSON.stringify(run.report?.stats)}`);
    }
    // unix://d.sock, a host and no path: the relative path it was read as before, still.
    const { basename } = await import('node:path');
    r.reset();
    const bare = await runApp({ DSPY_O11Y_ENDPOINT: `unix://${basename(r.path)}`, FIXTURE_SPANS: '2' }, 20_000, undefined, r.dir);
    assert.equal(bare.report?.stats.sent, 4, `unix://${basename(r.path)} from ${r.dir}: ${JSON.stringify(bare.report?.stats)}`);
    // unix://tmp/d.sock, a slash short: was a connection to /d.sock retried for ever.
    const hosted = `unix:/${r.path}`;
    const run = await runApp({ DSPY_O11Y_ENDPOINT: hosted, DSPY_O11Y_DEBUG: '1', FIXTURE_SPANS: '2' });
    assert.equal(run.code, 0, run.stderr);
    assert.deepEqual(run.report?.stats.droppedByReason, { invalid_endpoint: 4 }, JSON.stringify(run.report?.stats));
    assert.match(run.stderr, /endpoint unix:\/\/[^ ]+ names a host \([^)]+\): a socket path is unix:\/\/\/absolute\/path or unix:relative\/path; telemetry is off/);
    // A broken percent-encoding threw inside every send(): each record was lost, not even counted.
    const broken = await runApp({ DSPY_O11Y_ENDPOINT: `unix://${r.dir}/%E0.sock`, DSPY_O11Y_DEBUG: '1', FIXTURE_SPANS: '2' });
    assert.deepEqual(broken.report?.stats.droppedByReason, { invalid_endpoint: 4 }, JSON.stringify(broken.report?.stats));
    assert.match(broken.stderr, /invalid endpoint "unix:\/\/[^"]+%E0\.sock"; telemetry is off/);
  } finally {
    await r.dispose();
  }
});

test('DSPY_O11Y_ENDPOINT http forms: a path is a prefix of /v1/ingest, a trailing slash is not doubled', async () => {
  const { HttpReceiver } = await import('./support/receiver.js');
  const r = await HttpReceiver.create();
  try {
    for (const [suffix, path] of [['', '/v1/ingest'], ['/', '/v1/ingest'], ['/dspy/', '/dspy/v1/ingest'], ['/a/b', '/a/b/v1/ingest']] as const) {
      r.requests.length = 0;
      const run = await runApp({ DSPY_O11Y_ENDPOINT: `${r.endpoint}${suffix}`, FIXTURE_SPANS: '2' });
      assert.equal(run.report?.stats.sent, 4, JSON.stringify(run.report?.stats));
      assert.deepEqual([...new Set(r.requests.map((q) => q.path))], [path]);
    }
  } finally {
    await r.close();
  }
});

test("off switches: DSPY_O11Y_DISABLED (1/true/yes/on), OpenTelemetry's OTEL_SDK_DISABLED (true, any case), Langfuse's LANGFUSE_TRACING_ENABLED (false/0/no/off); any other value keeps telemetry on and says so in a debug line", async () => {
  const r = await UnixReceiver.create();
  try {
    const cases: [Record<string, string>, 'on' | 'off', RegExp?][] = [
      // Was on: OTEL_SDK_DISABLED, OpenTelemetry's off switch (which Langfuse's SDKs obey too), was not read.
      [{ OTEL_SDK_DISABLED: 'true' }, 'off'],
      [{ OTEL_SDK_DISABLED: ' TRUE\n' }, 'off'],
      [{ OTEL_SDK_DISABLED: 'false' }, 'on'],
      // OpenTelemetry: only "true" is true; anything else but "false" is false with a warning.
      [{ OTEL_SDK_DISABLED: '1' }, 'on', /OTEL_SDK_DISABLED="1" is neither true nor false; telemetry stays on/],
      [{ DSPY_O11Y_DISABLED: 'true' }, 'off'],
      [{ DSPY_O11Y_DISABLED: '1' }, 'off'],
      [{ DSPY_O11Y_DISABLED: 'TRUE' }, 'off'],
      [{ DSPY_O11Y_DISABLED: ' yes\n' }, 'off'],
      [{ DSPY_O11Y_DISABLED: '0' }, 'on'],
      [{ DSPY_O11Y_DISABLED: 'false' }, 'on'],
      [{ DSPY_O11Y_DISABLED: '' }, 'on'],
      [{ DSPY_O11Y_DISABLED: 'disabled' }, 'on', /DSPY_O11Y_DISABLED="disabled" is not one of 1, true, yes, on, 0, false, no, off; telemetry stays on/],
      [{ LANGFUSE_TRACING_ENABLED: 'FALSE' }, 'off'],
      [{ LANGFUSE_TRACING_ENABLED: '0' }, 'off'],
      [{ LANGFUSE_TRACING_ENABLED: 'true' }, 'on'],
      [{ LANGFUSE_TRACING_ENABLED: 'nope' }, 'on', /LANGFUSE_TRACING_ENABLED="nope" is not one of 1, true, yes, on, 0, false, no, off; telemetry stays on/],
      // Any switch that says off wins.
      [{ DSPY_O11Y_DISABLED: '0', OTEL_SDK_DISABLED: 'true' }, 'off'],
      [{ DSPY_O11Y_DISABLED: 'false', LANGFUSE_TRACING_ENABLED: 'false' }, 'off'],
    ];
    for (const [env, state, said] of cases) {
      const run = await runApp({ DSPY_O11Y_ENDPOINT: r.endpoint, DSPY_O11Y_DEBUG: '1', FIXTURE_SPANS: '2', ...env });
      assert.equal(run.code, 0, run.stderr);
      assert.equal(run.report?.stats.enqueued === 0 ? 'off' : 'on', state, `${JSON.stringify(env)}: ${JSON.stringify(run.report?.stats)}`);
      if (said) assert.match(run.stderr, said);
      else assert.doesNotMatch(run.stderr, /is not one of|is neither true nor false/, JSON.stringify(env));
    }
  } finally {
    await r.dispose();
  }
});

test('configure() from JS with options of the wrong type: never a throw; a yes/no given as a string is read like the variables, others are ignored (or a number made a string) with a debug line', async () => {
  const r = await UnixReceiver.create();
  const run = async (options: unknown) => {
    r.reset();
    const child = await runApp({ DSPY_O11Y_ENDPOINT: r.endpoint, DSPY_O11Y_DEBUG: '1', FIXTURE_SPANS: '2', FIXTURE_CONFIGURE: JSON.stringify(options) });
    assert.equal(child.code, 0, child.stderr);
    const sent = child.report?.stats.sent ?? 0;
    if (sent > 0) await r.waitFor(() => r.spans().length > 0, 15_000, 'spans');
    return { child, on: (child.report?.stats.enqueued ?? 0) > 0, hello: r.hellos()[0]?.resource, input: r.spans().find((s) => s.name === 'job-0')?.attributes?.['dspy.input'] };
  };
  try {
    // Was off: any non-empty string is truthy, 'false' included.
    assert.equal((await run({ disabled: 'false' })).on, true);
    assert.equal((await run({ disabled: 'TRUE' })).on, false);
    assert.equal((await run({ disabled: 0 })).on, true);
    const odd = await run({ disabled: { yes: true } });
    assert.equal(odd.on, true);
    assert.match(odd.child.stderr, /configure\(\{ disabled \}\) must be a boolean \(or 1\/true\/yes\/on, 0\/false\/no\/off\); ignored/);
    // Was captured: captureIO 'false' asked for privacy and got every input and output.
    assert.equal((await run({ captureIO: 'false' })).input, undefined);
    assert.equal((await run({ captureIO: 0 })).input, undefined);
    assert.equal((await run({ captureIO: 'yes' })).input, '"small"');
    // Was {"0":"a","1":"b","2":"c",…}: a string spread into one attribute per character.
    const str = await run({ resource: 'abc', serviceName: 'svc' });
    assert.deepEqual(str.hello, { 'service.name': 'svc' });
    assert.match(str.child.stderr, /configure\(\{ resource \}\) must be an object of attributes; ignored/);
    assert.deepEqual((await run({ resource: ['x'], serviceName: 'svc' })).hello, { 'service.name': 'svc' });
    const dropped = await run({ resource: { ok: 1, nested: { a: 1 }, none: null }, serviceName: 'svc' });
    assert.deepEqual(dropped.hello, { ok: 1, 'service.name': 'svc' });
    assert.match(dropped.child.stderr, /resource attribute "nested" is not a string, a finite number, a boolean or an array of one of those; left out/);
    // Was service.name 42 (a number): names are strings.
    assert.deepEqual((await run({ serviceName: 42, serviceVersion: 2 })).hello, { 'service.name': '42', 'service.version': '2' });
    const obj = await run({ serviceName: { name: 'x' } });
    assert.deepEqual(obj.hello, { 'service.name': 'unknown_service:node' });
    assert.match(obj.child.stderr, /configure\(\{ serviceName \}\) must be a string; ignored/);
    const n = await run({ maxBufferRecords: 'lots', flushTimeoutMs: -1 });
    assert.equal(n.on, true);
    assert.match(n.child.stderr, /configure\(\{ maxBufferRecords \}\) must be a whole number from 1; the default is used/);
    assert.match(n.child.stderr, /configure\(\{ flushTimeoutMs \}\) must be a whole number from 1; the default is used/);
    const mask = await run({ mask: 'redact' });
    assert.equal(mask.input, '"[mask threw]"', 'nothing unmasked leaves');
    assert.match(mask.child.stderr, /configure\(\{ mask \}\) must be a function; inputs and outputs are replaced by "\[mask threw\]"/);
  } finally {
    await r.dispose();
  }
});
