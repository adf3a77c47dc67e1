/**
 * Every error amps-ts raises is an {@link AmpsError} with a stable `code`.
 *
 * Plugins ship as separate packages, so two copies of core-protocol can meet in one app and
 * `instanceof` can fail; `AmpsError.isInstance(e)` checks a global symbol instead.
 */

const marker = Symbol.for('@amps-ts/error');

/** Stable error codes. Match on these, never on messages. */
export type AmpsErrorCode =
  | 'aborted'
  | 'already_exists'
  | 'authentication'
  | 'bad_filter'
  | 'bad_regex_topic'
  | 'bookmark_not_found'
  | 'certificate'
  | 'command_failed'
  | 'connection'
  | 'disconnected'
  | 'invalid_bookmark'
  | 'invalid_options'
  | 'invalid_topic'
  | 'invalid_uri'
  | 'name_in_use'
  | 'not_entitled'
  | 'protocol'
  | 'publish_store_gap'
  | 'retry_exhausted'
  | 'slow_consumer'
  | 'durable_store'
  | 'store_full'
  | 'subscription_already_exists'
  | 'timed_out';

export interface AmpsErrorOptions {
  cause?: unknown;
  /** The server's `reason` text, when the error came from an ack. */
  reason?: string;
}

export class AmpsError extends Error {
  readonly [marker] = true;
  readonly code: AmpsErrorCode;
  /** The server's `reason` text, when the error came from an ack. */
  readonly reason: string | undefined;

  constructor(code: AmpsErrorCode, message: string, options: AmpsErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AmpsError';
    this.code = code;
    this.reason = options.reason;
  }

  /** Whether trying again (on this or another server) can succeed. */
  get isRetryable(): boolean {
    return retryableCodes.has(this.code);
  }

  static isInstance(error: unknown): error is AmpsError {
    return typeof error === 'object' && error !== null && marker in error;
  }
}

// A refused certificate is retryable: another server may present a good one.
const retryableCodes = new Set<AmpsErrorCode>([
  'connection',
  'certificate',
  'disconnected',
  'timed_out',
  'name_in_use',
]);

type AmpsErrorClass = new (message: string, options?: AmpsErrorOptions) => AmpsError;
const classByCode = new Map<AmpsErrorCode, AmpsErrorClass>();

function define<C extends AmpsErrorCode>(code: C, name: string) {
  const Class = class extends AmpsError {
    declare readonly code: C;
    constructor(message: string, options?: AmpsErrorOptions) {
      super(code, message, options);
      this.name = name;
    }
    static override isInstance(error: unknown): error is AmpsError & { code: C } {
      return AmpsError.isInstance(error) && error.code === code;
    }
  };
  Object.defineProperty(Class, 'name', { value: name });
  classByCode.set(code, Class);
  return Class;
}

/** The transport could not connect, or failed while connected. */
export const ConnectionError = define('connection', 'ConnectionError');
export type ConnectionError = InstanceType<typeof ConnectionError>;
/**
 * The server's TLS certificate was refused: not signed by a trusted CA, expired or not yet
 * valid, or not for the host name connected to. The message says which and what to do.
 */
export const CertificateError = define('certificate', 'CertificateError');
export type CertificateError = InstanceType<typeof CertificateError>;
/** The connection closed before the operation finished, or there is no connection. */
export const DisconnectedError = define('disconnected', 'DisconnectedError');
export type DisconnectedError = InstanceType<typeof DisconnectedError>;
/** No answer within the allowed time. */
export const TimedOutError = define('timed_out', 'TimedOutError');
export type TimedOutError = InstanceType<typeof TimedOutError>;
/** The caller's `AbortSignal` fired. */
export const AbortError = define('aborted', 'AbortError');
export type AbortError = InstanceType<typeof AbortError>;
/** The server refused the credentials. */
export const AuthenticationError = define('authentication', 'AuthenticationError');
export type AuthenticationError = InstanceType<typeof AuthenticationError>;
export const NotEntitledError = define('not_entitled', 'NotEntitledError');
export type NotEntitledError = InstanceType<typeof NotEntitledError>;
export const BadFilterError = define('bad_filter', 'BadFilterError');
export type BadFilterError = InstanceType<typeof BadFilterError>;
export const BadRegexTopicError = define('bad_regex_topic', 'BadRegexTopicError');
export type BadRegexTopicError = InstanceType<typeof BadRegexTopicError>;
export const InvalidTopicError = define('invalid_topic', 'InvalidTopicError');
export type InvalidTopicError = InstanceType<typeof InvalidTopicError>;
/** Another connection logged on with this client name and the server dropped this one. */
export const NameInUseError = define('name_in_use', 'NameInUseError');
export type NameInUseError = InstanceType<typeof NameInUseError>;
export const SubscriptionAlreadyExistsError = define('subscription_already_exists', 'SubscriptionAlreadyExistsError');
export type SubscriptionAlreadyExistsError = InstanceType<typeof SubscriptionAlreadyExistsError>;
export const AlreadyExistsError = define('already_exists', 'AlreadyExistsError');
export type AlreadyExistsError = InstanceType<typeof AlreadyExistsError>;
export const BookmarkNotFoundError = define('bookmark_not_found', 'BookmarkNotFoundError');
export type BookmarkNotFoundError = InstanceType<typeof BookmarkNotFoundError>;
export const InvalidBookmarkError = define('invalid_bookmark', 'InvalidBookmarkError');
export type InvalidBookmarkError = InstanceType<typeof InvalidBookmarkError>;
export const InvalidUriError = define('invalid_uri', 'InvalidUriError');
export type InvalidUriError = InstanceType<typeof InvalidUriError>;
/** An option passed to an amps-ts API is missing, of the wrong type or out of range. */
export const InvalidOptionsError = define('invalid_options', 'InvalidOptionsError');
export type InvalidOptionsError = InstanceType<typeof InvalidOptionsError>;
/** The peer sent bytes that are not valid AMPS framing or headers. */
export const ProtocolError = define('protocol', 'ProtocolError');
export type ProtocolError = InstanceType<typeof ProtocolError>;
/** The server we failed over to has persisted less of our stream than an earlier one had. */
export const PublishStoreGapError = define('publish_store_gap', 'PublishStoreGapError');
export type PublishStoreGapError = InstanceType<typeof PublishStoreGapError>;
/** A store with the `reject` policy is full. */
export const StoreFullError = define('store_full', 'StoreFullError');
export type StoreFullError = InstanceType<typeof StoreFullError>;
/** A durable store could not use its storage (a file, a browser database): not one of that store's, damaged, closed, in use by another store, or a system error (its `cause`). */
export const DurableStoreError = define('durable_store', 'DurableStoreError');
export type DurableStoreError = InstanceType<typeof DurableStoreError>;
/** A subscription's consumer fell so far behind that its bounded queue overflowed. */
export const SlowConsumerError = define('slow_consumer', 'SlowConsumerError');
export type SlowConsumerError = InstanceType<typeof SlowConsumerError>;
/** The server failed a command for a reason with no more specific class. */
export const CommandError = define('command_failed', 'CommandError');
export type CommandError = InstanceType<typeof CommandError>;

export interface RetryExhaustedDetails {
  /** Milliseconds spent trying. */
  elapsedMs: number;
  /** Connection attempts made. */
  attempts: number;
  /** The last error of each server tried, by redacted URI. */
  servers?: ReadonlyArray<{ uri: string; error: string }>;
}

/** A reconnect delay strategy gave up. */
export class RetryExhaustedError extends AmpsError {
  declare readonly code: 'retry_exhausted';
  readonly elapsedMs: number;
  readonly attempts: number;
  readonly servers: ReadonlyArray<{ uri: string; error: string }>;

  constructor(message: string, details: RetryExhaustedDetails, options?: AmpsErrorOptions) {
    super('retry_exhausted', message, options);
    this.name = 'RetryExhaustedError';
    this.elapsedMs = details.elapsedMs;
    this.attempts = details.attempts;
    this.servers = details.servers ?? [];
  }

  static override isInstance(error: unknown): error is RetryExhaustedError {
    return AmpsError.isInstance(error) && error.code === 'retry_exhausted';
  }
}

/** Matched against the reason with `_` read as a space: servers write either. */
const reasonTable: ReadonlyArray<readonly [RegExp, AmpsErrorCode]> = [
  [/auth(entication)? fail|not authorized|bad credentials/i, 'authentication'],
  [/not entitled|entitlement/i, 'not_entitled'],
  [/bad filter/i, 'bad_filter'],
  [/bad regex|regex topic/i, 'bad_regex_topic'],
  [/invalid topic|topic not found/i, 'invalid_topic'],
  [/name in use/i, 'name_in_use'],
  [/sub(scription)? ?(id)? already exists|sub ?id in use/i, 'subscription_already_exists'],
  [/already exists/i, 'already_exists'],
  [/bookmark not found/i, 'bookmark_not_found'],
  [/invalid bookmark|bad bookmark/i, 'invalid_bookmark'],
];

/** Maps a server `reason` string on a failed ack to the matching error code. */
export function codeForReason(reason: string | undefined): AmpsErrorCode {
  if (reason) {
    const words = reason.replaceAll('_', ' ');
    for (const [pattern, code] of reasonTable) if (pattern.test(words)) return code;
  }
  return 'command_failed';
}

/**
 * Builds the typed error for a failed ack. `shown` is the reason as the error tells it (the
 * reason with secrets hidden); the class still follows the server's own words.
 */
export function errorFromReason(
  command: string,
  reason: string | undefined,
  shown: string | undefined = reason,
): AmpsError {
  const Class = classByCode.get(codeForReason(reason)) ?? CommandError;
  return new Class(`${command} failed${shown ? `: ${shown}` : ''}`, { reason: shown });
}

/**
 * Whether the server refused the command itself (a failure ack, such as a bad filter): sending it
 * again, here or elsewhere, will not help. A lost connection, a timeout or an abort is not one.
 */
export function isRefusal(error: unknown): error is AmpsError {
  return AmpsError.isInstance(error) && !error.isRetryable && error.code !== 'aborted';
}

/** `value` if it is an `Error`, else an `Error` with its text: for whatever a `catch` caught. */
export function toError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value));
}
