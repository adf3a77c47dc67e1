import { afterEach, describe, expect, it, vi } from 'vitest';
import { type BenchResult, passes, unlessStalled } from '../src/runner.js';

const row = (value: number, target: BenchResult['target'], baseline?: number): BenchResult => ({
  name: 'row',
  value,
  unit: 'x',
  target,
  ...(baseline === undefined ? {} : { baseline: { name: 'baseline', value: baseline } }),
});

describe('passes', () => {
  it('passes a value within its target, and misses one outside it', () => {
    expect(passes(row(5, { max: 10 }))).toBe(true);
    expect(passes(row(11, { max: 10 }))).toBe(false);
    expect(passes(row(3, { minRatio: 2 }, 1))).toBe(true);
    expect(passes(row(1, { minRatio: 2 }, 1))).toBe(false);
  });

  // A broken measurement (percentile() of no samples is NaN, Math.max() of none is -Infinity, a
  // baseline that measured nothing is 0) must not meet a target: every comparison with NaN is false.
  it.each([
    ['a NaN value against a max', row(Number.NaN, { max: 0 })],
    ['a NaN value against a min', row(Number.NaN, { min: 1 })],
    ['-Infinity against a max', row(Number.NEGATIVE_INFINITY, { max: 150 })],
    ['a NaN value against a ratio', row(Number.NaN, { minRatio: 0.5 }, 100)],
    ['a zero baseline against a ratio', row(100, { minRatio: 0.5 }, 0)],
    ['a NaN baseline against a ratio', row(100, { minRatio: 0.5 }, Number.NaN)],
  ])('misses %s', (_, result) => {
    expect(passes(result)).toBe(false);
  });
});

describe('unlessStalled', () => {
  afterEach(() => {
    vi.useRealTimers();
  });
  const never = new Promise<void>(() => {});

  it('fails a run that stopped short, naming how many messages arrived, instead of waiting for ever', async () => {
    vi.useFakeTimers();
    const waiting = unlessStalled(never, 'tcp delivery', 100, () => 97, 1_000);
    const failed = expect(waiting).rejects.toThrow('tcp delivery: 97 of 100 messages arrived, none in the last 1 s');
    await vi.advanceTimersByTimeAsync(1_000);
    await failed;
  });

  it('keeps waiting while messages keep arriving (the count may come from another process), and stops its timer when done', async () => {
    vi.useFakeTimers();
    let arrived = 0;
    let finish!: () => void;
    const done = new Promise<void>((resolve) => {
      finish = resolve;
    });
    let settled = false;
    const waiting = unlessStalled(done, 'publish', 10, async () => arrived, 1_000).then(() => {
      settled = true;
    });
    for (let i = 0; i < 5; i++) {
      arrived += 2;
      await vi.advanceTimersByTimeAsync(1_000);
    }
    expect(settled).toBe(false);
    finish();
    await waiting;
    expect(vi.getTimerCount()).toBe(0);
  });
});
