#!/usr/bin/env node
// The `dspy-o11yd` command. It lives in the source tree, not in dist/, because npm links a bin
// only if its file exists at install time: in a fresh clone `npm ci` runs before the build, and a
// bin pointing into dist/ was silently left unlinked (`npx dspy-o11yd` → "not found").
import { existsSync } from 'node:fs';

const cli = new URL('../dist/src/cli.js', import.meta.url);
if (!existsSync(cli)) {
  process.stderr.write('dspy-o11yd: not built yet: run `npm run build` at the repository root\n');
  process.exit(1);
}
await import(cli.href);
