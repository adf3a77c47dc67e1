import { InvalidUriError } from './errors.js';

export type UriScheme = 'tcp' | 'tcps' | 'ws' | 'wss' | 'unix';

const schemes: readonly UriScheme[] = ['tcp', 'tcps', 'ws', 'wss', 'unix'];

/** Connection options carried in the URI query string, validated and typed. */
export interface UriOptions {
  /** Disable Nagle's algorithm. */
  tcp_nodelay?: boolean;
  /** Socket send buffer size in bytes. */
  tcp_sndbuf?: number;
  /** Socket receive buffer size in bytes. */
  tcp_rcvbuf?: number;
  /** Enable TCP keep-alive probes. */
  tcp_keepalive?: boolean;
  /** Seconds to linger on close. */
  tcp_linger?: number;
  /** Local address (optionally `address:port`) to bind before connecting. */
  bind?: string;
  /** Which address family to prefer when a host name resolves to both. */
  ip_protocol_prefer?: 'ipv4' | 'ipv6';
  /** Send an HTTP upgrade request before AMPS traffic, to pass HTTP proxies. */
  http_preflight?: boolean;
  /** Stream compression (tcp and tcps only). */
  compression?: 'zlib';
  /** Unix-domain socket path (also accepted as the URI path, before `/amps`). */
  path?: string;
  /** Logon `opts` the client adds (for example `pretty`). */
  logon_options?: string;
}

/** A parsed AMPS connection URI. */
export interface AmpsUri {
  readonly scheme: UriScheme;
  readonly host: string;
  /** The port, or 0 for `unix://`. */
  readonly port: number;
  readonly user: string | undefined;
  /** The password from the userinfo. Never shown by `redacted`. */
  readonly password: string | undefined;
  /** `amps` (the default and only supported protocol). */
  readonly protocol: 'amps';
  /** The message type declared at logon (`json`, `fix`, ...), if the path names one. */
  readonly messageType: string | undefined;
  /** The URI path as given (used as the WebSocket request path). */
  readonly path: string;
  readonly options: Readonly<UriOptions>;
  /** The URI as given. Contains the password: never log it. */
  readonly href: string;
  /** The URI with the password replaced by `***`: safe for logs, errors and events. */
  readonly redacted: string;
}

type OptionParser = (value: string, key: string) => unknown;

const bool: OptionParser = (value, key) => {
  const v = value.toLowerCase();
  if (['1', 't', 'true', 'y', 'yes'].includes(v)) return true;
  if (['0', 'f', 'false', 'n', 'no'].includes(v)) return false;
  throw new Error(`${key} must be a boolean (true/false), got '${value}'`);
};

const uint: OptionParser = (value, key) => {
  if (!/^\d+$/.test(value)) throw new Error(`${key} must be a non-negative integer, got '${value}'`);
  return Number(value);
};

const optionParsers: Record<keyof UriOptions, OptionParser> = {
  tcp_nodelay: bool,
  tcp_sndbuf: uint,
  tcp_rcvbuf: uint,
  tcp_keepalive: bool,
  tcp_linger: uint,
  bind: (value, key) => {
    if (!/^(\[[0-9a-fA-F:.]+\]|[0-9a-fA-F:.]+)(:\d+)?$/.test(value)) {
      throw new Error(`${key} must be an IP address, optionally with :port, got '${value}'`);
    }
    return value;
  },
  ip_protocol_prefer: (value, key) => {
    const v = value.toLowerCase();
    if (v === 'ipv4' || v === 'ipv6') return v;
    throw new Error(`${key} must be ipv4 or ipv6, got '${value}'`);
  },
  http_preflight: bool,
  compression: (value, key) => {
    if (value === 'zlib') return value;
    throw new Error(`${key} must be zlib, got '${value}'`);
  },
  path: (value) => value,
  logon_options: (value) => value,
};

/** Query keys whose values are treated as secrets by `redactUri`. */
const secretQueryKey = /pass|pw|secret|token|key|auth|credential/i;

/**
 * Redacts the password of an AMPS URI string without parsing the rest (safe on malformed input):
 * the userinfo password and the value of any query option whose name looks like a secret.
 */
export function redactUri(uri: string): string {
  let out = String(uri);
  // The userinfo ends at the last `@`, wherever it is: a password may hold `/`, `?`, `#` or `@`,
  // and a user name `@` or `/`. The password starts at its first `:`. The userinfo starts after
  // `://` that ends a scheme, or at the start when there is none (`tcp:/u:pw@h`, `u:pw@h`, and
  // `tcp:/://pw@h`, a password starting with `//`): hiding too much is safe.
  const at = out.lastIndexOf('@');
  const slashes = out.indexOf('://');
  const afterScheme = slashes >= 0 && slashes < at && /^[a-z][a-z\d+.-]*$/i.test(out.slice(0, slashes));
  const colon = out.indexOf(':', afterScheme ? slashes + 3 : 0);
  if (colon >= 0 && colon < at) out = `${out.slice(0, colon + 1)}***${out.slice(at)}`;
  // The key as the query parser reads it (`p%77` is `pw`): matched on the raw text only, an
  // encoded letter would leave the value shown.
  return out.replace(/([?&][^=&#]*)=([^&#]*)/g, (match, key: string) =>
    secretQueryKey.test(key) || secretQueryKey.test(decodeQueryKey(key)) ? `${key}=***` : match,
  );
}

function decodeQueryKey(key: string): string {
  try {
    return decodeURIComponent(key.replaceAll('+', ' '));
  } catch {
    // Bad percent-encoding: each valid escape on its own.
    return key.replace(/%[0-9a-f]{2}/gi, (encoded) => String.fromCharCode(Number.parseInt(encoded.slice(1), 16)));
  }
}

function lastAmpsSegment(path: string): number {
  for (let at = path.lastIndexOf('/amps'); at >= 0; at = path.lastIndexOf('/amps', at - 1)) {
    const next = path[at + '/amps'.length];
    if (next === undefined || next === '/') return at;
    if (at === 0) break;
  }
  return -1;
}

function decode(uri: string, text: string, what: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return invalid(uri, `bad percent-encoding in the ${what}`);
  }
}

function invalid(uri: string, why: string): never {
  throw new InvalidUriError(`invalid AMPS URI '${redactUri(uri)}': ${why}`);
}

/**
 * Parses `scheme://[user[:password]@]host:port/amps[/<message type>][?option=value&...]`.
 * Unknown query options and bad values are rejected with an `InvalidUriError`.
 */
export function parseUri(uri: string): AmpsUri {
  if (typeof uri !== 'string' || uri.length === 0) {
    throw new InvalidUriError(`invalid AMPS URI: expected a non-empty string, got ${typeof uri}`);
  }
  const schemeMatch = /^([a-z][a-z0-9+.-]*):\/\//i.exec(uri);
  if (!schemeMatch) invalid(uri, 'expected scheme://host:port/amps/<message type>');
  const scheme = (schemeMatch[1] as string).toLowerCase();
  if (!schemes.includes(scheme as UriScheme)) {
    invalid(uri, `unsupported scheme '${scheme}' (expected one of ${schemes.join(', ')})`);
  }
  const rest = uri.slice(schemeMatch[0].length);
  // An `@` past the host means a user name or password holding `/`, `?` or `#`: parsed, part of
  // it would be read as the path or the query, and quoted in the errors below.
  if (rest.lastIndexOf('@') > rest.search(/[/?#]|$/)) {
    invalid(uri, "'@' after the host: percent-encode @ / ? # in a user name or password");
  }
  let parsed: URL;
  try {
    // A non-special scheme: no default ports to elide, no host rewriting.
    parsed = new URL(`amps://${rest}`);
  } catch {
    invalid(uri, 'malformed host:port (port must be 1-65535)');
  }
  const isUnix = scheme === 'unix';
  const host = parsed.hostname.replace(/^\[|\]$/g, '');
  if (!isUnix && host === '') invalid(uri, 'missing host');
  let port = 0;
  if (!isUnix) {
    if (parsed.port === '') invalid(uri, 'missing port');
    port = Number(parsed.port);
    if (!Number.isInteger(port) || port < 1 || port > 65535) invalid(uri, `port must be 1-65535, got ${parsed.port}`);
  }

  const options: Record<string, unknown> = {};
  for (const [key, value] of parsed.searchParams) {
    const parse = optionParsers[key as keyof UriOptions];
    if (!parse) {
      invalid(uri, `unknown option '${key}' (known: ${Object.keys(optionParsers).join(', ')})`);
    }
    // Which one was meant is a guess: taking the last would hide a mistake, as an unknown option would.
    if (Object.hasOwn(options, key)) invalid(uri, `option '${key}' is given more than once`);
    try {
      options[key] = parse(value, key);
    } catch (error) {
      invalid(uri, (error as Error).message);
    }
  }
  if (options.compression && scheme !== 'tcp' && scheme !== 'tcps') {
    invalid(uri, 'compression is supported on tcp and tcps only');
  }
  if (options.path !== undefined && !isUnix) invalid(uri, 'path is an option of unix:// only');

  // Path: [/<unix socket path>]/amps[/<message type>[/...]]
  const path = decode(uri, parsed.pathname, 'path');
  let messageType: string | undefined;
  if (path !== '' && path !== '/') {
    // A unix socket path may itself contain /amps/: the protocol part is the last one.
    const ampsAt = isUnix ? lastAmpsSegment(path) : path.search(/^\/amps(\/|$)/);
    if (ampsAt < 0) {
      invalid(
        uri,
        `path must be /amps or /amps/<message type>${isUnix ? ' after the socket path' : ''}, got '${path}'`,
      );
    }
    messageType = path
      .slice(ampsAt + '/amps'.length)
      .split('/')
      .filter(Boolean)[0];
    if (isUnix && ampsAt > 0 && options.path === undefined) options.path = path.slice(0, ampsAt);
  }
  if (isUnix && !options.path)
    invalid(uri, 'unix:// needs a socket path (?path=/tmp/amps.sock or unix:///tmp/amps.sock/amps/json)');

  const user = parsed.username === '' ? undefined : decode(uri, parsed.username, 'user name');
  const password = parsed.password === '' ? undefined : decode(uri, parsed.password, 'password');
  return Object.freeze({
    scheme: scheme as UriScheme,
    host: isUnix ? host || 'localhost' : host,
    port,
    user,
    password,
    protocol: 'amps' as const,
    messageType,
    path: path === '' ? '/' : path,
    options: Object.freeze(options) as UriOptions,
    href: uri,
    redacted: redactUri(uri),
  });
}
