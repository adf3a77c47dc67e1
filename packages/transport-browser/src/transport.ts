import {
  AbortError,
  type AmpsUri,
  ConnectionError,
  type ConnectionHandlers,
  type ConnectOptions,
  InvalidOptionsError,
  InvalidUriError,
  parseUri,
  TimedOutError,
  type Transport,
  type TransportHint,
  type UriScheme,
} from '@amps-ts/core-protocol';
import { type BrowserConnection, WebSocketConnection } from './connection.js';
import { PageHints } from './hints.js';
import { type BrowserTransportOptions, type ResolvedOptions, resolveOptions } from './options.js';

/** The browser transport: `connect` hands back a {@link BrowserConnection}. */
export interface BrowserTransport extends Transport {
  /** Opens a connection. Also takes the URI as a string. */
  connect(uri: AmpsUri | string, handlers: ConnectionHandlers, options?: ConnectOptions): Promise<BrowserConnection>;
  /** Page-lifecycle hints: `online`, `offline`, `visible`, `hidden`, `pagehide`. Returns an unsubscribe function. */
  onHint(listener: (hint: TransportHint) => void): () => void;
}

const schemes: readonly UriScheme[] = ['ws', 'wss'];

/** `host:port`, with brackets around IPv6 addresses. */
function endpoint(uri: AmpsUri): string {
  return `${uri.host.includes(':') ? `[${uri.host}]` : uri.host}:${uri.port}`;
}

/**
 * The URL the WebSocket dials: never the userinfo (the password goes in the logon; a browser
 * would also refuse credentials in a WebSocket URL), nor the client-side query options.
 */
export function webSocketUrl(uri: AmpsUri): string {
  return `${uri.scheme}://${endpoint(uri)}${uri.path}`;
}

// Socket-level URI options a page cannot apply: the browser owns the socket.
const socketOptions = [
  'tcp_nodelay',
  'tcp_sndbuf',
  'tcp_rcvbuf',
  'tcp_keepalive',
  'tcp_linger',
  'bind',
  'ip_protocol_prefer',
  'http_preflight',
] as const;

/**
 * The browser transport for `ws://` and `wss://`, on the platform `WebSocket`. Options are
 * checked here: mistakes throw an `InvalidOptionsError` at once.
 */
export function browserTransport(options?: BrowserTransportOptions): BrowserTransport {
  const resolved = resolveOptions(options);
  const hints = new PageHints(resolved.page);

  function connect(
    target: AmpsUri | string,
    handlers: ConnectionHandlers,
    connectOptions: ConnectOptions = {},
  ): Promise<BrowserConnection> {
    try {
      const uri = typeof target === 'string' ? parseUri(target) : target;
      if (typeof handlers?.onData !== 'function' || typeof handlers.onClose !== 'function') {
        throw new InvalidOptionsError('connect: handlers must have onData and onClose functions');
      }
      const timeoutMs = connectOptions.timeoutMs ?? resolved.connectTimeoutMs;
      if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
        throw new InvalidOptionsError(`connect: timeoutMs must be a positive number, got ${String(timeoutMs)}`);
      }
      if (!schemes.includes(uri.scheme)) {
        throw new InvalidUriError(
          `cannot connect to ${uri.redacted}: a browser can only open ws:// and wss://, not ${uri.scheme}://`,
        );
      }
      const ignored = socketOptions.filter((key) => uri.options[key] !== undefined);
      if (ignored.length > 0) {
        resolved.logger?.warn?.(`a browser cannot apply ${ignored.join(', ')}; ignored`, {
          uri: uri.redacted,
          ignored,
        });
      }
      return open(uri, handlers, resolved, timeoutMs, connectOptions.signal);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  return { schemes, connect, onHint: (listener) => hints.subscribe(listener) };
}

function open(
  uri: AmpsUri,
  handlers: ConnectionHandlers,
  options: ResolvedOptions,
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<BrowserConnection> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(new AbortError(`connecting to ${uri.redacted} was aborted`, { cause: signal.reason }));
      return;
    }
    const WebSocketClass = options.WebSocket ?? globalThis.WebSocket;
    if (typeof WebSocketClass !== 'function') {
      reject(new ConnectionError(`cannot connect to ${uri.redacted}: this environment has no WebSocket`));
      return;
    }
    let ws: WebSocket;
    try {
      ws = new WebSocketClass(webSocketUrl(uri), options.protocols);
    } catch (error) {
      // A malformed URL, a blocked port, or ws:// from an https:// page.
      reject(
        new ConnectionError(`cannot connect to ${uri.redacted}: ${(error as Error)?.message ?? String(error)}`, {
          cause: error,
        }),
      );
      return;
    }
    ws.binaryType = 'arraybuffer';

    let settled = false;
    const finish = (error: Error | undefined) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      ws.onopen = null;
      if (error) {
        ws.onclose = null;
        ws.onmessage = null;
        ws.close();
        reject(error);
      } else {
        resolve(
          new WebSocketConnection(ws, handlers, {
            uri,
            description: `${uri.scheme} ${endpoint(uri)}${uri.path}`,
            highWaterMark: options.highWaterMark,
            lowWaterMark: options.lowWaterMark,
            drainPollMs: options.drainPollMs,
            closeTimeoutMs: options.closeTimeoutMs,
          }),
        );
      }
    };
    const timer = setTimeout(
      () => finish(new TimedOutError(`connecting to ${uri.redacted} timed out after ${timeoutMs} ms`)),
      timeoutMs,
    );
    const onAbort = () =>
      finish(new AbortError(`connecting to ${uri.redacted} was aborted`, { cause: signal?.reason }));
    signal?.addEventListener('abort', onAbort, { once: true });
    ws.onopen = () => finish(undefined);
    // The error event carries no detail in browsers; the close event that follows has the code.
    ws.onerror = () => {};
    ws.onclose = (event) =>
      finish(
        new ConnectionError(
          `cannot connect to ${uri.redacted}: the WebSocket closed before opening (code ${event.code}${event.reason ? `, ${event.reason}` : ''})`,
        ),
      );
  });
}
