import type { Environment, TimerHandle } from '../contracts.js';
import { AbortError, TimedOutError } from '../errors.js';
import { signalOption } from './checks.js';

/** The error an aborted signal stands for: its reason if that is an Error, else an `AbortError`. */
export function abortReason(signal: AbortSignal, what: string): Error {
  const reason = signal.reason;
  if (reason instanceof Error && reason.name !== 'AbortError') return reason;
  return new AbortError(`${what} aborted`, { cause: reason });
}

/** Throws what an already-aborted `signal` stands for: a call aborted before it starts sends nothing. */
export function throwIfAborted(signal: AbortSignal | undefined, what: string): void {
  if (signalOption(signal)?.aborted) throw abortReason(signal as AbortSignal, what);
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
  environment: Pick<Environment, 'setTimeout' | 'clearTimeout'>,
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
    // The last look: after a blocked event loop (a long handler, a GC pause) timers run before
    // sockets are read, so an answer that has arrived gets one turn to be read before we give up.
    const lastLook = () => {
      timer = environment.setTimeout(() => expire(new TimedOutError(`${what} timed out after ${timeoutMs} ms`)), 0);
    };
    timer = environment.setTimeout(lastLook, timeoutMs);
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
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // `settled` is a plain property, not a getter: the client reads its session's for every
  // message, and a getter made per object costs a call that V8 does not inline.
  const settable = {
    promise,
    settled: false,
    resolve: (value: T) => {
      if (settable.settled) return;
      settable.settled = true;
      resolve(value);
    },
    reject: (error: unknown) => {
      if (settable.settled) return;
      settable.settled = true;
      reject(error);
    },
  };
  return settable;
}
