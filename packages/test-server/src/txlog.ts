/**
 * The transaction log: every publish and sow_delete this instance accepted, from clients or peers,
 * in the order it accepted them. Each entry is named by its publisher identity (publisher id,
 * sequence). Invariant: each publisher's entries are in sequence order, so a publisher's high-water
 * mark says exactly which of its messages the log holds.
 */
import { closeSync, ftruncateSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { type Command, decodeFrame, FrameDecoder, FrameEncoder, type Message } from '@amps-ts/core-protocol';
import { bookmarkOf } from './util.js';

/** What a sow_delete removes: one of keys, filter, body (`data`) or queue bookmarks. */
export interface DeleteSpec {
  readonly sowKeys: string | undefined;
  readonly filter: string | undefined;
  /** Queue acknowledgement: the bookmarks acknowledged. */
  readonly bookmarks: string | undefined;
  /** `cancel` or `expire` for queue acknowledgements. */
  readonly options: string | undefined;
}

export class LogEntry {
  #bookmark: string | undefined = undefined;

  constructor(
    readonly position: number,
    readonly publisher: string,
    readonly seq: number,
    /** Epoch ms when this instance (or the first instance, for replicated entries) accepted it. */
    readonly timestamp: number,
    readonly topic: string,
    /** The body; for a delta publish, the merged record. */
    readonly data: Uint8Array,
    /** The SOW key (derived from the key fields, or given by the publisher). */
    readonly sowKey: string | undefined,
    readonly correlationId: string | undefined,
    /** SOW lifetime in seconds. */
    readonly expiration: number | undefined,
    /** Set for a sow_delete; undefined for a publish. */
    readonly deletes: DeleteSpec | undefined,
  ) {}

  get bookmark(): string {
    if (this.#bookmark === undefined) this.#bookmark = bookmarkOf(this.publisher, this.seq);
    return this.#bookmark;
  }
}

/** One publisher's entries: sequences and their log positions, both ascending. */
export class PublisherLog {
  hw = 0;
  readonly seqs: number[] = [];
  readonly positions: number[] = [];
  constructor(readonly id: string) {}

  /** Index into `seqs` of the first sequence greater than `seq`. */
  indexAbove(seq: number): number {
    const seqs = this.seqs;
    let lo = 0;
    let hi = seqs.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((seqs[mid] as number) <= seq) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** The log position of exactly `seq`, or -1. */
  positionOf(seq: number): number {
    const i = this.indexAbove(seq) - 1;
    return i >= 0 && this.seqs[i] === seq ? (this.positions[i] as number) : -1;
  }

  /** How many entries have a sequence above `seq`. */
  countAbove(seq: number): number {
    return this.seqs.length - this.indexAbove(seq);
  }
}

export class TxLog {
  readonly entries: LogEntry[] = [];
  readonly publishers = new Map<string, PublisherLog>();

  get length(): number {
    return this.entries.length;
  }

  publisher(id: string): PublisherLog {
    let log = this.publishers.get(id);
    if (!log) {
      log = new PublisherLog(id);
      this.publishers.set(id, log);
    }
    return log;
  }

  highWater(id: string): number {
    return this.publishers.get(id)?.hw ?? 0;
  }

  /** Appends an entry; the caller has checked that `seq` is above the publisher's high-water mark. */
  append(
    publisher: PublisherLog,
    seq: number,
    timestamp: number,
    topic: string,
    data: Uint8Array,
    sowKey: string | undefined,
    correlationId: string | undefined,
    expiration: number | undefined,
    deletes: DeleteSpec | undefined,
  ): LogEntry {
    const position = this.entries.length;
    const entry = new LogEntry(
      position,
      publisher.id,
      seq,
      timestamp,
      topic,
      data,
      sowKey,
      correlationId,
      expiration,
      deletes,
    );
    this.entries.push(entry);
    publisher.hw = seq;
    publisher.seqs.push(seq);
    publisher.positions.push(position);
    return entry;
  }

  /** The log position of a message, or -1 when this log does not hold it. */
  find(publisher: string, seq: number): number {
    return this.publishers.get(publisher)?.positionOf(seq) ?? -1;
  }

  /**
   * The first position holding a message above the given per-publisher marks: where a peer that
   * holds exactly those marks must start reading.
   */
  firstPositionAbove(marks: ReadonlyMap<string, number>): number {
    let first = this.entries.length;
    for (const [id, log] of this.publishers) {
      const i = log.indexAbove(marks.get(id) ?? 0);
      if (i < log.positions.length) first = Math.min(first, log.positions[i] as number);
    }
    return first;
  }

  /** Every publisher's high-water mark as a bookmark list (`id|hw|,...`). */
  highWaterList(): string {
    const parts: string[] = [];
    for (const log of this.publishers.values()) if (log.hw > 0) parts.push(bookmarkOf(log.id, log.hw));
    return parts.join(',');
  }
}

/* ---------- entries on the wire (replication) and on disk: the same AMPS frames ---------- */

/** The command that carries an entry between instances and into the log file. */
export function entryCommand(entry: LogEntry): Command {
  const d = entry.deletes;
  return {
    command: d ? 'sow_delete' : 'publish',
    topic: entry.topic,
    sequence: entry.seq,
    bookmark: d?.bookmarks,
    correlationId: entry.correlationId,
    expiration: entry.expiration,
    sowKey: entry.sowKey,
    sowKeys: d?.sowKeys,
    filter: d?.filter,
    options: d?.options,
    timestamp: String(entry.timestamp),
    data: entry.data,
    headers: { pub: entry.publisher },
  };
}

/** The fields of an entry read back from its command; undefined when the frame is not one. */
export interface EntryFields {
  publisher: string;
  seq: number;
  timestamp: number;
  topic: string;
  data: Uint8Array;
  sowKey: string | undefined;
  correlationId: string | undefined;
  expiration: number | undefined;
  deletes: DeleteSpec | undefined;
}

/** The largest epoch ms a `Date` holds. */
const MAX_DATE_MS = 8.64e15;

export function entryFields(message: Message): EntryFields | undefined {
  const publisher = message.extra?.pub;
  const seq = message.sequence;
  if (typeof publisher !== 'string' || !/^\d+$/.test(publisher)) return undefined;
  if (seq === undefined || !message.topic) return undefined;
  const isDelete = message.command === 'sow_delete';
  if (!isDelete && message.command !== 'publish') return undefined;
  const timestamp = Number(message.timestamp);
  return {
    publisher,
    seq,
    // Only a time a Date can hold: `ts` headers and timestamp bookmarks are formatted from it.
    timestamp: Number.isFinite(timestamp) && Math.abs(timestamp) <= MAX_DATE_MS ? timestamp : Date.now(),
    topic: message.topic,
    data: message.data,
    sowKey: message.sowKey,
    correlationId: message.correlationId,
    expiration: message.expiration,
    deletes: isDelete
      ? {
          sowKeys: message.sowKeys,
          filter: message.filter,
          bookmarks: message.bookmark,
          options: message.options,
        }
      : undefined,
  };
}

/**
 * The log file in the data directory: the entries as AMPS frames, appended once per tick.
 * A partial frame at the end (a crash mid-write) is cut off when the file is loaded.
 */
export class TxLogFile {
  readonly path: string;
  readonly #encoder = new FrameEncoder(64 * 1024);
  #fd: number | undefined;

  constructor(dir: string) {
    mkdirSync(dir, { recursive: true });
    this.path = join(dir, 'txlog.amps');
    this.#fd = openSync(this.path, 'a+');
  }

  /** Reads every entry in the file, in order. Returns the number of bytes ignored at the end. */
  load(onEntry: (fields: EntryFields) => void): number {
    const bytes = readFileSync(this.path);
    const frames = new FrameDecoder({ maxFrameSize: 0x7fffffff });
    let good = 0;
    let offset = 0;
    try {
      frames.push(bytes, (frame) => {
        offset += frame.length + 4;
        decodeFrame(frame, (message) => {
          const fields = entryFields(message);
          if (!fields) throw new Error('not a log entry');
          onEntry(fields);
        });
        good = offset;
      });
    } catch {
      // A damaged frame: keep what came before it.
    }
    const ignored = bytes.length - good;
    if (ignored > 0 && this.#fd !== undefined) ftruncateSync(this.#fd, good);
    return ignored;
  }

  append(entry: LogEntry): void {
    this.#encoder.write(entryCommand(entry));
  }

  get hasPending(): boolean {
    return this.#encoder.byteLength > 0;
  }

  /** Writes what was appended since the last call. */
  sync(): void {
    if (this.#fd === undefined || this.#encoder.byteLength === 0) return;
    const bytes = this.#encoder.take();
    let at = 0;
    while (at < bytes.length) at += writeSync(this.#fd, bytes, at, bytes.length - at);
  }

  close(): void {
    if (this.#fd === undefined) return;
    this.sync();
    closeSync(this.#fd);
    this.#fd = undefined;
  }
}
