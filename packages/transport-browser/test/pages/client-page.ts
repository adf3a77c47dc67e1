/**
 * Page entry for the Client-in-a-browser test: the core-protocol `Client` on `browserTransport`,
 * driven from the test through `globalThis.ampsClient`. Results cross the page boundary as plain
 * JSON; errors as `{ name, code, message }`.
 */
import { AmpsError, Client, type Message } from '@amps-ts/core-protocol';
import { browserTransport } from '../../src/index.js';

export interface ErrorInfo {
  name: string;
  code: string | undefined;
  message: string;
}

const errorInfo = (error: unknown): ErrorInfo => {
  const e = error as Error;
  return { name: e.name, code: AmpsError.isInstance(e) ? e.code : undefined, message: e.message };
};

async function attempt<T>(fn: () => Promise<T>): Promise<{ ok: T } | { error: ErrorInfo }> {
  try {
    return { ok: await fn() };
  } catch (error) {
    return { error: errorInfo(error) };
  }
}

let client: Client | undefined;
/** The promise `fill` got from `publish`. */
let pending: Promise<void> | undefined;
/** What `watch` counted, and how many `fill` published. */
const watched = { count: 0, published: 0 };
const states: string[] = [];
const disconnects: Array<ErrorInfo | null> = [];

function current(): Client {
  if (!client) throw new Error('call logon first');
  return client;
}

const api = {
  states,
  disconnects,

  /** A new client on `browserTransport`, connected and logged on to `uri`. */
  logon(name: string, uri: string, options: { maxQueue?: number; sendHighWaterMark?: number } = {}) {
    return attempt(async () => {
      await client?.disconnect();
      states.length = 0;
      disconnects.length = 0;
      client = new Client(name, { transport: browserTransport(), ...options });
      client.onStateChange((e) => states.push(e.state));
      client.onDisconnect((error) => disconnects.push(error ? errorInfo(error) : null));
      const result = await client.connectAndLogon(uri);
      return { ...result, uri: client.uri };
    });
  },

  /** Subscribes (callback or iterator), publishes `count` JSON messages, returns what arrived. */
  roundTrip(topic: string, count: number, mode: 'callback' | 'iterator') {
    return attempt(async () => {
      const c = current();
      const received: Array<{ body: unknown; subId: string | undefined; topic: string | undefined }> = [];
      const record = (m: Message) => received.push({ body: m.json(), subId: m.subId, topic: m.topic });
      let allArrived!: () => void;
      const arrived = new Promise<void>((resolve) => {
        allArrived = resolve;
      });
      const sub =
        mode === 'callback'
          ? c.subscribe(topic, {
              onMessage: (m) => {
                record(m);
                if (received.length === count) allArrived();
              },
            })
          : c.subscribe(topic);
      await sub.ready;
      const iterating =
        mode === 'iterator'
          ? (async () => {
              for await (const m of sub) {
                record(m);
                if (received.length === count) break;
              }
              allArrived();
            })()
          : Promise.resolve();
      for (let i = 0; i < count; i++) c.publish(topic, JSON.stringify({ i, from: 'browser' }));
      await arrived;
      await iterating;
      await sub.unsubscribe();
      return { subId: sub.subId, received };
    });
  },

  /** Publishes binary bodies of the sizes given to itself; says for each what arrived and whether it is intact. */
  bigRoundTrip(topic: string, sizes: number[]) {
    return attempt(async () => {
      const c = current();
      const body = (size: number, seed: number) => {
        const out = new Uint8Array(size);
        for (let i = 0; i < size; i++) out[i] = (i * 31 + seed * 7 + (i >> 9)) & 0xff;
        return out;
      };
      const bodies = sizes.map((size, i) => body(size, i + 1));
      const received: Uint8Array[] = [];
      let allArrived!: () => void;
      const arrived = new Promise<void>((resolve) => {
        allArrived = resolve;
      });
      const sub = c.subscribe(topic, {
        onMessage: (m) => {
          received.push(m.data.slice());
          if (received.length === sizes.length) allArrived();
        },
      });
      await sub.ready;
      for (const b of bodies) await c.publish(topic, b);
      await arrived;
      await sub.unsubscribe();
      return received.map((r, i) => {
        const sent = bodies[i] as Uint8Array;
        return { length: r.length, intact: r.length === sent.length && r.every((b, j) => b === sent[j]) };
      });
    });
  },

  /**
   * Publishes `count` messages to itself and then iterates its subscription: a browser cannot
   * pause, so past `maxQueue` the subscription ends. Says what was read, why it ended, and what
   * was reported unhandled once the server has processed everything.
   */
  overflow(topic: string, count: number) {
    return attempt(async () => {
      const c = current();
      const unhandled: string[] = [];
      const stop = c.onUnhandledMessage((m) => unhandled.push(`${m.command} ${m.subId}`));
      const sub = c.subscribe(topic);
      await sub.ready;
      for (let i = 0; i < count; i++) c.publish(topic, JSON.stringify({ i }));
      await c.flush();
      const seen: number[] = [];
      let error: ErrorInfo | undefined;
      try {
        for await (const m of sub) seen.push(m.json<{ i: number }>().i);
      } catch (e) {
        error = errorInfo(e);
      }
      const closed = await sub.closed;
      await c.flush();
      stop();
      return { seen, error, closed: closed ? errorInfo(closed) : null, unhandled, connected: c.isConnected };
    });
  },

  /** Subscribes to `topic`, counting what arrives, for `fill` and `drained`. */
  watch(topic: string) {
    return attempt(async () => {
      watched.count = 0;
      await current().subscribe(topic, {
        onMessage: () => {
          watched.count++;
        },
      }).ready;
    });
  },

  /** Publishes 1 KiB messages until `publish` hands back a promise (the broker is not reading). */
  fill(topic: string) {
    return attempt(async () => {
      const c = current();
      const body = 'x'.repeat(1024);
      let published = 0;
      let wait: Promise<void> | undefined;
      while (!wait && published < 1_000_000) {
        wait = c.publish(topic, body);
        published++;
      }
      if (!wait) throw new Error('publish never returned a promise');
      pending = wait;
      watched.published = published;
      return { published, buffered: c.bufferedAmount };
    });
  },

  /** Awaits the promise `fill` got, then the broker's ack of everything before it. */
  drained() {
    return attempt(async () => {
      const c = current();
      await pending;
      await c.flush();
      return { published: watched.published, received: watched.count, connected: c.isConnected };
    });
  },

  /** Publishes SOW records, then queries them back with their stats. */
  sow(topic: string, count: number) {
    return attempt(async () => {
      const c = current();
      for (let id = 1; id <= count; id++) c.publish(topic, JSON.stringify({ id, qty: id * 10 }));
      await c.flush();
      const { records, stats } = await c.sow(topic, { batchSize: 3, filter: '/qty > 10' }).toArray();
      return { ids: records.map((r) => r.json<{ id: number }>().id), stats };
    });
  },

  heartbeat(intervalS: number) {
    return attempt(() => current().heartbeat(intervalS));
  },

  /** Resolves with the reason of the next disconnect. */
  nextDisconnect() {
    const seen = disconnects.length;
    return new Promise<ErrorInfo | null>((resolve) => {
      const stop = current().onDisconnect(() => {
        stop();
        resolve(disconnects[seen] ?? null);
      });
    });
  },

  flush(timeoutMs?: number) {
    return attempt(() => current().flush('processed', timeoutMs === undefined ? {} : { timeoutMs }));
  },

  disconnect() {
    return attempt(async () => {
      await current().disconnect();
      return { state: current().state, isConnected: current().isConnected };
    });
  },

  /** Connecting a scheme a browser cannot open fails before any I/O. */
  connectTcp(uri: string) {
    return attempt(() => new Client('tcp-in-browser', { transport: browserTransport() }).connect(uri));
  },
};

export type ClientPageApi = typeof api;

(globalThis as unknown as { ampsClient: ClientPageApi }).ampsClient = api;
(globalThis as { __entryLoaded?: boolean }).__entryLoaded = true;
