import { InvalidOptionsError } from '../errors.js';
import type { Message } from '../message.js';
import type { CommandWaitOptions } from './client.js';
import type { MessageStream } from './stream.js';

/** What a subscription asks of the client that owns it. */
export interface SubscriptionOwner {
  unsubscribe(subId: string): Promise<void>;
  /** The client's `pause` (`paused`) or `resume` of this one id. */
  setPaused(subId: string, paused: boolean, options: CommandWaitOptions): Promise<void>;
}

/**
 * A live subscription: an async iterable of messages (or a callback, when created with
 * `onMessage`), with `ready` (the server accepted it) and `closed` (it ended, and why).
 */
export class Subscription implements AsyncIterable<Message> {
  readonly subId: string;
  /** Resolves when the server has accepted the subscription; rejects with the reason it did not. */
  readonly ready: Promise<void>;
  /** Resolves when the subscription has ended: with the error that ended it, or `undefined`. */
  readonly closed: Promise<Error | undefined>;
  readonly #stream: MessageStream<Message>;
  readonly #owner: SubscriptionOwner;
  #unsubscribed = false;

  constructor(
    subId: string,
    stream: MessageStream<Message>,
    owner: SubscriptionOwner,
    ready: Promise<void>,
    closed: Promise<Error | undefined>,
  ) {
    this.subId = subId;
    this.#stream = stream;
    this.#owner = owner;
    this.ready = ready;
    this.closed = closed;
    // Nobody has to await `ready`: its failure also ends the stream and resolves `closed`.
    ready.catch(() => {});
    stream.onReturn(() => void this.unsubscribe().catch(() => {}));
  }

  /** Messages delivered so far. */
  get received(): number {
    return this.#stream.count;
  }

  /** Stops the subscription on the server and ends iteration. Idempotent. */
  async unsubscribe(): Promise<void> {
    if (this.#unsubscribed) return;
    this.#unsubscribed = true;
    await this.#owner.unsubscribe(this.subId);
  }

  /**
   * Pauses this bookmark subscription on the server: nothing comes, replayed or live, until
   * `resume()` (the client's `pause` of this `subId`).
   */
  pause(options: CommandWaitOptions = {}): Promise<void> {
    return this.#setPaused(true, options);
  }

  /** Resumes this paused bookmark subscription: it replays from where it stopped, then goes live. */
  resume(options: CommandWaitOptions = {}): Promise<void> {
    return this.#setPaused(false, options);
  }

  #setPaused(paused: boolean, options: CommandWaitOptions): Promise<void> {
    // Ended here (unsubscribed, replaced, failed): the id may be another subscription's by now.
    if (this.#stream.ended) {
      const what = paused ? 'pause' : 'resume';
      return Promise.reject(new InvalidOptionsError(`${what}: subscription ${this.subId} has ended`));
    }
    return this.#owner.setPaused(this.subId, paused, options);
  }

  [Symbol.asyncIterator](): AsyncIterator<Message> {
    return this.#stream[Symbol.asyncIterator]();
  }
}

/** Counts from the `stats` ack of a SOW query or sow_delete (AMPS sends them on no other). */
export interface QueryStats {
  matches?: number | undefined;
  topicMatches?: number | undefined;
  recordsReturned?: number | undefined;
  recordsInserted?: number | undefined;
  recordsUpdated?: number | undefined;
  recordsDeleted?: number | undefined;
}

export function statsOf(ack: Message | undefined): QueryStats {
  if (!ack) return {};
  return {
    matches: ack.matches,
    topicMatches: ack.topicMatches,
    recordsReturned: ack.recordsReturned,
    recordsInserted: ack.recordsInserted,
    recordsUpdated: ack.recordsUpdated,
    recordsDeleted: ack.recordsDeleted,
  };
}

/** A SOW query: the records as an async iterable (or callback), then `stats` from its completion. */
export class SowQuery implements AsyncIterable<Message> {
  readonly queryId: string;
  /**
   * Resolves with the query's counts once it has completed; rejects if it failed. Leaving the
   * iterator early does not cancel the query (AMPS cannot): the rest of its records are dropped
   * as they arrive, and `stats` still resolves when the server completes it.
   */
  readonly stats: Promise<QueryStats>;
  readonly #stream: MessageStream<Message>;

  constructor(queryId: string, stream: MessageStream<Message>, stats: Promise<QueryStats>) {
    this.queryId = queryId;
    this.#stream = stream;
    this.stats = stats;
    stats.catch(() => {});
  }

  [Symbol.asyncIterator](): AsyncIterator<Message> {
    return this.#stream[Symbol.asyncIterator]();
  }

  /** Collects every record, then returns them with the stats. Not bounded by `maxQueue`. */
  async toArray(): Promise<{ records: Message[]; stats: QueryStats }> {
    this.#stream.unbound();
    const records: Message[] = [];
    for await (const record of this) records.push(record);
    return { records, stats: await this.stats };
  }
}
