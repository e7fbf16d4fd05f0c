/**
 * No Docker engine runs here, so the container is validated as far as it can be without one:
 * docker-compose.yml and docker/Dockerfile are parsed and checked against each other, and the
 * Dockerfile's own start command, environment and health check are run outside Docker, with
 * its paths moved into a temp dir.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { startFakeLangfuse } from 'dspy-o11yd/dist/test/support/fake-langfuse.js';

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
    for (let i = 0; i < 200 && !/"http":"http:\/\/[^"]+"/.test(stderr); i++) await new Promise((r) => setTimeout(r, 25));
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
