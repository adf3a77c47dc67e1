/** Opening a store's IndexedDB database (with its lock), and writing to it one transaction at a time. */
import { AbortError, DurableStoreError, InvalidOptionsError, signalOption } from '@amps-ts/core-protocol';

/** What both stores take besides their memory store's options. */
export interface DatabaseOptions {
  /**
   * The durability hint each write transaction gets: `strict` waits until the data is flushed
   * to disk (survives a power loss or an operating-system crash too; slower), `relaxed` until
   * the browser has it (survives the page, the tab and the browser crashing). @default the browser's
   */
  durability?: 'default' | 'strict' | 'relaxed';
  /**
   * Called when a write fails (the storage quota, the user clearing the site's data). Nothing
   * is lost while the page lives: the store goes on in memory and writes its whole state at the
   * next change. Only surviving a reload is at stake until a write succeeds.
   */
  onWriteError?: (error: DurableStoreError) => void;
  /**
   * When another store has the database open (in another tab): `false` makes `open` fail at once
   * with a `DurableStoreError`; `true` makes it wait until that store closes or its page goes, so
   * that of several tabs, one takes over when the one using the database goes. @default false
   */
  waitForLock?: boolean;
  /**
   * Ends `open`'s wait for the lock, or for the database while a deletion or upgrade of it
   * elsewhere is blocked (by a connection that stays open): it then rejects with an `AbortError`.
   */
  signal?: AbortSignal;
}

export interface StoreDatabase {
  readonly name: string;
  readonly db: IDBDatabase;
  /** Why the database was closed under the store, if it was. */
  lost: string | undefined;
  /** Told when it is. */
  onLost: ((why: string) => void) | undefined;
  /** Closes the database and releases its lock. Idempotent. */
  close(): void;
}

/** `request`'s result, or its error as a `DurableStoreError`. */
export function result<T>(request: IDBRequest<T>, doing: string): Promise<T> {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(storeError(doing, request.error));
  });
}

export function storeError(doing: string, cause: unknown): DurableStoreError {
  const reason = cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause);
  return new DurableStoreError(`${doing} failed (${reason})`, { cause });
}

export function checkDatabaseOptions(name: unknown, options: DatabaseOptions): void {
  if (typeof name !== 'string' || name === '') {
    throw new InvalidOptionsError(`the database name must be a non-empty string, got ${String(name)}`);
  }
  const { durability, onWriteError } = options;
  if (durability !== undefined && durability !== 'default' && durability !== 'strict' && durability !== 'relaxed') {
    throw new InvalidOptionsError(`durability must be 'default', 'strict' or 'relaxed', got ${String(durability)}`);
  }
  if (onWriteError !== undefined && typeof onWriteError !== 'function') {
    throw new InvalidOptionsError('onWriteError must be a function');
  }
  if (options.waitForLock !== undefined && typeof options.waitForLock !== 'boolean') {
    throw new InvalidOptionsError(`waitForLock must be a boolean, got ${String(options.waitForLock)}`);
  }
  signalOption(options.signal);
}

/**
 * Opens (creating it if new) the database `name` for a store that keeps `objectStores` in it,
 * after taking its lock: one store per database across every tab, window and worker of the
 * site (Web Locks; where the browser has none, an insecure page, there is no lock).
 */
export async function openStoreDatabase(
  name: string,
  what: string,
  objectStores: string[],
  options: DatabaseOptions,
): Promise<StoreDatabase> {
  const factory = (globalThis as { indexedDB?: IDBFactory }).indexedDB;
  if (!factory)
    throw new DurableStoreError(`IndexedDB is not available here, so the ${what} "${name}" cannot be opened`);
  const release = await lock(name, what, options);
  let db: IDBDatabase;
  try {
    const request = factory.open(name, 1);
    request.onupgradeneeded = (event) => {
      // Only a new database (version 0) is upgraded: a foreign one at version 1 is refused below.
      if (event.oldVersion === 0) for (const store of objectStores) request.result.createObjectStore(store);
    };
    db = await opened(request, name, what, options.signal);
  } catch (error) {
    release();
    throw error;
  }
  if (!objectStores.every((store) => db.objectStoreNames.contains(store))) {
    db.close();
    release();
    throw new DurableStoreError(`the database "${name}" is not a ${what}'s (it has other object stores)`);
  }
  let closed = false;
  const database: StoreDatabase = {
    name,
    db,
    lost: undefined,
    onLost: undefined,
    close() {
      if (closed) return;
      closed = true;
      db.close();
      release();
    },
  };
  const lost = (why: string) => {
    database.lost = why;
    database.onLost?.(why);
  };
  // The browser closes it when the user clears the site's data.
  db.onclose = () => lost('was closed by the browser (its data cleared?)');
  // Another tab deleting or upgrading the database waits for this one to close: do not block it.
  db.onversionchange = () => {
    db.close();
    lost('is being deleted or upgraded elsewhere');
  };
  return database;
}

/**
 * The database `request` opens. The request waits, firing nothing, behind a deletion or upgrade
 * of the database elsewhere that a connection staying open blocks: `signal` ends that wait (the
 * lock is released by the caller).
 */
function opened(
  request: IDBOpenDBRequest,
  name: string,
  what: string,
  signal: AbortSignal | undefined,
): Promise<IDBDatabase> {
  const opening = result(request, `opening the ${what} "${name}"`);
  if (!signal) return opening;
  return new Promise((resolve, reject) => {
    let settled = false;
    const onAbort = () => {
      if (settled) return;
      settled = true;
      reject(
        new AbortError(
          `opening the ${what} "${name}" was aborted while it waited for a deletion or upgrade of the database elsewhere`,
          { cause: signal.reason },
        ),
      );
      // Opened after all: let it go at once.
      opening.then(
        (db) => db.close(),
        () => {},
      );
    };
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    const settle = () => {
      const first = !settled;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      return first;
    };
    opening.then(
      (db) => settle() && resolve(db),
      (error: unknown) => settle() && reject(error),
    );
  });
}

/** Holds the Web Lock for `name` (waiting for it, if asked to) until the returned function is called. */
async function lock(name: string, what: string, { waitForLock, signal }: DatabaseOptions): Promise<() => void> {
  const locks = (globalThis as { navigator?: { locks?: LockManager } }).navigator?.locks;
  if (!locks) return () => {};
  const aborted = () =>
    new AbortError(`opening the ${what} "${name}" was aborted while another store had it open`, {
      cause: signal?.reason,
    });
  if (signal?.aborted) throw aborted();
  const held = await new Promise<(() => void) | undefined>((resolve, reject) => {
    // Rejected here, not only by the request: Chromium can lose a request aborted at once while
    // another tab holds the lock, and its promise then never settles.
    const onAbort = () => reject(aborted());
    signal?.addEventListener('abort', onAbort, { once: true });
    locks
      .request(`@amps-ts/store-indexeddb:${name}`, waitForLock ? { signal } : { ifAvailable: true }, (lock) => {
        signal?.removeEventListener('abort', onAbort);
        if (!lock) return resolve(undefined);
        if (signal?.aborted) return; // granted after all: let it go at once
        // The lock is held until this promise settles.
        return new Promise<void>((release) => resolve(() => release()));
      })
      .catch((error: unknown) =>
        reject(signal?.aborted ? aborted() : storeError(`locking the ${what} "${name}"`, error)),
      );
  });
  if (!held) {
    throw new DurableStoreError(
      `the ${what} "${name}" is in use by another store (in another tab, window or worker of this site, or in this page: close() it first, or open with waitForLock)`,
    );
  }
  return held;
}

/** One write's changes, taken from a store when its transaction starts. */
export interface Batch {
  /** Puts the changes into the transaction. */
  apply(transaction: IDBTransaction): void;
  /** The transaction committed, or (`error`) nothing of it was written. */
  done(error?: DurableStoreError): void;
}

/**
 * Writes a store's changes, one transaction at a time and with no timer: a change schedules a
 * write in a microtask, and changes made while a write commits go in the next one. Under load
 * transactions grow rather than queue up, and a hidden tab (whose timers the browser slows)
 * writes as fast as a visible one.
 */
export class Writer {
  readonly #database: StoreDatabase;
  readonly #objectStores: string[];
  readonly #options: DatabaseOptions;
  readonly #take: () => Batch;
  #pending = false;
  #committing: Promise<void> | undefined;
  #lost: DurableStoreError | undefined;
  #closing: Promise<void> | undefined;
  /** The database is closed: changes stay in memory. */
  #shut = false;
  /** The last write failed (the database was not lost): the database misses what it held until one succeeds. */
  #owed = false;

  constructor(database: StoreDatabase, objectStores: string[], options: DatabaseOptions, take: () => Batch) {
    this.#database = database;
    this.#objectStores = objectStores;
    this.#options = options;
    this.#take = take;
    database.onLost = (why) => {
      this.#lost = new DurableStoreError(`the database "${database.name}" ${why}: the store goes on in memory only`);
      this.#report(this.#lost);
    };
    if (database.lost !== undefined) database.onLost(database.lost); // while the store was reading it
  }

  /** Throws a `DurableStoreError` once the store is closed. */
  checkOpen(what: string): void {
    if (this.#closing) throw new DurableStoreError(`the ${what} "${this.#database.name}" is closed`);
  }

  /** Writes what changed, then closes the database and releases its lock. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.#writeAndClose();
    return this.#closing;
  }

  async #writeAndClose(): Promise<void> {
    await this.settled();
    // The last write failed and nothing changed since: without one more try, what it held (and
    // the store resolved) would be missing from the database for the next page.
    if (this.#owed && !this.#lost) this.#pending = true;
    // And what changed while that settled (a persisted ack as the page closes the store).
    await this.settled();
    this.#shut = true;
    this.#database.close();
  }

  /** Something changed: write it soon. */
  changed(): void {
    if (this.#pending || this.#shut) return;
    this.#pending = true;
    if (!this.#committing) queueMicrotask(() => this.#start());
  }

  /** Resolves once every change made so far is written (or its write failed, which was reported). */
  async settled(): Promise<void> {
    while (this.#pending || this.#committing) {
      if (!this.#committing) this.#start();
      await this.#committing;
    }
  }

  #start(): void {
    if (!this.#pending || this.#committing) return;
    this.#pending = false;
    // Closed since this write was scheduled: the change stays in memory, as later ones do.
    if (this.#shut) return;
    this.#owed = false;
    const batch = this.#take();
    const doing = `writing to the database "${this.#database.name}"`;
    this.#committing = new Promise<void>((resolve) => {
      let finished = false;
      const finish = (error?: DurableStoreError) => {
        if (finished) return;
        finished = true;
        if (error && error !== this.#lost) {
          this.#owed = true;
          this.#report(error);
        }
        batch.done(error);
        resolve();
      };
      if (this.#lost) return finish(this.#lost);
      let transaction: IDBTransaction | undefined;
      try {
        transaction = this.#database.db.transaction(this.#objectStores, 'readwrite', {
          durability: this.#options.durability ?? 'default',
        });
        transaction.oncomplete = () => finish();
        transaction.onabort = () => finish(storeError(doing, transaction?.error ?? 'the transaction was aborted'));
        batch.apply(transaction);
      } catch (error) {
        // Closed (by another tab deleting the database), or a value the database cannot hold.
        try {
          transaction?.abort();
        } catch {
          // Already finished.
        }
        finish(storeError(doing, error));
      }
    }).then(() => {
      this.#committing = undefined;
      if (this.#pending) this.#start();
    });
  }

  #report(error: DurableStoreError): void {
    try {
      this.#options.onWriteError?.(error);
    } catch {
      // The application's handler: its error must not stop the store.
    }
  }
}
