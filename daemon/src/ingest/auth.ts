/**
 * Who may use the HTTP listener. With `--ingest-token`, every route but the probes needs
 * `Authorization: Bearer <token>`. Langfuse's own SDKs cannot send that: they send
 * `Basic base64(publicKey:secretKey)` to Langfuse's path (`/api/public/…`), so there the daemon's
 * own Langfuse keys are accepted too (an app holding the project's secret key may send to it).
 *
 * Basic credentials on Langfuse's path are checked whether or not a token is set, when the daemon
 * exports to Langfuse: a public key that is not the daemon's means the app is set up for another
 * project, and its spans would otherwise land silently in the daemon's; a wrong secret key is
 * refused too, as Langfuse would refuse it (the app would fail the day it sends to Langfuse itself,
 * or the day a token is set). An app that sends no credentials claims nothing: without a token it
 * is accepted, as on every other route.
 */
import { timingSafeEqual } from 'node:crypto';

export interface AuthOptions {
  /** `--ingest-token`, if set. */
  readonly token?: string;
  /** The daemon's Langfuse keys when it exports to Langfuse (exporter `langfuse`), else undefined. */
  readonly langfuseKeys?: { readonly publicKey: string; readonly secretKey: string };
}

/** `undefined`: allowed; a string: refused (401) with that message. Never echoes a credential. */
export type AuthVerdict = string | undefined;

const same = (given: string, expected: string): boolean => {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
};

/**
 * The verdict on one request's `Authorization` header. `langfusePath`: the request is for
 * Langfuse's API path (`/api/public/…`), where Basic credentials are understood.
 */
export function authorize(authorization: string | undefined, langfusePath: boolean, o: AuthOptions): AuthVerdict {
  // RFC 9110 §11.1: the scheme is case-insensitive.
  const m = /^(\S+) +(.*)$/.exec(authorization ?? '');
  const scheme = m?.[1]!.toLowerCase();
  const credentials = m ? m[2]!.trim() : '';
  if (langfusePath && scheme === 'basic' && o.langfuseKeys) {
    const decoded = Buffer.from(credentials, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    const publicKey = colon === -1 ? decoded : decoded.slice(0, colon);
    const secretKey = colon === -1 ? '' : decoded.slice(colon + 1);
    if (!same(publicKey, o.langfuseKeys.publicKey)) {
      return "this public key is not the daemon's LANGFUSE_PUBLIC_KEY: dspy-o11yd exports to another Langfuse project; send with the daemon's keys, or to Langfuse itself";
    }
    if (!same(secretKey, o.langfuseKeys.secretKey)) return "wrong secret key for the daemon's LANGFUSE_PUBLIC_KEY";
    return undefined;
  }
  if (o.token === undefined) return undefined;
  if (scheme === 'bearer' && same(credentials, o.token)) return undefined;
  return langfusePath && o.langfuseKeys
    ? "missing or wrong credentials: Bearer <--ingest-token>, or Basic with the daemon's Langfuse keys"
    : 'missing or wrong bearer token (--ingest-token)';
}
