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
});
