/**
 * Preloaded into a daemon under test (`node --import <this file>`), with DSPY_TEST_STUCK_SCORES
 * set: every request to Langfuse's scores API hangs for ever and ignores its abort signal, as a
 * send stuck below the HTTP client would. The shutdown must then stop waiting for the score sender
 * (its time bound) and still spool or count every score it held.
 */
import { Pool } from 'undici';

if (process.env.DSPY_TEST_STUCK_SCORES) {
  const request = Pool.prototype.request;
  Pool.prototype.request = function (this: Pool, options: Parameters<Pool['request']>[0], ...rest: unknown[]) {
    if (String(options.path).includes('/api/public/scores')) return new Promise(() => undefined);
    return (request as (...args: unknown[]) => unknown).call(this, options, ...rest);
  } as Pool['request'];
}
