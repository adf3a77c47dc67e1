import { describe, expect, it } from 'vitest';
import { SequenceTracker } from '../src/sequence.js';

describe('SequenceTracker', () => {
  it('keeps consecutive numbers in one range', () => {
    const seqs = new SequenceTracker();
    for (const seq of [7, 8, 9, 10]) seqs.add(seq);
    expect(seqs.toString()).toBe('7-10');
    expect(seqs).toMatchObject({ received: 4, duplicates: 0, last: 10 });
  });

  it('starts a new range after a gap', () => {
    const seqs = new SequenceTracker();
    for (const seq of [1, 2, 5, 6, 8]) seqs.add(seq);
    expect(seqs.toString()).toBe('1-2,5-6,8');
    expect(seqs.ranges).toHaveLength(3);
  });

  it('counts a repeat or a late number as a duplicate, without moving on', () => {
    const seqs = new SequenceTracker();
    for (const seq of [1, 2, 3, 2, 1, 4]) seqs.add(seq);
    expect(seqs.toString()).toBe('1-4');
    expect(seqs).toMatchObject({ received: 6, duplicates: 2, last: 4 });
  });

  it('is empty before the first tick', () => {
    const seqs = new SequenceTracker();
    expect(seqs.toString()).toBe('');
    expect(seqs.last).toBeUndefined();
  });
});
