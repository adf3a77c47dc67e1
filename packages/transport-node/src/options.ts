import type * as net from 'node:net';
import * as tls from 'node:tls';
import { InvalidOptionsError, type Logger, MAX_TIMEOUT_MS } from '@amps-ts/core-protocol';
import type { ClientOptions, WebSocket } from 'ws';

/** TLS settings for `tcps://` and `wss://`. Certificates are verified unless `rejectUnauthorized` is false. */
export interface NodeTlsOptions {
  /** Trusted CA certificates (PEM). Replaces Node's default CA list when given. */
  ca?: string | Buffer | Array<string | Buffer>;
  /** Client certificate chain (PEM), for servers that verify clients. */
  cert?: string | Buffer | Array<string | Buffer>;
  /** Client private key (PEM). */
  key?: string | Buffer | Array<string | Buffer>;
  /** Passphrase of `key`, if it is encrypted. */
  passphrase?: string;
  /**
   * Server name for SNI and certificate verification. An IP address is only verified against:
   * RFC 6066 forbids it as SNI.
   * @default the URI's host
   */
  servername?: string;
  /**
   * Verify the server certificate against `ca` (or Node's CA list). Turn off only for tests.
   * @default true
   */
  rejectUnauthorized?: boolean;
  /**
   * Lowest TLS version accepted.
   * @default 'TLSv1.2'
   */
  minVersion?: tls.SecureVersion;
}

/** Options of {@link nodeTransport}. */
export interface NodeTransportOptions {
  /** TLS settings for `tcps://` and `wss://`. */
  tls?: NodeTlsOptions;
  /**
   * Bytes buffered (not yet handed to the kernel) above which the connection is full: callers
   * should wait for `whenDrained()` before sending more. Exposed as `connection.highWaterMark`.
   * @default 1048576 (1 MiB)
   */
  highWaterMark?: number;
  /**
   * `whenDrained()` resolves once the buffered bytes drop to this.
   * @default 262144 (256 KiB)
   */
  lowWaterMark?: number;
  /**
   * Connection attempt timeout in milliseconds: TCP connect, TLS handshake, HTTP preflight or
   * WebSocket handshake together. `connect(..., { timeoutMs })` overrides it per attempt.
   * @default 10000
   */
  connectTimeoutMs?: number;
  /**
   * How long `close()` without an error waits for the peer to finish the close before the socket
   * is destroyed, in milliseconds.
   * @default 2000
   */
  closeTimeoutMs?: number;
  /**
   * Extra HTTP headers for `http_preflight=true` connections, and for the WebSocket handshake
   * of `ws://` and `wss://` (for example `{ Cookie: 'a=1' }`).
   */
  preflightHeaders?: Record<string, string>;
  /**
   * Options passed to the `ws` client for `ws://` and `wss://` (for example `perMessageDeflate`,
   * `maxPayload`, `agent`, `headers`). TLS settings come from `tls`, the handshake timeout from
   * `connectTimeoutMs`. Unlike `ws`, `perMessageDeflate` is off unless set here, and `maxPayload`
   * defaults to the frame decoder's limit (256 MiB).
   */
  webSocket?: ClientOptions;
  /**
   * Opens TCP and Unix sockets (for example through a SOCKS or test proxy).
   * @default net.connect
   */
  netConnect?: (options: net.NetConnectOpts) => net.Socket;
  /**
   * Opens TLS sockets.
   * @default tls.connect
   */
  tlsConnect?: (options: tls.ConnectionOptions) => tls.TLSSocket;
  /**
   * The WebSocket client class.
   * @default WebSocket from `ws`
   */
  WebSocket?: typeof WebSocket;
  /** Receives warnings (URI options Node cannot apply) and debug lines. Never receives passwords. */
  logger?: Logger;
}

/** The options with every default filled in. */
export interface ResolvedOptions {
  tls: NodeTlsOptions;
  highWaterMark: number;
  lowWaterMark: number;
  connectTimeoutMs: number;
  closeTimeoutMs: number;
  preflightHeaders: Readonly<Record<string, string>>;
  webSocket: ClientOptions;
  netConnect: ((options: net.NetConnectOpts) => net.Socket) | undefined;
  tlsConnect: ((options: tls.ConnectionOptions) => tls.TLSSocket) | undefined;
  WebSocket: typeof WebSocket | undefined;
  logger: Logger | undefined;
}

export const DEFAULT_HIGH_WATER_MARK = 1024 * 1024;
export const DEFAULT_LOW_WATER_MARK = 256 * 1024;
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
export const DEFAULT_CLOSE_TIMEOUT_MS = 2_000;

function bad(why: string): never {
  throw new InvalidOptionsError(`nodeTransport: ${why}`);
}

function positiveInteger(name: string, value: unknown, fallback: number, allowZero = false): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < (allowZero ? 0 : 1)) {
    bad(`${name} must be ${allowZero ? 'a non-negative' : 'a positive'} integer, got ${String(value)}`);
  }
  return value;
}

function milliseconds(name: string, value: unknown, fallback: number, allowZero = false): number {
  const ms = positiveInteger(name, value, fallback, allowZero);
  if (ms > MAX_TIMEOUT_MS) bad(`${name} must be at most ${MAX_TIMEOUT_MS} ms (about 24.8 days), got ${ms}`);
  return ms;
}

const headerName = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** A string or an array would otherwise be read as an object (a string as headers named 0, 1, 2...). */
function plainObject(name: string, value: unknown): void {
  if (value !== undefined && (typeof value !== 'object' || value === null || Array.isArray(value))) {
    bad(`${name} must be an object, got ${Array.isArray(value) ? 'an array' : value === null ? 'null' : typeof value}`);
  }
}

/** Validates user options once, at `nodeTransport()` time, so mistakes fail early and typed. */
export function resolveOptions(options: NodeTransportOptions = {}): ResolvedOptions {
  if (typeof options !== 'object' || options === null) bad('options must be an object');
  const highWaterMark = positiveInteger('highWaterMark', options.highWaterMark, DEFAULT_HIGH_WATER_MARK);
  const lowWaterMark = positiveInteger(
    'lowWaterMark',
    options.lowWaterMark,
    Math.min(DEFAULT_LOW_WATER_MARK, highWaterMark),
    true,
  );
  if (lowWaterMark > highWaterMark)
    bad(`lowWaterMark (${lowWaterMark}) must not exceed highWaterMark (${highWaterMark})`);
  const connectTimeoutMs = milliseconds('connectTimeoutMs', options.connectTimeoutMs, DEFAULT_CONNECT_TIMEOUT_MS);
  const closeTimeoutMs = milliseconds('closeTimeoutMs', options.closeTimeoutMs, DEFAULT_CLOSE_TIMEOUT_MS, true);

  plainObject('preflightHeaders', options.preflightHeaders);
  plainObject('webSocket', options.webSocket);
  plainObject('webSocket.headers', options.webSocket?.headers);
  const preflightHeaders: Record<string, string> = {};
  for (const [name, value] of Object.entries(options.preflightHeaders ?? {})) {
    if (!headerName.test(name)) bad(`preflightHeaders: '${name}' is not a valid HTTP header name`);
    if (typeof value !== 'string' || /[\r\n\0]/.test(value)) {
      bad(`preflightHeaders: the value of '${name}' must be a string without CR, LF or NUL`);
    }
    preflightHeaders[name] = value;
  }

  const tlsOptions = options.tls ?? {};
  if (typeof tlsOptions !== 'object' || tlsOptions === null) bad('tls must be an object');
  if (tlsOptions.servername !== undefined && typeof tlsOptions.servername !== 'string') {
    bad('tls.servername must be a string');
  }
  if (tlsOptions.rejectUnauthorized !== undefined && typeof tlsOptions.rejectUnauthorized !== 'boolean') {
    bad('tls.rejectUnauthorized must be a boolean');
  }
  if (tlsOptions.passphrase !== undefined && typeof tlsOptions.passphrase !== 'string') {
    bad('tls.passphrase must be a string');
  }
  const versions = ['TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3'];
  if (tlsOptions.minVersion !== undefined && !versions.includes(tlsOptions.minVersion)) {
    bad(`tls.minVersion must be one of ${versions.join(', ')}, got ${String(tlsOptions.minVersion)}`);
  }
  for (const name of ['ca', 'cert', 'key'] as const) {
    const value = tlsOptions[name];
    const pem = (v: unknown) => typeof v === 'string' || Buffer.isBuffer(v);
    if (value !== undefined && !(Array.isArray(value) ? value.every(pem) : pem(value))) {
      bad(`tls.${name} must be PEM text (a string or Buffer, or an array of them)`);
    }
  }
  if (tlsOptions.ca !== undefined || tlsOptions.cert !== undefined || tlsOptions.key !== undefined) {
    // A certificate or key that cannot be read fails every connect the same way: say so now,
    // not as an untyped error (tcps) or a retryable ConnectionError (wss) on each attempt.
    try {
      tls.createSecureContext({
        ca: tlsOptions.ca,
        cert: tlsOptions.cert,
        key: tlsOptions.key,
        passphrase: tlsOptions.passphrase,
      });
    } catch (error) {
      bad(`tls: cannot use the certificates or key given: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  for (const name of ['netConnect', 'tlsConnect', 'WebSocket'] as const) {
    if (options[name] !== undefined && typeof options[name] !== 'function') bad(`${name} must be a function`);
  }

  return {
    tls: tlsOptions,
    highWaterMark,
    lowWaterMark,
    connectTimeoutMs,
    closeTimeoutMs,
    preflightHeaders,
    webSocket: options.webSocket ?? {},
    netConnect: options.netConnect,
    tlsConnect: options.tlsConnect,
    WebSocket: options.WebSocket,
    logger: options.logger,
  };
}
