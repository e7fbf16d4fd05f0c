/**
 * The floor for the daemon benchmark, run as its own process: a bare Node server that only
 * reads a Unix socket, splits NDJSON lines and JSON.parses each. It prints "ready", then
 * "done <lines>" once the expected number of lines has been parsed.
 */
import { createServer } from 'node:net';
import { StringDecoder } from 'node:string_decoder';

const [socketPath, expectedArg] = process.argv.slice(2);
const expected = Number(expectedArg);
let parsed = 0;
let sink = 0;
const server = createServer((socket) => {
  const decoder = new StringDecoder('utf8');
  let rest = '';
  socket.on('data', (chunk: Buffer) => {
    const text = rest + decoder.write(chunk);
    let start = 0;
    let nl;
    while ((nl = text.indexOf('\n', start)) !== -1) {
      const value = JSON.parse(text.slice(start, nl)) as { name?: string };
      sink += value.name?.length ?? 0;
      parsed++;
      start = nl + 1;
    }
    rest = text.slice(start);
    if (parsed >= expected) {
      process.stdout.write(`done ${parsed} ${sink > 0 ? '' : '!'}\n`);
      server.close();
      process.exit(0);
    }
  });
});
server.listen(socketPath, () => process.stdout.write('ready\n'));
