/**
 * The reader behind the SDK benchmark's floor, run as its own process: it accepts connections
 * on a Unix socket and discards what arrives, counting spans (not lines: the SDK also writes a
 * `hello` per connection and `stats` records after drops). It prints "ready"; each line `<tag>`
 * on stdin makes it print `<tag> <spans>`.
 */
import { createServer } from 'node:net';
import { SpanCounter } from './span-counter.js';

const socketPath = process.argv[2]!;
const counters: SpanCounter[] = [];
const server = createServer((socket) => {
  const counter = new SpanCounter();
  counters.push(counter);
  socket.on('data', (chunk: Buffer) => counter.add(chunk));
  socket.on('error', () => undefined);
});
server.listen(socketPath, () => process.stdout.write('ready\n'));
let rest = '';
process.stdin.setEncoding('utf8').on('data', (c: string) => {
  const lines = (rest + c).split('\n');
  rest = lines.pop()!;
  for (const tag of lines) process.stdout.write(`${tag} ${counters.reduce((n, c) => n + c.spans, 0)}\n`);
});
process.stdin.on('end', () => process.exit(0));
