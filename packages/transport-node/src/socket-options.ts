import * as dns from 'node:dns';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { type AmpsUri, InvalidUriError, type Logger } from '@amps-ts/core-protocol';

/** `host:port`, with brackets around IPv6 addresses. */
export function endpoint(address: string | undefined, port: number | undefined): string {
  if (!address) return '?';
  const host = address.includes(':') ? `[${address}]` : address;
  return port === undefined ? host : `${host}:${port}`;
}

/** `tcp 127.0.0.1:50123 -> 127.0.0.1:9007` (or `unix /tmp/amps.sock`), for logs. */
export function describeSocket(scheme: string, socket: net.Socket, uri: AmpsUri, suffix = ''): string {
  if (uri.scheme === 'unix') return `unix ${uri.options.path}`;
  return `${scheme} ${endpoint(socket.localAddress, socket.localPort)} -> ${endpoint(socket.remoteAddress, socket.remotePort)}${suffix}`;
}

/** The connect-time options a URI asks for: `bind` and `ip_protocol_prefer`. */
export interface DialOptions {
  localAddress?: string;
  localPort?: number;
  lookup?: net.LookupFunction;
}

/** Throws an `InvalidUriError` for a `bind` Node cannot use, which would otherwise fail as a retryable connection error. */
export function dialOptions(uri: AmpsUri): DialOptions {
  const out: DialOptions = {};
  const bind = uri.options.bind;
  if (bind !== undefined) {
    // `address`, `address:port`, `[v6]`, `[v6]:port`, or a bare IPv6 address.
    const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(bind);
    const v4WithPort = /^([^:]+):(\d+)$/.exec(bind);
    const [address, port] = bracketed
      ? [bracketed[1], bracketed[2]]
      : v4WithPort
        ? [v4WithPort[1], v4WithPort[2]]
        : [bind, undefined];
    if (net.isIP(address ?? '') === 0 || Number(port ?? 0) > 65535) {
      throw new InvalidUriError(
        `cannot connect to ${uri.redacted}: bind must be an IP address, optionally with :port ([address]:port for IPv6), got '${bind}'`,
      );
    }
    out.localAddress = address;
    if (port !== undefined) out.localPort = Number(port);
  }
  const prefer = uri.options.ip_protocol_prefer;
  if (prefer !== undefined) out.lookup = preferFamily(prefer === 'ipv6' ? 6 : 4);
  return out;
}

/** A resolver that puts addresses of the preferred family first and keeps the others as fallbacks. */
function preferFamily(family: 4 | 6): net.LookupFunction {
  return ((hostname: string, options: dns.LookupOptions, callback: (...args: unknown[]) => void) => {
    dns.lookup(hostname, { ...options, all: true }, (error, addresses) => {
      if (error) {
        callback(error, options.all ? [] : '', 0);
        return;
      }
      const sorted = [...addresses].sort((a, b) => Number(a.family !== family) - Number(b.family !== family));
      if (options.all) callback(null, sorted);
      else callback(null, sorted[0]?.address, sorted[0]?.family);
    });
  }) as unknown as net.LookupFunction;
}

/** Applies `tcp_nodelay` (on unless the URI turns it off: writes are already coalesced) and `tcp_keepalive`. */
export function applyTcpOptions(socket: net.Socket, uri: AmpsUri): void {
  socket.setNoDelay(uri.options.tcp_nodelay ?? true);
  if (uri.options.tcp_keepalive !== undefined) socket.setKeepAlive(uri.options.tcp_keepalive);
}

/** Says which URI options Node cannot apply, rather than dropping them silently. */
export function warnUnsupported(uri: AmpsUri, logger: Logger | undefined): void {
  const o = uri.options;
  const ignored: string[] = [];
  // Node has no API for SO_SNDBUF, SO_RCVBUF or SO_LINGER on TCP sockets.
  for (const key of ['tcp_sndbuf', 'tcp_rcvbuf', 'tcp_linger'] as const) if (o[key] !== undefined) ignored.push(key);
  if (uri.scheme === 'unix') {
    for (const key of ['tcp_nodelay', 'tcp_keepalive', 'bind', 'ip_protocol_prefer'] as const) {
      if (o[key] !== undefined) ignored.push(key);
    }
  }
  if (ignored.length > 0) {
    logger?.warn?.(`Node.js cannot apply ${ignored.join(', ')}; ignored`, { uri: uri.redacted, ignored });
  }
}

/**
 * The TLS options that name the server: SNI, and the name the certificate must match (by `check`).
 * RFC 6066 forbids an IP address as SNI (Node warns about one): an IP is only checked against the certificate.
 */
export function serverNameOptions(
  servername: string,
  check: NonNullable<tls.ConnectionOptions['checkServerIdentity']> = tls.checkServerIdentity,
): Pick<tls.ConnectionOptions, 'servername' | 'checkServerIdentity'> {
  if (net.isIP(servername) === 0) return { servername };
  // An empty servername sends no SNI (`ws` would otherwise fill in the host). The application's
  // own check (webSocket.checkServerIdentity: pinning, say) still decides, given that address.
  return { servername: '', checkServerIdentity: (_host, cert) => check(servername, cert) };
}
