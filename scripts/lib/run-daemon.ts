/** Start the real `dspy-o11yd` CLI as a child process (demo, benchmarks) and wait for its socket. */
import { spawn, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';

export const DAEMON_CLI = fileURLToPath(new URL('../../../daemon/dist/src/cli.js', import.meta.url));

export interface DaemonChild {
  child: ChildProcess;
  socket: string;
  /** `http://127.0.0.1:port` when the daemon listens on HTTP (read from its startup line). */
  httpUrl: string | undefined;
  stderr(): string;
  stop(): Promise<number | null>;
}

/**
 * `nodeArgs`: flags for node itself, before the script (e.g. `--cpu-prof`, not allowed in NODE_OPTIONS).
 * `wrapper`: a command the daemon runs under (e.g. `['chrt', '--idle', '0']`), found on PATH.
 */
/**
 * Whether the daemon accepts on `socket`. Not whether the file exists: it appears at bind(), a
 * moment before listen(), and a client connecting in between is refused (2 of 200 in a loop).
 */
export function accepts(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = connect(socket);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}

export async function runDaemon(socket: string, args: string[], env: NodeJS.ProcessEnv, nodeArgs: string[] = [], wrapper: readonly string[] = []): Promise<DaemonChild> {
  const argv = [process.execPath, ...nodeArgs, DAEMON_CLI, 'start', '--socket', socket, ...args];
  const [command, ...rest] = [...wrapper, ...argv];
  const child = spawn(command, rest, { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (err = (err + c).slice(-50_000)));
  child.stdout!.resume();
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  // One deadline for the whole start, generous: a loaded machine (a CI runner running the tests)
  // starts a node process slowly. The HTTP address got 2 s of its own after the socket, and a
  // daemon that took longer came back without it.
  const deadline = Date.now() + 30_000;
  const wantHttp = args.includes('--http') && args[args.indexOf('--http') + 1] !== '';
  let httpUrl: string | undefined;
  for (;;) {
    const listening = await accepts(socket);
    if (wantHttp) httpUrl = /"http":"(http:\/\/[^"]+)"/.exec(err)?.[1];
    if (listening && (!wantHttp || httpUrl)) break;
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`dspy-o11yd did not start:\n${err}`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  return {
    child,
    socket,
    httpUrl,
    stderr: () => err,
    stop: () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}
