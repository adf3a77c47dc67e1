import { type Environment, MAX_TIMEOUT_MS, type TimerHandle } from '@amps-ts/core-protocol';

/** One timer: the environment's current handle, and the delay still to wait after it fires. */
class Timer {
  handle: TimerHandle = undefined;
  constructor(
    readonly callback: () => void,
    public remainingMs: number,
  ) {}
}

/**
 * Every timer of one broker, so `kill()` and `close()` can clear them all. While frozen, a timer
 * that fires is held and run on `thaw()`: a frozen process does nothing. Delays beyond what
 * `setTimeout` can wait (about 24.8 days: a SOW expiration `e`, an `ack_conflation` interval) are
 * waited in steps.
 */
export class Timers {
  readonly #timers = new Set<Timer>();
  #held = new Set<Timer>();
  #frozen = false;

  constructor(readonly env: Environment) {}

  set(callback: () => void, ms: number): TimerHandle {
    const timer = new Timer(callback, Math.max(0, ms));
    this.#timers.add(timer);
    this.#arm(timer);
    return timer;
  }

  #arm(timer: Timer): void {
    const step = Math.min(timer.remainingMs, MAX_TIMEOUT_MS);
    timer.remainingMs -= step;
    timer.handle = this.env.setTimeout(() => {
      if (timer.remainingMs > 0) {
        this.#arm(timer);
        return;
      }
      this.#timers.delete(timer);
      if (this.#frozen) this.#held.add(timer);
      else timer.callback();
    }, step);
  }

  clear(handle: TimerHandle | undefined): void {
    if (!(handle instanceof Timer)) return;
    this.env.clearTimeout(handle.handle);
    this.#timers.delete(handle);
    this.#held.delete(handle);
  }

  freeze(): void {
    this.#frozen = true;
  }

  /** Runs the timers that fired while frozen. */
  thaw(): void {
    this.#frozen = false;
    const held = this.#held;
    this.#held = new Set();
    for (const timer of held) timer.callback();
  }

  /** Clears every timer, held ones too, and leaves the frozen state (a killed process starts afresh). */
  clearAll(): void {
    for (const timer of this.#timers) this.env.clearTimeout(timer.handle);
    this.#timers.clear();
    this.#held = new Set();
    this.#frozen = false;
  }

  get size(): number {
    return this.#timers.size;
  }
}
