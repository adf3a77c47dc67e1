/**
 * The ticker sequence numbers a page has received, as contiguous ranges: one range means no gap.
 */
export class SequenceTracker {
  /** `[first, last]` of each run of consecutive numbers, in arrival order. */
  readonly ranges: Array<[number, number]> = [];
  /** Numbers at or below the highest already received: repeats, or out of order. */
  duplicates = 0;
  received = 0;

  add(seq: number): void {
    this.received++;
    const run = this.ranges.at(-1);
    if (run === undefined || seq > run[1] + 1) this.ranges.push([seq, seq]);
    else if (seq === run[1] + 1) run[1] = seq;
    else this.duplicates++;
  }

  /** The highest number received. */
  get last(): number | undefined {
    return this.ranges.at(-1)?.[1];
  }

  /** `3-120` (no gap), `3-120,125-300` (125 was the next after a gap), `''` (nothing yet). */
  toString(): string {
    return this.ranges.map(([first, last]) => (first === last ? `${first}` : `${first}-${last}`)).join(',');
  }
}
