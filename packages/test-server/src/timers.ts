import type { Environment, TimerHandle } from '@amps-ts/core-protocol';

/**
 * Every timer of one broker, so `kill()` and `close()` can clear them all. While frozen, a timer
 * that fires is held and run on `thaw()`: a frozen process does nothing.
 */
export class Timers {
  readonly #handles = new Set<TimerHandle>();
  #held: Array<() => void> = [];
  #frozen = false;

  constructor(readonly env: Environment) {}

  set(callback: () => void, ms: number): TimerHandle {
    const handle = this.env.setTimeout(
      () => {
        this.#handles.delete(handle);
        if (this.#frozen) this.#held.push(callback);
        else callback();
      },
      Math.max(0, ms),
    );
    this.#handles.add(handle);
    return handle;
  }

  clear(handle: TimerHandle | undefined): void {
    if (handle === undefined) return;
    this.env.clearTimeout(handle);
    this.#handles.delete(handle);
  }

  freeze(): void {
    this.#frozen = true;
  }

  /** Runs the timers that fired while frozen. */
  thaw(): void {
    this.#frozen = false;
    const held = this.#held;
    this.#held = [];
    for (const callback of held) callback();
  }

  /** Clears every timer, held ones too, and leaves the frozen state (a killed process starts afresh). */
  clearAll(): void {
    for (const handle of this.#handles) this.env.clearTimeout(handle);
    this.#handles.clear();
    this.#held = [];
    this.#frozen = false;
  }

  get size(): number {
    return this.#handles.size;
  }
}
