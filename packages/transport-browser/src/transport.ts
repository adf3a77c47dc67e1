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
  timeoutOption,
  type UriScheme,
} from '@amps-ts/core-protocol';
import { type BrowserConnection, endpoint, WebSocketConnection } from './connection.js';
import { pageHints } from './hints.js';
import { type BrowserTransportOptions, type ResolvedOptions, resolveOptions } from './options.js';

/** The browser transport: `connect` hands back a {@link BrowserConnection}. */
export interface BrowserTransport extends Transport {
  /** Opens a connection. Also takes the URI as a string. */
  connect(uri: AmpsUri | string, handlers: ConnectionHandlers, options?: ConnectOptions): Promise<BrowserConnection>;
  /** Page-lifecycle hints: `online`, `offline`, `visible`, `hidden`, `pagehide`, `pageshow` (restored from the back/forward cache). Returns an unsubscribe function. */
  onHint(listener: (hint: TransportHint) => void): () => void;
}

const schemes: readonly UriScheme[] = ['ws', 'wss'];

/**
 * The browser transport for `ws://` and `wss://`, on the platform `WebSocket`. Options are
 * checked here: mistakes throw an `InvalidOptionsError` at once.
 */
export function browserTransport(options?: BrowserTransportOptions): BrowserTransport {
  const resolved = resolveOptions(options);

  async function connect(
    target: AmpsUri | string,
    handlers: ConnectionHandlers,
    { timeoutMs = resolved.connectTimeoutMs, signal }: ConnectOptions = {},
  ): Promise<BrowserConnection> {
    const uri = typeof target === 'string' ? parseUri(target) : target;
    if (typeof handlers?.onData !== 'function' || typeof handlers.onClose !== 'function') {
      throw new InvalidOptionsError('connect: handlers must have onData and onClose functions');
    }
    timeoutOption(timeoutMs, 'connect: timeoutMs', 1);
    if (!schemes.includes(uri.scheme)) {
      throw new InvalidUriError(
        `cannot connect to ${uri.redacted}: a browser can only open ws:// and wss://, not ${uri.scheme}://`,
      );
    }
    // The socket is the browser's: URI options other than the client's own logon_options cannot apply.
    const ignored = Object.keys(uri.options).filter((key) => key !== 'logon_options');
    if (ignored.length > 0) {
      resolved.logger?.warn?.(`a browser cannot apply ${ignored.join(', ')}; ignored`, { uri: uri.redacted, ignored });
    }
    return open(uri, handlers, resolved, timeoutMs, signal);
  }

  return { schemes, connect, onHint: pageHints(resolved.page) };
}

function open(
  uri: AmpsUri,
  handlers: ConnectionHandlers,
  options: ResolvedOptions,
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<BrowserConnection> {
  const failure = (why: string, cause?: unknown) =>
    new ConnectionError(`cannot connect to ${uri.redacted}: ${why}`, { cause });
  const aborted = () => new AbortError(`connecting to ${uri.redacted} was aborted`, { cause: signal?.reason });
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(aborted());
    const WebSocketClass = options.WebSocket ?? globalThis.WebSocket;
    if (typeof WebSocketClass !== 'function') return reject(failure('this environment has no WebSocket'));
    let ws: WebSocket;
    try {
      // Never the userinfo (the password goes in the logon; browsers refuse credentials in a
      // WebSocket URL), nor the client-side query options.
      ws = new WebSocketClass(`${uri.scheme}://${endpoint(uri)}${uri.path}`, options.protocols);
    } catch (error) {
      // The browser refuses the URL itself (ws:// from an https:// page is a SecurityError, a URL
      // it cannot parse a SyntaxError): trying again cannot help, so it is not a ConnectionError.
      const name = (error as Error | undefined)?.name;
      const why = (error as Error | undefined)?.message ?? String(error);
      if (name === 'SecurityError' || name === 'SyntaxError') {
        return reject(
          new InvalidUriError(`cannot connect to ${uri.redacted}: the browser refuses it (${name}: ${why})`, {
            cause: error,
          }),
        );
      }
      return reject(failure(why, error));
    }
    ws.binaryType = 'arraybuffer';

    const finish = (error?: Error) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      ws.onopen = ws.onclose = null;
      if (error) {
        ws.close();
        reject(error);
      } else {
        resolve(new WebSocketConnection(ws, handlers, uri, options));
      }
    };
    const timer = setTimeout(
      () => finish(new TimedOutError(`connecting to ${uri.redacted} timed out after ${timeoutMs} ms`)),
      timeoutMs,
    );
    const onAbort = () => finish(aborted());
    signal?.addEventListener('abort', onAbort, { once: true });
    ws.onopen = () => finish();
    // The error event carries no detail in browsers; the close event that follows has the code.
    ws.onerror = () => {};
    ws.onclose = ({ code, reason }) =>
      finish(failure(`the WebSocket closed before opening (code ${code}${reason ? `, ${reason}` : ''})`));
  });
}
