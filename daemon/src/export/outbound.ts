/**
 * How the daemon reaches its backend (Langfuse's traces and scores, an OTLP endpoint, `check`):
 * directly on one keep-alive pool, or through the proxy the standard variables name
 * (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`), with the CA and client certificate of the
 * `OTEL_EXPORTER_OTLP_*CERTIFICATE` variables. Resolved by config.ts, never read here, so an
 * exporter built in-process is not rerouted by the machine's environment.
 */
import { EnvHttpProxyAgent, Pool, type Dispatcher } from 'undici';
import { proxyFor, type ProxySettings } from './proxy-choice.js';
import type { ExportOutcome } from './types.js';

/** PEM texts: the CAs trusted instead of Node's, and the client certificate (chain) and key for mTLS. */
export interface TlsSettings {
  readonly ca?: string;
  readonly cert?: string;
  readonly key?: string;
}

export interface Outbound {
  readonly proxy?: ProxySettings;
  readonly tls?: TlsSettings;
}

export interface PoolSettings {
  readonly connections: number;
  readonly keepAliveTimeout?: number;
  readonly keepAliveMaxTimeout?: number;
}

/**
 * The dispatcher for requests to `origin`, and to it only (pass `origin` in each request). Plain
 * http targets go to an http proxy as absolute-URI requests, not CONNECT: that is what curl and Go
 * do, and what a Squid allows by default (CONNECT only to 443).
 */
export function createDispatcher(origin: string, outbound: Outbound | undefined, pool: PoolSettings): Dispatcher {
  const proxy = outbound?.proxy;
  const tls = outbound?.tls;
  const poolOptions = { pipelining: 1, ...pool };
  const options = { ...poolOptions, ...(tls && { connect: { ...tls } }) };
  const target = new URL(origin);
  const proxyUrl = proxyFor(origin, proxy);
  if (!proxy || !proxyUrl) return new Pool(origin, options);
  // '' rather than undefined: undici would fall back to process.env for a missing value.
  // requestTls: the TLS to the backend inside a CONNECT tunnel (`connect` is then the proxy's).
  // factory: undici opens the pool to an http proxy (absolute-URI requests) with none of our
  // settings (keep-alive 4 s, not 30: a new connection per batch after a pause); every pool gets them.
  const factory = (to: string | URL, opts: object) => new Pool(to, { ...opts, ...poolOptions });
  // clientFactory: the pool that sends the CONNECTs. Its answer is part of connecting, bounded as a
  // direct connect is: left to undici's 300 s headers timeout, a CONNECT the proxy never answered
  // held its connection slot that long, and exports queued behind it timed out after the proxy had recovered.
  const clientFactory = (to: string | URL, opts: object) => new Pool(to, { ...opts, headersTimeout: TUNNEL_ANSWER_TIMEOUT_MS });
  // token: undici sends a URL's credentials only with both a user and a password; Go and curl send
  // a user alone (`http://token@proxy`) too. Only this origin's proxy is given: the token is its own.
  const credentials = basicCredentials(proxyUrl);
  const only = target.protocol === 'https:' ? { httpProxy: '', httpsProxy: proxyUrl } : { httpProxy: proxyUrl, httpsProxy: '' };
  // noProxy '': proxyFor has decided, once for this destination (config.ts relies on the same answer).
  return new EnvHttpProxyAgent({ ...options, factory, clientFactory, ...(tls && { requestTls: { ...tls } }), ...only, ...(credentials && { token: credentials.authorization }), noProxy: '', proxyTunnel: false });
}

/** How long a proxy may take to answer a CONNECT: undici's own connect timeout, which a direct export has. */
const TUNNEL_ANSWER_TIMEOUT_MS = 10_000;

/**
 * `dispatcher.request`, settled when its signal aborts whatever the connection's state: undici
 * honours the signal once a connection is up, but a CONNECT the proxy never answers holds the
 * request (and the export loop) for undici's 300 s headers timeout, past --export-timeout.
 */
export function requestUntilAborted(dispatcher: Dispatcher, options: Dispatcher.RequestOptions & { signal: AbortSignal }): Promise<Dispatcher.ResponseData> {
  const { signal } = options;
  const pending = dispatcher.request(options);
  return new Promise((resolve, reject) => {
    let settled = false;
    const onAbort = () => {
      settled = true;
      reject(signal.reason);
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    pending.then(
      (res) => {
        signal.removeEventListener('abort', onAbort);
        // An answer after the abort: nobody reads it, its connection is freed.
        if (settled) void res.body.dump().catch(() => {});
        else resolve(res);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

/** Closes gracefully within `graceMs`, then forcefully (a request hung on a dead backend or proxy). */
export async function closeDispatcher(dispatcher: Dispatcher, graceMs = 2000): Promise<void> {
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    dispatcher.close().then(() => void (closed = true), () => {}),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, graceMs);
      timer.unref();
    }),
  ]);
  if (timer) clearTimeout(timer);
  if (!closed) await dispatcher.destroy().catch(() => {});
}

/** undici's errors for a 407: from an http proxy's answer to a request, and to a CONNECT. */
const PROXY_AUTH_REFUSED = /^Proxy (?:Authentication Required \(407\)|response \(407\) !== 200)/;

/**
 * A 407 from the proxy, which undici reports as an error, not an answer: our proxy credentials are
 * wrong, as a 401 means our keys are, and retrying cannot help; the loops make it permanent and
 * /readyz 503, as for a 401.
 */
export function proxyRefusal(err: unknown): Extract<ExportOutcome, { kind: 'refused' }> | undefined {
  const message = (err as { message?: unknown } | undefined)?.message;
  if (typeof message !== 'string' || !PROXY_AUTH_REFUSED.test(message)) return undefined;
  return { kind: 'refused', status: 407, body: 'the proxy refused its credentials (407 Proxy Authentication Required): check the user and password in HTTPS_PROXY / HTTP_PROXY' };
}

/** The proxy requests to `destination` use, as the startup line shows it: its origin only (no credentials). */
export function shownProxy(proxy: ProxySettings | undefined, destination: string): ProxySettings | undefined {
  // Only the one requests to the destination use: a proxy set but not used (loopback, the other
  // scheme's, NO_PROXY) is none.
  const used = proxyFor(destination, proxy);
  if (!used) return undefined;
  const origin = new URL(used).origin;
  return { ...(new URL(destination).protocol === 'https:' ? { httpsProxy: origin } : { httpProxy: origin }), noProxy: proxy?.noProxy || undefined };
}

/**
 * The proxies' credentials in every form they may appear in (decoded `user:password`, the
 * password, the `Proxy-Authorization` value undici sends): for the logger's and the exporters'
 * scrubbers, since a proxy's error page may echo the request's headers.
 */
export function proxySecrets(proxy: ProxySettings | undefined): string[] {
  return proxyCredentials(proxy).flatMap(({ url, credentials }) => {
    // A user alone is a token: the secret itself.
    const secret = credentials.password ? [credentials.password, url.password] : [credentials.user, url.username];
    return [...secret, credentials.pair, Buffer.from(credentials.pair).toString('base64')];
  });
}

/** The proxies (http's, then https's) whose URL carries credentials, with those credentials. */
function proxyCredentials(proxy: ProxySettings | undefined): { scheme: 'http' | 'https'; url: URL; credentials: BasicCredentials }[] {
  return ([['http', proxy?.httpProxy], ['https', proxy?.httpsProxy]] as const).flatMap(([scheme, u]) => {
    const credentials = u ? basicCredentials(u) : undefined;
    return credentials ? [{ scheme, url: new URL(u!), credentials }] : [];
  });
}

/** A proxy URL's credentials (a password, or a user alone), decoded, and the `Proxy-Authorization` they make. */
interface BasicCredentials {
  readonly user: string;
  readonly password: string;
  readonly pair: string;
  readonly authorization: string;
}

function basicCredentials(u: string): BasicCredentials | undefined {
  const url = new URL(u);
  if (!url.username && !url.password) return undefined;
  const user = decodeURIComponent(url.username);
  const password = decodeURIComponent(url.password);
  const pair = `${user}:${password}`;
  return { user, password, pair, authorization: `Basic ${Buffer.from(pair).toString('base64')}` };
}

/** `Proxy-Authorization` values undici sends for the proxies' URL credentials, keyed for credentialScrubber. */
export function proxyAuthorizations(proxy: ProxySettings | undefined): Record<string, string> {
  return Object.fromEntries(proxyCredentials(proxy).map(({ scheme, credentials }) => [`proxy-authorization-${scheme}`, credentials.authorization]));
}
