/**
 * The conformance suite every `ReconnectDelayStrategy` runs: the contract's shape, injected time and
 * randomness only, reset semantics, giving up with a `RetryExhaustedError`, no password in what it
 * produces, nothing done at import.
 */
import { type ReconnectDelayStrategy, RetryExhaustedError } from '@amps-ts/core-protocol';
import { describe, expect, it, vi } from 'vitest';
import { type FakeEnvironment, fakeEnvironment, watchGlobals } from './environment.js';

export interface DelayStrategyConformance {
  name: string;
  create(environment: FakeEnvironment): ReconnectDelayStrategy;
  /** Creates one that gives up after `maximumRetryTimeMs`; omit for a strategy that never gives up. */
  createWithRetryTime?(environment: FakeEnvironment, maximumRetryTimeMs: number): ReconnectDelayStrategy;
  /** Imports the package afresh, to prove it draws no randomness and reads no clock at import. */
  load?(): Promise<unknown>;
}

const password = 's3cret-pw';
const uris = [`tcp://user:${password}@a:9007/amps/json`, 'tcp://b:9007/amps/json', 'ws://c:9008/amps/json'];
const connectTimeMs = 37;

/** Asks for `count` waits over `servers` in turn, moving the clock by each wait plus a connect time. */
function run(strategy: ReconnectDelayStrategy, environment: FakeEnvironment, count: number, servers = uris): number[] {
  const waits: number[] = [];
  for (let i = 0; i < count; i++) {
    const wait = strategy.getConnectWaitDuration(servers[i % servers.length] as string);
    waits.push(wait);
    environment.advance(wait + connectTimeMs);
  }
  return waits;
}

export function describeDelayStrategyConformance(suite: DelayStrategyConformance): void {
  describe(`${suite.name} satisfies the ReconnectDelayStrategy contract`, () => {
    it('has the contract methods', () => {
      const strategy = suite.create(fakeEnvironment());
      expect(typeof strategy.getConnectWaitDuration).toBe('function');
      expect(typeof strategy.reset).toBe('function');
    });

    it('draws no randomness and reads no clock when created', () => {
      const environment = fakeEnvironment();
      suite.create(environment);
      expect(environment.calls).toEqual({ now: 0, random: 0, setTimeout: 0 });
    });

    it('returns finite waits >= 0, for one server and for several', () => {
      for (const servers of [uris.slice(0, 1), uris]) {
        const environment = fakeEnvironment(3);
        const waits = run(suite.create(environment), environment, 300, servers);
        for (const wait of waits) {
          expect(Number.isFinite(wait)).toBe(true);
          expect(wait).toBeGreaterThanOrEqual(0);
        }
      }
    });

    it('uses only the injected clock and randomness, and starts no timer', () => {
      const environment = fakeEnvironment(5);
      const strategy = suite.create(environment);
      const globalCalls = watchGlobals(() => {
        run(strategy, environment, 100);
        strategy.reset();
        run(strategy, environment, 100);
      });
      expect(globalCalls).toEqual({ 'Math.random': 0, 'Date.now': 0, 'performance.now': 0, setTimeout: 0 });
      expect(environment.calls.setTimeout).toBe(0);
    });

    it('gives the same waits for the same seed', () => {
      const first = fakeEnvironment(11);
      const second = fakeEnvironment(11);
      expect(run(suite.create(first), first, 60)).toEqual(run(suite.create(second), second, 60));
    });

    it('starts over on reset(): the waits of a fresh strategy follow', () => {
      const fresh = fakeEnvironment(21);
      const expected = run(suite.create(fresh), fresh, 40);

      const environment = fakeEnvironment(99, 5_000_000);
      const strategy = suite.create(environment);
      run(strategy, environment, 17);
      strategy.reset();
      environment.reseed(21);
      expect(run(strategy, environment, 40)).toEqual(expected);
    });

    const createWithRetryTime = suite.createWithRetryTime;
    if (createWithRetryTime) {
      it('gives up with a RetryExhaustedError naming the time spent and the attempts made, on the injected clock', () => {
        const budgetMs = 5_000;
        const environment = fakeEnvironment(8);
        const strategy = createWithRetryTime(environment, budgetMs);
        const startedAt = environment.now();
        let attempts = 0;
        let error: unknown;
        while (attempts < 100_000) {
          try {
            environment.advance(
              strategy.getConnectWaitDuration(uris[attempts % uris.length] as string) + connectTimeMs,
            );
            attempts++;
          } catch (caught) {
            error = caught;
            break;
          }
        }
        expect(RetryExhaustedError.isInstance(error)).toBe(true);
        const exhausted = error as RetryExhaustedError;
        expect(exhausted.code).toBe('retry_exhausted');
        expect(exhausted.attempts).toBe(attempts);
        expect(exhausted.elapsedMs).toBe(environment.now() - startedAt);
        expect(exhausted.elapsedMs).toBeGreaterThanOrEqual(budgetMs);
        expect(exhausted.message).toContain(String(attempts));
        expect(exhausted.message).not.toContain(password);

        // Still exhausted until reset; then a new budget starts from the next wait asked for.
        expect(() => strategy.getConnectWaitDuration(uris[0] as string)).toThrow(/./);
        strategy.reset();
        environment.advance(60_000);
        expect(strategy.getConnectWaitDuration(uris[0] as string)).toBeGreaterThanOrEqual(0);
        environment.advance(budgetMs - 1);
        expect(strategy.getConnectWaitDuration(uris[0] as string)).toBeGreaterThanOrEqual(0);
      });
    }

    const load = suite.load;
    if (load) {
      it('draws no randomness and reads no clock at import', async () => {
        vi.resetModules();
        const globalCalls = await watchGlobals(load);
        // Not performance.now or setTimeout: the test runner's own module loading may use them.
        expect([globalCalls['Math.random'], globalCalls['Date.now']]).toEqual([0, 0]);
      });
    }
  });
}
