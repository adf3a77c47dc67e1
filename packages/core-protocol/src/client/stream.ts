import { SlowConsumerError } from '../errors.js';
import { countOption } from './checks.js';

export type MessageHandler<T> = (item: T) => void | Promise<void>;

export interface StreamOptions<T> {
  /** Callback mode: every item goes to this handler; iterating the stream is then an error. */
  onMessage?: MessageHandler<T> | undefined;
  /**
   * The most items a consumer that is not keeping up holds: buffered for an iterator, or handed
   * to a callback whose promise has not settled yet.
   * @default 1024
   */
  maxQueue?: number | undefined;
  /** Called with `true` when the queue is full and `false` once it has drained to half. */
  onFlowControl?: ((paused: boolean) => boolean) | undefined;
  /** Where handler exceptions and rejected handler promises go. */
  onHandlerError?: ((error: unknown, item: T) => void) | undefined;
  /** Called after the handler for an item has returned (or its promise resolved): auto-ack hook. */
  onHandled?: ((item: T) => void) | undefined;
  /** The queue overflowed and the connection could not pause: the stream has ended with `error`. */
  onOverflow?: ((error: Error) => void) | undefined;
}

/**
 * The consumer side of a subscription or query: a callback, or a bounded async iterator.
 *
 * When the iterator's queue fills, the stream asks the connection to pause (`onFlowControl`);
 * if it cannot, the stream ends with a `SlowConsumerError` rather than grow without bound.
 */
export class MessageStream<T> implements AsyncIterable<T> {
  readonly #handler: MessageHandler<T> | undefined;
  #maxQueue: number;
  readonly #options: StreamOptions<T>;
  #queue: T[] = [];
  #head = 0;
  #waiter: ((result: IteratorResult<T>) => void) | undefined;
  #waiterReject: ((error: unknown) => void) | undefined;
  #ended = false;
  #error: Error | undefined;
  #paused = false;
  #iterating = false;
  #lastYielded: T | undefined;
  #count = 0;
  /** Callback mode: handler promises not settled yet. */
  #unsettled = 0;

  constructor(options: StreamOptions<T> = {}) {
    this.#options = options;
    this.#handler = options.onMessage;
    // NaN or a fraction would leave the queue without a bound.
    this.#maxQueue = countOption(options.maxQueue, 'maxQueue') ?? 1024;
  }

  /** Items received so far. */
  get count(): number {
    return this.#count;
  }

  get ended(): boolean {
    return this.#ended;
  }

  /**
   * Whether the consumer holds twice `maxQueue`: what came after its flow control paused the
   * source. A source that can send it all again later may drop more until it has caught up.
   */
  get overfull(): boolean {
    return (this.#handler ? this.#unsettled : this.#queue.length - this.#head) >= 2 * this.#maxQueue;
  }

  /** Delivers an item to the handler or the iterator. Ignored after `end()`. */
  push(item: T): void {
    if (this.#ended) return;
    this.#count++;
    const handler = this.#handler;
    if (handler) {
      try {
        const result = handler(item);
        if (result && typeof (result as Promise<void>).then === 'function') {
          // Not awaited before the next item, but bounded like an iterator's queue: past maxQueue
          // unsettled, the connection pauses (or the stream ends) until half have settled.
          if (++this.#unsettled >= this.#maxQueue) this.#full();
          // As on the synchronous path, a throwing onHandled goes to onHandlerError too, rather
          // than reject where nobody listens.
          (result as Promise<void>)
            .then(() => this.#options.onHandled?.(item))
            .catch((error: unknown) => this.#options.onHandlerError?.(error, item))
            .finally(() => {
              if (--this.#unsettled <= this.#maxQueue / 2) this.#resumeIfPaused();
            });
        } else {
          this.#options.onHandled?.(item);
        }
      } catch (error) {
        this.#options.onHandlerError?.(error, item);
      }
      return;
    }
    const waiter = this.#waiter;
    if (waiter) {
      this.#waiter = undefined;
      this.#waiterReject = undefined;
      this.#lastYielded = item;
      waiter({ value: item, done: false });
      return;
    }
    this.#queue.push(item);
    if (this.#queue.length - this.#head >= this.#maxQueue) this.#full();
  }

  /** The consumer holds maxQueue items: pause the connection, or, if it cannot pause, end. */
  #full(): void {
    if (this.#paused || this.#ended) return;
    this.#paused = true;
    if (this.#options.onFlowControl?.(true)) return;
    this.overflow(
      new SlowConsumerError(
        `the consumer fell ${this.#maxQueue} messages behind and the connection cannot pause; consume faster or raise maxQueue`,
      ),
    );
  }

  /** Ends the stream with `error`: its consumer could not be kept up with (`onOverflow` hears of it). */
  overflow(error: Error): void {
    this.end(error);
    this.#options.onOverflow?.(error);
  }

  /** For a consumer that keeps every item anyway (`toArray`): a bound would only fail it. */
  unbound(): void {
    this.#maxQueue = Number.POSITIVE_INFINITY;
  }

  /** Ends the stream: iterators finish (with `error`, if given) once the queue is drained. */
  end(error?: Error): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#error = error;
    this.#resumeIfPaused();
    if (this.#waiter) {
      const waiter = this.#waiter;
      const reject = this.#waiterReject;
      this.#waiter = undefined;
      this.#waiterReject = undefined;
      if (error) reject?.(error);
      else waiter({ value: undefined, done: true });
    }
  }

  #resumeIfPaused(): void {
    if (this.#paused) {
      this.#paused = false;
      this.#options.onFlowControl?.(false);
    }
  }

  #next(): Promise<IteratorResult<T>> {
    if (this.#lastYielded !== undefined) {
      const handled = this.#lastYielded;
      this.#lastYielded = undefined;
      this.#options.onHandled?.(handled);
    }
    if (this.#head < this.#queue.length) {
      const item = this.#queue[this.#head] as T;
      this.#queue[this.#head++] = undefined as T;
      if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
        this.#queue = this.#queue.slice(this.#head);
        this.#head = 0;
      }
      if (this.#paused && this.#queue.length - this.#head <= this.#maxQueue / 2) this.#resumeIfPaused();
      this.#lastYielded = item;
      return Promise.resolve({ value: item, done: false });
    }
    if (this.#ended) {
      return this.#error ? Promise.reject(this.#error) : Promise.resolve({ value: undefined, done: true });
    }
    return new Promise((resolve, reject) => {
      this.#waiter = resolve;
      this.#waiterReject = reject;
    });
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    if (this.#handler)
      throw new TypeError('this stream delivers to its onMessage callback; it cannot also be iterated');
    if (this.#iterating) throw new TypeError('a stream can be iterated only once (it is being, or has been)');
    this.#iterating = true;
    return {
      next: () => this.#next(),
      return: async () => {
        // Nobody will read again: drop what is queued and end the stream, so later items are
        // dropped too instead of refilling the queue and pausing the connection for good.
        this.#lastYielded = undefined;
        this.#queue = [];
        this.#head = 0;
        this.end();
        this.#onReturn?.();
        return { value: undefined, done: true };
      },
    };
  }

  #onReturn: (() => void) | undefined;

  /** Runs when an iterating consumer stops early (`break`, `return`, a thrown error). */
  onReturn(callback: () => void): void {
    this.#onReturn = callback;
  }
}
