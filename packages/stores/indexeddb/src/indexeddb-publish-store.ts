import { type Command, checkEncodable, DurableStoreError } from '@amps-ts/core-protocol';
import { MemoryPublishStore, type MemoryPublishStoreOptions, type PublishStoreState } from '@amps-ts/ha-client';
import {
  type Batch,
  checkDatabaseOptions,
  type DatabaseOptions,
  openStoreDatabase,
  result,
  type StoreDatabase,
  Writer,
} from './database.js';

export interface IndexedDbPublishStoreOptions extends Omit<MemoryPublishStoreOptions, 'restore'>, DatabaseOptions {}

const WHAT = 'publish store';
/** Unpersisted commands by sequence. */
const COMMANDS = 'amps-ts-publish-commands';
/** One record, `state`: the last sequence given and the last persisted. */
const STATE = 'amps-ts-publish-state';

/** A change to the commands, in the order it happened. */
type Change = { put: Command } | { persistedUpTo: number } | { refused: number };

interface Waiting {
  command: Command;
  resolve(sequence: number): void;
  reject(error: Error): void;
}

/**
 * A {@link MemoryPublishStore} that also keeps its contents in an IndexedDB database, so that
 * publishes not yet persisted by a server survive a reload of the page, or a crash of the tab
 * or the browser: a store opened on the same database takes them back, with their sequences,
 * and the HAClient replays them after its logon. The client name must stay the same across
 * reloads: the server tracks sequences per client name.
 *
 * `publish` resolves once the message is in the database. Writes are transactions started as
 * soon as something changes (in a microtask), one at a time: publishes made while one commits
 * share the next. A publish before the first logon waits for it, since that logon may give it
 * another sequence: it is written, and resolves, with the sequence it goes out with.
 *
 * Open it with `IndexedDbPublishStore.open(name)`. One store per database across the site's
 * tabs (a Web Lock).
 */
export class IndexedDbPublishStore extends MemoryPublishStore {
  /** The database's name. */
  readonly name: string;
  readonly #writer: Writer;
  /** Publishes made before the first logon, stored once it gives them their sequences; undefined after it. */
  #beforeLogon: Waiting[] | undefined = [];
  #changes: Change[] = [];
  /** Stored publishes whose write has not started, resolved when it has committed (or failed). */
  #unwritten: Array<{ command: Command; resolve(sequence: number): void }> = [];
  /** Write every unpersisted command again, on emptied stores: after a failed write. */
  #rewrite = false;

  /**
   * Opens the database `name` (created if new) and takes back what an earlier page left
   * unpersisted. Rejects with a `DurableStoreError` if IndexedDB is missing or refuses, the
   * database is another kind's or damaged, or another store has it open (with `waitForLock`, it
   * waits for that one to close; an `AbortError` if `signal` ends the wait).
   */
  static async open(name: string, options: IndexedDbPublishStoreOptions = {}): Promise<IndexedDbPublishStore> {
    checkDatabaseOptions(name, options);
    const database = await openStoreDatabase(name, WHAT, [COMMANDS, STATE], options);
    try {
      return new IndexedDbPublishStore(database, { ...options, restore: await readState(database) });
    } catch (error) {
      database.close();
      throw error;
    }
  }

  /** Use {@link IndexedDbPublishStore.open}. */
  private constructor(database: StoreDatabase, options: MemoryPublishStoreOptions & DatabaseOptions) {
    super(options);
    this.name = database.name;
    this.#writer = new Writer(database, [COMMANDS, STATE], options, () => this.#take());
  }

  override store(command: Command): Promise<number> {
    this.#writer.checkOpen(WHAT);
    if (!this.#beforeLogon) return this.#keep(command);
    const waiting = this.#beforeLogon;
    return new Promise((resolve, reject) => waiting.push({ command, resolve, reject }));
  }

  /** Stores `command` (waiting for room if full), then resolves once it is written. */
  async #keep(command: Command): Promise<number> {
    const stored = super.store(command);
    if (typeof stored !== 'number') await stored;
    this.#changes.push({ put: command });
    const written = new Promise<number>((resolve) => this.#unwritten.push({ command, resolve }));
    this.#writer.changed();
    return written;
  }

  override syncWithServer(sequence: number): void {
    super.syncWithServer(sequence);
    const waiting = this.#beforeLogon;
    if (!waiting) return;
    // Stored now, above what the server holds for this name: the replay after this sends them.
    this.#beforeLogon = undefined;
    for (const { command, resolve, reject } of waiting) this.#keep(command).then(resolve, reject);
  }

  override discardUpTo(sequence: number): void {
    const before = this.lastPersisted();
    super.discardUpTo(sequence);
    if (this.lastPersisted() === before) return;
    this.#changes.push({ persistedUpTo: this.lastPersisted() });
    this.#writer.changed();
  }

  override discard(sequence: number): void {
    super.discard(sequence);
    this.#changes.push({ refused: sequence });
    this.#writer.changed();
  }

  /** Those waiting for the first logon count: `flush` waits for them too. */
  override unpersistedCount(): number {
    return super.unpersistedCount() + (this.#beforeLogon?.length ?? 0);
  }

  /** Rejects publishes waiting for the first logon (they were never stored), besides what the memory store rejects. */
  override cancelWaits(error: Error): void {
    super.cancelWaits(error);
    for (const waiting of this.#beforeLogon?.splice(0) ?? []) waiting.reject(error);
  }

  /** Resolves once everything stored so far is written (or its write failed: see `onWriteError`). */
  whenWritten(): Promise<void> {
    return this.#writer.settled();
  }

  /**
   * Writes what is pending, then closes the database and releases its lock. Publishes still
   * waiting for the first logon fail with a `DurableStoreError`. The store cannot store after
   * this. Idempotent.
   */
  close(): Promise<void> {
    const closing = this.#writer.close();
    // Publishes waiting for room, and flushes: the first logon has nothing to do with them.
    super.cancelWaits(new DurableStoreError(`the ${WHAT} "${this.name}" was closed`));
    const early = new DurableStoreError(`the ${WHAT} "${this.name}" was closed before the first logon`);
    for (const waiting of this.#beforeLogon?.splice(0) ?? []) waiting.reject(early);
    return closing;
  }

  #take(): Batch {
    const rewrite = this.#rewrite;
    this.#rewrite = false;
    const changes = this.#changes;
    this.#changes = [];
    const unwritten = this.#unwritten;
    this.#unwritten = [];
    const state = { lastSequence: this.nextSequence() - 1, lastPersisted: this.lastPersisted() };
    const puts: Command[] = [];
    if (rewrite) this.replay((command) => puts.push(record(command)));
    return {
      apply(transaction) {
        const commands = transaction.objectStore(COMMANDS);
        if (rewrite) {
          commands.clear();
          for (const command of puts) commands.put(command, command.sequence);
        } else {
          for (const change of changes) {
            if ('put' in change) commands.put(record(change.put), change.put.sequence);
            else if ('refused' in change) commands.delete(change.refused);
            else commands.delete(IDBKeyRange.upperBound(change.persistedUpTo));
          }
        }
        transaction.objectStore(STATE).put(state, 'state');
      },
      done: (error) => {
        // Kept in memory and sent all the same: only surviving a reload waits for the rewrite.
        if (error) this.#rewrite = true;
        for (const { command, resolve } of unwritten) resolve(command.sequence as number);
      },
    };
  }
}

/** What the database keeps of a command: `commandId` is this connection's, and means nothing to the next page. */
function record(command: Command): Command {
  const { commandId: _, ...kept } = command;
  return kept;
}

/** What the database holds: the unpersisted commands, the last sequence given, the last persisted. */
async function readState(database: StoreDatabase): Promise<PublishStoreState> {
  const transaction = database.db.transaction([COMMANDS, STATE], 'readonly');
  const doing = `reading the ${WHAT} "${database.name}"`;
  const state = (await result(transaction.objectStore(STATE).get('state'), doing)) as
    | Partial<Omit<PublishStoreState, 'commands'>>
    | undefined;
  const lastPersisted = state?.lastPersisted ?? 0;
  const damaged = (what: string) => new DurableStoreError(`the ${WHAT} "${database.name}" is damaged: ${what}`);
  const sequence = (n: unknown) => Number.isSafeInteger(n) && (n as number) >= 0;
  if (!sequence(lastPersisted) || !sequence(state?.lastSequence ?? 0)) {
    throw damaged('its state record holds no sequences');
  }
  const unpersisted = IDBKeyRange.lowerBound(lastPersisted, true);
  const commandStore = transaction.objectStore(COMMANDS);
  const [keys, commands] = (await Promise.all([
    result(commandStore.getAllKeys(unpersisted), doing),
    result(commandStore.getAll(unpersisted), doing),
  ])) as [IDBValidKey[], Command[]];
  let lastSequence = Math.max(state?.lastSequence ?? 0, lastPersisted);
  for (const [i, command] of commands.entries()) {
    const data = command?.data;
    // Kept under its sequence: the key orders the replay, the field goes on the wire.
    // A key that is no sequence (a string, a fraction) would fail the memory store's restore with
    // an InvalidOptionsError about options the caller never passed.
    if (typeof command !== 'object' || command === null || !sequence(keys[i]) || command.sequence !== keys[i]) {
      throw damaged(`the record under ${String(keys[i])} is not the command with that sequence`);
    }
    if (data !== undefined && typeof data !== 'string' && !(data instanceof Uint8Array)) {
      throw damaged(`command ${command.sequence} has a body that is neither text nor bytes`);
    }
    try {
      // Kept, a record the encoder refuses would fail the replay of every logon.
      checkEncodable(command);
    } catch (error) {
      throw damaged(`command ${command.sequence} cannot be sent (${(error as Error).message})`);
    }
    lastSequence = Math.max(lastSequence, command.sequence as number);
  }
  return { commands, lastSequence, lastPersisted };
}
