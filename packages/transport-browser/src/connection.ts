import {
  type AmpsUri,
  type Connection,
  ConnectionError,
  type ConnectionHandlers,
  DisconnectedError,
} from '@amps-ts/core-protocol';
import { FrameSplitter } from './frame-splitter.js';

/** A browser connection: a `Connection` that also tells callers its water marks. */
export interface BrowserConnection extends Connection {
  /** Above this many buffered bytes, wait for `whenDrained()` before sending more. */
  readonly highWaterMark: number;
  /** `whenDrained()` resolves once `bufferedAmount` is at or below this. */
  readonly lowWaterMark: number;
}

export interface ConnectionSettings {
  uri: AmpsUri;
  description: string;
  highWaterMark: number;
  lowWaterMark: number;
  drainPollMs: number;
  closeTimeoutMs: number;
}

const utf8 = new TextEncoder();

function toError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value));
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
  readonly #settings: ConnectionSettings;
  readonly #splitter = new FrameSplitter();
  #closing = false;
  #finished = false;
  #closeError: Error | undefined;
  #drainTimer: ReturnType<typeof setTimeout> | undefined;
  #closeTimer: ReturnType<typeof setTimeout> | undefined;
  #drainWaiters: Array<() => void> = [];

  constructor(ws: WebSocket, handlers: ConnectionHandlers, settings: ConnectionSettings) {
    this.#ws = ws;
    this.#handlers = handlers;
    this.#settings = settings;
    this.description = settings.description;
    this.highWaterMark = settings.highWaterMark;
    this.lowWaterMark = settings.lowWaterMark;
    ws.onmessage = (event) => this.#received(event.data);
    // The close event that follows an error says what happened.
    ws.onerror = () => {};
    ws.onclose = (event) => this.#finish(this.#peerCloseError(event));
  }

  get bufferedAmount(): number {
    return this.#ws.bufferedAmount + this.#splitter.pendingBytes;
  }

  send(bytes: Uint8Array): void {
    if (this.#closing || bytes.length === 0) return;
    try {
      this.#splitter.split(bytes, (frame) => this.#ws.send(frame));
    } catch (error) {
      this.close(
        new ConnectionError(`connection to ${this.#settings.uri.redacted} lost: ${toError(error).message}`, {
          cause: error,
        }),
      );
    }
  }

  whenDrained(): Promise<void> {
    if (this.#closing || this.bufferedAmount <= this.lowWaterMark) return Promise.resolve();
    const waiting = new Promise<void>((resolve) => this.#drainWaiters.push(resolve));
    // Browsers have no drain event: look again until the buffer is low enough.
    if (this.#drainWaiters.length === 1) this.#drainTimer = setTimeout(this.#pollDrain, this.#settings.drainPollMs);
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
      this.#closeTimer = setTimeout(() => this.#finish(), this.#settings.closeTimeoutMs);
    }
  }

  readonly #pollDrain = (): void => {
    this.#drainTimer = undefined;
    if (this.bufferedAmount <= this.lowWaterMark) this.#releaseDrainWaiters();
    else this.#drainTimer = setTimeout(this.#pollDrain, this.#settings.drainPollMs);
  };

  #received(data: unknown): void {
    if (this.#closing) return;
    const bytes =
      data instanceof ArrayBuffer ? new Uint8Array(data) : typeof data === 'string' ? utf8.encode(data) : undefined;
    if (bytes === undefined) return; // binaryType is 'arraybuffer': nothing else arrives
    try {
      this.#handlers.onData(bytes);
    } catch (error) {
      this.close(toError(error));
    }
  }

  #peerCloseError(event: CloseEvent): Error {
    const uri = this.#settings.uri.redacted;
    const why = `code ${event.code}${event.reason ? `, ${event.reason}` : ''}`;
    // 1006: no close frame, the socket just went away (reset, network loss).
    if (event.code === 1006 || !event.wasClean)
      return new ConnectionError(`connection to ${uri} lost (WebSocket ${why})`);
    return new DisconnectedError(`${uri} closed the connection (WebSocket ${why})`);
  }

  #finish(peerError?: Error): void {
    if (this.#finished) return;
    this.#finished = true;
    clearTimeout(this.#closeTimer);
    this.#releaseDrainWaiters();
    this.#ws.onmessage = null;
    this.#ws.onclose = null;
    const error = this.#closing ? this.#closeError : peerError;
    this.#closing = true;
    this.#handlers.onClose(error);
  }

  #releaseDrainWaiters(): void {
    clearTimeout(this.#drainTimer);
    this.#drainTimer = undefined;
    const waiters = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const resolve of waiters) resolve();
  }
}
