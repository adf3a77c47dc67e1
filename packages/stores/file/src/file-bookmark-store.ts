import { MemoryBookmarkStore, type MemoryBookmarkStoreOptions, resumeRecoveryPoint } from '@amps-ts/ha-client';
import { Journal } from './journal.js';
import { booleanOption, pathOption } from './options.js';

export interface FileBookmarkStoreOptions extends MemoryBookmarkStoreOptions {
  /** Flush every write to the disk (`fsync`): survives a power loss or an operating-system crash too. @default false */
  fsync?: boolean;
  /**
   * Write a subscription's recovery point in every `discard` that moves it, before it returns:
   * after a crash, a subscription whose messages are processed in order gets none of them again.
   * Otherwise the points are written once per event-loop turn, and a crash can bring back the
   * messages processed in the turn it cut short. @default false
   */
  writeThrough?: boolean;
}

const BOOKMARK_MAGIC = 'AMPSBS01';
const KIND_POINT = 0x52; // R: a subscription's recovery point
const KIND_PURGED = 0x55; // U: a subscription forgotten
const KIND_PURGED_ALL = 0x41; // A: every subscription forgotten

/**
 * A {@link MemoryBookmarkStore} that also keeps each subscription's recovery point in a file, so
 * that bookmark subscriptions resume where their processing got to after a restart of this
 * process: a new store on the same file starts each subscription at its recovery point, and
 * drops as duplicates the messages at or before each publisher's position in it. Subscribe
 * with `Bookmarks.MOST_RECENT` and the same `subId` to resume.
 *
 * What survives is the recovery point: it moves only over processed (discarded) messages, so
 * nothing is skipped. A message processed out of order, ahead of one not processed yet when the
 * process ended, comes again.
 *
 * Node.js only; one store per file (a lock folder beside it, as for `FilePublishStore`).
 */
export class FileBookmarkStore extends MemoryBookmarkStore {
  /** The store's file. */
  readonly path: string;
  readonly #journal: Journal;
  readonly #writeThrough: boolean;
  /** The recovery point the file holds, by subscription. */
  readonly #written = new Map<string, string>();
  /** Subscriptions whose recovery point may have moved since it was written. */
  readonly #dirty = new Set<string>();
  #scheduled: ReturnType<typeof setImmediate> | undefined;
  /**
   * A write failed and none has succeeded since: the file may hold a subscription the store has
   * forgotten (a failed purge), which a restart would bring back. Made good at the next write, or at close.
   */
  #owed = false;

  /**
   * Opens the store's file, creating it if it does not exist, and takes back the recovery point
   * of every subscription in it. Throws a `DurableStoreError` if the file cannot be read, written or
   * locked, is not a bookmark store's, or is damaged before its end.
   */
  constructor(path: string, options: FileBookmarkStoreOptions = {}) {
    const writeThrough = booleanOption(options.writeThrough, 'writeThrough');
    const journal = new Journal({
      path: pathOption(path),
      magic: BOOKMARK_MAGIC,
      what: 'bookmark store',
      fsync: booleanOption(options.fsync, 'fsync'),
    });
    let points: Map<string, string>;
    try {
      points = readPoints(journal);
      super(options);
      journal.open();
    } catch (error) {
      journal.close(); // a damaged file, or a bad option
      throw error;
    }
    this.path = path;
    this.#journal = journal;
    this.#writeThrough = writeThrough;
    for (const [subId, point] of points) {
      if (resumeRecoveryPoint(this, subId, point)) this.#written.set(subId, this.getMostRecent(subId) as string);
    }
    journal.live = () => [...this.#written].map(([subId, point]) => pointRecord(subId, point));
  }

  override log(subId: string, bookmark: string): boolean {
    const fresh = super.log(subId, bookmark);
    if (fresh) this.#changed(subId); // the first message places a NOW subscription
    return fresh;
  }

  override discard(subId: string, bookmark: string): void {
    super.discard(subId, bookmark);
    if (this.#writeThrough) this.#write(subId);
    else this.#changed(subId);
  }

  override persisted(subId: string, bookmark: string, ageMs?: number): void {
    super.persisted(subId, bookmark, ageMs);
    this.#changed(subId);
  }

  override purge(subId?: string): void {
    super.purge(subId);
    if (subId === undefined) {
      this.#dirty.clear();
      this.#written.clear();
      this.#append(Buffer.of(KIND_PURGED_ALL));
    } else {
      this.#write(subId);
    }
  }

  /** Writes every recovery point that moved, now. Runs by itself once per event-loop turn. */
  flush(): void {
    if (this.#scheduled !== undefined) clearImmediate(this.#scheduled);
    this.#scheduled = undefined;
    for (const subId of this.#dirty) this.#write(subId);
    if (this.#journal.oversized) this.#rewrite();
  }

  /** Writes what is pending and closes the file, releasing its lock. Idempotent. */
  close(): void {
    if (this.#journal.closed) return;
    this.flush();
    if (this.#owed) this.#rewrite();
    this.#journal.close();
  }

  #changed(subId: string): void {
    this.#dirty.add(subId);
    if (this.#scheduled === undefined && !this.#journal.closed) {
      this.#scheduled = setImmediate(() => this.flush());
      this.#scheduled.unref?.();
    }
  }

  #write(subId: string): void {
    this.#dirty.delete(subId);
    const point = this.getMostRecent(subId);
    if (point === this.#written.get(subId)) return;
    if (point === undefined) {
      this.#written.delete(subId);
      this.#append(Buffer.concat([Buffer.of(KIND_PURGED), Buffer.from(subId)]));
    } else {
      this.#written.set(subId, point);
      this.#append(pointRecord(subId, point));
    }
  }

  /**
   * A failed write loses nothing: the file then holds older recovery points (a restart replays
   * more, and drops nothing it has not processed), and the next write (or close) rewrites it whole
   * first. A failed purge leaves the forgotten point in the file until then.
   */
  #append(record: Buffer): void {
    if (this.#journal.closed) return;
    try {
      this.#journal.append(record);
      this.#owed = false; // after a failure, the append rewrote the file whole first
    } catch {
      // See above.
      this.#owed = true;
    }
  }

  #rewrite(): void {
    try {
      this.#journal.rewrite();
      this.#owed = false;
    } catch {
      // The next write tries again.
    }
  }
}

function pointRecord(subId: string, point: string): Buffer {
  const id = Buffer.from(subId);
  const record = Buffer.allocUnsafe(5 + id.length + Buffer.byteLength(point));
  record[0] = KIND_POINT;
  record.writeUInt32BE(id.length, 1);
  record.set(id, 5);
  record.write(point, 5 + id.length);
  return record;
}

/** Each subscription's last recovery point in the file. */
function readPoints(journal: Journal): Map<string, string> {
  const points = new Map<string, string>();
  for (const payload of journal.read()) {
    const kind = payload[0];
    if (kind === KIND_POINT && payload.length >= 5 && 5 + payload.readUInt32BE(1) < payload.length) {
      const idEnd = 5 + payload.readUInt32BE(1);
      points.set(payload.toString('utf8', 5, idEnd), payload.toString('utf8', idEnd));
    } else if (kind === KIND_PURGED) {
      points.delete(payload.toString('utf8', 1));
    } else if (kind === KIND_PURGED_ALL && payload.length === 1) {
      points.clear();
    } else {
      throw journal.damaged('a record of an unknown kind');
    }
  }
  return points;
}
