import type { Environment, TimerHandle } from '../contracts.js';
import { AbortError, InvalidOptionsError, TimedOutError } from '../errors.js';

/** The error an aborted signal stands for: its reason if that is an Error, else an `AbortError`. */
export function abortReason(signal: AbortSignal, what: string): Error {
  const reason = signal.reason;
  if (reason instanceof Error && reason.name !== 'AbortError') return reason;
  return new AbortError(`${what} aborted`, { cause: reason });
}

/** The longest delay `setTimeout` can wait (about 24.8 days): a longer one fires at once. */
export const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/**
 * Checks a timeout option: a number of milliseconds from `min` (0 means none, where allowed) to
 * {@link MAX_TIMEOUT_MS}, or undefined. Anything else is an `InvalidOptionsError` naming `name`.
 */
export function timeoutOption(value: unknown, name: string, min = 0): number | undefined {
  if (value !== undefined && !(typeof value === 'number' && value >= min && value <= MAX_TIMEOUT_MS)) {
    throw new InvalidOptionsError(`${name} must be ${min} to ${MAX_TIMEOUT_MS} ms, got ${String(value)}`);
  }
  return value as number | undefined;
}

/**
 * Checks a `signal` option: undefined, or something that listens like an `AbortSignal` (one from
 * another realm or a polyfill is not `instanceof` this one). Else an `InvalidOptionsError`, rather
 * than a `TypeError` from deep inside when the listener is added.
 */
export function signalOption(value: unknown): AbortSignal | undefined {
  const signal = value as AbortSignal | undefined;
  if (signal !== undefined && typeof signal?.addEventListener !== 'function') {
    throw new InvalidOptionsError('signal must be an AbortSignal');
  }
  return signal;
}

export interface Deadline {
  /** Stops the timer and removes the abort listener. Idempotent. */
  clear(): void;
}

/**
 * Arms a timeout and an abort signal for one operation; `onExpire` runs at most once, with a
 * `TimedOutError` or the abort reason. Every path clears both, so nothing stays scheduled.
 */
export function deadline(
  environment: Environment,
  what: string,
  timeoutMs: number | undefined,
  signal: AbortSignal | undefined,
  onExpire: (error: Error) => void,
): Deadline {
  signalOption(signal);
  let timer: TimerHandle | undefined;
  let done = false;
  const clear = () => {
    if (done) return;
    done = true;
    if (timer !== undefined) environment.clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  };
  const expire = (error: Error) => {
    if (done) return;
    clear();
    onExpire(error);
  };
  function onAbort(): void {
    expire(abortReason(signal as AbortSignal, what));
  }
  if (signal?.aborted) {
    // Report asynchronously so callers can finish setting up first.
    queueMicrotask(onAbort);
  } else {
    signal?.addEventListener('abort', onAbort, { once: true });
  }
  if (timeoutMs !== undefined && timeoutMs > 0 && Number.isFinite(timeoutMs)) {
    timer = environment.setTimeout(
      () => expire(new TimedOutError(`${what} timed out after ${timeoutMs} ms`)),
      timeoutMs,
    );
  }
  return { clear };
}

/** A promise with its settle functions, settled once. */
export interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(error: unknown): void;
  readonly settled: boolean;
}

export function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  let settled = false;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return {
    promise,
    resolve: (value) => {
      if (settled) return;
      settled = true;
      resolve(value);
    },
    reject: (error) => {
      if (settled) return;
      settled = true;
      reject(error);
    },
    get settled() {
      return settled;
    },
  };
}
