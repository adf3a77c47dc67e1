import {
  type Environment,
  environmentOption,
  InvalidOptionsError,
  type ReconnectDelayStrategy,
  RetrySweeps,
  timeoutOption,
} from '@amps-ts/core-protocol';

/** The delay math's inputs, resolved. */
export interface DecorrelatedJitterSettings {
  /** The shortest wait, and the first retry's starting point. */
  readonly baseMs: number;
  /** The longest wait. */
  readonly capMs: number;
}

export interface DecorrelatedJitterOptions {
  /**
   * The shortest wait, at least 1 ms; the first retry waits between `baseMs` and `3 × baseMs`.
   * @default 100
   */
  baseMs?: number;
  /**
   * The longest wait, at most 2147483647 (`MAX_TIMEOUT_MS`, the longest `setTimeout` can wait).
   * @default 10000
   */
  capMs?: number;
  /**
   * The retry budget in time: give up with a `RetryExhaustedError` once this long has passed without
   * a successful connection, measured from the first wait asked for after the last `reset()`.
   * 0 = never give up.
   * @default 0
   */
  maximumRetryTimeMs?: number;
  /**
   * The retry budget in attempts: give up with a `RetryExhaustedError` after this many attempts
   * without a successful connection. 0 = no limit.
   * @default 0
   */
  maximumAttempts?: number;
  /**
   * Clock and randomness, injectable for tests.
   * @default defaultEnvironment (performance.now, Math.random)
   */
  environment?: Pick<Environment, 'now' | 'random'>;
}

/**
 * The next wait after `previousMs`, given one uniform draw `random` in [0, 1):
 * `min(cap, random between base and previous × 3)`. Pure: the same inputs always give the same wait.
 * The first retry passes `previousMs = baseMs`.
 */
export function decorrelatedDelay(previousMs: number, random: number, settings: DecorrelatedJitterSettings): number {
  const upper = Math.max(settings.baseMs, previousMs * 3);
  return Math.round(Math.min(settings.capMs, settings.baseMs + random * (upper - settings.baseMs)));
}

/**
 * "Decorrelated jitter" backoff: each wait is drawn between the base and three times the previous
 * wait, capped. Waits grow about like exponential backoff while every client's sequence wanders on
 * its own, so a fleet does not retry in step.
 *
 * Like the other amps-ts strategies it works per sweep of the server list: the first attempt on
 * each server after a reset (or in a new sweep) is immediate, a server already tried waits.
 */
export class DecorrelatedJitter implements ReconnectDelayStrategy {
  /** The resolved options, defaults filled in. */
  readonly options: Readonly<Required<Omit<DecorrelatedJitterOptions, 'environment'>>>;
  readonly #environment: Pick<Environment, 'now' | 'random'>;
  #previousMs: number;
  readonly #sweeps: RetrySweeps;

  constructor(options: DecorrelatedJitterOptions = {}) {
    const resolved = {
      baseMs: options.baseMs ?? 100,
      capMs: options.capMs ?? 10_000,
      maximumRetryTimeMs: options.maximumRetryTimeMs ?? 0,
      maximumAttempts: options.maximumAttempts ?? 0,
    };
    // A wait longer than setTimeout can take fires at once: the client would retry in a busy loop.
    timeoutOption(resolved.capMs, 'decorrelatedJitter: capMs');
    // Each wait grows from the one before: from 0 they would all be 0, a busy loop.
    timeoutOption(resolved.baseMs, 'decorrelatedJitter: baseMs', 1);
    if (!(Number.isFinite(resolved.maximumRetryTimeMs) && resolved.maximumRetryTimeMs >= 0)) {
      invalid('maximumRetryTimeMs', 'a finite number >= 0', resolved.maximumRetryTimeMs);
    }
    if (resolved.capMs < resolved.baseMs) invalid('capMs', `at least baseMs (${resolved.baseMs})`, resolved.capMs);
    if (!(Number.isInteger(resolved.maximumAttempts) && resolved.maximumAttempts >= 0)) {
      invalid('maximumAttempts', 'an integer >= 0', resolved.maximumAttempts);
    }
    this.options = Object.freeze(resolved);
    this.#environment = environmentOption(options.environment, ['now', 'random'], 'decorrelatedJitter: environment');
    this.#sweeps = new RetrySweeps(this.options, this.#environment);
    this.#previousMs = resolved.baseMs;
  }

  getConnectWaitDuration(uri: string): number {
    if (this.#sweeps.next(uri) === 0) return 0;
    this.#previousMs = decorrelatedDelay(this.#previousMs, this.#environment.random(), this.options);
    return this.#sweeps.cap(this.#previousMs);
  }

  reset(): void {
    this.#sweeps.reset();
    this.#previousMs = this.options.baseMs;
  }
}

function invalid(option: string, expected: string, got: unknown): never {
  throw new InvalidOptionsError(`decorrelatedJitter: ${option} must be ${expected}, got ${String(got)}`);
}

/** Decorrelated-jitter backoff: `sleep = min(capMs, random(baseMs, previous × 3))`, with an optional retry budget. */
export function decorrelatedJitter(options?: DecorrelatedJitterOptions): DecorrelatedJitter {
  return new DecorrelatedJitter(options);
}
