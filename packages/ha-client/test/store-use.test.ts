import {
  Bookmarks,
  type Command,
  DisconnectedError,
  InvalidOptionsError,
  type Message,
  MessageDecoder,
  type PublishStore,
} from '@amps-ts/core-protocol';
import { startTestServer } from '@amps-ts/test-server';
import { describe, expect, it } from 'vitest';
import { MemoryBookmarkStore, MemoryPublishStore, MemorySubscriptionManager } from '../src/index.js';
import { cleanups, client, server, stateWhere } from './helpers.js';

/* How HAClient uses its stores, against a real broker: what the store keeps, and what a failover then does. */

describe('HAClient publishes and its publish store', () => {
  it('refuses a publish the wire cannot carry before storing it, so no reconnect replays it and fails', async () => {
    const s = await server();
    const publisher = client('pub-unsendable', s.tcpUri('json'));
    // Not connected yet: it would be stored, and every logon's replay would fail on it.
    expect(() => publisher.publish('t', 'x', { expiration: 1.5 })).toThrow(InvalidOptionsError);
    expect(() => publisher.publish('t', 42 as unknown as string)).toThrow(InvalidOptionsError);
    // No body at all (JSON.stringify(undefined) is undefined): refused, as Client.publish does.
    expect(() => publisher.publish('t', undefined as unknown as string)).toThrow(InvalidOptionsError);
    expect(publisher.publishStore?.unpersistedCount()).toBe(0);
    const attempt = stateWhere(publisher, (e) => e.state === 'Resubscribed' || e.state === 'Disconnected');
    void publisher.connectAndLogon().catch(() => {});
    expect((await attempt).state).toBe('Resubscribed');

    // Connected: the send fails at once, and the store must not keep it for the next failover.
    expect(() => publisher.publish('t', 'x', { expiration: -1 })).toThrow(InvalidOptionsError);
    expect(publisher.publishStore?.unpersistedCount()).toBe(0);
    const dropped = stateWhere(publisher, (e) => e.state === 'Disconnected');
    s.dropConnections();
    await dropped;
    // The attempt after the drop: it recovers, or its replay fails and it is Disconnected again.
    const outcome = stateWhere(publisher, (e) => e.state === 'Resubscribed' || e.state === 'Disconnected');
    expect((await outcome).state).toBe('Resubscribed');
  });

  it('refuses a publish or sowDelete longer than maxFrameSize before storing it: a server refusing it would close every connection that replays it', async () => {
    const s = await server();
    const maxFrameSize = 64 * 1024;
    const publisher = client('pub-too-long', s.tcpUri('json'), { client: { maxFrameSize } });
    const states: string[] = [];
    publisher.onStateChange((e) => states.push(e.state));
    await publisher.connectAndLogon();
    expect(() => publisher.publish('t', 'x'.repeat(maxFrameSize))).toThrow(/longer than maxFrameSize \(65536 bytes\)/);
    // Room is kept for the sequence and ack type the store adds.
    expect(() => publisher.publish('t', 'x'.repeat(maxFrameSize - 40))).toThrow(InvalidOptionsError);
    await expect(publisher.sowDelete('t', { data: 'x'.repeat(maxFrameSize) })).rejects.toBeInstanceOf(
      InvalidOptionsError,
    );
    expect(publisher.publishStore?.unpersistedCount()).toBe(0);
    await publisher.publish('t', 'x'.repeat(maxFrameSize / 2));
    await publisher.publishFlush(5000);
    expect(states.filter((state) => state === 'Disconnected')).toEqual([]);
  });

  it('says in the log when connections keep ending after the publish replay with nothing persisted (a publish the server refuses)', async () => {
    const s = await startTestServer({ maxFrameBytes: 64 * 1024 });
    cleanups.push(() => s.close());
    let warn!: (fields: Record<string, unknown>) => void;
    const warned = new Promise<Record<string, unknown>>((resolve) => {
      warn = resolve;
    });
    const publisher = client('pub-refused-each-time', s.tcpUri('json'), {
      delay: { getConnectWaitDuration: () => 0, reset: () => {} },
      logger: {
        warn: (message, fields) => {
          if (message.startsWith('connections keep ending after the publish replay')) warn(fields ?? {});
        },
      },
    });
    await publisher.connectAndLogon();
    // Longer than the server takes (the client's maxFrameSize is its default): it closes the connection on it.
    void publisher.publish('t', 'x'.repeat(100 * 1024));
    expect(await warned).toMatchObject({ times: 3, persistedUpTo: 0, unpersisted: 1 });
  });
});

describe('HAClient publishFlush', () => {
  it('rejects with a DisconnectedError after disconnect() while publishes are unpersisted, instead of waiting for a connection that will not come', async () => {
    const s = await server();
    const publisher = client('pub-flush-after-disconnect', s.tcpUri('json'));
    publisher.publish('orders', JSON.stringify({ n: 1 })); // stored: not connected
    await publisher.disconnect();
    await expect(publisher.publishFlush(1)).rejects.toBeInstanceOf(DisconnectedError);
    expect(publisher.publishStore?.unpersistedCount()).toBe(1); // kept for a later connectAndLogon()
  });

  it('disconnect() rejects the waits on a full store without cancelWaits: publish, sowDelete and publishFlush', async () => {
    const s = await server();
    // Full for good, and without the optional cancelWaits: nothing but the HA client ends a wait.
    const full: PublishStore = {
      store: () => new Promise<number>(() => {}),
      discardUpTo: () => {},
      syncWithServer: () => {},
      replay: () => {},
      unpersistedCount: () => 1,
      lastPersisted: () => 0,
      flush: () => new Promise<void>(() => {}),
    };
    const publisher = client('pub-no-cancel-waits', s.tcpUri('json'), { publishStore: full });
    await publisher.connectAndLogon();
    const waits = [
      publisher.publish('orders', JSON.stringify({ n: 1 })),
      publisher.sowDelete('orders', { filter: '/n = 1' }),
      publisher.publishFlush(),
    ];
    const outcomes: unknown[] = [];
    for (const wait of waits)
      wait?.then(
        () => outcomes.push('resolved'),
        (error: unknown) => outcomes.push(error),
      );
    // Rejected before disconnect() closes the connection: all settled once it has resolved.
    await publisher.disconnect();
    expect(outcomes).toHaveLength(3);
    for (const outcome of outcomes) {
      expect(outcome).toBeInstanceOf(DisconnectedError);
      expect(outcome).toMatchObject({ message: 'the client was disconnected by the application' });
    }
  });
});

describe('HAClient and a durable publish store', () => {
  it('does not fail a publish the store holds while it writes it when disconnect() comes: it resolves once written, kept for the next connection', async () => {
    const s = await server();
    // Stores at once (the sequence given), then takes its time writing, as a browser database does.
    const writes: Array<() => void> = [];
    class SlowWrites extends MemoryPublishStore {
      override store(command: Command): Promise<number> {
        const sequence = super.store(command) as number;
        return new Promise((resolve) => writes.push(() => resolve(sequence)));
      }
    }
    const store = new SlowWrites();
    const publisher = client('pub-slow-writes', s.tcpUri('json'), { publishStore: store });
    await publisher.connectAndLogon();
    const outcome = publisher.publish('orders', JSON.stringify({ n: 1 }))?.then(
      () => 'resolved',
      (error: unknown) => error,
    );
    await publisher.disconnect();
    for (const written of writes) written();
    expect(await outcome).toBe('resolved');
    expect(store.unpersistedCount()).toBe(1);
  });
});

describe('HAClient bookmark subscriptions and their bookmark store', () => {
  it('refuses a starting bookmark that is not a non-empty string with an InvalidOptionsError', async () => {
    const s = await server();
    const subscriber = client('sub-bad-bookmark', s.tcpUri('json'));
    for (const bookmark of [5, null, '', ' ']) {
      expect(() => subscriber.subscribe('orders', { bookmark: bookmark as unknown as string })).toThrow(
        InvalidOptionsError,
      );
    }
  });

  it('reports a bookmark store whose discard throws as an exception, with no unhandled rejection', async () => {
    const s = await server();
    const failing = new (class extends MemoryBookmarkStore {
      override discard(): void {
        throw new Error('store unavailable');
      }
    })();
    const subscriber = client('sub-store-throws', s.tcpUri('json'), { bookmarkStore: failing });
    const publisher = client('pub-store-throws', s.tcpUri('json'));
    const errors: unknown[] = [];
    let bothReported!: () => void;
    const reported = new Promise<void>((resolve) => {
      bothReported = resolve;
    });
    subscriber.onException((error) => {
      if (errors.push(error) === 2) bothReported();
    });
    const handled: number[] = [];
    const sub = subscriber.subscribe('orders', {
      bookmark: Bookmarks.EPOCH,
      // Async: its discard runs once the promise settles, where a throw had nobody to catch it.
      onMessage: async (m: Message) => {
        handled.push(m.json<{ n: number }>().n);
      },
    });
    await Promise.all([subscriber.connectAndLogon(), publisher.connectAndLogon(), sub.ready]);
    for (const n of [1, 2]) publisher.publish('orders', JSON.stringify({ n }));
    await reported;
    expect(handled).toEqual([1, 2]);
    expect(errors.map((e) => (e as Error).message)).toEqual(['store unavailable', 'store unavailable']);
  });

  for (const failure of ['throws', 'rejects'] as const) {
    it(`discards a message whose handler ${failure}, so the recovery point moves on and nothing piles up`, async () => {
      const s = await server();
      const bookmarkStore = new MemoryBookmarkStore();
      const subscriber = client(`sub-handler-${failure}`, s.tcpUri('json'), { bookmarkStore });
      const publisher = client(`pub-handler-${failure}`, s.tcpUri('json'));
      const errors: unknown[] = [];
      let lastHandled!: () => void;
      const allHandled = new Promise<void>((resolve) => {
        lastHandled = resolve;
      });
      subscriber.onException((error) => {
        errors.push(error);
      });
      const sub = subscriber.subscribe('orders', {
        subId: 'orders',
        bookmark: Bookmarks.EPOCH,
        onMessage: (m: Message) => {
          const n = m.json<{ n: number }>().n;
          if (n === 5) queueMicrotask(lastHandled); // after the handler returns, and its discard
          if (n !== 2) return;
          if (failure === 'throws') throw new Error('handler failed on 2');
          return Promise.reject(new Error('handler failed on 2'));
        },
      });
      await Promise.all([subscriber.connectAndLogon(), publisher.connectAndLogon(), sub.ready]);
      for (const n of [1, 2, 3, 4, 5]) publisher.publish('orders', JSON.stringify({ n }));
      await allHandled;
      expect(errors).toHaveLength(1);
      // Left outstanding, message 2 would hold the recovery point before it for good (every
      // failover replaying everything since) and keep every later message's progress in memory.
      expect(bookmarkStore.outstandingCount('orders')).toBe(0);
      expect(bookmarkStore.getMostRecent('orders')).toMatch(/\|5\|$/);
    });
  }
});

describe('HAClient bookmark subscriptions and what the store holds for their id', () => {
  it('starts one with a bookmark given where it says, forgetting what the store held; MOST_RECENT and a replace resume', async () => {
    const s = await server();
    const publisher = client('pub-given', s.tcpUri('json'));
    await publisher.connectAndLogon();
    for (const n of [1, 2, 3]) publisher.publish('given', JSON.stringify({ n }));
    await publisher.publishFlush(5000);
    // A store that outlives its client (as a durable one outlives its process): it holds 1 to 3 processed.
    const bookmarkStore = new MemoryBookmarkStore();
    const received = async (name: string, bookmark: string, count: number, options?: string) => {
      const seen: number[] = [];
      const subscriber = client(name, s.tcpUri('json'), { bookmarkStore });
      await subscriber.connectAndLogon();
      let done!: () => void;
      const all = new Promise<void>((resolve) => {
        done = resolve;
      });
      subscriber.subscribe('given', {
        subId: 'given',
        bookmark,
        options,
        onMessage: (m: Message) => {
          seen.push(m.json<{ n: number }>().n);
          if (seen.length === count) queueMicrotask(done);
        },
      });
      await all;
      await subscriber.disconnect();
      return seen;
    };
    expect(await received('sub-1', Bookmarks.EPOCH, 3)).toEqual([1, 2, 3]);
    expect(bookmarkStore.getMostRecent('given')).toMatch(/\|3\|$/);
    expect(await received('sub-2', Bookmarks.EPOCH, 3)).toEqual([1, 2, 3]);
    publisher.publish('given', JSON.stringify({ n: 4 }));
    expect(await received('sub-3', Bookmarks.MOST_RECENT, 1)).toEqual([4]);
    // A replace keeps the id's place, whatever the bookmark it repeats.
    publisher.publish('given', JSON.stringify({ n: 5 }));
    expect(await received('sub-4', Bookmarks.EPOCH, 1, 'replace')).toEqual([5]);
  });
  it('a message still being handled when its subscription ends: its late discard leaves a new subscription with the id alone', async () => {
    const s = await server();
    const publisher = client('pub-late-discard', s.tcpUri('json'));
    await publisher.connectAndLogon();
    for (const n of [1, 2, 3]) publisher.publish('late', JSON.stringify({ n }));
    await publisher.publishFlush(5000);
    const bookmarkStore = new MemoryBookmarkStore({ replicationLagMs: 0 });
    const subscriber = client('sub-late-discard', s.tcpUri('json'), { bookmarkStore });
    await subscriber.connectAndLogon();
    /** Subscribes `late` from the start; resolves once message 3 is being handled, with what finishes its handler. */
    const holdingThree = () =>
      new Promise<() => void>((holding) => {
        subscriber.subscribe('late', {
          subId: 'late',
          bookmark: Bookmarks.EPOCH,
          onMessage: async (m: Message) => {
            if (m.json<{ n: number }>().n !== 3) return;
            await new Promise<void>((finish) => holding(finish));
          },
        });
      });
    const finishOld = await holdingThree();
    await subscriber.unsubscribe('late');
    await holdingThree(); // the new one has 1 and 2 processed, 3 being handled
    finishOld();
    await new Promise(setImmediate); // the old handler's promise settles, and its discard runs
    // The new subscription's 3 is not processed: the recovery point stays before it.
    expect(bookmarkStore.outstandingCount('late')).toBe(1);
    expect(bookmarkStore.getMostRecent('late')).toMatch(/\|2\|$/);
  });
});

describe('HAClient subscriptions and its subscription manager', () => {
  it('reads the subscription list a fixed number of times per recovery, not once per subscription', async () => {
    const s = await server();
    const manager = new MemorySubscriptionManager();
    let listCalls = 0;
    const list = manager.list.bind(manager);
    manager.list = () => {
      listCalls++;
      return list();
    };
    const subscriber = client('sub-many', s.tcpUri('json'), { subscriptionManager: manager });
    await subscriber.connectAndLogon();
    const subs = Array.from({ length: 50 }, (_, i) => subscriber.subscribe(`t${i}`, { onMessage: () => {} }));
    await Promise.all(subs.map((sub) => sub.ready));
    listCalls = 0;
    const resubscribed = stateWhere(subscriber, (e) => e.state === 'Resubscribed');
    s.dropConnections();
    await resubscribed;
    // Once to resubscribe, once to find those it dropped: with one read per subscription, a
    // failover with thousands of subscriptions copied the list thousands of times.
    expect(listCalls).toBeLessThanOrEqual(2);
  });

  it('resubscribes maxInFlight at a time, not one round trip each, and every subscription resumes once', async () => {
    const s = await server();
    // What the client sends and gets, decoded: resubscribes waiting for their processed ack.
    const subscribeIds = new Set<string>();
    let waiting = 0;
    let mostWaiting = 0;
    const out = new MessageDecoder((m) => {
      if (m.command !== 'subscribe' || m.commandId === undefined) return;
      subscribeIds.add(m.commandId);
      mostWaiting = Math.max(mostWaiting, ++waiting);
    });
    const inbound = new MessageDecoder((m) => {
      if (m.command === 'ack' && m.ackType === 'processed' && subscribeIds.delete(m.commandId ?? '')) waiting--;
    });
    const subscriber = client('sub-window', s.tcpUri('json'), {
      subscriptionManager: new MemorySubscriptionManager({ maxInFlight: 16 }),
      client: {
        transportFilter: (bytes, direction) => {
          (direction === 'out' ? out : inbound).push(bytes);
          return bytes;
        },
      },
    });
    await subscriber.connectAndLogon();
    const count = 100;
    const received = Array.from({ length: count }, () => [] as string[]);
    const subs = Array.from({ length: count }, (_, i) =>
      subscriber.subscribe(`w${i}`, {
        onMessage: (m) => {
          received[i]?.push(m.text());
        },
      }),
    );
    await Promise.all(subs.map((sub) => sub.ready));

    mostWaiting = 0;
    const resubscribed = stateWhere(subscriber, (e) => e.state === 'Resubscribed');
    s.dropConnections();
    await resubscribed;
    expect(waiting).toBe(0);
    expect(mostWaiting).toBe(16);

    const publisher = client('pub-window', s.tcpUri('json'));
    await publisher.connectAndLogon();
    for (let i = 0; i < count; i++) publisher.publish(`w${i}`, `m${i}`);
    await publisher.publishFlush();
    await subscriber.flush();
    expect(received).toEqual(Array.from({ length: count }, (_, i) => [`m${i}`]));
  });
});
