import {
  closeSync,
  fsyncSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { dirname, resolve } from 'node:path';
import { type Command, InvalidOptionsError, StoreFileError } from '@amps-ts/core-protocol';
import { MemoryPublishStore, type MemoryPublishStoreOptions, type PublishStoreState } from '@amps-ts/ha-client';
import { decodeRecords, encodeRecord, MAGIC, MAGIC_BYTES, type StoreRecord } from './records.js';

export interface FilePublishStoreOptions extends Omit<MemoryPublishStoreOptions, 'restore'> {
  /**
   * Flush every write to the disk (`fsync`) before going on: the store then survives a power
   * loss or an operating-system crash too, at the cost of a disk round trip per publish. Without
   * it every write still reaches the operating system before the publish is sent, which is what
   * surviving a crash of this process needs. @default false
   */
  fsync?: boolean;
}

/** The file is rewritten with only what is still unpersisted once it grows past twice that plus this. */
const COMPACT_SLACK_BYTES = 8 * 1024 * 1024;

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
  readonly #fsync: boolean;
  #fd: number | undefined;
  /** Bytes in the file, and what it held after the last compaction. */
  #size: number;
  #compactedSize: number;
  #compactAtFirstSync = true;
  /** A write failed part way: the file is rewritten whole before the next record goes after it. */
  #rewrite = false;
  readonly #unlock: () => void;

  /**
   * Opens the store's file, creating it if it does not exist, and takes back what an earlier
   * run left unpersisted. Throws a {@link StoreFileError} if the file cannot be read or written,
   * is not a publish store's, or is damaged before its end (a record half written by a crash at
   * its very end is dropped).
   */
  constructor(path: string, options: FilePublishStoreOptions = {}) {
    if (typeof path !== 'string' || path === '') {
      throw new InvalidOptionsError(`FilePublishStore: path must be a non-empty string, got ${String(path)}`);
    }
    if (options.fsync !== undefined && typeof options.fsync !== 'boolean') {
      throw new InvalidOptionsError(`FilePublishStore: fsync must be a boolean, got ${String(options.fsync)}`);
    }
    const unlock = lock(path);
    let file: ReturnType<typeof readStoreFile>;
    try {
      file = readStoreFile(path);
      super({ ...options, restore: file.state });
    } catch (error) {
      unlock(); // a damaged file, or a bad option
      throw error;
    }
    this.path = path;
    this.#unlock = unlock;
    this.#fsync = options.fsync ?? false;
    this.#size = file.validBytes;
    this.#compactedSize = file.validBytes;
    try {
      this.#fd = fileCall(path, 'open', () => {
        if (file.validBytes === 0) writeFileSync(path, MAGIC_BYTES);
        else truncateSync(path, file.validBytes); // a torn last record
        return openSync(path, 'a');
      });
    } catch (error) {
      unlock();
      throw error;
    }
  }

  override store(command: Command): number | Promise<number> {
    this.#open();
    const stored = super.store(command);
    if (typeof stored === 'number') return this.#written(command, stored);
    return stored.then((sequence) => this.#written(command, sequence));
  }

  /** Writes a stored command; if that fails, the store forgets it and the publish fails. */
  #written(command: Command, sequence: number): number {
    try {
      this.#append({ kind: 'stored', command });
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
    if (this.#size > 2 * this.#compactedSize + COMPACT_SLACK_BYTES) this.#note(undefined);
  }

  override discard(sequence: number): void {
    super.discard(sequence);
    this.#note({ kind: 'refused', sequence });
  }

  override syncWithServer(sequence: number): void {
    super.syncWithServer(sequence);
    if (this.#compactAtFirstSync) {
      // The first logon may renumber what this run stored before it: the file takes the new numbers.
      this.#compactAtFirstSync = false;
      this.#note(undefined);
    }
  }

  /** Closes the file and releases its lock. The store cannot store, or note acks, after this. Idempotent. */
  close(): void {
    if (this.#fd === undefined) return;
    const fd = this.#fd;
    this.#fd = undefined;
    try {
      fileCall(this.path, 'close', () => closeSync(fd));
    } finally {
      this.#unlock();
    }
  }

  #open(): number {
    if (this.#fd === undefined) throw new StoreFileError(`the publish store ${this.path} is closed`);
    return this.#fd;
  }

  #append(record: StoreRecord): void {
    this.#open();
    if (this.#rewrite) this.#compact();
    const bytes = encodeRecord(record);
    try {
      writeAll(this.#fd as number, bytes);
      if (this.#fsync) fsyncSync(this.#fd as number);
    } catch (error) {
      // Part of the record may be in the file: records after it would make it look damaged.
      this.#rewrite = true;
      throw new StoreFileError(`cannot write the publish store ${this.path}: ${(error as Error).message}`, {
        cause: error,
      });
    }
    this.#size += bytes.length;
  }

  /**
   * Records an ack's effect, or (`undefined`) rewrites the file with only what is unpersisted.
   * A failure here loses nothing: the file then holds more than is unpersisted, and what a
   * restart replays that the server already has, it drops as a duplicate.
   */
  #note(record: StoreRecord | undefined): void {
    if (this.#fd === undefined) return;
    try {
      if (record) this.#append(record);
      else this.#compact();
    } catch {
      // See above: the next compaction writes the whole state again.
    }
  }

  #compact(): void {
    this.#rewrite = true;
    const records: Buffer[] = [
      MAGIC_BYTES,
      encodeRecord({ kind: 'lastSequence', sequence: this.nextSequence() - 1 }),
      encodeRecord({ kind: 'persisted', sequence: this.lastPersisted() }),
    ];
    this.replay((command) => records.push(encodeRecord({ kind: 'stored', command })));
    const contents = Buffer.concat(records);
    const temporary = `${this.path}.compacting`;
    fileCall(this.path, 'rewrite', () => {
      const fd = openSync(temporary, 'w');
      try {
        writeAll(fd, contents);
        // Always: a rename can reach the disk before the data, and a crash then would empty the store.
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      // Closed first: some platforms (Windows) cannot rename over an open file.
      closeSync(this.#fd as number);
      try {
        renameSync(temporary, this.path);
      } finally {
        this.#fd = openSync(this.path, 'a');
      }
    });
    if (this.#fsync) syncDirectory(dirname(this.path));
    this.#size = contents.length;
    this.#compactedSize = contents.length;
    this.#rewrite = false;
  }
}

/** The store files open in this process, by full path. */
const openHere = new Set<string>();

/**
 * Takes `<path>.lock` for this store, or throws a {@link StoreFileError} naming the process that
 * holds it. A lock whose process has ended (or is this one's id, reused by a restarted container)
 * is left over from a crash and taken over. Returns the release.
 */
function lock(path: string): () => void {
  const full = resolve(path);
  if (openHere.has(full)) throw new StoreFileError(`the publish store ${path} is already open in this process`);
  const lockPath = `${path}.lock`;
  fileCall(path, 'lock', () => {
    for (;;) {
      try {
        writeFileSync(lockPath, String(process.pid), { flag: 'wx' });
        return;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
      let holder = Number.NaN;
      try {
        holder = Number(readFileSync(lockPath, 'utf8'));
      } catch {
        continue; // released meanwhile
      }
      if (holder !== process.pid && isRunning(holder)) {
        throw new StoreFileError(
          `the publish store ${path} is in use by process ${holder} (${lockPath}); if that process does not use it, delete the lock file`,
        );
      }
      rmSync(lockPath, { force: true });
    }
  });
  openHere.add(full);
  return () => {
    openHere.delete(full);
    rmSync(lockPath, { force: true });
  };
}

function isRunning(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** What a store file holds: the state to restore and how many of its bytes are whole records. */
function readStoreFile(path: string): { state: PublishStoreState; validBytes: number } {
  let file: Buffer;
  try {
    file = readFileSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return EMPTY;
    throw new StoreFileError(`cannot read the publish store ${path}: ${(error as Error).message}`, { cause: error });
  }
  if (!file.subarray(0, MAGIC_BYTES.length).equals(MAGIC_BYTES.subarray(0, file.length))) {
    throw new StoreFileError(`${path} is not a publish store file (it does not start with ${MAGIC})`);
  }
  // Shorter than the header: created by a run that crashed at once. Nothing is in it.
  if (file.length < MAGIC_BYTES.length) return EMPTY;
  const { records, validBytes, damage } = decodeRecords(file);
  if (damage !== undefined) {
    throw new StoreFileError(
      `the publish store ${path} is damaged: ${damage}. Move it aside to start empty (its unpersisted publishes are then lost).`,
    );
  }
  let lastPersisted = 0;
  let lastSequence = 0;
  const stored = new Map<number, Command>();
  for (const record of records) {
    if (record.kind === 'stored') {
      const sequence = record.command.sequence as number;
      lastSequence = Math.max(lastSequence, sequence);
      if (sequence > lastPersisted) stored.set(sequence, record.command);
    } else if (record.kind === 'persisted') {
      lastPersisted = Math.max(lastPersisted, record.sequence);
    } else if (record.kind === 'refused') {
      stored.delete(record.sequence);
    } else {
      lastSequence = Math.max(lastSequence, record.sequence);
    }
  }
  lastSequence = Math.max(lastSequence, lastPersisted);
  const commands = [...stored.values()]
    .filter((command) => (command.sequence as number) > lastPersisted)
    .sort((a, b) => (a.sequence as number) - (b.sequence as number));
  return { state: { commands, lastSequence, lastPersisted }, validBytes };
}
const EMPTY = { state: { commands: [], lastSequence: 0, lastPersisted: 0 }, validBytes: 0 } as const;

/** Runs a file-system call, turning what it throws into a {@link StoreFileError} naming the file. */
function fileCall<T>(path: string, what: string, call: () => T): T {
  try {
    return call();
  } catch (error) {
    if (StoreFileError.isInstance(error)) throw error;
    throw new StoreFileError(`cannot ${what} the publish store ${path}: ${(error as Error).message}`, {
      cause: error,
    });
  }
}

function writeAll(fd: number, bytes: Uint8Array): void {
  for (let at = 0; at < bytes.length; ) at += writeSync(fd, bytes, at);
}

/** Makes a rename in `directory` durable (where the platform allows opening a directory). */
function syncDirectory(directory: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(directory, 'r');
    fsyncSync(fd);
  } catch {
    // Not every platform can fsync a directory (Windows): the rename is as durable as it gets there.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
