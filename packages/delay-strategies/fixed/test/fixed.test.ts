import { InvalidOptionsError, MAX_TIMEOUT_MS, RetryExhaustedError } from '@amps-ts/core-protocol';
import { describe, expect, it } from 'vitest';
import { describeDelayStrategyConformance } from '../../exponential/test/conformance/delay-strategy.js';
import { fakeEnvironment } from '../../exponential/test/conformance/environment.js';
import { fixedDelay } from '../src/index.js';

const a = 'tcp://a:9007/amps/json';
const b = 'tcp://b:9007/amps/json';

describeDelayStrategyConformance({
  name: 'fixedDelay',
  create: (environment) => fixedDelay({ environment }),
  createWithRetryTime: (environment, maximumRetryTimeMs) => fixedDelay({ environment, maximumRetryTimeMs }),
  load: () => import('../src/index.js'),
});

describe('fixedDelay', () => {
  it('refuses an environment without the functions it uses (a TypeError on a later reconnect otherwise)', () => {
    expect(() => fixedDelay({ environment: {} as never })).toThrow('fixedDelay: environment needs now()');
  });

  it('defaults to AMPS: 200 ms, never gives up', () => {
    expect(fixedDelay().options).toEqual({ delayMs: 200, maximumRetryTimeMs: 0, maximumAttempts: 0 });
  });

  it('one server: the first attempt is immediate, every retry waits delayMs', () => {
    const strategy = fixedDelay({ delayMs: 250, environment: fakeEnvironment() });
    expect([a, a, a, a].map((uri) => strategy.getConnectWaitDuration(uri))).toEqual([0, 250, 250, 250]);
  });

  it('per sweep of the list: an untried server is tried at once, a repeat waits', () => {
    const strategy = fixedDelay({ environment: fakeEnvironment() });
    expect([a, b, a, b, b].map((uri) => strategy.getConnectWaitDuration(uri))).toEqual([0, 0, 200, 0, 200]);
    strategy.reset();
    expect([b, a].map((uri) => strategy.getConnectWaitDuration(uri))).toEqual([0, 0]);
  });

  it('gives up once maximumRetryTimeMs has passed since the first wait after a reset, never sleeping past it', () => {
    const environment = fakeEnvironment();
    const strategy = fixedDelay({ delayMs: 300, maximumRetryTimeMs: 1_000, environment });
    const waits: number[] = [];
    const give = () => {
      for (;;) {
        const wait = strategy.getConnectWaitDuration(a);
        waits.push(wait);
        environment.advance(wait);
      }
    };
    expect(give).toThrow(RetryExhaustedError);
    expect(waits).toEqual([0, 300, 300, 300, 100]);
    expect(give).toThrow('gave up reconnecting after 1.0 s and 5 attempts (maximumRetryTimeMs 1000)');
  });

  it('gives up after maximumAttempts attempts', () => {
    const strategy = fixedDelay({ maximumAttempts: 2, environment: fakeEnvironment() });
    strategy.getConnectWaitDuration(a);
    strategy.getConnectWaitDuration(a);
    expect(() => strategy.getConnectWaitDuration(a)).toThrow('and 2 attempts (maximumAttempts 2)');
  });

  it('rejects bad options with an InvalidOptionsError', () => {
    for (const options of [
      { delayMs: -1 },
      { delayMs: Number.NaN },
      { delayMs: MAX_TIMEOUT_MS + 1 },
      { maximumRetryTimeMs: -1 },
      { maximumAttempts: -1 },
    ]) {
      expect(() => fixedDelay(options), JSON.stringify(options)).toThrow(InvalidOptionsError);
    }
    expect(() => fixedDelay({ delayMs: -1 })).toThrow('fixedDelay: delayMs must be 0 to 2147483647 ms, got -1');
  });

  it('refuses a delayMs longer than setTimeout can wait (it would fire at once: a busy reconnect loop)', () => {
    expect(fixedDelay({ delayMs: MAX_TIMEOUT_MS }).options.delayMs).toBe(MAX_TIMEOUT_MS);
    expect(() => fixedDelay({ delayMs: 30 * 24 * 3600_000 })).toThrow(
      'fixedDelay: delayMs must be 0 to 2147483647 ms, got 2592000000',
    );
  });
});
