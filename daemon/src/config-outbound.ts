/**
 * The outbound settings of the configuration (config.ts): the proxy from the standard variables,
 * read as the OpenTelemetry Collector (Go's net/http) reads them: `HTTPS_PROXY` for https
 * destinations, `HTTP_PROXY` for http ones, the upper-case name first, then the lower-case one;
 * `NO_PROXY` lists the hosts (`host`, `.domain`, `*.domain`, `host:port`, `*`) that bypass it.
 */
import type { Outbound, ProxySettings } from './export/outbound.js';

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

export function resolveProxy(env: NodeJS.ProcessEnv): ProxySettings | OutboundProblem | undefined {
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
  if (noProxy) settings.noProxy = noProxy.value;
  return settings;
}

export function isProblem(v: object | undefined): v is OutboundProblem {
  return v !== undefined && 'problem' in v;
}

export function resolveOutbound(env: NodeJS.ProcessEnv): Outbound | OutboundProblem {
  const proxy = resolveProxy(env);
  if (isProblem(proxy)) return proxy;
  return proxy ? { proxy } : {};
}
