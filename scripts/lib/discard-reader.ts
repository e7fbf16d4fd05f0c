/**
 * The reader behind the SDK benchmark's floor, run as its own process: it accepts connections
 * on a Unix socket and discards what arrives, counting newlines (records). It prints "ready";
 * each line `<tag>` on stdin makes it print `<tag> <records>`.
 */
import { createServer } from 'node:net';

const socketPath = process.argv[2]!;
let records = 0;
const server = createServer((socket) => {
  socket.on('data', (chunk: Buffer) => {
    let at = chunk.indexOf(10);
    while (at !== -1) {
      records++;
      at = chunk.indexOf(10, at + 1);
    }
  });
  socket.on('error', () => undefined);
});
server.listen(socketPath, () => process.stdout.write('ready\n'));
let rest = '';
process.stdin.setEncoding('utf8').on('data', (c: string) => {
  const lines = (rest + c).split('\n');
  rest = lines.pop()!;
  for (const tag of lines) process.stdout.write(`${tag} ${records}\n`);
});
process.stdin.on('end', () => process.exit(0));
