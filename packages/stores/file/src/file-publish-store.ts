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
 * Node.js only. One store at a time may use a file: a lock folder beside it (`<path>.lock`,
 * naming the process id) keeps a second one out, and a lock left by a process that ended is taken over.
 */
export class FilePublishStore extends MemoryPublishStore {
  /** The store's file. */
  readonly path: string;
  readonly #journal: Journal;
  #rewriteAtFirstSync = true;
  /** No logon has numbered the file's commands yet: the file says so (an `unsynced` record). */
  #unsynced: boolean;
  /** The file holds other sequences than the store: it must be rewritten before anything is sent. */
  #rewriteBeforeSend = false;
  /** In a logon's sync that rewrites the file: acks are not written, the rewrite writes them. */
  #syncing = false;
  /** Publishes waiting for room in a full store, in order; `error` if their write failed. */
  readonly #waiting = new Set<{ command: Command; error?: unknown }>();
  #writingLetIn = false;

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
    let state: PublishStoreState & { unsynced: boolean; written: boolean };
    try {
      state = restore(journal);
      super({ ...options, restore: state });
      journal.open();
    } catch (error) {
      journal.close(); // a damaged file, or a bad option
      throw error;
    }
    this.path = path;
    this.#journal = journal;
    this.#unsynced = state.unsynced;
    journal.live = () => {
      const records = [
        encodePublishRecord({ kind: 'lastSequence', sequence: this.nextSequence() - 1 }),
        encodePublishRecord({ kind: 'persisted', sequence: this.lastPersisted() }),
      ];
      if (this.#unsynced) records.push(encodePublishRecord({ kind: 'unsynced' }));
      this.replay((command) => records.push(encodePublishRecord({ kind: 'stored', command })));
      return records;
    };
    // A new file: nothing in it will have been sent until the first logon rewrites it.
    if (this.#unsynced && !state.written) this.#note({ kind: 'unsynced' });
  }

  override store(command: Command): number | Promise<number> {
    this.#journal.checkOpen();
    const stored = super.store(command);
    if (typeof stored === 'number') return this.#written(command, stored);
    const waiting: { command: Command; error?: unknown } = { command };
    this.#waiting.add(waiting);
    return stored.then(
      (sequence) => {
        // Not written as it was let in (see #writeLetIn): written now, before the caller sends it.
        if (this.#waiting.delete(waiting)) return this.#written(command, sequence);
        if (waiting.error !== undefined) throw waiting.error;
        return sequence;
      },
      (error: unknown) => {
        this.#waiting.delete(waiting);
        throw error;
      },
    );
  }

  /**
   * Writes the publishes that freed room let in (the memory store numbered them), at once: the
   * HAClient sends numbered publishes with the next one's, maybe in this very turn, and each must
   * be in the file before it is sent.
   */
  #writeLetIn(): void {
    if (this.#writingLetIn) return; // a failed write's discard lets more in: the loop below takes them
    this.#writingLetIn = true;
    try {
      for (const waiting of this.#waiting) {
        const sequence = waiting.command.sequence;
        if (sequence === undefined) break; // the rest still wait
        this.#waiting.delete(waiting);
        try {
          this.#written(waiting.command, sequence);
        } catch (error) {
          waiting.error = error;
        }
      }
    } finally {
      this.#writingLetIn = false;
    }
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
    this.#writeLetIn();
    if (this.#syncing) return;
    if (this.lastPersisted() === before) return;
    this.#noteAck({ kind: 'persisted', sequence });
  }

  override discard(sequence: number): void {
    super.discard(sequence);
    this.#writeLetIn();
    this.#noteAck({ kind: 'refused', sequence });
  }

  /**
   * The first logon may renumber what was stored before it (by this run, or by one on a new file
   * that ended before it logged on): the file takes the new numbers before anything is sent, or a
   * restart would take the old ones for sequences the server has, and drop them. If that rewrite
   * fails when the numbers changed, so does the logon (the HAClient tries again): sending them
   * now would lose them, or send them twice, after a crash.
   */
  override syncWithServer(sequence: number): void {
    if (!this.#rewriteAtFirstSync && !this.#rewriteBeforeSend) {
      super.syncWithServer(sequence);
      return;
    }
    const before = this.#sequences();
    this.#syncing = true;
    try {
      super.syncWithServer(sequence);
    } finally {
      this.#syncing = false;
      // Renumbered, or a file whose numbers a restart would change: it must be rewritten before a send.
      if (this.#sequences() !== before || (this.#unsynced && this.unpersistedCount() > 0)) {
        this.#rewriteBeforeSend = true;
      }
    }
    // From here on what is stored may be sent: the rewrite (this one, or the next write's) says so.
    const unsynced = this.#unsynced;
    this.#unsynced = false;
    try {
      this.#journal.rewrite();
    } catch (error) {
      if (this.#rewriteBeforeSend) {
        // The logon fails and nothing is sent: the file (whatever rewrite a write makes before the
        // next logon) still says nothing in it was sent, and the next logon numbers it again,
        // against its own server's sequence.
        this.#unsynced = unsynced;
        this.#rewriteAtFirstSync = true;
        this.resync();
        throw error;
      }
      this.#rewriteAtFirstSync = false;
      return; // the file still holds what the store does: the next write rewrites it
    }
    this.#rewriteAtFirstSync = false;
    this.#rewriteBeforeSend = false;
  }

  /** The sequences of what the store would replay, to tell whether a sync renumbered it. */
  #sequences(): string {
    const sequences: number[] = [];
    this.replay((command) => sequences.push(command.sequence as number));
    return sequences.join(',');
  }

  /** Closes the file and releases its lock. The store cannot store, or note acks, after this. Idempotent. */
  close(): void {
    this.#journal.close();
  }

  /**
   * Records an ack's effect (persisted or refused), then rewrites the file once it has outgrown
   * what is unpersisted: acks free nothing in it but through a rewrite (a server refusing every
   * publish, with nothing ever persisted, would otherwise grow it without bound).
   */
  #noteAck(record: PublishRecord): void {
    this.#note(record);
    if (this.#journal.oversized) this.#note(undefined);
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
function restore(journal: Journal): PublishStoreState & { unsynced: boolean; written: boolean } {
  let lastPersisted = 0;
  let lastSequence = 0;
  const stored = new Map<number, Command>();
  const payloads = journal.read();
  // A file with no record in it is new (or was never written after its header).
  let unsynced = payloads.length === 0;
  let written = false;
  for (const payload of payloads) {
    const record = decodePublishRecord(payload);
    if (typeof record === 'string') throw journal.damaged(record);
    if (record.kind === 'unsynced') {
      unsynced = true;
      written = true;
    } else if (record.kind === 'stored') {
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
  lastSequence = Math.max(lastSequence, lastPersisted);
  // Nothing in an unsynced file was sent: a logon may renumber all of it.
  return {
    commands,
    lastSequence,
    lastPersisted,
    sentUpTo: unsynced ? lastPersisted : lastSequence,
    unsynced,
    written,
  };
}
