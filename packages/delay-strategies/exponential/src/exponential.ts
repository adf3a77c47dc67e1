import {
  type Environment,
  environmentOption,
  InvalidOptionsError,
  MAX_TIMEOUT_MS,
  type ReconnectDelayStrategy,
  RetrySweeps,
  timeoutOption,
} from '@amps-ts/core-protocol';

/**
 * How randomness spreads the waits of many clients.
 * - `additive` (AMPS): adds up to `jitter × initialDelayMs` to each non-zero wait, after the cap.
 * - `full`: a wait anywhere in `[0, delay)`; spreads a fleet widely (the "full jitter" of AWS).
 * - `proportional`: a wait in `[delay × (1 - jitter), delay × (1 + jitter))`; keeps the mean.
 */
export type JitterMode = 'additive' | 'full' | 'proportional';

/** The delay math's inputs, all resolved. */
export interface ExponentialDelaySettings {
  /** Wait before the first retry. */
  readonly initialDelayMs: number;
  /** Multiplier per retry. */
  readonly backoffExponent: number;
  /** Cap on the delay, applied before jitter. */
  readonly maximumDelayMs: number;
  /** Amount of jitter; its meaning depends on `jitterMode`. */
  readonly jitter: number;
  readonly jitterMode: JitterMode;
}

export interface ExponentialBackoffOptions {
  /**
   * Wait before the first retry of a sweep after every server was tried once.
   * @default 200
   */
  initialDelayMs?: number;
  /**
   * Multiplier applied to the delay at each new sweep (200 → 400 → 800 ...). At least 1.
   * @default 2
   */
  backoffExponent?: number;
  /**
   * Cap on the delay before jitter. Jitter is applied after the cap so waits do not all pile up at it.
   * At least 1 ms (for waits of 0, set `initialDelayMs: 0`). The cap plus its jitter must be at most
   * 2147483647 ms (`MAX_TIMEOUT_MS`, the longest `setTimeout` can wait).
   * @default 20000
   */
  maximumDelayMs?: number;
  /**
   * With `additive`: a multiple of `initialDelayMs` (AMPS: up to 1.0 × 200 ms added).
   * With `proportional`: a fraction of the delay, 0 to 1. Ignored by `full`.
   * @default 1
   */
  jitter?: number;
  /**
   * How jitter is applied; `additive` is AMPS's behaviour, `full` and `proportional` spread a fleet
   * of clients much better (see the README's storm numbers).
   * @default 'additive'
   */
  jitterMode?: JitterMode;
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
   * Clock and randomness, injectable for tests.
   * @default defaultEnvironment (performance.now, Math.random)
   */
  environment?: Pick<Environment, 'now' | 'random'>;
}

const jitterModes: readonly JitterMode[] = ['additive', 'full', 'proportional'];

/**
 * The delay before retry sweep `attempt` (1 = the first retry), given one uniform draw `random`
 * in [0, 1). Pure: the same inputs always give the same wait.
 */
export function exponentialDelay(attempt: number, random: number, settings: ExponentialDelaySettings): number {
  // After about 1000 sweeps the growth is Infinity, and 0 × Infinity is NaN: a zero delay stays 0.
  if (settings.initialDelayMs === 0) return 0;
  const delay = Math.min(settings.maximumDelayMs, settings.initialDelayMs * settings.backoffExponent ** (attempt - 1));
  return withJitter(delay, random, settings);
}

function withJitter(delay: number, random: number, settings: ExponentialDelaySettings): number {
  if (delay <= 0) return 0;
  switch (settings.jitterMode) {
    case 'additive':
      return Math.round(delay + random * settings.jitter * settings.initialDelayMs);
    case 'full':
      return wholeMsIn(0, delay, random);
    case 'proportional':
      return wholeMsIn(delay * (1 - settings.jitter), delay * (1 + settings.jitter), random);
  }
}

/**
 * Whole milliseconds drawn in [low, high). Rounding, or float error with `random` just under 1,
 * would otherwise give `high` itself, 1 ms past the documented interval. No jitter (low = high) is `low`.
 */
function wholeMsIn(low: number, high: number, random: number): number {
  if (high <= low) return Math.round(low);
  return Math.min(Math.floor(low + random * (high - low)), Math.ceil(high) - 1);
}

/**
 * Exponential backoff with jitter: AMPS's ExponentialDelayStrategy, with its defaults.
 *
 * State is kept per sweep of the server list, not per server: the first attempt on each server
 * after a reset (or in a new sweep) is immediate, and each time the chooser comes back to a server
 * already tried, a new sweep starts and waits the next, longer delay. See the README for why.
 */
export class ExponentialBackoff implements ReconnectDelayStrategy {
  /** The resolved options, AMPS defaults filled in. */
  readonly options: Readonly<Required<Omit<ExponentialBackoffOptions, 'environment'>>>;
  readonly #environment: Pick<Environment, 'now' | 'random'>;
  readonly #sweeps: RetrySweeps;

  constructor(options: ExponentialBackoffOptions = {}) {
    const resolved = {
      initialDelayMs: options.initialDelayMs ?? 200,
      backoffExponent: options.backoffExponent ?? 2,
      maximumDelayMs: options.maximumDelayMs ?? 20_000,
      jitter: options.jitter ?? 1,
      jitterMode: options.jitterMode ?? 'additive',
      maximumRetryTimeMs: options.maximumRetryTimeMs ?? 0,
      maximumAttempts: options.maximumAttempts ?? 0,
    };
    timeoutOption(resolved.initialDelayMs, 'exponentialBackoff: initialDelayMs');
    // A cap of 0 makes every wait 0, a near-busy retry loop, and was likely meant as "no cap" (0 is "no
    // limit" for maximumRetryTimeMs; Go's client takes it as its default). initialDelayMs: 0 is the way to ask.
    timeoutOption(resolved.maximumDelayMs, 'exponentialBackoff: maximumDelayMs', 1);
    for (const key of ['jitter', 'maximumRetryTimeMs'] as const) {
      if (!(Number.isFinite(resolved[key]) && resolved[key] >= 0)) invalid(key, 'a finite number >= 0', resolved[key]);
    }
    if (!(Number.isFinite(resolved.backoffExponent) && resolved.backoffExponent >= 1)) {
      invalid('backoffExponent', 'a finite number >= 1', resolved.backoffExponent);
    }
    if (!(Number.isInteger(resolved.maximumAttempts) && resolved.maximumAttempts >= 0)) {
      invalid('maximumAttempts', 'an integer >= 0', resolved.maximumAttempts);
    }
    if (!jitterModes.includes(resolved.jitterMode)) invalid('jitterMode', jitterModes.join(', '), resolved.jitterMode);
    if (resolved.jitterMode === 'proportional' && resolved.jitter > 1) {
      invalid('jitter', 'at most 1 with jitterMode proportional', resolved.jitter);
    }
    // A wait longer than setTimeout can take fires at once: the client would retry in a busy loop.
    // Jitter is added after the cap, so the longest wait is the cap with the most jitter (random -> 1).
    const longestMs = withJitter(resolved.maximumDelayMs, 1, resolved);
    if (longestMs > MAX_TIMEOUT_MS) {
      throw new InvalidOptionsError(
        `exponentialBackoff: maximumDelayMs with its jitter can wait ${longestMs} ms, past ${MAX_TIMEOUT_MS} ms`,
      );
    }
    this.options = Object.freeze(resolved);
    this.#environment = environmentOption(options.environment, ['now', 'random'], 'exponentialBackoff: environment');
    this.#sweeps = new RetrySweeps(this.options, this.#environment);
  }

  getConnectWaitDuration(uri: string): number {
    const sweep = this.#sweeps.next(uri);
    return sweep === 0 ? 0 : this.#sweeps.cap(exponentialDelay(sweep, this.#environment.random(), this.options));
  }

  reset(): void {
    this.#sweeps.reset();
  }
}

function invalid(option: string, expected: string, got: unknown): never {
  throw new InvalidOptionsError(`exponentialBackoff: ${option} must be ${expected}, got ${String(got)}`);
}

/** Exponential backoff; with no options, AMPS's defaults (200 ms, × 2, 20 s cap, additive jitter 1.0, never give up). */
export function exponentialBackoff(options?: ExponentialBackoffOptions): ExponentialBackoff {
  return new ExponentialBackoff(options);
}

/**
 * The settings HAClient uses by default, chosen with the storm benchmark (`pnpm bench storm`): when
 * 10,000 clients lose their server for 5 s or 30 s, at most about 7% of them reconnect in any
 * 100 ms and 99% are back within 2.7 s of the server's return. Full jitter does the spreading; the
 * 3 s cap bounds how long a client sleeps through a recovered server.
 */
export const recommendedBackoffOptions: Readonly<ExponentialBackoffOptions> = Object.freeze({
  initialDelayMs: 200,
  backoffExponent: 2,
  maximumDelayMs: 3_000,
  jitterMode: 'full',
  maximumRetryTimeMs: 0,
});

/**
 * Exponential backoff with {@link recommendedBackoffOptions}, the HAClient default; `overrides` win,
 * except those left undefined, which keep the preset (a spread would turn them into AMPS's defaults).
 */
export function recommendedBackoff(overrides: ExponentialBackoffOptions = {}): ExponentialBackoff {
  const given = Object.entries(overrides).filter(([, value]) => value !== undefined);
  return new ExponentialBackoff({ ...recommendedBackoffOptions, ...Object.fromEntries(given) });
}
