import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { pino } from 'pino';
import { createLogger, LOG_BUFFER_MAX_BYTES } from '../src/log.js';

interface Destination extends NodeJS.EventEmitter {
  end(): void;
}

test('log lines waiting for their destination are bounded: past LOG_BUFFER_MAX_BYTES they are dropped, not buffered for ever', async () => {
  // Until the destination is open (and, later, while stderr is not read) every line waits in
  // memory: lines logged in one go, before the event loop runs again, all wait, as they do behind a
  // stalled stderr. Before the bound, all of them stayed buffered (a pipe nobody read: ~17 MiB of
  // heap per 100,000 `stats` records, without end).
  const log = createLogger('info', [], '/dev/null');
  const destination = (log as unknown as Record<symbol, Destination>)[pino.symbols.streamSym]!;
  let dropped = 0;
  let lineBytes = 0;
  destination.on('drop', (line: string) => {
    dropped++;
    lineBytes = Buffer.byteLength(line);
  });
  // Identical lines (same pid, 13-digit times): each one the same size.
  const lines = Math.ceil((2 * LOG_BUFFER_MAX_BYTES) / 100);
  for (let i = 0; i < lines; i++) log.warn({ transport: 'uds', dropped: 1, reason: 'buffer_full' }, 'a client reports records it dropped before sending');
  assert.ok(dropped > 0, `every one of ${lines} lines was kept waiting for the destination (none dropped)`);
  const kept = lines - dropped;
  assert.ok(kept * lineBytes <= LOG_BUFFER_MAX_BYTES, `${kept} lines of ${lineBytes} bytes kept waiting: over ${LOG_BUFFER_MAX_BYTES} bytes`);
  assert.ok(kept * lineBytes > LOG_BUFFER_MAX_BYTES / 2, 'lines within the bound are kept');
  log.flush();
  destination.end();
  await once(destination, 'close');
});
