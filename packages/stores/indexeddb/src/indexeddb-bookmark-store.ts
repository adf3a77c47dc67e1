import { DurableStoreError } from '@amps-ts/core-protocol';
import { MemoryBookmarkStore, type MemoryBookmarkStoreOptions, resumeRecoveryPoint } from '@amps-ts/ha-client';
import {
  type Batch,
  checkDatabaseOptions,
  type DatabaseOptions,
  openStoreDatabase,
  result,
  type StoreDatabase,
  Writer,
} from './database.js';

export interface IndexedDbBookmarkStoreOptions extends MemoryBookmarkStoreOptions, DatabaseOptions {}

const WHAT = 'bookmark store';
/** Recovery points by subscription id. */
const POINTS = 'amps-ts-bookmark-points';

/**
 * A {@link MemoryBookmarkStore} that also keeps each subscription's recovery point in an
 * IndexedDB database, so that bookmark subscriptions resume where their processing got to after
 * the page reloads, or the tab or the browser crashes: a store opened on the same database starts
 * each subscription at its recovery point, and drops as duplicates the messages at or before each
 * publisher's position in it. Subscribe with `Bookmarks.MOST_RECENT` and the same `subId` to
 * resume.
 *
 * Points are written in a transaction started as soon as they move (in a microtask), one
 * transaction at a time: what the last unfinished one held, and what was processed after it,
 * comes again after a crash. Nothing is skipped: a point moves only over processed (discarded)
 * messages.
 *
 * Open it with `IndexedDbBookmarkStore.open(name)`. One store per database across the site's
 * tabs (a Web Lock).
 */
export class IndexedDbBookmarkStore extends MemoryBookmarkStore {
  /** The database's name. */
  readonly name: string;
  readonly #writer: Writer;
  /** The recovery point the database holds (once the writes under way commit), by subscription. */
  readonly #written = new Map<string, string>();
  /** Subscriptions whose recovery point may have moved since it was written. */
  readonly #dirty = new Set<string>();
  /** Write every point again, on an emptied store: after a failed write, or a purge of all. */
  #rewrite = false;

  /**
   * Opens the database `name` (created if new) and takes back the recovery point of every
   * subscription in it. Rejects with a `DurableStoreError` if IndexedDB is missing or refuses,
   * the database is another kind's, or another store has it open (with `waitForLock`, it waits
   * for that one to close; an `AbortError` if `signal` ends the wait).
   */
  static async open(name: string, options: IndexedDbBookmarkStoreOptions = {}): Promise<IndexedDbBookmarkStore> {
    checkDatabaseOptions(name, options);
    const database = await openStoreDatabase(name, WHAT, [POINTS], options);
    try {
      return new IndexedDbBookmarkStore(database, await readPoints(database), options);
    } catch (error) {
      database.close();
      throw error;
    }
  }

  /** Use {@link IndexedDbBookmarkStore.open}. */
  private constructor(database: StoreDatabase, points: Map<string, string>, options: IndexedDbBookmarkStoreOptions) {
    super(options);
    this.name = database.name;
    this.#writer = new Writer(database, [POINTS], options, () => this.#take());
    for (const [subId, point] of points) {
      if (resumeRecoveryPoint(this, subId, point)) this.#written.set(subId, this.getMostRecent(subId) as string);
    }
  }

  override log(subId: string, bookmark: string): boolean {
    const fresh = super.log(subId, bookmark);
    if (fresh) this.#changed(subId); // the first message places a NOW subscription
    return fresh;
  }

  override discard(subId: string, bookmark: string): void {
    super.discard(subId, bookmark);
    this.#changed(subId);
  }

  override persisted(subId: string, bookmark: string, ageMs?: number): void {
    super.persisted(subId, bookmark, ageMs);
    this.#changed(subId);
  }

  override purge(subId?: string): void {
    super.purge(subId);
    if (subId !== undefined) {
      this.#changed(subId);
    } else {
      this.#rewrite = true;
      this.#writer.changed();
    }
  }

  /** Resolves once every recovery point so far is written (or its write failed: see `onWriteError`). */
  whenWritten(): Promise<void> {
    return this.#writer.settled();
  }

  /** Writes what is pending, then closes the database and releases its lock. Idempotent. */
  close(): Promise<void> {
    return this.#writer.close();
  }

  #changed(subId: string): void {
    this.#dirty.add(subId);
    this.#writer.changed();
  }

  #take(): Batch {
    const rewrite = this.#rewrite;
    this.#rewrite = false;
    const subIds = rewrite ? new Set([...this.#written.keys(), ...this.#dirty]) : [...this.#dirty];
    this.#dirty.clear();
    if (rewrite) this.#written.clear();
    const changes: Array<[subId: string, point: string | undefined]> = [];
    for (const subId of subIds) {
      const point = this.getMostRecent(subId);
      if (point === this.#written.get(subId)) continue;
      changes.push([subId, point]);
      if (point === undefined) this.#written.delete(subId);
      else this.#written.set(subId, point);
    }
    return {
      apply(transaction) {
        const points = transaction.objectStore(POINTS);
        if (rewrite) points.clear();
        for (const [subId, point] of changes) {
          if (point === undefined) points.delete(subId);
          else points.put(point, subId);
        }
      },
      done: (error) => {
        // The database holds older points, or none: a reload replays more, never less.
        if (error) this.#rewrite = true;
      },
    };
  }
}

/** Each subscription's recovery point in the database. */
async function readPoints(database: StoreDatabase): Promise<Map<string, string>> {
  const points = database.db.transaction(POINTS, 'readonly').objectStore(POINTS);
  const doing = `reading the ${WHAT} "${database.name}"`;
  const [keys, values] = await Promise.all([result(points.getAllKeys(), doing), result(points.getAll(), doing)]);
  const read = new Map<string, string>();
  keys.forEach((key, i) => {
    const point = values[i];
    if (typeof key !== 'string' || typeof point !== 'string') {
      throw new DurableStoreError(`the ${WHAT} "${database.name}" holds a record that is not a recovery point`);
    }
    read.set(key, point);
  });
  return read;
}
