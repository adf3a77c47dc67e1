import {
  type Command,
  countOption,
  deadline,
  type Environment,
  environmentOption,
  InvalidOptionsError,
  type PublishStore,
  PublishStoreGapError,
  StoreFullError,
  timeoutOption,
} from '@amps-ts/core-protocol';
import { Fifo } from './fifo.js';

export interface MemoryPublishStoreOptions {
  /** Most unpersisted messages held. @default 100_000 */
  capacity?: number;
  /**
   * Most bytes of unpersisted message bodies held (a string body counts its length), so that an
   * outage with large messages cannot run the process out of memory. A message is let in while
   * the store is under it, so the store may go past it by one message, and one larger than it
   * still goes through. @default 268_435_456 (256 MiB)
   */
  capacityBytes?: number;
  /** When full: `block` makes `publish` wait for room; `reject` throws a `StoreFullError`. @default 'block' */
  policy?: 'block' | 'reject';
  /**
   * Throw a `PublishStoreGapError` at logon when the server holds less of this publisher's stream
   * than another server already persisted (messages in between would be lost). @default false
   */
  errorOnPublishGap?: boolean;
  /** The timers `flush` uses. @default defaultEnvironment */
  environment?: Pick<Environment, 'setTimeout' | 'clearTimeout'>;
  /**
   * What an earlier run of this publisher left, to go on from after a restart (a durable store
   * reads it from disk: see `@amps-ts/store-file`). Its commands keep their sequences, since they
   * may have reached a server already.
   */
  restore?: PublishStoreState;
}

/** A publish store's contents, as a durable store saves them. */
export interface PublishStoreState {
  /** The unpersisted commands, each with its `sequence`, in ascending sequence order. */
  commands: readonly Command[];
  /** The highest sequence given to a command. */
  lastSequence: number;
  /** The highest sequence the server reported persisted. */
  lastPersisted: number;
  /**
   * The highest sequence that may have reached a server. Commands above it were stored before
   * any logon numbered them against the server's (a new store file whose process ended before it
   * logged on): like those stored by this process before its first logon, they are renumbered
   * after the server's last sequence if that is past them. @default lastSequence
   */
  sentUpTo?: number;
}

/** What a stored message counts against `capacityBytes`: its body (Uint8Array bytes, string length). */
const bodyBytes = (command: Command): number => command.data?.length ?? 0;

interface Waiter {
  command: Command;
  resolve(sequence: number): void;
  reject(error: Error): void;
}

interface FlushWaiter {
  /** Settles the flush if nothing is left unpersisted. */
  check(): void;
  fail(error: Error): void;
}

/**
 * Keeps every publish until the server reports it persisted, in memory: survives a server
 * failover, not a restart of this process. Assigns each command its sequence and asks for
 * `persisted` acks.
 */
export class MemoryPublishStore implements PublishStore {
  readonly #capacity: number;
  readonly #capacityBytes: number;
  readonly #policy: 'block' | 'reject';
  readonly #errorOnGap: boolean;
  readonly #env: Pick<Environment, 'setTimeout' | 'clearTimeout'>;
  /** Unpersisted commands in sequence order, from `#head`. */
  #entries: Command[] = [];
  #head = 0;
  /** Sequences among the entries that the server refused: kept in place, never replayed. */
  readonly #refused = new Set<number>();
  /** Body bytes of the unpersisted, unrefused entries. */
  #bytes = 0;
  #lastSequence = 0;
  #lastPersisted = 0;
  /** The last sequence restored from an earlier run: commands above it have not been sent yet at the first logon. */
  #restoredUpTo = 0;
  #synced = false;
  readonly #waiters = new Fifo<Waiter>();
  readonly #flushWaiters = new Set<FlushWaiter>();

  constructor(options: MemoryPublishStoreOptions = {}) {
    const capacity = countOption(options.capacity, 'publish store capacity') ?? 100_000;
    const capacityBytes = countOption(options.capacityBytes, 'publish store capacityBytes') ?? 256 * 1024 * 1024;
    if (options.policy !== undefined && options.policy !== 'block' && options.policy !== 'reject') {
      throw new InvalidOptionsError(`publish store policy must be 'block' or 'reject', got ${String(options.policy)}`);
    }
    this.#capacity = capacity;
    this.#capacityBytes = capacityBytes;
    this.#policy = options.policy ?? 'block';
    this.#errorOnGap = options.errorOnPublishGap ?? false;
    this.#env = environmentOption(
      options.environment,
      ['setTimeout', 'clearTimeout'],
      'MemoryPublishStore: environment',
    );
    if (options.restore !== undefined) this.#restore(options.restore);
  }

  #restore({ commands, lastSequence, lastPersisted, sentUpTo = lastSequence }: PublishStoreState): void {
    if (!Number.isSafeInteger(sentUpTo) || sentUpTo < lastPersisted || sentUpTo > lastSequence) {
      throw new InvalidOptionsError(
        `publish store restore: sentUpTo (${sentUpTo}) must be a whole number from lastPersisted (${lastPersisted}) to lastSequence (${lastSequence})`,
      );
    }
    // lastPersisted, each command's sequence, lastSequence: whole numbers, in order.
    const sequences = [lastPersisted, ...commands.map((c) => c.sequence), lastSequence + 1];
    sequences.forEach((sequence, i) => {
      if (
        !Number.isSafeInteger(sequence) ||
        (sequence as number) < 0 ||
        (i > 0 && (sequence as number) <= (sequences[i - 1] as number))
      ) {
        throw new InvalidOptionsError(
          `publish store restore: lastPersisted (${lastPersisted}), the commands' sequences and lastSequence (${lastSequence}) must be ascending whole numbers; got ${sequence} at position ${i}`,
        );
      }
    });
    for (const command of commands) {
      this.#entries.push(command);
      this.#bytes += bodyBytes(command);
    }
    this.#lastPersisted = lastPersisted;
    this.#lastSequence = lastSequence;
    this.#restoredUpTo = sentUpTo;
  }

  store(command: Command): number | Promise<number> {
    // Past 2^53 a double cannot count on: every later publish would share one sequence, and the
    // server would drop all but the first as duplicates.
    if (this.#lastSequence >= Number.MAX_SAFE_INTEGER) throw this.#noSequenceLeft();
    if (this.#hasRoom() && !this.#waiters.peek()) return this.#add(command);
    if (this.#policy === 'reject') {
      throw new StoreFullError(
        `the publish store is full: ${this.unpersistedCount()} unpersisted messages, ${this.#bytes} bytes (policy: reject)`,
      );
    }
    return new Promise((resolve, reject) => this.#waiters.push({ command, resolve, reject }));
  }

  #noSequenceLeft(): Error {
    return new StoreFullError(`the publish store has given every sequence up to ${Number.MAX_SAFE_INTEGER}`);
  }

  #hasRoom(): boolean {
    return this.unpersistedCount() < this.#capacity && this.#bytes < this.#capacityBytes;
  }

  #add(command: Command): number {
    const sequence = ++this.#lastSequence;
    // The store owns the command from here on: it is what gets sent now and replayed later.
    command.sequence = sequence;
    command.ackType = command.ackType ? `${command.ackType},persisted` : 'persisted';
    // The caller may reuse its buffer after publish returns.
    if (command.data instanceof Uint8Array) command.data = command.data.slice();
    this.#entries.push(command);
    this.#bytes += bodyBytes(command);
    return sequence;
  }

  /** The stored command for a sequence (what `replay` sends). */
  get(sequence: number): Command | undefined {
    const entry = this.#entries[this.#indexOf(sequence)];
    return entry?.sequence === sequence ? entry : undefined;
  }

  /** Where the entry for `sequence` is, or would go (restored sequences may have gaps). */
  #indexOf(sequence: number): number {
    let low = this.#head;
    let high = this.#entries.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if ((this.#entries[middle]?.sequence as number) < sequence) low = middle + 1;
      else high = middle;
    }
    return low;
  }

  discardUpTo(sequence: number): void {
    if (sequence <= this.#lastPersisted) return;
    this.#lastPersisted = sequence;
    // The server holds this name's stream up to here: a sequence at or below it, given to a
    // publish let in by this trim or any later one, would be dropped there as a duplicate.
    if (sequence > this.#lastSequence) this.#lastSequence = sequence;
    this.#trim(sequence);
  }

  discard(sequence: number): void {
    const entry = this.get(sequence);
    if (entry === undefined || this.#refused.has(sequence)) return;
    this.#refused.add(sequence);
    this.#bytes -= bodyBytes(entry);
    this.#trim(this.#lastPersisted);
  }

  /** Drops the entries up to `sequence`, and refused ones at the head; then lets waiters in. */
  #trim(sequence: number): void {
    const entries = this.#entries;
    for (;;) {
      const first = entries[this.#head]?.sequence;
      if (first === undefined || (first > sequence && !this.#refused.has(first))) break;
      if (!this.#refused.delete(first)) this.#bytes -= bodyBytes(entries[this.#head] as Command);
      entries[this.#head++] = undefined as unknown as Command;
    }
    if (this.#head > 4096 && this.#head * 2 > entries.length) {
      this.#entries = entries.slice(this.#head);
      this.#head = 0;
    }
    while (this.#waiters.peek() && this.#hasRoom()) {
      const waiter = this.#waiters.shift() as Waiter;
      if (this.#lastSequence >= Number.MAX_SAFE_INTEGER) waiter.reject(this.#noSequenceLeft());
      else waiter.resolve(this.#add(waiter.command));
    }
    if (this.unpersistedCount() === 0) {
      for (const waiter of [...this.#flushWaiters]) waiter.check();
    }
  }

  cancelWaits(error: Error): void {
    while (this.#waiters.peek()) this.#waiters.shift()?.reject(error);
    for (const waiter of [...this.#flushWaiters]) waiter.fail(error);
  }

  syncWithServer(sequence: number): void {
    // Checked first: a logon that fails here sends nothing, so the next one must still number
    // what this process stored against its server (no renumbering can be due when this throws).
    if (this.#errorOnGap && sequence < this.#lastPersisted) {
      throw new PublishStoreGapError(
        `the server holds this publisher's messages up to ${sequence}, but ${this.#lastPersisted} was already persisted elsewhere: messages ${sequence + 1}-${this.#lastPersisted} may be missing there`,
      );
    }
    if (!this.#synced) {
      this.#synced = true;
      // What this process stored has not been sent yet: if the server's numbering for this client
      // name is past it (a previous run's), it continues that numbering instead of colliding with
      // it. Restored commands keep theirs: they may have been sent.
      const from = this.#indexOf(this.#restoredUpTo + 1);
      const first = this.#entries[from]?.sequence;
      if (first !== undefined && sequence >= first) this.#renumberFrom(from, sequence + 1);
    }
    this.discardUpTo(sequence);
  }

  /**
   * For a subclass whose own part of `syncWithServer` failed after this one's, so that the logon
   * failed and nothing was sent: the next logon numbers what this process stored against its
   * server again (a failover may reach one further on than the first).
   */
  protected resync(): void {
    this.#synced = false;
  }

  /** Gives the entries from index `from` on new sequences, from `first` up. */
  #renumberFrom(from: number, first: number): void {
    let sequence = first;
    // The new sequences may be old ones of later entries: the refusals move all at once.
    const refused: number[] = [];
    for (let i = from; i < this.#entries.length; i++) {
      const entry = this.#entries[i] as Command;
      if (this.#refused.delete(entry.sequence as number)) refused.push(sequence);
      entry.sequence = sequence++;
    }
    for (const s of refused) this.#refused.add(s);
    this.#lastSequence = sequence - 1;
  }

  replay(send: (command: Command) => void): void {
    const entries = this.#entries;
    for (let i = this.#head; i < entries.length; i++) {
      const command = entries[i] as Command;
      if (!this.#refused.has(command.sequence as number)) send(command);
    }
  }

  unpersistedCount(): number {
    return this.#entries.length - this.#head - this.#refused.size;
  }

  lastPersisted(): number {
    return this.#lastPersisted;
  }

  /** The sequence the next stored message gets. */
  nextSequence(): number {
    return this.#lastSequence + 1;
  }

  flush(timeoutMs?: number, signal?: AbortSignal): Promise<void> {
    // NaN or a negative timeout would never fire, and one past setTimeout's limit fires at once.
    timeoutOption(timeoutMs, 'timeoutMs');
    if (this.unpersistedCount() === 0 && !this.#waiters.peek()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const waiter: FlushWaiter = {
        check: () => {
          if (this.unpersistedCount() > 0 || this.#waiters.peek()) return;
          timer.clear();
          this.#flushWaiters.delete(waiter);
          resolve();
        },
        fail: (error) => {
          timer.clear();
          this.#flushWaiters.delete(waiter);
          reject(error);
        },
      };
      const timer = deadline(
        this.#env,
        `publish flush (${this.unpersistedCount()} unpersisted)`,
        timeoutMs,
        signal,
        waiter.fail,
      );
      this.#flushWaiters.add(waiter);
    });
  }
}
