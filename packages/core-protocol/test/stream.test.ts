import { describe, expect, it } from 'vitest';
import { MessageStream, SlowConsumerError } from '../src/index.js';

describe('MessageStream with an onMessage handler', () => {
  it('passes a throwing onHandled to onHandlerError, for an async handler as for a sync one', async () => {
    for (const handler of [() => {}, async () => {}]) {
      const errors: Array<[unknown, number]> = [];
      let reported!: () => void;
      const done = new Promise<void>((resolve) => {
        reported = resolve;
      });
      const stream = new MessageStream<number>({
        onMessage: handler,
        onHandled: () => {
          throw new Error('store unavailable');
        },
        onHandlerError: (error, item) => {
          errors.push([error, item]);
          reported();
        },
      });
      stream.push(7);
      // Without this, the async case is an unhandled rejection (vitest fails the run on one).
      await done;
      expect(errors.map(([error, item]) => [(error as Error).message, item])).toEqual([['store unavailable', 7]]);
    }
  });

  it('bounds the unsettled promises of an async handler by maxQueue: pauses at maxQueue, resumes once half have settled', async () => {
    const flow: boolean[] = [];
    const settle: Array<() => void> = [];
    const handled: number[] = [];
    const stream = new MessageStream<number>({
      maxQueue: 4,
      onMessage: () =>
        new Promise<void>((resolve) => {
          settle.push(resolve);
        }),
      onHandled: (n) => handled.push(n),
      onFlowControl: (paused) => {
        flow.push(paused);
        return true;
      },
    });
    for (let n = 1; n <= 3; n++) stream.push(n);
    expect(flow).toEqual([]);
    stream.push(4);
    expect(flow).toEqual([true]);
    stream.push(5); // already paused: what the connection had read still arrives
    expect(flow).toEqual([true]);
    for (const resolve of settle.splice(0, 2)) resolve();
    await new Promise((resolve) => setImmediate(resolve)); // the settled promises' callbacks have run
    expect(handled).toEqual([1, 2]);
    expect(flow).toEqual([true]); // 3 unsettled: more than half of 4
    settle.shift()?.();
    await new Promise((resolve) => setImmediate(resolve));
    expect(flow).toEqual([true, false]);
    expect(stream.ended).toBe(false);
  });

  it('ends with a SlowConsumerError when an async handler holds maxQueue unsettled promises and the connection cannot pause', () => {
    const overflow: Error[] = [];
    let calls = 0;
    const stream = new MessageStream<number>({
      maxQueue: 3,
      onMessage: () => {
        calls++;
        return new Promise<void>(() => {});
      },
      onOverflow: (error) => overflow.push(error),
    });
    for (let n = 1; n <= 5; n++) stream.push(n);
    expect(calls).toBe(3);
    expect(stream.ended).toBe(true);
    expect(overflow).toHaveLength(1);
    expect(SlowConsumerError.isInstance(overflow[0])).toBe(true);
    expect(overflow[0]?.message).toBe(
      'the consumer fell 3 messages behind and the connection cannot pause; consume faster or raise maxQueue',
    );
  });

  it('does not count a synchronous handler, however many items pass', () => {
    const flow: boolean[] = [];
    const stream = new MessageStream<number>({
      maxQueue: 2,
      onMessage: () => {},
      onFlowControl: (p) => !!flow.push(p),
    });
    for (let n = 1; n <= 100; n++) stream.push(n);
    expect(flow).toEqual([]);
    expect(stream.ended).toBe(false);
  });

  it('can be iterated once: after a break, iterating again says so', async () => {
    const stream = new MessageStream<number>({});
    stream.push(1);
    stream.push(2);
    for await (const n of stream) if (n === 1) break;
    expect(() => stream[Symbol.asyncIterator]()).toThrow(
      'a stream can be iterated only once (it is being, or has been)',
    );
  });
});
