import { readFileSync, writeFileSync } from 'node:fs';
import { Bookmarks, DurableStoreError, InvalidOptionsError } from '@amps-ts/core-protocol';
import { describe, expect, it } from 'vitest';
import { FileBookmarkStore, FilePublishStore } from '../src/index.js';
import { cleanups, tempFile } from './helpers.js';

function open(path: string, options?: ConstructorParameters<typeof FileBookmarkStore>[1]): FileBookmarkStore {
  const store = new FileBookmarkStore(path, { replicationLagMs: 0, ...options });
  cleanups.push(() => store.close());
  return store;
}

/** Delivers `publisher|n|` for each n, as HAClient does: log, then discard once handled. */
function deliver(store: FileBookmarkStore, subId: string, publisher: number, ns: number[], discard = ns): void {
  for (const n of ns) store.log(subId, `${publisher}|${n}|`);
  for (const n of discard) store.discard(subId, `${publisher}|${n}|`);
}

const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

describe('FileBookmarkStore', () => {
  it('gives a new store on the file each subscription’s recovery point, and drops what was processed', () => {
    const path = tempFile();
    const store = open(path);
    store.persisted('orders', Bookmarks.EPOCH); // the subscription's start
    deliver(store, 'orders', 11, [1, 2, 3]);
    deliver(store, 'orders', 22, [1, 2]);
    const before = store.getMostRecent('orders');
    store.close();

    const again = open(path);
    expect(again.getMostRecent('orders')).toBe(before);
    expect(again.isDuplicate('orders', '11|3|')).toBe(true);
    expect(again.log('orders', '22|2|')).toBe(false);
    expect(again.log('orders', '11|4|')).toBe(true);
    expect(again.log('orders', '33|1|')).toBe(true);
  });

  it('resumes before a message that was delivered but not processed when the process ended', () => {
    const path = tempFile();
    const store = open(path);
    store.persisted('orders', Bookmarks.EPOCH);
    deliver(store, 'orders', 11, [1, 2, 3], [1]);
    store.close();
    const again = open(path);
    expect(again.getMostRecent('orders')).toBe('0,11|1|');
    expect(again.log('orders', '11|2|')).toBe(true);
  });

  it('brings back a message processed ahead of one that was not (out of order), never skips one', () => {
    const path = tempFile();
    const store = open(path);
    store.persisted('orders', Bookmarks.EPOCH);
    deliver(store, 'orders', 11, [1, 2, 3], [2, 3]);
    store.close();
    const again = open(path);
    expect(again.getMostRecent('orders')).toBe('0');
    expect(again.log('orders', '11|1|')).toBe(true);
    expect(again.log('orders', '11|2|')).toBe(true); // processed before: comes again
  });

  it('keeps the recovery point the same through restarts with nothing new', () => {
    const path = tempFile();
    const store = open(path, { replicationLagMs: 2000, clock: () => Date.UTC(2026, 10, 27, 12) });
    store.persisted('orders', Bookmarks.NOW);
    deliver(store, 'orders', 11, [5, 6]);
    store.persisted('orders', '11|6|', 0); // a persisted ack, nothing outstanding
    deliver(store, 'orders', 22, [1]);
    const point = store.getMostRecent('orders');
    // The time reaches back replicationLagMs, but not before the subscription started (NOW, at 12:00).
    expect(point).toBe('11|6|,20261127T120000Z,11|6|,22|1|');
    store.close();
    for (let restart = 0; restart < 3; restart++) {
      const again = new FileBookmarkStore(path, { replicationLagMs: 2000 });
      expect(again.getMostRecent('orders')).toBe('20261127T120000Z,11|6|,22|1|');
      again.close();
    }
  });

  it('keeps a range’s end, resuming inside it', () => {
    const path = tempFile();
    const store = open(path);
    store.persisted('range', '[0:11|9|]');
    deliver(store, 'range', 11, [1, 2]);
    store.close();
    expect(open(path).getMostRecent('range')).toBe('[0,11|2|:11|9|]');
  });

  it('forgets a purged subscription, and every one on a purge of all', () => {
    const path = tempFile();
    const store = open(path);
    for (const subId of ['a', 'b', 'c']) {
      store.persisted(subId, Bookmarks.EPOCH);
      deliver(store, subId, 11, [1]);
    }
    store.flush();
    store.purge('a');
    // Written at once, not with the next turn's points: the last record forgets `a`.
    expect([...readFileSync(path).subarray(-2)]).toEqual([0x55, 0x61]);
    store.close();
    let again = open(path);
    expect(again.getMostRecent('a')).toBeUndefined();
    expect(again.getMostRecent('b')).toBe('0,11|1|');
    again.purge();
    again.close();
    again = open(path);
    expect(again.getMostRecent('b')).toBeUndefined();
    expect(again.getMostRecent('c')).toBeUndefined();
  });

  it('writes recovery points once per event-loop turn, or in each discard with writeThrough', async () => {
    const batched = tempFile();
    const store = open(batched);
    store.persisted('orders', Bookmarks.EPOCH);
    deliver(store, 'orders', 11, [1, 2]);
    expect(readFileSync(batched, 'latin1')).not.toContain('11|2|');
    await nextTurn();
    expect(readFileSync(batched, 'latin1')).toContain('11|2|');

    const through = tempFile();
    const eager = open(through, { writeThrough: true });
    eager.persisted('orders', Bookmarks.EPOCH);
    deliver(eager, 'orders', 11, [1, 2]);
    expect(readFileSync(through, 'latin1')).toContain('11|2|');
  });

  it('rewrites its file once old recovery points outweigh the live ones', () => {
    const path = tempFile();
    const store = open(path, { writeThrough: true });
    const subId = `orders-${'x'.repeat(100)}`; // about 130 bytes a record: 10 MB in 80,000
    store.persisted(subId, Bookmarks.EPOCH);
    for (let n = 1; n <= 80_000; n++) deliver(store, subId, 11, [n]);
    store.flush();
    expect(readFileSync(path).length).toBeLessThan(2 * 1024 * 1024);
    store.close();
    expect(open(path).getMostRecent(subId)).toBe('0,11|80000|');
  });

  it('refuses a file that is not a bookmark store, or is damaged, with a DurableStoreError; bad options with an InvalidOptionsError', () => {
    const path = tempFile();
    new FilePublishStore(path).close();
    expect(() => new FileBookmarkStore(path)).toThrow(/is not a bookmark store file/);
    const damaged = tempFile();
    const store = open(damaged);
    store.persisted('orders', Bookmarks.EPOCH);
    deliver(store, 'orders', 11, [1]);
    store.flush();
    deliver(store, 'orders', 11, [2]);
    store.close();
    const bytes = readFileSync(damaged);
    bytes[20] = (bytes[20] as number) ^ 0xff;
    writeFileSync(damaged, bytes);
    expect(() => new FileBookmarkStore(damaged)).toThrow(DurableStoreError);
    expect(() => new FileBookmarkStore(tempFile(), { writeThrough: 1 as unknown as boolean })).toThrow(
      InvalidOptionsError,
    );
    expect(() => new FileBookmarkStore(tempFile(), { replicationLagMs: -1 })).toThrow(InvalidOptionsError);
  });
});
