/**
 * No Docker engine runs here, so the container is validated as far as it can be without one:
 * docker-compose.yml and docker/Dockerfile are parsed and checked against each other, and the
 * Dockerfile's own start command, environment and health check are run outside Docker, with
 * its paths moved into a temp dir.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { startFakeLangfuse } from 'dspy-o11yd/dist/test/support/fake-langfuse.js';
import { OPTIONS, resolveConfig } from 'dspy-o11yd/dist/src/config.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const dockerfile = readFileSync(join(ROOT, 'docker/Dockerfile'), 'utf8');

/** The final stage's ENV, ENTRYPOINT, CMD and HEALTHCHECK. */
function finalStage() {
  const stages = dockerfile.split(/^FROM /m);
  const last = stages[stages.length - 1]!.replace(/\\\n\s*/g, ' ');
  const env: Record<string, string> = {};
  for (const line of last.split('\n').filter((l) => l.startsWith('ENV '))) {
    for (const m of line.slice(4).matchAll(/([A-Z_0-9]+)=(\S+)/g)) env[m[1]!] = m[2]!;
  }
  const json = (directive: string) => JSON.parse(new RegExp(`^${directive} (\\[.*\\])$`, 'm').exec(last)![1]!) as string[];
  const health = /^HEALTHCHECK .*?CMD (\[.*\])$/m.exec(last)![1]!;
  return { env, entrypoint: json('ENTRYPOINT'), cmd: json('CMD'), health: JSON.parse(health) as string[], text: last };
}

test('docker-compose.yml: the sidecar shares the socket with the app and needs the keys', () => {
  const compose = parseYaml(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8')) as {
    services: Record<string, { build?: { dockerfile: string }; environment: Record<string, string>; volumes: string[]; depends_on?: Record<string, { condition: string }> }>;
    volumes: Record<string, unknown>;
  };
  const { env } = finalStage();
  const daemon = compose.services['dspy-o11yd']!;
  const app = compose.services.app!;
  assert.equal(daemon.build?.dockerfile, 'docker/Dockerfile');
  assert.match(daemon.environment.LANGFUSE_PUBLIC_KEY!, /\$\{LANGFUSE_PUBLIC_KEY:\?/);
  assert.match(daemon.environment.LANGFUSE_SECRET_KEY!, /\$\{LANGFUSE_SECRET_KEY:\?/);
  // Listening on all interfaces needs the ingest token, as the daemon's config demands.
  assert.equal(daemon.environment.DSPY_O11YD_HTTP, '0.0.0.0:4318');
  assert.ok(daemon.environment.DSPY_O11YD_INGEST_TOKEN);
  const socketDir = env.DSPY_O11YD_SOCKET!.slice(0, env.DSPY_O11YD_SOCKET!.lastIndexOf('/'));
  const shared = (svc: { volumes: string[] }) => svc.volumes.find((v) => v.endsWith(`:${socketDir}`))?.split(':')[0];
  assert.ok(shared(daemon), 'the daemon mounts a volume on its socket directory');
  assert.equal(shared(app), shared(daemon), 'the app mounts the same volume there');
  assert.ok(shared(daemon)! in compose.volumes);
  assert.equal(app.environment.DSPY_O11Y_ENDPOINT, `unix://${env.DSPY_O11YD_SOCKET}`);
  assert.equal(app.depends_on?.['dspy-o11yd']?.condition, 'service_healthy');
  assert.ok(daemon.volumes.some((v) => v.endsWith(`:${env.DSPY_O11YD_SPOOL_DIR}`)), 'the spool survives restarts on a volume');
});

test("docker-compose.yml: a self-hosted Langfuse set by LANGFUSE_BASE_URL (Langfuse's current name) or LANGFUSE_HOST reaches the daemon", () => {
  const compose = parseYaml(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8')) as { services: Record<string, { environment: Record<string, string> }> };
  const daemon = compose.services['dspy-o11yd']!.environment;
  // Compose's interpolation, as far as the file uses it: ${VAR:-default} and ${VAR:?message}.
  const interpolate = (shell: Record<string, string>) =>
    Object.fromEntries(
      Object.entries(daemon).map(([k, v]) => [k, String(v).replace(/\$\{(\w+)(?::[-?]([^}]*))?\}/g, (_, name: string, dflt = '') => shell[name] || (v.includes(':?') ? '' : dflt))]),
    );
  const keys = { LANGFUSE_PUBLIC_KEY: 'pk', LANGFUSE_SECRET_KEY: 'sk', DSPY_O11YD_INGEST_TOKEN: 'token' };
  const host = (shell: Record<string, string>) => resolveConfig({}, interpolate({ ...keys, ...shell })).langfuse.host;
  assert.equal(host({ LANGFUSE_BASE_URL: 'https://us.cloud.langfuse.com' }), 'https://us.cloud.langfuse.com');
  assert.equal(host({ LANGFUSE_HOST: 'https://langfuse.example.com' }), 'https://langfuse.example.com');
  assert.equal(host({ LANGFUSE_HOST: 'https://old.example.com', LANGFUSE_BASE_URL: 'https://new.example.com' }), 'https://new.example.com');
  assert.equal(host({}), 'https://cloud.langfuse.com');
});

test("the Dockerfile's start command, environment and health check work outside Docker", async () => {
  const { env, entrypoint, cmd, health, text } = finalStage();
  assert.deepEqual(entrypoint.slice(0, 2), ['node', '/app/daemon/dist/src/cli.js'], 'exec form, node as PID 1 gets SIGTERM');
  assert.deepEqual(cmd, ['start']);
  assert.match(text, /COPY --from=build \/src\/daemon\/dist daemon\/dist/);
  const dir = mkdtempSync(join(tmpdir(), 'docker-like-'));
  const fake = await startFakeLangfuse({ publicKey: 'pk-docker', secretKey: 'sk-docker' });
  const move = (p: string) => join(dir, p.replace(/^\//, ''));
  const runEnv: Record<string, string> = { PATH: process.env.PATH!, LANGFUSE_PUBLIC_KEY: 'pk-docker', LANGFUSE_SECRET_KEY: 'sk-docker', LANGFUSE_HOST: fake.url };
  for (const [k, v] of Object.entries(env)) runEnv[k] = v.startsWith('/') ? move(v) : v;
  // The image's 4318 may be taken on this machine: same address, a free port.
  runEnv.DSPY_O11YD_HTTP = runEnv.DSPY_O11YD_HTTP!.replace(/:4318$/, ':0');
  mkdirSync(move('/var/run/dspy-o11y'), { recursive: true });
  const cli = join(ROOT, entrypoint[1]!.replace('/app/', ''));
  const child = spawn(process.execPath, [cli, ...cmd], { env: runEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  try {
    // Up to 20 s for the start (its startup line): a node process starts slowly on a loaded machine.
    for (const end = Date.now() + 20_000; !/"http":"http:\/\/[^"]+"/.test(stderr) && Date.now() < end; ) await new Promise((r) => setTimeout(r, 25));
    const port = /"http":"http:\/\/[^:]+:(\d+)"/.exec(stderr)?.[1];
    assert.ok(port, `started: ${stderr}`);
    assert.ok(statSync(runEnv.DSPY_O11YD_SOCKET!).isSocket(), 'socket where the image puts it');
    // The HEALTHCHECK command itself, with the port it found.
    const [bin, flag, script] = health;
    assert.equal(bin, 'node');
    execFileSync(process.execPath, [flag!, script!.replace('4318', port)], { timeout: 5000 });
    child.kill('SIGTERM');
    const code = await new Promise((r) => child.once('exit', r));
    assert.equal(code, 0);
    assert.equal(existsSync(runEnv.DSPY_O11YD_SOCKET!), false, 'socket removed on SIGTERM');
  } finally {
    child.kill('SIGKILL');
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

// .dockerignore's patterns, as far as this repository uses them: a name at the top, or (with a
// leading `**` and slash) anywhere; `*.ext` matches a file name's end.
function dockerIgnored(path: string): boolean {
  const patterns = readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const segments = path.split('/');
  return patterns.some((p) => {
    const anywhere = p.startsWith('**/');
    const name = anywhere ? p.slice(3) : p;
    const matches = (seg: string) => (name.startsWith('*.') ? seg.endsWith(name.slice(1)) : seg === name);
    return anywhere ? segments.some(matches) : matches(segments[0]!) || (segments.length === 1 && matches(path));
  });
}

test('docker/Dockerfile: what it copies exists and reaches the build; every workspace manifest is there for npm ci', () => {
  // The host's builds and installs stay out of the context: the image makes its own.
  for (const p of ['node_modules', 'daemon/node_modules', 'proto/dist', 'daemon/dist', 'daemon/dist/tsconfig.tsbuildinfo', '.git']) {
    assert.ok(dockerIgnored(p), `.dockerignore excludes ${p}`);
  }
  const stages = dockerfile.split(/^FROM /m).slice(1);
  assert.equal(stages.length, 2);
  const workspaces = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { workspaces: string[] }).workspaces;
  for (const stage of stages) {
    const copies = stage.split('\n').filter((l) => l.startsWith('COPY ') && !l.includes('--from='));
    const sources = copies.flatMap((l) => l.slice(5).trim().split(/\s+/).slice(0, -1));
    for (const src of sources) {
      assert.ok(existsSync(join(ROOT, src)), `COPY ${src}: exists`);
      assert.equal(dockerIgnored(src), false, `COPY ${src}: not excluded by .dockerignore`);
    }
    // npm ci refuses a lockfile whose workspaces it cannot see.
    for (const ws of workspaces) assert.ok(sources.includes(`${ws}/package.json`), `${ws}/package.json copied before npm ci`);
    assert.ok(sources.includes('package-lock.json'));
  }
  // What the build stage compiles: the daemon and the projects it references, all copied.
  const build = stages[0]!;
  assert.match(build, /^RUN npx tsc -b daemon$/m);
  const refs = (JSON.parse(readFileSync(join(ROOT, 'daemon/tsconfig.json'), 'utf8')) as { references?: { path: string }[] }).references ?? [];
  for (const dir of ['daemon', ...refs.map((r) => r.path.replace(/^\.\.\//, ''))]) {
    assert.match(build, new RegExp(`^COPY ${dir} ${dir}$`, 'm'), `the build stage copies ${dir}/`);
  }
  // Nothing the daemon imports lives in the packages the image leaves out.
  for (const dir of ['daemon/src', 'proto/src']) {
    for (const f of readdirSync(join(ROOT, dir), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'))) {
      const text = readFileSync(join(ROOT, dir, f), 'utf8');
      assert.doesNotMatch(text, /from '(dspy-o11y|@dspy-o11y\/scripts)(\/[^']*)?'/, `${dir}/${f} imports only what the image installs`);
    }
  }
});

test('docker/Dockerfile: the node base image fits package.json engines', () => {
  const engines = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { engines: { node: string } }).engines.node;
  const min = /^>=\s*(\d+)(?:\.(\d+))?/.exec(engines)!;
  const [minMajor, minMinor] = [Number(min[1]), Number(min[2] ?? 0)];
  const froms = [...dockerfile.matchAll(/^FROM node:(\d+)(?:\.(\d+))?[^\s]*/gm)];
  assert.equal(froms.length, 2, 'both stages from a node image');
  assert.equal(new Set(froms.map((m) => m[1])).size, 1, 'both stages on the same Node major');
  for (const m of froms) {
    const major = Number(m[1]);
    // A major-only tag floats to that major's latest release.
    const minor = m[2] === undefined ? Infinity : Number(m[2]);
    assert.ok(major > minMajor || (major === minMajor && minor >= minMinor), `${m[0]} satisfies engines ${engines}`);
  }
});

test("docker: env names are the CLI's and the SDK's, ports and timeouts agree", () => {
  const compose = parseYaml(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8')) as {
    services: Record<string, { environment: Record<string, string>; stop_grace_period?: string }>;
  };
  const { env, health, text } = finalStage();
  const daemonEnv = new Set([...OPTIONS.flatMap((o) => [...o.env, ...(o.otlpEnv ?? [])]), 'LANGFUSE_PUBLIC_KEY', 'LANGFUSE_SECRET_KEY', 'NODE_ENV']);
  for (const name of Object.keys(env)) assert.ok(daemonEnv.has(name), `Dockerfile ENV ${name} is read by dspy-o11yd start`);
  const daemon = compose.services['dspy-o11yd']!;
  for (const name of Object.keys(daemon.environment)) assert.ok(daemonEnv.has(name), `compose dspy-o11yd: ${name} is read by dspy-o11yd start`);
  const sdkSource = readdirSync(join(ROOT, 'sdk/src'), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts'))
    .map((f) => readFileSync(join(ROOT, 'sdk/src', f), 'utf8'))
    .join('\n');
  for (const name of Object.keys(compose.services.app!.environment)) {
    assert.ok(sdkSource.includes(`'${name}'`) || sdkSource.includes(`.${name}`), `compose app: ${name} is read by the SDK`);
  }
  // One port everywhere: the image's listener, EXPOSE, the health check and compose's listener.
  const port = /:(\d+)$/.exec(env.DSPY_O11YD_HTTP!)![1]!;
  assert.match(text, new RegExp(`^EXPOSE ${port}$`, 'm'));
  assert.match(health.join(' '), new RegExp(`http://127\\.0\\.0\\.1:${port}/healthz`));
  assert.ok(daemon.environment.DSPY_O11YD_HTTP!.endsWith(`:${port}`));
  // docker stop waits long enough for the daemon's own flush.
  const grace = /^(\d+)s$/.exec(daemon.stop_grace_period ?? '10s')!;
  const shutdownMs = Number(daemon.environment.DSPY_O11YD_SHUTDOWN_TIMEOUT ?? env.DSPY_O11YD_SHUTDOWN_TIMEOUT ?? OPTIONS.find((o) => o.key === 'shutdownTimeout')!.default);
  assert.ok(Number(grace[1]) * 1000 > shutdownMs, `stop_grace_period ${grace[0]} > --shutdown-timeout ${shutdownMs} ms`);
});
