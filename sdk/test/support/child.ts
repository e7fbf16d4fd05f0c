import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { SdkStats } from '../../src/index.js';

export interface ChildRun {
  /** null when the child had to be killed (it did not exit by itself). */
  code: number | null;
  stdout: string;
  stderr: string;
  report: { result: { sum: number; gen: string; budget: string; otel?: { traceId: string; spanId: string } }; stats: SdkStats; exitBegan?: SdkStats } | undefined;
}

const APP = fileURLToPath(new URL('../fixtures/app.js', import.meta.url));

/**
 * Runs the fixture app; kills it after `killAfterMs` (a liveness bound, not a speed test).
 * `endStdinAfterMs`: stdin is a pipe, ended after that long (with FIXTURE_READ_STDIN=1 the app
 * reads it until then, like an interactive CLI); otherwise stdin is /dev/null. `cwd`: the app's
 * working directory (default: this process's).
 */
export function runApp(env: Record<string, string>, killAfterMs = 20_000, endStdinAfterMs?: number, cwd?: string): Promise<ChildRun> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [APP], {
      cwd,
      env: { ...process.env, DSPY_O11Y_FIXTURE: '1', ...env },
      stdio: [endStdinAfterMs === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    if (endStdinAfterMs !== undefined) setTimeout(() => child.stdin?.end(), endStdinAfterMs);
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    let killed = false;
    const timer = setTimeout(() => {
      killed = true;
      child.kill('SIGKILL');
    }, killAfterMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      let report: ChildRun['report'];
      try {
        report = JSON.parse(stdout.trim().split('\n').at(-1) ?? '') as ChildRun['report'];
      } catch {
        report = undefined;
      }
      resolve({ code: killed ? null : code, stdout, stderr, report });
    });
  });
}
