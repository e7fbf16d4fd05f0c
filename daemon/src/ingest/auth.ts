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
import { oncePer, type Logger } from '../log.js';

export interface AuthOptions {
  /** `--ingest-token`, if set. */
  readonly token?: string;
  /** The daemon's Langfuse keys when it exports to Langfuse (exporter `langfuse`), else undefined. */
  readonly langfuseKeys?: { readonly publicKey: string; readonly secretKey: string };
}

/**
 * Why a request was refused, one per case `authorize()` tells apart: `unauthorized` (no valid
 * bearer token, and on Langfuse's path no Basic credentials either), `wrong_public_key` (Basic
 * with a public key not the daemon's: the app is set up for another project, or another key pair),
 * `wrong_secret_key` (the daemon's public key with another secret).
 */
export type RefusalReason = 'unauthorized' | 'wrong_public_key' | 'wrong_secret_key';

/** A refusal (401): its reason and the message answered. The message never echoes a credential. */
export interface Refusal {
  readonly reason: RefusalReason;
  readonly message: string;
}

/** `undefined`: allowed; else refused (401). */
export type AuthVerdict = Refusal | undefined;

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
      return {
        reason: 'wrong_public_key',
        message: "this public key is not the daemon's LANGFUSE_PUBLIC_KEY: dspy-o11yd exports to another Langfuse project; send with the daemon's keys, or to Langfuse itself",
      };
    }
    if (!same(secretKey, o.langfuseKeys.secretKey)) return { reason: 'wrong_secret_key', message: "wrong secret key for the daemon's LANGFUSE_PUBLIC_KEY" };
    return undefined;
  }
  if (o.token === undefined) return undefined;
  if (scheme === 'bearer' && same(credentials, o.token)) return undefined;
  return {
    reason: 'unauthorized',
    message: langfusePath && o.langfuseKeys
      ? "missing or wrong credentials: Bearer <--ingest-token>, or Basic with the daemon's Langfuse keys"
      : 'missing or wrong bearer token (--ingest-token)',
  };
}

/** A warning about refused requests at most this often per reason (the counts are exact in the metric). */
export const REFUSAL_LOG_MS = 60_000;

/** Where a refused request came from and went; nothing of its credentials. */
export interface RefusedRequest {
  readonly transport: string;
  readonly method: string;
  readonly path: string;
  readonly remoteAddress: string;
  /** The `Authorization` scheme sent: `none`, `bearer`, `basic` or `other` (never its value). */
  readonly scheme: string;
}

/**
 * Logs refusals: a client refused at every request (a wrong token in a loop, a scanner) must not
 * write the log at that rate, so per reason one line at the first refusal, then at most one per
 * `gate()`'s interval, with how many were refused for that reason since the last line.
 */
export function refusalWarner(log: Pick<Logger, 'warn'>, gate: () => () => boolean = () => oncePer(REFUSAL_LOG_MS)): (refusal: Refusal, request: RefusedRequest) => void {
  const perReason = new Map<RefusalReason, { open: () => boolean; refused: number }>();
  return (refusal, request) => {
    let r = perReason.get(refusal.reason);
    if (!r) perReason.set(refusal.reason, (r = { open: gate(), refused: 0 }));
    r.refused++;
    if (!r.open()) return;
    log.warn({ ...request, reason: refusal.reason, refused: r.refused }, `HTTP request refused (401): ${refusal.message}`);
    r.refused = 0;
  };
}

/** The scheme of an `Authorization` header, from a fixed set (a log must not carry what a client made up). */
export function schemeOf(authorization: string | undefined): string {
  if (!authorization) return 'none';
  const scheme = /^\S+/.exec(authorization)?.[0]?.toLowerCase();
  return scheme === 'bearer' || scheme === 'basic' ? scheme : 'other';
}
