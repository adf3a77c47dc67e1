/*
 * The option checks the Client, its streams, the transports, the HA client and the test broker
 * share: a bad value is an `InvalidOptionsError` naming the option, when it is given.
 */
import { defaultEnvironment, type Environment } from '../contracts.js';
import { refusals } from '../encodable.js';
import { encodeCommand } from '../encoder.js';
import { InvalidOptionsError } from '../errors.js';
import { type AckType, AckTypes } from '../fields.js';
import type { Command } from '../message.js';

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
 * Checks a publish's topic and body: a non-empty topic, and data that is a string or bytes. The
 * encoder takes a command without data as an empty body; a publish without one is a mistake.
 */
export function checkPublish(topic: unknown, data: unknown): void {
  if (typeof topic !== 'string' || topic === '') throw new InvalidOptionsError('publish needs a topic');
  if (typeof data !== 'string' && !(data instanceof Uint8Array)) throw refusals.data();
}

/**
 * Whether a frame with body `data` might be longer than `maxFrameSize`: a UTF-16 code unit takes
 * at most 3 bytes of UTF-8, and a header far less than the room left for it here.
 */
export function mayExceedFrameSize(data: string | Uint8Array | undefined, maxFrameSize: number): boolean {
  const body = data === undefined ? 0 : typeof data === 'string' ? 3 * data.length : data.length;
  return body + Math.min(64 * 1024, maxFrameSize / 2) > maxFrameSize;
}

/**
 * Refuses a command whose frame would be longer than `maxFrameSize`, keeping `reserve` bytes for
 * fields added later (a publish store's sequence): a server that refuses a frame closes the
 * connection, and a publish store would send it again after every reconnect. Cheap unless the
 * body is near the limit; then the frame is encoded once to measure it.
 */
export function checkFrameSize(command: Command, maxFrameSize: number, reserve = 0): void {
  if (!mayExceedFrameSize(command.data, maxFrameSize - reserve)) return;
  const size = encodeCommand(command).length - 4 + reserve;
  if (size > maxFrameSize) {
    throw new InvalidOptionsError(
      `${command.command} of ${size} bytes is longer than maxFrameSize (${maxFrameSize} bytes); raise maxFrameSize to what the server accepts, or send less`,
    );
  }
}

/**
 * Checks heartbeat settings: an interval over 0 s, and a timeout (by default twice the interval)
 * from the interval to what `setTimeout` can wait. Returns both, in seconds.
 */
export function heartbeatOption(intervalS: unknown, timeoutS?: unknown): { intervalS: number; timeoutS: number } {
  if (!(typeof intervalS === 'number' && Number.isFinite(intervalS) && intervalS > 0)) {
    throw new InvalidOptionsError(`heartbeat interval must be a positive number of seconds, got ${String(intervalS)}`);
  }
  const timeout = timeoutS ?? intervalS * 2;
  if (!(typeof timeout === 'number' && timeout >= intervalS && timeout * 1000 <= MAX_TIMEOUT_MS)) {
    throw new InvalidOptionsError(
      `heartbeat timeout (${String(timeout)}s) must be from the interval (${intervalS}s) to ${Math.floor(MAX_TIMEOUT_MS / 1000)}s`,
    );
  }
  return { intervalS, timeoutS: timeout };
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

/** Checks a count option (bytes or messages): undefined, or a positive integer. */
export function countOption(value: unknown, name: string): number | undefined {
  if (value !== undefined && !(Number.isSafeInteger(value) && (value as number) > 0)) {
    throw new InvalidOptionsError(`${name} must be a positive integer, got ${String(value)}`);
  }
  return value as number | undefined;
}

/**
 * Checks an `environment` option: undefined (the real clock, timers and `Math.random`), or an
 * object with the functions the caller uses. Else an `InvalidOptionsError`, rather than a
 * `TypeError` later, from a timer in the middle of I/O or a reconnect.
 */
export function environmentOption<K extends keyof Environment>(
  value: Pick<Environment, K> | undefined,
  needs: readonly K[],
  name: string,
): Pick<Environment, K> {
  if (value !== undefined && !needs.every((f) => typeof (value as Partial<Environment> | null)?.[f] === 'function')) {
    const list = needs.map((f) => `${f}()`);
    throw new InvalidOptionsError(
      `${name} needs ${list.slice(0, -1).join(', ')}${list.length > 1 ? ' and ' : ''}${list.at(-1)}`,
    );
  }
  return value ?? defaultEnvironment;
}

/**
 * Checks a subscription's `bookmark` option: undefined or a non-empty string. A bookmark store
 * takes it as the recovery point's base, so null or '' would resume from an empty bookmark.
 */
export function bookmarkOption(value: unknown): string | undefined {
  if (value !== undefined && (typeof value !== 'string' || value.trim() === '')) {
    throw new InvalidOptionsError(
      `bookmark must be a non-empty string, got ${typeof value === 'string' ? `'${value}'` : String(value)}`,
    );
  }
  return value;
}

/** Checks `flush`'s ack type: one a flush is answered with (any other would only time out). */
export function flushAckTypeOption(value: unknown): 'processed' | 'completed' | 'persisted' {
  if (value !== 'processed' && value !== 'completed' && value !== 'persisted') {
    throw new InvalidOptionsError(`flush waits for processed, completed or persisted, got ${String(value)}`);
  }
  return value;
}

/** Checks `execute`'s `waitFor`: an ack type, or `none` (any other would only time out). */
export function waitForOption(value: unknown): AckType | 'none' {
  if (value !== 'none' && !AckTypes.includes(value as AckType)) {
    throw new InvalidOptionsError(`waitFor must be one of ${AckTypes.join(', ')} or none, got ${String(value)}`);
  }
  return value as AckType | 'none';
}
