/**
 * Flow control against the real broker: publish backpressure (a promise to await once the send
 * buffer is over its high-water mark, so memory stays bounded) and slow async iterators (the
 * connection pauses when the bounded queue fills; nothing is lost). Decided by events.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../../test-server/src/index.js';
import { nodeTransport } from '../../transport-node/src/index.js';
import {
  Client,
  type ClientOptions,
  type Connection,
  type Message,
  SlowConsumerError,
  type Transport,
} from '../src/index.js';
import { Collector, leakCheck, outgoing } from './client-fakes.js';

const schemes = ['tcp', 'ws'] as const;

/** transport-node, counting how often the client pauses its connections. */
function pausableTcp(): Transport & { pauses: number } {
  const inner = nodeTransport();
  const transport: Transport & { pauses: number } = {
    pauses: 0,
    schemes: ['tcp'],
    connect: async (uri, handlers, options) => {
      const connection = await inner.connect(uri, handlers, options);
      const pause = connection.pause?.bind(connection);
      connection.pause = () => {
        transport.pauses++;
        pause?.();
      };
      return connection;
    },
  };
  return transport;
}

/** transport-node with flow control taken away: a transport that cannot pause. */
function unpausable(): Transport {
  const inner = nodeTransport();
  return {
    schemes: inner.schemes,
    connect: async (uri, handlers, options) => {
      const connection = await inner.connect(uri, handlers, options);
      return {
        description: connection.description,
        get bufferedAmount() {
          return connection.bufferedAmount;
        },
        send: (bytes) => connection.send(bytes),
        whenDrained: () => connection.whenDrained(),
        close: (error) => connection.close(error),
      } satisfies Connection;
    },
  };
}

describe.each(schemes)('publish backpressure over %s', (scheme) => {
  let server: TestServer;
  let uri: string;
  let clients: Client[];
  let leaks: ReturnType<typeof leakCheck>;

  beforeEach(async () => {
    leaks = leakCheck();
    clients = [];
    server = await startTestServer();
    uri = scheme === 'tcp' ? server.tcpUri() : server.wsUri();
  });
  afterEach(async () => {
    for (const c of clients) await c.disconnect();
    await server.close();
    await leaks.check();
  });

  async function loggedOn(name: string, options: Partial<ClientOptions> = {}): Promise<Client> {
    const c = new Client(`${scheme}-${name}`, { transport: nodeTransport(), ...options });
    clients.push(c);
    await c.connectAndLogon(uri);
    return c;
  }

  it('publish returns a promise once the broker stops reading; memory stays bounded; nothing is lost', async () => {
    const highWaterMark = 256 * 1024;
    const publisher = await loggedOn('publisher', { sendHighWaterMark: highWaterMark });
    const subscriber = await loggedOn('subscriber');
    let delivered = 0;
    const done = new Collector<number>();
    await subscriber.subscribe('flood', {
      onMessage: () => {
        if (++delivered % 1000 === 0) done.push(delivered);
      },
    }).ready;
    const body = JSON.stringify({ pad: 'x'.repeat(90) });

    server.freeze();
    // Without awaiting, a burst goes over the high-water mark and publish hands back a promise.
    let published = 0;
    let wait: Promise<void> | undefined;
    while (!wait) {
      wait = publisher.publish('flood', body);
      published++;
    }
    expect(publisher.bufferedAmount).toBeGreaterThan(highWaterMark);
    // A publisher that awaits those promises keeps what it holds near the high-water mark, and
    // stalls once the kernel buffers are full: more than they can hold is never taken.
    const total = 100_000; // about 15 MB of frames, three times what loopback buffers took when measured
    let peak = 0;
    const pump = (async () => {
      await wait;
      while (published < total) {
        const w = publisher.publish('flood', body);
        published++;
        peak = Math.max(peak, publisher.bufferedAmount);
        if (w) await w;
      }
    })();
    // Wait until the pump makes no progress for a while (the kernel buffers are full).
    for (let last = -1; published !== last; ) {
      last = published;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(published).toBeLessThan(total);
    expect(peak).toBeLessThanOrEqual(highWaterMark + 64 * 1024 + 256);

    server.thaw();
    await pump;
    await publisher.flush();
    await done.atLeast(total / 1000, 20_000);
    await subscriber.flush();
    expect(delivered).toBe(published);
  });
});

describe('slow async iterators', () => {
  let server: TestServer;
  let clients: Client[];
  let leaks: ReturnType<typeof leakCheck>;

  beforeEach(async () => {
    leaks = leakCheck();
    clients = [];
    server = await startTestServer({ wsPort: false, sowTopics: [{ topic: 'orders', key: '/id' }] });
  });
  afterEach(async () => {
    for (const c of clients) await c.disconnect();
    await server.close();
    await leaks.check();
  });

  async function loggedOn(name: string, options: Partial<ClientOptions> = {}): Promise<Client> {
    const c = new Client(name, { transport: nodeTransport(), ...options });
    clients.push(c);
    await c.connectAndLogon(server.tcpUri());
    return c;
  }

  async function publishAll(topic: string, count: number): Promise<void> {
    const publisher = await loggedOn(`${topic}-publisher`);
    for (let i = 0; i < count; i++) publisher.publish(topic, JSON.stringify({ i, pad: 'y'.repeat(200) }));
    await publisher.flush();
  }

  const slowly = () => new Promise((resolve) => setImmediate(resolve));

  it('pause the connection when the queue fills and resume once it drains: every message arrives, in order', async () => {
    const transport = pausableTcp();
    const consumer = await loggedOn('slow-consumer', { transport, maxQueue: 16 });
    const sub = consumer.subscribe('slow');
    await sub.ready;
    const count = 3000;
    const published = publishAll('slow', count);
    let expected = 0;
    for await (const m of sub) {
      expect(m.json<{ i: number }>().i).toBe(expected++);
      if (expected === count) break;
      if (expected % 4 === 0) await slowly();
    }
    await published;
    expect(expected).toBe(count);
    expect(transport.pauses).toBeGreaterThan(0);
    expect(consumer.isConnected).toBe(true);
  });

  it('pause the connection while an async onMessage holds maxQueue unsettled promises: every message arrives, in order', async () => {
    const transport = pausableTcp();
    const consumer = await loggedOn('async-consumer', { transport, maxQueue: 16 });
    const count = 3000;
    const seen: number[] = [];
    let allSeen!: () => void;
    const done = new Promise<void>((resolve) => {
      allSeen = resolve;
    });
    const sub = consumer.subscribe('async-slow', {
      onMessage: async (m) => {
        seen.push(m.json<{ i: number }>().i);
        await slowly();
        if (seen.length === count) allSeen();
      },
    });
    await sub.ready;
    await publishAll('async-slow', count);
    await done;
    expect(seen).toEqual(Array.from({ length: count }, (_, i) => i));
    expect(transport.pauses).toBeGreaterThan(0);
    expect(consumer.isConnected).toBe(true);
  });

  it('a paused connection with heartbeats is not taken for dead, by either side', async () => {
    const transport = pausableTcp();
    const consumer = await loggedOn('stalled-consumer', { transport, maxQueue: 4 });
    await consumer.heartbeat(0.05);
    const disconnects = new Collector<Error | undefined>();
    consumer.onDisconnect(disconnects.push);
    const sub = consumer.subscribe('stall');
    await sub.ready;
    await publishAll('stall', 100);
    const iterator = sub[Symbol.asyncIterator]();
    const first = await iterator.next();
    expect(first.value?.json()).toMatchObject({ i: 0 });
    // Stall well past the heartbeat timeout (100 ms): another client counts five server beats.
    const { received, filter } = outgoing();
    const clock = await loggedOn('clock', { transportFilter: filter });
    await clock.heartbeat(0.05);
    while ((await received.atLeast(received.items.length + 1)).filter((m) => m.command === 'heartbeat').length < 5);
    expect(transport.pauses).toBeGreaterThan(0);
    let expected = 1;
    for (let next = await iterator.next(); !next.done; next = await iterator.next()) {
      expect(next.value.json<{ i: number }>().i).toBe(expected++);
      if (expected === 100) break;
    }
    expect(expected).toBe(100);
    await consumer.flush(); // a round trip: the broker still has this connection
    expect(disconnects.items).toEqual([]);
    expect(consumer.isConnected).toBe(true);
    await iterator.return?.();
  });

  it('without a transport that can pause, a consumer past maxQueue ends with SlowConsumerError and is unsubscribed', async () => {
    const consumer = await loggedOn('overflowing', { maxQueue: 8, transport: unpausable() });
    const sub = consumer.subscribe('overflow');
    await sub.ready;
    await publishAll('overflow', 100);
    await consumer.flush();
    const seen: number[] = [];
    const error = await (async () => {
      for await (const m of sub) seen.push(m.json<{ i: number }>().i);
    })().catch((e: unknown) => e);
    expect(SlowConsumerError.isInstance(error)).toBe(true);
    // What was queued before the overflow is still delivered, then the error.
    expect(seen).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(SlowConsumerError.isInstance(await sub.closed)).toBe(true);
    // The broker no longer delivers to it.
    const unhandled = new Collector<Message>();
    consumer.onUnhandledMessage(unhandled.push);
    await publishAll('overflow', 10);
    await consumer.flush();
    expect(unhandled.items.filter((m) => m.command !== 'ack')).toEqual([]);
  });

  it('what was on its way to a subscription ended by SlowConsumerError is dropped, not reported unhandled', async () => {
    const unhandled: Message[] = [];
    const consumer = await loggedOn('overflowing-quietly', {
      maxQueue: 8,
      transport: unpausable(),
      lastChanceMessageHandler: (m) => unhandled.push(m),
    });
    const sub = consumer.subscribe('overflow-quietly');
    await sub.ready;
    await publishAll('overflow-quietly', 200);
    expect(SlowConsumerError.isInstance(await sub.closed)).toBe(true);
    // The broker has processed the unsubscribe and everything sent before it.
    await consumer.flush();
    expect(unhandled.map((m) => `${m.command} ${m.subId}`)).toEqual([]);
  });

  it('toArray collects a result larger than maxQueue from a transport that cannot pause', async () => {
    const consumer = await loggedOn('collector', { maxQueue: 8, transport: unpausable() });
    const count = 500;
    const publisher = await loggedOn('orders-publisher');
    for (let id = 1; id <= count; id++) publisher.publish('orders', JSON.stringify({ id }));
    await publisher.flush();
    // Several records reach the client in one read: more than maxQueue before toArray can take them.
    const { records, stats } = await consumer.sow('orders', { batchSize: 100 }).toArray();
    expect(records.map((r) => r.json<{ id: number }>().id)).toEqual([...Array(count).keys()].map((i) => i + 1));
    expect(stats).toMatchObject({ recordsReturned: count });
  });
});
