import { InvalidOptionsError, MAX_TIMEOUT_MS, RetryExhaustedError } from '@amps-ts/core-protocol';
import { describe, expect, it } from 'vitest';
import { describeDelayStrategyConformance } from '../../exponential/test/conformance/delay-strategy.js';
import { fakeEnvironment } from '../../exponential/test/conformance/environment.js';
import { decorrelatedDelay, decorrelatedJitter } from '../src/index.js';

const a = 'tcp://a:9007/amps/json';
const b = 'tcp://b:9007/amps/json';

describeDelayStrategyConformance({
  name: 'decorrelatedJitter',
  create: (environment) => decorrelatedJitter({ environment }),
  createWithRetryTime: (environment, maximumRetryTimeMs) => decorrelatedJitter({ environment, maximumRetryTimeMs }),
  load: () => import('../src/index.js'),
});

/** An environment whose random draws are `values`, in turn. */
function scriptedRandom(...values: number[]) {
  const environment = fakeEnvironment();
  let i = 0;
  environment.random = () => values[i++ % values.length] as number;
  return environment;
}

describe('decorrelatedDelay (the pure math)', () => {
  it('refuses an environment without the functions it uses (a TypeError on a later reconnect otherwise)', () => {
    expect(() => decorrelatedJitter({ environment: { now: () => 0 } as never })).toThrow(
      'decorrelatedJitter: environment needs now() and random()',
    );
  });

  const settings = { baseMs: 100, capMs: 10_000 };

  it('draws between base and three times the previous wait', () => {
    expect(decorrelatedDelay(100, 0, settings)).toBe(100);
    expect(decorrelatedDelay(100, 0.5, settings)).toBe(200);
    expect(decorrelatedDelay(100, 0.999_999, settings)).toBe(300);
    expect(decorrelatedDelay(1_000, 0.5, settings)).toBe(1_550);
  });

  it('never exceeds the cap', () => {
    expect(decorrelatedDelay(9_000, 0.9, settings)).toBe(10_000);
    expect(decorrelatedDelay(10_000, 0, settings)).toBe(100);
  });
});

describe('decorrelatedJitter', () => {
  it('defaults: base 100 ms, cap 10 s, no retry budget', () => {
    expect(decorrelatedJitter().options).toEqual({
      baseMs: 100,
      capMs: 10_000,
      maximumRetryTimeMs: 0,
      maximumAttempts: 0,
    });
  });

  it('sleep = min(cap, random(base, previous x 3)), each wait built on the one before', () => {
    const strategy = decorrelatedJitter({ baseMs: 100, capMs: 2_000, environment: scriptedRandom(1 - 1e-9) });
    const waits = Array.from({ length: 6 }, () => strategy.getConnectWaitDuration(a));
    expect(waits).toEqual([0, 300, 900, 2_000, 2_000, 2_000]);
  });

  it('per sweep of the list: an untried server is tried at once, a repeat waits', () => {
    const strategy = decorrelatedJitter({ environment: scriptedRandom(0.5) });
    expect([a, b, a, b, a].map((uri) => strategy.getConnectWaitDuration(uri))).toEqual([0, 0, 200, 0, 350]);
  });

  it('reset() starts again from the base', () => {
    const strategy = decorrelatedJitter({ environment: scriptedRandom(0.5) });
    for (let i = 0; i < 6; i++) strategy.getConnectWaitDuration(a);
    strategy.reset();
    expect([a, a, a].map((uri) => strategy.getConnectWaitDuration(uri))).toEqual([0, 200, 350]);
  });

  it('stops at the retry budget in time, never sleeping past it', () => {
    const environment = scriptedRandom(1 - 1e-9);
    const strategy = decorrelatedJitter({ maximumRetryTimeMs: 1_000, environment });
    const waits: number[] = [];
    const give = () => {
      for (;;) {
        const wait = strategy.getConnectWaitDuration(a);
        waits.push(wait);
        environment.advance(wait);
      }
    };
    expect(give).toThrow(RetryExhaustedError);
    expect(waits).toEqual([0, 300, 700]);
    expect(give).toThrow('gave up reconnecting after 1.0 s and 3 attempts (maximumRetryTimeMs 1000)');
  });

  it('stops at the retry budget in attempts', () => {
    const strategy = decorrelatedJitter({ maximumAttempts: 4, environment: fakeEnvironment() });
    for (let i = 0; i < 4; i++) strategy.getConnectWaitDuration(a);
    expect(() => strategy.getConnectWaitDuration(a)).toThrow('and 4 attempts (maximumAttempts 4)');
  });

  it('rejects bad options with an InvalidOptionsError', () => {
    for (const options of [
      { baseMs: -1 },
      { capMs: Number.NaN },
      { baseMs: 500, capMs: 100 },
      { maximumAttempts: 0.5 },
    ]) {
      expect(() => decorrelatedJitter(options), JSON.stringify(options)).toThrow(InvalidOptionsError);
    }
    expect(() => decorrelatedJitter({ baseMs: 500, capMs: 100 })).toThrow(
      'decorrelatedJitter: capMs must be at least baseMs (500), got 100',
    );
  });

  it('refuses a baseMs of 0: every wait would be 0, retrying in a busy loop however large capMs is', () => {
    expect(() => decorrelatedJitter({ baseMs: 0 })).toThrow(
      'decorrelatedJitter: baseMs must be 1 to 2147483647 ms, got 0',
    );
    const strategy = decorrelatedJitter({ baseMs: 1, environment: scriptedRandom(0.5) });
    const waits = Array.from({ length: 12 }, () => strategy.getConnectWaitDuration(a));
    expect(waits.at(-1)).toBeGreaterThan(100);
  });

  it('refuses a capMs longer than setTimeout can wait (it would fire at once: a busy reconnect loop)', () => {
    expect(decorrelatedJitter({ capMs: MAX_TIMEOUT_MS }).options.capMs).toBe(MAX_TIMEOUT_MS);
    expect(() => decorrelatedJitter({ capMs: MAX_TIMEOUT_MS + 1 })).toThrow(
      'decorrelatedJitter: capMs must be 0 to 2147483647 ms, got 2147483648',
    );
  });
});
