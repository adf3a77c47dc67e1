/** What the stores check before they touch a database, and Node.js (no IndexedDB). */
import { DurableStoreError, InvalidOptionsError } from '@amps-ts/core-protocol';
import { describe, expect, it } from 'vitest';
import { IndexedDbBookmarkStore, IndexedDbPublishStore } from '../src/index.js';

describe.each([
  ['IndexedDbPublishStore', IndexedDbPublishStore],
  ['IndexedDbBookmarkStore', IndexedDbBookmarkStore],
] as const)('%s.open', (_, Store) => {
  it('refuses a bad name or option with an InvalidOptionsError', async () => {
    const open = Store.open as (name: unknown, options?: unknown) => Promise<unknown>;
    await expect(open('')).rejects.toThrow(
      new InvalidOptionsError('the database name must be a non-empty string, got '),
    );
    await expect(open(7)).rejects.toThrow(InvalidOptionsError);
    await expect(open('db', { durability: 'fsync' })).rejects.toThrow(
      new InvalidOptionsError("durability must be 'default', 'strict' or 'relaxed', got fsync"),
    );
    await expect(open('db', { onWriteError: 'log' })).rejects.toThrow(
      new InvalidOptionsError('onWriteError must be a function'),
    );
    await expect(open('db', { waitForLock: 'yes' })).rejects.toThrow(
      new InvalidOptionsError('waitForLock must be a boolean, got yes'),
    );
    await expect(open('db', { signal: {} })).rejects.toThrow(new InvalidOptionsError('signal must be an AbortSignal'));
  });

  it('fails with a DurableStoreError where there is no IndexedDB (Node.js)', async () => {
    const error = await Store.open('db').catch((e: unknown) => e);
    expect(DurableStoreError.isInstance(error)).toBe(true);
    expect((error as Error).message).toMatch(
      /^IndexedDB is not available here, so the (publish|bookmark) store "db" cannot be opened$/,
    );
  });
});
