import { describe, expect, it } from 'vitest';
import { MessageStream } from '../src/index.js';

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
