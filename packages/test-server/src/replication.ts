/**
 * Outbound replication: this instance connects to a peer's AMPS port as a client, logs on with the
 * `replication` option, learns from the logon ack which messages the peer holds (its high-water mark
 * per publisher, as a bookmark list in `bm`), then sends every log entry above those marks in log
 * order, and live entries as they are logged. The peer answers with persisted acks whose `bm` lists
 * its new high-water marks. Everything in the log is sent, including what came from other peers
 * (passthrough); receivers drop what they already hold.
 */
import { connect, type Socket } from 'node:net';
import { FrameEncoder, type Logger, type Message, MessageDecoder, type TimerHandle } from '@amps-ts/core-protocol';
import type { ResolvedPeer } from './options.js';
import type { Timers } from './timers.js';
import { entryCommand, type TxLog } from './txlog.js';

/** What a link needs from its broker. */
export interface LinkHost {
  readonly name: string;
  readonly version: string;
  readonly log: TxLog;
  readonly timers: Timers;
  readonly logger: Logger | undefined;
  readonly reconnectMs: number;
  readonly downgradeMs: number;
  readonly frozen: boolean;
  /** What the peer holds changed: persisted acks may be due. */
  linkChanged(): void;
  scheduleFlush(): void;
}

const HIGH_WATER_BYTES = 4 * 1024 * 1024;
const ENTRIES_PER_PUMP = 20_000;

/** The logon option that marks a replication connection. */
export const REPLICATION_OPTION = 'replication';

export function parseMarks(list: string | undefined, into: Map<string, number>, keepMax: boolean): void {
  if (!list) return;
  for (const item of list.split(',')) {
    const [id, seqText] = item.split('|');
    const seq = Number(seqText);
    if (!id || !seqText || !Number.isFinite(seq)) continue;
    if (!keepMax || seq > (into.get(id) ?? 0)) into.set(id, seq);
  }
}

export class PeerLink {
  /** What the peer holds: its high-water mark per publisher, from its last logon ack and the acks since. */
  readonly acked = new Map<string, number>();
  /** What has been sent on the current connection, per publisher. */
  readonly #sent = new Map<string, number>();
  #cursor = 0;
  #socket: Socket | undefined = undefined;
  readonly #out = new FrameEncoder(64 * 1024);
  #state: 'stopped' | 'connecting' | 'logon' | 'streaming' = 'stopped';
  #retryTimer: TimerHandle | undefined = undefined;
  #downgradeTimer: TimerHandle | undefined = undefined;
  /** A sync peer down for longer than `downgradeMs` stops delaying acks until it has caught up. */
  downgraded = false;
  sentEntries = 0;
  connects = 0;

  constructor(
    readonly host: LinkHost,
    readonly peer: ResolvedPeer,
  ) {}

  get sync(): boolean {
    return this.peer.sync;
  }

  get connected(): boolean {
    return this.#state === 'streaming';
  }

  start(): void {
    if (this.#state !== 'stopped') return;
    this.#state = 'connecting';
    this.#armDowngrade();
    this.#connect();
  }

  /** Destroys the connection and stops reconnecting; what the peer holds stays known. */
  stop(): void {
    this.#state = 'stopped';
    this.host.timers.clear(this.#retryTimer);
    this.host.timers.clear(this.#downgradeTimer);
    this.#retryTimer = undefined;
    this.#downgradeTimer = undefined;
    this.#socket?.destroy();
    this.#socket = undefined;
    this.#out.clear();
  }

  pause(): void {
    this.#socket?.pause();
  }

  resume(): void {
    this.#socket?.resume();
  }

  /** Entries in the local log the peer is not known to hold. */
  lag(): number {
    let lag = 0;
    for (const [id, log] of this.host.log.publishers) lag += log.countAbove(this.acked.get(id) ?? 0);
    return lag;
  }

  /** Sends log entries the peer lacks. Returns true when more remain and the socket can take them. */
  pump(): boolean {
    const socket = this.#socket;
    if (this.#state !== 'streaming' || !socket || this.host.frozen) return false;
    const entries = this.host.log.entries;
    let budget = ENTRIES_PER_PUMP;
    while (this.#cursor < entries.length && budget-- > 0 && socket.writableLength < HIGH_WATER_BYTES) {
      const entry = entries[this.#cursor++]!;
      if (entry.seq <= (this.#sent.get(entry.publisher) ?? 0)) continue;
      this.#sent.set(entry.publisher, entry.seq);
      this.#out.write(entryCommand(entry));
      this.sentEntries++;
      if (this.#out.byteLength > 256 * 1024) socket.write(this.#out.take());
    }
    if (this.#out.byteLength > 0) socket.write(this.#out.take());
    return this.#cursor < entries.length && socket.writableLength < HIGH_WATER_BYTES;
  }

  #connect(): void {
    const socket = connect({ host: this.peer.host, port: this.peer.port });
    this.#socket = socket;
    socket.setNoDelay(true);
    const decoder = new MessageDecoder((message) => this.#onMessage(message));
    socket.on('connect', () => {
      if (this.#socket !== socket) return;
      this.#state = 'logon';
      const out = new FrameEncoder(256);
      out.write({
        command: 'logon',
        commandId: '1',
        clientName: this.host.name,
        ackType: 'processed',
        options: REPLICATION_OPTION,
        version: this.host.version,
      });
      socket.write(out.take());
    });
    socket.on('data', (chunk) => {
      if (this.#socket !== socket) return;
      try {
        decoder.push(chunk);
      } catch (error) {
        this.host.logger?.warn?.('replication link: bad data from peer, reconnecting', {
          server: this.host.name,
          peer: this.peer.name,
          error: String(error),
        });
        socket.destroy();
      }
    });
    socket.on('drain', () => this.host.scheduleFlush());
    socket.on('error', () => {});
    socket.on('close', () => {
      if (this.#socket !== socket) return;
      this.#socket = undefined;
      this.#out.clear();
      if (this.#state === 'stopped') return;
      if (this.#state === 'streaming') {
        this.host.logger?.info?.('replication link down', { server: this.host.name, peer: this.peer.name });
      }
      this.#state = 'connecting';
      this.#armDowngrade();
      this.#retryTimer = this.host.timers.set(() => {
        this.#retryTimer = undefined;
        if (this.#state === 'connecting') this.#connect();
      }, this.host.reconnectMs);
    });
  }

  #onMessage(message: Message): void {
    if (message.command !== 'ack') return;
    if (this.#state === 'logon' && message.ackType === 'processed') {
      if (message.status !== 'success') {
        this.host.logger?.warn?.('replication logon refused', {
          server: this.host.name,
          peer: this.peer.name,
          reason: message.reason,
        });
        this.#socket?.destroy();
        return;
      }
      // The logon ack lists everything the peer holds now: a peer that came back without its data
      // holds less than it acked before, and counting the old marks would hide its lag.
      this.#sent.clear();
      parseMarks(message.bookmark, this.#sent, false);
      this.acked.clear();
      parseMarks(message.bookmark, this.acked, false);
      this.#cursor = this.host.log.firstPositionAbove(this.#sent);
      this.#state = 'streaming';
      this.connects++;
      this.host.timers.clear(this.#downgradeTimer);
      this.#downgradeTimer = undefined;
      this.host.logger?.info?.('replication link up', {
        server: this.host.name,
        peer: this.peer.name,
        catchUp: this.host.log.length - this.#cursor,
      });
      this.#checkCaughtUp();
      this.host.linkChanged();
      return;
    }
    if (this.#state === 'streaming' && message.ackType === 'persisted') {
      parseMarks(message.bookmark, this.acked, true);
      this.#checkCaughtUp();
      this.host.linkChanged();
    }
  }

  #armDowngrade(): void {
    if (!this.sync || this.host.downgradeMs <= 0 || this.downgraded || this.#downgradeTimer !== undefined) return;
    this.#downgradeTimer = this.host.timers.set(() => {
      this.#downgradeTimer = undefined;
      if (this.#state === 'streaming') return;
      this.downgraded = true;
      this.host.logger?.warn?.('sync replication downgraded: peer down too long', {
        server: this.host.name,
        peer: this.peer.name,
      });
      this.host.linkChanged();
    }, this.host.downgradeMs);
  }

  #checkCaughtUp(): void {
    if (!this.downgraded) return;
    for (const [id, log] of this.host.log.publishers) if ((this.acked.get(id) ?? 0) < log.hw) return;
    this.downgraded = false;
    this.host.logger?.info?.('sync replication restored', { server: this.host.name, peer: this.peer.name });
  }
}
