/**
 * The page the `browser` benchmarks run in, on `globalThis.ampsBench`: a raw WebSocket and the
 * Client on browserTransport, and HAClient with the memory or the IndexedDB stores. Each function
 * returns the milliseconds its work took, timed in the page.
 */
import { Bookmarks, Client, encodeCommand } from '@amps-ts/core-protocol';
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

/** A raw WebSocket to the broker, logged on: what the Client is measured against. */
async function rawLogon(uri: string, name: string) {
  const ws = new WebSocket(uri);
  ws.binaryType = 'arraybuffer';
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = reject;
  });
  /** Resolves on the next message from the broker (each is one frame). */
  const next = () => new Promise<void>((resolve) => (ws.onmessage = () => resolve()));
  const acked = next();
  ws.send(encodeCommand({ command: 'logon', commandId: 'l', clientName: name, ackType: 'processed' }));
  await acked;
  return { ws, next };
}

/** Subscribes to `topic` from the start of the log; resolves once `count` messages have arrived. */
function replayed(client: Pick<Client, 'subscribe'>, topic: string, count: number): Promise<void> {
  return new Promise<void>((resolve) => {
    let received = 0;
    client.subscribe(topic, {
      bookmark: Bookmarks.EPOCH,
      onMessage: () => {
        if (++received === count) resolve();
      },
    });
  });
}

async function loggedOnClient(name: string, uri: string): Promise<Client> {
  const client = new Client(name, { transport: browserTransport() });
  await client.connectAndLogon(uri);
  return client;
}

const api = {
  /** Publishes `count` pre-encoded frames on a raw WebSocket, then a flush; resolves at its ack. */
  async rawPublish(uri: string, count: number): Promise<number> {
    const { ws, next } = await rawLogon(uri, `bench-raw-publisher-${runs++}`);
    const frame = encodeCommand({ command: 'publish', topic: 'bench-client-publish', data: body });
    const start = performance.now();
    for (let i = 0; i < count; i++) ws.send(frame);
    const flushed = next();
    ws.send(encodeCommand({ command: 'flush', commandId: 'f', ackType: 'processed' }));
    await flushed;
    const ms = performance.now() - start;
    ws.close();
    return ms;
  },

  /** The same through the Client on browserTransport (awaiting its backpressure promises). */
  async clientPublish(uri: string, count: number): Promise<number> {
    const client = await loggedOnClient(`bench-client-publisher-${runs++}`, uri);
    const start = performance.now();
    for (let i = 0; i < count; i++) {
      const full = client.publish('bench-client-publish', body);
      if (full) await full;
    }
    await client.flush('processed');
    const ms = performance.now() - start;
    await client.disconnect();
    return ms;
  },

  /** Counts `count` messages of `topic` replayed from the start of the log on a raw WebSocket. */
  async rawReplay(uri: string, topic: string, count: number): Promise<number> {
    const { ws } = await rawLogon(uri, `bench-raw-subscriber-${runs++}`);
    const start = performance.now();
    await new Promise<void>((resolve) => {
      let received = 0;
      ws.onmessage = () => {
        if (++received === count) resolve();
      };
      ws.send(encodeCommand({ command: 'subscribe', commandId: 's', subId: 's', topic, bookmark: Bookmarks.EPOCH }));
    });
    const ms = performance.now() - start;
    ws.close();
    return ms;
  },

  /** The same through the Client's subscribe callback. */
  async clientReplay(uri: string, topic: string, count: number): Promise<number> {
    const client = await loggedOnClient(`bench-client-subscriber-${runs++}`, uri);
    const start = performance.now();
    await replayed(client, topic, count);
    const ms = performance.now() - start;
    await client.disconnect();
    return ms;
  },

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
    await replayed(client, topic, count);
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
