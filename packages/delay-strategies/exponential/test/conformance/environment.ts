/**
 * A fake clock and seeded randomness for strategy tests, shared by every chooser and delay package.
 * It counts what it is asked, so tests can prove a plugin draws nothing until an attempt.
 */
import { type Environment, seededRandom, type TimerHandle } from '@amps-ts/core-protocol';
import { vi } from 'vitest';

export interface FakeEnvironment extends Environment {
  /** Moves the clock forward. */
  advance(ms: number): void;
  /** Restarts the random sequence from `seed`. */
  reseed(seed: number): void;
  /** How often each method was called. */
  readonly calls: { now: number; random: number; setTimeout: number };
}

export function fakeEnvironment(seed = 1, startMs = 1_000_000): FakeEnvironment {
  let clock = startMs;
  let random = seededRandom(seed);
  const calls = { now: 0, random: 0, setTimeout: 0 };
  return {
    calls,
    now: () => {
      calls.now++;
      return clock;
    },
    random: () => {
      calls.random++;
      return random();
    },
    // Strategies compute waits; they never schedule. A call is recorded and never fires.
    setTimeout: (): TimerHandle => {
      calls.setTimeout++;
      return calls.setTimeout;
    },
    clearTimeout: () => {},
    advance: (ms) => {
      if (!(ms >= 0)) throw new Error(`cannot move the clock by ${ms} ms`);
      clock += ms;
    },
    reseed: (next) => {
      random = seededRandom(next);
    },
  };
}

export type GlobalCalls = Record<'Math.random' | 'Date.now' | 'performance.now' | 'setTimeout', number>;

/** Runs `fn` and counts its calls to the global clock, randomness and timers (which plugins must not use directly). */
export function watchGlobals(fn: () => void): GlobalCalls;
export function watchGlobals(fn: () => Promise<unknown>): Promise<GlobalCalls>;
export function watchGlobals(fn: () => unknown): GlobalCalls | Promise<GlobalCalls> {
  const spies = {
    'Math.random': vi.spyOn(Math, 'random'),
    'Date.now': vi.spyOn(Date, 'now'),
    'performance.now': vi.spyOn(performance, 'now'),
    setTimeout: vi.spyOn(globalThis, 'setTimeout'),
  };
  // Read the counts before restoring: restoring a spy clears them.
  const finish = (): GlobalCalls => {
    const counts = Object.fromEntries(
      Object.entries(spies).map(([name, spy]) => [name, spy.mock.calls.length]),
    ) as GlobalCalls;
    for (const spy of Object.values(spies)) spy.mockRestore();
    return counts;
  };
  let result: unknown;
  try {
    result = fn();
  } catch (error) {
    finish();
    throw error;
  }
  if (result instanceof Promise) {
    return result.then(finish, (error) => {
      finish();
      throw error;
    });
  }
  return finish();
}
