import type { Environment } from './contracts.js';
import { RetryExhaustedError } from './errors.js';

export interface RetryLimits {
  /** Give up once this long has passed without a successful connection; 0 = never. */
  maximumRetryTimeMs: number;
  /** Give up after this many attempts without a successful connection; 0 = no limit. */
  maximumAttempts: number;
}

/**
 * The bookkeeping every reconnect delay strategy shares: a retry budget (time and attempts since
 * the last `reset()`, on the injected clock) and sweeps of the server list. The first attempt on
 * each server within a sweep is immediate; coming back to a server already tried starts the next
 * sweep, whose wait is the strategy's to choose.
 */
export class RetrySweeps {
  readonly #limits: RetryLimits;
  readonly #environment: Pick<Environment, 'now'>;
  #startedAt: number | undefined;
  #elapsedMs = 0;
  #attempts = 0;
  #sweep = 0;
  readonly #tried = new Set<string>();

  constructor(limits: RetryLimits, environment: Pick<Environment, 'now'>) {
    this.#limits = limits;
    this.#environment = environment;
  }

  /**
   * Counts an attempt on `uri`. Returns 0 when it goes ahead at once, or the number (1, 2, ...) of
   * the sweep it opens, which should wait. Throws a `RetryExhaustedError` once the budget is spent.
   */
  next(uri: string): number {
    const now = this.#environment.now();
    this.#startedAt ??= now;
    const elapsedMs = (this.#elapsedMs = now - this.#startedAt);
    const { maximumRetryTimeMs, maximumAttempts } = this.#limits;
    const outOfTime = maximumRetryTimeMs > 0 && elapsedMs >= maximumRetryTimeMs;
    if (outOfTime || (maximumAttempts > 0 && this.#attempts >= maximumAttempts)) {
      throw new RetryExhaustedError(
        `gave up reconnecting after ${(elapsedMs / 1000).toFixed(1)} s and ${this.#attempts} attempts ` +
          (outOfTime ? `(maximumRetryTimeMs ${maximumRetryTimeMs})` : `(maximumAttempts ${maximumAttempts})`),
        { elapsedMs, attempts: this.#attempts },
      );
    }
    this.#attempts++;
    if (!this.#tried.has(uri)) {
      this.#tried.add(uri);
      return 0;
    }
    this.#tried.clear();
    this.#tried.add(uri);
    return ++this.#sweep;
  }

  /** Never sleep past the deadline: the last attempt happens on time, and the next call gives up. */
  cap(waitMs: number): number {
    const { maximumRetryTimeMs } = this.#limits;
    return maximumRetryTimeMs > 0 ? Math.min(waitMs, maximumRetryTimeMs - this.#elapsedMs) : waitMs;
  }

  reset(): void {
    this.#startedAt = undefined;
    this.#attempts = 0;
    this.#sweep = 0;
    this.#tried.clear();
  }
}
