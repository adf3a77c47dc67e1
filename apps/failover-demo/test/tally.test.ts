import { describe, expect, it } from 'vitest';
import { DeliveryTally } from '../src/tally.js';

function tally(received: number[], published: number) {
  const t = new DeliveryTally();
  for (const n of received) t.record(n);
  return t.verdict(published);
}

describe('the verdict', () => {
  it('passes when every message came once, in order', () => {
    expect(tally([1, 2, 3, 4], 4)).toEqual({ received: 4, lost: 0, duplicated: 0, outOfOrder: 0, ok: true });
  });

  it('fails on a lost message, counted as lost only', () => {
    expect(tally([1, 2, 4], 4)).toEqual({ received: 3, lost: 1, duplicated: 0, outOfOrder: 0, ok: false });
    expect(tally([1, 2, 3], 4)).toMatchObject({ lost: 1, ok: false });
  });

  it('fails on a duplicate', () => {
    expect(tally([1, 2, 2, 3], 3)).toEqual({ received: 3, lost: 0, duplicated: 1, outOfOrder: 0, ok: false });
    expect(tally([1, 2, 3, 1], 3)).toMatchObject({ duplicated: 1, outOfOrder: 0, ok: false });
  });

  it('fails on a reordered message, counted once', () => {
    expect(tally([1, 3, 2, 4], 4)).toEqual({ received: 4, lost: 0, duplicated: 0, outOfOrder: 1, ok: false });
    expect(tally([1, 3, 4, 5, 2], 5)).toMatchObject({ lost: 0, outOfOrder: 1, ok: false });
  });

  it('holds order per topic: topics may interleave in any order', () => {
    const t = new DeliveryTally();
    for (const [n, topic] of [
      [2, 0],
      [1, 1],
      [4, 0],
      [3, 1],
    ])
      t.record(n as number, topic);
    expect(t.verdict(4)).toMatchObject({ outOfOrder: 0, ok: true });
    t.record(5, 1);
    t.record(6, 0);
    t.record(0.5, 1); // never published, and behind topic 1's latest
    expect(t.verdict(6)).toMatchObject({ lost: 0, outOfOrder: 1, ok: false });
  });

  it('fails when nothing was published: an empty run proves nothing', () => {
    expect(tally([], 0)).toMatchObject({ lost: 0, ok: false });
  });

  it('a number never published does not make up for a lost one', () => {
    expect(tally([1, 2, 4, 5], 4)).toMatchObject({ lost: 1, ok: false });
  });
});
