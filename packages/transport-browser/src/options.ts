import { InvalidOptionsError, type Logger, MAX_TIMEOUT_MS } from '@amps-ts/core-protocol';

/** What page-lifecycle hints are read from. */
export interface PageEventSource {
  /** Fires `online`, `offline`, `pagehide` and `pageshow`. */
  window?: EventTarget;
  /** Fires `visibilitychange`; `visibilityState` says which way. */
  document?: EventTarget & { readonly visibilityState: string };
}

/** Options of {@link browserTransport}. */
export interface BrowserTransportOptions {
  /**
   * The WebSocket class (for example one from a test double or a polyfill).
   * @default globalThis.WebSocket
   */
  WebSocket?: typeof WebSocket;
  /** WebSocket subprotocols to offer in the handshake. */
  protocols?: string | string[];
  /**
   * Bytes buffered (`WebSocket.bufferedAmount`) above which the connection is full: callers
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
   * How often `whenDrained()` looks at `bufferedAmount`, in milliseconds: browsers have no
   * drain event. Background tabs may stretch it to a second or more.
   * @default 10
   */
  drainPollMs?: number;
  /**
   * Connection attempt timeout in milliseconds (the WebSocket handshake).
   * `connect(..., { timeoutMs })` overrides it per attempt.
   * @default 10000
   */
  connectTimeoutMs?: number;
  /**
   * How long `close()` without an error waits for the WebSocket closing handshake before
   * `onClose` is called anyway, in milliseconds.
   * @default 2000
   */
  closeTimeoutMs?: number;
  /**
   * Where `onHint` listens for `online`, `offline`, `visibilitychange`, `pagehide` and `pageshow`.
   * @default the global `window` (or worker scope) and `document`, when present
   */
  page?: PageEventSource;
  /** Receives warnings (URI options a browser cannot apply). Never receives passwords. */
  logger?: Logger;
}

/** The options with every number checked and defaulted. */
export type ResolvedOptions = BrowserTransportOptions &
  Required<
    Pick<
      BrowserTransportOptions,
      'highWaterMark' | 'lowWaterMark' | 'drainPollMs' | 'connectTimeoutMs' | 'closeTimeoutMs'
    >
  >;

export const DEFAULT_HIGH_WATER_MARK = 1024 * 1024;
export const DEFAULT_LOW_WATER_MARK = 256 * 1024;
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
export const DEFAULT_CLOSE_TIMEOUT_MS = 2_000;
export const DEFAULT_DRAIN_POLL_MS = 10;

function bad(why: string): never {
  throw new InvalidOptionsError(`browserTransport: ${why}`);
}

function integer(name: string, value: unknown, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || (value as number) < min) {
    bad(`${name} must be an integer of at least ${min}, got ${String(value)}`);
  }
  return value as number;
}

function milliseconds(name: string, value: unknown, fallback: number, min: number): number {
  const ms = integer(name, value, fallback, min);
  if (ms > MAX_TIMEOUT_MS) bad(`${name} must be at most ${MAX_TIMEOUT_MS} ms (about 24.8 days), got ${ms}`);
  return ms;
}

/** Checked here: otherwise the first `onHint` would throw a TypeError, and no later one would listen. */
function checkPage(page: unknown): void {
  if (page === undefined) return;
  if (typeof page !== 'object' || page === null) bad('page must be an object');
  for (const name of ['window', 'document'] as const) {
    const target = (page as PageEventSource)[name];
    if (target !== undefined && typeof target?.removeEventListener !== 'function')
      bad(`page.${name} must be an EventTarget`);
  }
}

/** Validates user options once, at `browserTransport()` time. */
export function resolveOptions(options: BrowserTransportOptions = {}): ResolvedOptions {
  if (typeof options !== 'object' || options === null) bad('options must be an object');
  const { WebSocket, protocols } = options;
  if (WebSocket !== undefined && typeof WebSocket !== 'function') bad('WebSocket must be a class');
  if (
    protocols !== undefined &&
    !(Array.isArray(protocols) ? protocols : [protocols]).every((p) => typeof p === 'string')
  ) {
    bad('protocols must be a string or an array of strings');
  }
  checkPage(options.page);
  const highWaterMark = integer('highWaterMark', options.highWaterMark, DEFAULT_HIGH_WATER_MARK, 1);
  const lowWaterMark = integer(
    'lowWaterMark',
    options.lowWaterMark,
    Math.min(DEFAULT_LOW_WATER_MARK, highWaterMark),
    0,
  );
  if (lowWaterMark > highWaterMark) {
    bad(`lowWaterMark (${lowWaterMark}) must not exceed highWaterMark (${highWaterMark})`);
  }
  return {
    ...options,
    highWaterMark,
    lowWaterMark,
    drainPollMs: milliseconds('drainPollMs', options.drainPollMs, DEFAULT_DRAIN_POLL_MS, 1),
    connectTimeoutMs: milliseconds('connectTimeoutMs', options.connectTimeoutMs, DEFAULT_CONNECT_TIMEOUT_MS, 1),
    closeTimeoutMs: milliseconds('closeTimeoutMs', options.closeTimeoutMs, DEFAULT_CLOSE_TIMEOUT_MS, 0),
  };
}
