/**
 * The verdict against faults put into the subscriber's path on purpose: a verdict that says PASS
 * over any of them is wrong. The subscriber's HAClient is wrapped so that a test can drop, move or
 * replay a delivery before the demo's handler sees it.
 */
import type { Message, SubscribeOptions } from '@amps-ts/core-protocol';
import { afterEach, describe, expect, it, vi } from 'vitest';

type Handler = (m: Message) => unknown;
interface Fault {
  /** Called instead of the demo's handler for each delivery to topic `topic`. */
  deliver(topic: string, m: Message, handlers: Map<string, Handler>): unknown;
}

const injected: { fault?: Fault; last?: { m: Message; handler: Handler } } = {};

vi.mock('@amps-ts/ha-client', async (importOriginal) => {
  const actual = await importOriginal<typeof import('@amps-ts/ha-client')>();
  class FaultyHAClient extends actual.HAClient {
    readonly #handlers = new Map<string, Handler>();
    readonly #isSubscriber: boolean;
    constructor(name: string, options: ConstructorParameters<typeof actual.HAClient>[1]) {
      super(name, options);
      this.#isSubscriber = name === 'chaos-subscriber';
    }
    override subscribe(topic: string, options: SubscribeOptions = {}) {
      const onMessage = options.onMessage as Handler | undefined;
      if (!this.#isSubscriber || !onMessage) return super.subscribe(topic, options);
      this.#handlers.set(topic, onMessage);
      return super.subscribe(topic, {
        ...options,
        onMessage: (m: Message) => {
          injected.last = { m, handler: onMessage };
          return injected.fault ? injected.fault.deliver(topic, m, this.#handlers) : onMessage(m);
        },
      } as SubscribeOptions);
    }
  }
  return { ...actual, HAClient: FaultyHAClient };
});

const { runChaos } = await import('../src/chaos.js');

afterEach(() => {
  injected.fault = undefined;
  injected.last = undefined;
});

const n = (m: Message) => m.json<{ n: number }>().n;

// Seed 4 takes no chaos action in its first 1.4 s: a short, quiet run where every fault is ours.
const quiet = { seed: 4, durationMs: 1000, rate: 100, servers: 2 };

describe('the verdict, with faults injected into the subscriber', () => {
  // A subscription handed another topic's message (say its sub id mixed up on a resubscribe):
  // the message came once and no stream went backwards, yet the subscription it was published
  // for never got it.
  it('FAILs when a message is delivered to the wrong topic’s subscription', async () => {
    injected.fault = {
      deliver: (topic, m, handlers) =>
        topic === 'orders-1' && n(m) === 11 ? handlers.get('orders-0')?.(m) : handlers.get(topic)?.(m),
    };
    const report = await runChaos({ ...quiet, topics: 2 });
    expect(report).toMatchObject({ misrouted: 1, ok: false });
  }, 30_000);

  // The count is taken as soon as the last message is in: a duplicate that comes after that (a
  // replay still under way, say) is never seen, and the verdict says "exactly once".
  it('FAILs when a duplicate arrives shortly after the last message', async () => {
    const report = await runChaos({
      ...quiet,
      onEvent: (event) => {
        if (event.type !== 'draining') return;
        setTimeout(() => {
          const last = injected.last;
          last?.handler(last.m);
        }, 1500);
      },
    });
    expect(report).toMatchObject({ duplicated: 1, ok: false });
  }, 30_000);
});
