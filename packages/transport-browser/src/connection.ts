import {
  type AmpsUri,
  type Connection,
  ConnectionError,
  type ConnectionHandlers,
  DisconnectedError,
  toError,
  WebSocketFrameSplitter,
} from '@amps-ts/core-protocol';
import type { ResolvedOptions } from './options.js';

/** A browser connection: a `Connection` that also tells callers its water marks. */
export interface BrowserConnection extends Connection {
  /** Above this many buffered bytes, wait for `whenDrained()` before sending more. */
  readonly highWaterMark: number;
  /** `whenDrained()` resolves once `bufferedAmount` is at or below this. */
  readonly lowWaterMark: number;
}

const utf8 = new TextEncoder();

/** `host:port`, with brackets around IPv6 addresses. */
export function endpoint(uri: AmpsUri): string {
  return `${uri.host.includes(':') ? `[${uri.host}]` : uri.host}:${uri.port}`;
}

/**
 * An open platform WebSocket carrying AMPS frames: one frame per binary message out, messages
 * joined into one byte stream in. `onClose` comes once, after the last `onData`; nothing is
 * delivered once `close()` is called.
 */
export class WebSocketConnection implements BrowserConnection {
  readonly description: string;
  readonly highWaterMark: number;
  readonly lowWaterMark: number;
  readonly #ws: WebSocket;
  readonly #handlers: ConnectionHandlers;
  readonly #uri: AmpsUri;
  readonly #options: ResolvedOptions;
  readonly #splitter = new WebSocketFrameSplitter();
  #closing = false;
  #finished = false;
  #closeError: Error | undefined;
  #drainTimer: ReturnType<typeof setTimeout> | undefined;
  #closeTimer: ReturnType<typeof setTimeout> | undefined;
  #drainWaiters: Array<() => void> = [];

  constructor(ws: WebSocket, handlers: ConnectionHandlers, uri: AmpsUri, options: ResolvedOptions) {
    this.description = `${uri.scheme} ${endpoint(uri)}${uri.path}`;
    this.#ws = ws;
    this.#handlers = handlers;
    this.#uri = uri;
    this.#options = options;
    this.highWaterMark = options.highWaterMark;
    this.lowWaterMark = options.lowWaterMark;
    ws.onmessage = ({ data }) => {
      const bytes =
        data instanceof ArrayBuffer ? new Uint8Array(data) : typeof data === 'string' ? utf8.encode(data) : undefined;
      // binaryType is 'arraybuffer': nothing else arrives.
      if (this.#closing || bytes === undefined) return;
      try {
        handlers.onData(bytes);
      } catch (error) {
        this.close(toError(error));
      }
    };
    // The close event that follows an error says what happened.
    ws.onerror = () => {};
    ws.onclose = ({ code, reason, wasClean }) => {
      const why = `WebSocket code ${code}${reason ? `, ${reason}` : ''}`;
      // 1006: no close frame, the socket just went away (reset, network loss).
      this.#finish(
        code === 1006 || !wasClean
          ? new ConnectionError(`connection to ${uri.redacted} lost (${why})`)
          : new DisconnectedError(`${uri.redacted} closed the connection (${why})`),
      );
    };
  }

  get bufferedAmount(): number {
    return this.#ws.bufferedAmount + this.#splitter.pendingBytes;
  }

  /** Sends each whole frame as one message; holds back a frame cut off at the end until the rest comes. */
  send(bytes: Uint8Array): void {
    if (this.#closing || bytes.length === 0) return;
    try {
      this.#splitter.split(bytes, this.#sendFrame);
    } catch (error) {
      this.close(
        new ConnectionError(`connection to ${this.#uri.redacted} lost: ${toError(error).message}`, {
          cause: error,
        }),
      );
    }
  }

  readonly #sendFrame = (frame: Uint8Array): void => this.#ws.send(frame);

  // Waits on the WebSocket's own buffer only: a frame held back leaves once the caller sends the
  // rest of it, so waiting for it would never end.
  whenDrained(): Promise<void> {
    if (this.#closing || this.#ws.bufferedAmount <= this.lowWaterMark) return Promise.resolve();
    const waiting = new Promise<void>((resolve) => this.#drainWaiters.push(resolve));
    // Browsers have no drain event: look again until the buffer is low enough.
    if (this.#drainWaiters.length === 1) this.#drainTimer = setTimeout(this.#pollDrain, this.#options.drainPollMs);
    return waiting;
  }

  close(error?: Error): void {
    if (this.#closing) return;
    this.#closing = true;
    this.#closeError = error;
    this.#releaseDrainWaiters();
    try {
      this.#ws.close(1000);
    } catch {
      // Already closing or closed.
    }
    if (error) {
      // The peer is presumed dead: do not wait for its closing handshake.
      queueMicrotask(() => this.#finish());
    } else {
      this.#closeTimer = setTimeout(() => this.#finish(), this.#options.closeTimeoutMs);
    }
  }

  readonly #pollDrain = (): void => {
    if (this.#ws.bufferedAmount <= this.lowWaterMark) this.#releaseDrainWaiters();
    else this.#drainTimer = setTimeout(this.#pollDrain, this.#options.drainPollMs);
  };

  #finish(peerError?: Error): void {
    if (this.#finished) return;
    this.#finished = true;
    clearTimeout(this.#closeTimer);
    this.#releaseDrainWaiters();
    this.#ws.onmessage = this.#ws.onclose = null;
    const error = this.#closing ? this.#closeError : peerError;
    this.#closing = true;
    this.#handlers.onClose(error);
  }

  #releaseDrainWaiters(): void {
    clearTimeout(this.#drainTimer);
    for (const resolve of this.#drainWaiters.splice(0)) resolve();
  }
}
