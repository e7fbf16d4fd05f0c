/**
 * The outbound settings of the configuration (config.ts): the proxy from the standard variables,
 * read as the OpenTelemetry Collector (Go's net/http) reads them: `HTTPS_PROXY` for https
 * destinations, `HTTP_PROXY` for http ones, the upper-case name first, then the lower-case one;
 * `NO_PROXY` lists the hosts (`host`, `.domain`, `*.domain`, `host:port`, `*`, and CIDR ranges for
 * IP-address destinations) that bypass it;
 * loopback always does (export/proxy-choice.ts).
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { createSecureContext } from 'node:tls';
import type { Outbound, TlsSettings } from './export/outbound.js';
import type { ProxySettings } from './export/proxy-choice.js';

/** A variable whose value cannot work: config.ts makes it one line and exit 2. */
export interface OutboundProblem {
  readonly variable: string;
  readonly value: string;
  readonly problem: string;
}

/** The first of `names` set and not empty (trimmed), with its name. */
function firstSet(env: NodeJS.ProcessEnv, names: readonly string[]): { name: string; value: string } | undefined {
  for (const name of names) {
    const value = env[name]?.trim();
    if (value) return { name, value };
  }
  return undefined;
}

/** A proxy URL with its scheme (`proxy:3128` is `http://proxy:3128`, as curl and Go read it), or why it cannot be one. */
function proxyUrl(value: string): string | { problem: string } {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value : `http://${value}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    return { problem: 'not a valid URL' };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return { problem: `must be an http:// or https:// proxy URL, not ${url.protocol}//` };
  return url.href;
}

function resolveProxy(env: NodeJS.ProcessEnv): ProxySettings | OutboundProblem | undefined {
  const settings: { httpProxy?: string; httpsProxy?: string; noProxy?: string } = {};
  for (const [key, names] of [['httpProxy', ['HTTP_PROXY', 'http_proxy']], ['httpsProxy', ['HTTPS_PROXY', 'https_proxy']]] as const) {
    const set = firstSet(env, names);
    if (!set) continue;
    const url = proxyUrl(set.value);
    if (typeof url !== 'string') return { variable: set.name, value: set.value, problem: url.problem };
    settings[key] = url;
  }
  if (!settings.httpProxy && !settings.httpsProxy) return undefined;
  const noProxy = firstSet(env, ['NO_PROXY', 'no_proxy']);
  // Go reads a bare IPv6 address (fd00::1); proxyFor (export/proxy-choice.ts) compares entries with the
  // URL's bracketed host ([fd00::1]) and would read `fd00::1` as host `fd00:` and port 1: bracketed
  // here, matched as in Go.
  if (noProxy) settings.noProxy = noProxy.value.split(/[,\s]+/).filter(Boolean).map(noProxyEntry).join(',');
  return settings;
}

/**
 * A NO_PROXY entry as proxyFor can match it: an IPv6 address (bare, or bracketed with a port) in
 * the URL's canonical form (`[fd00::1]`), since proxyFor compares names as strings where Go compares
 * addresses (`FD00:0::1` is the same host); anything else as it is.
 */
function noProxyEntry(entry: string): string {
  const bracketed = /^\[([^\]]+)\](:\d+)?$/.exec(entry);
  const [address, port = ''] = bracketed ? [bracketed[1]!, bracketed[2]] : [entry, ''];
  return isIP(address) === 6 ? `${new URL(`http://[${address}]`).hostname}${port}` : entry;
}

export function isProblem(v: object | undefined): v is OutboundProblem {
  return v !== undefined && 'problem' in v;
}

/** Each setting's variables, the signal-specific one first (OpenTelemetry's rule). */
const TLS_VARIABLES = {
  ca: ['OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE', 'OTEL_EXPORTER_OTLP_CERTIFICATE'],
  cert: ['OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE', 'OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE'],
  key: ['OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY', 'OTEL_EXPORTER_OTLP_CLIENT_KEY'],
} as const;

/**
 * The otlp exporter's TLS files (paths to PEM files, as the OpenTelemetry spec defines them), read
 * now: a file that cannot be read, a client certificate without its key (or the reverse), or PEM
 * that TLS cannot use is bad configuration, said at start, not at every export.
 */
function resolveTls(env: NodeJS.ProcessEnv): TlsSettings | OutboundProblem | undefined {
  const tls: { ca?: string; cert?: string; key?: string } = {};
  const from: { ca?: string; cert?: string; key?: string } = {};
  for (const key of ['ca', 'cert', 'key'] as const) {
    const set = firstSet(env, TLS_VARIABLES[key]);
    if (!set) continue;
    try {
      tls[key] = readFileSync(set.value, 'utf8');
    } catch (err) {
      return { variable: set.name, value: set.value, problem: `cannot read the file (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})` };
    }
    from[key] = set.name;
  }
  if (tls.cert === undefined && tls.key === undefined && tls.ca === undefined) return undefined;
  for (const [have, need] of [['cert', 'key'], ['key', 'cert']] as const) {
    if (from[have] && !from[need]) return { variable: from[have], value: env[from[have]]!.trim(), problem: `needs ${TLS_VARIABLES[need][1]} (or ${TLS_VARIABLES[need][0]}) too, for mTLS` };
  }
  // What TLS would refuse, or silently ignore (a CA file without a certificate in it), said once.
  const unusable = (variable: string | undefined, what: string, test: () => unknown): OutboundProblem | undefined => {
    if (!variable) return undefined;
    try {
      test();
      return undefined;
    } catch (err) {
      return { variable, value: env[variable]!.trim(), problem: `${what} (${(err as Error).message})` };
    }
  };
  const problem =
    unusable(from.ca, 'not a PEM certificate', () => new X509Certificate(tls.ca!)) ??
    unusable(from.cert, 'not a PEM certificate', () => new X509Certificate(tls.cert!)) ??
    unusable(from.key, 'not a PEM private key', () => createPrivateKey(tls.key!)) ??
    unusable(from.key, 'not the key of the client certificate', () => createSecureContext({ cert: tls.cert, key: tls.key }));
  return problem ?? tls;
}

/**
 * The proxy concerns the exporters that send over HTTP (a bad HTTPS_PROXY on the machine does not
 * stop a console or file daemon); the OTEL_EXPORTER_OTLP_* TLS files the otlp exporter only, as
 * its other OTEL variables do.
 */
export function resolveOutbound(env: NodeJS.ProcessEnv, exporter: string): Outbound | OutboundProblem {
  const proxy = exporter === 'langfuse' || exporter === 'otlp' ? resolveProxy(env) : undefined;
  if (isProblem(proxy)) return proxy;
  const tls = exporter === 'otlp' ? resolveTls(env) : undefined;
  if (isProblem(tls)) return tls;
  return { ...(proxy && { proxy }), ...(tls && { tls }) };
}
