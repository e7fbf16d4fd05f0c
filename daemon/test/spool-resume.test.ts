/**
 * The spool replay's resume marker (`<file>.resume`, replaySpool / removeSpoolFiles): it must only
 * ever apply to the file it was written for.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { removeSpoolFiles, replaySpool } from '../src/queue/spool.js';

const hello = (service: string) => JSON.stringify({ v: 1, type: 'hello', resource: { 'service.name': service } }) + '\n';
const span = (id: number) => JSON.stringify({ v: 1, type: 'span', traceId: '7'.repeat(32), spanId: id.toString(16).padStart(16, '0'), name: `s${id}` }) + '\n';

/** The text replaySpool hands over, and the files it returns. */
async function replay(dir: string) {
  let text = '';
  const skipped: string[] = [];
  const files = await replaySpool(dir, {
    begin: () => undefined,
    chunk: (bytes) => (text += bytes.toString('utf8')),
    end: () => undefined,
    skip: (path) => skipped.push(path),
  });
  return { text, files, skipped };
}

test('a resume marker left from a file since rewritten (another size) is not applied to the new one: all of it is replayed', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spool-resume-'));
  try {
    const file = join(dir, 'spool-1-1.ndjson');
    const first = hello('a') + span(1) + span(2) + span(3);
    writeFileSync(file, first);
    // The first file was read up to its third line, and those lines left the daemon.
    const readTo = hello('a').length + span(1).length + span(2).length;
    await removeSpoolFiles([{ path: file, readTo, hello: hello('a'), size: first.length }]);
    assert.ok(existsSync(`${file}.resume`));
    // The same name now holds another file (a restored backup; a clock stepped back under pid 1).
    const second = hello('b') + span(10) + span(11) + span(12) + span(13);
    writeFileSync(file, second);
    const { text } = await replay(dir);
    assert.equal(text, second);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a resume offset past the end of its file: the file is replayed whole, not removed unread', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spool-resume-'));
  try {
    const file = join(dir, 'spool-1-1.ndjson');
    const content = hello('a') + span(1);
    writeFileSync(file, content);
    writeFileSync(`${file}.resume`, JSON.stringify({ offset: content.length + 100, hello: hello('a'), size: content.length }));
    const { text, files } = await replay(dir);
    assert.equal(text, content);
    assert.deepEqual(files, [{ path: file }]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a resume marker whose spool file is gone is removed at the next replay', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spool-resume-'));
  try {
    const file = join(dir, 'spool-1-1.ndjson');
    writeFileSync(file, hello('a') + span(1) + span(2));
    await removeSpoolFiles([{ path: file, readTo: hello('a').length + span(1).length, hello: hello('a'), size: hello('a').length + 2 * span(1).length }]);
    // Removed by hand, or by a removal cut short between the file and its marker.
    unlinkSync(file);
    const other = join(dir, 'spool-2-1.ndjson');
    writeFileSync(other, hello('b') + span(5));
    const { files } = await replay(dir);
    assert.deepEqual(files, [{ path: other }]);
    assert.equal(existsSync(`${file}.resume`), false, 'stale marker left in the spool dir');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
