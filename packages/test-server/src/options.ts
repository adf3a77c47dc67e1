import { type Environment, InvalidOptionsError, type Logger } from '@amps-ts/core-protocol';

/** A State-of-the-World topic: the latest message per key. */
export interface SowTopicOptions {
  /** The topic name (literal). */
  topic: string;
  /**
   * Key fields as paths into the JSON body (`/id`, `/order/region`). Their values make the SOW key.
   * Without key fields, each publish must carry its key in the `k` header.
   */
  key?: string | readonly string[];
}

/** A queue: messages published to `topic` are leased to one consumer at a time until acknowledged. */
export interface QueueOptions {
  /** The queue's topic: publishers publish to it, consumers subscribe to it. */
  topic: string;
  /** How long a lease lasts before the message goes back to the queue, in ms. @default 30000 */
  leaseMs?: number;
  /** The most unacknowledged messages one subscription may hold (AMPS `MaxPerSubscriptionBacklog`). @default 10 */
  maxBacklog?: number;
}

/** Logon authentication. Without it every logon succeeds. */
export interface AuthOptions {
  /** Accepted users and their passwords. */
  users: Readonly<Record<string, string>>;
  /**
   * Challenge mode: a logon with a valid password is answered `status: "retry"` with a one-time token
   * in `pw`; the client must log on again sending that token as its password.
   * @default false
   */
  challenge?: boolean;
}

/** A replication destination this instance sends its transaction log to. */
export interface PeerOptions {
  /** The peer's TCP (AMPS protocol) port. */
  port: number;
  /** @default '127.0.0.1' */
  host?: string;
  /** A name for stats and logs. @default `host:port` */
  name?: string;
  /**
   * `sync`: a publisher's persisted ack waits until this peer holds the message (even while the peer
   * is down). `async`: never delays acks.
   * @default 'sync'
   */
  mode?: 'sync' | 'async';
}

/** Limits for client-requested heartbeats (`heartbeat` with `opts=start,N`). */
export interface HeartbeatOptions {
  /** Smallest interval accepted, in seconds; smaller requests are raised to it. @default 0.01 */
  minIntervalS?: number;
  /** Largest interval accepted, in seconds; larger requests are lowered to it. @default 3600 */
  maxIntervalS?: number;
  /** A client silent for `timeoutFactor * N` seconds is disconnected. @default 2 */
  timeoutFactor?: number;
}

export interface TestServerOptions {
  /** The instance name: in logs, stats and broker-assigned publisher ids. @default 'amps-test-server-<pid>-<n>' */
  name?: string;
  /** The address to listen on. @default '127.0.0.1' */
  host?: string;
  /** TCP port for the AMPS protocol; 0 picks a free port (kept across `restart()`). @default 0 */
  tcpPort?: number;
  /** WebSocket port; 0 picks a free port, `false` disables WebSocket. @default 0 */
  wsPort?: number | false;
  /** Directory for the transaction log file. Without it everything is kept in memory only. */
  dataDir?: string;
  /** SOW topics and their key fields. */
  sowTopics?: ReadonlyArray<SowTopicOptions>;
  /** Queue topics. A string is a queue with default settings. */
  queues?: ReadonlyArray<string | QueueOptions>;
  /** Logon authentication. @default none: every logon succeeds */
  auth?: AuthOptions;
  /** Replication destinations. Peers whose ports are known only later can be added with `addPeer()`. */
  peers?: ReadonlyArray<PeerOptions>;
  /**
   * Conflate persisted acks for sequenced publishes: every interval, one ack without `cid` whose `s`
   * covers every earlier sequence. 0 sends one persisted ack per publish, with its `cid`. A client can
   * choose its own interval with the logon option `ack_conflation=<interval>`. The default is AMPS's,
   * which conflates them whenever there is a transaction log: an application waiting for the ack of
   * one publish by its `cid` would wait forever against AMPS.
   * @default 1000
   */
  ackConflationMs?: number;
  /** Interval of the `persisted` acks on bookmark subscriptions that request them, in ms. @default 1000 */
  persistedAckIntervalMs?: number;
  /** Heartbeat limits. */
  heartbeat?: HeartbeatOptions;
  /** Largest frame accepted from a client, in bytes; a larger one closes that connection. @default 16 MiB */
  maxFrameBytes?: number;
  /** A client whose unsent output exceeds this many bytes is disconnected (slow consumer). @default 256 MiB */
  maxClientBufferBytes?: number;
  /**
   * After the broker ends a connection (a refused logon, a command before logon), how long it waits
   * for the client to close its side before destroying the socket, in ms. A client that never closes
   * would otherwise hold the socket, and a place in `stats().connections.current`, until `close()`.
   * @default 2000
   */
  closeTimeoutMs?: number;
  /** Delay between attempts to connect a replication link to a peer that is down, in ms. @default 50 */
  peerReconnectMs?: number;
  /**
   * Opt-in: a sync peer disconnected for longer than this (ms) stops delaying persisted acks until it is
   * back and caught up. 0 never downgrades (strict sync).
   * @default 0
   */
  syncDowngradeMs?: number;
  /**
   * WebSocket output: `one` sends each frame as its own WebSocket message (as DESIGN.md prescribes for
   * senders); `batch` sends every frame of a tick in one message, to exercise a client's stream reassembly.
   * @default 'one'
   */
  wsFrames?: 'one' | 'batch';
  /** Version reported in logon acks. @default '5.3.5.0.amps-ts-test-server' */
  version?: string;
  /** Where log lines go; nothing is logged without one. */
  logger?: Logger;
  /**
   * Clock and timers (heartbeats, leases, conflation, reconnects); tests inject a manual clock. Its
   * `now()` stamps the transaction log, so it is wall-clock time. @default the wall clock and real timers
   */
  environment?: Environment;
}

export interface ResolvedSowTopic {
  topic: string;
  keyPaths: readonly string[];
}

export interface ResolvedQueue {
  topic: string;
  leaseMs: number;
  maxBacklog: number;
}

export interface ResolvedPeer {
  port: number;
  host: string;
  name: string;
  sync: boolean;
}

export function resolvePeer(peer: PeerOptions): ResolvedPeer {
  if (!Number.isInteger(peer.port) || peer.port <= 0 || peer.port > 65535) {
    throw new InvalidOptionsError(`peer port must be 1..65535, got ${peer.port}`);
  }
  if (peer.mode !== undefined && peer.mode !== 'sync' && peer.mode !== 'async') {
    throw new InvalidOptionsError(`peer mode must be 'sync' or 'async', got '${String(peer.mode)}'`);
  }
  const host = peer.host ?? '127.0.0.1';
  return { port: peer.port, host, name: peer.name ?? `${host}:${peer.port}`, sync: peer.mode !== 'async' };
}

export function resolveSowTopic(sow: SowTopicOptions): ResolvedSowTopic {
  if (!sow.topic) throw new InvalidOptionsError('a SOW topic needs a topic name');
  const keys = sow.key === undefined ? [] : typeof sow.key === 'string' ? [sow.key] : [...sow.key];
  for (const key of keys) {
    if (!/^(\/[^/\s]+)+$/.test(key)) throw new InvalidOptionsError(`SOW key '${key}' must be a path like /id or /a/b`);
  }
  return { topic: sow.topic, keyPaths: keys };
}

/** The longest queue lease: 100 years, in ms. */
const MAX_LEASE_MS = 100 * 365.25 * 86_400_000;

export function resolveQueue(queue: string | QueueOptions): ResolvedQueue {
  const q = typeof queue === 'string' ? { topic: queue } : queue;
  if (!q.topic) throw new InvalidOptionsError('a queue needs a topic name');
  const leaseMs = q.leaseMs ?? 30_000;
  const maxBacklog = q.maxBacklog ?? 10;
  // Finite and bounded: a lease's expiry is sent as a time (`lp`), which Infinity, or a time past
  // what a Date holds, does not have (the first delivery threw from the broker's flush).
  if (!(leaseMs > 0 && leaseMs <= MAX_LEASE_MS)) {
    throw new InvalidOptionsError(`queue ${q.topic}: leaseMs must be positive and at most 100 years, got ${leaseMs}`);
  }
  if (!Number.isInteger(maxBacklog) || maxBacklog < 1) {
    throw new InvalidOptionsError(`queue ${q.topic}: maxBacklog must be a positive integer`);
  }
  return { topic: q.topic, leaseMs, maxBacklog };
}

const units: Record<string, number> = { ns: 1e-6, us: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * Parses an AMPS interval (`100ms`, `1s`, `2m`) into milliseconds. A bare number is seconds, as in
 * heartbeat intervals. Returns `undefined` for text that is not an interval.
 */
export function parseInterval(text: string): number | undefined {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ns|us|ms|s|m|h|d)?\s*$/i.exec(text);
  if (!match) return undefined;
  const unit = (match[2] ?? 's').toLowerCase();
  return Number(match[1]) * (units[unit] as number);
}
