/** One accepted connection, its subscriptions, and the queues they consume. */
import { type Command, FrameEncoder, type TimerHandle } from '@amps-ts/core-protocol';
import type { Filter } from './filter.js';
import type { ResolvedQueue } from './options.js';
import type { LogEntry, PublisherLog } from './txlog.js';
import type { CloseReason, Wire } from './wire.js';

/** A persisted ack waiting until its message is persisted (locally and on every sync peer). */
export interface PendingAck {
  readonly publisher: PublisherLog;
  readonly seq: number;
  readonly cid: string | undefined;
  /** The client's `s`, echoed in the ack (absent for broker-sequenced publishes). */
  readonly clientSeq: number | undefined;
  /** For a flush: every (publisher, sequence) it waits for. */
  readonly flush?: ReadonlyArray<readonly [PublisherLog, number]>;
}

export class Session {
  static #nextId = 1;
  readonly id = Session.#nextId++;
  readonly out = new FrameEncoder(16 * 1024);
  state: 'connected' | 'logged-on' | 'closing' | 'closed' = 'connected';
  kind: 'client' | 'replication' = 'client';
  clientName: string | undefined = undefined;
  userId: string | undefined = undefined;
  /** The publisher stream of this client name (sequenced publishes). */
  publisher: PublisherLog | undefined = undefined;
  /** The broker-sequenced stream for this client's publishes without `s`. */
  unsequenced: PublisherLog | undefined = undefined;
  /** The challenge token sent with a `retry` logon ack. */
  challenge: { token: string; user: string | undefined } | undefined = undefined;
  readonly subs = new Map<string, Subscription>();
  pending: PendingAck[] = [];
  /** The last sequence this connection published per stream (what a persisted flush waits for). */
  readonly lastSeqs = new Map<PublisherLog, number>();
  conflationMs = 0;
  conflatedMax = 0;
  conflatedSent = 0;
  conflationTimer: TimerHandle | undefined = undefined;
  /** Replication connections: publishers touched since the last ack to the peer. */
  readonly replTouched = new Set<PublisherLog>();
  lastReadAt: number;
  lastWriteAt: number;
  heartbeatMs = 0;
  heartbeatTimer: TimerHandle | undefined = undefined;
  /** Set once the broker has ended its side: destroys the connection if the client never closes. */
  closeTimer: TimerHandle | undefined = undefined;
  /** Why the broker is ending this connection: its WebSocket close code and reason, and the log's. */
  closeWith: CloseReason | undefined = undefined;
  wire!: Wire;

  constructor(now: number) {
    this.lastReadAt = now;
    this.lastWriteAt = now;
  }

  get live(): boolean {
    return this.state === 'connected' || this.state === 'logged-on';
  }

  send(command: Command): void {
    this.out.write(command);
  }

  describe(): Record<string, unknown> {
    return {
      connection: this.id,
      transport: this.wire.kind,
      remote: this.wire.remote,
      ...(this.clientName === undefined ? {} : { clientName: this.clientName }),
    };
  }
}

export class Subscription {
  topic = '';
  regex: RegExp | undefined = undefined;
  filter: Filter | undefined = undefined;
  filterText: string | undefined = undefined;
  delta = false;
  oof = false;
  /** Put `bm` on deliveries (bookmark subscriptions, or the `bookmark` option). */
  withBookmark = false;
  timestamp = false;
  noSowKey = false;
  noEmpties = false;

  /** Bookmark subscriptions follow the log with a cursor while they replay. */
  bookmarkSub = false;
  caughtUp = true;
  /** Paused (the `pause` option): out of the replay and of live delivery until resumed. */
  paused = false;
  cursor = 0;
  replayEnd = 0;
  completedCid: string | undefined = undefined;
  completedPending = false;
  fullyDurable = false;
  wantsPersisted = false;
  lastPersistedPosition = 0;
  /** A bookmark range (`[a:b]`): delivery stops for good at its end. */
  range: RangeStop | undefined = undefined;

  queue: QueueTopic | undefined = undefined;
  maxBacklog = 1;
  leased = 0;

  constructor(
    readonly session: Session,
    readonly id: string,
  ) {}

  matchesTopic(topic: string): boolean {
    return this.regex ? this.regex.test(topic) : this.topic === topic;
  }

  /** The log position this subscription has reached. */
  position(logLength: number): number {
    return this.caughtUp && !this.fullyDurable ? logLength : this.cursor;
  }
}

/**
 * One end of a bookmark range. `at` is the first log position past it: Infinity until the log (or
 * the clock, for a timestamp) tells where that is.
 */
export type RangeEnd =
  | { readonly kind: 'position'; at: number }
  | { readonly kind: 'bookmark'; at: number; readonly publisher: string; readonly seq: number }
  | {
      readonly kind: 'time';
      at: number;
      /** Entries with a timestamp (epoch ms) at or above this are past the end; so is the clock. */
      readonly pastFrom: number;
      /** How many log entries were looked at for one past the end. */
      scanned: number;
      timer: TimerHandle | undefined;
    };

/** Where a range subscription stops: the latest of its ends (`]` includes an end, `)` stops before it). */
export class RangeStop {
  constructor(
    readonly inclusive: boolean,
    readonly ends: RangeEnd[],
  ) {}
}

export class QueueMessage {
  holder: Subscription | undefined = undefined;
  expiresAt = 0;
  deliveries = 0;
  constructor(readonly entry: LogEntry) {}
}

export class QueueTopic {
  /** Messages not yet acknowledged, by bookmark, in log order. */
  readonly messages = new Map<string, QueueMessage>();
  /**
   * Bookmarks acknowledged before this instance held the message (the ack came by another route,
   * e.g. from a consumer that failed over): the message is not queued when it arrives.
   */
  readonly ackedAhead = new Set<string>();
  readonly consumers: Subscription[] = [];
  next = 0;
  timer: TimerHandle | undefined = undefined;
  timerAt = Number.POSITIVE_INFINITY;
  constructor(readonly config: ResolvedQueue) {}

  get leased(): number {
    let n = 0;
    for (const m of this.messages.values()) if (m.holder) n++;
    return n;
  }
}
