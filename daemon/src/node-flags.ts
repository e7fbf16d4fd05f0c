/**
 * The Node.js flags the daemon runs with, read from the first line of its CLI
 * (`#!/usr/bin/env -S node …`): the one place they are written. The Dockerfile's ENTRYPOINT
 * repeats them (a test checks it), and the tests and benchmarks that start `node cli.js`
 * themselves pass them too, so every daemon runs as the installed `dspy-o11yd` does.
 *
 * `--max-semi-space-size=2` (MiB): V8's young generation may otherwise grow to 3 × 16 MiB on a
 * busy ingest thread, memory the queue's byte bound cannot see. Ingest garbage dies young (a
 * parsed line lives until it is validated), so small semi-spaces cost little CPU and keep the
 * daemon's RSS close to its queue bound (DESIGN: RSS ≤ queue bound + 100 MB).
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const DAEMON_CLI_PATH = fileURLToPath(new URL('./cli.js', import.meta.url));

export function daemonNodeFlags(cli = DAEMON_CLI_PATH): string[] {
  const first = readFileSync(cli, 'utf8').split('\n', 1)[0] ?? '';
  const m = /^#!.*\bnode((?:\s+--[\w-]+(?:=\S+)?)*)\s*$/.exec(first);
  return m ? m[1]!.trim().split(/\s+/).filter(Boolean) : [];
}
