import { AbortError, type AmpsUri, TimedOutError, toError } from '@amps-ts/core-protocol';

/** What a dialer uses to end its attempt. */
export interface Attempt<T> {
  resolve(value: T): void;
  reject(error: Error): void;
  /** True once the attempt has ended (timed out, aborted, failed or succeeded). */
  readonly settled: boolean;
}

/**
 * Runs one connection attempt with the timeout and the abort signal applied. `dial` starts the
 * attempt and returns how to abandon it (destroy the socket); that runs whenever the attempt
 * fails, so a failed connect never leaves a socket behind.
 */
export function runAttempt<T>(
  uri: AmpsUri,
  timeoutMs: number,
  signal: AbortSignal | undefined,
  dial: (attempt: Attempt<T>) => () => void,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    if (signal?.aborted) {
      reject(new AbortError(`connecting to ${uri.redacted} was aborted`, { cause: signal.reason }));
      return;
    }
    let settled = false;
    let failed = false;
    let abandon: (() => void) | undefined;
    const finish = (error: Error | undefined, value?: T) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      if (error) {
        failed = true;
        abandon?.();
        reject(error);
      } else {
        resolve(value as T);
      }
    };
    const timer = setTimeout(
      () => finish(new TimedOutError(`connecting to ${uri.redacted} timed out after ${timeoutMs} ms`)),
      timeoutMs,
    );
    const onAbort = () =>
      finish(new AbortError(`connecting to ${uri.redacted} was aborted`, { cause: signal?.reason }));
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      abandon = dial({
        resolve: (value) => finish(undefined, value),
        reject: (error) => finish(error),
        get settled() {
          return settled;
        },
      });
      // The dial may have failed before it could hand back its abandon function.
      if (failed) abandon();
    } catch (error) {
      finish(toError(error));
    }
  });
}
