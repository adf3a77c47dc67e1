/**
 * The verdict's counts: what the subscriber saw of the publisher's sequence 1, 2, 3, ...
 * Each fault is counted once, as what it is: a message that never came is lost (not also out of
 * order), one that came after a later one is out of order, one that came again is duplicated.
 */
export class DeliveryTally {
  duplicated = 0;
  outOfOrder = 0;
  readonly #seen = new Set<number>();
  #highest = 0;

  /** The subscriber got message `n`. */
  record(n: number): void {
    if (this.#seen.has(n)) {
      this.duplicated++;
      return;
    }
    this.#seen.add(n);
    if (n < this.#highest) this.outOfOrder++;
    else this.#highest = n;
  }

  /** Distinct messages received. */
  get received(): number {
    return this.#seen.size;
  }

  /** The counts once `published` messages (1 to `published`) were sent. */
  verdict(published: number): { received: number; lost: number; duplicated: number; outOfOrder: number; ok: boolean } {
    let delivered = 0;
    // Only 1..published count: a stray number must not make up for a missing one.
    for (const n of this.#seen) if (Number.isInteger(n) && n >= 1 && n <= published) delivered++;
    const lost = published - delivered;
    const { received, duplicated, outOfOrder } = this;
    return { received, lost, duplicated, outOfOrder, ok: lost === 0 && duplicated === 0 && outOfOrder === 0 };
  }
}
