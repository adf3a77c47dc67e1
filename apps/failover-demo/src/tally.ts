/**
 * The verdict's counts: what the subscriber saw of the publisher's sequence 1, 2, 3, ...
 * Each fault is counted once, as what it is: a message that never came is lost (not also out of
 * order), one that came after a later one on the same topic is out of order, one that came again
 * is duplicated. Order holds per topic: after a failover, each subscription resumes on its own.
 */
export class DeliveryTally {
  duplicated = 0;
  outOfOrder = 0;
  readonly #seen = new Set<number>();
  /** The highest message seen on each topic. */
  readonly #highest: number[] = [];

  /** The subscriber got message `n`, on topic number `topic`. */
  record(n: number, topic = 0): void {
    if (this.#seen.has(n)) {
      this.duplicated++;
      return;
    }
    this.#seen.add(n);
    if (n < (this.#highest[topic] ?? 0)) this.outOfOrder++;
    else this.#highest[topic] = n;
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
    // Nothing published, nothing checked: that is no evidence of anything (`--rate 1 --duration 1`).
    const ok = published > 0 && lost === 0 && duplicated === 0 && outOfOrder === 0;
    return { received, lost, duplicated, outOfOrder, ok };
  }
}
