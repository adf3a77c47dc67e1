/**
 * A first-in first-out queue whose `shift` is O(1) amortized. `Array.prototype.shift` copies the
 * whole array once it is large (tens of thousands of publishes waiting for room in a full store),
 * which made draining such a backlog quadratic.
 */
export class Fifo<T> {
  #items: T[] = [];
  #head = 0;

  push(item: T): void {
    this.#items.push(item);
  }

  peek(): T | undefined {
    return this.#items[this.#head];
  }

  /** Only when not empty. */
  shift(): T | undefined {
    const items = this.#items;
    const item = items[this.#head];
    items[this.#head] = undefined as T;
    // Compacted once the spent slots outnumber the rest: a copy of at most as many as were shifted.
    if (++this.#head > 1023 && this.#head * 2 > items.length) {
      this.#items = items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }

  /** Removes one item: O(1) amortized at the head (as when every waiter is rejected in turn), else O(n). */
  delete(item: T): void {
    const i = this.#items.indexOf(item, this.#head);
    if (i === this.#head) this.shift();
    else if (i > 0) this.#items.splice(i, 1);
  }
}
