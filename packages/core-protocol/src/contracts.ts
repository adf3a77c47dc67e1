/**
 * The plugin contracts. Transports, server choosers, delay strategies and stores live in their
 * own packages and meet only here, so each can be written, tested and published alone.
 */
import type { Command } from './message.js';
import type { AmpsUri, UriScheme } from './uri.js';

/* ---------------- time, timers, randomness ---------------- */

/** Opaque timer handle returned by `Environment.setTimeout`. */
export type TimerHandle = unknown;

/**
 * Time, timers and randomness, injected so tests control them (fake clocks, seeded random).
 * Components take an optional `environment` and fall back to `defaultEnvironment`.
 */
export interface Environment {
  /** Milliseconds since an arbitrary epoch, never going back (not wall-clock time); only differences matter. */
  now(): number;
  setTimeout(callback: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
  /** A number in [0, 1). */
  random(): number;
}

interface TimerGlobals {
  setTimeout(callback: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

const timers = globalThis as unknown as TimerGlobals;

/**
 * A monotonic clock, real timers and `Math.random`, looked up at call time so fake timers work.
 * Monotonic: the wall clock steps (NTP, a resumed VM, a user), and a step back would stretch a
 * heartbeat timeout or a retry budget by as much.
 */
export const defaultEnvironment: Environment = {
  now: () => performance.now(),
  setTimeout: (callback, ms) => timers.setTimeout(callback, ms),
  clearTimeout: (handle) => timers.clearTimeout(handle),
  random: () => Math.random(),
};

/**
 * A seeded generator of numbers in [0, 1) (mulberry32): small, fast and good enough for an
 * `Environment.random` that makes tests and simulations repeat exactly. Not for cryptography.
 */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/* ---------------- logging ---------------- */

/** Packages never write to the console; pass a logger to see what they do. Fields never hold passwords. */
export interface Logger {
  debug?(message: string, fields?: Record<string, unknown>): void;
  info?(message: string, fields?: Record<string, unknown>): void;
  warn?(message: string, fields?: Record<string, unknown>): void;
  error?(message: string, fields?: Record<string, unknown>): void;
}

/* ---------------- transport ---------------- */

/**
 * Where a connection delivers what happens to it. Set at connect time so nothing is missed.
 * Handlers should not throw. If `onData` or `onActivity` throws, the connection closes with that
 * error. `onClose` comes after the connection has let go of its socket and timers: what it throws
 * is not caught, and surfaces as any event listener's would (an uncaught exception in Node).
 */
export interface ConnectionHandlers {
  /** Bytes from the server, in order, in chunks of any size. */
  onData(chunk: Uint8Array): void;
  /**
   * Optional: bytes arrived that `onData` will deliver only later, once they are whole (a large
   * WebSocket message still coming in). A heartbeat watchdog then sees a connection busy with one
   * large message as alive, not silent.
   */
  onActivity?(): void;
  /**
   * The connection is gone. Called exactly once, after the last `onData`.
   * `error` is set unless the close was asked for with `close()` and no error.
   */
  onClose(error?: Error): void;
}

/** One open byte stream to a server. Parsing AMPS is not the transport's business. */
export interface Connection {
  /** Queues bytes to send, in order. Never throws: a failed write closes the connection through `onClose`. */
  send(bytes: Uint8Array): void;
  /** Bytes accepted by `send` and not yet handed to the network. */
  readonly bufferedAmount: number;
  /** Resolves once `bufferedAmount` has dropped to the low-water mark, or the connection has closed. */
  whenDrained(): Promise<void>;
  /** Closes the connection. Idempotent; `onClose` follows, with `error` if one is given. */
  close(error?: Error): void;
  /**
   * Optional flow control: stop delivering `onData` until `resume()` (TCP then pushes back on the
   * server). Used when a consumer's bounded queue is full. Transports that cannot pause omit it.
   */
  pause?(): void;
  resume?(): void;
  /** What this connection is, for logs (`tcp 127.0.0.1:50123 -> 127.0.0.1:9007`). */
  readonly description: string;
}

export interface ConnectOptions {
  /** Aborts the connection attempt. */
  signal?: AbortSignal;
  /** Gives up with a `TimedOutError` after this many milliseconds. */
  timeoutMs?: number;
}

/**
 * A hint from the platform that the network may have come back or gone away, or the page been
 * left (`pagehide`) or restored from the back/forward cache (`pageshow`).
 */
export type TransportHint = 'online' | 'offline' | 'visible' | 'hidden' | 'pagehide' | 'pageshow';

export interface Transport {
  /** The URI schemes this transport connects to. */
  readonly schemes: readonly UriScheme[];
  /**
   * Opens a connection. Rejects with a `ConnectionError` (or `TimedOutError`, `AbortError`,
   * `InvalidUriError` for options it cannot honour); never leaves a socket behind on failure.
   */
  connect(uri: AmpsUri, handlers: ConnectionHandlers, options?: ConnectOptions): Promise<Connection>;
  /** Platform hints (browser online/visibility/pagehide/pageshow) the HA client uses to reconnect sooner. Returns an unsubscribe function. */
  onHint?(listener: (hint: TransportHint) => void): () => void;
}

/* ---------------- authentication ---------------- */

/** Supplies the logon password (or token); AMPS's Authenticator. */
/** Each call is bounded by the logon's `timeoutMs` and `signal`, as the logon command is. */
export interface Authenticator {
  /** The value to send as the logon password. */
  authenticate(user: string | undefined, password: string | undefined): string | Promise<string>;
  /** The server answered `retry`: the value to send next. `password` is what the server returned. */
  retry(user: string | undefined, password: string | undefined): string | Promise<string>;
  /**
   * The server accepted the logon. Throwing here (or returning a promise that rejects) fails the
   * logon with an `AuthenticationError` and closes the connection.
   */
  completed(user: string | undefined, password: string | undefined, reason: string | undefined): void;
}

/** Sends the URI's password as it is. */
export const defaultAuthenticator: Authenticator = {
  authenticate: (_user, password) => password ?? '',
  retry: (_user, password) => password ?? '',
  completed: () => {},
};

/* ---------------- connection states ---------------- */

/** The states an AMPS connection goes through, in AMPS's names. */
export const ConnectionState = {
  Disconnected: 'Disconnected',
  Shutdown: 'Shutdown',
  Connected: 'Connected',
  LoggedOn: 'LoggedOn',
  HeartbeatInitiated: 'HeartbeatInitiated',
  PublishReplayed: 'PublishReplayed',
  Resubscribed: 'Resubscribed',
} as const;
export type ConnectionState = (typeof ConnectionState)[keyof typeof ConnectionState];

/* ---------------- failover strategies ---------------- */

/** What a server chooser is told about an attempt. URIs are always redacted. */
export interface ConnectionInfo {
  /** The URI tried, password redacted. */
  readonly uri: string;
  /** 1 for the first attempt since the last success. */
  readonly attempt: number;
  /** Connect plus logon time in ms, on success. */
  readonly latencyMs?: number;
  /** `Environment.now()` when the attempt ended. */
  readonly at: number;
}

/** Picks the server to connect to next: AMPS's ServerChooser. */
export interface ServerChooser {
  /** The URI to try next (with its password, if any), or `undefined` when there is none. */
  getCurrentURI(): string | undefined;
  /** The authenticator for `getCurrentURI()`; `undefined` means the default (the URI's password). */
  getCurrentAuthenticator(): Authenticator | undefined;
  /** The attempt on `getCurrentURI()` failed. */
  reportFailure(error: Error, info: ConnectionInfo): void;
  /** The attempt succeeded (connected and logged on). */
  reportSuccess(info: ConnectionInfo): void;
  /** Why no server could be used: each server tried and its last error. */
  getError(): string;
  /**
   * Optional fail-back: polled while connected to `connectedUri`. Return true to have the client
   * leave that server for `getCurrentURI()` (a planned, lossless reconnect).
   */
  shouldSwitch?(connectedUri: string): boolean;
  /**
   * Optional: the move `shouldSwitch` asked for was called off before its attempt was reported
   * (`disconnect()`, a give-up), so the next attempt is an ordinary one, not that move.
   */
  reportSwitchCancelled?(): void;
}

/** How long to wait before each connection attempt: AMPS's ReconnectDelayStrategy. */
export interface ReconnectDelayStrategy {
  /**
   * Milliseconds to wait before connecting to `uri`. Throws a `RetryExhaustedError` to give up
   * (when its maximum retry time has passed).
   */
  getConnectWaitDuration(uri: string): number;
  /**
   * Start over: the waits and the retry budget begin again. HAClient calls it when a connection
   * that held drops, after giving up, and before a planned move; not on every success, so a server
   * that accepts the logon and then drops at once is still backed off from.
   */
  reset(): void;
}

/* ---------------- stores ---------------- */

/**
 * Keeps published commands until the server has persisted them, so they can be sent again after
 * a failover. The store assigns each command its sequence (`s`).
 */
export interface PublishStore {
  /**
   * Takes ownership of `command`: sets its `sequence` (the next one) and asks for `persisted`
   * acks, keeps it, and returns the sequence. The caller then sends that same object. May return
   * a promise that waits for room (a bounded store), or throw a `StoreFullError`. A durable store
   * may return one that resolves once the command is written: its `sequence`, set as it is kept,
   * tells the HA client that a disconnect must not fail that publish (it goes out later).
   */
  store(command: Command): number | Promise<number>;
  /** The server has persisted everything up to `sequence` (a persisted ack, conflated or not). */
  discardUpTo(sequence: number): void;
  /**
   * After logon: the server says it holds everything up to `sequence` (the logon ack's `s`).
   * Discards up to it and makes sure new sequences continue above it. May throw a
   * `PublishStoreGapError` when the server is behind what another server already persisted.
   */
  syncWithServer(sequence: number): void;
  /** Calls `send` for every unpersisted command, in sequence order. */
  replay(send: (command: Command) => void): void;
  unpersistedCount(): number;
  /** The highest sequence known to be persisted. */
  lastPersisted(): number;
  /** Resolves once every stored command is persisted; rejects with a `TimedOutError` after `timeoutMs`. */
  flush(timeoutMs?: number, signal?: AbortSignal): Promise<void>;
  /**
   * The server refused this one publish (a failure ack): it will never be persisted, so forget it
   * and keep every other. Without this method the HA client keeps it until a later persisted ack
   * covers it.
   */
  discard?(sequence: number): void;
  /**
   * Rejects, with `error`, every `store` waiting for room and every `flush`: the HA client gave up
   * reconnecting or was disconnected. Stored commands are kept.
   */
  cancelWaits?(error: Error): void;
}

/**
 * Tracks bookmark-subscription progress: which messages were seen and processed, to resume
 * after a failover and drop messages replayed twice.
 */
export interface BookmarkStore {
  /** Records a delivery. Returns false if this bookmark was already logged or discarded (a duplicate). */
  log(subId: string, bookmark: string): boolean;
  /** The application is done with this message. */
  discard(subId: string, bookmark: string): void;
  /** Whether the message is a duplicate of one already seen on this subscription. */
  isDuplicate(subId: string, bookmark: string): boolean;
  /**
   * The bookmark to resubscribe from (usually a per-publisher list), or `undefined` when nothing
   * is known yet: the caller then uses the subscription's own starting bookmark.
   */
  getMostRecent(subId: string): string | undefined;
  /**
   * The server reports `bookmark` persisted (a `persisted` or `completed` ack on the subscription),
   * or it is the subscription's starting bookmark. `ageMs`, when given: the server had logged that
   * position at least this long ago (a `completed` ack's position was logged before the subscribe).
   * NOW with `ageMs`: a subscription resumed from NOW was placed at the end of the server's log as
   * it was that long ago (its `processed` ack; no position is known yet).
   */
  persisted(subId: string, bookmark: string, ageMs?: number): void;
  /** Forgets one subscription, or all. */
  purge(subId?: string): void;
}

/* ---------------- subscriptions ---------------- */

/** One subscription the HA client re-enters after a reconnect. */
export interface ManagedSubscription {
  readonly subId: string;
  /** The subscribe command as first sent. On resubscribe a bookmark subscription's `bookmark` is replaced by the recovery point. */
  readonly command: Command;
}

/** Remembers live subscriptions, by `subId`, and re-enters them after a reconnect. */
export interface SubscriptionManager {
  /** Remembers a subscription, replacing any with the same `subId` (never two for one id). */
  add(subscription: ManagedSubscription): void;
  remove(subId: string): void;
  clear(): void;
  list(): readonly ManagedSubscription[];
  /**
   * Re-enters every subscription through `execute`, sent in the order they were added (several
   * may wait for their ack at once). A subscription whose resubscribe fails is handed to the
   * manager's failed-resubscribe policy. `onException` hears what the application's own code
   * (such as that policy's hook) throws, as the client's other hooks' errors are heard.
   */
  resubscribe(
    execute: (command: Command) => Promise<void>,
    options?: { signal?: AbortSignal; onException?: (error: unknown) => void },
  ): Promise<void>;
}
