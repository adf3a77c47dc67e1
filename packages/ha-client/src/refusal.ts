import { AmpsError } from '@amps-ts/core-protocol';

/**
 * Whether the server refused the command itself (a failure ack, such as a bad filter): sending it
 * again, here or elsewhere, will not help. A lost connection, a timeout or an abort is not one.
 */
export function isRefusal(error: unknown): error is AmpsError {
  return AmpsError.isInstance(error) && !error.isRetryable && error.code !== 'aborted';
}
