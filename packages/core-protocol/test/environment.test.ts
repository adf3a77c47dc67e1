import { describe, expect, it } from 'vitest';
import { seededRandom } from '../src/index.js';

describe('seededRandom', () => {
  it('repeats its sequence for a seed, differs across seeds, and stays in [0, 1)', () => {
    const draw = (seed: number) => Array.from({ length: 1000 }, seededRandom(seed));
    const a = draw(42);
    expect(draw(42)).toEqual(a);
    expect(draw(43)).not.toEqual(a);
    for (const x of a) expect(x >= 0 && x < 1).toBe(true);
    // Spread over the interval, not bunched: every tenth of it gets a fair share.
    const tenths = new Array(10).fill(0);
    for (const x of a) tenths[Math.floor(x * 10)]++;
    for (const n of tenths) expect(n).toBeGreaterThan(60);
  });
});
