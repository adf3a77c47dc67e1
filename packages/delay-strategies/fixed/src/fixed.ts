import {
  type Environment,
  environmentOption,
  InvalidOptionsError,
  type ReconnectDelayStrategy,
  RetrySweeps,
  timeoutOption,
} from '@amps-ts/core-protocol';

export interface FixedDelayOptions {
  /**
   * Wait before each retry of a server already tried in the current sweep of the list, at most
   * 2147483647 (`MAX_TIMEOUT_MS`, the longest `setTimeout` can wait).
   * @default 200
   */
  delayMs?: number;
  /**
   * Give up with a `RetryExhaustedError` once this long has passed without a successful connection,
   * measured from the first wait asked for after the last `reset()`. 0 = never give up.
   * @default 0
   */
  maximumRetryTimeMs?: number;
  /**
   * Give up with a `RetryExhaustedError` after this many attempts without a successful connection.
   * 0 = no limit.
   * @default 0
   */
  maximumAttempts?: number;
  /**
   * Clock, injectable for tests.
   * @default defaultEnvironment (performance.now)
   */
  environment?: Pick<Environment, 'now'>;
}

/**
 * The same wait before every retry: AMPS's FixedDelayStrategy. It has no jitter, so a fleet of
 * clients that lost a server together retries together; prefer `@amps-ts/delay-exponential` there.
 *
 * Like the other amps-ts strategies it works per sweep of the server list: the first attempt on
 * each server after a reset (or in a new sweep) is immediate, a server already tried waits `delayMs`.
 */
export class FixedDelay implements ReconnectDelayStrategy {
  /** The resolved options, defaults filled in. */
  readonly options: Readonly<Required<Omit<FixedDelayOptions, 'environment'>>>;
  readonly #sweeps: RetrySweeps;

  constructor(options: FixedDelayOptions = {}) {
    const resolved = {
      delayMs: options.delayMs ?? 200,
      maximumRetryTimeMs: options.maximumRetryTimeMs ?? 0,
      maximumAttempts: options.maximumAttempts ?? 0,
    };
    // A wait longer than setTimeout can take fires at once: the client would retry in a busy loop.
    timeoutOption(resolved.delayMs, 'fixedDelay: delayMs');
    if (!(Number.isFinite(resolved.maximumRetryTimeMs) && resolved.maximumRetryTimeMs >= 0)) {
      invalid('maximumRetryTimeMs', 'a finite number >= 0', resolved.maximumRetryTimeMs);
    }
    if (!(Number.isInteger(resolved.maximumAttempts) && resolved.maximumAttempts >= 0)) {
      invalid('maximumAttempts', 'an integer >= 0', resolved.maximumAttempts);
    }
    this.options = Object.freeze(resolved);
    this.#sweeps = new RetrySweeps(
      this.options,
      environmentOption(options.environment, ['now'], 'fixedDelay: environment'),
    );
  }

  getConnectWaitDuration(uri: string): number {
    return this.#sweeps.next(uri) === 0 ? 0 : this.#sweeps.cap(this.options.delayMs);
  }

  reset(): void {
    this.#sweeps.reset();
  }
}

function invalid(option: string, expected: string, got: unknown): never {
  throw new InvalidOptionsError(`fixedDelay: ${option} must be ${expected}, got ${String(got)}`);
}

/** A fixed wait between retries; with no options, AMPS's defaults (200 ms, never give up). */
export function fixedDelay(options?: FixedDelayOptions): FixedDelay {
  return new FixedDelay(options);
}
