import {
  type AmpsUri,
  type Connection,
  type ConnectionHandlers,
  DisconnectedError,
  toError,
} from '@amps-ts/core-protocol';
import { connectionLost } from './errors.js';

/** A Node connection: a `Connection` that also tells callers its water marks. */
export interface NodeConnection extends Connection {
  /** Above this many buffered bytes, wait for `whenDrained()` before sending more. */
  readonly highWaterMark: number;
  /** `whenDrained()` resolves once `bufferedAmount` is at or below this. */
  readonly lowWaterMark: number;
  pause(): void;
  resume(): void;
}

export interface ConnectionSettings {
  uri: AmpsUri;
  description: string;
  highWaterMark: number;
  lowWaterMark: number;
  closeTimeoutMs: number;
}

/**
 * What every Node connection shares: one `onClose`, after the last `onData`; no delivery once
 * `close()` is called; a bounded graceful close; and `whenDrained()` waiters released at the
 * low-water mark or on close. Subclasses supply the socket operations.
 */
export abstract class BaseConnection implements NodeConnection {
  abstract pause(): void;
  abstract resume(): void;
  readonly description: string;
  readonly highWaterMark: number;
  readonly lowWaterMark: number;
  // Private: a property, or even a getter, would show the password (in the parsed URI) to
  // util.inspect and JSON.stringify of the connection. Subclasses get the redacted URI only.
  readonly #uri: AmpsUri;
  readonly #handlers: ConnectionHandlers;
  readonly #closeTimeoutMs: number;
  #closing = false;
  #closeError: Error | undefined;
  #finished = false;
  #closeTimer: ReturnType<typeof setTimeout> | undefined;
  #drainWaiters: Array<() => void> = [];

  constructor(handlers: ConnectionHandlers, settings: ConnectionSettings) {
    this.#handlers = handlers;
    this.#uri = settings.uri;
    this.description = settings.description;
    this.highWaterMark = settings.highWaterMark;
    this.lowWaterMark = settings.lowWaterMark;
    this.#closeTimeoutMs = settings.closeTimeoutMs;
  }

  /** The server URI, password redacted. */
  protected get redactedUri(): string {
    return this.#uri.redacted;
  }

  /** The error for an open connection that failed with `error`. */
  protected lost(error: unknown): Error {
    return connectionLost(this.#uri, error);
  }

  abstract get bufferedAmount(): number;
  /** The part of `bufferedAmount` that drains without more sends: what `whenDrained()` waits for. */
  protected get drainingAmount(): number {
    return this.bufferedAmount;
  }
  /** Queues bytes on the socket. May throw; the connection then closes with that error. */
  protected abstract write(bytes: Uint8Array): void;
  /** Starts a graceful close: flush, then tell the peer. */
  protected abstract end(): void;
  /** Closes now, dropping whatever is buffered. */
  protected abstract destroy(): void;

  send(bytes: Uint8Array): void {
    if (this.#closing || bytes.length === 0) return;
    try {
      this.write(bytes);
    } catch (error) {
      this.close(this.lost(error));
    }
  }

  whenDrained(): Promise<void> {
    if (this.#closing || this.drainingAmount <= this.lowWaterMark) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  close(error?: Error): void {
    if (this.#closing) {
      // A graceful close under way is cut short by a close with an error: destroyed at once.
      if (error && !this.#finished && this.#closeError === undefined) {
        this.#closeError = error;
        this.destroy();
      }
      return;
    }
    this.#closing = true;
    this.#closeError = error;
    this.#releaseDrainWaiters();
    if (error) {
      this.destroy();
    } else {
      // A paused socket would never read the peer's answer to the close; what arrives is dropped.
      this.resume();
      this.end();
      this.closeStarted();
    }
  }

  /** A close is under way, begun by either side: a peer that never finishes it must not hold the socket open. */
  protected closeStarted(): void {
    if (this.#finished || this.#closeTimer !== undefined) return;
    this.#closeTimer = setTimeout(() => this.destroy(), this.#closeTimeoutMs);
  }

  /** Hands bytes from the peer to `onData`, unless the connection is closing. */
  protected received(chunk: Uint8Array): void {
    if (this.#closing) return;
    try {
      this.#handlers.onData(chunk);
    } catch (error) {
      this.close(toError(error));
    }
  }

  /** Bytes arrived that `received` will hand over only once they are whole. */
  protected active(): void {
    if (this.#closing) return;
    try {
      this.#handlers.onActivity?.();
    } catch (error) {
      this.close(toError(error));
    }
  }

  /** Some buffered bytes reached the kernel. */
  protected flushed(): void {
    if (this.#drainWaiters.length > 0 && this.drainingAmount <= this.lowWaterMark) this.#releaseDrainWaiters();
  }

  /**
   * The socket is gone. `peerError` explains why when the close was not asked for; without one
   * the peer closed cleanly, which is still an error to the caller.
   */
  protected finished(peerError?: Error): void {
    if (this.#finished) return;
    this.#finished = true;
    clearTimeout(this.#closeTimer);
    this.#releaseDrainWaiters();
    const error = this.#closing
      ? this.#closeError
      : (peerError ?? new DisconnectedError(`${this.redactedUri} closed the connection`));
    this.#closing = true;
    this.#handlers.onClose(error);
  }

  #releaseDrainWaiters(): void {
    const waiters = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const resolve of waiters) resolve();
  }
}
