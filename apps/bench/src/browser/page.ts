/**
 * The page the `browser` benchmarks run in: HAClient on browserTransport with the memory or the
 * IndexedDB stores, on `globalThis.ampsBench`. Each function returns the milliseconds its work
 * took, timed in the page.
 */
import { Bookmarks } from '@amps-ts/core-protocol';
import { HAClient, MemoryBookmarkStore, MemoryPublishStore } from '@amps-ts/ha-client';
import { IndexedDbBookmarkStore, IndexedDbPublishStore } from '@amps-ts/store-indexeddb';
import { browserTransport } from '@amps-ts/transport-browser';

export type StoreKind = 'memory' | 'indexeddb';

/** A 100-byte JSON body, as the Node.js publish benchmarks use. */
const body = JSON.stringify({ id: 1, symbol: 'ABCD', price: 123.45, qty: 500, side: 'buy', note: 'x'.repeat(28) });

let runs = 0;

async function publishStore(kind: StoreKind) {
  return kind === 'memory' ? new MemoryPublishStore() : await IndexedDbPublishStore.open(`bench-publish-${runs}`);
}

const api = {
  /**
   * Publishes `count` messages, `together` (all, then awaits them) or one at a time (each awaited
   * before the next), and waits until the server has persisted them all.
   */
  async publish(kind: StoreKind, uri: string, count: number, together: boolean): Promise<number> {
    const run = runs++;
    const store = await publishStore(kind);
    const client = new HAClient(`bench-publisher-${run}`, {
      transport: browserTransport(),
      servers: [uri],
      heartbeat: false,
      publishStore: store,
    });
    await client.connectAndLogon();
    const start = performance.now();
    if (together) {
      const all: Array<Promise<void> | undefined> = [];
      for (let i = 0; i < count; i++) all.push(client.publish('bench-publish', body));
      await Promise.all(all);
    } else {
      for (let i = 0; i < count; i++) await client.publish('bench-publish', body);
    }
    await client.publishFlush(120_000);
    const ms = performance.now() - start;
    await client.disconnect();
    if (store instanceof IndexedDbPublishStore) await store.close();
    return ms;
  },

  /** Replays `count` messages of `topic` from the start of the log through a bookmark subscription. */
  async replay(kind: StoreKind, uri: string, topic: string, count: number): Promise<number> {
    const run = runs++;
    const bookmarkStore =
      kind === 'memory' ? new MemoryBookmarkStore() : await IndexedDbBookmarkStore.open(`bench-bookmarks-${run}`);
    const client = new HAClient(`bench-subscriber-${run}`, {
      transport: browserTransport(),
      servers: [uri],
      heartbeat: false,
      bookmarkStore,
    });
    await client.connectAndLogon();
    const start = performance.now();
    await new Promise<void>((resolve) => {
      let received = 0;
      client.subscribe(topic, {
        bookmark: Bookmarks.EPOCH,
        onMessage: () => {
          if (++received === count) resolve();
        },
      });
    });
    if (bookmarkStore instanceof IndexedDbBookmarkStore) await bookmarkStore.whenWritten();
    const ms = performance.now() - start;
    await client.disconnect();
    if (bookmarkStore instanceof IndexedDbBookmarkStore) await bookmarkStore.close();
    return ms;
  },
};

export type BenchPageApi = typeof api;

(globalThis as { ampsBench?: BenchPageApi }).ampsBench = api;
(globalThis as { __entryLoaded?: boolean }).__entryLoaded = true;
