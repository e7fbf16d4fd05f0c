/**
 * A forward proxy on 127.0.0.1 for tests: absolute-URI requests (`POST http://host:port/path`)
 * for http targets, CONNECT tunnels for https ones. It records what it was asked, and the
 * `Proxy-Authorization` it got, and never passes that header on. Every target is reached on
 * 127.0.0.1 at its port, whatever its host name: tests name backends `langfuse.test:<port>`, since
 * loopback destinations never go through a proxy.
 */
import { createServer, request, type IncomingHttpHeaders } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';

export interface ProxiedRequest {
  readonly method: string;
  /** The absolute URI, or `host:port` for CONNECT. */
  readonly target: string;
  readonly proxyAuthorization: string | undefined;
}

export interface ForwardProxy {
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  readonly port: number;
  readonly seen: ProxiedRequest[];
  /** TCP connections accepted from clients since start. */
  readonly connections: () => number;
  close(): Promise<void>;
}

/**
 * `refuse`: answer every absolute-URI request with 502 and a page echoing the request's headers, as some proxies' error pages do.
 * `auth`: the `Proxy-Authorization` value required, else 407 (to requests and CONNECTs alike).
 * `holdConnects`: the first this many CONNECTs are never answered (an overloaded proxy, a firewall that drops).
 */
export async function startForwardProxy(options: { refuse?: boolean; auth?: string; holdConnects?: number } = {}): Promise<ForwardProxy> {
  let connectsToHold = options.holdConnects ?? 0;
  const seen: ProxiedRequest[] = [];
  const tunnels = new Set<Socket>();
  const withoutProxyHeaders = (headers: IncomingHttpHeaders) =>
    Object.fromEntries(Object.entries(headers).filter(([k]) => !k.startsWith('proxy-')));
  const server = createServer((req, res) => {
    const target = req.url ?? '';
    seen.push({ method: req.method ?? '', target, proxyAuthorization: req.headers['proxy-authorization'] });
    if (options.auth !== undefined && req.headers['proxy-authorization'] !== options.auth) return void req.resume().on('end', () => res.writeHead(407, { 'proxy-authenticate': 'Basic realm="test"' }).end());
    if (!/^http:\/\//i.test(target)) return void res.writeHead(400).end('forward-proxy: an absolute http:// URI is needed');
    if (options.refuse) return void req.resume().on('end', () => res.writeHead(502).end(`forward-proxy: upstream unreachable; your request: ${JSON.stringify(req.headers)}`));
    const url = new URL(target);
    const upstream = request({ host: '127.0.0.1', port: url.port || 80, method: req.method, path: `${url.pathname}${url.search}`, headers: withoutProxyHeaders(req.headers) }, (answer) => {
      // Hop-by-hop headers stay on their hop, as a proxy (Squid) does: the client sees no keep-alive hint of the upstream's.
      const { connection: _connection, 'keep-alive': _keepAlive, ...headers } = answer.headers;
      res.writeHead(answer.statusCode ?? 502, headers);
      answer.pipe(res);
    });
    upstream.on('error', () => (res.headersSent ? res.destroy() : res.writeHead(502).end('forward-proxy: upstream failed')));
    req.pipe(upstream);
  });
  server.on('connect', (req, client: Socket, head: Buffer) => {
    const target = req.url ?? '';
    seen.push({ method: 'CONNECT', target, proxyAuthorization: req.headers['proxy-authorization'] });
    if (connectsToHold > 0) {
      connectsToHold--;
      tunnels.add(client.on('error', () => {}));
      return;
    }
    if (options.auth !== undefined && req.headers['proxy-authorization'] !== options.auth) {
      return void client.end('HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n\r\n');
    }
    const colon = target.lastIndexOf(':');
    const upstream = connect(Number(target.slice(colon + 1)), '127.0.0.1', () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    for (const s of [client, upstream]) {
      tunnels.add(s);
      s.once('close', () => tunnels.delete(s));
    }
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
  });
  let connections = 0;
  server.on('connection', () => connections++);
  // No idle timeout and no `Keep-Alive: timeout=` hint, as Squid: the client's own keep-alive decides.
  server.keepAliveTimeout = 0;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    seen,
    connections: () => connections,
    close: () =>
      new Promise((resolve) => {
        for (const s of tunnels) s.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
