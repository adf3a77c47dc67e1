import { InvalidOptionsError } from '@amps-ts/core-protocol';
import { describe, expect, it } from 'vitest';
import { browserTransport } from '../src/index.js';

describe('browserTransport options', () => {
  it('rejects bad options with InvalidOptionsError', () => {
    const cases: unknown[] = [
      'fast',
      { highWaterMark: 0 },
      { lowWaterMark: -1 },
      { highWaterMark: 1000, lowWaterMark: 2000 },
      { drainPollMs: 0 },
      { connectTimeoutMs: 1.5 },
      { closeTimeoutMs: -1 },
      // setTimeout would fire these at once.
      { connectTimeoutMs: 2 ** 31 },
      { closeTimeoutMs: 2 ** 31 },
      { drainPollMs: 2 ** 31 },
      { WebSocket: 'ws' },
      { protocols: [1] },
      // Found only at the first onHint, as a TypeError, otherwise.
      { page: 'window' },
      { page: { window: {} } },
      { page: { document: { visibilityState: 'visible' } } },
    ];
    for (const options of cases) {
      expect(() => browserTransport(options as never), JSON.stringify(options)).toThrow(InvalidOptionsError);
    }
    expect(browserTransport({ highWaterMark: 1000, protocols: ['amps'] }).schemes).toEqual(['ws', 'wss']);
  });

  it('connect() rejects bad input with typed errors, without touching a WebSocket', async () => {
    let constructed = 0;
    const transport = browserTransport({
      WebSocket: class {
        constructor() {
          constructed++;
        }
      } as unknown as typeof WebSocket,
    });
    const handlers = { onData() {}, onClose() {} };
    await expect(transport.connect('tcp://h:9007/amps/json', handlers)).rejects.toMatchObject({ code: 'invalid_uri' });
    await expect(transport.connect('ws://h:9007/nope', handlers)).rejects.toMatchObject({ code: 'invalid_uri' });
    await expect(transport.connect('ws://h:9007/amps', {} as never)).rejects.toMatchObject({
      code: 'invalid_options',
    });
    await expect(transport.connect('ws://h:9007/amps', handlers, { timeoutMs: -5 })).rejects.toMatchObject({
      code: 'invalid_options',
    });
    expect(constructed).toBe(0);
  });

  it('a URL the browser refuses to open (ws:// from an https:// page) is an InvalidUriError, not retryable', async () => {
    const refusing = (name: string) =>
      browserTransport({
        WebSocket: class {
          constructor() {
            throw new DOMException(
              'An insecure WebSocket connection may not be initiated from a page loaded over HTTPS.',
              name,
            );
          }
        } as unknown as typeof WebSocket,
      });
    const handlers = { onData() {}, onClose() {} };
    for (const name of ['SecurityError', 'SyntaxError']) {
      const error = await refusing(name)
        .connect('ws://u:secret@h:9007/amps/json', handlers)
        .catch((e: unknown) => e);
      expect(error).toMatchObject({
        name: 'InvalidUriError',
        isRetryable: false,
        message: `cannot connect to ws://u:***@h:9007/amps/json: the browser refuses it (${name}: An insecure WebSocket connection may not be initiated from a page loaded over HTTPS.)`,
      });
    }
    // Anything else the constructor throws stays a ConnectionError: another attempt may work.
    const odd = browserTransport({
      WebSocket: class {
        constructor() {
          throw new Error('out of sockets');
        }
      } as unknown as typeof WebSocket,
    });
    await expect(odd.connect('ws://h:9007/amps/json', handlers)).rejects.toMatchObject({
      name: 'ConnectionError',
      isRetryable: true,
    });
  });
});
