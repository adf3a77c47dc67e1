import { Bookmarks, type Message, type Transport, timestampBookmark } from '@amps-ts/core-protocol';
import { startFaultProxy, startTestCluster, startTestServer, type TestServer } from '@amps-ts/test-server';
import { nodeTransport } from '@amps-ts/transport-node';
import { describe, expect, it } from 'vitest';
import { HAClient, MemoryBookmarkStore, MemorySubscriptionManager } from '../src/index.js';
import { cleanups, client, server, stateWhere } from './helpers.js';

/* Exactly-once edge cases: a subscription's id taken again, recovery and publishing interleaved. */

/** Topics a handler has seen. */
function topics() {
  const seen: string[] = [];
  return { seen, onMessage: (m: Message) => void seen.push(m.topic as string) };
}

/**
 * Publishes one message to each of `topics`, then one to a sentinel topic `ha` subscribes to:
 * resolves once the sentinel arrives, after anything published before it would have.
 */
async function publishThenSentinel(ha: HAClient, uri: string, topicNames: string[]): Promise<void> {
  let arrived!: () => void;
  const sentinel = new Promise<void>((resolve) => {
    arrived = resolve;
  });
  const watch = ha.subscribe('sentinel', { onMessage: () => arrived() });
  await watch.ready;
  const publisher = client(`${ha.name}-pub`, uri);
  await publisher.connectAndLogon();
  for (const topic of [...topicNames, 'sentinel']) publisher.publish(topic, '{}');
  await sentinel;
}

describe('HAClient: a sub_id taken again by a new subscription', () => {
  it('enters the new subscription, not the old one, when the id is taken again before the old one was entered', async () => {
    const s = await server();
    const ha = client('sub-id-again', s.tcpUri('json'));
    await ha.connectAndLogon();
    const handler = topics();
    const old = ha.subscribe('old', { subId: 'X', onMessage: handler.onMessage });
    void old.unsubscribe();
    const fresh = ha.subscribe('new', { subId: 'X', onMessage: handler.onMessage });
    await fresh.ready;
    await publishThenSentinel(ha, s.tcpUri('json'), ['old', 'new']);
    expect(handler.seen).toEqual(['new']);
  });

  it('resubscribes the new subscription, not the old one, when the id is taken again during a recovery', async () => {
    const s = await server();
    const ha = client('sub-id-recovery', s.tcpUri('json'), {
      // One at a time: X's resubscribe goes out after A's ack, where the id is taken again.
      subscriptionManager: new MemorySubscriptionManager({ maxInFlight: 1 }),
    });
    const handler = topics();
    let recovering = false;
    let swapped = false;
    ha.subscribe('a', {
      subId: 'A',
      onMessage: () => {},
      onAck: () => {
        if (!recovering || swapped) return;
        swapped = true;
        void ha.unsubscribe('X');
        ha.subscribe('new', { subId: 'X', onMessage: handler.onMessage });
      },
    });
    const x = ha.subscribe('old', { subId: 'X', onMessage: handler.onMessage });
    await ha.connectAndLogon();
    await x.ready;
    recovering = true;
    const resubscribed = stateWhere(ha, (e) => e.state === 'Resubscribed');
    s.dropConnections();
    await resubscribed;
    expect(swapped).toBe(true);
    await ha.flush();
    await publishThenSentinel(ha, s.tcpUri('json'), ['old', 'new']);
    expect(handler.seen).toEqual(['new']);
  });
});

describe('HAClient: a NOW bookmark subscription', () => {
  // '0|1' is NOW too, as the bookmark store and the server read it. A range from NOW gets its
  // completed ack only at its end: until its first message, the subscribe is all it has to go on.
  it.each([Bookmarks.NOW, '0|1', '[0|1|:20991231T000000Z)', '(0|1|:20991231T000000Z)'])(
    '(%s) placed on an empty log and failing over before its first message, gets what was published on the next server meanwhile',
    async (now) => {
      const cluster = await startTestCluster({ count: 2, replication: 'sync' });
      cleanups.push(() => cluster.close());
      const [a, b] = cluster.servers as [TestServer, TestServer];
      // Connects to B wait until the messages below are in B's log.
      const tcp = nodeTransport();
      let letIntoB!: () => void;
      const bHoldsMessages = new Promise<void>((resolve) => {
        letIntoB = resolve;
      });
      const transport: Transport = {
        schemes: tcp.schemes,
        connect: async (uri, handlers, options) => {
          if (uri.port === b.tcpPort) await bHoldsMessages;
          return tcp.connect(uri, handlers, options);
        },
      };
      const name = `now-empty-log-${now.replace(/[^0-9a-z|]/gi, '_')}`;
      const subscriber = new HAClient(`sub-${name}`, {
        transport,
        servers: [a.tcpUri('json'), b.tcpUri('json')],
        heartbeat: false,
        connectTimeoutMs: 1000,
      });
      cleanups.push(() => subscriber.disconnect());
      const seen: number[] = [];
      let thirdArrived!: () => void;
      const third = new Promise<void>((resolve) => {
        thirdArrived = resolve;
      });
      const sub = subscriber.subscribe('now-empty', {
        bookmark: now,
        onMessage: (m: Message) => {
          const n = m.json<{ n: number }>().n;
          seen.push(n);
          if (n === 3) thirdArrived();
        },
      });
      await subscriber.connectAndLogon();
      await sub.ready;
      await subscriber.flush(); // the subscription's acks have all arrived
      const publisher = client(`pub-${name}`, b.tcpUri('json'));
      await publisher.connectAndLogon();
      const onB = stateWhere(subscriber, (e) => e.state === 'Resubscribed');
      await a.kill();
      // After the subscription was placed: owed to it.
      publisher.publish('now-empty', JSON.stringify({ n: 1 }));
      publisher.publish('now-empty', JSON.stringify({ n: 2 }));
      await publisher.flush(); // in B's log
      letIntoB();
      await onB;
      publisher.publish('now-empty', JSON.stringify({ n: 3 }));
      await third;
      expect(seen).toEqual([1, 2, 3]);
    },
  );
});

describe('HAClient: the recovery point across replicas', () => {
  it.each([Bookmarks.NOW, Bookmarks.EPOCH])(
    '(%s) gets the messages of a publisher it never saw, logged on the next server before everything it did see',
    async (start) => {
      // Two servers replicating to each other through fault proxies, so a link can be held.
      const servers = [] as TestServer[];
      for (const name of ['ts-a', 'ts-b']) {
        const s = await startTestServer({ name: `${name}-${start}`, persistedAckIntervalMs: 20 });
        cleanups.push(() => s.close());
        servers.push(s);
      }
      const [a, b] = servers as [TestServer, TestServer];
      const aToB = await startFaultProxy({ target: b.tcpPort });
      const bToA = await startFaultProxy({ target: a.tcpPort });
      cleanups.push(
        () => aToB.close(),
        () => bToA.close(),
      );
      a.addPeer({ port: aToB.port, mode: 'async' });
      b.addPeer({ port: bToA.port, mode: 'async' });

      const subscriber = client(`ts-sub-${start}`, a.tcpUri('json'), { servers: [a.tcpUri('json'), b.tcpUri('json')] });
      const seen: string[] = [];
      const arrivals = new Map<string, () => void>();
      const arrived = (text: string) => new Promise<void>((resolve) => arrivals.set(text, resolve));
      const sub = subscriber.subscribe('ts', {
        bookmark: start,
        onMessage: (m: Message) => {
          const text = m.json<{ from: string }>().from;
          seen.push(text);
          arrivals.get(text)?.();
        },
      });
      await subscriber.connectAndLogon();
      await sub.ready;

      // Both links down: q's message is logged on B only, then p's on A only.
      aToB.blackhole();
      bToA.blackhole();
      const q = client(`ts-q-${start}`, b.tcpUri('json'));
      await q.connectAndLogon();
      q.publish('ts', JSON.stringify({ from: 'q' }));
      await q.publishFlush(5000);
      const p = client(`ts-p-${start}`, a.tcpUri('json'));
      await p.connectAndLogon();
      const pArrived = arrived('p');
      p.publish('ts', JSON.stringify({ from: 'p' }));
      await p.publishFlush(5000);
      await pArrived;
      // A to B again: B logs p's message after q's. B to A stays down, so A never gets q's.
      aToB.heal();
      const onB = client(`ts-watch-${start}`, b.tcpUri('json'));
      const pOnB = new Promise<void>((resolve) => {
        onB.subscribe('ts', {
          bookmark: Bookmarks.EPOCH,
          onMessage: (m: Message) => {
            if (m.json<{ from: string }>().from === 'p') resolve();
          },
        });
      });
      await onB.connectAndLogon();
      await pOnB;

      const recovered = stateWhere(subscriber, (e) => e.state === 'Resubscribed');
      await a.kill();
      await recovered;
      const markerArrived = arrived('marker');
      q.publish('ts', JSON.stringify({ from: 'marker' }));
      await markerArrived;
      // q's message was published after the subscription was placed: it must come, once.
      expect(seen).toEqual(['p', 'q', 'marker']);
    },
  );
});

describe('HAClient: a failover during a replay', () => {
  it('gets a message the next server logged before the position a persisted ack reported mid-replay', async () => {
    const servers = [] as TestServer[];
    for (const name of ['replay-a', 'replay-b']) {
      const s = await startTestServer({ name, persistedAckIntervalMs: 5 });
      cleanups.push(() => s.close());
      servers.push(s);
    }
    const [a, b] = servers as [TestServer, TestServer];
    const aToB = await startFaultProxy({ target: b.tcpPort });
    const toA = await startFaultProxy({ target: a.tcpPort }); // the subscriber's way to A
    cleanups.push(
      () => aToB.close(),
      () => toA.close(),
    );
    a.addPeer({ port: aToB.port, mode: 'async' });
    b.addPeer({ port: a.tcpPort, mode: 'async' });
    const reached = (s: TestServer, from: string) => {
      const watch = client(`replay-watch-${s.name}-${from}`, s.tcpUri('json'));
      const seen = new Promise<void>((resolve) => {
        watch.subscribe('rp', {
          bookmark: Bookmarks.EPOCH,
          onMessage: (m: Message) => {
            if (m.json<{ from: string }>().from === from) resolve();
          },
        });
      });
      return watch.connectAndLogon().then(() => seen);
    };

    // A logs p's messages, then q's (from B); B logs q's first, then p's (A to B held till then).
    aToB.blackhole();
    const filler = 'x'.repeat(8000);
    const p = client('replay-p', a.tcpUri('json'));
    await p.connectAndLogon();
    const count = 3000;
    for (let i = 0; i < count; i++)
      await p.publish('rp', JSON.stringify({ from: i === count - 1 ? 'p-last' : 'p', filler }));
    await p.publishFlush(10_000);
    const q = client('replay-q', b.tcpUri('json'));
    await q.connectAndLogon();
    q.publish('rp', JSON.stringify({ from: 'q' }));
    await reached(a, 'q');
    aToB.heal();
    await reached(b, 'p-last');

    // From the epoch on A, with no time in the recovery point: the time cannot help here.
    const subscriber = client('replay-sub', toA.tcpUri('json'), {
      servers: [toA.tcpUri('json'), b.tcpUri('json')],
      bookmarkStore: new MemoryBookmarkStore({ replicationLagMs: 0 }),
    });
    const seen: string[] = [];
    let cut = false;
    let markerArrived!: () => void;
    const marker = new Promise<void>((resolve) => {
      markerArrived = resolve;
    });
    subscriber.subscribe('rp', {
      bookmark: Bookmarks.EPOCH,
      onMessage: (m: Message) => {
        const from = m.json<{ from: string }>().from;
        seen.push(from);
        if (from === 'marker') markerArrived();
      },
      onAck: (ack) => {
        // A persisted ack in the middle of the replay, with nothing outstanding: A goes.
        if (cut || ack.ackType !== 'persisted' || seen.length === 0) return;
        cut = true;
        toA.blackhole();
        void a.kill().then(() => toA.reset());
      },
    });
    const recovered = stateWhere(
      subscriber,
      (e) => e.state === 'Resubscribed' && e.uri?.includes(`:${b.tcpPort}/`) === true,
    );
    await subscriber.connectAndLogon();
    await recovered;
    // The cut came well before A's replay reached q's message (the last of 3,000 of 8 KB).
    expect(cut).toBe(true);
    q.publish('rp', JSON.stringify({ from: 'marker' }));
    await marker;
    expect(seen.filter((from) => from === 'q')).toEqual(['q']);
    expect(seen.filter((from) => from.startsWith('p'))).toHaveLength(count);
  });
});

describe('HAClient: a bookmark range', () => {
  it('resumes inside the range after a failover, gets each message in it once, and ends at its end', async () => {
    const cluster = await startTestCluster({ count: 2, replication: 'sync', persistedAckIntervalMs: 20 });
    cleanups.push(() => cluster.close());
    const uris = cluster.tcpUris('json');
    const publisher = client('range-pub', uris[0] as string, { servers: uris });
    await publisher.connectAndLogon();
    const publish = async (from: number, to: number) => {
      for (let n = from; n <= to; n++) publisher.publish('rg', JSON.stringify({ n }));
      await publisher.publishFlush(5000);
    };
    await publish(1, 8);
    // The range: from message 3 to message 15, which is not published yet.
    const third = await new Promise<string>((resolve) => {
      const watch = client('range-watch', uris[0] as string);
      watch.subscribe('rg', {
        bookmark: Bookmarks.EPOCH,
        onMessage: (m: Message) => {
          if (m.json<{ n: number }>().n === 3) resolve(m.bookmark as string);
        },
      });
      void watch.connectAndLogon();
    });
    expect(third).toMatch(/^\d+\|3\|$/);
    const fifteenth = third.replace(/\|3\|$/, '|15|');

    const subscriber = client('range-sub', uris[0] as string, { servers: uris });
    const sub = subscriber.subscribe('rg', { subId: 'range', bookmark: `[${third}:${fifteenth}]` });
    await subscriber.connectAndLogon();
    const seen: number[] = [];
    const iterator = sub[Symbol.asyncIterator]();
    while (seen.length < 6) seen.push(((await iterator.next()).value as Message).json<{ n: number }>().n);
    expect(seen).toEqual([3, 4, 5, 6, 7, 8]);

    // Failover while the range waits for its end.
    const active = cluster.servers.find((s) => s.tcpUri('json') === subscriber.uri);
    const recovered = stateWhere(subscriber, (e) => e.state === 'Resubscribed');
    await active?.kill();
    await recovered;
    await active?.restart(); // sync replication holds persisted acks until every peer has the message
    await publish(9, 20);
    for (let r = await iterator.next(); !r.done; r = await iterator.next()) seen.push(r.value.json<{ n: number }>().n);
    expect(seen).toEqual([3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
    await expect(sub.closed).resolves.toBeUndefined();
    expect(subscriber.bookmarkStore?.getMostRecent('range')).toBeUndefined();
  });
});

describe('HAClient: a subscription started after a bookmark or at a time', () => {
  it.each(['bookmark', 'time'])(
    '(%s) gets nothing logged before its start, though the recovery point adds a time',
    async (kind) => {
      const s = await server();
      // q's message, then p's, both logged before the subscription is placed.
      const q = client(`start-q-${kind}`, s.tcpUri('json'));
      const p = client(`start-p-${kind}`, s.tcpUri('json'));
      await Promise.all([q.connectAndLogon(), p.connectAndLogon()]);
      q.publish('st', JSON.stringify({ from: 'q' }));
      await q.publishFlush(5000);
      p.publish('st', JSON.stringify({ from: 'p' }));
      await p.publishFlush(5000);
      const watch = client(`start-watch-${kind}`, s.tcpUri('json'));
      const pBookmark = new Promise<string>((resolve) => {
        watch.subscribe('st', {
          bookmark: Bookmarks.EPOCH,
          onMessage: (m: Message) => {
            if (m.json<{ from: string }>().from === 'p') resolve(m.bookmark as string);
          },
        });
      });
      await watch.connectAndLogon();
      // After p's message, or the next whole second (after both were logged).
      const start =
        kind === 'bookmark'
          ? await pBookmark
          : timestampBookmark(new Date(Math.floor(Date.now() / 1000) * 1000 + 1000));

      const subscriber = client(`start-sub-${kind}`, s.tcpUri('json'));
      const seen: string[] = [];
      let markerArrived!: () => void;
      const marker = new Promise<void>((resolve) => {
        markerArrived = resolve;
      });
      const sub = subscriber.subscribe('st', {
        bookmark: start,
        onMessage: (m: Message) => {
          const from = m.json<{ from: string }>().from;
          seen.push(from);
          if (from === 'marker') markerArrived();
        },
      });
      await subscriber.connectAndLogon();
      await sub.ready;
      q.publish('st', JSON.stringify({ from: 'marker' }));
      await marker;
      expect(seen).toEqual(['marker']);
    },
  );
});

describe('HAClient: the Resubscribed state', () => {
  it('lets a state listener subscribe and send commands on Resubscribed without dropping the connection it just recovered', async () => {
    const s = await server();
    // No wait before any attempt: a reconnect loop started by mistake tries at once.
    const ha = client('resubscribed-listener', s.tcpUri('json'), {
      delay: { getConnectWaitDuration: () => 0, reset: () => {} },
    });
    const disconnects: string[] = [];
    let late: ReturnType<HAClient['subscribe']> | undefined;
    let flushed: Promise<void> | undefined;
    ha.onStateChange((e) => {
      if (e.state === 'Disconnected') disconnects.push(e.reason ?? '');
      if (e.state !== 'Resubscribed' || late) return;
      // "Safe to send commands again", as AMPS documents this state.
      late = ha.subscribe('late', { onMessage: () => {} });
      flushed = ha.flush();
    });
    await ha.connectAndLogon();
    await late?.ready;
    await flushed;
    expect(disconnects).toEqual([]);
    expect(s.stats().connections.total).toBe(1);
  });
});
