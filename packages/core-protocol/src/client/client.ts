import { Bookmarks, isBookmarkRange } from '../bookmarks.js';
import {
  type Authenticator,
  type Connection,
  ConnectionState,
  defaultAuthenticator,
  type Environment,
  type Logger,
  type TimerHandle,
  type Transport,
} from '../contracts.js';
import { DEFAULT_MAX_FRAME_SIZE, MessageDecoder } from '../decoder.js';
import {
  AmpsError,
  AuthenticationError,
  ConnectionError,
  codeForReason,
  DisconnectedError,
  errorFromReason,
  InvalidOptionsError,
  InvalidUriError,
  isRefusal,
  ProtocolError,
  SlowConsumerError,
  SubscriptionAlreadyExistsError,
  TimedOutError,
  toError,
} from '../errors.js';
import type { AckType, CommandName } from '../fields.js';
import { type Command, forSubscription, type Message } from '../message.js';
import { type CommandOptions, canPause, formatOptions, mergeOptions, parseOptions } from '../options.js';
import { type AmpsUri, parseUri } from '../uri.js';
import {
  bookmarkOption,
  checkFrameSize,
  checkPublish,
  countOption,
  environmentOption,
  flushAckTypeOption,
  heartbeatOption,
  mayExceedFrameSize,
  signalOption,
  timeoutOption,
  waitForOption,
} from './checks.js';
import { Outbox } from './outbox.js';
import { type MessageHandler, MessageStream } from './stream.js';
import { type QueryStats, SowQuery, Subscription, statsOf } from './subscription.js';
import { deadline, deferred, throwIfAborted } from './waiters.js';

/** The library version sent at logon. */
export const CLIENT_VERSION = '0.1.0:amps-ts';

const FLUSH_BYTES = 64 * 1024;
const MAX_LOGON_RETRIES = 3;

export interface ClientOptions {
  /** How bytes reach the server: `nodeTransport()`, `browserTransport()`, or your own. */
  transport: Transport;
  /** Clock, timers and randomness (tests inject fakes). @default defaultEnvironment */
  environment?: Environment;
  logger?: Logger;
  /**
   * Largest frame accepted from the server, and sent to it, in bytes: a command whose frame would
   * be longer is refused with an `InvalidOptionsError` rather than sent. @default 256 MiB
   */
  maxFrameSize?: number;
  /**
   * How long a command waits for its ack; 0 waits forever (and leaves `connect` to the
   * transport's own connect timeout). @default 10_000
   */
  commandTimeoutMs?: number;
  /** Bytes buffered for sending above which `publish` returns a promise to await. @default 1 MiB */
  sendHighWaterMark?: number;
  /** Messages buffered for an async iterator that is not keeping up. @default 1024 */
  maxQueue?: number;
  /** Queue acknowledgements sent together in one `sow_delete`. @default 1 */
  ackBatchSize?: number;
  /** Longest a queue acknowledgement waits for its batch to fill, in ms. @default 1000 */
  ackTimeoutMs?: number;
  /** Sees (and may replace) every byte chunk, `in` after receipt and `out` before sending. */
  transportFilter?: (bytes: Uint8Array, direction: 'in' | 'out') => Uint8Array | undefined;
  /** The handler of last resort for messages no subscription and no unhandled-message listener took. */
  lastChanceMessageHandler?: (message: Message) => void;
}

export interface ConnectOptions {
  signal?: AbortSignal;
  /** @default the client's commandTimeoutMs; 0 means the transport's own connect timeout */
  timeoutMs?: number;
}

export interface LogonOptions {
  /** Supplies the password; defaults to the URI's password. */
  authenticator?: Authenticator;
  /** Opaque (base64) value the server logs with this session. */
  correlationId?: string;
  /** Logon options, e.g. `{ ackConflation: '100ms' }` or `'pretty'`. */
  options?: string | CommandOptions;
  /** @default the client's commandTimeoutMs */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface LogonResult {
  /** The last sequence the server holds from this client name (publish stores resume above it). */
  sequence: number;
  /** The server's last bookmark for this client name. */
  bookmark: string | undefined;
  serverVersion: string | undefined;
  /** The server's hash of this client name: the publisher part of its bookmarks. */
  nameHash: string | undefined;
}

export interface PublishOptions {
  /** Publisher sequence (set by publish stores). */
  sequence?: number;
  /** SOW expiration, in seconds. */
  expiration?: number;
  correlationId?: string;
  /** Explicit SOW key, for topics that accept user keys. */
  sowKey?: string;
  /** Acks to request; failures arrive at `onFailedWrite`. */
  ackType?: string;
  commandId?: string;
}

export interface CommandWaitOptions {
  /** @default the client's commandTimeoutMs */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface SubscribeOptions extends CommandWaitOptions {
  filter?: string;
  /** @default a generated id */
  subId?: string;
  /** Start a bookmark replay here (`Bookmarks.EPOCH`, a bookmark, a list, a timestamp). */
  bookmark?: string;
  options?: string | CommandOptions;
  /** Callback mode. Without it, iterate the returned subscription. */
  onMessage?: MessageHandler<Message>;
  /** Iterator mode: messages buffered before flow control. @default the client's maxQueue */
  maxQueue?: number;
  /** Acks for the subscription's route beyond `processed` (e.g. `completed`, `persisted` for bookmark subscriptions). */
  ackTypes?: AckType[];
  /** Receives acks routed to this subscription (completed, persisted, ...). */
  onAck?: (ack: Message) => void;
  /** Acknowledge queue messages automatically once handled (handler returned or its promise resolved; in iterator mode, when the next message is requested). */
  autoAck?: boolean;
  /** Queue subscriptions: messages leased at once. */
  maxBacklog?: number;
  /** sow_and_subscribe: records per `sow` batch. @default 10 */
  batchSize?: number;
  topN?: number;
  orderBy?: string;
}

export interface SowOptions extends CommandWaitOptions {
  filter?: string;
  /** @default a generated id */
  queryId?: string;
  /** Records per `sow` batch. @default 10 */
  batchSize?: number;
  topN?: number;
  orderBy?: string;
  sowKeys?: string[];
  bookmark?: string;
  options?: string | CommandOptions;
  onMessage?: MessageHandler<Message>;
  maxQueue?: number;
}

export type SowDeleteTarget = { filter: string } | { keys: string[] } | { data: Uint8Array | string };

/** The `sow_delete` for `target`, no ack asked for; refuses a target with not exactly one form. */
export function sowDeleteCommand(topic: string, target: SowDeleteTarget): Command {
  if (typeof topic !== 'string' || topic === '') throw new InvalidOptionsError('sowDelete needs a topic');
  const command: Command = { command: 'sow_delete', topic };
  const t = target as Partial<{ filter: string; keys: string[]; data: Uint8Array | string }>;
  const forms = [t.filter !== undefined, t.keys !== undefined, t.data !== undefined].filter(Boolean).length;
  if (forms !== 1) throw new InvalidOptionsError('sowDelete takes exactly one of { filter }, { keys } or { data }');
  if (t.filter !== undefined) command.filter = t.filter;
  if (t.keys !== undefined) command.sowKeys = t.keys.join(',');
  if (t.data !== undefined) command.data = t.data;
  return command;
}

export interface AckOptions {
  /** Return the message to the queue instead of removing it. */
  cancel?: boolean;
  /** Expire the message now. */
  expire?: boolean;
}

export interface ExecuteOptions extends CommandWaitOptions {
  /** Deliveries routed to this command's `sub_id`/`query_id` (defaults to the command id). */
  onMessage?: (message: Message) => void;
  /** Every ack for this command, including intermediate ones. */
  onAck?: (ack: Message) => void;
  /** The ack that settles the returned promise; `none` resolves once written. @default processed */
  waitFor?: AckType | 'none';
}

export interface FailedWrite {
  /** The publisher sequence, when the failure names one. */
  sequence: number | undefined;
  commandId: string | undefined;
  reason: string | undefined;
  ack: Message;
}

export interface StateEvent {
  state: ConnectionState;
  /** The server URI, password redacted. */
  uri: string | undefined;
  /** Why, for `Disconnected`. */
  error?: Error | undefined;
}

interface Route {
  onMessage(message: Message): void;
  onAck?: ((ack: Message) => void) | undefined;
  /** The connection ended. */
  onDisconnect(error: Error): void;
  /** What to unsubscribe on timeout or close: the route's sub_id, if it is a subscription. */
  subId?: string | undefined;
  /** When its command was sent (a count): a replace takes the id from a route sent before it. */
  sent?: number;
  /** A bookmark range subscription: the server ends it at the range's end, with its completed ack. */
  range?: boolean;
  /** A subscription the server can pause (canPause): its consumer's flow control does that. */
  pausable?: boolean;
  /** Paused on the server because its consumer holds maxQueue messages (see #pauseFor). */
  flowPaused?: boolean;
  /** Holding the connection paused too: its consumer holds twice maxQueue. */
  holding?: boolean;
  /** A query whose caller stopped waiting (a timeout, an abort): it holds its id until its last ack. */
  givenUp?: boolean;
  /**
   * A replace sent after one of its id that was given up on: what the server held then is not
   * known, so a refusal of this one leaves it unknown too (see #endReplaced).
   */
  heldUnknown?: boolean;
}

interface Pending {
  command: string;
  waitFor: string;
  settle(error: Error | undefined, ack?: Message): void;
  onAck?: ((ack: Message) => void) | undefined;
}

/** One open connection and everything bound to it; a new `connect` makes a new session. */
interface Session {
  readonly uri: AmpsUri;
  connection: Connection | undefined;
  readonly decoder: MessageDecoder;
  readonly closed: ReturnType<typeof deferred<Error | undefined>>;
  open: boolean;
  lastReceivedAt: number;
  lastSentAt: number;
  heartbeat: { intervalMs: number; timeoutMs: number; timer: TimerHandle | undefined } | undefined;
  loggedOn: boolean;
  paused: number;
  /** Set while `connect` waits for the transport: `disconnect()` and `abort()` cancel it. */
  connecting: { cancel(reason: Error): void; settled: Promise<void> } | undefined;
}

type Listener<A extends unknown[]> = (...args: A) => void;

class Listeners<A extends unknown[]> {
  readonly #set = new Set<Listener<A>>();
  add(listener: Listener<A>): () => void {
    this.#set.add(listener);
    return () => this.#set.delete(listener);
  }
  get size(): number {
    return this.#set.size;
  }
  emit(onError: (error: unknown) => void, ...args: A): void {
    for (const listener of this.#set) {
      try {
        listener(...args);
      } catch (error) {
        onError(error);
      }
    }
  }
}

const subscribeCommands = new Set<CommandName>([
  'subscribe',
  'delta_subscribe',
  'sow_and_subscribe',
  'sow_and_delta_subscribe',
]);

/**
 * One connection to an AMPS server: commands, acks, routing, heartbeats.
 *
 * The client does not reconnect; `HAClient` (in `@amps-ts/ha-client`) builds failover on top.
 * After a disconnect it can `connect` again; subscriptions of the old connection have ended.
 */
export class Client {
  /** The client name: the session and publisher identity. Keep it unique and stable. */
  readonly name: string;
  readonly #transport: Transport;
  readonly #env: Pick<Environment, 'now' | 'setTimeout' | 'clearTimeout'>;
  readonly #logger: Logger | undefined;
  readonly #maxFrameSize: number;
  readonly #commandTimeoutMs: number;
  readonly #highWaterMark: number;
  readonly #maxQueue: number;
  readonly #ackBatchSize: number;
  readonly #ackTimeoutMs: number;
  readonly #filter: ClientOptions['transportFilter'];
  readonly #lastChance: ClientOptions['lastChanceMessageHandler'];

  readonly #outbox = new Outbox();
  #flushScheduled = false;
  #session: Session | undefined;
  #state: ConnectionState = ConnectionState.Disconnected;
  #nextId = 0;
  readonly #pending = new Map<string, Pending>();
  readonly #routes = new Map<string, Route>();
  /** Routes installed or waiting to be (see Route.sent). */
  #routesSent = 0;
  /** Ids unsubscribed whose unsubscribe the server has not acked yet, and how many times. */
  readonly #unsubscribing = new Map<string, number>();
  /** Unsubscribes given up on (a timeout, an abort), by command id: their ack, when it comes, releases their ids. */
  readonly #lateUnsubscribes = new Map<string, () => void>();
  /**
   * Ids the application has paused on this connection (`pause()`, or subscribed with `pause`), each
   * with a token of the call that last paused it.
   */
  readonly #userPaused = new Map<string, object>();
  #serverVersion: string | undefined;
  #nameHash: string | undefined;
  #pendingAcks = new Map<
    string,
    { topic: string; options: string; bookmarks: string[]; timer: TimerHandle | undefined }
  >();

  readonly #stateListeners = new Listeners<[StateEvent]>();
  readonly #disconnectListeners = new Listeners<[Error | undefined]>();
  readonly #exceptionListeners = new Listeners<[unknown]>();
  readonly #unhandledListeners = new Listeners<[Message]>();
  readonly #failedWriteListeners = new Listeners<[FailedWrite]>();
  readonly #persistedListeners = new Listeners<[number, Message]>();

  constructor(name: string, options: ClientOptions) {
    if (typeof name !== 'string' || name.length === 0) throw new InvalidOptionsError('a client name is required');
    if (!options || typeof options.transport?.connect !== 'function') {
      throw new InvalidOptionsError('options.transport is required (nodeTransport(), browserTransport(), ...)');
    }
    this.name = name;
    this.#transport = options.transport;
    this.#env = environmentOption(options.environment, ['now', 'setTimeout', 'clearTimeout'], 'environment');
    this.#logger = options.logger;
    this.#maxFrameSize = countOption(options.maxFrameSize, 'maxFrameSize') ?? DEFAULT_MAX_FRAME_SIZE;
    this.#commandTimeoutMs = timeoutOption(options.commandTimeoutMs, 'commandTimeoutMs') ?? 10_000;
    this.#highWaterMark = countOption(options.sendHighWaterMark, 'sendHighWaterMark') ?? 1024 * 1024;
    this.#maxQueue = countOption(options.maxQueue, 'maxQueue') ?? 1024;
    this.#ackBatchSize = countOption(options.ackBatchSize, 'ackBatchSize') ?? 1;
    this.#ackTimeoutMs = timeoutOption(options.ackTimeoutMs, 'ackTimeoutMs') ?? 1000;
    this.#filter = options.transportFilter;
    this.#lastChance = options.lastChanceMessageHandler;
  }

  /* ------------------------------------------------------------------ state */

  get state(): ConnectionState {
    return this.#state;
  }

  /** The server URI of the current connection, password redacted. */
  get uri(): string | undefined {
    return this.#session?.uri.redacted;
  }

  get isConnected(): boolean {
    return this.#session?.open === true;
  }

  get serverVersion(): string | undefined {
    return this.#serverVersion;
  }

  /** The server's hash of this client's name (the publisher id in its bookmarks), known after logon. */
  get nameHash(): string | undefined {
    return this.#nameHash;
  }

  /** Bytes written and not yet on the network. */
  get bufferedAmount(): number {
    return this.#outbox.byteLength + (this.#session?.connection?.bufferedAmount ?? 0);
  }

  /* ------------------------------------------------------------------ hooks */

  onStateChange(listener: (event: StateEvent) => void): () => void {
    return this.#stateListeners.add(listener);
  }

  /** The connection ended; `error` is undefined after `disconnect()`. */
  onDisconnect(listener: (error: Error | undefined) => void): () => void {
    return this.#disconnectListeners.add(listener);
  }

  /** Errors thrown by your handlers and listeners, and errors with no caller to reject. */
  onException(listener: (error: unknown) => void): () => void {
    return this.#exceptionListeners.add(listener);
  }

  /** Messages that match no subscription or command. */
  onUnhandledMessage(listener: (message: Message) => void): () => void {
    return this.#unhandledListeners.add(listener);
  }

  /** A publish or sow_delete the server failed (a failure ack). */
  onFailedWrite(listener: (failure: FailedWrite) => void): () => void {
    return this.#failedWriteListeners.add(listener);
  }

  /** The server persisted every publish of this client up to `sequence` (a persisted ack, possibly conflated). */
  onPersisted(listener: (sequence: number, ack: Message) => void): () => void {
    return this.#persistedListeners.add(listener);
  }

  /* ------------------------------------------------------------ connection */

  /**
   * Opens the transport to `uri` (`tcp://host:port/amps/json`, ...). One at a time: a second
   * `connect` while one is in flight, or while connected, rejects with a `ConnectionError`.
   */
  async connect(uri: string, options: ConnectOptions = {}): Promise<void> {
    const signal = signalOption(options.signal);
    const current = this.#session;
    if (current?.open) throw new ConnectionError(`already connected to ${current.uri.redacted}`);
    if (current?.connecting) {
      throw new ConnectionError(
        `already connecting to ${current.uri.redacted}: wait for that connect() to settle, or disconnect() first`,
      );
    }
    const parsed = parseUri(uri);
    if (!this.#transport.schemes.includes(parsed.scheme)) {
      throw new InvalidUriError(
        `this transport does not support ${parsed.scheme}:// (it supports ${this.#transport.schemes.join(', ')}): ${parsed.redacted}`,
      );
    }
    const now = this.#env.now();
    const session: Session = {
      uri: parsed,
      connection: undefined,
      decoder: new MessageDecoder((m) => this.#onMessage(session, m), { maxFrameSize: this.#maxFrameSize }),
      closed: deferred<Error | undefined>(),
      open: false,
      lastReceivedAt: now,
      lastSentAt: now,
      heartbeat: undefined,
      loggedOn: false,
      paused: 0,
      connecting: undefined,
    };
    // The transport gets one signal, aborted by the caller's or by disconnect()/abort().
    const controller = new AbortController();
    const settled = deferred<void>();
    let cancelled: Error | undefined;
    session.connecting = {
      cancel: (reason) => {
        cancelled ??= reason;
        controller.abort(reason);
      },
      settled: settled.promise,
    };
    const forwardAbort = () => controller.abort(signal?.reason);
    if (signal?.aborted) forwardAbort();
    else signal?.addEventListener('abort', forwardAbort, { once: true });
    this.#session = session;
    this.#outbox.clear();
    // 0 means "no timeout of the client's": transports take no 0, so their own connect timeout applies.
    const requestedMs = options.timeoutMs ?? this.#commandTimeoutMs;
    const timeoutMs = requestedMs === 0 ? undefined : requestedMs;
    const closedWhileConnecting = (cause: Error | undefined) =>
      new DisconnectedError(
        `connection to ${parsed.redacted} closed while connecting${cause ? `: ${cause.message}` : ''}`,
        { cause },
      );
    let connection: Connection;
    try {
      connection = await this.#transport.connect(
        parsed,
        {
          onData: (chunk) => this.#onData(session, chunk),
          onActivity: () => this.#onActivity(session),
          onClose: (error) => this.#onClose(session, error),
        },
        { signal: controller.signal, timeoutMs },
      );
    } catch (error) {
      if (this.#session === session) this.#session = undefined;
      // Cancelled by disconnect() or abort(): say so, whatever the transport made of the abort.
      throw cancelled ? closedWhileConnecting(cancelled) : error;
    } finally {
      session.connecting = undefined;
      signal?.removeEventListener('abort', forwardAbort);
      settled.resolve();
    }
    session.connection = connection;
    if (cancelled || session.closed.settled) {
      // Cancelled, or closed by the server, while connecting: close what was opened, so no
      // socket is left behind.
      connection.close(cancelled);
      throw closedWhileConnecting(cancelled ?? (await session.closed.promise));
    }
    session.open = true;
    this.#log('info', 'connected', { uri: parsed.redacted, connection: session.connection.description });
    this.#setState(ConnectionState.Connected);
  }

  /** Logs on with this client's name; resolves with what the server knows of this name. */
  async logon(options: LogonOptions = {}): Promise<LogonResult> {
    const session = this.#requireSession();
    const authenticator = options.authenticator ?? defaultAuthenticator;
    const user = session.uri.user;
    // Every credential of this logon: the URI's password, each one sent, each token the server
    // returned. Hidden in whatever text the authenticator or the server gives back.
    const secrets: Array<string | undefined> = [session.uri.password];
    let password = await this.#fromAuthenticator(
      session,
      () => authenticator.authenticate(user, session.uri.password),
      secrets,
      options,
    );
    secrets.push(password);
    const failure = (ack: Message) => logonFailure(ack, hideSecrets(ack.reason, secrets));
    const cid = this.#commandId();
    const logonOptions = typeof options.options === 'string' ? options.options : formatOptions(options.options ?? {});
    for (let attempt = 0; ; attempt++) {
      const command: Command = {
        command: 'logon',
        commandId: cid,
        clientName: this.name,
        ackType: 'processed',
        version: CLIENT_VERSION,
      };
      if (user !== undefined) command.userId = user;
      if (password) command.password = password;
      if (session.uri.messageType) command.messageType = session.uri.messageType;
      if (options.correlationId) command.correlationId = options.correlationId;
      const opts = mergeOptions(logonOptions, session.uri.options.logon_options ?? '');
      if (opts) command.options = opts;
      const ack = await this.#request(command, 'processed', options, undefined, 'logon', failure);
      if (ack.status === 'retry') {
        const token = ack.password ?? password;
        secrets.push(token);
        if (attempt >= MAX_LOGON_RETRIES) {
          throw new AuthenticationError(`logon failed: the server asked to retry ${attempt + 1} times`, {
            reason: hideSecrets(ack.reason, secrets),
          });
        }
        password = await this.#fromAuthenticator(
          session,
          () => authenticator.retry(ack.userId ?? user, token),
          secrets,
          options,
        );
        secrets.push(password);
        continue;
      }
      try {
        await this.#fromAuthenticator(
          session,
          () => authenticator.completed(ack.userId ?? user, password, ack.reason),
          secrets,
          options,
        );
      } catch (error) {
        // The server has logged this connection on: close it, rather than leave it half set up.
        if (this.#session === session) this.#closeSession(error as Error);
        throw error;
      }
      // The connection may have closed while the authenticator finished: not logged on, then.
      if (!session.open) throw new DisconnectedError(`disconnected from ${session.uri.redacted} during logon`);
      session.loggedOn = true;
      this.#serverVersion = ack.version;
      this.#nameHash = ack.bookmark?.split('|')[0] || undefined;
      this.#setState(ConnectionState.LoggedOn);
      return {
        sequence: ack.sequence ?? 0,
        bookmark: ack.bookmark,
        serverVersion: ack.version,
        nameHash: this.#nameHash,
      };
    }
  }

  /**
   * Asks the authenticator, bounded like the logon command by the logon's timeout and signal: a
   * token service that never answers must not hold the connection (and a reconnect) forever. Its
   * failure becomes an `AuthenticationError` whose message hides `secrets`: that message is copied
   * into logs and events. A connection that closes meanwhile ends the wait at once: the logon
   * cannot go on, and would otherwise wait out its timeout (or, with none, for ever).
   */
  #fromAuthenticator<T>(
    session: Session,
    ask: () => T | Promise<T>,
    secrets: Array<string | undefined>,
    options: LogonOptions,
  ): Promise<T> {
    return new Promise((resolve, reject) => {
      const timeoutMs = timeoutOption(options.timeoutMs, 'timeoutMs') ?? this.#commandTimeoutMs;
      const timer = deadline(this.#env, 'logon: the authenticator', timeoutMs, options.signal, reject);
      void session.closed.promise.then((cause) => {
        timer.clear();
        reject(new DisconnectedError(`disconnected from ${session.uri.redacted} during logon`, { cause }));
      });
      new Promise<T>((answer) => answer(ask())).then(
        (value) => {
          timer.clear();
          resolve(value);
        },
        (error: unknown) => {
          timer.clear();
          const text = hideSecrets(toError(error).message, secrets) as string;
          reject(new AuthenticationError(`logon failed: the authenticator threw: ${text}`));
        },
      );
    });
  }

  /** `connect` then `logon`; closes the connection if the logon fails. */
  async connectAndLogon(uri: string, options: LogonOptions = {}): Promise<LogonResult> {
    await this.connect(uri, { signal: options.signal, timeoutMs: options.timeoutMs });
    try {
      return await this.logon(options);
    } catch (error) {
      this.#closeSession(error instanceof Error ? error : new ConnectionError(String(error)));
      throw error;
    }
  }

  /**
   * Starts heartbeats: the server sends one after `intervalS` of silence, the client answers, and
   * a connection silent for `timeoutS` (by default twice `intervalS`) is closed as dead (the
   * half-open TCP case).
   */
  async heartbeat(intervalS: number, timeoutS?: number, options: CommandWaitOptions = {}): Promise<void> {
    // The checked value: a null timeout is the default (two intervals), as in HAClient, not 0 s.
    ({ timeoutS } = heartbeatOption(intervalS, timeoutS));
    const session = this.#requireSession();
    await this.#request(
      { command: 'heartbeat', commandId: this.#commandId(), ackType: 'processed', options: `start,${intervalS}` },
      'processed',
      { timeoutMs: options.timeoutMs ?? timeoutS * 1000, signal: options.signal },
    );
    if (!session.open) return;
    this.#stopHeartbeat(session);
    session.heartbeat = { intervalMs: intervalS * 1000, timeoutMs: timeoutS * 1000, timer: undefined };
    session.lastReceivedAt = this.#env.now();
    this.#armWatchdog(session);
    this.#setState(ConnectionState.HeartbeatInitiated);
  }

  /**
   * Flushes pending queue acks, stops heartbeats and closes the connection; ends in `Shutdown`.
   * A `connect` in flight is cancelled: it closes what it opened and rejects with a `DisconnectedError`.
   */
  async disconnect(): Promise<void> {
    const session = this.#session;
    if (!session) {
      this.#setState(ConnectionState.Shutdown);
      return;
    }
    const connecting = session.connecting;
    if (connecting) {
      // A connect in flight is cancelled: it closes whatever it opened and rejects.
      this.#closeSession(new DisconnectedError('disconnect() was called'));
      await connecting.settled;
    } else if (session.open) {
      try {
        this.flushAcks();
        if (session.heartbeat) this.#write({ command: 'heartbeat', options: 'stop' });
        this.#flush();
      } catch {
        // Best effort: the connection may already be going.
      }
      session.connection?.close();
      const graceful = deadline(this.#env, 'disconnect', 2000, undefined, () => {
        const error = new TimedOutError('the transport did not confirm the close in time');
        // Destroyed now, not at the transport's own close timeout: nothing stays open once this returns.
        session.connection?.close(error);
        this.#onClose(session, error);
      });
      await session.closed.promise;
      graceful.clear();
    }
    this.#setState(ConnectionState.Shutdown);
  }

  /**
   * Drops the connection at once, without the graceful steps of `disconnect()` (and without the
   * `Shutdown` state): disconnect listeners see `reason`. For abandoning a failed or stuck session.
   * A `connect` in flight is cancelled: it closes what it opened and rejects with a `DisconnectedError`.
   */
  abort(reason: Error = new DisconnectedError('connection aborted')): void {
    this.#closeSession(reason);
  }

  /* ---------------------------------------------------------------- writes */

  /**
   * Writes one command without waiting for anything. Returns a promise when the send buffer is
   * over its high-water mark: await it before writing more, so memory stays bounded.
   */
  send(command: Command): Promise<void> | undefined {
    if (command.commandId !== undefined) this.#claimCommandId(command.commandId, command.command);
    this.#write(command);
    return this.bufferedAmount > this.#highWaterMark ? this.#whenWritable() : undefined;
  }

  /** Publishes `data` to `topic` (fire-and-forget). See `send` for the returned promise. */
  publish(topic: string, data: Uint8Array | string, options?: PublishOptions): Promise<void> | undefined {
    if (options === undefined) return this.#publishPlain('publish', topic, data);
    return this.send(this.#publishCommand('publish', topic, data, options));
  }

  /** Publishes a partial update merged into the SOW record. */
  deltaPublish(topic: string, data: Uint8Array | string, options?: PublishOptions): Promise<void> | undefined {
    if (options === undefined) return this.#publishPlain('delta_publish', topic, data);
    return this.send(this.#publishCommand('delta_publish', topic, data, options));
  }

  /** The hot path: a publish with no header field but its topic, written without a Command object. */
  #publishPlain(
    command: 'publish' | 'delta_publish',
    topic: string,
    data: Uint8Array | string,
  ): Promise<void> | undefined {
    checkPublish(topic, data);
    // Guarded here so that the hot path builds no Command object.
    if (mayExceedFrameSize(data, this.#maxFrameSize)) checkFrameSize({ command, topic, data }, this.#maxFrameSize);
    const session = this.#session;
    if (!session?.open) throw new DisconnectedError('not connected');
    this.#outbox.writePublish(command, topic, data);
    this.#written();
    const buffered = this.#outbox.byteLength + (session.connection?.bufferedAmount ?? 0);
    return buffered > this.#highWaterMark ? this.#whenWritable() : undefined;
  }

  #publishCommand(
    command: 'publish' | 'delta_publish',
    topic: string,
    data: Uint8Array | string,
    options: PublishOptions | undefined,
  ): Command {
    checkPublish(topic, data);
    const c: Command = { command, topic, data };
    if (options) {
      if (options.sequence !== undefined) c.sequence = options.sequence;
      if (options.expiration !== undefined) c.expiration = options.expiration;
      if (options.correlationId !== undefined) c.correlationId = options.correlationId;
      if (options.sowKey !== undefined) c.sowKey = options.sowKey;
      if (options.ackType !== undefined) {
        c.ackType = options.ackType;
        c.commandId = options.commandId ?? this.#commandId();
      }
    }
    return c;
  }

  /* ---------------------------------------------------------- subscriptions */

  subscribe(topic: string, options: SubscribeOptions = {}): Subscription {
    return this.#subscribe('subscribe', topic, options);
  }

  deltaSubscribe(topic: string, options: SubscribeOptions = {}): Subscription {
    return this.#subscribe('delta_subscribe', topic, options);
  }

  /** A SOW query and a subscription in one atomic step: records (between group markers), then live messages. */
  sowAndSubscribe(topic: string, options: SubscribeOptions = {}): Subscription {
    return this.#subscribe('sow_and_subscribe', topic, options);
  }

  sowAndDeltaSubscribe(topic: string, options: SubscribeOptions = {}): Subscription {
    return this.#subscribe('sow_and_delta_subscribe', topic, options);
  }

  /** Builds the subscribe command for `subscribe`-family calls (also used by HAClient). */
  subscribeCommand(command: CommandName, topic: string, options: SubscribeOptions, subId: string): Command {
    if (typeof topic !== 'string' || topic === '') throw new InvalidOptionsError(`${command} needs a topic`);
    const c: Command = { command, topic, subId };
    if (options.filter !== undefined) c.filter = options.filter;
    let opts = typeof options.options === 'string' ? options.options : formatOptions(options.options ?? {});
    if (options.maxBacklog !== undefined) {
      opts = mergeOptions(opts, `max_backlog=${countOption(options.maxBacklog, 'maxBacklog')}`);
    }
    if (opts) c.options = opts;
    if (bookmarkOption(options.bookmark) !== undefined) {
      // MOST_RECENT is resolved by a bookmark store; a plain client has none, so it means EPOCH.
      c.bookmark = options.bookmark === Bookmarks.MOST_RECENT ? Bookmarks.EPOCH : options.bookmark;
    }
    if (command.startsWith('sow')) {
      c.queryId = subId;
      c.batchSize = options.batchSize ?? 10;
      if (options.topN !== undefined) c.topN = options.topN;
      if (options.orderBy !== undefined) c.orderBy = options.orderBy;
    }
    return c;
  }

  #subscribe(command: CommandName, topic: string, options: SubscribeOptions): Subscription {
    const subId = options.subId ?? this.#commandId();
    const closed = deferred<Error | undefined>();
    const fellBehind = (error: Error) => {
      // A consumer that fell behind, and what it reads from could not be paused: stop the
      // subscription rather than keep receiving what nobody reads.
      closed.resolve(error);
      if (this.#endHooks.get(subId) !== end) {
        // A replace of it waits for the server: an unsubscribe now would end the replace. Accepted,
        // the replace takes the id; refused, it takes this one back (below). Until then, what
        // comes for it is dropped by its ended stream.
        this.#fellBehind.add(end);
        return;
      }
      this.#endHooks.delete(subId);
      if (this.#routes.get(subId) === route) this.#routes.delete(subId);
      this.#takeBack(subId, 'after a slow consumer');
    };
    const stream = this.#stream(options, options.autoAck === true, fellBehind, (paused) =>
      route.pausable ? this.#pauseFor(route, paused, stream) : this.#flowControl(paused),
    );
    const end = () => {
      stream.end();
      closed.resolve(undefined);
    };
    const range = this.#isRange(command, options.bookmark, this.#routes.get(subId));
    const route: Route = {
      subId,
      range,
      onMessage: (m) => {
        stream.push(m);
        if (route.flowPaused && !route.holding && stream.overfull) this.#hold(route, stream);
      },
      onAck: (ack) => {
        options.onAck?.(ack);
        if (range && ack.ackType === 'completed') {
          this.#releaseRoute(subId, route, undefined);
          if (this.#endHooks.get(subId) === end) this.#endHooks.delete(subId);
          end();
        }
      },
      onDisconnect: (error) => {
        stream.end(error);
        closed.resolve(error);
      },
    };
    // The subscription this one replaces, when the command asks AMPS to `replace` it.
    const replaced = this.#endHooks.get(subId);
    if (replaced) this.#replacing.set(end, replaced);
    this.#routeOf.set(end, route);
    const subscription = new Subscription(
      subId,
      stream,
      // Once another subscription holds the id (a replace), this one has nothing left to stop.
      {
        unsubscribe: (id) => {
          if (this.#endHooks.get(id) === end) return this.unsubscribe(id);
          // A replace of it is in flight: it ends here, and if the replace is refused the id is
          // taken back from the server, as for one that fell behind meanwhile.
          for (let e = this.#replacing.get(this.#endHooks.get(id) as () => void); e; e = this.#replacing.get(e)) {
            if (e === end) {
              end();
              this.#fellBehind.add(end);
            }
          }
          return Promise.resolve();
        },
        setPaused: (id, paused, o) => this.#pauseOrResume(paused ? 'pause' : 'resume', id, o),
      },
      (async () => {
        const wasPaused = this.#userPaused.has(subId);
        const pausedHere = {};
        try {
          // Refused options end it too, as any failure below: nothing was sent.
          const c = this.subscribeCommand(command, topic, options, subId);
          const extra = new Set((options.ackTypes ?? []).filter((a) => a !== 'processed'));
          // A replace that goes on with the range it replaces gets that one's completed ack.
          if (range && options.bookmark !== undefined) extra.add('completed');
          c.ackType = ['processed', ...extra].join(',');
          route.pausable = canPause(c);
          if (parseOptions(c.options).has('pause') && !wasPaused) this.#userPaused.set(subId, pausedHere);
          this.#endHooks.set(subId, end);
          await this.#execute(c, { timeoutMs: options.timeoutMs, signal: options.signal, waitFor: 'processed' }, route);
        } catch (error) {
          // Refused or lost: whatever held the id before (a live subscription) keeps it.
          this.#failed.set(end, replaced);
          const held = this.#heldBefore(replaced);
          // Its own `pause` was not taken. What it was to replace keeps the pause state it has: one a
          // pause() sent meanwhile has given it too.
          if (held ? this.#userPaused.get(subId) === pausedHere : !wasPaused) this.#userPaused.delete(subId);
          if (this.#endHooks.get(subId) === end) {
            if (held && !this.#fellBehind.has(held)) {
              this.#endHooks.set(subId, held);
            } else {
              this.#endHooks.delete(subId);
              if (held) {
                // The one it was to replace fell behind meanwhile (see above): it goes too (its
                // route, not one sent after this replace).
                // (One never sent, refused before that, counts as sent last.)
                if ((this.#routes.get(subId)?.sent ?? 0) < (route.sent ?? Number.POSITIVE_INFINITY))
                  this.#routes.delete(subId);
                this.#takeBack(subId, 'after a slow consumer and a refused replace');
              }
            }
          }
          stream.end(error as Error);
          closed.resolve(error as Error);
          throw error;
        }
        // Its deliveries now come here: the replaced subscription has ended.
        const held = this.#heldBefore(replaced);
        held?.();
        this.#replacing.delete(end);
        // The server keeps a replaced subscription paused: not for this consumer, if for the old one's.
        // (The one it replaced is the one that held the id by the server's answer: a replace sent
        // before this one and accepted since may have been paused meanwhile.)
        if (held && this.#routeOf.get(held)?.flowPaused) this.#sendFlowState(route, stream);
      })(),
      closed.promise,
    );
    return subscription;
  }

  /** Called when a subscription is removed locally (unsubscribe). */
  readonly #endHooks = new Map<string, () => void>();
  /** The end hooks of subscriptions that fell behind while a replace of theirs waited for the server. */
  readonly #fellBehind = new WeakSet<() => void>();
  /** The route of each subscription's end hook: whether a replaced one was paused for its consumer. */
  readonly #routeOf = new WeakMap<() => void, Route>();
  /** Each replace's end hook, with the end hook of what it replaces: an unsubscribe ends both. */
  readonly #replacing = new WeakMap<() => void, () => void>();
  /** The end hooks of subscribes that failed, each with the end hook of what it was to replace. */
  readonly #failed = new WeakMap<() => void, (() => void) | undefined>();

  /**
   * What the server holds under an id that `replaced` held, by the time a replace of it is answered:
   * `replaced`, or, if its own subscribe failed, what that was to replace, and so on.
   */
  #heldBefore(replaced: (() => void) | undefined): (() => void) | undefined {
    let held = replaced;
    while (held && this.#failed.has(held)) held = this.#failed.get(held);
    return held;
  }

  /** Unsubscribes on the server a subscription already ended here; what is on its way to it is dropped. */
  #takeBack(subId: string, when: string): void {
    this.#unsubscribeOnServer(subId, [subId], {}).catch((e: unknown) =>
      this.#log('debug', `unsubscribe ${when} failed`, { subId, error: String(e) }),
    );
  }

  /** Runs a SOW query: records as an async iterable (or callback), then `stats` (from the server's stats ack). */
  sow(topic: string, options: SowOptions = {}): SowQuery {
    if (typeof topic !== 'string' || topic === '') throw new InvalidOptionsError('sow needs a topic');
    const queryId = options.queryId ?? this.#commandId();
    const stream = this.#stream(options, false);
    const command: Command = { command: 'sow', topic, queryId, batchSize: options.batchSize ?? 10 };
    if (options.filter !== undefined) command.filter = options.filter;
    if (options.topN !== undefined) command.topN = options.topN;
    if (options.orderBy !== undefined) command.orderBy = options.orderBy;
    if (options.sowKeys !== undefined) command.sowKeys = options.sowKeys.join(',');
    if (bookmarkOption(options.bookmark) !== undefined) command.bookmark = options.bookmark;
    const opts = typeof options.options === 'string' ? options.options : formatOptions(options.options ?? {});
    if (opts) command.options = opts;
    // AMPS gives the counts only on the stats ack, after group_end and the completed ack.
    command.ackType = 'processed,completed,stats';
    // The route stays until the query completes, even if the iterator is left early: the records
    // still coming are then dropped by the ended stream rather than reported as unhandled.
    const release = () => this.#routes.get(queryId) === route && this.#routes.delete(queryId);
    const route: Route = {
      onMessage: (m) => {
        if (m.command === 'sow') stream.push(m);
      },
      // Acks reach the route only once the caller stopped waiting (see #execute): the last ends it.
      onAck: (ack) => (ack.ackType === 'stats' || ack.status === 'failure') && release(),
      onDisconnect: (error) => stream.end(error),
    };
    const stats = (async (): Promise<QueryStats> => {
      try {
        const ack = await this.#execute(
          command,
          { timeoutMs: options.timeoutMs, signal: options.signal, waitFor: 'stats' },
          route,
        );
        release();
        stream.end();
        return statsOf(ack);
      } catch (error) {
        stream.end(error as Error);
        throw error;
      }
    })();
    return new SowQuery(queryId, stream, stats);
  }

  /** Deletes SOW records by filter, keys or data; resolves with the counts. */
  async sowDelete(topic: string, target: SowDeleteTarget, options: CommandWaitOptions = {}): Promise<QueryStats> {
    const command = sowDeleteCommand(topic, target);
    command.ackType = 'processed,stats';
    return statsOf(await this.execute(command, { ...options, waitFor: 'stats' }));
  }

  /** Stops one subscription (by id, or a comma-separated list) or, with no id or `all`, every subscription. */
  async unsubscribe(subId: string = 'all', options: CommandWaitOptions = {}): Promise<void> {
    // Aborted already: nothing is sent (#execute), so nothing is ended here either.
    throwIfAborted(options.signal, 'unsubscribe');
    const all = subId === 'all';
    const ids = new Set<string>();
    if (all) {
      for (const [id, route] of this.#routes) {
        if (route.subId === undefined) continue;
        this.#routes.delete(id);
        ids.add(id);
      }
      for (const id of this.#endHooks.keys()) ids.add(id);
    } else if (typeof subId === 'string') {
      // (An id that is not a string is refused by execute below.)
      for (const id of subId.split(',')) ids.add(id);
    }
    for (const id of ids) {
      this.#routes.delete(id);
      // A replace in flight, and what it replaces (which it may not get to end: it may be refused).
      for (let end = this.#endHooks.get(id); end; end = this.#replacing.get(end)) end();
      this.#endHooks.delete(id);
    }
    await this.#unsubscribeOnServer(subId, ids, options);
  }

  /** Sends `unsubscribe`; until the server has processed it, deliveries for `ids` are dropped. */
  async #unsubscribeOnServer(subId: string, ids: Iterable<string>, options: CommandWaitOptions): Promise<void> {
    if (!this.#session?.open) return;
    // The server returns an unsubscribed queue subscription's leases: acks sent later would find
    // them given back, and the messages redelivered.
    this.flushAcks();
    // Deliveries for these ids until the server's ack were sent for the subscriptions ended here,
    // not for a new one that takes an id again: they are dropped (#route).
    for (const id of ids) {
      this.#unsubscribing.set(id, (this.#unsubscribing.get(id) ?? 0) + 1);
      this.#userPaused.delete(id);
    }
    if (subId === 'all') this.#userPaused.clear();
    let released = false;
    // At the ack itself, not once the await resumes: what follows it in the same chunk (a new
    // subscription's first deliveries) is routed before then.
    const release = () => {
      if (released) return;
      released = true;
      for (const id of ids) {
        const count = this.#unsubscribing.get(id) ?? 1;
        if (count > 1) this.#unsubscribing.set(id, count - 1);
        else this.#unsubscribing.delete(id);
      }
    };
    const commandId = this.#commandId();
    try {
      await this.execute(
        { command: 'unsubscribe', subId, commandId },
        { ...options, waitFor: 'processed', onAck: release },
      );
    } catch (error) {
      // Given up on, it may still reach the server: what comes for these ids until its ack was
      // sent for the subscriptions ended here, so they stay blocked until then (or the disconnect).
      const code = AmpsError.isInstance(error) ? error.code : undefined;
      if ((code === 'timed_out' || code === 'aborted') && this.#session?.open) {
        this.#lateUnsubscribes.set(commandId, release);
      }
      throw error;
    } finally {
      if (!this.#lateUnsubscribes.has(commandId)) release();
    }
  }

  /**
   * Pauses bookmark subscriptions (AMPS's `pause` option): the server sends them nothing, live or
   * replayed, until `resume()`. `subIds` is one id, a comma-separated list or an array; the server
   * pauses them together. To start a subscription paused, subscribe with `options: { pause: true }`.
   */
  async pause(subIds: string | readonly string[], options: CommandWaitOptions = {}): Promise<void> {
    await this.#pauseOrResume('pause', subIds, options);
  }

  /**
   * Resumes paused bookmark subscriptions: each replays from where it stopped, so what was published
   * while it was paused comes first, then live messages. Resumed together, the server may serve them
   * with one replay.
   */
  async resume(subIds: string | readonly string[], options: CommandWaitOptions = {}): Promise<void> {
    await this.#pauseOrResume('resume', subIds, options);
  }

  async #pauseOrResume(
    option: 'pause' | 'resume',
    subIds: string | readonly string[],
    options: CommandWaitOptions,
  ): Promise<void> {
    const ids = typeof subIds === 'string' ? subIds.split(',') : [...subIds];
    if (ids.length === 0 || ids.some((id) => typeof id !== 'string' || id === '' || id.includes(','))) {
      throw new InvalidOptionsError(
        `${option}: subIds must be one or more non-empty ids, got ${JSON.stringify(subIds)}`,
      );
    }
    // Aborted already: nothing is sent (#request), so nothing is marked either.
    throwIfAborted(options.signal, option);
    const paused = option === 'pause';
    const changed = ids.filter((id) => this.#userPaused.has(id) !== paused);
    // Each paused id is marked by this call: a subscribe (with `pause`) that fails must leave it.
    for (const id of paused ? ids : changed) this.#markPaused(id, paused);
    try {
      await this.#sendPauseStates(ids, options);
    } catch (error) {
      // Refused, the server left them as they were (not those a later call has changed since).
      if (isRefusal(error))
        for (const id of changed) if (this.#userPaused.has(id) === paused) this.#markPaused(id, !paused);
      throw error;
    }
  }

  #markPaused(subId: string, paused: boolean): void {
    if (paused) this.#userPaused.set(subId, {});
    else this.#userPaused.delete(subId);
  }

  /**
   * Sends each id's pause state as it is now: paused by the application or for its consumer, or
   * running. (The server takes a repeat as no change.) Async: not connected, it rejects rather
   * than throw into the stream that asked (a flow-controlled one ends inside #onClose).
   */
  async #sendPauseStates(ids: readonly string[], options: CommandWaitOptions): Promise<unknown> {
    return await Promise.all(
      (['pause', 'resume'] as const).map((option) => {
        const group = ids.filter((id) => this.#isPaused(id) === (option === 'pause'));
        // Not through execute(): these ids belong to live subscriptions, whose routes stay as they are.
        const command: Command = {
          command: 'subscribe',
          subId: group.join(','),
          options: option,
          ackType: 'processed',
        };
        return group[0] && this.#request(command, 'processed', options, undefined, option);
      }),
    );
  }

  #isPaused(subId: string): boolean {
    return this.#userPaused.has(subId) || this.#routes.get(subId)?.flowPaused === true;
  }

  /** Waits until the server has processed (or persisted, or completed) everything sent before. */
  async flush(
    ackType: 'processed' | 'completed' | 'persisted' = 'processed',
    options: CommandWaitOptions = {},
  ): Promise<void> {
    await this.execute({ command: 'flush' }, { ...options, waitFor: flushAckTypeOption(ackType) });
  }

  /**
   * Sends any command and waits for the ack named by `waitFor` (default `processed`). Deliveries
   * for the command's `sub_id`/`query_id` go to `onMessage`. Resolves with that ack.
   */
  execute(command: Command, options: ExecuteOptions = {}): Promise<Message | undefined> {
    return this.#execute(command, options, undefined);
  }

  async #execute(command: Command, options: ExecuteOptions, internal: Route | undefined): Promise<Message | undefined> {
    const waitFor = waitForOption(options.waitFor ?? 'processed');
    const c: Command = { ...command };
    // They key routes and pending acks, matched against the strings the server echoes: a number
    // would be sent as text and never match.
    for (const id of ['commandId', 'subId', 'queryId'] as const) {
      if (c[id] !== undefined && typeof c[id] !== 'string') {
        throw new InvalidOptionsError(`${id} must be a string, got ${typeof c[id]}`);
      }
    }
    // Aborted already: the caller wants nothing done, so nothing is sent (a sow_delete would delete).
    throwIfAborted(options.signal, c.command);
    if (waitFor !== 'none') {
      c.commandId ??= this.#commandId();
      c.ackType = mergeOptions(c.ackType, waitFor);
    }
    const isSubscribe = subscribeCommands.has(c.command);
    const replacing = isSubscribe && parseOptions(c.options).has('replace');
    let routeKey: string | undefined;
    if (internal || options.onMessage) {
      if (isSubscribe) c.subId ??= c.commandId ?? this.#commandId();
      if (c.command === 'sow' || c.command.startsWith('sow_and')) c.queryId ??= c.subId ?? c.commandId;
      routeKey = c.queryId ?? c.subId ?? c.commandId;
      if (routeKey === undefined)
        throw new InvalidOptionsError('a routed command needs a sub_id, query_id or command id');
    }
    // An id in use belongs to a live subscription or query: taking it would steal its deliveries,
    // and a failure would then remove it. Only an AMPS `replace` may take a subscription's id.
    const key = routeKey ?? (isSubscribe ? c.subId : undefined);
    const previous = key === undefined ? undefined : this.#routes.get(key);
    if (previous && !(replacing && previous.subId !== undefined)) {
      if (isSubscribe && previous.subId !== undefined) {
        throw new SubscriptionAlreadyExistsError(
          `${c.command}: sub_id '${key}' is in use by another subscription of this client; unsubscribe it first, or replace it with the 'replace' option`,
        );
      }
      if (isSubscribe) {
        // Held by a query, which no replace or unsubscribe can take over.
        const query = previous.givenUp
          ? 'a query of this client that timed out or was aborted (it runs on the server until its last ack)'
          : 'a query still running on this client';
        throw new SubscriptionAlreadyExistsError(
          `${c.command}: sub_id '${key}' is in use by ${query}; wait for it to end, or choose another id`,
        );
      }
      throw new InvalidOptionsError(
        `${c.command}: id '${key}' is in use by a subscription or query still running on this client`,
      );
    }
    let route: Route | undefined;
    const onMessage = options.onMessage;
    // A query's route ends with the query, freeing its id: at the completed ack when one is asked
    // for, else at group_end. A subscription's lasts until unsubscribed, or a range's end (its
    // completed ack, when asked for: the server then has removed it).
    const endsAt = isSubscribe
      ? this.#isRange(c.command, c.bookmark, previous) && 'completed'
      : c.ackType?.includes('completed')
        ? 'completed'
        : 'group_end';
    // A refusal ends it too: the server registered nothing (a refused replace leaves what it replaced).
    const end = (what?: string, failed?: boolean) =>
      (what === endsAt || failed) && this.#releaseRoute(routeKey, route, failed ? previous : undefined);
    /** The caller has stopped waiting (a timeout, an abort): what the query still sends is dropped. */
    let gaveUp = false;
    const onAck = (ack: Message) => {
      // Only its own refusal: an earlier command's under the same id (one given up on, refused
      // late) reaches this route too, and must not take it away.
      end(ack.ackType, ack.status === 'failure' && ack.commandId === c.commandId);
      // A replace takes the id once the server accepts it: what came before was the replaced one's.
      // It takes it from whichever subscription sent before it holds the id by then (another
      // replace, accepted first), never from one sent after it (the id unsubscribed and taken again).
      // With none holding it and no unsubscribe of it under way, the server ended the replaced one
      // (a range, at its end) before the replace came, and so made the replace a new subscription.
      const holder = previous && this.#routes.get(key as string);
      if (
        previous &&
        (holder
          ? holder.subId !== undefined && (holder.sent ?? 0) < (route?.sent ?? Number.POSITIVE_INFINITY)
          : !this.#unsubscribing.has(key as string)) &&
        ack.ackType === waitFor &&
        ack.status !== 'failure'
      )
        this.#routes.set(key as string, route as Route);
      if (!gaveUp) options.onAck?.(ack);
    };
    if (routeKey !== undefined) {
      route = internal ?? {
        subId: isSubscribe ? c.subId : undefined,
        range: endsAt === 'completed' && isSubscribe,
        onMessage: (m) => {
          end(m.command);
          if (!gaveUp) this.#safely(() => onMessage?.(m));
        },
        onAck,
        onDisconnect: () => {},
      };
      route.sent = ++this.#routesSent;
      if (!previous || waitFor === 'none') this.#routes.set(routeKey, route);
    }
    if (waitFor === 'none') {
      let written: Promise<void> | undefined;
      try {
        written = this.send(c);
      } catch (error) {
        // Nothing was sent (not connected, bad input): nothing will be delivered to the route.
        this.#releaseRoute(routeKey, route, previous);
        throw error;
      }
      await written;
      return undefined;
    }
    let refused = false;
    try {
      return await this.#request(c, waitFor, options, onAck, c.command, (ack) => {
        refused = true;
        return errorFromReason(c.command, ack.reason);
      });
    } catch (error) {
      const code = AmpsError.isInstance(error) ? error.code : undefined;
      // A query that timed out or was aborted still runs on the server: its route stays until the
      // query ends, so what it still sends is dropped rather than reported as unhandled.
      gaveUp = !isSubscribe && (code === 'timed_out' || code === 'aborted') && this.#session?.open === true;
      if (gaveUp && route) route.givenUp = true;
      if (!gaveUp) this.#releaseRoute(routeKey, route, previous);
      // A subscribe that timed out or was aborted (with any reason) may still be registered on
      // the server: take it back, unless the connection is gone, it was never sent (bad options),
      // or the server refused it (so did not register it; but a refused replace leaves the server
      // holding what it held, unknown if an earlier replace was given up on).
      const unsent = code === 'disconnected' || code === 'invalid_options';
      const settledByRefusal = refused && !route?.heldUnknown;
      if (isSubscribe && c.subId !== undefined && !unsent && !settledByRefusal && this.#session?.open) {
        // A replace leaves the server holding the old subscription or the new one, which is not
        // known: neither goes on. Unless the id was unsubscribed since (and maybe taken again).
        if (previous && !this.#endReplaced(c.subId, route?.sent ?? 0, error as Error)) throw error;
        // Through #unsubscribing: what it was sent until then is dropped, not given to a retry of its id.
        this.#takeBack(c.subId, 'after a timeout or abort');
      }
      throw error;
    }
  }

  /**
   * Whether a subscribe is to a bookmark range, which the server ends at the range's end (its
   * completed ack): one with a range bookmark, or a replace that leaves the bookmark out of a range
   * still held (the server goes on with that range). A range on a SOW query and subscription is
   * not one: its completed ack ends the query.
   */
  #isRange(command: string, bookmark: string | undefined, held: Route | undefined): boolean {
    return command === 'subscribe' && (isBookmarkRange(bookmark) || (bookmark === undefined && held?.range === true));
  }

  /**
   * Takes back the route a failed command installed, if it is still there. A replace that failed
   * leaves the server's subscription in place, and so the route it had before.
   */
  #releaseRoute(key: string | undefined, route: Route | undefined, previous: Route | undefined): void {
    if (key === undefined || this.#routes.get(key) !== route) return;
    if (previous) this.#routes.set(key, previous);
    else this.#routes.delete(key);
  }

  /**
   * Ends with `error`, here, what holds `subId` for a replace sent as `sent` that was given up on:
   * the subscription it was to replace and any other replace of it in flight. Returns false when
   * the id was unsubscribed after that replace was sent (that unsubscribe has ended it all), or a
   * replace sent after it is still in flight.
   */
  #endReplaced(subId: string, sent: number, error: Error): boolean {
    const holder = this.#routes.get(subId);
    if (holder ? (holder.sent ?? 0) > sent : this.#unsubscribing.has(subId)) return false;
    // A replace sent after it still waits for its answer (a filter changed again): that answer
    // decides. Accepted, it holds the id; refused, it ends them all, as this one would have.
    const last = this.#endHooks.get(subId);
    const latest = last && this.#routeOf.get(last);
    if (latest && (latest.sent ?? 0) > sent) {
      latest.heldUnknown = true;
      return false;
    }
    if (holder) {
      this.#routes.delete(subId);
      this.#safely(() => holder.onDisconnect(error));
    }
    for (let end = this.#endHooks.get(subId); end; end = this.#replacing.get(end)) {
      const route = this.#routeOf.get(end);
      if (route) this.#safely(() => route.onDisconnect(error));
      end();
    }
    this.#endHooks.delete(subId);
    return true;
  }

  /* ------------------------------------------------------------ queue acks */

  /**
   * Acknowledges a queue message (`sow_delete` with its bookmark), batched per topic up to
   * `ackBatchSize` or `ackTimeoutMs`. Unsent acks are lost if the connection drops, and an ack
   * while not connected is dropped: the server redelivers those messages (at-least-once).
   */
  ack(message: Message | { topic: string; bookmark: string }, options: AckOptions = {}): void {
    const topic = message.topic;
    const bookmark = message.bookmark;
    if (!topic || !bookmark) throw new InvalidOptionsError('ack needs a message with a topic and a bookmark');
    if (!this.#session?.open) {
      // Its lease died with the connection: the server redelivers the message. A batch kept now
      // would arm a timer nothing clears, or be sent on a later connection.
      this.#log('debug', 'queue ack dropped: not connected', { topic, bookmark });
      return;
    }
    const opts = options.cancel ? 'cancel' : options.expire ? 'expire' : '';
    const key = `${opts}\u0000${topic}`;
    let batch = this.#pendingAcks.get(key);
    if (!batch) {
      batch = { topic, options: opts, bookmarks: [], timer: undefined };
      this.#pendingAcks.set(key, batch);
    }
    batch.bookmarks.push(bookmark);
    if (batch.bookmarks.length >= this.#ackBatchSize) {
      this.#sendAcks(key);
    } else if (batch.timer === undefined) {
      batch.timer = this.#env.setTimeout(() => this.#sendAcks(key), this.#ackTimeoutMs);
    }
  }

  /** Sends every batched queue acknowledgement now. */
  flushAcks(): void {
    for (const key of [...this.#pendingAcks.keys()]) this.#sendAcks(key);
  }

  #sendAcks(key: string): void {
    const batch = this.#pendingAcks.get(key);
    if (!batch) return;
    this.#pendingAcks.delete(key);
    if (batch.timer !== undefined) this.#env.clearTimeout(batch.timer);
    const command: Command = { command: 'sow_delete', topic: batch.topic, bookmark: batch.bookmarks.join(',') };
    if (batch.options) command.options = batch.options;
    this.#tryWrite(command);
  }

  /* -------------------------------------------------------------- internals */

  /** A new id, none the caller has chosen for a command or subscription in flight. */
  #commandId(): string {
    let id: string;
    do id = String(this.#nextId++);
    while (this.#pending.has(id) || this.#routes.has(id));
    return id;
  }

  /**
   * Refuses a command id in flight: its acks would settle that command (and leave it waiting for
   * ever). One the caller chose in the form #commandId makes is skipped by the ids made later:
   * the acks of a publish, which nothing tracks, may still come for it.
   */
  #claimCommandId(cid: string, what: string): void {
    if (this.#pending.has(cid))
      throw new InvalidOptionsError(`${what}: command id '${cid}' is in use by a command in flight`);
    if (typeof cid !== 'string' || !/^(0|[1-9]\d*)$/.test(cid)) return;
    const n = Number(cid);
    // Not past the largest safe integer: from there adding one gives the same id again.
    if (Number.isSafeInteger(n + 1) && n >= this.#nextId) this.#nextId = n + 1;
  }

  #requireSession(): Session {
    const session = this.#session;
    if (!session?.open) throw new DisconnectedError('not connected');
    return session;
  }

  #stream(
    options: { onMessage?: MessageHandler<Message> | undefined; maxQueue?: number | undefined },
    autoAck: boolean,
    onOverflow?: (error: Error) => void,
    onFlowControl: (pause: boolean) => boolean = (pause) => this.#flowControl(pause),
  ) {
    return new MessageStream<Message>({
      onMessage: options.onMessage,
      maxQueue: options.maxQueue ?? this.#maxQueue,
      onOverflow,
      onHandlerError: (error) => this.#emitException(error),
      onHandled: autoAck
        ? (m) => {
            if (m.bookmark && m.topic && m.leasePeriod !== undefined) this.#safely(() => this.ack(m));
          }
        : undefined,
      onFlowControl,
    });
  }

  /**
   * The consumer of a bookmark subscription holds maxQueue messages (`paused`), or has worked
   * through half of them. It is paused on the server meanwhile, rather than the connection, so
   * every other subscription and command goes on. What was in flight still comes; past twice
   * maxQueue, the connection pauses too (#hold).
   */
  #pauseFor(route: Route, paused: boolean, stream: MessageStream<Message>): boolean {
    if (!paused && route.holding) {
      route.holding = false;
      this.#flowControl(false);
    }
    const subId = route.subId as string;
    if (this.#routes.get(subId) !== route) return false;
    route.flowPaused = paused;
    // Ended (left, disconnected, overflowed): nobody reads, and it is being taken back anyway.
    if (!stream.ended) this.#sendFlowState(route, stream);
    return true;
  }

  /** Sends `subId`'s pause state as a whole (still paused, if the application paused it too). */
  #sendFlowState(route: Route, stream: MessageStream<Message>): void {
    const subId = route.subId as string;
    const pausing = this.#isPaused(subId);
    this.#sendPauseStates([subId], {}).catch((error: unknown) => {
      // A lost connection ends the subscription anyway; after a first refusal, the rest follow it.
      if (!isRefusal(error) || !route.pausable || stream.ended) return;
      route.pausable = false;
      if (pausing) {
        // The server would not pause it: pause the connection instead, as for any other
        // subscription. (The stream resumes the connection once its consumer has caught up.)
        const behind = route.flowPaused;
        route.flowPaused = false;
        if (!behind || route.holding || this.#flowControl(true)) {
          route.holding = false;
          return;
        }
      }
      // Not resumed, it would get nothing more; or nothing can slow it down.
      stream.overflow(
        new SlowConsumerError(
          `subscription ${subId}: the server would not pause or resume it for its consumer: ${(error as Error).message}`,
          { cause: error },
        ),
      );
    });
  }

  /** What came after the server's pause fills twice maxQueue: pause the connection, or end. */
  #hold(route: Route, stream: MessageStream<Message>): void {
    route.holding = this.#flowControl(true);
    if (!route.holding) {
      stream.overflow(
        new SlowConsumerError(
          `subscription ${route.subId}: the consumer fell twice maxQueue behind and the connection cannot pause; consume faster or raise maxQueue`,
        ),
      );
    }
  }

  #flowControl(pause: boolean): boolean {
    const session = this.#session;
    const connection = session?.connection;
    if (!session || !connection?.pause || !connection.resume) return false;
    if (pause) {
      if (session.paused++ === 0) {
        connection.pause();
        this.#restartWatchdog(session);
      }
    } else if (session.paused > 0 && --session.paused === 0) {
      connection.resume();
      this.#restartWatchdog(session);
    }
    return true;
  }

  /** Sends a command that expects an ack and resolves with the ack named `waitFor`. */
  #request(
    command: Command,
    waitFor: string,
    options: CommandWaitOptions,
    onAck?: (ack: Message) => void,
    what: string = command.command,
    failureFor: (ack: Message) => Error = (ack) => errorFromReason(what, ack.reason),
  ): Promise<Message> {
    this.#requireSession();
    throwIfAborted(options.signal, what);
    const cid = command.commandId ?? this.#commandId();
    this.#claimCommandId(cid, what);
    const result = deferred<Message>();
    const timeoutMs = timeoutOption(options.timeoutMs, 'timeoutMs') ?? this.#commandTimeoutMs;
    const timer = deadline(this.#env, `${what} (cid ${cid})`, timeoutMs, options.signal, (error) => {
      this.#pending.delete(cid);
      result.reject(error);
    });
    this.#pending.set(cid, {
      command: command.command,
      waitFor,
      onAck,
      settle: (error, ack) => {
        timer.clear();
        this.#pending.delete(cid);
        if (error) {
          result.reject(error);
          return;
        }
        if (ack?.status === 'failure') result.reject(failureFor(ack));
        else result.resolve(ack as Message);
      },
    });
    try {
      this.#write({ ...command, commandId: cid });
      this.#flush();
    } catch (error) {
      this.#pending.get(cid)?.settle(error as Error);
    }
    return result.promise;
  }

  #write(command: Command): void {
    const session = this.#session;
    if (!session?.open || !session.connection) throw new DisconnectedError('not connected');
    checkFrameSize(command, this.#maxFrameSize);
    this.#outbox.write(command);
    this.#written();
  }

  /** Sends a full batch now, or the rest at the end of the tick. */
  #written(): void {
    if (this.#outbox.byteLength >= FLUSH_BYTES) {
      this.#flush();
    } else if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      queueMicrotask(this.#flushTask);
    }
  }

  /** Writes, reporting (not throwing) failure: for acks and cleanup that have no caller to tell. */
  #tryWrite(command: Command): void {
    try {
      this.#write(command);
    } catch (error) {
      this.#log('debug', 'write skipped', { command: command.command, error: String(error) });
    }
  }

  readonly #flushTask = (): void => {
    this.#flushScheduled = false;
    this.#flush();
  };

  #flush(): void {
    const session = this.#session;
    if (this.#outbox.byteLength === 0 || !session?.connection || !session.open) return;
    let bytes = this.#outbox.take();
    if (this.#filter) {
      try {
        bytes = this.#filter(bytes, 'out') ?? bytes;
      } catch (error) {
        // The batch is lost with it, so its commands would wait forever: end the connection.
        this.#log('error', 'closing the connection: the transport filter threw', { error: String(error) });
        this.#closeSession(toError(error));
        return;
      }
    }
    session.lastSentAt = this.#env.now();
    session.connection.send(bytes);
  }

  async #whenWritable(): Promise<void> {
    this.#flush();
    const connection = this.#session?.connection;
    if (connection) await connection.whenDrained();
  }

  #onData(session: Session, chunk: Uint8Array): void {
    if (this.#session !== session || session.closed.settled) return;
    session.lastReceivedAt = this.#env.now();
    try {
      const bytes = this.#filter ? (this.#filter(chunk, 'in') ?? chunk) : chunk;
      session.decoder.push(bytes);
    } catch (error) {
      // Bad data, or a transport filter that failed: the stream cannot be trusted any more.
      // (User callbacks never get here: each is guarded where it is called.)
      const why = ProtocolError.isInstance(error) ? 'bad data from the server' : 'reading failed';
      this.#log('error', `closing the connection: ${why}`, { error: String(error) });
      this.#closeSession(toError(error));
      return;
    }
    this.#beatIfDue(session);
  }

  /** Part of a message arrived (see `ConnectionHandlers.onActivity`): the server is not silent. */
  #onActivity(session: Session): void {
    if (this.#session !== session || session.closed.settled) return;
    session.lastReceivedAt = this.#env.now();
    this.#beatIfDue(session);
  }

  /** The server counts a client silent for 2 intervals as gone, even while it is busy sending to us. */
  #beatIfDue(session: Session): void {
    const hb = session.heartbeat;
    if (hb && session.lastReceivedAt - session.lastSentAt >= hb.intervalMs) this.#beat(session);
  }

  #beat(session: Session): void {
    session.lastSentAt = this.#env.now();
    this.#tryWrite({ command: 'heartbeat', options: 'beat' });
  }

  #onMessage(session: Session, message: Message): void {
    // A handler may have closed the session on an earlier frame of the same chunk.
    if (this.#session !== session || session.closed.settled) return;
    switch (message.command) {
      case 'ack':
        this.#onAck(message);
        return;
      case 'heartbeat':
        if (session.heartbeat) this.#beat(session);
        return;
      default:
        this.#route(message);
    }
  }

  #route(message: Message): void {
    const routes = this.#routes;
    const ended = this.#unsubscribing;
    if (message.queryId !== undefined) {
      if (ended.has(message.queryId)) return;
      const route = routes.get(message.queryId);
      if (route) {
        route.onMessage(message);
        return;
      }
    }
    if (message.subIds !== undefined) {
      let handled = false;
      for (const id of message.subIds.split(',')) {
        const route = ended.has(id) ? undefined : routes.get(id);
        if (route) route.onMessage(message.subId === id ? message : forSubscription(message, id));
        handled ||= route !== undefined || ended.has(id);
      }
      if (handled) return;
    } else if (message.subId !== undefined) {
      if (ended.has(message.subId)) return;
      const route = routes.get(message.subId);
      if (route) {
        route.onMessage(message);
        return;
      }
    }
    this.#unhandled(message);
  }

  #onAck(ack: Message): void {
    let handled = false;
    const type = ack.ackType;
    const pending = ack.commandId === undefined ? undefined : this.#pending.get(ack.commandId);
    if (
      (type === 'persisted' || type === 'processed') &&
      ack.sequence !== undefined &&
      ack.subId === undefined &&
      ack.queryId === undefined
    ) {
      if (
        !pending ||
        pending.command === 'publish' ||
        pending.command === 'delta_publish' ||
        pending.command === 'sow_delete'
      ) {
        if (ack.status === 'failure') {
          this.#failedWriteListeners.emit((e) => this.#emitException(e), {
            sequence: ack.sequence,
            commandId: ack.commandId,
            reason: ack.reason,
            ack,
          });
          handled = true;
        } else if (type === 'persisted') {
          this.#persistedListeners.emit((e) => this.#emitException(e), ack.sequence, ack);
          handled = true;
        }
      }
    }
    if (pending) {
      handled = true;
      if (pending.onAck) this.#safely(() => pending.onAck?.(ack));
      if (ack.status === 'failure' || type === pending.waitFor) pending.settle(undefined, ack);
    }
    const late = pending || ack.commandId === undefined ? undefined : this.#lateUnsubscribes.get(ack.commandId);
    if (late) {
      this.#lateUnsubscribes.delete(ack.commandId as string);
      late();
      handled = true;
    }
    // An ack its command was waiting for is that command's; the route sees the ones after it.
    const routeKey = pending || late ? undefined : (ack.queryId ?? ack.subId);
    // One for an id being unsubscribed was sent for what held the id before (a subscribe given up
    // on): dropped, as its deliveries are, rather than given to a new subscription of that id.
    if (routeKey !== undefined && this.#unsubscribing.has(routeKey)) {
      handled = true;
    } else if (routeKey !== undefined) {
      const route = this.#routes.get(routeKey);
      if (route?.onAck) {
        this.#safely(() => route.onAck?.(ack));
        handled = true;
      }
    }
    if (!handled) {
      if (ack.status === 'failure' && (ack.commandId !== undefined || ack.sequence !== undefined)) {
        this.#failedWriteListeners.emit((e) => this.#emitException(e), {
          sequence: ack.sequence,
          commandId: ack.commandId,
          reason: ack.reason,
          ack,
        });
        if (this.#failedWriteListeners.size > 0) return;
      }
      this.#unhandled(ack);
    }
  }

  #unhandled(message: Message): void {
    if (this.#unhandledListeners.size > 0) {
      this.#unhandledListeners.emit((e) => this.#emitException(e), message);
    } else if (this.#lastChance) {
      this.#safely(() => this.#lastChance?.(message));
    } else {
      this.#log('debug', 'unhandled message', message.toJSON());
    }
  }

  /** A `wait` of 0 is the last look before closing for silence. */
  #armWatchdog(session: Session, wait?: number): void {
    const hb = session.heartbeat;
    if (!hb || !session.open) return;
    const silentFor = this.#env.now() - session.lastReceivedAt;
    const delay = wait ?? (session.paused > 0 ? hb.intervalMs : Math.max(1, hb.timeoutMs - silentFor));
    hb.timer = this.#env.setTimeout(() => {
      hb.timer = undefined;
      if (this.#session !== session || !session.open) return;
      const now = this.#env.now();
      if (session.paused > 0) {
        // Paused for a slow consumer: the silence is ours (we stopped reading), not the server's.
        // Restart the silence clock, and beat every interval so the server does not take us for gone.
        session.lastReceivedAt = now;
        this.#beat(session);
        this.#armWatchdog(session);
        return;
      }
      const silent = now - session.lastReceivedAt;
      if (silent < hb.timeoutMs) {
        this.#armWatchdog(session);
      } else if (delay > 0) {
        // The silence may be ours: after a blocked event loop (a long handler, a GC pause, a
        // frozen tab) timers run before the socket is read. Let it read what arrived, then decide.
        this.#armWatchdog(session, 0);
      } else {
        this.#closeSession(
          new TimedOutError(`heartbeat timeout: nothing from ${session.uri.redacted} for ${Math.round(silent)} ms`),
        );
      }
    }, delay);
  }

  /** Re-arms a running watchdog, whose period depends on whether the connection is paused. */
  #restartWatchdog(session: Session): void {
    const hb = session.heartbeat;
    if (hb?.timer === undefined) return;
    this.#env.clearTimeout(hb.timer);
    hb.timer = undefined;
    this.#armWatchdog(session);
  }

  #stopHeartbeat(session: Session): void {
    if (session.heartbeat?.timer !== undefined) this.#env.clearTimeout(session.heartbeat.timer);
    session.heartbeat = undefined;
  }

  /** Closes the current connection because of `error`; teardown follows through onClose. */
  #closeSession(error: Error): void {
    const session = this.#session;
    if (!session) return;
    session.connecting?.cancel(error);
    session.connection?.close(error);
    // Tear down now rather than when the transport confirms: a dead peer may never let it.
    this.#onClose(session, error);
  }

  #onClose(session: Session, error: Error | undefined): void {
    if (session.closed.settled) return;
    const wasOpen = session.open;
    session.open = false;
    this.#stopHeartbeat(session);
    session.closed.resolve(error);
    if (this.#session !== session) return;
    this.#outbox.clear();
    this.#userPaused.clear();
    const reason = new DisconnectedError(
      error
        ? `disconnected from ${session.uri.redacted}: ${error.message}`
        : `disconnected from ${session.uri.redacted}`,
      { cause: error },
    );
    for (const pending of [...this.#pending.values()]) pending.settle(reason);
    this.#pending.clear();
    // Their acks will never come: the ids are free on the next connection.
    for (const release of this.#lateUnsubscribes.values()) release();
    this.#lateUnsubscribes.clear();
    for (const route of [...this.#routes.values()]) this.#safely(() => route.onDisconnect(reason));
    this.#routes.clear();
    for (const end of this.#endHooks.values()) end();
    this.#endHooks.clear();
    for (const batch of this.#pendingAcks.values()) if (batch.timer !== undefined) this.#env.clearTimeout(batch.timer);
    if (this.#pendingAcks.size > 0) {
      this.#log('warn', 'queue acks not sent before the disconnect; the server will redeliver those messages', {
        count: [...this.#pendingAcks.values()].reduce((n, b) => n + b.bookmarks.length, 0),
      });
    }
    this.#pendingAcks.clear();
    if (wasOpen) {
      this.#log('info', 'disconnected', { uri: session.uri.redacted, error: error?.message });
      this.#setState(ConnectionState.Disconnected, error);
      this.#disconnectListeners.emit((e) => this.#emitException(e), error);
    }
  }

  #setState(state: ConnectionState, error?: Error): void {
    this.#state = state;
    this.#stateListeners.emit((e) => this.#emitException(e), { state, uri: this.#session?.uri.redacted, error });
  }

  #safely(fn: () => void): void {
    try {
      fn();
    } catch (error) {
      this.#emitException(error);
    }
  }

  /** Logs, ignoring a logger that throws: it runs inside the decoder and the close path, and has nowhere to report to. */
  #log(level: keyof Logger, message: string, fields?: Record<string, unknown>): void {
    try {
      this.#logger?.[level]?.(message, fields);
    } catch {
      // Nothing to do: reporting it would go through the same logger.
    }
  }

  #emitException(error: unknown): void {
    if (this.#exceptionListeners.size === 0) {
      this.#log('error', 'uncaught error in a handler or listener', { error: String(error) });
      return;
    }
    this.#exceptionListeners.emit((e) => this.#log('error', 'exception listener threw', { error: String(e) }), error);
  }
}

/**
 * A failed logon is an authentication failure unless the reason names something more specific.
 * `reason` is the ack's, the credentials hidden: a server may quote what it was sent.
 */
function logonFailure(ack: Message, reason: string | undefined): Error {
  if (codeForReason(ack.reason) !== 'command_failed') return errorFromReason('logon', ack.reason, reason);
  return new AuthenticationError(`logon failed: ${reason ?? 'authentication failure'}`, { reason });
}

/** `text` with each secret replaced by `***`, longest first (one may hold another). */
function hideSecrets(text: string | undefined, secrets: ReadonlyArray<string | undefined>): string | undefined {
  if (text === undefined) return undefined;
  const hidden = secrets.filter((s): s is string => typeof s === 'string' && s !== '');
  for (const secret of hidden.sort((a, b) => b.length - a.length)) text = text.split(secret).join('***');
  return text;
}
