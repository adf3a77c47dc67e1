import { describe, expect, it } from 'vitest';
import * as errors from '../src/errors.js';
import {
  AmpsError,
  type AmpsErrorCode,
  codeForReason,
  errorFromReason,
  InvalidUriError,
  parseUri,
  RetryExhaustedError,
  toError,
} from '../src/index.js';

/** Every error class with the code it stands for. */
const classes: ReadonlyArray<[string, new (message: string, options?: errors.AmpsErrorOptions) => AmpsError, string]> =
  [
    ['ConnectionError', errors.ConnectionError, 'connection'],
    ['CertificateError', errors.CertificateError, 'certificate'],
    ['DisconnectedError', errors.DisconnectedError, 'disconnected'],
    ['TimedOutError', errors.TimedOutError, 'timed_out'],
    ['AbortError', errors.AbortError, 'aborted'],
    ['AuthenticationError', errors.AuthenticationError, 'authentication'],
    ['NotEntitledError', errors.NotEntitledError, 'not_entitled'],
    ['BadFilterError', errors.BadFilterError, 'bad_filter'],
    ['BadRegexTopicError', errors.BadRegexTopicError, 'bad_regex_topic'],
    ['InvalidTopicError', errors.InvalidTopicError, 'invalid_topic'],
    ['NameInUseError', errors.NameInUseError, 'name_in_use'],
    ['SubscriptionAlreadyExistsError', errors.SubscriptionAlreadyExistsError, 'subscription_already_exists'],
    ['AlreadyExistsError', errors.AlreadyExistsError, 'already_exists'],
    ['BookmarkNotFoundError', errors.BookmarkNotFoundError, 'bookmark_not_found'],
    ['InvalidBookmarkError', errors.InvalidBookmarkError, 'invalid_bookmark'],
    ['InvalidUriError', errors.InvalidUriError, 'invalid_uri'],
    ['InvalidOptionsError', errors.InvalidOptionsError, 'invalid_options'],
    ['ProtocolError', errors.ProtocolError, 'protocol'],
    ['PublishStoreGapError', errors.PublishStoreGapError, 'publish_store_gap'],
    ['StoreFullError', errors.StoreFullError, 'store_full'],
    ['DurableStoreError', errors.DurableStoreError, 'durable_store'],
    ['SlowConsumerError', errors.SlowConsumerError, 'slow_consumer'],
    ['CommandError', errors.CommandError, 'command_failed'],
  ];

const retryable = new Set(['connection', 'certificate', 'disconnected', 'timed_out', 'name_in_use']);

describe('errors', () => {
  it.each(classes)('%s has a stable code, a name and identity', (name, Class, code) => {
    const cause = new Error('root');
    const error = new Class('it broke', { cause, reason: 'server says' });
    expect(error).toBeInstanceOf(Error);
    expect(error).toBeInstanceOf(AmpsError);
    expect(error).toBeInstanceOf(Class);
    expect(error.code).toBe(code);
    expect(error.name).toBe(name);
    expect(Class.name).toBe(name);
    expect(error.message).toBe('it broke');
    expect(error.cause).toBe(cause);
    expect(error.reason).toBe('server says');
    expect(error.isRetryable).toBe(retryable.has(code));
    expect(AmpsError.isInstance(error)).toBe(true);
    expect((Class as unknown as typeof AmpsError).isInstance(error)).toBe(true);
    for (const [, Other, otherCode] of classes) {
      if (otherCode !== code) expect((Other as unknown as typeof AmpsError).isInstance(error)).toBe(false);
    }
    expect(String(error)).toBe(`${name}: it broke`);
  });

  it('has a class for every code, and no two classes share one', () => {
    const codes = classes.map(([, , code]) => code);
    expect(new Set(codes).size).toBe(codes.length);
    const all: AmpsErrorCode[] = [...codes, 'retry_exhausted'] as AmpsErrorCode[];
    expect(all.length).toBe(new Set(all).size);
  });

  it('recognises errors from another copy of the package, where instanceof fails', async () => {
    // A query string makes the module loader evaluate the file again: a second copy of the classes.
    const specifier = '../src/errors.ts?another-copy';
    const copy = (await import(/* @vite-ignore */ specifier)) as typeof errors;
    expect(copy.ProtocolError).not.toBe(errors.ProtocolError);
    const foreign = new copy.ProtocolError('from the other copy');
    expect(foreign instanceof errors.ProtocolError).toBe(false);
    expect(errors.AmpsError.isInstance(foreign)).toBe(true);
    expect(errors.ProtocolError.isInstance(foreign)).toBe(true);
    expect(errors.ConnectionError.isInstance(foreign)).toBe(false);
    expect(copy.AmpsError.isInstance(new errors.TimedOutError('local'))).toBe(true);
    expect(
      errors.RetryExhaustedError.isInstance(new copy.RetryExhaustedError('x', { elapsedMs: 1, attempts: 1 })),
    ).toBe(true);
  });

  it('does not mistake other values for AMPS errors', () => {
    for (const value of [new Error('x'), null, undefined, 'protocol', { code: 'protocol' }, 42]) {
      expect(AmpsError.isInstance(value)).toBe(false);
      expect(errors.ProtocolError.isInstance(value)).toBe(false);
    }
  });

  it('carries the details of a RetryExhaustedError', () => {
    const error = new RetryExhaustedError('gave up', {
      elapsedMs: 1500,
      attempts: 7,
      servers: [{ uri: 'tcp://u:***@h:1/amps', error: 'refused' }],
    });
    expect([error.code, error.name, error.elapsedMs, error.attempts, error.isRetryable]).toEqual([
      'retry_exhausted',
      'RetryExhaustedError',
      1500,
      7,
      false,
    ]);
    expect(error.servers).toEqual([{ uri: 'tcp://u:***@h:1/amps', error: 'refused' }]);
    expect(new RetryExhaustedError('x', { elapsedMs: 0, attempts: 0 }).servers).toEqual([]);
    expect(RetryExhaustedError.isInstance(error)).toBe(true);
    expect(RetryExhaustedError.isInstance(new errors.TimedOutError('t'))).toBe(false);
  });
});

describe('server reasons', () => {
  it.each<[string | undefined, AmpsErrorCode]>([
    ['auth failure', 'authentication'],
    ['authentication failed', 'authentication'],
    ['Authentication Failure', 'authentication'],
    ['not authorized', 'authentication'],
    ['bad credentials', 'authentication'],
    ['not entitled', 'not_entitled'],
    ['not_entitled', 'not_entitled'],
    ['entitlement check failed', 'not_entitled'],
    ['bad filter', 'bad_filter'],
    ['bad_filter', 'bad_filter'],
    ['bad regex', 'bad_regex_topic'],
    ['bad regex topic', 'bad_regex_topic'],
    ['invalid topic', 'invalid_topic'],
    ['topic not found', 'invalid_topic'],
    ['name in use', 'name_in_use'],
    ['subscription already exists', 'subscription_already_exists'],
    ['sub_id already exists', 'subscription_already_exists'],
    ['sub_id in use', 'subscription_already_exists'],
    ['already exists', 'already_exists'],
    ['bookmark not found', 'bookmark_not_found'],
    ['invalid bookmark', 'invalid_bookmark'],
    ['bad bookmark', 'invalid_bookmark'],
    // `_` for the spaces, anywhere.
    ['not_authorized', 'authentication'],
    ['bad_credentials', 'authentication'],
    ['regex_topic', 'bad_regex_topic'],
    ['topic_not_found', 'invalid_topic'],
    ['sub_id_in_use', 'subscription_already_exists'],
    ['subid_already_exists', 'subscription_already_exists'],
    ['bookmark_not_found', 'bookmark_not_found'],
    ['unknown command', 'command_failed'],
    ['sync replication failed', 'command_failed'],
    ['', 'command_failed'],
    [undefined, 'command_failed'],
  ])('maps %j to %s', (reason, code) => {
    expect(codeForReason(reason)).toBe(code);
  });

  it('builds the typed error for a failed ack', () => {
    const error = errorFromReason('subscribe', 'bad filter');
    expect(error).toBeInstanceOf(errors.BadFilterError);
    expect(error.message).toBe('subscribe failed: bad filter');
    expect(error.reason).toBe('bad filter');
    const plain = errorFromReason('flush', undefined);
    expect(plain).toBeInstanceOf(errors.CommandError);
    expect(plain.message).toBe('flush failed');
    expect(errorFromReason('logon', 'auth failure').code).toBe('authentication');
  });

  it('toError keeps an Error as it is and wraps anything else', () => {
    const error = new RetryExhaustedError('gave up', { elapsedMs: 1, attempts: 1 });
    expect(toError(error)).toBe(error);
    const wrapped = toError('socket hang up');
    expect(wrapped).toBeInstanceOf(Error);
    expect(wrapped.message).toBe('socket hang up');
    expect(toError(undefined).message).toBe('undefined');
  });

  it('never puts a URI password in an error message', () => {
    let error: unknown;
    try {
      parseUri('tcp://user:s3cr3t-pw@host:9007/nope');
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(InvalidUriError);
    expect(String(error)).not.toContain('s3cr3t-pw');
    expect((error as Error).stack ?? '').not.toContain('s3cr3t-pw');
  });
});
