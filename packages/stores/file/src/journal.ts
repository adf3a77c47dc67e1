/**
 * A durable store's file: a magic header naming the store, then records appended one after
 * another, each `[u32 payload length][u32 CRC-32 of the payload][payload]` (big-endian). A crash
 * can leave the last record half written, or (a power loss) zeros where the last writes were; the
 * CRC tells such a torn tail (dropped) from damage (refused). When dead records outweigh live ones the store rewrites the file with only what is
 * live, to a temporary file renamed over it, so a crash at any point leaves one whole file.
 */
import {
  closeSync,
  fsyncSync,
  linkSync,
  openSync,
  readFileSync,
  realpathSync,
  renameSync,
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
  readonly path: string;
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
    this.#magic = Buffer.from(magic, 'latin1');
    this.#what = what;
    this.#fsync = fsync;
    this.#unlock = this.#lock();
  }

  /** The payloads of the records in the file, in order. */
  read(): Buffer[] {
    let file: Buffer;
    try {
      file = readFileSync(this.path);
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
        writeFileSync(this.path, this.#magic);
        this.#size = this.#magic.length;
      } else {
        truncateSync(this.path, this.#size);
      }
      return openSync(this.path, 'a');
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
    const temporary = `${this.path}.rewrite`;
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
    if (this.#fsync) syncDirectory(dirname(this.path));
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
      renameSync(temporary, this.path);
    } finally {
      this.#fd = openSync(this.path, 'a');
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
   * Takes `<path>.lock`, or throws a `DurableStoreError` naming the process that holds it. A lock
   * whose process has ended (or holds this process's id, reused by a restarted container) is left
   * over from a crash and taken over. Returns the release.
   */
  #lock(): () => void {
    const full = canonical(this.path);
    if (openHere.has(full))
      throw new DurableStoreError(`the ${this.#what} ${this.path} is already open in this process`);
    const lockPath = `${this.path}.lock`;
    this.#call('lock', () => {
      // Written whole, then linked in: no other process ever reads an empty lock, taking it for stale.
      const mine = `${lockPath}.${process.pid}`;
      writeFileSync(mine, String(process.pid));
      try {
        for (;;) {
          try {
            linkSync(mine, lockPath);
            return;
          } catch (error) {
            if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
          }
          const text = readLock(lockPath);
          if (text === undefined) continue; // released meanwhile
          const holder = Number(text);
          if (holder !== process.pid && isRunning(holder)) {
            throw new DurableStoreError(
              `the ${this.#what} ${this.path} is in use by process ${holder} (${lockPath}); if that process does not use it, delete the lock file`,
            );
          }
          // Stale: moved aside, not removed, so that a lock another process took over meanwhile
          // (it saw the same stale one) is not taken from it but put back.
          const aside = `${lockPath}.${process.pid}.stale`;
          try {
            renameSync(lockPath, aside);
          } catch (error) {
            if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
            throw error;
          }
          if (readLock(aside) !== text) {
            try {
              linkSync(aside, lockPath);
            } catch {
              // Yet another process has taken it: the next round says which.
            }
          }
          rmSync(aside, { force: true });
        }
      } finally {
        rmSync(mine, { force: true });
      }
    });
    openHere.add(full);
    return () => {
      openHere.delete(full);
      rmSync(lockPath, { force: true });
    };
  }
}

/** The file's full path, through symbolic links to its folder: one file, however it is reached. */
function canonical(path: string): string {
  try {
    return join(realpathSync(dirname(resolve(path))), basename(path));
  } catch {
    return resolve(path); // a missing folder: locking fails next, saying so
  }
}

/** The store files open in this process, by full path. */
const openHere = new Set<string>();

/** A lock file's contents; undefined if it is gone. */
function readLock(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error; // not a reason to try again: it would never end
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
