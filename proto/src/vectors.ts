/** The shared test vectors, for the tests of every package. */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const dir = fileURLToPath(new URL('../../vectors/', import.meta.url));

export interface InvalidVector {
  reason: string;
  line: string;
}

/** Valid records, one NDJSON line each, in the order of `vectors/valid.ndjson`. */
export function validVectorLines(): string[] {
  return readFileSync(`${dir}valid.ndjson`, 'utf8').split('\n').filter(Boolean);
}

/** Invalid lines and the reason the daemon must count each under. */
export function invalidVectors(): InvalidVector[] {
  return readFileSync(`${dir}invalid.jsonl`, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as InvalidVector);
}
