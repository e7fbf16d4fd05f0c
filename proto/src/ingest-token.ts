/**
 * The ingest token's rule, one for the SDK (which sends it) and the daemon (which compares it
 * with what arrives), so that a token one side takes the other takes too.
 *
 * - Leading and trailing whitespace is trimmed, wherever the token comes from: a token read from
 *   a mounted secret file usually ends with a newline, and HTTP strips the spaces around a
 *   header's value anyway, so no request could carry them.
 * - What is left must be visible ASCII, with spaces and tabs inside allowed: a line break or
 *   another control character cannot be sent in a header, and a non-ASCII character is sent as
 *   one byte by some clients (Latin-1: Node) and as two by others (UTF-8: curl in most shells),
 *   so it matched some clients and not others.
 * - Only whitespace is a mistake (an empty secret file), not "no token".
 *
 * A problem never quotes the token.
 */
export type IngestToken = { ok: true; token: string } | { ok: false; problem: string };

export function parseIngestToken(value: string): IngestToken {
  const token = value.trim();
  if (token === '') return { ok: false, problem: 'is only whitespace' };
  if (/[^\t\x20-\x7e]/.test(token)) {
    return { ok: false, problem: 'holds a character other than visible ASCII, space or tab (a line break, another control character, or a non-ASCII one), which an HTTP header cannot carry as is' };
  }
  return { ok: true, token };
}
