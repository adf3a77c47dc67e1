import {
  AbortError,
  type AckOptions,
  type BookmarkStore,
  Bookmarks,
  bookmarkOption,
  Client,
  type ClientOptions,
  type Command,
  type CommandName,
  type CommandOptions,
  type CommandWaitOptions,
  ConnectionError,
  ConnectionState,
  canPause,
  checkEncodable,
  checkFrameSize,
  checkPublish,
  countOption,
  DEFAULT_MAX_FRAME_SIZE,
  type Deadline,
  type Deferred,
  DisconnectedError,
  deadline,
  defaultEnvironment,
  deferred,
  type Environment,
  type ExecuteOptions,
  type FailedWrite,
  flushAckTypeOption,
  heartbeatOption,
  InvalidOptionsError,
  InvalidUriError,
  isBookmarkRange,
  isRefusal,
  type Logger,
  MAX_TIMEOUT_MS,
  type Message,
  MessageStream,
  mergeOptions,
  type PublishOptions,
  type PublishStore,
  PublishStoreGapError,
  parseOptions,
  type QueryStats,
  type ReconnectDelayStrategy,
  RetryExhaustedError,
  redactUri,
  type ServerChooser,
  SlowConsumerError,
  type SowDeleteTarget,
  type SowOptions,
  SowQuery,
  type SubscribeOptions,
  Subscription,
  type SubscriptionManager,
  signalOption,
  sowDeleteCommand,
  splitOptions,
  statsOf,
  TimedOutError,
  type TimerHandle,
  type Transport,
  throwIfAborted,
  timeoutOption,
  toError,
  waitForOption,
} from '@amps-ts/core-protocol';
import { recommendedBackoff } from '@amps-ts/delay-exponential';
import { roundRobin } from '@amps-ts/server-chooser-round-robin';
import { Fifo } from './fifo.js';
import { MemoryBookmarkStore } from './memory-bookmark-store.js';
import { MemoryPublishStore } from './memory-publish-store.js';
import { StateStream } from './state-stream.js';
import { MemorySubscriptionManager } from './subscription-manager.js';

/** `opts` without the tokens `dropped`, and with `added`; undefined when none is left. */
function editOptions(opts: string | undefined, dropped: readonly string[], added?: string): string | undefined {
  const kept = splitOptions(opts).filter((token) => !dropped.includes(token));
  if (added) kept.push(added);
  return kept.length > 0 ? kept.join(',') : undefined;
}

export interface HeartbeatOptions {
  /** Seconds of silence after which the server sends a heartbeat. */
  intervalS: number;
  /** Seconds of silence after which the connection counts as dead. @default 2 × intervalS */
  timeoutS?: number;
}

export interface HAClientOptions {
  /** How bytes reach the servers: `nodeTransport()`, `browserTransport()`, or your own. */
  transport: Transport;
  /** Which server to try next. @default roundRobin(servers) */
  chooser?: ServerChooser;
  /** Server URIs for the default round-robin chooser (ignored when `chooser` is given). */
  servers?: readonly string[];
  /** How long to wait before each attempt. @default recommendedBackoff() from @amps-ts/delay-exponential */
  delay?: ReconnectDelayStrategy;
  /** Heartbeats detect dead and half-open connections; `false` turns them off. @default { intervalS: 5, timeoutS: 10 } */
  heartbeat?: HeartbeatOptions | false;
  /** Keeps publishes until persisted and republishes them after a failover; `false` for none. @default new MemoryPublishStore() */
  publishStore?: PublishStore | false;
  /** Tracks bookmark subscriptions for resume and de-duplication; `false` for none. @default new MemoryBookmarkStore() */
  bookmarkStore?: BookmarkStore | false;
  /** Re-enters subscriptions after a reconnect. @default new MemorySubscriptionManager() */
  subscriptionManager?: SubscriptionManager;
  /** Logon options and correlation id, sent on every logon. */
  logon?: { options?: string | CommandOptions; correlationId?: string };
  /** Longest one attempt may take to connect and log on, in ms. @default 5000 */
  connectTimeoutMs?: number;
  /** How long a command waits for its ack (and for a reconnect, while disconnected). @default 10_000 */
  commandTimeoutMs?: number;
  /** How long each resubscribe may take during recovery. @default commandTimeoutMs */
  resubscriptionTimeoutMs?: number;
  /** Discard a bookmark message once its handler returns or throws (or its promise settles). @default true */
  autoDiscard?: boolean;
  /** A message the bookmark store recognised as a duplicate (it is not delivered). */
  onDuplicate?: (message: Message, subId: string) => void;
  /** How often to ask `chooser.shouldSwitch` about failing back, in ms. @default 1000 */
  failbackCheckMs?: number;
  environment?: Environment;
  logger?: Logger;
  /** Passed to the underlying `Client`. */
  client?: Pick<
    ClientOptions,
    'maxFrameSize' | 'sendHighWaterMark' | 'maxQueue' | 'ackBatchSize' | 'ackTimeoutMs' | 'transportFilter'
  >;
}

/**
 * A connection that held at least this long starts a new sweep when it drops (#newSweep), so the
 * first attempt goes at once. One dropped sooner (a server that accepts the logon, then drops the
 * client: a name in use by another process, say) keeps the backoff going instead of reconnecting
 * at once, over and over.
 */
const HELD_CONNECTION_MS = 100;

/**
 * While the page says it is offline, how often the client tries anyway, each time on a fresh
 * budget: browsers are known to report offline wrongly (some VPNs and network managers), and a
 * client waiting only for an `online` that never comes would never reconnect.
 */
const OFFLINE_PROBE_MS = 10_000;

/**
 * How many times in a row a chooser may give the same URI (retrying that server, as a circuit
 * breaker does before it opens) before that counts as going round its list: a chooser of one URI.
 */
const SAME_URI_RETRIES_IN_A_PASS = 10;

/** How many state events a `states()` iterator keeps for a consumer that is behind. */
const DEFAULT_STATES_MAX_QUEUE = 1000;

/** Connections in a row ended after a fruitless publish replay before the log hears of it (see #endedAfterReplay). */
const FRUITLESS_REPLAYS_TO_WARN = 3;

/** Room kept in a frame for what the publish store and the client add once it is stored (s, a, cid). */
const STORE_FIELDS_BYTES = 128;

/** A connection state change, as listeners and `states()` see it. Never contains a password. */
export interface HAStateEvent {
  state: ConnectionState;
  /** The server, password redacted. */
  uri: string | undefined;
  /** Why, for `Disconnected` (and a failed attempt's reason). */
  reason: string | undefined;
  /** Connection attempts since the last successful recovery (1 = first try). */
  attempt: number;
  /** `environment.now()` when it happened. */
  at: number;
  /** Wall-clock time when it happened, ISO 8601. */
  timestamp: string;
  /**
   * `states()` only: how many events just before this one the iterator dropped because its
   * consumer was `maxQueue` events behind. Absent when none were.
   */
  dropped?: number;
}

interface HASubscription {
  readonly subId: string;
  readonly command: Command;
  readonly options: SubscribeOptions;
  readonly stream: MessageStream<Message>;
  readonly closed: Deferred<Error | undefined>;
  readonly ready: Deferred<void>;
  /** Bookmark subscriptions resume from the bookmark store. */
  readonly startBookmark: string | undefined;
  /** The connection generation it was last entered on. */
  generation: number;
  /** The subscription it replaces, until the server has answered the replace. */
  replaced?: HASubscription | undefined;
  /**
   * Entered and its completed ack not in yet: the server is replaying, and a persisted ack's
   * position may have been logged long ago, so a time before it could not stand for it (see the
   * bookmark store). A replace carries it over: the server keeps the subscription's place.
   */
  replaying?: boolean;
  /** Its consumer fell behind: paused on the server until it catches up (#flowControl). */
  flowPaused?: boolean;
  /**
   * Paused for its consumer and still far behind: what comes is dropped before the bookmark store
   * sees it, until the subscription is entered anew from its recovery point (#flowControl).
   */
  shedding?: boolean;
  /**
   * The server holds it no more, though this client does: taken back to be entered anew from its
   * recovery point (#enterAnew), or a range the server ended while it was shedding. A pause or
   * resume is not sent meanwhile (it would be refused): the subscribe carries the state.
   */
  offServer?: boolean;
  /** Each entry on a server (#enter) makes a new one: the server's answers to what was sent before are about the old. */
  entry?: object;
}

/** A stored sow_delete whose caller waits for its counts. */
interface PendingDelete {
  readonly commandId: string;
  /** Ends the Client's wait for the counts once the caller's wait has ended. */
  readonly abort: AbortController;
  settle(outcome: QueryStats | Error): void;
}

const STILL_STORED = 'stays in the publish store, which sends it until the server persists it: do not run it again';

/**
 * An AMPS client that stays connected: it reconnects through a `ServerChooser` and a
 * `ReconnectDelayStrategy`, republishes what the server has not persisted, resubscribes (bookmark
 * subscriptions from where they were) and drops duplicates, so the application loses nothing and
 * sees nothing twice.
 */
export class HAClient {
  readonly name: string;
  readonly #client: Client;
  readonly #transport: Transport;
  readonly #chooser: ServerChooser;
  readonly #delay: ReconnectDelayStrategy;
  readonly #heartbeat: Required<HeartbeatOptions> | undefined;
  readonly #publishStore: PublishStore | undefined;
  readonly #bookmarkStore: BookmarkStore | undefined;
  readonly #manager: SubscriptionManager;
  readonly #env: Environment;
  readonly #logger: Logger | undefined;
  readonly #options: HAClientOptions;
  readonly #connectTimeoutMs: number;
  readonly #commandTimeoutMs: number;
  /** The Client's: a command it would refuse to send is refused before it is stored. */
  readonly #maxFrameSize: number;
  readonly #resubscriptionTimeoutMs: number;
  readonly #failbackCheckMs: number;

  #state: ConnectionState = ConnectionState.Disconnected;
  #uri: string | undefined;
  #attempt = 0;
  #generation = 0;
  /** Resolves when the current connection has fully recovered; replaced on each disconnect. */
  #ready: Deferred<void> = deferred<void>();
  /** The reconnect loop, until it ends (the next loop waits for it: see #runLoop). */
  #running: Promise<void> | undefined;
  /**
   * Stops the reconnect loop under way (disconnect(), a give-up, an aborted connectAndLogon()):
   * its wait ends, and its attempt is abandoned. Cleared once the loop has recovered.
   */
  #loop: AbortController | undefined;
  #shutdown = false;
  /** The disconnect() under way, until it has ended in `Shutdown`. */
  #disconnecting: Promise<void> | undefined;
  /** How many times disconnect() was called: one called while a connectAndLogon() waits for the close wins. */
  #disconnectCalls = 0;
  #publishLive = false;
  /** When the last recovery finished (see HELD_CONNECTION_MS). */
  #recoveredAt = 0;
  /** The store's last persisted sequence when this connection replayed unpersisted publishes. */
  #replayedAfter: number | undefined;
  /** Connections in a row that ended after such a replay with nothing persisted (see #endedAfterReplay). */
  #fruitlessReplays = 0;
  /** Stored publishes not yet sent, in the order of their sequences (see #sendStored). */
  readonly #unsent = new Fifo<Command>();
  /**
   * Sow_deletes whose callers wait for their counts, by the command given to the store: its
   * sequence may come later (a full store) or change (renumbered at the first logon).
   */
  readonly #deletes = new Map<Command, PendingDelete>();
  /** Ends the publish store's waits under way (see #storeWait). */
  readonly #storeWaits = new Set<(error: Error) => void>();
  #wake: (() => void) | undefined;
  /** The page said `offline` and not `online` since (see #reconnect). */
  #offline = false;
  /** The page was left (`pagehide`) and not shown (`visible`, `pageshow`, `online`) since (see #reconnect). */
  #pageLeft = false;
  #failbackTimer: TimerHandle | undefined;
  /** `shouldSwitch` asked for a move whose attempt is not reported yet (see #runLoop). */
  #switchPending = false;
  #stopHints: (() => void) | undefined;
  readonly #lastErrors = new Map<string, string>();
  /**
   * The URIs the chooser gave since it last came back to one already tried (one pass over its
   * list), each with the configuration error it failed with (undefined if it failed otherwise).
   */
  readonly #chooserPass = new Map<string, Error | undefined>();
  /** The URI the chooser last gave in this outage, and how many times in a row it gave it. */
  #lastChosen: { uri: string; times: number } | undefined;
  /** URIs whose InvalidUriError has gone to onException: reported once, not at every retry. */
  readonly #reportedInvalidUris = new Set<string>();
  #firstFailureAt: number | undefined;
  readonly #subs = new Map<string, HASubscription>();
  /**
   * What the bookmark store holds for each id, a new token each time it forgets the id: a message
   * still being handled when its subscription ended is not discarded from the next one's progress.
   */
  readonly #bookmarkEpochs = new Map<string, object>();
  /** Subscriptions waiting for the client to be ready to replace the one holding their id. */
  readonly #replacing = new Set<HASubscription>();
  /**
   * The ids of the subscriptions paused (`pause()`, or the `pause` option): kept by id, as the
   * server keeps a subscription paused through a replace, and entered paused until resumed.
   */
  readonly #paused = new Set<string>();
  readonly #stateListeners = new Set<(event: HAStateEvent) => void>();
  readonly #stateStreams = new Set<StateStream>();
  /** State events not yet told to every listener and iterator, oldest first (see #emit). */
  readonly #unheardEvents: HAStateEvent[] = [];
  #emitting = false;
  readonly #failedWriteListeners = new Set<(failure: FailedWrite) => void>();
  /** Stored commands whose refusal was told from their processed ack: not told again from the persisted one. */
  readonly #refused = new Set<number>();
  #nextSubId = 0;
  /** Stands for the current connection (a new one on each disconnect): queue leases are tied to it. */
  #connection: object = {};
  /** The connection each queue message delivered to a subscription was leased on. */
  readonly #leases = new WeakMap<object, object>();

  constructor(name: string, options: HAClientOptions) {
    if (!options || typeof options.transport?.connect !== 'function') {
      throw new InvalidOptionsError('options.transport is required (nodeTransport(), browserTransport(), ...)');
    }
    if (!options.chooser && (!options.servers || options.servers.length === 0)) {
      throw new InvalidOptionsError('give HAClient a chooser, or servers for the default round-robin chooser');
    }
    this.name = name;
    this.#options = options;
    this.#transport = options.transport;
    this.#env = options.environment ?? defaultEnvironment;
    this.#logger = options.logger;
    this.#chooser = options.chooser ?? roundRobin([...(options.servers ?? [])]);
    this.#delay = options.delay ?? recommendedBackoff({ environment: this.#env });
    // Checked here: a bad one would fail every attempt after its logon, and reconnect for ever.
    const heartbeat = options.heartbeat ?? { intervalS: 5, timeoutS: 10 };
    this.#heartbeat = heartbeat === false ? undefined : heartbeatOption(heartbeat.intervalS, heartbeat.timeoutS);
    this.#publishStore =
      options.publishStore === false
        ? undefined
        : (options.publishStore ?? new MemoryPublishStore({ environment: this.#env }));
    this.#bookmarkStore =
      options.bookmarkStore === false ? undefined : (options.bookmarkStore ?? new MemoryBookmarkStore());
    this.#manager = options.subscriptionManager ?? new MemorySubscriptionManager();
    // Checked here: a bad value would otherwise fail every connection attempt, which is retried.
    this.#connectTimeoutMs = timeoutOption(options.connectTimeoutMs, 'connectTimeoutMs', 1) ?? 5000;
    this.#commandTimeoutMs = options.commandTimeoutMs ?? 10_000;
    this.#maxFrameSize = options.client?.maxFrameSize ?? DEFAULT_MAX_FRAME_SIZE;
    this.#resubscriptionTimeoutMs =
      timeoutOption(options.resubscriptionTimeoutMs, 'resubscriptionTimeoutMs') ?? this.#commandTimeoutMs;
    this.#failbackCheckMs = timeoutOption(options.failbackCheckMs, 'failbackCheckMs', 1) ?? 1000;
    this.#client = new Client(name, {
      ...options.client,
      transport: options.transport,
      environment: this.#env,
      logger: options.logger,
      commandTimeoutMs: this.#commandTimeoutMs,
    });
    this.#ready.promise.catch(() => {});
    this.#client.onDisconnect((error) => this.#onDisconnected(error));
    this.#client.onPersisted((sequence) => this.#publishStore?.discardUpTo(sequence));
    this.#client.onFailedWrite((failure) => {
      const sequence = failure.sequence;
      if (sequence !== undefined) {
        // The server will never persist a refused publish: not replayed, the others kept.
        // (A store or listener that throws must not keep the listeners after it from hearing.)
        this.#safely(() => this.#publishStore?.discard?.(sequence));
        // A waited-for sow_delete asks for processed acks too: its refusal comes on both, told once.
        if (failure.ack?.ackType !== 'persisted') this.#refused.add(sequence);
        else if (this.#refused.delete(sequence)) return;
      }
      for (const listener of this.#failedWriteListeners) this.#safely(() => listener(failure));
    });
  }

  /* ------------------------------------------------------------------ state */

  get state(): ConnectionState {
    return this.#state;
  }

  /** The server currently connected to (password redacted). */
  get uri(): string | undefined {
    return this.#uri;
  }

  /** Whether the connection is up and recovery (republish, resubscribe) has finished. */
  get isReady(): boolean {
    return this.#ready.settled && !this.#shutdown && this.#client.isConnected;
  }

  get publishStore(): PublishStore | undefined {
    return this.#publishStore;
  }

  get bookmarkStore(): BookmarkStore | undefined {
    return this.#bookmarkStore;
  }

  /** The one-connection client underneath (for hooks such as `onException`). */
  get client(): Client {
    return this.#client;
  }

  onStateChange(listener: (event: HAStateEvent) => void): () => void {
    this.#stateListeners.add(listener);
    return () => this.#stateListeners.delete(listener);
  }

  /**
   * State changes as an async iterator; it ends after `Shutdown`. Asked for after `Shutdown`, it
   * waits for the next run (a client can be started again). A consumer `maxQueue` events
   * behind (or one that never iterates) loses the oldest: the next event it reads carries
   * `dropped`, how many it missed.
   */
  states(options: { maxQueue?: number } = {}): AsyncIterable<HAStateEvent> {
    const maxQueue = countOption(options.maxQueue, 'maxQueue') ?? DEFAULT_STATES_MAX_QUEUE;
    const stream = new StateStream(maxQueue, () => this.#stateStreams.delete(stream));
    this.#stateStreams.add(stream);
    return stream;
  }

  /** A publish or sow_delete the server refused. */
  onFailedWrite(listener: (failure: FailedWrite) => void): () => void {
    this.#failedWriteListeners.add(listener);
    return () => this.#failedWriteListeners.delete(listener);
  }

  /* ------------------------------------------------------------- lifecycle */

  /**
   * Connects (trying servers as the chooser and delay strategy say), logs on and recovers.
   * Resolves once ready; rejects when the delay strategy gives up, naming every server tried.
   *
   * Aborting `signal` before then stops connecting: the attempt under way is closed, the client
   * stays `Disconnected`, and commands waiting for the connection fail with the abort reason.
   * Call `connectAndLogon()` again to start over. Once it has resolved, the signal does nothing.
   */
  async connectAndLogon(options: { signal?: AbortSignal } = {}): Promise<void> {
    // Before anything starts: a bad signal would otherwise fail the wait, not the loop.
    signalOption(options.signal);
    // A disconnect() still closing would otherwise end (in Shutdown) the connection made here.
    if (this.#disconnecting) {
      const calls = this.#disconnectCalls;
      await this.#disconnecting;
      // disconnect() called again meanwhile (it joined the same close): the last word is to stay
      // disconnected, not to connect once that close is over.
      if (this.#disconnectCalls !== calls) {
        throw new DisconnectedError('the client was disconnected by the application');
      }
    }
    if (this.#shutdown) {
      // Starting again after disconnect(): the first attempt goes at once, with a fresh budget.
      this.#shutdown = false;
      this.#newSweep();
      this.#ready = deferred<void>();
      this.#ready.promise.catch(() => {});
    }
    try {
      await this.#whenReady(undefined, options.signal, 'connectAndLogon()');
    } catch (error) {
      // The application gave up waiting: stop trying, rather than connect behind its back.
      if (options.signal?.aborted && this.#connecting) {
        const err = toError(error);
        this.#log('info', 'connectAndLogon() aborted', { reason: err.message });
        // The attempt under way closes now, not when the loop next looks at its signal.
        this.#client.abort(err);
        this.#stopReconnecting(err);
      }
      throw error;
    }
  }

  /** Stops reconnecting, flushes queue acks, closes the connection; ends in `Shutdown`. */
  disconnect(): Promise<void> {
    // Called again while closing: the same close, one Shutdown.
    this.#disconnectCalls++;
    this.#disconnecting ??= this.#disconnect().finally(() => {
      this.#disconnecting = undefined;
    });
    return this.#disconnecting;
  }

  async #disconnect(): Promise<void> {
    this.#shutdown = true;
    const error = new DisconnectedError('the client was disconnected by the application');
    this.#loop?.abort(error);
    this.#stopFailback();
    this.#stopListeningToHints();
    this.#publishLive = false;
    this.#ready.reject(error);
    this.#cancelStoreWaits(error);
    for (const [command, pending] of [...this.#deletes]) {
      // One still waiting for room is not stored: its wait was rejected, and it says so.
      if (command.sequence === undefined) continue;
      pending.settle(new DisconnectedError(`${error.message}; the sow_delete ${STILL_STORED}`, { cause: error }));
    }
    await this.#client.disconnect();
    await this.#running?.catch(() => {});
    for (const sub of this.#subs.values()) this.#endSubscription(sub, undefined, error);
    this.#subs.clear();
    this.#safely(() => this.#manager.clear());
    this.#emit(ConnectionState.Shutdown, undefined);
    for (const stream of this.#stateStreams) stream.end();
    this.#stateStreams.clear();
  }

  /** Whether a reconnect loop is under way (and not told to stop). */
  get #connecting(): boolean {
    return this.#loop !== undefined && !this.#loop.signal.aborted;
  }

  /** Starts the reconnect loop; for a planned move, `leaving` says why the current connection goes first. */
  #start(leaving?: string): void {
    if (this.#shutdown || this.#connecting) return;
    // Here, not in connectAndLogon(): a command or a subscribe also starts connecting.
    this.#stopHints ??= this.#transport.onHint?.((hint) => {
      this.#offline = hint === 'offline' || (this.#offline && hint !== 'online');
      if (hint === 'pagehide') {
        // Most browsers keep a page with an open WebSocket out of their back/forward cache: close
        // it, and wait (as offline) for the page to be shown again, restored from that cache.
        // (After the microtasks queued so far: a publish made in an earlier pagehide listener goes first.)
        this.#pageLeft = true;
        queueMicrotask(() => {
          if (this.#pageLeft && this.#client.isConnected)
            this.#client.abort(new DisconnectedError('the page was left (pagehide)'));
        });
      }
      // A page restored from the back/forward cache says `pageshow`, and may not say `visible`.
      if (hint === 'online' || hint === 'visible' || hint === 'pageshow') {
        this.#pageLeft = false;
        this.#wake?.();
      }
    });
    const loop = new AbortController();
    this.#loop = loop;
    this.#running = this.#runLoop(loop, this.#running, leaving);
  }

  async #runLoop(
    loop: AbortController,
    previous: Promise<void> | undefined,
    leaving: string | undefined,
  ): Promise<void> {
    // A loop just stopped may still be closing its attempt: the client connects once at a time.
    await previous?.catch(() => {});
    try {
      if (leaving !== undefined) await this.#leave(leaving, loop.signal);
      await this.#reconnect(loop.signal);
    } finally {
      if (this.#loop === loop) this.#loop = undefined;
      // The move ended before its attempt was reported: else the chooser would take the next
      // ordinary attempt (after a connectAndLogon(), say) for that move.
      if (this.#switchPending) {
        this.#switchPending = false;
        this.#safely(() => this.#chooser.reportSwitchCancelled?.());
      }
    }
  }

  async #reconnect(signal: AbortSignal): Promise<void> {
    /** The last attempt of this loop failed: a retry waits at least one turn of the event loop. */
    let failed = false;
    while (!signal.aborted) {
      if (this.#offline || this.#pageLeft) {
        // Every attempt would fail at once and use up the delay strategy's budget (or, the page
        // left, open a WebSocket that keeps it out of the back/forward cache): wait for 'online'
        // or 'visible'/'pageshow' (or OFFLINE_PROBE_MS), then try on a new sweep, its first attempt at once.
        await this.#sleep(OFFLINE_PROBE_MS, signal);
        if (signal.aborted) return;
        this.#newSweep();
        failed = false; // waited already: the new sweep's first attempt goes at once
      }
      let uri: string | undefined;
      try {
        uri = this.#chooser.getCurrentURI();
        if (!uri) throw new Error(this.#chooser.getError() || 'the chooser has no URIs');
      } catch (error) {
        // A chooser that throws is given up on as one with no server: asked again, it throws again.
        this.#giveUp(new ConnectionError(`no server to connect to: ${toError(error).message}`, { cause: error }));
        return;
      }
      const shown = redactUri(uri);
      const times = this.#lastChosen?.uri === uri ? this.#lastChosen.times + 1 : 1;
      this.#lastChosen = { uri, times };
      // The same URI again at once is the chooser retrying that server (a circuit breaker before it
      // opens), not going round: a valid URI may come after it.
      const wentRound = times === 1 || times > SAME_URI_RETRIES_IN_A_PASS;
      if (wentRound && this.#chooserPass.has(uri)) {
        // Back at a URI already tried: the chooser has gone round its list. If every URI on it is
        // one no attempt can use, retrying cannot help: it is the application's configuration.
        const errors = [...this.#chooserPass.values()];
        if (errors.every((e) => e !== undefined)) {
          this.#giveUp(
            new InvalidUriError(
              `no usable server: every URI the chooser gave is invalid: ${errors.map((e) => e.message).join('; ')}`,
              { cause: errors[0] },
            ),
          );
          return;
        }
        this.#chooserPass.clear();
      }
      let wait: number;
      try {
        wait = this.#delay.getConnectWaitDuration(uri);
      } catch (error) {
        this.#giveUp(this.#exhausted(error));
        return;
      }
      if (!(wait >= 0 && wait <= MAX_TIMEOUT_MS)) {
        // NaN or a negative wait would not wait at all, and a longer one fires at once: a hot loop.
        this.#giveUp(
          new InvalidOptionsError(
            `the delay strategy returned a wait of ${wait} ms; it must be 0 to ${MAX_TIMEOUT_MS}`,
          ),
        );
        return;
      }
      this.#attempt++;
      // A wait of 0 after an attempt that failed without I/O (a URI the transport cannot take, a
      // transport that throws) would retry in microtasks alone: the event loop, and with it every
      // timer, socket and disconnect(), would never run again.
      if (wait > 0 || failed) await this.#sleep(wait, signal);
      if (signal.aborted) return;
      // Left during the wait: no attempt (it would open a WebSocket as the page is cached).
      if (this.#pageLeft) continue;
      const started = this.#env.now();
      try {
        const loggedOnAt = await this.#connectOnce(uri, signal);
        // The connection may have dropped, or the loop been stopped, in the last await; everything
        // below is synchronous.
        signal.throwIfAborted();
        if (!this.#client.isConnected) throw new DisconnectedError('the connection dropped during recovery');
        // Left while the connection was being opened (the hint found none to close): close it now.
        if (this.#pageLeft) throw new DisconnectedError('the page was left (pagehide)');
        const at = this.#env.now();
        this.#switchPending = false;
        // Plugin calls here and below: one that throws must not fail a good connection, nor stop the loop.
        this.#safely(() =>
          this.#chooser.reportSuccess({ uri: shown, attempt: this.#attempt, latencyMs: loggedOnAt - started, at }),
        );
        this.#recoveredAt = at;
        this.#chooserPass.clear(); // a server was usable: its list is not all bad
        this.#lastChosen = undefined;
        // Synchronously, so a disconnect right after this can start a new loop.
        this.#loop = undefined;
        this.#armFailback();
        this.#recovered();
        return;
      } catch (error) {
        const err = toError(error);
        if (this.#client.isConnected) this.#client.abort(err);
        // Stopped: whoever stopped the loop has said so.
        if (signal.aborted) return;
        this.#publishLive = false;
        this.#endedAfterReplay();
        this.#firstFailureAt ??= started;
        this.#lastErrors.set(shown, err.message);
        this.#log('warn', 'connection attempt failed', { uri: shown, attempt: this.#attempt, error: err.message });
        const invalid = InvalidUriError.isInstance(err);
        this.#chooserPass.set(uri, invalid ? err : undefined);
        // A chooser's bad URI is a configuration error the application must hear of, once: the
        // chooser moves on (reportFailure), and one bad URI among good ones does not stop the client.
        if (invalid && !this.#reportedInvalidUris.has(uri)) {
          this.#reportedInvalidUris.add(uri);
          this.#reportException(err);
        }
        // The application must hear of a publish gap: messages may be missing on that server.
        if (PublishStoreGapError.isInstance(err)) this.#reportException(err);
        this.#switchPending = false;
        this.#safely(() =>
          this.#chooser.reportFailure(err, { uri: shown, attempt: this.#attempt, at: this.#env.now() }),
        );
        this.#emit(ConnectionState.Disconnected, err.message);
        failed = true;
      }
    }
  }

  /**
   * Closes a healthy connection for a planned move. The server first processes what was sent on
   * it, the queue acks batched so far included (it would redeliver those messages otherwise),
   * for up to commandTimeoutMs, so a stuck server cannot hold up the move.
   */
  async #leave(reason: string, signal: AbortSignal): Promise<void> {
    try {
      this.#client.flushAcks();
      await this.#client.flush('processed', { timeoutMs: this.#commandTimeoutMs, signal });
    } catch (error) {
      if (signal.aborted) return;
      // Leave anyway: those messages are redelivered (at-least-once), as after a failure.
      this.#log('warn', 'left a server before it confirmed the queue acks sent to it', {
        uri: this.#uri,
        error: toError(error).message,
      });
    }
    if (signal.aborted) return;
    this.#emit(ConnectionState.Disconnected, reason);
    this.#client.abort(new DisconnectedError(reason));
  }

  /** One attempt: connect, log on, heartbeat, republish, resubscribe. Returns when it was logged on. */
  async #connectOnce(uri: string, signal: AbortSignal): Promise<number> {
    const client = this.#client;
    this.#uri = redactUri(uri);
    await client.connect(uri, { timeoutMs: this.#connectTimeoutMs, signal });
    this.#emit(ConnectionState.Connected, undefined);
    const logon = await client.logon({
      authenticator: this.#chooser.getCurrentAuthenticator(),
      options: this.#options.logon?.options,
      correlationId: this.#options.logon?.correlationId,
      timeoutMs: this.#connectTimeoutMs,
      signal,
    });
    const loggedOnAt = this.#env.now();
    this.#emit(ConnectionState.LoggedOn, undefined);
    if (this.#heartbeat) {
      await client.heartbeat(this.#heartbeat.intervalS, this.#heartbeat.timeoutS, {
        timeoutMs: this.#connectTimeoutMs,
        signal,
      });
      this.#emit(ConnectionState.HeartbeatInitiated, undefined);
    }
    this.#generation++;
    if (this.#publishStore) {
      this.#publishStore.syncWithServer(logon.sequence);
      // The replay sends every stored publish, those not sent yet included.
      while (this.#unsent.peek()?.sequence !== undefined) this.#unsent.shift();
      // Synchronous on purpose: no new publish can slip in ahead of the replay.
      // By the sequences the store holds them at now (after syncWithServer): replay may send copies.
      const deletes = new Map<number, PendingDelete>();
      for (const [command, pending] of this.#deletes) {
        if (command.sequence !== undefined) deletes.set(command.sequence, pending);
      }
      const replayed = new Set<PendingDelete>();
      this.#publishStore.replay((command) => {
        const pending = command.sequence === undefined ? undefined : deletes.get(command.sequence);
        if (pending) replayed.add(pending);
        void this.#sendStoredCommand(command, pending);
      });
      // A waited-for sow_delete no longer stored was persisted by a server whose counts never
      // came: it was applied (once), by how much nobody can tell any more.
      for (const pending of deletes.values()) if (!replayed.has(pending)) pending.settle({});
      this.#replayedAfter = this.#publishStore.unpersistedCount() > 0 ? this.#publishStore.lastPersisted() : undefined;
      this.#publishLive = true;
      this.#emit(ConnectionState.PublishReplayed, undefined);
    } else {
      this.#publishLive = true;
    }
    const generation = this.#generation;
    await this.#manager.resubscribe(
      async (command) => {
        await this.#enter(command, generation);
      },
      // The manager's failed-resubscribe hook is application code: what it throws is reported.
      { signal, onException: (error) => this.#reportException(error) },
    );
    signal.throwIfAborted();
    const kept = new Set(this.#manager.list().map((m) => m.subId));
    for (const sub of this.#subs.values()) {
      if (!kept.has(sub.subId)) {
        this.#endSubscription(sub, new DisconnectedError(`subscription ${sub.subId} could not be resubscribed`));
      }
    }
    return loggedOnAt;
  }

  /** Recovery is complete: tell the application and run what waited for it. */
  #recovered(): void {
    this.#ready.resolve();
    // Subscriptions added while recovery was under way.
    for (const sub of [...this.#subs.values()]) {
      if (sub.generation !== this.#generation) void this.#enterLater(sub);
    }
    // Last: a listener may send commands now, as AMPS documents; one that found the client not
    // ready would start a reconnect loop, which drops the connection just recovered.
    this.#emit(ConnectionState.Resubscribed, undefined);
  }

  /**
   * A connection that replayed stored publishes has ended. Ended that way again and again with
   * nothing persisted, the server may be refusing the first of them (closing the connection on
   * it, as on a frame longer than it accepts): every replay sends it again, and everything stored
   * after it waits behind it. Said in the log: only the operator can tell what to do with it.
   */
  #endedAfterReplay(): void {
    const after = this.#replayedAfter;
    this.#replayedAfter = undefined;
    const store = this.#publishStore;
    if (after === undefined || !store) return;
    // A custom store that throws here must not stop the reconnect that follows: taken as progress.
    if (this.#safely(() => store.lastPersisted() !== after || store.unpersistedCount() === 0) !== false) {
      this.#fruitlessReplays = 0;
      return;
    }
    if (++this.#fruitlessReplays % FRUITLESS_REPLAYS_TO_WARN === 0) {
      this.#log(
        'warn',
        'connections keep ending after the publish replay, nothing persisted: the server may refuse the first unpersisted publish (too long? see maxFrameSize)',
        { uri: this.#uri, times: this.#fruitlessReplays, persistedUpTo: after, unpersisted: store.unpersistedCount() },
      );
    }
  }

  #onDisconnected(error: Error | undefined): void {
    this.#connection = {}; // the leases of the connection that went are given back
    this.#refused.clear(); // their persisted acks went with the connection
    this.#publishLive = false;
    this.#stopFailback();
    if (this.#shutdown) return;
    const wasReady = this.#ready.settled;
    if (!wasReady) return; // a failed attempt: the reconnect loop handles it
    this.#ready = deferred<void>();
    this.#ready.promise.catch(() => {});
    const reason = error?.message ?? 'the connection closed';
    this.#endedAfterReplay();
    if (this.#env.now() - this.#recoveredAt >= HELD_CONNECTION_MS) this.#newSweep();
    this.#emit(ConnectionState.Disconnected, reason);
    // The server we were on failed us: let the chooser move on before the next attempt.
    const uri = this.#uri ?? '';
    this.#safely(() =>
      this.#chooser.reportFailure(error ?? new DisconnectedError(reason), { uri, attempt: 0, at: this.#env.now() }),
    );
    this.#lastErrors.set(uri, reason);
    this.#start();
  }

  /**
   * Starts over: the delay strategy, the attempt count and the errors a give-up would name. After
   * a connection that held, a give-up, or a planned move; a connection dropped at once does not
   * (see HELD_CONNECTION_MS).
   */
  #newSweep(): void {
    // Called on a disconnect and a give-up: a strategy that throws must not stop either.
    this.#safely(() => this.#delay.reset());
    this.#attempt = 0;
    this.#firstFailureAt = undefined;
    this.#lastErrors.clear();
    this.#chooserPass.clear();
    this.#lastChosen = undefined;
  }

  #giveUp(error: Error): void {
    this.#log('error', 'giving up reconnecting', { error: error.message });
    this.#stopReconnecting(error);
  }

  /** Stops the reconnect loop; what waits for a connection fails with `error`. */
  #stopReconnecting(error: Error): void {
    this.#loop?.abort(error);
    // Nothing to wake or close any more: the next start listens again (see #start).
    this.#stopListeningToHints();
    // The next connectAndLogon() starts a new budget rather than giving up again at once.
    this.#newSweep();
    this.#publishLive = false;
    this.#cancelStoreWaits(error);
    this.#ready.reject(error);
    this.#ready = deferred<void>();
    this.#ready.promise.catch(() => {});
    // After the new #ready: a listener that starts again (connectAndLogon()) waits for that run.
    this.#emit(ConnectionState.Disconnected, error.message);
  }

  #exhausted(cause: unknown): Error {
    const servers = [...this.#lastErrors].map(([uri, error]) => ({ uri, error }));
    const elapsedMs = this.#firstFailureAt === undefined ? 0 : this.#env.now() - this.#firstFailureAt;
    const tried =
      servers.map((s) => `${s.uri} (${s.error})`).join('; ') || this.#safely(() => this.#chooser.getError());
    const attempts = this.#attempt;
    return new RetryExhaustedError(
      `gave up connecting after ${attempts} attempts in ${Math.round(elapsedMs)} ms: ${tried}`,
      { elapsedMs, attempts, servers },
      { cause },
    );
  }

  /** Waits `ms`, less if a hint wakes it (#wake) or the loop is stopped. */
  #sleep(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.#env.clearTimeout(timer);
        signal.removeEventListener('abort', done);
        this.#wake = undefined;
        resolve();
      };
      const timer = this.#env.setTimeout(done, ms);
      signal.addEventListener('abort', done, { once: true });
      this.#wake = done;
    });
  }

  /** Stops listening to the page's hints: what they said is unheard from now on. */
  #stopListeningToHints(): void {
    this.#stopHints?.();
    this.#stopHints = undefined;
    this.#offline = this.#pageLeft = false;
  }

  #armFailback(): void {
    const shouldSwitch = this.#chooser.shouldSwitch?.bind(this.#chooser);
    if (!shouldSwitch) return;
    const uri = this.#uri;
    this.#failbackTimer = this.#env.setTimeout(() => {
      this.#failbackTimer = undefined;
      if (this.#shutdown || !this.isReady || uri === undefined) return;
      // In a timer: what it throws would be uncaught. It is asked again at the next check.
      if (this.#safely(() => shouldSwitch(uri))) {
        this.#log('info', 'failing back to a preferred server', { from: uri });
        // A planned move: not the server's fault, so no reportFailure. Commands and publishes
        // wait for the new server from now on, while the old connection is closed (#leave).
        this.#ready = deferred<void>();
        this.#ready.promise.catch(() => {});
        this.#publishLive = false;
        this.#newSweep(); // a planned move goes at once
        this.#switchPending = true;
        this.#start('failing back to a preferred server');
      } else {
        this.#armFailback();
      }
    }, this.#failbackCheckMs);
  }

  #stopFailback(): void {
    if (this.#failbackTimer !== undefined) this.#env.clearTimeout(this.#failbackTimer);
    this.#failbackTimer = undefined;
  }

  #emit(state: ConnectionState, reason: string | undefined): void {
    this.#state = state;
    this.#unheardEvents.push({
      state,
      uri: this.#uri,
      reason,
      attempt: this.#attempt,
      at: this.#env.now(),
      timestamp: new Date().toISOString(),
    });
    // A listener may cause another event (a disconnect, say): it is heard once every listener and
    // iterator has heard this one, so that all see the events in the order they happened.
    if (this.#emitting) return;
    this.#emitting = true;
    try {
      for (let event = this.#unheardEvents.shift(); event; event = this.#unheardEvents.shift()) {
        for (const listener of this.#stateListeners) this.#safely(() => listener(event));
        for (const stream of this.#stateStreams) stream.push(event);
      }
    } finally {
      this.#emitting = false;
    }
  }

  /** Waits until the client is ready, bounded by `timeoutMs` and `signal` (errors name `what`). */
  async #whenReady(
    timeoutMs: number | undefined,
    signal: AbortSignal | undefined,
    what = 'waiting for a connection',
  ): Promise<void> {
    if (this.isReady) return;
    if (this.#shutdown) throw new DisconnectedError('the client is disconnected; call connectAndLogon() first');
    // Taken before starting: a loop that gives up at once replaces #ready with a new one.
    const ready = this.#ready.promise;
    this.#start();
    let expire: ((error: Error) => void) | undefined;
    const expired = new Promise<never>((_, reject) => {
      expire = reject;
    });
    const timer = deadline(this.#env, what, timeoutMs, signal, (error) => expire?.(error));
    try {
      await Promise.race([ready, expired]);
    } finally {
      timer.clear();
    }
  }

  /**
   * Runs `fn` once ready; while reconnecting it waits, bounded by the command's timeout. A command
   * cut off by a disconnect runs again after the recovery (as AMPS's retry-on-disconnect).
   */
  async #whenReadyThen<T, O extends CommandWaitOptions>(
    options: O,
    fn: (left: O) => Promise<T>,
    canRunAgain: () => boolean = () => true,
  ): Promise<T> {
    // Checked now, as the Client would once connected: a bad one would not bound the wait before.
    const timeoutMs = timeoutOption(options.timeoutMs, 'timeoutMs') ?? this.#commandTimeoutMs;
    signalOption(options.signal);
    const giveUpAt = timeoutMs > 0 ? this.#env.now() + timeoutMs : Number.POSITIVE_INFINITY;
    // The timeout bounds the command in all: the wait for a connection, then what is left of it.
    const left = (): O =>
      timeoutMs > 0 ? { ...options, timeoutMs: Math.max(1, Math.ceil(giveUpAt - this.#env.now())) } : options;
    for (;;) {
      await this.#whenReady(Math.max(1, giveUpAt - this.#env.now()), options.signal);
      try {
        return await fn(left());
      } catch (error) {
        const retry =
          DisconnectedError.isInstance(error) &&
          canRunAgain() &&
          !this.#shutdown &&
          !options.signal?.aborted &&
          this.#env.now() < giveUpAt;
        if (!retry) throw error;
      }
    }
  }

  /* -------------------------------------------------------------- publish */

  /**
   * Publishes. With a publish store (the default) the message is stored first, so it is sent
   * after recovery if the client is disconnected, and republished after a failover until the
   * server has persisted it. Returns a promise when you should wait (store full, send buffer full).
   */
  publish(topic: string, data: Uint8Array | string, options?: PublishOptions): Promise<void> | undefined {
    return this.#publish('publish', topic, data, options);
  }

  deltaPublish(topic: string, data: Uint8Array | string, options?: PublishOptions): Promise<void> | undefined {
    return this.#publish('delta_publish', topic, data, options);
  }

  #publish(
    command: 'publish' | 'delta_publish',
    topic: string,
    data: Uint8Array | string,
    options: PublishOptions | undefined,
  ): Promise<void> | undefined {
    checkPublish(topic, data);
    if (this.#shutdown) throw new DisconnectedError('the client is disconnected');
    const c: Command = { command, topic, data };
    if (options?.expiration !== undefined) c.expiration = options.expiration;
    if (options?.correlationId !== undefined) c.correlationId = options.correlationId;
    if (options?.sowKey !== undefined) c.sowKey = options.sowKey;
    const store = this.#publishStore;
    // What the encoder would refuse, refused before it is stored: kept, it would fail every replay.
    checkEncodable(c);
    checkFrameSize(c, this.#maxFrameSize, STORE_FIELDS_BYTES);
    if (!store) {
      if (!this.#publishLive)
        throw new DisconnectedError('not connected, and there is no publish store to keep the message');
      return this.#client.send(c);
    }
    const stored = store.store(c);
    this.#unsent.push(c);
    if (typeof stored === 'number') return this.#sendStored();
    return this.#storeWait(stored, c).then(
      () => this.#sendStored(),
      (error: unknown) => {
        this.#unsent.delete(c);
        throw error;
      },
    );
  }

  /**
   * Sends the stored publishes not yet sent, in sequence order: a publish let into a full store
   * goes out before any stored after it, or the server would drop it as a duplicate.
   */
  #sendStored(): Promise<void> | undefined {
    let wait: Promise<void> | undefined;
    const unsent = this.#unsent;
    while (unsent.peek()?.sequence !== undefined) {
      const command = unsent.shift() as Command;
      // While disconnected it waits in the store and goes out with the replay after the reconnect.
      if (!this.#publishLive) continue;
      try {
        wait = this.#sendStoredCommand(command, this.#deletes.get(command)) ?? wait;
      } catch (error) {
        if (!DisconnectedError.isInstance(error)) throw error;
      }
    }
    return wait;
  }

  /** Sends a stored command; a sow_delete whose caller waits for its counts also asks for them. */
  #sendStoredCommand(command: Command, pending: PendingDelete | undefined): Promise<void> | undefined {
    if (!pending) return this.#client.send(command);
    this.#client
      .execute(
        { ...command, commandId: pending.commandId, ackType: mergeOptions(command.ackType, 'processed') },
        { waitFor: 'stats', timeoutMs: 0, signal: pending.abort.signal },
      )
      .then(
        (ack) => pending.settle(statsOf(ack)),
        (error: Error) => {
          // Cut off by a disconnect: the replay sends it again, or settles it (see #attempt).
          if (!DisconnectedError.isInstance(error) || this.#shutdown) pending.settle(error);
        },
      );
    return undefined;
  }

  /** Resolves once the server has persisted every stored publish. */
  async publishFlush(timeoutMs?: number, signal?: AbortSignal): Promise<void> {
    if (!this.#publishStore) {
      await this.flush('persisted', { timeoutMs, signal });
      return;
    }
    // disconnect() rejected the flushes waiting then; a later one would wait for a connection too.
    if (this.#shutdown && this.#publishStore.unpersistedCount() > 0) {
      throw new DisconnectedError('the client is disconnected');
    }
    await this.#storeWait(this.#publishStore.flush(timeoutMs, signal));
  }

  /**
   * A wait on the publish store (for room, or a flush), which disconnect() and a give-up reject
   * with their error, as `cancelWaits` does: a store without it would leave the caller waiting.
   */
  #storeWait<T>(wait: Promise<T>, command?: Command): Promise<T> {
    return new Promise((resolve, reject) => {
      const settle = (error: Error | undefined, value?: T) => {
        this.#storeWaits.delete(cancel);
        if (error) reject(error);
        else resolve(value as T);
      };
      const cancel = (error: Error) => {
        // Stored already (a durable store writing it): it goes out with the next connection, so
        // failing its caller would be a lie. Only a wait for room or a flush ends here.
        if (command?.sequence === undefined) settle(error);
      };
      this.#storeWaits.add(cancel);
      wait.then((value) => settle(undefined, value), settle);
    });
  }

  /** Rejects every wait on the publish store with `error`. */
  #cancelStoreWaits(error: Error): void {
    // On a disconnect or a give-up, which must go on: the waits below are rejected all the same.
    this.#safely(() => this.#publishStore?.cancelWaits?.(error));
    for (const cancel of [...this.#storeWaits]) cancel(error);
  }

  /* -------------------------------------------------------- subscriptions */

  /** A subscription that survives failovers. With `bookmark`, it resumes where it was, without duplicates. */
  subscribe(topic: string, options: SubscribeOptions = {}): Subscription {
    return this.#subscribe('subscribe', topic, options);
  }

  deltaSubscribe(topic: string, options: SubscribeOptions = {}): Subscription {
    return this.#subscribe('delta_subscribe', topic, options);
  }

  /** Re-runs the SOW query after each reconnect, then continues live. */
  sowAndSubscribe(topic: string, options: SubscribeOptions = {}): Subscription {
    return this.#subscribe('sow_and_subscribe', topic, options);
  }

  sowAndDeltaSubscribe(topic: string, options: SubscribeOptions = {}): Subscription {
    return this.#subscribe('sow_and_delta_subscribe', topic, options);
  }

  #subscribe(commandName: CommandName, topic: string, options: SubscribeOptions): Subscription {
    if (this.#shutdown) throw new DisconnectedError('the client is disconnected');
    const given = bookmarkOption(options.bookmark);
    const timeoutMs = timeoutOption(options.timeoutMs, 'timeoutMs');
    const signal = signalOption(options.signal);
    let subId = options.subId;
    if (subId === undefined) {
      // Past any id the application gave that looks like ours.
      do subId = `ha-${this.#nextSubId++}`;
      while (this.#subs.has(subId));
    }
    const command = this.#client.subscribeCommand(commandName, topic, options, subId);
    // AMPS `replace`: the new subscription takes the id once the server accepts it.
    const replacing = parseOptions(command.options).has('replace');
    const replaced = replacing ? this.#subs.get(subId) : undefined;
    if (this.#subs.has(subId) && !replaced) {
      throw new InvalidOptionsError(
        `a subscription with sub_id ${subId} already exists; unsubscribe it first, or replace it with the 'replace' option`,
      );
    }
    if (replaced && given !== undefined && given !== replaced.options.bookmark) {
      throw new InvalidOptionsError(
        `a replace keeps subscription ${subId}'s place in the log: leave bookmark out, or give the same one`,
      );
    }
    const bookmarkGiven = replaced ? replaced.options.bookmark : given;
    const bookmarked = bookmarkGiven !== undefined && this.#bookmarkStore !== undefined;
    const ackTypes = new Set(['processed', ...(options.ackTypes ?? [])]);
    if (bookmarked) ackTypes.add('persisted');
    // A range's completed ack is its end (see #enter).
    const range = commandName === 'subscribe' && isBookmarkRange(bookmarkGiven);
    if (bookmarked || range) ackTypes.add('completed');
    command.ackType = [...ackTypes].join(',');
    const store = this.#bookmarkStore;
    const autoDiscard = this.#options.autoDiscard ?? true;
    const discard = (m: Message) => {
      if (!bookmarked || !autoDiscard || !m.bookmark) return;
      // The store forgot the id since (an unsubscribe): the bookmark may be a new subscription's delivery.
      if (this.#bookmarkEpochs.get(subId) !== epoch) return;
      // A custom store that throws must not end the stream, nor reject where nobody listens.
      try {
        store?.discard(subId, m.bookmark);
      } catch (error) {
        this.#reportException(error);
      }
    };
    const stream = new MessageStream<Message>({
      onMessage: options.onMessage,
      maxQueue: options.maxQueue ?? this.#options.client?.maxQueue,
      onHandlerError: (error, m) => {
        // Done with, though it failed: a replay drops it as a duplicate anyway, and left
        // outstanding it would pin the recovery point and keep every later message in the store.
        discard(m);
        this.#reportException(error);
      },
      onHandled: (m) => {
        discard(m);
        // A lease that went with its connection is given back already: the message comes again.
        if (options.autoAck && this.#leasedNow(m) && m.bookmark && m.topic) {
          try {
            this.#client.ack(m);
          } catch (error) {
            this.#reportException(error);
          }
        }
      },
      // A bookmark subscription's consumer that falls behind has the server pause it (#flowControl).
      onFlowControl: (paused) => this.#flowControl(sub, paused),
      // Fallen too far behind: the subscription ends (with the stream's SlowConsumerError) for good.
      // One being replaced ends alone: the id is its replacement's already. So does one whose
      // replace waits to go out (see #drop).
      onOverflow: (error) => {
        if (this.#subs.get(subId) !== sub) this.#endSubscription(sub, error);
        else void this.#drop(subId, error, {}, true).catch((e: unknown) => this.#reportException(e));
      },
    });
    // An iterator skips the queue messages still buffered from a connection that has gone: their
    // leases went with it, and the server delivers them again.
    const iterate = stream[Symbol.asyncIterator].bind(stream);
    stream[Symbol.asyncIterator] = () => {
      const inner = iterate();
      return {
        ...inner,
        next: async () => {
          for (;;) {
            const r = await inner.next();
            if (r.done || r.value.leasePeriod === undefined || this.#leasedNow(r.value)) return r;
          }
        },
      };
    };
    let startBookmark: string | undefined;
    if (bookmarked) {
      startBookmark = bookmarkGiven === Bookmarks.MOST_RECENT ? Bookmarks.EPOCH : (bookmarkGiven as string);
      // A start given is where the application wants to be, not where a durable store left the id
      // (a replace keeps the id's place).
      if (startBookmark === bookmarkGiven && !replacing) this.#forgetBookmarks(subId);
      if (store?.getMostRecent(subId) === undefined) store?.persisted(subId, startBookmark);
    }
    // Set after that forgetting: a replace shares the id's epoch with the one it replaces.
    let epoch = this.#bookmarkEpochs.get(subId);
    if (bookmarked && !epoch) this.#bookmarkEpochs.set(subId, (epoch = {}));
    // A replace keeps the replaced one's place in the log, and sends it (its bookmark, for one
    // without a bookmark store): a server that has just ended the replaced one (a range at its end)
    // starts the replace there, as a new subscription.
    if (replaced) command.bookmark = replaced.command.bookmark;
    const sub: HASubscription = {
      subId,
      // What a reconnect sends: the new server has nothing to replace.
      command: replacing ? { ...command, options: editOptions(command.options, ['replace']) } : command,
      options: replaced ? { ...options, bookmark: bookmarkGiven } : options,
      stream,
      closed: deferred<Error | undefined>(),
      ready: deferred<void>(),
      startBookmark,
      generation: -1,
    };
    if (signal?.aborted) {
      // Called off before it was made: nothing is sent or kept (the deadline below ends it).
    } else if (replaced) {
      void this.#replaceLater(sub, command);
    } else {
      // The manager first: one that throws leaves nothing registered, the error the caller's.
      this.#manager.add({ subId, command: sub.command });
      this.#subs.set(subId, sub);
      if (canPause(command) && parseOptions(command.options).has('pause')) this.#paused.add(subId);
      else this.#paused.delete(subId);
      if (this.isReady) void this.#enterLater(sub);
      else this.#start();
    }
    // Its own timeoutMs and signal bound the wait for the server to accept it, through reconnects,
    // as on Client: not accepted by then, it ends as unsubscribe() would end it, with their error.
    if (timeoutMs !== undefined || signal !== undefined) {
      const bound = deadline(this.#env, `${commandName} ${subId}`, timeoutMs, signal, (error) => {
        if (this.#subs.get(subId) !== sub) this.#endSubscription(sub, error);
        else void this.#drop(subId, error, {}).catch((e: unknown) => this.#reportException(e));
      });
      const accepted = () => bound.clear();
      sub.ready.promise.then(accepted, accepted);
    }
    // Once replaced or ended, its unsubscribe() leaves the id's new holder alone.
    const owner = {
      unsubscribe: (id: string) => (this.#subs.get(id) === sub ? this.unsubscribe(id) : this.#callOff(sub)),
      setPaused: (id: string, paused: boolean, o: CommandWaitOptions) => this.#pauseOrResume(paused, id, o),
    };
    return new Subscription(subId, stream, owner, sub.ready.promise, sub.closed.promise);
  }

  /**
   * Replaces the subscription holding `sub`'s id (AMPS `replace`) once the client is ready, so
   * that it is entered on the connection: it gets the deliveries until the server accepts the
   * replace, then ends. Refused, it goes on as it was. With nothing to replace, `sub` starts.
   */
  async #replaceLater(sub: HASubscription, command: Command): Promise<void> {
    this.#replacing.add(sub);
    try {
      await this.#whenReady(undefined, undefined);
    } catch (error) {
      // As disconnect() ends every subscription: closed with undefined, ready with its error.
      if (this.#shutdown) this.#endSubscription(sub, undefined, error as Error);
      else if (!sub.closed.settled) this.#replaceAtOnce(sub);
      return;
    } finally {
      this.#replacing.delete(sub);
    }
    if (sub.closed.settled) return; // called off meanwhile
    const subId = sub.subId;
    // The manager first, as in subscribe(): one that throws ends the replace with its error (nobody
    // awaits this method), and the subscription it was to replace goes on.
    try {
      this.#manager.add({ subId, command: sub.command });
    } catch (error) {
      this.#endSubscription(sub, toError(error));
      return;
    }
    const replaced = this.#subs.get(subId);
    sub.replaced = replaced;
    sub.replaying = replaced?.replaying;
    // From here a reconnect enters the new one.
    this.#subs.set(subId, sub);
    if (!replaced) {
      void this.#enterLater(sub);
      return;
    }
    // Only the server's answer says refused: the new one may have ended already for another reason
    // (a slow consumer, in the read that brought the answer), after the server took it.
    let refused = false;
    let cutOff = false;
    try {
      refused = await this.#enter(command, this.#generation);
    } catch (error) {
      // Not answered: the connection goes (or went), and the recovery enters the new one.
      if (TimedOutError.isInstance(error) && this.#client.isConnected) this.#client.abort(error);
      cutOff = true;
    }
    if (cutOff && !this.#shutdown) {
      // No server has answered it yet: what the next one says decides, as the first one's would
      // have. Refused there, the subscription it was to replace goes on (entered on that server).
      await sub.ready.promise.catch(() => {});
      const ended = sub.closed.settled ? await sub.closed.promise : undefined;
      refused = ended !== undefined && isRefusal(ended);
    }
    if (refused && !this.#shutdown) {
      // A later replace holds the id: what the server says to it decides (it replaced `replaced`).
      if (this.#subs.get(subId) !== undefined) return;
      // The server keeps the subscription this one was to replace (one refused before it: the one
      // that one was to replace), and so does this client, unless the application called it off.
      let kept: HASubscription | undefined = replaced;
      while (kept?.closed.settled) kept = kept.replaced;
      sub.replaced = undefined;
      if (kept) {
        this.#subs.set(subId, kept);
        this.#safely(() => this.#manager.add({ subId, command: kept.command }));
        // Refused by a server it was not entered on (the replace was cut off): entered there now.
        if (cutOff) void this.#enterLater(kept);
        // Its consumer caught up while the replace was with the server: resume it (or enter it
        // anew, if it shed), as #flowControl would have.
        if (kept.flowPaused === false) {
          if (kept.shedding) void this.#enterAnew(kept);
          else this.#sendFlowState(kept);
        }
      } else {
        this.#forgetBookmarks(subId);
        if (this.#client.isConnected) {
          await this.#client.unsubscribe(subId).catch((e: unknown) => {
            if (!DisconnectedError.isInstance(e)) this.#reportException(e);
          });
        }
      }
      return;
    }
    // Accepted (or cut off, and entered anew by the recovery): it replaced them all. The server
    // keeps a paused subscription paused through a replace: one ever paused for its old consumer
    // (caught up meanwhile, #flowControl sent nothing) is resumed for the new one, unless the
    // application paused it. One that shed is entered anew from its recovery point: the server's
    // place is past what it dropped.
    if (sub.shedding) void this.#enterAnew(sub);
    else if (replaced.flowPaused !== undefined) this.#sendFlowState(sub);
    for (let r: HASubscription | undefined = sub; r; ) {
      const next: HASubscription | undefined = r.replaced;
      r.replaced = undefined;
      // One not accepted yet never claims success: a later replace took its place.
      if (r !== sub) {
        this.#endSubscription(
          r,
          undefined,
          new AbortError(`subscription ${subId} was replaced before the server accepted it`),
        );
      }
      r = next;
    }
  }

  /**
   * The client stopped reconnecting (it gave up, or connectAndLogon() was aborted): no server
   * holds the replaced subscription now, so `sub` takes the id here, and the next connection
   * enters it, as any subscription.
   */
  #replaceAtOnce(sub: HASubscription): void {
    const replaced = this.#subs.get(sub.subId);
    this.#subs.set(sub.subId, sub);
    // Called where nobody awaits: a manager that throws is reported.
    this.#safely(() => this.#manager.add({ subId: sub.subId, command: sub.command }));
    if (replaced) this.#endSubscription(replaced, undefined);
  }

  /** The application called off a subscription that no longer holds its id (replaced, ended, or waiting to replace). */
  async #callOff(sub: HASubscription): Promise<void> {
    this.#endSubscription(
      sub,
      undefined,
      new AbortError(`subscription ${sub.subId} was unsubscribed before the server accepted it`),
    );
  }

  /** Enters (or re-enters) a subscription on the current connection; true if the server refused it (it has ended). */
  async #enter(command: Command, generation: number): Promise<boolean> {
    const sub = this.#subs.get(command.subId as string);
    if (!sub) return false;
    const c: Command = { ...command };
    if (sub.startBookmark !== undefined) {
      c.bookmark = this.#bookmarkStore?.getMostRecent(sub.subId) ?? sub.startBookmark;
    }
    // Paused as it is now (a replace cannot say: the server keeps the replaced one's state).
    const replace = parseOptions(c.options).has('replace');
    if (canPause(c) && !replace)
      c.options = editOptions(c.options, ['pause', 'resume'], this.#isPaused(sub.subId) ? 'pause' : undefined);
    const store = this.#bookmarkStore;
    const bookmarked = sub.startBookmark !== undefined && store !== undefined;
    const onDuplicate = this.#options.onDuplicate;
    if (!replace) sub.replaying = true;
    const sentAt = this.#env.now();
    const execute: ExecuteOptions = {
      timeoutMs: this.#resubscriptionTimeoutMs,
      waitFor: 'processed',
      onMessage: (m) => {
        if (sub.closed.settled) return; // unsubscribed; the server has not heard yet
        if (bookmarked && sub.flowPaused && sub.stream.overfull) sub.shedding = true;
        if (sub.shedding) return;
        if (m.leasePeriod !== undefined) this.#leases.set(m, this.#connection);
        if (bookmarked && m.bookmark && !store.log(sub.subId, m.bookmark)) {
          onDuplicate?.(m, sub.subId);
          return;
        }
        sub.stream.push(m);
      },
      onAck: (ack) => {
        const completed = ack.ackType === 'completed';
        // Placed: a NOW subscription is at the end of the log, which no ack names before its
        // completed one (a range's comes at the range's end): NOW as of when it was sent.
        const placed = ack.ackType === 'processed' && ack.status !== 'failure';
        // Accepted: so at once, before a delivery in the same read can end it (a slow consumer).
        if (placed) sub.ready.resolve();
        // A replace takes the server's place of the one it replaces, past what that one dropped:
        // what comes now is dropped too, and the replace is entered anew (#replaceLater).
        if (placed && replace) {
          for (let r = sub.replaced; r; r = r.replaced) if (r.shedding) sub.shedding = true;
        }
        if (bookmarked && (completed || placed || (ack.ackType === 'persisted' && !sub.replaying))) {
          // No bookmark: the log was empty. A NOW subscription placed there is owed everything
          // since (the epoch); NOW on the next server would skip what was published meanwhile.
          // (NOW is also spelt `0|1`, as the store and the server read it; a range starts at
          // what is before its colon.)
          const recent = store
            .getMostRecent(sub.subId)
            ?.trim()
            .replace(/^[[(]|:.*$/g, '');
          const now = recent === Bookmarks.NOW || recent === '0|1';
          const at = placed ? now && Bookmarks.NOW : (ack.bookmark ?? (now ? Bookmarks.EPOCH : ''));
          // The completed ack's position is the end of the log when the subscribe was sent.
          // A store that throws must not cost the rest of this ack: the application's onAck, a range's end.
          const ageMs = completed || placed ? this.#env.now() - sentAt : undefined;
          if (at) this.#safely(() => store.persisted(sub.subId, at, ageMs));
          if (completed) sub.replaying = false;
        }
        // The server has ended a range subscription at its end: so does this client, for good. (A
        // replace of it still waiting for the server's answer keeps the id's place in the log.)
        // One that dropped messages past its consumer's hold is entered anew for them once the
        // consumer catches up (#flowControl), from its recovery point inside the range.
        const ranged = completed && sub.command.command === 'subscribe' && isBookmarkRange(sub.options.bookmark);
        if (ranged && sub.shedding && this.#subs.get(sub.subId) === sub) {
          sub.offServer = true;
        } else if (ranged) {
          const held = this.#subs.get(sub.subId) === sub;
          sub.ready.resolve();
          this.#endSubscription(sub, undefined);
          if (held) this.#forgetBookmarks(sub.subId);
        }
        if (sub.options.onAck) {
          try {
            sub.options.onAck(ack);
          } catch (error) {
            this.#reportException(error);
          }
        }
      },
    };
    sub.generation = generation;
    sub.shedding = false;
    sub.offServer = false;
    sub.entry = {};
    try {
      await this.#client.execute(c, execute);
      return false;
    } catch (error) {
      sub.generation = -1;
      if (!sub.ready.settled && isRefusal(error)) {
        this.#endSubscription(sub, error);
        return true;
      }
      throw error;
    }
  }

  async #enterLater(sub: HASubscription): Promise<void> {
    try {
      await this.#whenReady(undefined, undefined);
      // Ended, maybe with its id taken by a new subscription since, which is entered on its own.
      if (sub.generation === this.#generation || this.#subs.get(sub.subId) !== sub) return;
      await this.#enter(sub.command, this.#generation);
    } catch (error) {
      if (isRefusal(error)) {
        this.#endSubscription(sub, error);
      } else if (TimedOutError.isInstance(error) && this.#client.isConnected) {
        // The server did not answer in time: fail over as from any unresponsive server.
        this.#client.abort(error);
      }
      // Otherwise, or now, the connection goes: recovery re-enters the subscription.
    }
  }

  /**
   * Ends a subscription for good (it is not entered again): its stream ends and `closed` resolves
   * with `error`. If the server has not accepted it yet, `ready` rejects with `error`, or else with
   * `notAccepted`: it never claims a subscription the server did not take.
   */
  #endSubscription(sub: HASubscription, error: Error | undefined, notAccepted?: Error): void {
    // A replaced subscription ends after the one that took its id is in its place.
    if (this.#subs.get(sub.subId) === sub) {
      this.#subs.delete(sub.subId);
      this.#paused.delete(sub.subId);
      // A manager that throws must not leave the subscription open, its closed never resolved.
      this.#safely(() => this.#manager.remove(sub.subId));
    }
    sub.ready.reject(
      error ?? notAccepted ?? new DisconnectedError(`subscription ${sub.subId} ended before the server accepted it`),
    );
    sub.stream.end(error);
    sub.closed.resolve(error);
  }

  /** Stops a subscription (or all, with no id) for good: it is not resubscribed after a failover. */
  async unsubscribe(subId: string = 'all', options: CommandWaitOptions = {}): Promise<void> {
    // Aborted already: nothing is done, as by the Client, which would send nothing and keep its
    // route (ended here, the subscription would stay on the server, its id held there and here).
    throwIfAborted(options.signal, 'unsubscribe');
    return this.#drop(subId, undefined, options);
  }

  /** Ends subscriptions for good (`all` for every one), with `error` if any, and takes them back on the server. */
  async #drop(
    subId: string,
    error: Error | undefined,
    options: CommandWaitOptions,
    fellBehind?: boolean,
  ): Promise<void> {
    // With the replaces of them still waiting to go out; not for one that fell behind: those did
    // nothing wrong, and go out as subscribes (see #replaceLater) from its place in the log.
    const replacing = [...this.#replacing].filter((s) => subId === 'all' || s.subId === subId);
    const held = subId === 'all' ? [...this.#subs.values()] : [this.#subs.get(subId)].filter((s) => s !== undefined);
    for (const sub of fellBehind ? held : [...held, ...replacing]) {
      // The application called it off, as with a Client subscribe aborted by its signal.
      const notAccepted = new AbortError(`subscription ${sub.subId} was unsubscribed before the server accepted it`);
      this.#endSubscription(sub, error, notAccepted);
      if (!fellBehind || !replacing[0]) this.#forgetBookmarks(sub.subId);
    }
    // During a recovery too: the subscription may be entered on the new connection already.
    if (!this.#client.isConnected) return;
    try {
      await this.#client.unsubscribe(subId, options);
    } catch (error) {
      // The connection went: the server forgot the subscription with it.
      if (!DisconnectedError.isInstance(error)) throw error;
    }
  }

  /**
   * Pauses bookmark subscriptions (see `Client.pause`): the server sends them nothing until
   * `resume()`. The state is kept across failovers: a paused subscription is resubscribed paused,
   * from its recovery point. `subIds` is one id, a comma-separated list or an array.
   */
  pause(subIds: string | readonly string[], options: CommandWaitOptions = {}): Promise<void> {
    return this.#pauseOrResume(true, subIds, options);
  }

  /** Resumes paused bookmark subscriptions: each replays from where it stopped, then goes live. */
  resume(subIds: string | readonly string[], options: CommandWaitOptions = {}): Promise<void> {
    return this.#pauseOrResume(false, subIds, options);
  }

  async #pauseOrResume(
    paused: boolean,
    subIds: string | readonly string[],
    options: CommandWaitOptions,
  ): Promise<void> {
    const ids = typeof subIds === 'string' ? subIds.split(',') : [...subIds];
    const unknown = ids.filter((id) => !canPause(this.#subs.get(id)?.command));
    if (!ids[0] || unknown[0] !== undefined) {
      throw new InvalidOptionsError(
        `${paused ? 'pause' : 'resume'}: no bookmark subscription ${JSON.stringify(unknown)} on this client`,
      );
    }
    // Aborted already: nothing is marked, as nothing is sent (the Client would send nothing).
    throwIfAborted(options.signal, paused ? 'pause' : 'resume');
    this.#markPaused(ids, paused);
    let sent = false;
    try {
      await this.#sendPauseStates(ids, options, () => {
        sent = true;
      });
    } catch (error) {
      // Refused, the server left them as they were: so must a resubscribe. So too when the call
      // ended (its timeout, its signal) before it was sent: its caller is told it did not happen.
      // (Not those a later call has changed since.)
      if (isRefusal(error) || !sent) {
        const reverted = ids.filter((id) => this.#paused.has(id) === paused);
        this.#markPaused(reverted, !paused);
        // A recovery under way may have entered them as marked already: the server is told.
        if (!sent && reverted[0] !== undefined && this.#client.isConnected) {
          this.#sendPauseStates(reverted, {}).catch((e: unknown) => {
            if (isRefusal(e)) this.#reportException(e);
          });
        }
      }
      throw error;
    }
  }

  /** Paused on the server: by the application, or for the consumer of the subscription holding the id. */
  #isPaused(subId: string): boolean {
    return this.#paused.has(subId) || this.#subs.get(subId)?.flowPaused === true;
  }

  /**
   * Sends `pause` or `resume` for `ids` once ready, and again after a recovery that cut it off:
   * each time the state as it is then, which a later call may have changed (the server takes a
   * repeat as no change).
   */
  #sendPauseStates(ids: readonly string[], options: CommandWaitOptions, onSent?: () => void): Promise<unknown> {
    return this.#whenReadyThen(options, (left) => {
      // Aborted by now (as the recovery ended, say): the Client sends nothing, and says so.
      if (!left.signal?.aborted) onSent?.();
      return Promise.all(
        [true, false].map((p) => {
          const group = ids.filter(
            (id) => this.#isPaused(id) === p && this.#subs.has(id) && !this.#subs.get(id)?.offServer,
          );
          return group[0] && this.#client[p ? 'pause' : 'resume'](group, left);
        }),
      );
    });
  }

  /**
   * The consumer of `sub` holds `maxQueue` messages (`paused`), or has worked through half of them.
   * A bookmark subscription is paused on the server meanwhile, so a replay of any length waits for
   * a slow consumer. What was in flight still comes; past twice `maxQueue` it is dropped (`shedding`)
   * and comes again when the subscription is entered anew. Any other ends with a `SlowConsumerError`.
   */
  #flowControl(sub: HASubscription, paused: boolean): boolean {
    if (!canPause(sub.command)) return false;
    if (this.#subs.get(sub.subId) !== sub) {
      // Its replace waits for the server's answer: a catch-up is kept, for a refusal that keeps
      // it (#replaceLater); falling behind, it ends (see onOverflow).
      if (!paused && sub.flowPaused) sub.flowPaused = false;
      return false;
    }
    sub.flowPaused = paused;
    if (!paused && sub.shedding) void this.#enterAnew(sub);
    else this.#sendFlowState(sub);
    return true;
  }

  /**
   * Takes `sub` back on the server and enters it again from its recovery point: what it dropped
   * while far behind comes again (what it had kept comes too, and is dropped as a duplicate).
   */
  async #enterAnew(sub: HASubscription): Promise<void> {
    const generation = sub.generation;
    // A range the server has ended already needs no unsubscribe.
    const onServer = !sub.offServer;
    sub.offServer = true;
    if (onServer) {
      try {
        await this.#client.unsubscribe(sub.subId);
      } catch (error) {
        // Not answered: the server may take it back later, and this client would never enter it
        // again (dropping all that comes meanwhile): fail over, as from any unresponsive server.
        if (TimedOutError.isInstance(error) && this.#client.isConnected) this.#client.abort(error);
        // The connection went (or goes): the recovery enters it anew.
        else if (!DisconnectedError.isInstance(error)) {
          sub.offServer = false; // refused: the server still holds it
          this.#reportException(error);
        }
        return;
      }
    }
    // Not if the recovery has entered it meanwhile.
    if (sub.generation !== generation) return;
    sub.generation = -1;
    await this.#enterLater(sub);
  }

  /**
   * Sends the pause state of `sub`'s id (as a whole: still paused, if the application paused it
   * too) after its consumer fell behind or caught up, or after it replaced one paused for that.
   */
  #sendFlowState(sub: HASubscription): void {
    const subId = sub.subId;
    const entry = sub.entry;
    this.#sendPauseStates([subId], {}).catch((error: unknown) => {
      // Only a refusal matters: after a disconnect the recovery sends the state, and a server
      // that does not answer sends nothing either.
      // Nor one for what the server no longer holds (a range it ended as the pause went out), or
      // held before it was entered anew since: its subscribe carries the state.
      if (!isRefusal(error) || this.#subs.get(subId) !== sub || sub.offServer || sub.entry !== entry) return;
      const why = new SlowConsumerError(
        `subscription ${subId}: the server would not pause or resume it for its consumer: ${error.message}`,
      );
      void this.#drop(subId, why, {}, true).catch((e: unknown) => this.#reportException(e));
    });
  }

  #markPaused(ids: readonly string[], paused: boolean): void {
    for (const id of ids) {
      if (paused) this.#paused.add(id);
      else this.#paused.delete(id);
    }
  }

  /* -------------------------------------------------------------- queries */

  /**
   * A SOW query, run once connected. Cut off by a disconnect before its first record, it runs
   * again after the recovery; after that it fails with a `DisconnectedError` (running it again
   * would deliver the same records twice).
   */
  sow(topic: string, options: SowOptions = {}): SowQuery {
    const stream = new MessageStream<Message>({
      onMessage: options.onMessage,
      maxQueue: options.maxQueue ?? this.#options.client?.maxQueue,
      onHandlerError: (error) => this.#reportException(error),
      onFlowControl: () => false,
    });
    const queryId = options.queryId ?? `ha-q-${this.#nextSubId++}`;
    let delivered = false;
    const onMessage = (m: Message) => {
      delivered = true;
      stream.push(m);
    };
    const stats = this.#whenReadyThen(
      options,
      async (left): Promise<QueryStats> => this.#client.sow(topic, { ...left, queryId, onMessage }).stats,
      () => !delivered,
    ).then(
      (result) => {
        stream.end();
        return result;
      },
      (error: Error) => {
        stream.end(error);
        throw error;
      },
    );
    return new SowQuery(queryId, stream, stats);
  }

  /**
   * Deletes SOW records; resolves with the counts. With a publish store (the default) it goes
   * through the store as AMPS's HA clients send it: in order with the publishes around it, and
   * replayed after a failover until the server persists it, so it is applied exactly once.
   */
  sowDelete(topic: string, target: SowDeleteTarget, options: CommandWaitOptions = {}): Promise<QueryStats> {
    const store = this.#publishStore;
    if (!store) return this.#onceSent(options, (left) => this.#client.sowDelete(topic, target, left));
    return this.#storedDelete(store, topic, target, options);
  }

  async #storedDelete(
    store: PublishStore,
    topic: string,
    target: SowDeleteTarget,
    options: CommandWaitOptions,
  ): Promise<QueryStats> {
    const command = sowDeleteCommand(topic, target);
    checkEncodable(command);
    checkFrameSize(command, this.#maxFrameSize, STORE_FIELDS_BYTES);
    if (this.#shutdown) throw new DisconnectedError('the client is disconnected');
    const timeoutMs = timeoutOption(options.timeoutMs, 'timeoutMs') ?? this.#commandTimeoutMs;
    const signal = signalOption(options.signal);
    // Aborted before the call: nothing is stored, nothing sent.
    if (signal?.aborted) return new Promise((_, reject) => deadline(this.#env, 'sow_delete', 0, signal, reject));
    const result = deferred<QueryStats>();
    let timer: Deadline | undefined;
    const pending: PendingDelete = {
      commandId: `ha-d-${this.#nextSubId++}`,
      abort: new AbortController(),
      settle: (outcome) => {
        timer?.clear();
        pending.abort.abort(); // ends the Client's wait for the counts, if one is under way
        this.#deletes.delete(command);
        if (outcome instanceof Error) result.reject(outcome);
        else result.resolve(outcome);
      },
    };
    // Before it is stored: the store may give it its sequence while a logon replays it.
    this.#deletes.set(command, pending);
    try {
      const stored = store.store(command);
      this.#unsent.push(command);
      try {
        if (typeof stored !== 'number') await this.#storeWait(stored, command);
      } catch (error) {
        this.#unsent.delete(command);
        throw error;
      }
    } catch (error) {
      pending.settle(toError(error));
      return result.promise;
    }
    // Armed once stored (a full store makes it wait for room, as a publish does): a wait that
    // ends from now on does not end the delete, which is sent until persisted, and says so.
    if (!result.settled) {
      timer = deadline(this.#env, 'sow_delete', timeoutMs, signal, (error) =>
        pending.settle(
          TimedOutError.isInstance(error)
            ? new TimedOutError(`${error.message}; it ${STILL_STORED}`, { cause: error })
            : new AbortError(`${error.message}; it ${STILL_STORED}`, { cause: error }),
        ),
      );
    }
    this.#sendStored();
    return result.promise;
  }

  async flush(
    ackType: 'processed' | 'completed' | 'persisted' = 'processed',
    options: CommandWaitOptions = {},
  ): Promise<void> {
    // Refused now, not once connected: a bad one would wait for a connection first.
    flushAckTypeOption(ackType);
    return this.#whenReadyThen(options, (left) => this.#client.flush(ackType, left));
  }

  /** Any command, once connected (waiting through a reconnect, bounded by its timeout). */
  async execute(command: Command, options: ExecuteOptions = {}): Promise<Message | undefined> {
    waitForOption(options.waitFor ?? 'processed');
    return this.#onceSent(options, (left) => this.#client.execute(command, left));
  }

  /**
   * Like #whenReadyThen, for a command that is not safe to run twice (a sow_delete by filter would
   * also delete what was published since): once sent, a disconnect fails it rather than run it
   * again, since the server may have applied it.
   */
  #onceSent<T, O extends CommandWaitOptions>(options: O, fn: (left: O) => Promise<T>): Promise<T> {
    let sent = false;
    return this.#whenReadyThen(
      options,
      (left) => {
        sent = this.#client.isConnected;
        return fn(left);
      },
      () => !sent,
    ).catch((error) => {
      throw sent && DisconnectedError.isInstance(error)
        ? new DisconnectedError(`${error.message}: the command was sent, and the server may have applied it`, {
            cause: error,
          })
        : error;
    });
  }

  /**
   * Acknowledges a queue message (see `Client.ack`). One delivered on a connection that has gone
   * is dropped: its lease went with that connection, and the server may have leased the message
   * to another consumer since, whose work this ack would remove. It is delivered again.
   */
  ack(message: Message | { topic: string; bookmark: string }, options?: AckOptions): void {
    if (this.#leases.has(message) && !this.#leasedNow(message)) {
      this.#log('debug', 'queue ack dropped: its lease went with an earlier connection', {
        topic: message.topic,
        bookmark: message.bookmark,
      });
      return;
    }
    this.#client.ack(message, options);
  }

  /** Whether `message` is a queue message leased on the current connection. */
  #leasedNow(message: object): boolean {
    return this.#leases.get(message) === this.#connection;
  }

  /** Errors thrown by your handlers and listeners (here and in the underlying client). */
  onException(listener: (error: unknown) => void): () => void {
    this.#exceptionListeners.add(listener);
    const stop = this.#client.onException(listener);
    return () => {
      this.#exceptionListeners.delete(listener);
      stop();
    };
  }

  readonly #exceptionListeners = new Set<(error: unknown) => void>();

  /**
   * Logs, ignoring a logger that throws: it is called from the reconnect loop, timers and
   * listeners, which a throwing logger would otherwise stop.
   */
  #log(level: keyof Logger, message: string, fields?: Record<string, unknown>): void {
    try {
      this.#logger?.[level]?.(message, fields);
    } catch {
      // Reporting it would go through the same logger.
    }
  }

  /** The bookmark store forgets `subId`; late discards of what it held go nowhere (see #bookmarkEpochs). */
  #forgetBookmarks(subId: string): void {
    this.#bookmarkStore?.purge(subId);
    this.#bookmarkEpochs.delete(subId);
  }

  /**
   * Runs application code (a listener, a plugin, a store) whose failure must not stop what calls
   * it (the reconnect loop, a timer, a disconnect): what it throws goes to onException.
   */
  #safely<T>(fn: () => T): T | undefined {
    try {
      return fn();
    } catch (error) {
      this.#reportException(error);
    }
  }

  #reportException(error: unknown): void {
    if (this.#exceptionListeners.size === 0) this.#log('error', 'error in a handler', { error: String(error) });
    for (const listener of this.#exceptionListeners) {
      try {
        listener(error);
      } catch (inner) {
        this.#log('error', 'exception listener threw', { error: String(inner) });
      }
    }
  }
}
