/**
 * Load generator for benchmarks, run as its own process: loads an NDJSON file, connects to a
 * Unix socket, prints "ready", and on "go" (stdin) writes the whole file as fast as the socket
 * takes it, then prints "sent" and exits.
 */
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';

const [socketPath, file] = process.argv.slice(2);
const data = readFileSync(file!);
const CHUNK = 256 * 1024;
const socket = connect(socketPath!, () => {
  process.stdout.write('ready\n');
  process.stdin.once('data', () => {
    let pos = 0;
    const pump = () => {
      while (pos < data.length) {
        // Cut on a newline so each write carries whole records (as an SDK's coalesced write does).
        let end = Math.min(pos + CHUNK, data.length);
        if (end < data.length) end = data.lastIndexOf(10, end) + 1;
        const more = socket.write(data.subarray(pos, end));
        pos = end;
        if (!more) return void socket.once('drain', pump);
      }
      socket.end(() => {
        process.stdout.write('sent\n');
      });
    };
    pump();
  });
});
socket.on('close', () => process.exit(0));
