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

  it('a number never published does not make up for a lost one', () => {
    expect(tally([1, 2, 4, 5], 4)).toMatchObject({ lost: 1, ok: false });
  });
});
