/**
 * Which proxy, if any, a request to a destination goes through: the scheme's proxy variable, never
 * for loopback, not for what NO_PROXY names (host names, ports, addresses, CIDR ranges), as Go
 * chooses. outbound.ts builds the dispatcher from this answer; config.ts checks the same answer.
 */
import { BlockList, isIP } from 'node:net';

/** Proxy URLs (with a scheme) and the hosts that bypass them, as {@link proxyFor} reads them. */
export interface ProxySettings {
  readonly httpProxy?: string;
  readonly httpsProxy?: string;
  readonly noProxy?: string;
}

/**
 * The proxy URL requests to `origin` go through, or undefined: reached directly. As Go (the
 * Collector) chooses: HTTPS_PROXY for https, HTTP_PROXY for http, none else (undici would send an
 * https destination through HTTP_PROXY when HTTPS_PROXY is unset); never for loopback; not for a
 * destination NO_PROXY names.
 */
export function proxyFor(origin: string, proxy: ProxySettings | undefined): string | undefined {
  const target = new URL(origin);
  const proxyUrl = target.protocol === 'https:' ? proxy?.httpsProxy : proxy?.httpProxy;
  if (!proxyUrl || isLoopbackHost(target.hostname)) return undefined;
  const noProxy = proxy?.noProxy ?? '';
  return inNoProxyRange(target.hostname, noProxy) || inNoProxyNames(target, noProxy) ? undefined : proxyUrl;
}

/**
 * NO_PROXY's host entries, matched here (undici is given none), by the rules undici's
 * EnvHttpProxyAgent has (README's NO_PROXY row):
 * `host` is itself and its subdomains (so are `.host` and `*.host`), `host:port` on that port
 * only, `*` alone all. IPv6 entries are bracketed by config-outbound.ts, as `URL.host` writes them.
 */
function inNoProxyNames(target: URL, noProxy: string): boolean {
  if (noProxy.trim() === '*') return true;
  const host = target.host.replace(/:\d*$/, '').toLowerCase();
  const port = Number.parseInt(target.port, 10) || (target.protocol === 'https:' ? 443 : 80);
  return noProxy.split(/[,\s]+/).some((entry) => {
    if (entry === '') return false;
    const withPort = /^(.+):(\d+)$/.exec(entry);
    const entryPort = withPort ? Number.parseInt(withPort[2]!, 10) : 0;
    if (entryPort !== 0 && entryPort !== port) return false;
    const name = (withPort ? withPort[1]! : entry).replace(/^\*?\./, '').toLowerCase();
    if (ipOf(name)) return sameAddress(name, target.hostname);
    return host === name || host.endsWith(`.${name}`);
  });
}

/** A host (IPv6 unbracketed) and its address family, or undefined for a name. */
function ipOf(hostname: string): { host: string; family: 'ipv4' | 'ipv6' } | undefined {
  const host = hostname.replace(/^\[|\]$/g, '');
  const family = isIP(host);
  return family === 0 ? undefined : { host, family: family === 4 ? 'ipv4' : 'ipv6' };
}

/** Whether `hostname` (bracketed if IPv6) is the IP address `address`, however each is written (`fd00:0::1` is `fd00::1`), as Go compares them. */
function sameAddress(address: string, hostname: string): boolean {
  const target = ipOf(hostname);
  const entry = ipOf(address);
  if (!target || !entry) return false;
  const one = new BlockList();
  one.addAddress(entry.host, entry.family);
  return one.check(target.host, target.family);
}

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/**
 * `localhost` or a loopback address: never proxied, as Go's net/http (the Collector, the Datadog
 * agent) decides, whatever NO_PROXY says. A proxy cannot reach this machine's loopback, so a local
 * Collector on a machine with HTTP_PROXY set would otherwise get nothing.
 */
function isLoopbackHost(hostname: string): boolean {
  const ip = ipOf(hostname);
  return hostname.toLowerCase() === 'localhost' || (ip !== undefined && LOOPBACK.check(ip.host, ip.family));
}

/**
 * A destination written as an IP address inside a CIDR range of NO_PROXY (`10.0.0.0/8`,
 * `fd00::/8`), which Go reads and {@link inNoProxyNames} does not (it compares entries as host names). As in Go,
 * a host name is not resolved to match a range.
 */
function inNoProxyRange(hostname: string, noProxy: string | undefined): boolean {
  const target = ipOf(hostname);
  if (!target || !noProxy) return false;
  const ranges = new BlockList();
  for (const entry of noProxy.split(/[,\s]+/)) {
    const m = /^([^/]+)\/(\d{1,3})$/.exec(entry);
    const base = m ? ipOf(m[1]!) : undefined;
    if (!m || !base || Number(m[2]) > (base.family === 'ipv4' ? 32 : 128)) continue;
    ranges.addSubnet(base.host, Number(m[2]), base.family);
  }
  return ranges.check(target.host, target.family);
}
