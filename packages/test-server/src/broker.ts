/**
 * The broker: sessions, the transaction log, SOW, queues, subscriptions, acks and replication.
 * It outlives `kill()`/`restart()` of its server (the data stays); sockets and listeners belong to
 * the server (server.ts).
 *
 * Work done while handling input goes into per-connection output buffers; once per tick `#flush()`
 * writes the log file, sends replication acks, releases persisted acks, feeds replication links,
 * bookmark replays and queues, then writes each connection's output with one write.
 */
import { randomBytes } from 'node:crypto';
import {
  type AckType,
  type Command,
  defaultEnvironment,
  type Environment,
  InvalidOptionsError,
  type Logger,
  type Message,
  MessageDecoder,
  type ParsedBookmark,
  ProtocolError,
  parseBookmark,
  parseBookmarkRange,
  parseOptions,
  splitOptions,
  timeoutOption,
} from '@amps-ts/core-protocol';
import { compileFilter, type Filter } from './filter.js';
import {
  parseInterval,
  type ResolvedPeer,
  resolvePeer,
  resolveQueue,
  resolveSowTopic,
  type TestServerOptions,
} from './options.js';
import { type LinkHost, PeerLink, REPLICATION_OPTION } from './replication.js';
import {
  type PendingAck,
  QueueMessage,
  QueueTopic,
  type RangeEnd,
  RangeStop,
  Session,
  Subscription,
} from './session.js';
import { compareSowKeys, deltaOf, mergeDelta, orderComparator, SowRecord, SowTopic } from './sow.js';
import { Timers } from './timers.js';
import {
  type DeleteSpec,
  type EntryFields,
  entryFields,
  type LogEntry,
  type PublisherLog,
  TxLog,
  TxLogFile,
} from './txlog.js';
import { ampsTimestamp, bookmarkOf, isObject, nameHash, parseJson, pushTo, splitList } from './util.js';
import { type Wire, type WireEvents, webSocketMaxPayload } from './wire.js';

const RECEIVED = 1;
const PROCESSED = 4;
const PERSISTED = 8;
const COMPLETED = 16;
const STATS = 32;
const ackBits: Record<string, number> = {
  received: RECEIVED,
  parsed: 2,
  processed: PROCESSED,
  persisted: PERSISTED,
  completed: COMPLETED,
  stats: STATS,
};
const maskCache = new Map<string, number>();

function ackMask(text: string | undefined): number {
  if (!text) return 0;
  let mask = maskCache.get(text);
  if (mask === undefined) {
    mask = 0;
    for (const token of text.split(',')) mask |= ackBits[token.trim()] ?? 0;
    if (maskCache.size < 256) maskCache.set(text, mask);
  }
  return mask;
}

const REPLAY_HIGH_WATER = 4 * 1024 * 1024;
const REPLAY_ENTRIES_PER_TICK = 20_000;
const NOT_PARSED = Symbol('not parsed');
type MaybeJson = unknown | typeof NOT_PARSED;

/** A publish that changed a SOW record. */
interface SowChange {
  readonly sow: SowTopic;
  readonly record: SowRecord;
  readonly previous: SowRecord | undefined;
}

export interface TopicStats {
  published: number;
  delivered: number;
}

export interface PeerStats {
  name: string;
  mode: 'sync' | 'async';
  connected: boolean;
  downgraded: boolean;
  /** Log entries the peer is not yet known to hold. */
  lag: number;
  sent: number;
}

export interface BrokerStats {
  connections: { current: number; total: number; replication: number };
  /** Messages accepted into the log from clients. */
  published: number;
  /** Messages accepted into the log from peers. */
  replicated: number;
  delivered: number;
  /** Messages dropped because the log already held them (still acked). */
  duplicatesDropped: number;
  /** Connections closed for bad framing or oversized frames. */
  badFrames: number;
  txlogLength: number;
  sowRecords: number;
  topics: Record<string, TopicStats>;
  queues: Record<string, { depth: number; leased: number }>;
  peers: PeerStats[];
}

/** As AMPS stamps its log, with the wall clock (bookmark timestamps are times of day); real timers. */
const WALL_CLOCK: Environment = { ...defaultEnvironment, now: () => Date.now() };

export class Broker implements LinkHost {
  readonly name: string;
  readonly version: string;
  readonly log = new TxLog();
  readonly timers: Timers;
  readonly logger: Logger | undefined;
  readonly env: Environment;
  readonly reconnectMs: number;
  readonly downgradeMs: number;
  readonly options: TestServerOptions;

  readonly #file: TxLogFile | undefined;
  readonly #sow = new Map<string, SowTopic>();
  readonly #queues = new Map<string, QueueTopic>();
  readonly #links: PeerLink[] = [];
  readonly #sessions = new Set<Session>();
  readonly #byName = new Map<string, Session>();
  readonly #replByName = new Map<string, Session>();
  readonly #literalSubs = new Map<string, Set<Subscription>>();
  readonly #regexSubs = new Set<Subscription>();
  readonly #replaying = new Set<Subscription>();
  readonly #persistedAckSubs = new Set<Subscription>();
  readonly #dirty = new Set<Session>();
  readonly #ackWaiters = new Set<Session>();
  readonly #replAckDue = new Set<Session>();
  readonly #dirtyQueues = new Set<QueueTopic>();
  readonly #expiring = new Set<SowRecord>();
  readonly #topicStats = new Map<string, TopicStats>();
  readonly #maxFrameBytes: number;
  readonly #maxClientBuffer: number;
  readonly #closeTimeoutMs: number;
  readonly #persistedAckMs: number;
  /**
   * A bookmark replay waits for the socket above this much unsent output: below the slow-consumer
   * limit, and above the socket's own high-water mark, so that waiting always ends in a 'drain'.
   */
  readonly #replayHighWater: number;
  readonly #heartbeat: { min: number; max: number; factor: number };
  #persistedPrefix = 0;
  #persistenceChanged = false;
  #persistedAckTimer: unknown = undefined;
  #expiryTimer: unknown = undefined;
  #expiryAt = Number.POSITIVE_INFINITY;
  #immediate: NodeJS.Immediate | undefined = undefined;
  #running = false;
  #frozen = false;
  /** While a live publish is fanned out: its deliveries per connection, to be merged. */
  #merging: Map<Session, Delivery[]> | undefined = undefined;
  /** While a publish or removal is offered to subscriptions: its `oof` notices per connection, to be merged. */
  #oofs: Map<Session, Subscription[]> | undefined = undefined;
  #lastTopic = '';
  #lastTopicStats: TopicStats | undefined = undefined;
  readonly #counters = {
    connectionsTotal: 0,
    published: 0,
    replicated: 0,
    delivered: 0,
    duplicatesDropped: 0,
    badFrames: 0,
  };

  constructor(options: TestServerOptions, name: string) {
    this.options = options;
    this.name = name;
    this.version = options.version ?? '5.3.5.0.amps-ts-test-server';
    this.env = options.environment ?? WALL_CLOCK;
    this.timers = new Timers(this.env);
    this.logger = options.logger;
    // At least 1 ms: 0 would be a busy loop of timers (reconnects, persisted acks).
    this.reconnectMs = timeoutOption(options.peerReconnectMs, 'peerReconnectMs', 1) ?? 50;
    this.#persistedAckMs = timeoutOption(options.persistedAckIntervalMs, 'persistedAckIntervalMs', 1) ?? 1000;
    this.downgradeMs = options.syncDowngradeMs ?? 0;
    this.#maxFrameBytes = options.maxFrameBytes ?? 16 * 1024 * 1024;
    // Checked here: the frame decoder, made per connection, would throw from the 'connection' handler.
    if (!Number.isSafeInteger(this.#maxFrameBytes) || this.#maxFrameBytes < 1) {
      throw new InvalidOptionsError(`maxFrameBytes must be a positive integer, got ${this.#maxFrameBytes}`);
    }
    this.#maxClientBuffer = options.maxClientBufferBytes ?? 256 * 1024 * 1024;
    this.#closeTimeoutMs = timeoutOption(options.closeTimeoutMs, 'closeTimeoutMs') ?? 2000;
    this.#replayHighWater = Math.min(REPLAY_HIGH_WATER, Math.max(64 * 1024, this.#maxClientBuffer / 2));
    const hb = options.heartbeat ?? {};
    this.#heartbeat = { min: hb.minIntervalS ?? 0.01, max: hb.maxIntervalS ?? 3600, factor: hb.timeoutFactor ?? 2 };
    if (!(this.#heartbeat.min > 0)) throw new InvalidOptionsError('heartbeat.minIntervalS must be above 0');
    for (const sow of options.sowTopics ?? []) {
      const resolved = resolveSowTopic(sow);
      this.#sow.set(resolved.topic, new SowTopic(resolved));
    }
    for (const queue of options.queues ?? []) {
      const resolved = resolveQueue(queue);
      this.#queues.set(resolved.topic, new QueueTopic(resolved));
    }
    for (const peer of options.peers ?? []) this.#links.push(this.#newLink(resolvePeer(peer)));
    this.#file = options.dataDir === undefined ? undefined : new TxLogFile(options.dataDir);
    if (this.#file) this.#load(this.#file);
  }

  get frozen(): boolean {
    return this.#frozen;
  }

  /* ---------------- lifecycle ---------------- */

  start(): void {
    this.#running = true;
    for (const link of this.#links) link.start();
    if (this.#expiring.size > 0) this.#sweepExpired();
    this.scheduleFlush();
  }

  /** Like a crash: every connection and link gone, timers cleared; the data stays. */
  stop(): void {
    this.#running = false;
    for (const session of [...this.#sessions]) this.#close(session);
    for (const link of this.#links) link.stop();
    for (const q of this.#queues.values()) {
      q.timer = undefined;
      q.timerAt = Number.POSITIVE_INFINITY;
    }
    this.timers.clearAll();
    this.#persistedAckTimer = undefined;
    this.#expiryTimer = undefined;
    this.#expiryAt = Number.POSITIVE_INFINITY;
    if (this.#immediate) clearImmediate(this.#immediate);
    this.#immediate = undefined;
    this.#file?.sync();
    this.#frozen = false;
  }

  /** Stops for good and closes the log file. */
  shutdown(): void {
    this.stop();
    this.#file?.close();
  }

  freeze(): void {
    if (this.#frozen) return;
    this.#frozen = true;
    this.timers.freeze();
    for (const session of this.#sessions) session.wire.pause();
    for (const link of this.#links) link.pause();
  }

  thaw(): void {
    if (!this.#frozen) return;
    this.#frozen = false;
    const now = this.env.now();
    for (const session of this.#sessions) {
      // The server was not reading: the client's silence was ours.
      session.lastReadAt = now;
      session.wire.resume();
    }
    for (const link of this.#links) link.resume();
    this.timers.thaw();
    this.scheduleFlush();
  }

  /** Closes every client connection (replication connections stay). */
  dropClients(): void {
    for (const session of [...this.#sessions]) if (session.kind === 'client') this.#close(session, 'dropped');
  }

  addPeer(peer: ResolvedPeer): void {
    const link = this.#newLink(peer);
    this.#links.push(link);
    if (this.#running) link.start();
    this.linkChanged();
  }

  /**
   * A link to `peer`, refused for one linked already: both would log on with this server's name,
   * and the peer would close each as the other one's replacement, for ever.
   */
  #newLink(peer: ResolvedPeer): PeerLink {
    const linked = this.#links.find((link) => link.peer.host === peer.host && link.peer.port === peer.port);
    if (linked) {
      throw new InvalidOptionsError(
        `server ${this.name} replicates to ${peer.host}:${peer.port} already (peer ${linked.peer.name})`,
      );
    }
    return new PeerLink(this, peer);
  }

  accept(makeWire: (events: WireEvents) => Wire): Session {
    const session = new Session(this.env.now());
    const decoder = new MessageDecoder((message) => this.#onMessage(session, message), {
      maxFrameSize: this.#maxFrameBytes,
    });
    session.wire = makeWire({
      onData: (chunk) => this.#onData(session, decoder, chunk),
      onClose: () => this.#close(session),
      onDrain: () => this.scheduleFlush(),
      onMessageTooLarge: (error) => {
        this.#counters.badFrames++;
        this.logger?.warn?.('closing connection: frame too large', {
          server: this.name,
          ...session.describe(),
          maxFrameBytes: this.#maxFrameBytes,
          maxWebSocketMessageBytes: webSocketMaxPayload(this.#maxFrameBytes),
          error,
        });
        // For the log only: the WebSocket library has already sent its close frame (1009, no reason).
        session.closeWith = { code: 1009, reason: 'WebSocket message too big' };
        // Refused as the broker refuses a frame: no more input is read, and a client that does not
        // close its side is cut off after closeTimeoutMs (not after the library's own 30 s).
        this.#closeAfterFlush(session);
      },
    });
    this.#sessions.add(session);
    this.#counters.connectionsTotal++;
    if (this.#frozen) session.wire.pause();
    this.logger?.debug?.('connection accepted', { server: this.name, ...session.describe() });
    return session;
  }

  stats(): BrokerStats {
    let replication = 0;
    for (const s of this.#sessions) if (s.kind === 'replication') replication++;
    let sowRecords = 0;
    for (const sow of this.#sow.values()) sowRecords += sow.records.size;
    const topics: Record<string, TopicStats> = {};
    for (const [topic, stats] of this.#topicStats) topics[topic] = { ...stats };
    const queues: Record<string, { depth: number; leased: number }> = {};
    for (const [topic, q] of this.#queues) queues[topic] = { depth: q.messages.size, leased: q.leased };
    return {
      connections: { current: this.#sessions.size - replication, total: this.#counters.connectionsTotal, replication },
      published: this.#counters.published,
      replicated: this.#counters.replicated,
      delivered: this.#counters.delivered,
      duplicatesDropped: this.#counters.duplicatesDropped,
      badFrames: this.#counters.badFrames,
      txlogLength: this.log.length,
      sowRecords,
      topics,
      queues,
      peers: this.#links.map((link) => ({
        name: link.peer.name,
        mode: link.sync ? 'sync' : 'async',
        connected: link.connected,
        downgraded: link.downgraded,
        lag: link.lag(),
        sent: link.sentEntries,
      })),
    };
  }

  /* ---------------- LinkHost ---------------- */

  linkChanged(): void {
    this.#persistenceChanged = true;
    this.scheduleFlush();
  }

  scheduleFlush(): void {
    if (this.#immediate !== undefined || !this.#running) return;
    this.#immediate = setImmediate(() => {
      this.#immediate = undefined;
      this.#flush();
    });
  }

  /* ---------------- input ---------------- */

  #onData(session: Session, decoder: MessageDecoder, chunk: Uint8Array): void {
    if (!session.live) return;
    session.lastReadAt = this.env.now();
    try {
      decoder.push(chunk);
    } catch (error) {
      this.#counters.badFrames++;
      const message = error instanceof Error ? error.message : String(error);
      const tooLarge = TOO_LARGE.exec(message);
      if (tooLarge) {
        const frameBytes = Number(tooLarge[1]);
        this.logger?.warn?.('closing connection: frame too large', {
          server: this.name,
          ...session.describe(),
          frameBytes,
          maxFrameBytes: this.#maxFrameBytes,
        });
        // 1009: "message too big" (RFC 6455 §7.4.1).
        this.#refuse(session, 1009, `frame of ${frameBytes} bytes exceeds maxFrameBytes (${this.#maxFrameBytes})`);
        return;
      }
      this.logger?.warn?.('closing connection: bad frame', {
        server: this.name,
        ...session.describe(),
        error: message,
      });
      // 1002: protocol error (RFC 6455 §7.4.1).
      this.#refuse(session, 1002, `bad frame: ${message}`);
    }
  }

  /**
   * Ends a connection whose input cannot be read any further: what was already answered goes out,
   * then a graceful close (a TCP FIN; over WebSocket a close frame with `code` and `reason`). The
   * client's remaining input is read and dropped, so the close is not a reset.
   */
  #refuse(s: Session, code: number, reason: string): void {
    s.closeWith = { code, reason: closeReasonText(reason) };
    this.#closeAfterFlush(s);
  }

  #onMessage(session: Session, message: Message): void {
    if (!session.live) return;
    try {
      this.#dispatch(session, message);
    } catch (error) {
      if (error instanceof ProtocolError) throw error;
      this.logger?.error?.('command failed unexpectedly', {
        server: this.name,
        ...session.describe(),
        command: message.command,
        error: error instanceof Error ? (error.stack ?? error.message) : String(error),
      });
      this.#fail(session, message, 'internal error', PROCESSED | PERSISTED);
    }
    this.#markDirty(session);
  }

  #dispatch(s: Session, m: Message): void {
    if (s.state !== 'logged-on') {
      if (m.command === 'logon') {
        this.#logon(s, m);
        return;
      }
      // Logon must come first: refuse, then close.
      s.send({
        command: 'ack',
        commandId: m.commandId,
        ackType: 'processed',
        status: 'failure',
        reason: 'logon required',
      });
      this.logger?.info?.('closing connection: command before logon', {
        server: this.name,
        ...s.describe(),
        command: m.command,
      });
      this.#closeAfterFlush(s);
      return;
    }
    if (s.kind === 'replication') {
      this.#replicated(s, m);
      return;
    }
    switch (m.command) {
      case 'publish':
        this.#publish(s, m, false);
        return;
      case 'delta_publish':
        this.#publish(s, m, true);
        return;
      case 'subscribe':
      case 'delta_subscribe':
      case 'sow_and_subscribe':
      case 'sow_and_delta_subscribe':
        this.#subscribe(s, m);
        return;
      case 'sow':
        this.#sowQuery(s, m);
        return;
      case 'sow_delete':
        this.#sowDelete(s, m);
        return;
      case 'ack':
        // Queue acknowledgement as the Go client sends it.
        this.#sowDelete(s, m);
        return;
      case 'unsubscribe':
        this.#unsubscribe(s, m);
        return;
      case 'flush':
        this.#flushCommand(s, m);
        return;
      case 'heartbeat':
        this.#heartbeatCommand(s, m);
        return;
      case 'logon':
        this.#fail(s, m, 'already logged on', PROCESSED);
        return;
      default:
        this.#fail(s, m, 'unknown command', PROCESSED);
        return;
    }
  }

  /* ---------------- acks ---------------- */

  #ack(s: Session, m: Message, type: AckType, fields?: Partial<Command>): void {
    s.send({ command: 'ack', commandId: m.commandId, ackType: type, status: 'success', ...fields });
  }

  /** Sends a failure on each of `types` the command requested. */
  #fail(s: Session, m: Message, reason: string, types: number, fields?: Partial<Command>): void {
    const mask = ackMask(m.ackType) & types;
    // AMPS reports a failure on its own, after a conflated success for what came before it
    // (amps-protocol.md §5.6: seqs 1-5 with 3 failing give success@2, failure@3, success@5).
    if (mask & PERSISTED) this.#sendConflatedNow(s);
    for (const type of ['processed', 'persisted'] as const) {
      if (mask & (ackBits[type] as number)) {
        s.send({ command: 'ack', commandId: m.commandId, ackType: type, status: 'failure', reason, ...fields });
      }
    }
    this.logger?.debug?.('command failed', { server: this.name, ...s.describe(), command: m.command, reason });
  }

  /* ---------------- logon ---------------- */

  #logon(s: Session, m: Message): void {
    const options = parseOptions(m.options);
    if (options.has(REPLICATION_OPTION)) {
      this.#replicationLogon(s, m);
      return;
    }
    const mask = ackMask(m.ackType);
    if (mask & RECEIVED) this.#ack(s, m, 'received');
    const auth = this.options.auth;
    if (auth) {
      const user = m.userId;
      if (s.challenge) {
        const expected = s.challenge;
        s.challenge = undefined;
        if (m.password !== expected.token || user !== expected.user) {
          this.#logonFailed(s, m, mask);
          return;
        }
      } else {
        const password = user !== undefined && Object.hasOwn(auth.users, user) ? auth.users[user] : undefined;
        if (password === undefined || m.password !== password) {
          this.#logonFailed(s, m, mask);
          return;
        }
        if (auth.challenge) {
          const token = randomBytes(12).toString('hex');
          s.challenge = { token, user };
          s.send({
            command: 'ack',
            commandId: m.commandId,
            ackType: 'processed',
            status: 'retry',
            reason: 'challenge',
            userId: user,
            password: token,
          });
          return;
        }
      }
    }
    const name = m.clientName || `${this.name}-anonymous-${s.id}`;
    const existing = this.#byName.get(name);
    if (existing && existing !== s) {
      if (auth && existing.userId !== m.userId) {
        this.logger?.info?.('logon refused: name in use by another user', { server: this.name, ...s.describe() });
        s.send({
          command: 'ack',
          commandId: m.commandId,
          ackType: 'processed',
          status: 'failure',
          reason: 'name in use',
        });
        this.#closeAfterFlush(s);
        return;
      }
      this.logger?.info?.('name in use: closing the older connection', { server: this.name, ...existing.describe() });
      this.#close(existing, 'name in use');
    }
    s.state = 'logged-on';
    s.clientName = name;
    s.userId = m.userId;
    s.publisher = this.log.publisher(nameHash(name));
    this.#byName.set(name, s);
    const conflation = options.get('ack_conflation');
    s.conflationMs =
      typeof conflation === 'string' ? (parseInterval(conflation) ?? 0) : (this.options.ackConflationMs ?? 1000);
    if (mask & PROCESSED) {
      const seq = this.#persistedHighWater(s.publisher);
      this.#ack(s, m, 'processed', {
        clientName: name,
        sequence: seq,
        bookmark: bookmarkOf(s.publisher.id, seq),
        version: this.version,
        // A real AMPS without authentication says so on the successful logon ack (amps-protocol.md
        // §4.1, the trace): a success can carry a reason.
        reason: auth ? undefined : 'authentication disabled',
      });
    }
    this.logger?.debug?.('logon', { server: this.name, ...s.describe() });
  }

  #logonFailed(s: Session, m: Message, mask: number): void {
    this.logger?.info?.('logon failed: auth failure', {
      server: this.name,
      ...s.describe(),
      ...(m.userId === undefined ? {} : { user: m.userId }),
    });
    if (mask & PROCESSED) {
      s.send({
        command: 'ack',
        commandId: m.commandId,
        ackType: 'processed',
        status: 'failure',
        reason: 'auth failure',
      });
    } else {
      this.#closeAfterFlush(s);
    }
  }

  #replicationLogon(s: Session, m: Message): void {
    const name = m.clientName ?? `peer-${s.id}`;
    const existing = this.#replByName.get(name);
    if (existing && existing !== s) this.#close(existing, 'replaced by a new replication link');
    s.kind = 'replication';
    s.state = 'logged-on';
    s.clientName = name;
    this.#replByName.set(name, s);
    this.#ack(s, m, 'processed', { clientName: name, bookmark: this.log.highWaterList(), version: this.version });
    this.logger?.debug?.('replication connection from peer', { server: this.name, ...s.describe() });
  }

  /* ---------------- publish ---------------- */

  /** The highest sequence of a publisher that is persisted here and on every sync peer. */
  #persistedHighWater(publisher: PublisherLog): number {
    let hw = publisher.hw;
    for (const link of this.#links) {
      if (!link.sync || link.downgraded) continue;
      const held = link.acked.get(publisher.id) ?? 0;
      if (held < hw) hw = held;
    }
    return hw;
  }

  /** Whether some sync peer must hold a message before it counts as persisted. */
  get #syncActive(): boolean {
    for (const link of this.#links) if (link.sync && !link.downgraded) return true;
    return false;
  }

  /** Whether a persisted ack can be sent right away (nothing to wait for). */
  get #persistsAtOnce(): boolean {
    return !this.#file && !this.#syncActive;
  }

  #unsequenced(s: Session): PublisherLog {
    if (!s.unsequenced) s.unsequenced = this.log.publisher(nameHash(`${s.clientName}\u0000${this.name}`));
    return s.unsequenced;
  }

  /** Next broker-assigned sequence: time-based like AMPS's, so a fresh instance never reuses one. */
  #nextUnsequenced(publisher: PublisherLog): number {
    return Math.max(publisher.hw + 1, Math.floor(this.env.now()) * 1000);
  }

  #publish(s: Session, m: Message, delta: boolean): void {
    const mask = ackMask(m.ackType);
    if (mask & RECEIVED) this.#ack(s, m, 'received');
    const topic = m.topic;
    const clientSeq = m.sequence !== undefined && m.sequence > 0 ? m.sequence : undefined;
    if (clientSeq !== undefined && !Number.isSafeInteger(clientSeq)) {
      this.#fail(s, m, 'invalid sequence', PROCESSED | PERSISTED);
      return;
    }
    if (!topic || topic.startsWith('/AMPS/')) {
      this.#fail(s, m, 'invalid topic', PROCESSED | PERSISTED, { sequence: clientSeq });
      return;
    }
    const publisher = clientSeq === undefined ? this.#unsequenced(s) : (s.publisher as PublisherLog);
    const seq = clientSeq ?? this.#nextUnsequenced(publisher);
    if (seq <= publisher.hw) {
      this.#counters.duplicatesDropped++;
      this.#publishAcks(s, m, mask, publisher, seq, clientSeq);
      return;
    }
    let data = m.data;
    let json: MaybeJson = NOT_PARSED;
    let sowKey = m.sowKey;
    const sow = this.#sow.get(topic);
    if (sow) {
      json = parseJson(data);
      if (sow.hasKeyFields && !isObject(json)) {
        this.#fail(s, m, 'invalid message', PROCESSED | PERSISTED, { sequence: clientSeq });
        return;
      }
      sowKey = sow.keyOf(json, m.sowKey);
      if (sowKey === undefined) {
        this.#fail(s, m, 'missing sow key', PROCESSED | PERSISTED, { sequence: clientSeq });
        return;
      }
      const previous = sow.records.get(sowKey);
      if (delta && previous && isObject(previous.json) && isObject(json)) {
        json = mergeDelta(previous.json, json);
        data = Buffer.from(JSON.stringify(json));
      }
    }
    const expiration =
      m.expiration !== undefined && Number.isSafeInteger(m.expiration) && m.expiration > 0 ? m.expiration : undefined;
    const entry = this.#append(publisher, seq, this.env.now(), topic, data, sowKey, m.correlationId, expiration);
    this.#counters.published++;
    this.#apply(entry, json, true);
    this.#publishAcks(s, m, mask, publisher, seq, clientSeq);
  }

  #publishAcks(
    s: Session,
    m: Message,
    mask: number,
    publisher: PublisherLog,
    seq: number,
    clientSeq: number | undefined,
    stats?: Partial<Command>,
  ): void {
    if (seq > (s.lastSeqs.get(publisher) ?? 0)) s.lastSeqs.set(publisher, seq);
    if (mask & (PROCESSED | COMPLETED)) {
      const fields = { sequence: clientSeq, bookmark: bookmarkOf(publisher.id, seq) };
      if (mask & PROCESSED) this.#ack(s, m, 'processed', fields);
      if (mask & COMPLETED) this.#ack(s, m, 'completed', fields);
    }
    // A sow_delete's counts follow its processed and completed acks, in the order AMPS lists a
    // query's acks (amps-protocol.md §4.4): a client that settles on `stats` sees `processed` first.
    if (stats) this.#ack(s, m, 'stats', stats);
    if (mask & PERSISTED) this.#persistedAck(s, { publisher, seq, cid: m.commandId, clientSeq });
  }

  #persistedAck(s: Session, pending: PendingAck): void {
    if (this.#persistsAtOnce) {
      this.#sendPersisted(s, pending);
      return;
    }
    s.pending.push(pending);
    this.#ackWaiters.add(s);
    // With sync peers only their acks move persistence; a duplicate may be persisted already.
    if (!this.#syncActive || this.#isPersisted(pending)) this.#persistenceChanged = true;
    this.scheduleFlush();
  }

  #isPersisted(pending: PendingAck): boolean {
    if (pending.flush) return pending.flush.every(([p, seq]) => seq <= this.#persistedHighWater(p));
    return pending.seq <= this.#persistedHighWater(pending.publisher);
  }

  #sendPersisted(s: Session, p: PendingAck): void {
    if (p.flush) {
      // "Everything before is persisted" (amps-protocol.md §4.8): the acks that say so for the
      // publishes before the flush go first, not a conflation interval later.
      this.#sendConflatedNow(s);
      s.send({ command: 'ack', commandId: p.cid, ackType: 'persisted', status: 'success' });
    } else if (s.conflationMs > 0 && p.clientSeq !== undefined) {
      if (p.clientSeq > s.conflatedMax) s.conflatedMax = p.clientSeq;
      this.#armConflation(s);
    } else {
      s.send({
        command: 'ack',
        commandId: p.cid,
        ackType: 'persisted',
        status: 'success',
        sequence: p.clientSeq,
        bookmark: bookmarkOf(p.publisher.id, p.seq),
      });
    }
    this.#markDirty(s);
  }

  #armConflation(s: Session): void {
    if (s.conflationTimer !== undefined) return;
    s.conflationTimer = this.timers.set(() => {
      s.conflationTimer = undefined;
      this.#sendConflated(s);
    }, s.conflationMs);
  }

  /** The conflated ack now, ahead of its interval, if one is waiting. */
  #sendConflatedNow(s: Session): void {
    if (s.conflationTimer === undefined) return;
    this.timers.clear(s.conflationTimer);
    s.conflationTimer = undefined;
    this.#sendConflated(s);
  }

  /** One persisted ack, without `cid`, for every sequence of this client persisted since the last one. */
  #sendConflated(s: Session): void {
    if (!s.live || s.conflatedMax <= s.conflatedSent) return;
    s.conflatedSent = s.conflatedMax;
    s.send({
      command: 'ack',
      ackType: 'persisted',
      status: 'success',
      sequence: s.conflatedMax,
      bookmark: bookmarkOf((s.publisher as PublisherLog).id, s.conflatedMax),
    });
    this.#markDirty(s);
  }

  #append(
    publisher: PublisherLog,
    seq: number,
    timestamp: number,
    topic: string,
    data: Uint8Array,
    sowKey: string | undefined,
    correlationId: string | undefined,
    expiration: number | undefined,
    deletes?: DeleteSpec,
    toFile = true,
  ): LogEntry {
    const entry = this.log.append(publisher, seq, timestamp, topic, data, sowKey, correlationId, expiration, deletes);
    if (toFile) this.#file?.append(entry);
    if (!this.#syncActive) this.#persistenceChanged = true;
    this.scheduleFlush();
    return entry;
  }

  /** Applies a logged entry to the SOW and queues and, when `deliver`, to subscribers. */
  #apply(entry: LogEntry, json: MaybeJson, deliver: boolean): number {
    if (entry.deletes) return this.#applyDelete(entry, deliver);
    let change: SowChange | undefined;
    const sow = this.#sow.get(entry.topic);
    if (sow && entry.sowKey !== undefined) {
      const parsed = json === NOT_PARSED ? parseJson(entry.data) : json;
      const expiresAt = entry.expiration ? entry.timestamp + entry.expiration * 1000 : undefined;
      const record = new SowRecord(entry.sowKey, entry, parsed, expiresAt);
      const previous = sow.records.get(entry.sowKey);
      sow.records.set(entry.sowKey, record);
      if (expiresAt !== undefined) this.#trackExpiry(record);
      change = { sow, record, previous };
      json = parsed;
    }
    const queue = this.#queues.get(entry.topic);
    if (queue && !queue.ackedAhead.delete(entry.bookmark)) {
      queue.messages.set(entry.bookmark, new QueueMessage(entry));
      this.#dirtyQueues.add(queue);
    }
    if (deliver) this.#fanOut(entry, change, json);
    return 1;
  }

  #stats(topic: string): TopicStats {
    if (topic === this.#lastTopic && this.#lastTopicStats) return this.#lastTopicStats;
    let stats = this.#topicStats.get(topic);
    if (!stats) {
      stats = { published: 0, delivered: 0 };
      this.#topicStats.set(topic, stats);
    }
    this.#lastTopic = topic;
    this.#lastTopicStats = stats;
    return stats;
  }

  /* ---------------- delivery ---------------- */

  #fanOut(entry: LogEntry, change: SowChange | undefined, json: MaybeJson): void {
    const stats = this.#stats(entry.topic);
    stats.published++;
    const literal = this.#literalSubs.get(entry.topic);
    if (literal === undefined && this.#regexSubs.size === 0) return;
    const context = new Offer(entry, change, json);
    const merged = new Map<Session, Delivery[]>();
    const oofs = new Map<Session, Subscription[]>();
    this.#merging = merged;
    this.#oofs = oofs;
    try {
      if (literal) for (const sub of literal) this.#offer(sub, context);
      for (const sub of this.#regexSubs) if ((sub.regex as RegExp).test(entry.topic)) this.#offer(sub, context);
    } finally {
      this.#merging = undefined;
      this.#oofs = undefined;
    }
    for (const [session, subs] of oofs) this.#sendOofs(session, subs, entry, 'match');
    for (const [session, deliveries] of merged) this.#sendMerged(session, entry, deliveries);
  }

  /**
   * One frame per connection for a message that several of its subscriptions match, listing them
   * in `sids` (amps-protocol.md §2, §4.10: `sids` is the comma list of subscription ids on a delivery
   * that matches several subscriptions); a single match has `sub_id`. A delta subscription whose
   * connection also has a plain subscription matching the message gets the full message with it
   * (§11.2). Deliveries that differ in their headers (`bm`, `k`, `ts` options) go in separate frames.
   */
  #sendMerged(s: Session, entry: LogEntry, deliveries: Delivery[]): void {
    if (deliveries.length === 1) {
      const d = deliveries[0] as Delivery;
      this.#sendDelivery(s, entry, d.sub, d.data, d.sub.id, undefined);
      return;
    }
    if (deliveries.some((d) => !d.delta)) for (const d of deliveries) d.data = entry.data;
    const frames: Array<{ first: Delivery; ids: string[] }> = [];
    for (const d of deliveries) {
      const same = frames.find(
        ({ first: f }) =>
          f.data === d.data &&
          f.sub.withBookmark === d.sub.withBookmark &&
          f.sub.noSowKey === d.sub.noSowKey &&
          f.sub.timestamp === d.sub.timestamp,
      );
      if (same) same.ids.push(d.sub.id);
      else frames.push({ first: d, ids: [d.sub.id] });
    }
    for (const { first, ids } of frames) {
      const single = ids.length === 1;
      this.#sendDelivery(
        s,
        entry,
        first.sub,
        first.data,
        single ? ids[0] : undefined,
        single ? undefined : ids.join(','),
      );
    }
  }

  #sendDelivery(
    s: Session,
    entry: LogEntry,
    sub: Subscription,
    data: Uint8Array,
    subId: string | undefined,
    subIds: string | undefined,
  ): void {
    s.send({
      command: 'publish',
      topic: entry.topic,
      subId,
      subIds,
      bookmark: sub.withBookmark ? entry.bookmark : undefined,
      correlationId: entry.correlationId,
      sowKey: sub.noSowKey ? undefined : entry.sowKey,
      timestamp: sub.timestamp ? ampsTimestamp(entry.timestamp) : undefined,
      data,
    });
    this.#markDirty(s);
  }

  #offer(sub: Subscription, offer: Offer): void {
    if (sub.queue || sub.fullyDurable || (sub.bookmarkSub && !sub.caughtUp)) return;
    const { entry, change } = offer;
    const matches = sub.filter ? sub.filter(offer.json()) : true;
    if (!change) {
      if (matches) this.#deliver(sub, entry, entry.data);
      return;
    }
    const previous = change.previous;
    const previousMatched = previous !== undefined && (sub.filter ? sub.filter(previous.json) : true);
    if (!matches) {
      // Never on bookmark subscriptions (amps-protocol.md §10.4), also once they are live.
      if (sub.oof && previousMatched && !sub.bookmarkSub) this.#oof(sub, entry, 'match');
      return;
    }
    if (sub.delta && previousMatched) {
      const delta = offer.delta(change);
      if (delta) {
        if (delta.changed === 0 && sub.noEmpties) return;
        this.#deliver(sub, entry, delta.data, true);
        return;
      }
    }
    this.#deliver(sub, entry, entry.data);
  }

  #deliver(sub: Subscription, entry: LogEntry, data: Uint8Array, delta = false): void {
    this.#counters.delivered++;
    this.#stats(entry.topic).delivered++;
    const s = sub.session;
    const merging = this.#merging;
    if (!merging) {
      this.#sendDelivery(s, entry, sub, data, sub.id, undefined);
      return;
    }
    // A live publish: sent once every subscription has been offered it (#sendMerged).
    pushTo(merging, s, { sub, data, delta });
  }

  /** An `oof` for one subscription: merged with the connection's others when a batch is open (#oofs). */
  #oof(sub: Subscription, entry: LogEntry, reason: OofReason): void {
    const batch = this.#oofs;
    if (!batch) {
      this.#sendOofs(sub.session, [sub], entry, reason);
      return;
    }
    pushTo(batch, sub.session, sub);
  }

  /**
   * `oof` notices of one record to one connection: one frame for the subscriptions that share its
   * headers, listing them in `sids` (one subscription: `sub_id`), as deliveries are. Fields as AMPS
   * documents them (amps-protocol.md §4.10): `t`, `k`, `reason`, `x` and `l` of the body, which is
   * the updated message for `match` and the previous one for `deleted` and `expired`.
   */
  #sendOofs(s: Session, subs: readonly Subscription[], entry: LogEntry, reason: OofReason): void {
    for (const withBookmark of [false, true]) {
      const ids = subs.filter((sub) => sub.withBookmark === withBookmark).map((sub) => sub.id);
      if (ids.length === 0) continue;
      s.send({
        command: 'oof',
        topic: entry.topic,
        subId: ids.length === 1 ? ids[0] : undefined,
        subIds: ids.length === 1 ? undefined : ids.join(','),
        reason,
        sowKey: entry.sowKey,
        correlationId: entry.correlationId,
        bookmark: withBookmark ? entry.bookmark : undefined,
        length: entry.data.length,
        data: entry.data,
      });
    }
    this.#markDirty(s);
  }

  /** Out-of-focus notices for a record that left the SOW. */
  #oofRemoved(record: SowRecord, reason: 'deleted' | 'expired'): void {
    const topic = record.entry.topic;
    const oofs = new Map<Session, Subscription[]>();
    const notify = (sub: Subscription) => {
      if (!sub.oof || sub.bookmarkSub || sub.queue) return;
      if (sub.filter && !sub.filter(record.json)) return;
      pushTo(oofs, sub.session, sub);
    };
    const literal = this.#literalSubs.get(topic);
    if (literal) for (const sub of literal) notify(sub);
    for (const sub of this.#regexSubs) if ((sub.regex as RegExp).test(topic)) notify(sub);
    for (const [session, subs] of oofs) this.#sendOofs(session, subs, record.entry, reason);
  }

  #markDirty(s: Session): void {
    if (s.out.byteLength === 0 && s.state !== 'closing') return;
    this.#dirty.add(s);
    this.scheduleFlush();
  }

  /* ---------------- subscribe ---------------- */

  #subscribe(s: Session, m: Message): void {
    const mask = ackMask(m.ackType);
    const command = m.command as string;
    const withSow = command.startsWith('sow_and_');
    const delta = command.endsWith('delta_subscribe');
    const subId = m.subId ?? m.commandId;
    // The sow family's acks, `received` included, carry `query_id` too (amps-protocol.md §5.3),
    // by default the sub_id.
    const ids = withSow ? { subId, queryId: m.queryId ?? subId } : { subId };
    if (mask & RECEIVED) this.#ack(s, m, 'received', ids);
    const topic = m.topic;
    if (!subId) {
      this.#fail(s, m, 'invalid subscription: no sub_id or cid', PROCESSED);
      return;
    }
    const options = parseOptions(m.options);
    const pause = options.has('pause');
    // Pausing or resuming subscriptions the connection holds, or a new one that starts paused.
    if ((pause || options.has('resume')) && this.#pauseOrResume(s, m, subId, options)) return;
    if (!topic) {
      this.#fail(s, m, 'invalid topic', PROCESSED, ids);
      return;
    }
    if (command === 'delta_subscribe' && m.bookmark !== undefined) {
      // AMPS does not accept delta bookmark subscriptions (amps-protocol.md §9.6, §11.2).
      this.#fail(s, m, 'invalid bookmark: a delta_subscribe cannot replay from a bookmark', PROCESSED, ids);
      return;
    }
    const existing = s.subs.get(subId);
    const replace = options.has('replace');
    if (existing && !replace) {
      this.#fail(s, m, 'subscription already exists', PROCESSED, ids);
      return;
    }
    let regex: RegExp | undefined;
    let filter: Filter | undefined;
    try {
      regex = topicRegex(topic, options.has('non_regex_topic'));
    } catch {
      this.#fail(s, m, 'bad regex topic', PROCESSED, ids);
      return;
    }
    try {
      filter = m.filter ? compileFilter(m.filter) : undefined;
    } catch {
      this.#fail(s, m, 'bad filter', PROCESSED, ids);
      return;
    }
    let shape: QueryShape | undefined;
    if (withSow) {
      const checked = queryShape(m, options, true);
      if (typeof checked === 'string') {
        this.#fail(s, m, checked, PROCESSED, ids);
        return;
      }
      shape = checked;
    }
    const queue = m.bookmark === undefined ? this.#queues.get(topic) : undefined;
    // Replace changes topic, filter and options, not how a subscription is served: moved onto a queue
    // it would get every message unleased, moved off one it would go on consuming the old queue.
    if (existing && replace && existing.queue !== queue) {
      this.#fail(s, m, 'invalid replace: cannot move a subscription to, from or between queues', PROCESSED, ids);
      return;
    }

    if (existing && replace) {
      const oldFilter = existing.filter;
      const oldRegex = existing.regex;
      const oldTopic = existing.topic;
      const oldScope = (t: string) => (oldRegex ? oldRegex.test(t) : oldTopic === t);
      this.#unindex(existing);
      this.#configure(existing, topic, regex, filter, m.filter, delta, options);
      this.#index(existing);
      if (queue) {
        // A consumer may ask for another backlog; what it already leases stays leased.
        existing.maxBacklog = grantedBacklog(queue, options);
        if (mask & PROCESSED) this.#ack(s, m, 'processed', { ...ids, options: `max_backlog=${existing.maxBacklog}` });
        this.#dirtyQueues.add(queue);
        this.scheduleFlush();
        return;
      }
      if (mask & PROCESSED) this.#ack(s, m, 'processed', ids);
      if (shape && !existing.queue) this.#requery(s, m, existing, oldScope, oldFilter, mask, shape);
      return;
    }

    let start = 0;
    let range: RangeStop | undefined;
    if (m.bookmark !== undefined && !withSow) {
      const resolved = this.#bookmarkStart(m.bookmark, options.get('bookmark_not_found'));
      if (typeof resolved === 'string') {
        this.#fail(s, m, resolved, PROCESSED, ids);
        return;
      }
      ({ start, range } = resolved);
    }

    const sub = new Subscription(s, subId);
    this.#configure(sub, topic, regex, filter, m.filter, delta, options);
    if (queue) {
      sub.queue = queue;
      sub.maxBacklog = grantedBacklog(queue, options);
      if (mask & PROCESSED) this.#ack(s, m, 'processed', { ...ids, options: `max_backlog=${sub.maxBacklog}` });
      queue.consumers.push(sub);
      this.#dirtyQueues.add(queue);
      s.subs.set(subId, sub);
      if (withSow) this.#emptyGroup(s, m, sub, mask);
      this.scheduleFlush();
      return;
    }
    if (mask & PROCESSED) this.#ack(s, m, 'processed', ids);
    s.subs.set(subId, sub);
    this.#index(sub);
    if (shape) {
      this.#query(s, m, mask, sub, shape);
      return;
    }
    if (m.bookmark !== undefined) {
      sub.bookmarkSub = true;
      sub.withBookmark = true;
      // Replays carry whole messages; so does the live part that follows.
      sub.delta = false;
      sub.fullyDurable = options.has('fully_durable');
      sub.cursor = start;
      sub.replayEnd = this.log.length;
      sub.completedPending = (mask & COMPLETED) !== 0;
      sub.completedCid = m.commandId;
      sub.wantsPersisted = (mask & PERSISTED) !== 0;
      sub.caughtUp = false;
      sub.range = range;
      if (range) this.#armRange(range);
      // Registered before the first pump, which removes an empty range at once.
      if (sub.wantsPersisted) {
        this.#persistedAckSubs.add(sub);
        this.#armPersistedAcks();
      }
      sub.paused = pause;
      if (!pause) {
        this.#replaying.add(sub);
        this.#pumpReplay(sub);
      }
    }
  }

  /**
   * `pause` or `resume` on a `subscribe` (amps-protocol.md §9.6): `sub_id` names bookmark
   * subscriptions of this connection, a comma list allowed. A paused one gets nothing; resumed, it
   * replays from where it stopped, what was published meanwhile included. A `pause` naming one new
   * id is a new subscription that starts paused: left to #subscribe (returns false).
   */
  #pauseOrResume(s: Session, m: Message, subId: string, options: Map<string, string | true>): boolean {
    const pause = options.has('pause');
    const ids = subId.split(',');
    const why = (reason: string) => {
      this.#fail(s, m, reason, PROCESSED, { subId });
      return true;
    };
    if (pause && options.has('resume')) return why('invalid options: pause and resume together');
    if (options.has('replace') || options.has('live')) {
      return why(`invalid options: ${pause ? 'pause' : 'resume'} cannot be combined with replace or live`);
    }
    const subs = ids.map((id) => s.subs.get(id));
    if (pause && ids.length === 1 && subs[0] === undefined) {
      if (m.bookmark !== undefined && m.command === 'subscribe') return false;
      return why('invalid pause: only a bookmark subscription can be paused');
    }
    const missing = ids.filter((_, i) => subs[i] === undefined);
    if (missing.length > 0) return why(`subscription not found: ${missing.join(',')}`);
    const plain = subs.filter((sub) => !sub?.bookmarkSub).map((sub) => sub?.id);
    if (plain.length > 0) {
      return why(`invalid ${pause ? 'pause' : 'resume'}: not a bookmark subscription: ${plain.join(',')}`);
    }
    for (const sub of subs as Subscription[]) {
      if (sub.paused === pause) continue;
      sub.paused = pause;
      if (pause) {
        // A live one has had everything logged so far; what comes next waits in the log.
        if (sub.caughtUp) sub.cursor = this.log.length;
        sub.caughtUp = false;
        this.#replaying.delete(sub);
      } else {
        this.#replaying.add(sub);
      }
    }
    if (ackMask(m.ackType) & PROCESSED) this.#ack(s, m, 'processed', { subId });
    if (!pause) this.scheduleFlush();
    return true;
  }

  #configure(
    sub: Subscription,
    topic: string,
    regex: RegExp | undefined,
    filter: Filter | undefined,
    filterText: string | undefined,
    delta: boolean,
    options: Map<string, string | true>,
  ): void {
    sub.topic = topic;
    sub.regex = regex;
    sub.filter = filter;
    sub.filterText = filterText;
    // Bookmark subscriptions deliver whole messages, also after a replace.
    sub.delta = delta && !sub.bookmarkSub;
    sub.oof = options.has('oof');
    sub.withBookmark = sub.bookmarkSub || options.has('bookmark');
    sub.timestamp = options.has('timestamp');
    sub.noSowKey = options.has('no_sowkey');
    sub.noEmpties = options.has('no_empties');
  }

  #index(sub: Subscription): void {
    if (sub.queue) return;
    if (sub.regex) {
      this.#regexSubs.add(sub);
      return;
    }
    let set = this.#literalSubs.get(sub.topic);
    if (!set) {
      set = new Set();
      this.#literalSubs.set(sub.topic, set);
    }
    set.add(sub);
  }

  #unindex(sub: Subscription): void {
    if (sub.regex) {
      this.#regexSubs.delete(sub);
      return;
    }
    const set = this.#literalSubs.get(sub.topic);
    if (!set) return;
    set.delete(sub);
    if (set.size === 0) this.#literalSubs.delete(sub.topic);
  }

  #removeSub(sub: Subscription): void {
    const s = sub.session;
    s.subs.delete(sub.id);
    this.#unindex(sub);
    this.#replaying.delete(sub);
    this.#persistedAckSubs.delete(sub);
    if (sub.range) for (const end of sub.range.ends) if (end.kind === 'time') this.timers.clear(end.timer);
    const queue = sub.queue;
    if (queue) {
      const i = queue.consumers.indexOf(sub);
      if (i >= 0) queue.consumers.splice(i, 1);
      // Its leases go back to the queue.
      for (const message of queue.messages.values()) if (message.holder === sub) message.holder = undefined;
      sub.leased = 0;
      this.#dirtyQueues.add(queue);
      this.scheduleFlush();
    }
  }

  /**
   * Where a bookmark subscription starts and, for a range (`[a:b]`, AMPS 5.3.2+), where it stops.
   * A string is a failure reason.
   */
  #bookmarkStart(
    text: string,
    notFound: string | true | undefined,
  ): { start: number; range: RangeStop | undefined } | string {
    if (!/^\s*[[(]/.test(text)) {
      let parsed: ParsedBookmark[];
      try {
        parsed = text.split(',').map(parseBookmark);
      } catch {
        return 'invalid bookmark';
      }
      const start = this.#startPosition(parsed, notFound, undefined);
      return typeof start === 'string' ? start : { start, range: undefined };
    }
    let parsed: ReturnType<typeof parseBookmarkRange>;
    try {
      parsed = parseBookmarkRange(text);
    } catch {
      return 'invalid bookmark';
    }
    // `recent` is the client's to resolve; in a range it has no meaning here.
    if ([...parsed.start, ...parsed.end].some((b) => b.kind === 'most_recent')) return 'invalid bookmark';
    const start = this.#startPosition(parsed.start, notFound, parsed.startInclusive);
    if (typeof start === 'string') return start;
    const ends = parsed.end.map((b) => this.#rangeEnd(b, parsed.endInclusive));
    return { start, range: new RangeStop(parsed.endInclusive, ends) };
  }

  /**
   * Where a bookmark subscription starts: just after the earliest listed bookmark this log holds
   * (at it, for a range begun with `[`); NOW when it holds none (or per `bookmark_not_found`).
   * `inclusive` is undefined for a plain bookmark. A string is a failure reason.
   */
  #startPosition(
    parsed: readonly ParsedBookmark[],
    notFound: string | true | undefined,
    inclusive: boolean | undefined,
  ): number | string {
    const entries = this.log.entries;
    let best = Number.POSITIVE_INFINITY;
    for (const b of parsed) {
      if (b.kind === 'epoch') best = 0;
      else if (b.kind === 'now') {
        // An inclusive NOW (`[0|1|`) starts at the last log entry (amps-protocol.md §9.3).
        best = Math.min(best, inclusive ? Math.max(0, entries.length - 1) : entries.length);
      } else if (b.kind === 'id') {
        const seq = Number(b.id.sequence);
        const at = Number.isSafeInteger(seq) ? this.log.find(b.id.publisher, seq) : -1;
        if (at >= 0) best = Math.min(best, inclusive ? at : at + 1);
      } else if (b.kind === 'timestamp') {
        // A plain timestamp and `[T` start at the first entry at or after T; `(T` after T.
        const time = b.date.getTime() + (inclusive === false ? 1 : 0);
        let at = entries.length;
        for (let i = 0; i < entries.length; i++) {
          if ((entries[i] as LogEntry).timestamp >= time) {
            at = i;
            break;
          }
        }
        best = Math.min(best, at);
      }
    }
    if (Number.isFinite(best)) return best;
    if (notFound === 'fail') return 'bookmark not found';
    if (notFound === 'epoch') return 0;
    return this.log.length;
  }

  /** One end of a range, resolved against the log as it is now where it can be. */
  #rangeEnd(b: ParsedBookmark, inclusive: boolean): RangeEnd {
    const length = this.log.length;
    if (b.kind === 'id') {
      const seq = Number(b.id.sequence);
      // A sequence the log cannot hold is never reached: the range stays live.
      const end: RangeEnd = {
        kind: 'bookmark',
        at: Number.POSITIVE_INFINITY,
        publisher: b.id.publisher,
        seq: Number.isSafeInteger(seq) ? seq : Number.POSITIVE_INFINITY,
      };
      this.#resolveEnd(end, inclusive);
      return end;
    }
    if (b.kind === 'timestamp') {
      const time = b.date.getTime();
      // `]` takes entries stamped T (to the ms); `)` stops at the first stamped T or later.
      const end: RangeEnd = {
        kind: 'time',
        at: Number.POSITIVE_INFINITY,
        pastFrom: inclusive ? time + 1 : time,
        scanned: 0,
        timer: undefined,
      };
      this.#resolveEnd(end, inclusive);
      return end;
    }
    // NOW: the last entry at subscribe time, as for an inclusive begin. EPOCH: before the log.
    if (b.kind === 'now') return { kind: 'position', at: inclusive ? length : Math.max(0, length - 1) };
    return { kind: 'position', at: 0 };
  }

  /** Sets `end.at` once the log shows where the end is. */
  #resolveEnd(end: RangeEnd, inclusive: boolean): void {
    if (end.at !== Number.POSITIVE_INFINITY) return;
    if (end.kind === 'bookmark') {
      const log = this.log.publishers.get(end.publisher);
      if (!log) return;
      const i = log.indexAbove(end.seq - 1);
      // Not logged yet: the range waits for it, live.
      if (i >= log.seqs.length) return;
      const at = log.positions[i] as number;
      // A higher sequence there means the end itself will never be logged: stop before what follows it.
      end.at = log.seqs[i] === end.seq && inclusive ? at + 1 : at;
    } else if (end.kind === 'time') {
      const entries = this.log.entries;
      for (; end.scanned < entries.length; end.scanned++) {
        if ((entries[end.scanned] as LogEntry).timestamp >= end.pastFrom) {
          end.at = end.scanned;
          return;
        }
      }
      // Once the time has passed, what is logged from now on is past the end.
      if (this.env.now() >= end.pastFrom) end.at = entries.length;
    }
  }

  /** Arms a timer for each timestamp end in the future: the range ends when that time passes. */
  #armRange(range: RangeStop): void {
    for (const end of range.ends) {
      if (end.kind !== 'time' || end.at !== Number.POSITIVE_INFINITY) continue;
      end.timer = this.timers.set(() => {
        end.timer = undefined;
        this.#resolveEnd(end, range.inclusive);
        // Node timers can fire a hair before the wall clock reads that time: the end is reached anyway.
        if (end.at === Number.POSITIVE_INFINITY) end.at = this.log.length;
        this.scheduleFlush();
      }, end.pastFrom - this.env.now());
    }
  }

  /** The first log position past a range: the latest of its ends; Infinity while one is unknown. */
  #rangeStop(range: RangeStop): number {
    let stop = 0;
    for (const end of range.ends) {
      this.#resolveEnd(end, range.inclusive);
      stop = Math.max(stop, end.at);
    }
    return stop;
  }

  /**
   * Delivers replayed log entries to a bookmark subscription, as far as its connection can take.
   * A range subscription is served here also once caught up, so that it stops exactly at its end.
   * Returns true to go on next tick; false when done, or when the socket's 'drain' will.
   */
  #pumpReplay(sub: Subscription): boolean {
    const s = sub.session;
    const entries = this.log.entries;
    const limit = sub.fullyDurable ? this.#persistedPrefix : entries.length;
    const range = sub.range;
    let budget = REPLAY_ENTRIES_PER_TICK;
    let paused = false;
    for (;;) {
      // Checked before each entry, and before the first: a range that ends before it begins is empty.
      if (range && sub.cursor >= this.#rangeStop(range)) {
        this.#endRange(sub);
        return false;
      }
      if (sub.cursor >= limit) break;
      if (budget-- <= 0 || s.out.byteLength + s.wire.buffered > this.#replayHighWater) {
        paused = true;
        break;
      }
      // Before what was published after the subscribe, which a paced replay reaches too.
      this.#replayCompleted(sub);
      const entry = entries[sub.cursor++] as LogEntry;
      if (entry.deletes || !sub.matchesTopic(entry.topic)) continue;
      if (sub.filter && !sub.filter(parseJson(entry.data))) continue;
      this.#deliver(sub, entry, entry.data);
    }
    this.#replayCompleted(sub);
    if (!sub.fullyDurable && !range && sub.cursor >= entries.length) {
      sub.caughtUp = true;
      this.#replaying.delete(sub);
      return false;
    }
    // This tick's output may go out in one write that emits no 'drain'.
    return paused && !s.wire.awaitingDrain;
  }

  /**
   * The `completed` ack of a bookmark subscription, once replay reaches the log position at subscribe
   * time. A range's comes at its end instead (#endRange).
   */
  #replayCompleted(sub: Subscription): void {
    if (!sub.completedPending || sub.range || sub.cursor < sub.replayEnd) return;
    this.#sendCompleted(sub, sub.replayEnd);
  }

  /** A range reached its end: the `completed` ack (if requested), and the subscription is gone. */
  #endRange(sub: Subscription): void {
    if (sub.completedPending) this.#sendCompleted(sub, sub.cursor);
    this.#removeSub(sub);
  }

  /** `completed` with `bm` = the last log entry before `position` (absent at the start of the log). */
  #sendCompleted(sub: Subscription, position: number): void {
    sub.completedPending = false;
    const last = position > 0 ? this.log.entries[position - 1] : undefined;
    sub.session.send({
      command: 'ack',
      commandId: sub.completedCid,
      ackType: 'completed',
      status: 'success',
      subId: sub.id,
      bookmark: last?.bookmark,
    });
    this.#markDirty(sub.session);
  }

  #armPersistedAcks(): void {
    if (this.#persistedAckTimer !== undefined || this.#persistedAckSubs.size === 0) return;
    this.#persistedAckTimer = this.timers.set(() => {
      this.#persistedAckTimer = undefined;
      for (const sub of this.#persistedAckSubs) {
        const position = Math.min(sub.position(this.log.length), this.#persistedPrefix);
        if (position <= 0 || position === sub.lastPersistedPosition) continue;
        sub.lastPersistedPosition = position;
        sub.session.send({
          command: 'ack',
          ackType: 'persisted',
          status: 'success',
          subId: sub.id,
          bookmark: (this.log.entries[position - 1] as LogEntry).bookmark,
        });
        this.#markDirty(sub.session);
      }
      this.#armPersistedAcks();
    }, this.#persistedAckMs);
  }

  /* ---------------- SOW queries ---------------- */

  #sowQuery(s: Session, m: Message): void {
    const mask = ackMask(m.ackType);
    const queryId = m.queryId ?? m.commandId;
    if (mask & RECEIVED) this.#ack(s, m, 'received', { queryId });
    const shape = queryShape(m, parseOptions(m.options), false);
    if (typeof shape === 'string') {
      this.#fail(s, m, shape, PROCESSED, { queryId });
      return;
    }
    this.#query(s, m, mask, undefined, shape);
  }

  /** Runs a SOW query (alone, or as the first part of sow_and_subscribe). */
  #query(s: Session, m: Message, mask: number, sub: Subscription | undefined, shape: QueryShape): void {
    const topic = m.topic ?? '';
    const queryId = m.queryId ?? sub?.id ?? m.commandId;
    const ids = { queryId, subId: sub?.id };
    const options = parseOptions(m.options);
    let regex: RegExp | undefined;
    let filter: Filter | undefined;
    try {
      regex = sub ? sub.regex : topicRegex(topic, options.has('non_regex_topic'));
    } catch {
      this.#fail(s, m, 'bad regex topic', PROCESSED, ids);
      return;
    }
    try {
      filter = sub ? sub.filter : m.filter ? compileFilter(m.filter) : undefined;
    } catch {
      this.#fail(s, m, 'bad filter', PROCESSED, ids);
      return;
    }
    const topics = regex
      ? [...this.#sow.values()].filter((t) => (regex as RegExp).test(t.topic))
      : [this.#sow.get(topic)].filter((t): t is SowTopic => t !== undefined);
    if (topics.length === 0 && !sub) {
      this.#fail(s, m, 'invalid topic', PROCESSED, ids);
      return;
    }
    if (!sub && mask & PROCESSED) this.#ack(s, m, 'processed', ids);

    const keys = m.sowKeys === undefined ? undefined : splitList(m.sowKeys);
    let records: SowRecord[] = [];
    for (const t of topics) {
      const candidates = keys ? keys.map((k) => t.records.get(k)) : t.records.values();
      for (const record of candidates) if (record && (!filter || filter(record.json))) records.push(record);
    }
    const matches = records.length;
    if (shape.order) records.sort(shape.order);
    if (shape.skipN > 0 || shape.topN !== undefined) {
      records = records.slice(shape.skipN, shape.topN === undefined ? undefined : shape.skipN + shape.topN);
    }
    this.#sendGroup(
      s,
      m,
      ids,
      records,
      shape.batchSize,
      regex !== undefined,
      options.has('timestamp'),
      options.has('no_sowkey'),
    );
    const counts = { ...ids, recordsReturned: records.length, topicMatches: topics.length, matches };
    // As AMPS: the counts come on the stats ack only.
    if (mask & COMPLETED) this.#ack(s, m, 'completed', ids);
    if (mask & STATS) this.#ack(s, m, 'stats', counts);
  }

  #emptyGroup(s: Session, m: Message, sub: Subscription, mask: number): void {
    const ids = { queryId: m.queryId ?? sub.id, subId: sub.id };
    this.#sendGroup(s, m, ids, [], 1, false, false, false);
    const counts = { ...ids, recordsReturned: 0, topicMatches: 0, matches: 0 };
    // As AMPS: the counts come on the stats ack only.
    if (mask & COMPLETED) this.#ack(s, m, 'completed', ids);
    if (mask & STATS) this.#ack(s, m, 'stats', counts);
  }

  #sendGroup(
    s: Session,
    m: Message,
    ids: { queryId: string | undefined; subId: string | undefined },
    records: readonly SowRecord[],
    batchSize: number,
    withTopic: boolean,
    withTimestamp: boolean,
    noSowKey: boolean,
  ): void {
    s.send({ command: 'group_begin', topic: m.topic, ...ids });
    for (let i = 0; i < records.length; i += batchSize) {
      const batch = records.slice(i, i + batchSize);
      const parts: Uint8Array[] = [];
      let total = 0;
      for (const record of batch) {
        const entry = record.entry;
        // Each record's own header: key, optional fields, and its length `l`.
        const header = Buffer.from(
          JSON.stringify({
            t: withTopic ? entry.topic : undefined,
            x: entry.correlationId,
            // As on deliveries: the option `no_sowkey` leaves the key out (amps-protocol.md §10.1).
            k: noSowKey ? undefined : record.key,
            ts: withTimestamp ? ampsTimestamp(entry.timestamp) : undefined,
            l: entry.data.length,
          }),
        );
        parts.push(header, entry.data);
        total += header.length + entry.data.length;
      }
      const data = new Uint8Array(total);
      let at = 0;
      for (const part of parts) {
        data.set(part, at);
        at += part.length;
      }
      s.send({ command: 'sow', topic: m.topic, ...ids, batchSize: batch.length, data });
    }
    s.send({ command: 'group_end', topic: m.topic, ...ids });
  }

  /**
   * A replaced sow_and_subscribe: records newly in scope are sent, those that left get an oof. The
   * scope is topic and filter: a replace may change either (`oldScope` is the old topic's test).
   */
  #requery(
    s: Session,
    m: Message,
    sub: Subscription,
    oldScope: (topic: string) => boolean,
    oldFilter: Filter | undefined,
    mask: number,
    shape: QueryShape,
  ): void {
    const ids = { queryId: m.queryId ?? sub.id, subId: sub.id };
    let entering: SowRecord[] = [];
    let topics = 0;
    for (const t of this.#sow.values()) {
      const wasInScope = oldScope(t.topic);
      const inScope = sub.matchesTopic(t.topic);
      if (!wasInScope && !inScope) continue;
      if (inScope) topics++;
      for (const record of t.records.values()) {
        const before = wasInScope && (!oldFilter || oldFilter(record.json));
        const now = inScope && (!sub.filter || sub.filter(record.json));
        if (now && !before) entering.push(record);
        else if (before && !now && sub.oof) this.#oof(sub, record.entry, 'match');
      }
    }
    // The re-run query is shaped as the first one was: by the replace's orderby and top_n.
    const matches = entering.length;
    if (shape.order) entering.sort(shape.order);
    if (shape.topN !== undefined) entering = entering.slice(0, shape.topN);
    this.#sendGroup(s, m, ids, entering, shape.batchSize, sub.regex !== undefined, sub.timestamp, sub.noSowKey);
    const counts = { ...ids, recordsReturned: entering.length, topicMatches: topics, matches };
    // As AMPS: the counts come on the stats ack only.
    if (mask & COMPLETED) this.#ack(s, m, 'completed', ids);
    if (mask & STATS) this.#ack(s, m, 'stats', counts);
  }

  /* ---------------- sow_delete and queue acknowledgement ---------------- */

  #sowDelete(s: Session, m: Message): void {
    const mask = ackMask(m.ackType);
    if (mask & RECEIVED) this.#ack(s, m, 'received');
    const topic = m.topic;
    const clientSeq = m.sequence !== undefined && m.sequence > 0 ? m.sequence : undefined;
    if (clientSeq !== undefined && !Number.isSafeInteger(clientSeq)) {
      this.#fail(s, m, 'invalid sequence', PROCESSED | PERSISTED);
      return;
    }
    const failFields = { sequence: clientSeq };
    if (!topic) {
      this.#fail(s, m, 'invalid topic', PROCESSED | PERSISTED, failFields);
      return;
    }
    const queue = this.#queues.get(topic);
    const sow = this.#sow.get(topic);
    const options = parseOptions(m.options);
    let deletes: DeleteSpec;
    let data: Uint8Array = new Uint8Array(0);
    let sowKey = m.sowKey;
    if (m.bookmark !== undefined) {
      if (!queue) {
        this.#fail(s, m, 'invalid topic: not a queue', PROCESSED | PERSISTED, failFields);
        return;
      }
      const option = options.has('cancel') ? 'cancel' : options.has('expire') ? 'expire' : undefined;
      deletes = { sowKeys: undefined, filter: undefined, bookmarks: m.bookmark, options: option };
      if (option === 'cancel') this.#cancelLeases(s, queue, m.bookmark);
    } else {
      // On a queue, a filter acknowledges every message it matches, leased or not (amps-protocol.md §12).
      const queueFilter = queue !== undefined && m.sowKeys === undefined && m.filter !== undefined;
      if (!sow && !queueFilter) {
        this.#fail(s, m, 'invalid topic', PROCESSED | PERSISTED, failFields);
        return;
      }
      if (m.sowKeys !== undefined) {
        deletes = { sowKeys: m.sowKeys, filter: undefined, bookmarks: undefined, options: undefined };
      } else if (m.filter !== undefined) {
        try {
          compileFilter(m.filter);
        } catch {
          this.#fail(s, m, 'bad filter', PROCESSED | PERSISTED, failFields);
          return;
        }
        deletes = { sowKeys: undefined, filter: m.filter, bookmarks: undefined, options: undefined };
      } else if (sow && m.data.length > 0) {
        sowKey = sow.keyOf(parseJson(m.data), m.sowKey);
        if (sowKey === undefined) {
          this.#fail(s, m, 'missing sow key', PROCESSED | PERSISTED, failFields);
          return;
        }
        data = m.data;
        deletes = { sowKeys: undefined, filter: undefined, bookmarks: undefined, options: undefined };
      } else {
        this.#fail(s, m, 'invalid sow_delete: give sow_keys, a filter or a message', PROCESSED | PERSISTED);
        return;
      }
    }
    const publisher = clientSeq === undefined ? this.#unsequenced(s) : (s.publisher as PublisherLog);
    const seq = clientSeq ?? this.#nextUnsequenced(publisher);
    let deleted = 0;
    if (seq <= publisher.hw) {
      this.#counters.duplicatesDropped++;
    } else {
      const entry = this.#append(publisher, seq, this.env.now(), topic, data, sowKey, undefined, undefined, deletes);
      deleted = this.#apply(entry, NOT_PARSED, true);
    }
    // AMPS's sow_delete stats carry the command's `query_id` (amps-protocol.md §4.6, §5.3).
    const counts = { queryId: m.queryId, recordsDeleted: deleted, matches: deleted, topicMatches: 1 };
    this.#publishAcks(s, m, mask, publisher, seq, clientSeq, mask & STATS ? counts : undefined);
  }

  /** Returns leased messages to the queue (cancel), for leases this connection holds. */
  #cancelLeases(s: Session, queue: QueueTopic, bookmarks: string): void {
    for (const bookmark of splitList(bookmarks)) {
      const message = queue.messages.get(bookmark);
      if (!message?.holder || message.holder.session !== s) continue;
      message.holder.leased--;
      message.holder = undefined;
      this.#dirtyQueues.add(queue);
    }
  }

  #applyDelete(entry: LogEntry, deliver: boolean): number {
    const d = entry.deletes as DeleteSpec;
    const queue = this.#queues.get(entry.topic);
    if (d.bookmarks !== undefined) {
      if (!queue || d.options === 'cancel') return 0;
      let removed = 0;
      for (const bookmark of splitList(d.bookmarks)) {
        const message = queue.messages.get(bookmark);
        if (!message) {
          const ahead = this.#notLoggedYet(bookmark);
          if (ahead) queue.ackedAhead.add(ahead);
          continue;
        }
        if (message.holder) message.holder.leased--;
        queue.messages.delete(bookmark);
        removed++;
      }
      if (removed > 0) this.#dirtyQueues.add(queue);
      return removed;
    }
    const sow = this.#sow.get(entry.topic);
    if (!sow && queue && d.filter !== undefined) return this.#ackQueueByFilter(queue, d.filter);
    if (!sow) return 0;
    let victims: SowRecord[] = [];
    if (d.sowKeys !== undefined) {
      for (const key of splitList(d.sowKeys)) {
        const record = sow.records.get(key);
        if (record) victims.push(record);
      }
    } else if (d.filter !== undefined) {
      let filter: Filter;
      try {
        filter = compileFilter(d.filter);
      } catch {
        return 0;
      }
      victims = [...sow.records.values()].filter((r) => filter(r.json));
    } else if (entry.sowKey !== undefined) {
      const record = sow.records.get(entry.sowKey);
      if (record) victims.push(record);
    }
    for (const record of victims) {
      sow.records.delete(record.key);
      if (deliver) this.#oofRemoved(record, 'deleted');
    }
    return victims.length;
  }

  /**
   * The bookmark (as log entries spell it) of a message above its publisher's high-water mark, which
   * may still arrive by replication; undefined for one held already or gone for good, or not a bookmark.
   */
  #notLoggedYet(bookmark: string): string | undefined {
    const [publisher, seqText] = bookmark.split('|');
    const seq = Number(seqText);
    if (!publisher || !seqText || !Number.isSafeInteger(seq) || seq <= this.log.highWater(publisher)) return undefined;
    return bookmarkOf(publisher, seq);
  }

  /** Removes the queue messages a filter matches, leased ones too; returns how many. */
  #ackQueueByFilter(queue: QueueTopic, text: string): number {
    let filter: Filter;
    try {
      filter = compileFilter(text);
    } catch {
      return 0;
    }
    let removed = 0;
    for (const [bookmark, message] of queue.messages) {
      if (!filter(parseJson(message.entry.data))) continue;
      if (message.holder) message.holder.leased--;
      queue.messages.delete(bookmark);
      removed++;
    }
    if (removed > 0) this.#dirtyQueues.add(queue);
    return removed;
  }

  /* ---------------- SOW expiration ---------------- */

  #trackExpiry(record: SowRecord): void {
    this.#expiring.add(record);
    this.#armExpiry(record.expiresAt as number);
  }

  #armExpiry(at: number): void {
    if (at >= this.#expiryAt || !this.#running) return;
    this.timers.clear(this.#expiryTimer);
    this.#expiryAt = at;
    this.#expiryTimer = this.timers.set(() => {
      this.#expiryTimer = undefined;
      this.#expiryAt = Number.POSITIVE_INFINITY;
      this.#sweepExpired();
    }, at - this.env.now());
  }

  #sweepExpired(): void {
    const now = this.env.now();
    let next = Number.POSITIVE_INFINITY;
    for (const record of this.#expiring) {
      const sow = this.#sow.get(record.entry.topic);
      if (!sow || sow.records.get(record.key) !== record) {
        this.#expiring.delete(record);
      } else if ((record.expiresAt as number) <= now) {
        this.#expiring.delete(record);
        sow.records.delete(record.key);
        this.#oofRemoved(record, 'expired');
      } else {
        next = Math.min(next, record.expiresAt as number);
      }
    }
    if (Number.isFinite(next)) this.#armExpiry(next);
  }

  /* ---------------- queues ---------------- */

  #dispatchQueue(queue: QueueTopic): void {
    const consumers = queue.consumers;
    const n = consumers.length;
    if (n === 0) return;
    const now = this.env.now();
    for (const message of queue.messages.values()) {
      if (message.holder) continue;
      let chosen: Subscription | undefined;
      let capacity = false;
      let json: MaybeJson = NOT_PARSED;
      for (let i = 0; i < n; i++) {
        const consumer = consumers[(queue.next + i) % n] as Subscription;
        if (consumer.leased >= consumer.maxBacklog || !consumer.session.live) continue;
        capacity = true;
        if (consumer.filter) {
          if (json === NOT_PARSED) json = parseJson(message.entry.data);
          if (!consumer.filter(json)) continue;
        }
        chosen = consumer;
        queue.next = (queue.next + i + 1) % n;
        break;
      }
      if (!capacity) break;
      if (!chosen) continue;
      message.holder = chosen;
      message.expiresAt = now + queue.config.leaseMs;
      message.deliveries++;
      chosen.leased++;
      const entry = message.entry;
      chosen.session.send({
        command: 'publish',
        topic: entry.topic,
        subId: chosen.id,
        bookmark: entry.bookmark,
        correlationId: entry.correlationId,
        sowKey: chosen.noSowKey ? undefined : entry.sowKey,
        leasePeriod: ampsTimestamp(message.expiresAt),
        data: entry.data,
      });
      this.#counters.delivered++;
      this.#stats(entry.topic).delivered++;
      this.#markDirty(chosen.session);
      this.#armLease(queue, message.expiresAt);
    }
  }

  #armLease(queue: QueueTopic, at: number): void {
    if (at >= queue.timerAt) return;
    this.timers.clear(queue.timer);
    queue.timerAt = at;
    queue.timer = this.timers.set(() => {
      queue.timer = undefined;
      queue.timerAt = Number.POSITIVE_INFINITY;
      const now = this.env.now();
      let next = Number.POSITIVE_INFINITY;
      for (const message of queue.messages.values()) {
        if (!message.holder) continue;
        if (message.expiresAt <= now) {
          message.holder.leased--;
          message.holder = undefined;
        } else {
          next = Math.min(next, message.expiresAt);
        }
      }
      if (Number.isFinite(next)) this.#armLease(queue, next);
      this.#dirtyQueues.add(queue);
      this.scheduleFlush();
    }, at - this.env.now());
  }

  /* ---------------- unsubscribe, flush, heartbeat ---------------- */

  #unsubscribe(s: Session, m: Message): void {
    const mask = ackMask(m.ackType);
    if (mask & RECEIVED) this.#ack(s, m, 'received');
    const ids = [...splitList(m.subId), ...splitList(m.subIds), ...splitList(m.queryId)];
    // AMPS requires a sub_id (`all` for every subscription) or a query_id (amps-protocol.md §4.7).
    if (ids.length === 0) {
      this.#fail(s, m, 'invalid unsubscribe: no sub_id or query_id', PROCESSED);
      return;
    }
    if (ids.includes('all')) {
      for (const sub of [...s.subs.values()]) this.#removeSub(sub);
    } else {
      for (const id of ids) {
        const sub = s.subs.get(id);
        if (sub) this.#removeSub(sub);
      }
    }
    // AMPS: the unsubscribe ack carries no fields beyond the common ones (amps-protocol.md §4.7, §5.3).
    if (mask & PROCESSED) this.#ack(s, m, 'processed');
  }

  #flushCommand(s: Session, m: Message): void {
    const mask = ackMask(m.ackType);
    if (mask & RECEIVED) this.#ack(s, m, 'received');
    if (mask & PROCESSED) this.#ack(s, m, 'processed');
    if (mask & COMPLETED) this.#ack(s, m, 'completed');
    if (mask & PERSISTED) {
      const waits = [...s.lastSeqs.entries()];
      const pending: PendingAck = {
        publisher: s.publisher as PublisherLog,
        seq: 0,
        cid: m.commandId,
        clientSeq: undefined,
        flush: waits,
      };
      this.#persistedAck(s, pending);
    }
  }

  #heartbeatCommand(s: Session, m: Message): void {
    const mask = ackMask(m.ackType);
    if (mask & RECEIVED) this.#ack(s, m, 'received');
    const tokens = splitOptions(m.options);
    const command = tokens[0];
    if (command === 'start') {
      const requested = Number(tokens[1]);
      if (!(requested > 0)) {
        this.#fail(s, m, 'invalid heartbeat interval', PROCESSED);
        return;
      }
      const seconds = Math.min(this.#heartbeat.max, Math.max(this.#heartbeat.min, requested));
      s.heartbeatMs = seconds * 1000;
      s.lastReadAt = this.env.now();
      this.#armHeartbeat(s);
    } else if (command === 'stop') {
      s.heartbeatMs = 0;
      this.timers.clear(s.heartbeatTimer);
      s.heartbeatTimer = undefined;
    }
    if (mask & PROCESSED) this.#ack(s, m, 'processed');
  }

  #armHeartbeat(s: Session): void {
    this.timers.clear(s.heartbeatTimer);
    s.heartbeatTimer = undefined;
    if (s.heartbeatMs <= 0 || !s.live) return;
    const now = this.env.now();
    const timeoutAt = s.lastReadAt + s.heartbeatMs * this.#heartbeat.factor;
    const dueAt = Math.min(timeoutAt, s.lastWriteAt + s.heartbeatMs);
    s.heartbeatTimer = this.timers.set(() => this.#heartbeatCheck(s, dueAt), dueAt - now);
  }

  #heartbeatCheck(s: Session, dueAt: number): void {
    s.heartbeatTimer = undefined;
    if (!s.live || s.heartbeatMs <= 0) return;
    const now = this.env.now();
    // Run late, this process could do nothing meanwhile: neither could a client in it (a test's),
    // which a broker in its own process would have heard from. It gets one interval to answer.
    if (now - dueAt > s.heartbeatMs) s.lastReadAt = Math.max(s.lastReadAt, now - s.heartbeatMs);
    if (now - s.lastReadAt >= s.heartbeatMs * this.#heartbeat.factor) {
      this.logger?.info?.('closing connection: heartbeat timeout', { server: this.name, ...s.describe() });
      this.#close(s, 'heartbeat timeout');
      return;
    }
    if (now - s.lastWriteAt >= s.heartbeatMs) {
      s.send({ command: 'heartbeat' });
      // Counts as written now, even before the flush, so the next check is N from now.
      s.lastWriteAt = now;
      this.#markDirty(s);
    }
    this.#armHeartbeat(s);
  }

  /* ---------------- replication (receiving side) ---------------- */

  #replicated(s: Session, m: Message): void {
    if (m.command === 'heartbeat') return;
    const fields = entryFields(m);
    if (!fields) {
      this.logger?.warn?.('replication: ignoring a frame that is not a log entry', {
        server: this.name,
        ...s.describe(),
        command: m.command,
      });
      return;
    }
    const publisher = this.log.publisher(fields.publisher);
    s.replTouched.add(publisher);
    this.#replAckDue.add(s);
    this.scheduleFlush();
    if (fields.seq <= publisher.hw) {
      this.#counters.duplicatesDropped++;
      return;
    }
    this.#counters.replicated++;
    this.#ingest(publisher, fields, true);
  }

  /** Appends and applies an entry that came from a peer or the log file. */
  #ingest(publisher: PublisherLog, fields: EntryFields, deliver: boolean): void {
    let json: MaybeJson = NOT_PARSED;
    let sowKey = fields.sowKey;
    const sow = this.#sow.get(fields.topic);
    if (sow?.hasKeyFields && (!fields.deletes || fields.data.length > 0)) {
      json = parseJson(fields.data);
      sowKey = sow.keyOf(json, fields.sowKey) ?? fields.sowKey;
    }
    const entry = this.#append(
      publisher,
      fields.seq,
      fields.timestamp,
      fields.topic,
      fields.data,
      sowKey,
      fields.correlationId,
      fields.expiration,
      fields.deletes,
      deliver,
    );
    this.#apply(entry, fields.deletes ? NOT_PARSED : json, deliver);
  }

  #load(file: TxLogFile): void {
    let loaded = 0;
    const ignored = file.load((fields) => {
      const publisher = this.log.publisher(fields.publisher);
      if (fields.seq <= publisher.hw) return;
      this.#ingest(publisher, fields, false);
      loaded++;
    });
    this.#persistenceChanged = true;
    if (ignored > 0) {
      this.logger?.warn?.('txlog: ignored a damaged tail', { server: this.name, bytes: ignored, path: file.path });
    }
    this.logger?.info?.('txlog loaded', { server: this.name, entries: loaded, path: file.path });
  }

  /* ---------------- the per-tick flush ---------------- */

  #flush(): void {
    if (this.#frozen || !this.#running) return;
    let again = false;
    this.#file?.sync();
    for (const s of this.#replAckDue) {
      if (!s.live) continue;
      const marks: string[] = [];
      for (const p of s.replTouched) marks.push(bookmarkOf(p.id, p.hw));
      s.replTouched.clear();
      s.send({ command: 'ack', ackType: 'persisted', status: 'success', bookmark: marks.join(',') });
      this.#dirty.add(s);
    }
    this.#replAckDue.clear();
    if (this.#persistenceChanged) {
      this.#persistenceChanged = false;
      this.#advancePersistedPrefix();
      for (const s of this.#ackWaiters) this.#releaseAcks(s);
    }
    for (const link of this.#links) if (link.pump()) again = true;
    for (const sub of this.#replaying) if (this.#pumpReplay(sub)) again = true;
    for (const queue of this.#dirtyQueues) this.#dispatchQueue(queue);
    this.#dirtyQueues.clear();
    for (const s of this.#dirty) this.#flushOut(s);
    this.#dirty.clear();
    if (again) this.scheduleFlush();
  }

  #advancePersistedPrefix(): void {
    const entries = this.log.entries;
    let syncPeers = false;
    for (const link of this.#links) if (link.sync && !link.downgraded) syncPeers = true;
    if (!syncPeers) {
      this.#persistedPrefix = entries.length;
      return;
    }
    let p = this.#persistedPrefix;
    while (p < entries.length) {
      const entry = entries[p] as LogEntry;
      if (entry.seq > this.#persistedHighWater(this.log.publisher(entry.publisher))) break;
      p++;
    }
    this.#persistedPrefix = p;
  }

  #releaseAcks(s: Session): void {
    const pending = s.pending;
    let kept = 0;
    for (const p of pending) {
      if (this.#isPersisted(p)) this.#sendPersisted(s, p);
      else pending[kept++] = p;
    }
    pending.length = kept;
    if (kept === 0) this.#ackWaiters.delete(s);
  }

  #flushOut(s: Session): void {
    if (s.state === 'closed') return;
    if (s.closeTimer !== undefined) {
      // The broker has ended its side: output that came since (a delivery to one of the connection's
      // subscriptions, a persisted ack) is dropped. Written after the end, it would destroy the TCP
      // socket and turn the graceful close into a reset of what the client still sends.
      s.out.clear();
      return;
    }
    if (s.out.byteLength > 0) {
      s.wire.write(s.out.take());
      s.lastWriteAt = this.env.now();
      if (s.wire.buffered > this.#maxClientBuffer) {
        this.logger?.warn?.('closing connection: slow consumer', {
          server: this.name,
          ...s.describe(),
          buffered: s.wire.buffered,
        });
        this.#close(s, 'slow consumer');
        return;
      }
    }
    if (s.state === 'closing' && s.closeTimer === undefined) {
      s.wire.end(s.closeWith);
      // A client that never closes its side would hold the socket until the broker's close().
      s.closeTimer = this.timers.set(() => this.#close(s, 'close timeout'), this.#closeTimeoutMs);
    }
  }

  /* ---------------- closing ---------------- */

  #closeAfterFlush(s: Session): void {
    s.state = 'closing';
    this.#dirty.add(s);
    this.scheduleFlush();
  }

  #close(s: Session, reason?: string): void {
    if (s.state === 'closed') return;
    s.state = 'closed';
    this.#sessions.delete(s);
    for (const sub of [...s.subs.values()]) this.#removeSub(sub);
    if (s.clientName !== undefined) {
      const names = s.kind === 'replication' ? this.#replByName : this.#byName;
      if (names.get(s.clientName) === s) names.delete(s.clientName);
    }
    this.timers.clear(s.heartbeatTimer);
    this.timers.clear(s.conflationTimer);
    this.timers.clear(s.closeTimer);
    s.heartbeatTimer = undefined;
    s.conflationTimer = undefined;
    s.closeTimer = undefined;
    s.pending = [];
    this.#dirty.delete(s);
    this.#ackWaiters.delete(s);
    this.#replAckDue.delete(s);
    s.out.clear();
    s.wire.destroy();
    const why = reason ?? s.closeWith?.reason;
    this.logger?.debug?.('connection closed', {
      server: this.name,
      ...s.describe(),
      ...(why === undefined ? {} : { reason: why }),
    });
  }
}

/** A live delivery waiting to be merged with the connection's other deliveries of the same message. */
interface Delivery {
  readonly sub: Subscription;
  data: Uint8Array;
  readonly delta: boolean;
}

/** What one publish offers its subscribers: the body parsed and the delta computed at most once. */
class Offer {
  #json: MaybeJson;
  #delta: { data: Uint8Array; changed: number } | undefined | null = null;

  constructor(
    readonly entry: LogEntry,
    readonly change: SowChange | undefined,
    json: MaybeJson,
  ) {
    this.#json = json;
  }

  json(): unknown {
    if (this.#json === NOT_PARSED) this.#json = parseJson(this.entry.data);
    return this.#json;
  }

  delta(change: SowChange): { data: Uint8Array; changed: number } | undefined {
    if (this.#delta === null) {
      const d = deltaOf(change.sow, change.previous?.json, change.record.json);
      this.#delta = d ? { data: Buffer.from(JSON.stringify(d.delta)), changed: d.changed } : undefined;
    }
    return this.#delta;
  }
}

type OofReason = 'match' | 'deleted' | 'expired';

/** How a SOW query's result is ordered, cut and batched. */
interface QueryShape {
  readonly order: ((a: SowRecord, b: SowRecord) => number) | undefined;
  readonly batchSize: number;
  readonly topN: number | undefined;
  readonly skipN: number;
}

/**
 * Reads `orderby`, `bs`, `top_n` (header or option) and `skip_n` (option) of a sow or
 * sow_and_subscribe. A string is a failure reason. With `skip_n` (pagination, amps-protocol.md §10.3)
 * records are ordered by `orderby` then SowKey, or by SowKey alone, so that pages do not overlap.
 */
function queryShape(m: Message, options: Map<string, string | true>, subscription: boolean): QueryShape | string {
  let order: ((a: SowRecord, b: SowRecord) => number) | undefined;
  try {
    order = m.orderBy ? orderComparator(m.orderBy) : undefined;
  } catch {
    return 'invalid orderby';
  }
  const batchSize = m.batchSize ?? 1;
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 10_000) return 'invalid batch size';
  const topNOption = options.get('top_n');
  const topN = m.topN ?? (topNOption === undefined ? undefined : wholeNumber(topNOption));
  if (topN !== undefined && !(Number.isSafeInteger(topN) && topN >= 0)) return 'invalid top_n';
  const skipOption = options.get('skip_n');
  if (skipOption === undefined) return { order, batchSize, topN, skipN: 0 };
  const skipN = wholeNumber(skipOption);
  if (!(Number.isSafeInteger(skipN) && skipN >= 0)) return 'invalid skip_n';
  if (topN === undefined) return 'invalid skip_n: skip_n requires top_n';
  // top_n with skip_n on sow_and_subscribe makes a paginated subscription (amps-protocol.md §4.5).
  if (subscription) return 'invalid skip_n: paginated subscriptions are not supported by this broker';
  const byOrder = order;
  const paged = byOrder ? (a: SowRecord, b: SowRecord) => byOrder(a, b) || compareSowKeys(a, b) : compareSowKeys;
  return { order: paged, batchSize, topN, skipN };
}

/**
 * An option's value as a whole number written in decimal digits, else NaN: a bare option (`true`)
 * or an empty value is not 1 or 0, as `Number` would read them, nor is `0x10` or `1e3` a value.
 */
function wholeNumber(value: string | true): number {
  return typeof value === 'string' && /^\d+$/.test(value.trim()) ? Number(value) : Number.NaN;
}

/** The frame decoder's message for a frame above its `maxFrameSize`. */
const TOO_LARGE = /^frame of (\d+) bytes exceeds the maximum frame size/;

/** A WebSocket close reason holds at most 123 bytes of UTF-8. */
function closeReasonText(reason: string): string {
  if (Buffer.byteLength(reason) <= 123) return reason;
  let text = reason.slice(0, 120);
  while (Buffer.byteLength(`${text}...`) > 123) text = text.slice(0, -1);
  return `${text}...`;
}

/** A subscription topic is a regular expression when it holds regex characters (AMPS rule). */
function topicRegex(topic: string, literal: boolean): RegExp | undefined {
  if (literal || !/[.*+?^$[\](){}|\\]/.test(topic)) return undefined;
  return new RegExp(topic);
}

/** The backlog a queue consumer gets: what it asks for (`max_backlog`, default 1), at most the queue's. */
function grantedBacklog(queue: QueueTopic, options: Map<string, string | true>): number {
  const requested = Number(options.get('max_backlog') ?? 1);
  return Math.max(1, Math.min(queue.config.maxBacklog, Number.isFinite(requested) ? requested : 1));
}
