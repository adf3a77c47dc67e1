/**
 * A durable store's file: a magic header naming the store, then records appended one after
 * another, each `[u32 payload length][u32 CRC-32 of the payload][payload]` (big-endian). A crash
 * can leave the last record half written, or (a power loss) zeros where the last writes were; the
 * CRC tells such a torn tail (dropped) from damage (refused). When dead records outweigh live ones the store rewrites the file with only what is
 * live, to a temporary file renamed over it, so a crash at any point leaves one whole file.
 */
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmdirSync,
  rmSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { DurableStoreError } from '@amps-ts/core-protocol';

const FRAME_BYTES = 8;
/** The file is rewritten once it grows past twice what it held after the last rewrite, plus this. */
const REWRITE_SLACK_BYTES = 8 * 1024 * 1024;

export interface JournalOptions {
  /** The file. */
  path: string;
  /** The first bytes of every file of this store: `AMPSPS01`, `AMPSBS01`. */
  magic: string;
  /** What the store is called in errors: `publish store`. */
  what: string;
  /** Flush each write to the disk. */
  fsync: boolean;
}

export class Journal {
  /** The path the store was given, for errors. */
  readonly path: string;
  /** Its real path, resolved once at open: what is locked, read, written and rewritten. */
  readonly #file: string;
  readonly #magic: Buffer;
  readonly #what: string;
  readonly #fsync: boolean;
  #fd: number | undefined;
  #size = 0;
  #rewrittenSize = 0;
  /** A write failed part way: the next append rewrites the file whole first. */
  #broken = false;
  #unlock: (() => void) | undefined;
  /** The live records, for a rewrite; set by the store once it can answer. */
  live: () => Buffer[] = () => [];

  /**
   * Locks the file and reads its records' payloads (a torn last record dropped). Call `open()`
   * after, to write. Throws a `DurableStoreError` for a file that cannot be read or locked, is not
   * this store's, or is damaged before its end.
   */
  constructor({ path, magic, what, fsync }: JournalOptions) {
    this.path = path;
    this.#file = realPath(path);
    this.#magic = Buffer.from(magic, 'latin1');
    this.#what = what;
    this.#fsync = fsync;
    this.#unlock = this.#lock();
  }

  /** The payloads of the records in the file, in order. */
  read(): Buffer[] {
    let file: Buffer;
    try {
      file = readFileSync(this.#file);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw this.#error('read', error);
    }
    const magic = this.#magic;
    if (!file.subarray(0, magic.length).equals(magic.subarray(0, file.length))) {
      throw new DurableStoreError(`${this.path} is not a ${this.#what} file (it does not start with ${magic})`);
    }
    const payloads: Buffer[] = [];
    let at = magic.length;
    while (at + FRAME_BYTES <= file.length) {
      const length = file.readUInt32BE(at);
      // A power loss can keep a file's new size but not its last writes (some filesystems, without
      // fsync): zeros to the end of the file. Those are torn too; no record is empty.
      if (length === 0) {
        if (zerosFrom(file, at)) break;
        throw this.damaged(`a record's length is zero at byte ${at}`);
      }
      const end = at + FRAME_BYTES + length;
      if (end > file.length) {
        // Torn, the payload cut by a crash: unless the record is whole and its length is what is wrong.
        if (wholeWithWrongLength(file, at)) throw this.damaged(`a record's length is wrong at byte ${at}`);
        break;
      }
      if (crc32(file, at + FRAME_BYTES, end) !== file.readUInt32BE(at + 4)) {
        // A crash can only tear the last record; a bad one with more after it is damage.
        if (zerosFrom(file, end)) break;
        throw this.damaged(`a record fails its checksum at byte ${at}`);
      }
      payloads.push(file.subarray(at + FRAME_BYTES, end));
      at = end;
    }
    // Shorter than the header (a run that crashed at once) holds nothing.
    this.#size = file.length < magic.length ? 0 : at;
    return payloads;
  }

  /** The error for a record that passed its checksum but does not read. */
  damaged(what: string): Error {
    return new DurableStoreError(
      `the ${this.#what} ${this.path} is damaged: ${what}. Move it aside to start empty (what it holds is then lost).`,
    );
  }

  /** Opens the file for appending, after `read()`: cuts a torn last record, or writes the header. */
  open(): void {
    this.#fd = this.#call('open', () => {
      if (this.#size === 0) {
        writeFileSync(this.#file, this.#magic);
        this.#size = this.#magic.length;
      } else {
        truncateSync(this.#file, this.#size);
      }
      return openSync(this.#file, 'a');
    });
    this.#rewrittenSize = this.#size;
  }

  get closed(): boolean {
    return this.#fd === undefined;
  }

  /** The open file; a `DurableStoreError` if the store is closed. */
  checkOpen(): number {
    if (this.#fd === undefined) throw new DurableStoreError(`the ${this.#what} ${this.path} is closed`);
    return this.#fd;
  }

  /** Appends one record. Throws a `DurableStoreError` if the store is closed or the write fails. */
  append(payload: Buffer): void {
    if (this.#broken) this.rewrite(); // checks that the store is open too
    const record = frame(payload);
    const fd = this.checkOpen();
    try {
      writeAll(fd, record);
      if (this.#fsync) fsyncSync(fd);
    } catch (error) {
      // Part of the record may be in the file: records after it would make it look damaged.
      this.#broken = true;
      throw this.#error('write', error);
    }
    this.#size += record.length;
  }

  /** Whether dead records outweigh live ones enough to rewrite the file. */
  get oversized(): boolean {
    return this.#size > 2 * this.#rewrittenSize + REWRITE_SLACK_BYTES;
  }

  /** Replaces the file with the header and `live()`'s records. */
  rewrite(): void {
    this.checkOpen();
    this.#broken = true;
    const contents = Buffer.concat([this.#magic, ...this.live().map(frame)]);
    const temporary = `${this.#file}.rewrite`;
    this.#call('rewrite', () => {
      try {
        this.#replace(temporary, contents);
      } catch (error) {
        // Not left beside the store (as large as it, on a full disk maybe) until the next rewrite.
        try {
          rmSync(temporary, { force: true });
        } catch {
          // The rewrite's own error says more.
        }
        throw error;
      }
    });
    if (this.#fsync) syncDirectory(dirname(this.#file));
    this.#size = contents.length;
    this.#rewrittenSize = contents.length;
    this.#broken = false;
  }

  /** Writes `contents` to `temporary`, then renames it over the file and opens that to append. */
  #replace(temporary: string, contents: Buffer): void {
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
    this.#fd = undefined;
    try {
      renameSync(temporary, this.#file);
    } finally {
      this.#fd = openSync(this.#file, 'a');
    }
  }

  /** Closes the file and releases its lock. Idempotent. */
  close(): void {
    const fd = this.#fd;
    this.#fd = undefined;
    try {
      if (fd !== undefined) this.#call('close', () => closeSync(fd));
    } finally {
      this.#unlock?.();
      this.#unlock = undefined;
    }
  }

  #call<T>(what: string, call: () => T): T {
    try {
      return call();
    } catch (error) {
      throw DurableStoreError.isInstance(error) ? error : this.#error(what, error);
    }
  }

  #error(what: string, error: unknown): Error {
    return new DurableStoreError(`cannot ${what} the ${this.#what} ${this.path}: ${(error as Error).message}`, {
      cause: error,
    });
  }

  /**
   * Takes `<path>.lock`, or throws a `DurableStoreError` naming the process that holds it. The lock
   * is a folder holding one file, named by its holder's process id and a random part. A lock whose
   * process has ended (or holds this process's id, reused by a restarted container) is left over
   * from a crash and taken over. Returns the release.
   */
  #lock(): () => void {
    const file = this.#file;
    if (openHere.has(file))
      throw new DurableStoreError(`the ${this.#what} ${this.path} is already open in this process`);
    const lockPath = `${file}.lock`;
    // Random: a holder's file names one taking of the lock, even when a process id is reused.
    const holderFile = `${process.pid}.${randomBytes(6).toString('hex')}`;
    this.#call('lock', () => {
      // Made whole beside the lock, then renamed into place: a lock folder is never seen before its
      // holder's file is in it, so an empty one is one its holder released or a takeover emptied.
      const mine = `${lockPath}.${process.pid}`;
      rmSync(mine, { recursive: true, force: true }); // left by a run with this id killed here
      mkdirSync(mine);
      writeFileSync(join(mine, holderFile), '');
      try {
        for (;;) {
          try {
            // Never replaces a folder holding a file, so at most one process's lock is in place; a
            // holder's file goes only at its release, or once its process has ended (below).
            renameSync(mine, lockPath);
            break;
          } catch (error) {
            const code = (error as NodeJS.ErrnoException).code;
            if (code !== 'EEXIST' && code !== 'ENOTEMPTY') throw error;
          }
          const holder = lockHolder(lockPath);
          if (holder === undefined) {
            // Gone or empty: an empty folder holds nothing (where a rename cannot replace it).
            removeIfEmpty(lockPath);
            continue;
          }
          const pid = Number.parseInt(holder, 10);
          if (pid !== process.pid && isRunning(pid)) {
            throw new DurableStoreError(
              `the ${this.#what} ${this.path} is in use by process ${pid} (${lockPath}); if that process does not use it, delete the lock folder`,
            );
          }
          // Stale: its holder's file removed by its name, which no other taking of the lock has, so
          // if another process took the lock over since it was read this removes nothing of that.
          rmSync(join(lockPath, holder), { force: true });
        }
      } finally {
        rmSync(mine, { recursive: true, force: true }); // gone if it was renamed into place
      }
    });
    openHere.add(file);
    removeLeftovers(lockPath);
    return () => {
      openHere.delete(file);
      // Only this store's own file: the lock can be no other process's while it is there.
      rmSync(join(lockPath, holderFile), { force: true });
      removeIfEmpty(lockPath);
    };
  }
}

/**
 * The file's real path, through symbolic links to it or to its folder: one file, one lock and one
 * rewrite in place, however it is reached. A new file's is its folder's real path and its name.
 */
function realPath(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    try {
      return join(realpathSync(dirname(resolve(path))), basename(path));
    } catch {
      return resolve(path); // a missing folder: locking fails next, saying so
    }
  }
}

/** The store files open in this process, by real path. */
const openHere = new Set<string>();

/** The name of the file in a lock folder; undefined if the folder is gone or empty. */
function lockHolder(lockPath: string): string | undefined {
  try {
    return readdirSync(lockPath)[0];
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error; // not a reason to try again: it would never end
  }
}

/** Removes a lock folder if it holds nothing (a folder holding a file is never removed). */
function removeIfEmpty(lockPath: string): void {
  try {
    rmdirSync(lockPath);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    // Gone, or another process's lock is in place.
    if (code !== 'ENOENT' && code !== 'ENOTEMPTY' && code !== 'EEXIST') throw error;
  }
}

/**
 * Removes the `<path>.lock.<pid>` folders of processes that have ended, left by a kill in the
 * lock routine: only the process with that id uses one. Litter only, so failing to is no error.
 */
function removeLeftovers(lockPath: string): void {
  const prefix = `${basename(lockPath)}.`;
  try {
    for (const name of readdirSync(dirname(lockPath))) {
      const pid = name.startsWith(prefix) ? name.slice(prefix.length) : '';
      if (/^\d+$/.test(pid) && Number(pid) !== process.pid && !isRunning(Number(pid))) {
        rmSync(join(dirname(lockPath), name), { recursive: true, force: true });
      }
    }
  } catch {
    // The next taking of the lock tries again.
  }
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

/** A payload framed with its length and CRC, ready to append. */
export function frame(payload: Buffer): Buffer {
  const record = Buffer.allocUnsafe(FRAME_BYTES + payload.length);
  record.writeUInt32BE(payload.length, 0);
  record.writeUInt32BE(crc32(payload), 4);
  record.set(payload, FRAME_BYTES);
  return record;
}

const crcTable = (() => {
  const table = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c;
  }
  return table;
})();

/** CRC-32 (IEEE), as zlib computes it. */
export function crc32(bytes: Uint8Array, start = 0, end = bytes.length): number {
  let crc = -1;
  for (let i = start; i < end; i++) crc = (crc >>> 8) ^ (crcTable[(crc ^ (bytes[i] as number)) & 0xff] as number);
  return (crc ^ -1) >>> 0;
}

/**
 * Whether the record at `at`, which claims to run past the end of the file, is whole with a wrong
 * length: some prefix of what follows its frame has its CRC, and ends the file or is followed by a
 * whole record. A crash cannot leave that (it cuts the last record short of its CRC'd bytes).
 */
function wholeWithWrongLength(file: Buffer, at: number): boolean {
  const expected = file.readUInt32BE(at + 4);
  let crc = -1;
  for (let i = at + FRAME_BYTES; i < file.length; i++) {
    crc = (crc >>> 8) ^ (crcTable[(crc ^ (file[i] as number)) & 0xff] as number);
    if ((crc ^ -1) >>> 0 === expected && (i + 1 === file.length || isWholeRecord(file, i + 1))) return true;
  }
  return false;
}

/** Whether every byte from `at` to the end of the file is zero (true at the end). */
function zerosFrom(file: Buffer, at: number): boolean {
  for (let i = at; i < file.length; i++) if (file[i] !== 0) return false;
  return true;
}

function isWholeRecord(file: Buffer, at: number): boolean {
  if (at + FRAME_BYTES > file.length) return false;
  const length = file.readUInt32BE(at);
  const end = at + FRAME_BYTES + length;
  return length > 0 && end <= file.length && crc32(file, at + FRAME_BYTES, end) === file.readUInt32BE(at + 4);
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
