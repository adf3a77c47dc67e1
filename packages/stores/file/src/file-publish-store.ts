import type { Command } from '@amps-ts/core-protocol';
import { MemoryPublishStore, type MemoryPublishStoreOptions, type PublishStoreState } from '@amps-ts/ha-client';
import { Journal } from './journal.js';
import { booleanOption, pathOption } from './options.js';
import { decodePublishRecord, encodePublishRecord, PUBLISH_MAGIC, type PublishRecord } from './publish-records.js';

export interface FilePublishStoreOptions extends Omit<MemoryPublishStoreOptions, 'restore'> {
  /**
   * Flush every write to the disk (`fsync`) before going on: the store then survives a power
   * loss or an operating-system crash too, at the cost of a disk round trip per publish. Without
   * it every write still reaches the operating system before the publish is sent, which is what
   * surviving a crash of this process needs. @default false
   */
  fsync?: boolean;
}

/**
 * A {@link MemoryPublishStore} that also keeps its contents in a file, so that publishes not yet
 * persisted by a server survive a restart of this process: a new store on the same file takes
 * them back, with their sequences, and the HAClient replays them after its logon. Each publish is
 * written to the file before it is sent. The client name must stay the same across restarts:
 * the server tracks sequences per client name.
 *
 * Node.js only. One store at a time may use a file: a lock file beside it (`<path>.lock`, holding
 * the process id) keeps a second one out, and a lock left by a process that ended is taken over.
 */
export class FilePublishStore extends MemoryPublishStore {
  /** The store's file. */
  readonly path: string;
  readonly #journal: Journal;
  #rewriteAtFirstSync = true;

  /**
   * Opens the store's file, creating it if it does not exist, and takes back what an earlier
   * run left unpersisted. Throws a `DurableStoreError` if the file cannot be read, written or
   * locked, is not a publish store's, or is damaged before its end (a record half written by a
   * crash at its very end is dropped).
   */
  constructor(path: string, options: FilePublishStoreOptions = {}) {
    const journal = new Journal({
      path: pathOption(path),
      magic: PUBLISH_MAGIC,
      what: 'publish store',
      fsync: booleanOption(options.fsync, 'fsync'),
    });
    try {
      super({ ...options, restore: restore(journal) });
      journal.open();
    } catch (error) {
      journal.close(); // a damaged file, or a bad option
      throw error;
    }
    this.path = path;
    this.#journal = journal;
    journal.live = () => {
      const records = [
        encodePublishRecord({ kind: 'lastSequence', sequence: this.nextSequence() - 1 }),
        encodePublishRecord({ kind: 'persisted', sequence: this.lastPersisted() }),
      ];
      this.replay((command) => records.push(encodePublishRecord({ kind: 'stored', command })));
      return records;
    };
  }

  override store(command: Command): number | Promise<number> {
    this.#journal.checkOpen();
    const stored = super.store(command);
    if (typeof stored === 'number') return this.#written(command, stored);
    return stored.then((sequence) => this.#written(command, sequence));
  }

  /** Writes a stored command; if that fails, the store forgets it and the publish fails. */
  #written(command: Command, sequence: number): number {
    try {
      this.#journal.append(encodePublishRecord({ kind: 'stored', command }));
    } catch (error) {
      // Noted as refused too: a rewrite since it was let in (a full store's) may hold it.
      this.discard(sequence);
      throw error;
    }
    return sequence;
  }

  override discardUpTo(sequence: number): void {
    const before = this.lastPersisted();
    super.discardUpTo(sequence);
    if (this.lastPersisted() === before) return;
    this.#note({ kind: 'persisted', sequence });
    if (this.#journal.oversized) this.#note(undefined);
  }

  override discard(sequence: number): void {
    super.discard(sequence);
    this.#note({ kind: 'refused', sequence });
  }

  override syncWithServer(sequence: number): void {
    super.syncWithServer(sequence);
    if (this.#rewriteAtFirstSync) {
      // The first logon may renumber what this run stored before it: the file takes the new numbers.
      this.#rewriteAtFirstSync = false;
      this.#note(undefined);
    }
  }

  /** Closes the file and releases its lock. The store cannot store, or note acks, after this. Idempotent. */
  close(): void {
    this.#journal.close();
  }

  /**
   * Records an ack's effect, or (`undefined`) rewrites the file with only what is unpersisted.
   * A failure here loses nothing: the file then holds more than is unpersisted, and what a
   * restart replays that the server already has, it drops as a duplicate.
   */
  #note(record: PublishRecord | undefined): void {
    if (this.#journal.closed) return;
    try {
      if (record) this.#journal.append(encodePublishRecord(record));
      else this.#journal.rewrite();
    } catch {
      // See above: the next write rewrites the whole state first.
    }
  }
}

/** What the file holds: the unpersisted commands, the last sequence given, the last persisted. */
function restore(journal: Journal): PublishStoreState {
  let lastPersisted = 0;
  let lastSequence = 0;
  const stored = new Map<number, Command>();
  for (const payload of journal.read()) {
    const record = decodePublishRecord(payload);
    if (typeof record === 'string') throw journal.damaged(record);
    if (record.kind === 'stored') {
      const sequence = record.command.sequence as number;
      lastSequence = Math.max(lastSequence, sequence);
      stored.set(sequence, record.command);
    } else if (record.kind === 'persisted') {
      lastPersisted = Math.max(lastPersisted, record.sequence);
    } else if (record.kind === 'refused') {
      stored.delete(record.sequence);
    } else {
      lastSequence = Math.max(lastSequence, record.sequence);
    }
  }
  const commands = [...stored.values()]
    .filter((command) => (command.sequence as number) > lastPersisted)
    .sort((a, b) => (a.sequence as number) - (b.sequence as number));
  return { commands, lastSequence: Math.max(lastSequence, lastPersisted), lastPersisted };
}
