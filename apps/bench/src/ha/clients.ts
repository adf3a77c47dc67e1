/** The clients of the HA benchmarks: a steady publisher and a bookmark subscriber that checks what it gets. */
import { Bookmarks, type ConnectionState } from '@amps-ts/core-protocol';
import { HAClient, type HAClientOptions, type HAStateEvent } from '@amps-ts/ha-client';

/** Resolves with `performance.now()` when `predicate` first holds for a delivered message, or with undefined after `timeoutMs`. */
export interface MessageWait {
  promise: Promise<number | undefined>;
  cancel(): void;
}

/**
 * Publishes `1`, `2`, `3`, ... to `topic`, one message per millisecond (a steady trickle, so a
 * failover's first message is never waiting on the publisher for long).
 */
export class SteadyPublisher {
  published = 0;
  readonly #timer: ReturnType<typeof setInterval>;

  constructor(
    readonly client: HAClient,
    topic: string,
  ) {
    this.#timer = setInterval(() => {
      // Stored while disconnected and sent after the failover; a full store would block, never reject.
      client.publish(topic, String(++this.published))?.catch(() => {});
    }, 1);
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}

/**
 * A bookmark subscription on HAClient that counts what arrives: anything out of sequence is a
 * gap (lost) or a duplicate, which the HA client promises never happen.
 */
export class CheckingSubscriber {
  received = 0;
  gaps = 0;
  duplicates = 0;
  #last = 0;
  #waiters = new Set<{ predicate: () => boolean; resolve: (at: number | undefined) => void }>();
  #stateWaiters = new Set<{ state: ConnectionState; resolve: (at: number | undefined) => void }>();
  /** `performance.now()` of each state change since the last `clearStates()`. */
  states: Array<{ state: ConnectionState; at: number; event: HAStateEvent }> = [];

  readonly client: HAClient;

  constructor(name: string, topic: string, options: HAClientOptions) {
    this.client = new HAClient(name, options);
    this.client.onStateChange((e) => {
      const at = performance.now();
      this.states.push({ state: e.state, at, event: e });
      for (const waiter of this.#stateWaiters) {
        if (waiter.state === e.state) {
          this.#stateWaiters.delete(waiter);
          waiter.resolve(at);
        }
      }
    });
    this.client.subscribe(topic, {
      bookmark: Bookmarks.MOST_RECENT,
      onMessage: (m) => {
        const at = performance.now();
        const n = Number(m.text());
        if (n <= this.#last) this.duplicates++;
        else {
          if (n !== this.#last + 1) this.gaps++;
          this.#last = n;
        }
        this.received++;
        for (const waiter of this.#waiters) {
          if (waiter.predicate()) {
            this.#waiters.delete(waiter);
            waiter.resolve(at);
          }
        }
      },
    });
  }

  /** The first delivery (from now on) for which `predicate` holds, checked as the message arrives. */
  nextMessage(predicate: () => boolean, timeoutMs: number): MessageWait {
    let waiter: { predicate: () => boolean; resolve: (at: number | undefined) => void } | undefined;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const promise = new Promise<number | undefined>((resolve) => {
      waiter = { predicate, resolve };
      this.#waiters.add(waiter);
      timer = setTimeout(() => resolve(undefined), timeoutMs);
    }).finally(() => {
      clearTimeout(timer);
      if (waiter) this.#waiters.delete(waiter);
    });
    return {
      promise,
      cancel: () => {
        waiter?.resolve(undefined);
      },
    };
  }

  /** The highest message number delivered so far. */
  get last(): number {
    return this.#last;
  }

  /** `performance.now()` of the next change to `state` (undefined after `timeoutMs`). */
  nextState(state: ConnectionState, timeoutMs: number): Promise<number | undefined> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const waiter = { state, resolve: (_at: number | undefined) => {} };
    return new Promise<number | undefined>((resolve) => {
      waiter.resolve = resolve;
      this.#stateWaiters.add(waiter);
      timer = setTimeout(() => resolve(undefined), timeoutMs);
    }).finally(() => {
      clearTimeout(timer);
      this.#stateWaiters.delete(waiter);
    });
  }

  /** Resolves once `count` more messages arrived (undefined after `timeoutMs`). */
  async messages(count: number, timeoutMs: number): Promise<number | undefined> {
    const target = this.received + count;
    return this.nextMessage(() => this.received >= target, timeoutMs).promise;
  }
}

/** Nearest-rank percentile of `values` (0 < p <= 100). */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] as number;
}

/** Rounds to 0.1 (ms) for reports. */
export const tenth = (n: number): number => Math.round(n * 10) / 10;
