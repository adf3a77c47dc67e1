import type { HAStateEvent } from './ha-client.js';

/**
 * The queue behind one `states()` iterator, bounded by `maxQueue`. A monitor wants the client's
 * current state more than its full history, so a consumer that falls behind (or never iterates)
 * loses the oldest events, not the stream, as a message stream would with a `SlowConsumerError`:
 * it keeps seeing the newest states, and the first event it reads after a gap says in `dropped`
 * how many it missed.
 */
export class StateStream implements AsyncIterable<HAStateEvent> {
  readonly #maxQueue: number;
  readonly #onReturn: () => void;
  #queue: HAStateEvent[] = [];
  /** Events dropped just before the oldest one queued. */
  #dropped = 0;
  #ended = false;
  #iterating = false;
  /** `next()` calls waiting for an event, oldest first: an iterator may be asked again before it answers. */
  #waiters: Array<(result: IteratorResult<HAStateEvent>) => void> = [];

  /** `onReturn` runs when the consumer stops early (`break`, `return`, a thrown error). */
  constructor(maxQueue: number, onReturn: () => void) {
    this.#maxQueue = maxQueue;
    this.#onReturn = onReturn;
  }

  push(event: HAStateEvent): void {
    if (this.#ended) return;
    const waiter = this.#waiters.shift();
    if (waiter) {
      waiter({ value: event, done: false });
      return;
    }
    if (this.#queue.length >= this.#maxQueue) {
      this.#queue.shift();
      this.#dropped++;
    }
    this.#queue.push(event);
  }

  /** Ends iteration once the queued events have been read. */
  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    for (const waiter of this.#waiters.splice(0)) waiter({ value: undefined, done: true });
  }

  #next(): Promise<IteratorResult<HAStateEvent>> {
    const event = this.#queue.shift();
    if (event) {
      const dropped = this.#dropped;
      this.#dropped = 0;
      return Promise.resolve({ value: dropped > 0 ? { ...event, dropped } : event, done: false });
    }
    if (this.#ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => {
      this.#waiters.push(resolve);
    });
  }

  [Symbol.asyncIterator](): AsyncIterator<HAStateEvent> {
    // As a message stream: each states() call gives one iterator.
    if (this.#iterating) throw new TypeError('a stream can be iterated only once (it is being, or has been)');
    this.#iterating = true;
    return {
      next: () => this.#next(),
      return: async () => {
        this.#queue = [];
        this.end();
        this.#onReturn();
        return { value: undefined, done: true };
      },
    };
  }
}
