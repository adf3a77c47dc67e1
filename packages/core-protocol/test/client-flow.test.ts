/**
 * Flow control against the real broker: publish backpressure (a promise to await once the send
 * buffer is over its high-water mark, so memory stays bounded) and slow async iterators (the
 * connection pauses when the bounded queue fills, or, for a bookmark subscription, the server pauses
 * that subscription; nothing is lost). Decided by events.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../../test-server/src/index.js';
import { nodeTransport } from '../../transport-node/src/index.js';
import {
  Bookmarks,
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

  describe('of bookmark subscriptions', () => {
    let publisher: Client | undefined;
    let published: Map<string, number>;
    /** Publishes `count` more messages `{ n }` (numbered on from 1 per topic), processed when it resolves. */
    async function publish(count: number, topic = 'journal'): Promise<void> {
      publisher ??= await loggedOn('journal-publisher');
      let n = published.get(topic) ?? 0;
      for (let i = 0; i < count; i++) publisher.publish(topic, JSON.stringify({ n: ++n, pad: 'y'.repeat(100) }));
      published.set(topic, n);
      await publisher.flush();
    }
    beforeEach(() => {
      publisher = undefined;
      published = new Map();
    });

    /** A transport filter that sends the first `opts` `option` as an unknown one: the server refuses it. */
    function spoilFirst(option: 'pause' | 'resume') {
      let spoiled = false;
      return (bytes: Uint8Array, direction: 'in' | 'out') => {
        const text = Buffer.from(bytes);
        const at = text.indexOf(`"opts":"${option}"`);
        if (direction === 'in' || spoiled || at < 0) return bytes;
        spoiled = true;
        text.write('z', at + 8 + option.length - 1);
        return new Uint8Array(text);
      };
    }

    const n = (m: Message) => m.json<{ n: number }>().n;
    const upTo = (count: number) => Array.from({ length: count }, (_, i) => i + 1);

    /** A consumer that sees its commands; `pauseSent()` resolves once it has paused a subscription for its consumer. */
    async function consumer(name: string, options: Partial<ClientOptions> = {}) {
      const { sent, received, filter } = outgoing();
      const transport = pausableTcp();
      const c = await loggedOn(name, {
        transport,
        ...options,
        // What the client writes, after the filter given (if any).
        transportFilter: (bytes, direction) => {
          const written = options.transportFilter?.(bytes, direction) ?? bytes;
          filter(written, direction);
          return written;
        },
      });
      const sentWith = async (opts: string) => {
        while (!sent.items.some((m) => m.command === 'subscribe' && m.options === opts)) {
          await sent.atLeast(sent.items.length + 1);
        }
      };
      /** Resolves once the server has refused a command. */
      const refused = async () => {
        while (!received.items.some((m) => m.command === 'ack' && m.status === 'failure')) {
          await received.atLeast(received.items.length + 1);
        }
      };
      return { c, transport, sent, sentWith, pauseSent: () => sentWith('pause'), refused };
    }

    it('are paused on the server, not the connection: the client goes on with everything else', async () => {
      const { c, transport, pauseSent } = await consumer('replay-consumer', { maxQueue: 1000 });
      await publish(1500);
      const sub = c.subscribe('journal', { bookmark: Bookmarks.EPOCH });
      await sub.ready;
      await pauseSent();
      // What the server sent before it took the pause has come by the flush's ack.
      await c.flush();
      const held = sub.received;
      expect(held).toBeGreaterThanOrEqual(1000);
      // Another subscription and commands on the connection go on; the paused one gets nothing new.
      const news = new Collector<Message>();
      await c.subscribe('news', { onMessage: news.push }).ready;
      await publish(3, 'news');
      await news.atLeast(3);
      await publish(500);
      await c.flush();
      expect(sub.received).toBe(held);
      expect(transport.pauses).toBe(0);
      // Worked through, it is resumed: the rest comes, once and in order.
      const got: number[] = [];
      for await (const m of sub) {
        got.push(n(m));
        if (got.length === 2000) break;
      }
      expect(got).toEqual(upTo(2000));
    });

    it('hold the connection paused too past twice maxQueue: at most that and a read are held, and nothing is lost', async () => {
      const { c, transport } = await consumer('far-behind', { maxQueue: 50 });
      await publish(20_000);
      const sub = c.subscribe('journal', { bookmark: Bookmarks.EPOCH });
      await sub.ready;
      const got: number[] = [];
      let mostHeld = 0;
      for await (const m of sub) {
        mostHeld = Math.max(mostHeld, sub.received - got.length);
        got.push(n(m));
        if (got.length === 20_000) break;
        await new Promise((resolve) => setImmediate(resolve));
      }
      expect(got).toEqual(upTo(20_000));
      expect(transport.pauses).toBeGreaterThan(0);
      // Twice maxQueue, and what one read of the socket (64 KiB, about 350 of these) brought with it.
      expect(mostHeld).toBeLessThan(2 * 50 + 500);
    });

    it('on a transport that cannot pause (a browser), reach a slow consumer whole, or end past twice maxQueue', async () => {
      const c = await loggedOn('unpausable-replay', { maxQueue: 1000, transport: unpausable() });
      await publish(1500);
      const whole = c.subscribe('journal', { bookmark: Bookmarks.EPOCH });
      await whole.ready;
      await c.flush();
      const got: number[] = [];
      for await (const m of whole) {
        got.push(n(m));
        if (got.length === 1500) break;
        await new Promise((resolve) => setImmediate(resolve));
      }
      expect(got).toEqual(upTo(1500));
      // What comes with the message that fills its queue (one read brings many) overflows twice maxQueue.
      const far = c.subscribe('journal', { subId: 'far', bookmark: Bookmarks.EPOCH, maxQueue: 1 });
      const closed = await far.closed;
      expect(SlowConsumerError.isInstance(closed)).toBe(true);
      expect(closed?.message).toBe(
        'subscription far: the consumer fell twice maxQueue behind and the connection cannot pause; consume faster or raise maxQueue',
      );
    });

    it("keep the application's pause when the consumer catches up, and its resume waits for the consumer", async () => {
      const { c, pauseSent, sent } = await consumer('paused-twice', { maxQueue: 1000 });
      await publish(1500);
      const sub = c.subscribe('journal', { bookmark: Bookmarks.EPOCH });
      await sub.ready;
      await pauseSent();
      await c.flush();
      // Resumed by the application while its consumer is behind: still paused on the server.
      await sub.resume();
      await publish(10);
      await c.flush();
      const held = sub.received;
      expect(held).toBeLessThan(1510);
      await sub.pause();
      const iterator = sub[Symbol.asyncIterator]();
      const got: number[] = [];
      while (got.length < held) got.push(n((await iterator.next()).value as Message));
      // Caught up, but paused by the application: the state sent is still a pause.
      const resumes = () => sent.items.filter((m) => m.options === 'resume').length;
      const before = resumes();
      await c.flush();
      expect(sub.received).toBe(held);
      expect(resumes()).toBe(before);
      await sub.resume();
      while (got.length < 1510) got.push(n((await iterator.next()).value as Message));
      expect(got).toEqual(upTo(1510));
      await iterator.return?.();
    });

    it('a replace of one paused for its consumer is resumed for the new one', async () => {
      const { c, pauseSent } = await consumer('replaced-behind', { maxQueue: 1000 });
      await publish(1500);
      const old = c.subscribe('journal', { subId: 'r', bookmark: Bookmarks.EPOCH });
      await old.ready;
      await pauseSent();
      await c.flush();
      // Published while it is paused: the server holds these back.
      await publish(100);
      const fresh = new Collector<Message>();
      const replacing = c.subscribe('journal', {
        subId: 'r',
        bookmark: Bookmarks.EPOCH,
        options: { replace: true },
        onMessage: fresh.push,
      });
      await replacing.ready;
      // The old one's consumer keeps what it held; the server goes on from there for the new one.
      const kept: number[] = [];
      for await (const m of old) kept.push(n(m));
      await fresh.atLeast(1600 - kept.length);
      expect([...kept, ...fresh.items.map(n)]).toEqual(upTo(1600));
    });

    it('refused a pause, pause the connection instead: nothing is lost', async () => {
      const { c, transport, refused } = await consumer('refused-pause', {
        maxQueue: 1000,
        transportFilter: spoilFirst('pause'),
      });
      await publish(1500);
      const sub = c.subscribe('journal', { bookmark: Bookmarks.EPOCH });
      await sub.ready;
      await refused();
      const got: number[] = [];
      for await (const m of sub) {
        got.push(n(m));
        if (got.length === 1500) break;
      }
      expect(got).toEqual(upTo(1500));
      // Not for what was in flight (less than twice maxQueue): for the refusal.
      expect(transport.pauses).toBe(1);
    });

    it('left while paused, are unsubscribed without a resume first (which would start a replay for nobody)', async () => {
      const { c, pauseSent, sent } = await consumer('left-behind', { maxQueue: 1000 });
      await publish(1500);
      const sub = c.subscribe('journal', { bookmark: Bookmarks.EPOCH });
      await sub.ready;
      await pauseSent();
      for await (const m of sub) if (n(m) === 10) break;
      await c.flush();
      expect(sent.items.filter((m) => m.command === 'unsubscribe')).toHaveLength(1);
      expect(sent.items.filter((m) => m.options === 'resume')).toEqual([]);
    });

    it('cut off by a disconnect while paused, close with the disconnect and report nothing', async () => {
      const { c, pauseSent } = await consumer('dropped-behind', { maxQueue: 1000 });
      const errors = new Collector<unknown>();
      c.onException(errors.push);
      await publish(1500);
      const sub = c.subscribe('journal', { bookmark: Bookmarks.EPOCH });
      await sub.ready;
      await pauseSent();
      await c.flush();
      const disconnected = new Collector<Error | undefined>();
      c.onDisconnect(disconnected.push);
      server.dropConnections();
      await disconnected.atLeast(1);
      const closed = await sub.closed;
      expect(errors.items).toEqual([]);
      expect(closed?.message).toMatch(/disconnected from/);
    });

    it('resume a replace of a replace whose consumer fell behind, both sent before either was answered', async () => {
      // transport-node whose writes can be held back (in order) and let go.
      const inner = nodeTransport();
      let held: Uint8Array[] | undefined;
      let send: ((bytes: Uint8Array) => void) | undefined;
      const gated: Transport = {
        schemes: ['tcp'],
        connect: async (uri, handlers, options) => {
          const connection = await inner.connect(uri, handlers, options);
          const original = connection.send.bind(connection);
          send = original;
          connection.send = (bytes) => (held ? held.push(bytes.slice()) : original(bytes));
          return connection;
        },
      };
      const { c, sentWith } = await consumer('chained-replaces', { transport: gated, maxQueue: 100 });
      // Caught up, with a filter nothing passes.
      const first = c.subscribe('journal', { subId: 'r', bookmark: Bookmarks.EPOCH, filter: '/n > 1000000' });
      await first.ready;
      await c.flush();
      const second = c.subscribe('journal', { subId: 'r', bookmark: Bookmarks.EPOCH, options: { replace: true } });
      await sentWith('replace');
      // The third goes out once the second has fallen behind (and its pause after it).
      held = [];
      const fresh = new Collector<Message>();
      const third = c.subscribe('journal', {
        subId: 'r',
        bookmark: Bookmarks.EPOCH,
        options: { replace: true },
        onMessage: fresh.push,
      });
      await second.ready;
      await publish(150);
      await sentWith('pause');
      const writes = held;
      held = undefined;
      for (const bytes of writes) send?.(bytes);
      await third.ready;
      const kept: number[] = [];
      for await (const m of second) kept.push(n(m));
      expect(kept).toEqual(upTo(150));
      // What is published now reaches the third.
      await publish(10);
      await fresh.atLeast(10, 3_000);
      expect(fresh.items.map(n)).toEqual(upTo(160).slice(150));
    });

    it("keep the application's pause made during a replace the server refuses, when the consumer catches up", async () => {
      const { c, pauseSent, sent } = await consumer('pause-during-refused-replace', { maxQueue: 1000 });
      await publish(1500);
      const sub = c.subscribe('journal', { subId: 'r', bookmark: Bookmarks.EPOCH });
      await sub.ready;
      await pauseSent();
      await c.flush();
      const held = sub.received;
      // A replace the server refuses (a bad filter), and the application pauses the id meanwhile.
      const refused = c.subscribe('journal', { subId: 'r', filter: '(((', options: { replace: true } });
      const pausing = sub.pause();
      await expect(refused.ready).rejects.toThrow();
      await pausing;
      const resumes = () => sent.items.filter((m) => m.options === 'resume').length;
      const iterator = sub[Symbol.asyncIterator]();
      for (let i = 0; i < held; i++) await iterator.next();
      await c.flush();
      // Caught up, but paused by the application: nothing resumes it.
      expect(resumes()).toBe(0);
      expect(sub.received).toBe(held);
      await iterator.return?.();
    });

    it('refused a resume, end the subscription with a SlowConsumerError giving the reason', async () => {
      const { c, pauseSent } = await consumer('refused-resume', {
        maxQueue: 1000,
        transportFilter: spoilFirst('resume'),
      });
      await publish(1500);
      const sub = c.subscribe('journal', { subId: 'x', bookmark: Bookmarks.EPOCH });
      await sub.ready;
      await pauseSent();
      await c.flush();
      const held = sub.received;
      const got: number[] = [];
      const error = await (async () => {
        for await (const m of sub) got.push(n(m));
      })().catch((e: unknown) => e);
      // What it held, then the error.
      expect(got).toEqual(upTo(held));
      expect(SlowConsumerError.isInstance(error)).toBe(true);
      expect((error as Error).message).toMatch(
        /^subscription x: the server would not pause or resume it for its consumer: resume failed: /,
      );
      expect(await sub.closed).toBe(error);
      // Taken back on the server: what comes now reaches no subscription.
      const unhandled = new Collector<Message>();
      c.onUnhandledMessage(unhandled.push);
      await publish(5);
      await c.flush();
      expect(unhandled.items.filter((m) => m.command !== 'ack')).toEqual([]);
    });
  });
});
