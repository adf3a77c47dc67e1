import { InvalidOptionsError, MAX_TIMEOUT_MS, RetryExhaustedError } from '@amps-ts/core-protocol';
import { describe, expect, it } from 'vitest';
import {
  type ExponentialDelaySettings,
  exponentialBackoff,
  exponentialDelay,
  recommendedBackoff,
  recommendedBackoffOptions,
} from '../src/index.js';
import { describeDelayStrategyConformance } from './conformance/delay-strategy.js';
import { fakeEnvironment } from './conformance/environment.js';

const a = 'tcp://a:9007/amps/json';
const b = 'tcp://b:9007/amps/json';

/** An environment whose every random draw is `value`. */
function fixedRandom(value: number) {
  const environment = fakeEnvironment();
  environment.random = () => value;
  return environment;
}

describeDelayStrategyConformance({
  name: 'exponentialBackoff (AMPS defaults)',
  create: (environment) => exponentialBackoff({ environment }),
  createWithRetryTime: (environment, maximumRetryTimeMs) => exponentialBackoff({ environment, maximumRetryTimeMs }),
  load: () => import('../src/index.js'),
});
describeDelayStrategyConformance({
  name: 'recommendedBackoff',
  create: (environment) => recommendedBackoff({ environment }),
  createWithRetryTime: (environment, maximumRetryTimeMs) => recommendedBackoff({ environment, maximumRetryTimeMs }),
});
describeDelayStrategyConformance({
  name: 'exponentialBackoff (proportional jitter)',
  create: (environment) => exponentialBackoff({ environment, jitterMode: 'proportional', jitter: 0.5 }),
});

describe('exponentialDelay (the pure math)', () => {
  it('refuses an environment without the functions it uses (a TypeError on a later reconnect otherwise)', () => {
    expect(() => exponentialBackoff({ environment: { now: () => 0 } as never })).toThrow(
      'exponentialBackoff: environment needs now() and random()',
    );
  });

  const amps: ExponentialDelaySettings = {
    initialDelayMs: 200,
    backoffExponent: 2,
    maximumDelayMs: 20_000,
    jitter: 1,
    jitterMode: 'additive',
  };

  it('grows by the exponent from the initial delay up to the cap', () => {
    const waits = Array.from({ length: 10 }, (_, i) => exponentialDelay(i + 1, 0, amps));
    expect(waits).toEqual([200, 400, 800, 1600, 3200, 6400, 12800, 20000, 20000, 20000]);
    expect(exponentialDelay(1_000, 0, amps)).toBe(20_000);
  });

  it('additive: adds up to jitter x initial delay, after the cap (AMPS)', () => {
    expect(exponentialDelay(1, 0.5, amps)).toBe(300);
    expect(exponentialDelay(20, 0.999, amps)).toBe(20_200);
    expect(exponentialDelay(3, 0.25, { ...amps, jitter: 2 })).toBe(900);
  });

  it('full: anywhere in [0, delay)', () => {
    const full = { ...amps, jitterMode: 'full' } as const;
    expect(exponentialDelay(3, 0, full)).toBe(0);
    expect(exponentialDelay(3, 0.5, full)).toBe(400);
    expect(exponentialDelay(30, 0.999, full)).toBe(19_980);
  });

  it('proportional: within delay x (1 ± jitter), around the cap rather than on it', () => {
    const proportional = { ...amps, jitterMode: 'proportional', jitter: 0.5 } as const;
    expect(exponentialDelay(2, 0, proportional)).toBe(200);
    expect(exponentialDelay(2, 0.5, proportional)).toBe(400);
    expect(exponentialDelay(30, 0.999, proportional)).toBe(29_980);
  });

  it('full and proportional never reach the open end of their interval, even with a draw just under 1', () => {
    const justUnderOne = 1 - 2 ** -53;
    expect(exponentialDelay(5, justUnderOne, { ...amps, maximumDelayMs: 3_000, jitterMode: 'full' })).toBe(2_999);
    const proportional = { ...amps, maximumDelayMs: 3_000, jitterMode: 'proportional', jitter: 0.5 } as const;
    expect(exponentialDelay(5, justUnderOne, proportional)).toBe(4_499);
    // A wait is whole milliseconds: with a delay of 337.5 ms, full jitter's longest is 337.
    const fractional = { ...amps, initialDelayMs: 150, backoffExponent: 1.5, jitterMode: 'full' } as const;
    expect(exponentialDelay(3, justUnderOne, fractional)).toBe(337);
    // Without jitter the interval is the delay alone.
    expect(exponentialDelay(1, justUnderOne, { ...proportional, jitter: 0 })).toBe(200);
  });

  it('adds no jitter to a zero delay', () => {
    expect(exponentialDelay(4, 0.9, { ...amps, initialDelayMs: 0 })).toBe(0);
  });

  it('stays 0 with a zero initial delay once the growth overflows to Infinity (0 x Infinity is NaN)', () => {
    expect(exponentialDelay(1_100, 0.9, { ...amps, initialDelayMs: 0 })).toBe(0);
    const strategy = exponentialBackoff({ initialDelayMs: 0, environment: fixedRandom(0.5) });
    const waits = Array.from({ length: 1_100 }, () => strategy.getConnectWaitDuration(a));
    expect(waits.filter((wait) => wait !== 0)).toEqual([]);
  });
});

describe('exponentialBackoff', () => {
  it('defaults to AMPS: 200 ms, x2, 20 s cap, additive jitter 1.0, never gives up', () => {
    expect(exponentialBackoff().options).toEqual({
      initialDelayMs: 200,
      backoffExponent: 2,
      maximumDelayMs: 20_000,
      jitter: 1,
      jitterMode: 'additive',
      maximumRetryTimeMs: 0,
      maximumAttempts: 0,
    });
  });

  it('one server: the first attempt is immediate, then each retry waits longer', () => {
    const strategy = exponentialBackoff({ environment: fixedRandom(0) });
    const waits = Array.from({ length: 11 }, () => strategy.getConnectWaitDuration(a));
    expect(waits).toEqual([0, 200, 400, 800, 1600, 3200, 6400, 12800, 20000, 20000, 20000]);
  });

  it('keeps its state per sweep of the list: an untried server is tried at once, a repeat waits', () => {
    const strategy = exponentialBackoff({ environment: fixedRandom(0) });
    const waits = [a, b, a, b, a, b, b, a].map((uri) => strategy.getConnectWaitDuration(uri));
    expect(waits).toEqual([0, 0, 200, 0, 400, 0, 800, 0]);
  });

  it('reset() starts over after a success', () => {
    const strategy = exponentialBackoff({ environment: fixedRandom(0) });
    for (let i = 0; i < 5; i++) strategy.getConnectWaitDuration(a);
    strategy.reset();
    expect([a, a, a].map((uri) => strategy.getConnectWaitDuration(uri))).toEqual([0, 200, 400]);
  });

  it('draws one random number per retry, with additive jitter', () => {
    const environment = fakeEnvironment(4);
    const strategy = exponentialBackoff({ environment });
    strategy.getConnectWaitDuration(a);
    expect(environment.calls.random).toBe(0);
    const wait = strategy.getConnectWaitDuration(a);
    expect(environment.calls.random).toBe(1);
    expect(wait).toBeGreaterThanOrEqual(200);
    expect(wait).toBeLessThan(400);
  });

  it('gives up once maximumRetryTimeMs has passed since the first wait after a reset, never sleeping past it', () => {
    const environment = fixedRandom(0);
    const strategy = exponentialBackoff({ environment, maximumRetryTimeMs: 1_000 });
    const waits: number[] = [];
    let error: unknown;
    try {
      for (;;) {
        const wait = strategy.getConnectWaitDuration(a);
        waits.push(wait);
        environment.advance(wait);
      }
    } catch (caught) {
      error = caught;
    }
    // 0, 200, 400 and then 800 would overshoot 1 s: clamped to the 400 ms left.
    expect(waits).toEqual([0, 200, 400, 400]);
    expect(RetryExhaustedError.isInstance(error)).toBe(true);
    expect((error as RetryExhaustedError).elapsedMs).toBe(1_000);
    expect((error as RetryExhaustedError).attempts).toBe(4);
    expect((error as Error).message).toBe('gave up reconnecting after 1.0 s and 4 attempts (maximumRetryTimeMs 1000)');
  });

  it('gives up after maximumAttempts attempts', () => {
    const strategy = exponentialBackoff({ environment: fixedRandom(0), maximumAttempts: 3 });
    for (let i = 0; i < 3; i++) strategy.getConnectWaitDuration(a);
    expect(() => strategy.getConnectWaitDuration(a)).toThrow(
      'gave up reconnecting after 0.0 s and 3 attempts (maximumAttempts 3)',
    );
    strategy.reset();
    expect(strategy.getConnectWaitDuration(a)).toBe(0);
  });

  it('rejects bad options with an InvalidOptionsError', () => {
    const bad = [
      { initialDelayMs: -1 },
      { initialDelayMs: Number.NaN },
      { maximumDelayMs: Number.POSITIVE_INFINITY },
      { backoffExponent: 0.5 },
      { jitter: -0.1 },
      { jitterMode: 'sometimes' as never },
      { jitterMode: 'proportional' as const, jitter: 1.5 },
      { maximumRetryTimeMs: -5 },
      { maximumAttempts: 1.5 },
    ];
    for (const options of bad) {
      expect(() => exponentialBackoff(options), JSON.stringify(options)).toThrow(InvalidOptionsError);
    }
    expect(() => exponentialBackoff({ backoffExponent: 0.5 })).toThrow(
      'exponentialBackoff: backoffExponent must be a finite number >= 1, got 0.5',
    );
  });

  it('refuses a zero cap: it would make every wait 0, a near-busy retry loop, where 0 elsewhere means no limit', () => {
    expect(() => exponentialBackoff({ maximumDelayMs: 0 })).toThrow(
      'exponentialBackoff: maximumDelayMs must be 1 to 2147483647 ms, got 0',
    );
    expect(() => recommendedBackoff({ maximumDelayMs: 0 })).toThrow(InvalidOptionsError);
    // Waits of 0 on purpose are still possible, with initialDelayMs: 0.
    expect(exponentialBackoff({ initialDelayMs: 0 }).options.maximumDelayMs).toBe(20_000);
  });

  it('refuses waits longer than setTimeout can wait (it would fire at once: a busy reconnect loop)', () => {
    expect(() => exponentialBackoff({ initialDelayMs: MAX_TIMEOUT_MS + 1 })).toThrow(
      'exponentialBackoff: initialDelayMs must be 0 to 2147483647 ms, got 2147483648',
    );
    expect(() => exponentialBackoff({ maximumDelayMs: 2 ** 32 })).toThrow(InvalidOptionsError);
    // The cap applies before jitter, so the jitter must fit under the limit too.
    expect(() => exponentialBackoff({ maximumDelayMs: MAX_TIMEOUT_MS })).toThrow(
      'exponentialBackoff: maximumDelayMs with its jitter can wait 2147483847 ms, past 2147483647 ms',
    );
    expect(() =>
      exponentialBackoff({ maximumDelayMs: 2_000_000_000, jitterMode: 'proportional', jitter: 0.5 }),
    ).toThrow(InvalidOptionsError);
    const longest = exponentialBackoff({
      maximumDelayMs: MAX_TIMEOUT_MS,
      jitterMode: 'full',
      environment: fixedRandom(0.999_999_999),
    });
    const waits = Array.from({ length: 40 }, () => longest.getConnectWaitDuration(a));
    expect(Math.max(...waits)).toBeLessThanOrEqual(MAX_TIMEOUT_MS);
  });
});

describe('recommendedBackoff', () => {
  it('is full-jitter exponential backoff capped at 3 s, and overrides win', () => {
    expect(recommendedBackoff().options).toMatchObject({
      initialDelayMs: 200,
      backoffExponent: 2,
      maximumDelayMs: 3_000,
      jitterMode: 'full',
      maximumRetryTimeMs: 0,
    });
    expect(recommendedBackoff({ maximumRetryTimeMs: 60_000 }).options.maximumRetryTimeMs).toBe(60_000);
    expect(Object.isFrozen(recommendedBackoffOptions)).toBe(true);
  });

  it('an override left undefined keeps the preset, as an option left out does', () => {
    const fromConfig: { jitterMode?: 'full' | 'additive'; maximumDelayMs?: number } = {};
    const strategy = recommendedBackoff({
      jitterMode: fromConfig.jitterMode,
      maximumDelayMs: fromConfig.maximumDelayMs,
    });
    expect(strategy.options).toEqual(recommendedBackoff().options);
  });

  it('never sleeps more than 3 s, so a client notices a recovered server within 3 s', () => {
    const environment = fakeEnvironment(17);
    const strategy = recommendedBackoff({ environment });
    const waits = Array.from({ length: 2_000 }, () => strategy.getConnectWaitDuration(a));
    expect(Math.max(...waits)).toBeLessThanOrEqual(3_000);
    // Full jitter: the waits at the cap spread over the whole range, not bunched at the top.
    const capped = waits.slice(10);
    expect(capped.filter((w) => w < 1_500).length / capped.length).toBeGreaterThan(0.4);
    expect(capped.filter((w) => w < 1_500).length / capped.length).toBeLessThan(0.6);
  });
});
