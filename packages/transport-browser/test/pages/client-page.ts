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
  logon(name: string, uri: string) {
    return attempt(async () => {
      await client?.disconnect();
      states.length = 0;
      disconnects.length = 0;
      client = new Client(name, { transport: browserTransport() });
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
