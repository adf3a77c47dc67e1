import { getEventListeners } from 'node:events';
import {
  AbortError,
  type Authenticator,
  BadFilterError,
  Bookmarks,
  ConnectionError,
  type ConnectionInfo,
  DisconnectedError,
  defaultEnvironment,
  InvalidOptionsError,
  type Message,
  type ReconnectDelayStrategy,
  RetryExhaustedError,
  type ServerChooser,
  SlowConsumerError,
  TimedOutError,
  type TimerHandle,
  type Transport,
} from '@amps-ts/core-protocol';
import { priorityFailback } from '@amps-ts/server-chooser-priority';
import { startTestCluster, startTestServer, type TestCluster, type TestServer } from '@amps-ts/test-server';
import { nodeTransport } from '@amps-ts/transport-node';
import { describe, expect, it } from 'vitest';
import { HAClient, type HAClientOptions, type HAStateEvent, MemoryPublishStore } from '../src/index.js';
import { cleanups, records, stateWhere } from './helpers.js';

async function cluster(count = 2, extra: Parameters<typeof startTestCluster>[0] = {}): Promise<TestCluster> {
  const c = await startTestCluster({ count, replication: 'sync', persistedAckIntervalMs: 50, ...extra });
  cleanups.push(() => c.close());
  return c;
}

function client(
  name: string,
  servers: readonly string[],
  extra: Partial<ConstructorParameters<typeof HAClient>[1]> = {},
) {
  const ha = new HAClient(name, {
    transport: nodeTransport(),
    servers,
    heartbeat: { intervalS: 0.2, timeoutS: 0.5 },
    connectTimeoutMs: 1000,
    ...extra,
  });
  cleanups.push(() => ha.disconnect());
  return ha;
}

/** A bookmark subscriber that records every `n` it gets and resolves `until(n)` promises. */
function collector(ha: HAClient, topic: string) {
  const seen: number[] = [];
  const waiters: Array<{ n: number; resolve: () => void }> = [];
  const subscription = ha.subscribe(topic, {
    bookmark: Bookmarks.EPOCH,
    onMessage: (m: Message) => {
      seen.push(m.json<{ n: number }>().n);
      for (const w of waiters.filter((w) => seen.length >= w.n)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    },
  });
  return {
    seen,
    subscription,
    until: (count: number) =>
      count <= seen.length ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ n: count, resolve })),
  };
}

function serverOf(c: TestCluster, ha: HAClient): TestServer {
  const server = c.servers.find((s) => s.tcpUri('json') === ha.uri);
  if (!server) throw new Error(`${ha.uri} is not in the cluster`);
  return server;
}

/** A transport filter, and a promise that resolves once the client has sent a command for `subId`. */
function subscribeSent(subId: string) {
  let seen!: () => void;
  const sent = new Promise<void>((resolve) => {
    seen = resolve;
  });
  const transportFilter = (bytes: Uint8Array, direction: 'in' | 'out') => {
    if (direction === 'out' && Buffer.from(bytes).includes(`"sub_id":"${subId}"`)) seen();
    return bytes;
  };
  return { sent, transportFilter };
}

/** A transport filter that counts the deliveries (not acks) the client receives for `subId`. */
function deliveriesTo(subId: string) {
  const pattern = new RegExp(`"c":"p"[^}]*"sub_id":"${subId}"`, 'g'); // a header is a flat JSON object
  const counter = {
    count: 0,
    transportFilter: (bytes: Uint8Array, direction: 'in' | 'out') => {
      if (direction === 'in') counter.count += Buffer.from(bytes).toString().match(pattern)?.length ?? 0;
      return bytes;
    },
  };
  return counter;
}

/**
 * A TCP transport whose connects wait until `letConnect()` (a slow TLS handshake over a WAN, say);
 * `connectStarted` resolves at the first, `connects` counts them.
 */
function gatedTransport() {
  const base = nodeTransport();
  let letConnect!: () => void;
  const gate = new Promise<void>((resolve) => {
    letConnect = resolve;
  });
  let connecting!: () => void;
  const connectStarted = new Promise<void>((resolve) => {
    connecting = resolve;
  });
  const transport: Transport = {
    schemes: base.schemes,
    connect: async (uri, handlers, options) => {
      gated.connects++;
      connecting();
      await gate;
      return base.connect(uri, handlers, options);
    },
  };
  const gated = { connects: 0, connectStarted, letConnect, transport };
  return gated;
}

/** A chooser on one server at a time; `moveTo` makes it ask for a planned move there (fail-back). */
function movableChooser(first: string): { chooser: ServerChooser; moveTo: (uri: string) => void } {
  let target = first;
  const chooser: ServerChooser = {
    getCurrentURI: () => target,
    getCurrentAuthenticator: () => undefined,
    reportFailure: () => {},
    reportSuccess: () => {},
    getError: () => '',
    shouldSwitch: (uri) => uri !== target,
  };
  return {
    chooser,
    moveTo: (uri) => {
      target = uri;
    },
  };
}

/** A transport and an environment that count what a client holds open: connections and pending timers. */
function holdings() {
  const base = nodeTransport();
  const timers = new Set<TimerHandle>();
  const held = { connections: 0, timers: () => timers.size };
  const transport: Transport = {
    schemes: base.schemes,
    connect: async (uri, handlers, options) => {
      const connection = await base.connect(
        uri,
        {
          onData: (chunk) => handlers.onData(chunk),
          onClose: (error) => {
            held.connections--;
            handlers.onClose(error);
          },
        },
        options,
      );
      held.connections++;
      return connection;
    },
  };
  const environment = {
    ...defaultEnvironment,
    setTimeout: (callback: () => void, ms: number) => {
      const handle = defaultEnvironment.setTimeout(() => {
        timers.delete(handle);
        callback();
      }, ms);
      timers.add(handle);
      return handle;
    },
    clearTimeout: (handle: TimerHandle) => {
      timers.delete(handle);
      defaultEnvironment.clearTimeout(handle);
    },
  };
  return { held, transport, environment };
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe('HAClient failover (real brokers, real sockets)', () => {
  it('survives a kill of the active broker: the subscription resumes, publishes continue, nothing lost or doubled', async () => {
    const c = await cluster(3);
    const uris = c.tcpUris('json');
    const publisher = client('pub-kill', uris);
    const subscriber = client('sub-kill', uris);
    const sub = collector(subscriber, 'orders');
    await Promise.all([publisher.connectAndLogon(), subscriber.connectAndLogon()]);
    await sub.subscription.ready;

    for (const n of range(1, 200)) publisher.publish('orders', JSON.stringify({ n }));
    await sub.until(200);
    const states: string[] = [];
    subscriber.onStateChange((e) => states.push(e.state));
    const before = subscriber.uri;
    const recovered = stateWhere(subscriber, (e) => e.state === 'Resubscribed');
    const killed = serverOf(c, subscriber);
    await killed.kill();
    await recovered;
    // Sync replication holds persisted acks until every peer has the message: bring it back.
    await killed.restart();
    expect(subscriber.uri).not.toBe(before);
    expect(states.slice(0, 1)).toEqual(['Disconnected']);
    expect(states).toContain('LoggedOn');

    for (const n of range(201, 400)) publisher.publish('orders', JSON.stringify({ n }));
    await sub.until(400);
    await publisher.publishFlush(5000);
    expect(sub.seen).toEqual(range(1, 400));
  });

  it('fails over when the publisher loses its broker, republishing what was not persisted', async () => {
    const c = await cluster(2);
    const uris = c.tcpUris('json');
    const publisher = client('pub-repub', uris);
    const subscriber = client('sub-repub', [...uris].reverse());
    const sub = collector(subscriber, 'orders');
    await Promise.all([publisher.connectAndLogon(), subscriber.connectAndLogon()]);
    await sub.subscription.ready;
    const recovered = stateWhere(publisher, (e) => e.state === 'Resubscribed');
    const active = serverOf(c, publisher);
    // Publish and kill in the same tick: some of these are in flight when the broker dies.
    for (const n of range(1, 500)) publisher.publish('orders', JSON.stringify({ n }));
    await active.kill();
    await recovered;
    await active.restart();
    for (const n of range(501, 600)) publisher.publish('orders', JSON.stringify({ n }));
    await publisher.publishFlush(5000);
    await sub.until(600);
    expect(sub.seen).toEqual(range(1, 600));
    expect(publisher.publishStore?.unpersistedCount()).toBe(0);
  });

  it('detects a frozen (half-open) broker within the heartbeat timeout and fails over', async () => {
    const c = await cluster(2);
    const uris = c.tcpUris('json');
    const publisher = client('pub-freeze', uris);
    const subscriber = client('sub-freeze', uris);
    const sub = collector(subscriber, 'orders');
    await Promise.all([publisher.connectAndLogon(), subscriber.connectAndLogon()]);
    await sub.subscription.ready;
    const frozen = serverOf(c, subscriber);
    const disconnected = stateWhere(subscriber, (e) => e.state === 'Disconnected');
    const recovered = stateWhere(subscriber, (e) => e.state === 'Resubscribed');
    frozen.freeze();
    const event = await disconnected;
    expect(event.reason).toMatch(/heartbeat timeout/);
    await recovered;
    expect(subscriber.uri).not.toBe(frozen.tcpUri('json'));
    frozen.thaw();
    for (const n of range(1, 50)) publisher.publish('orders', JSON.stringify({ n }));
    await sub.until(50);
    expect(sub.seen).toEqual(range(1, 50));
  });

  it('stores publishes made while disconnected and sends them after logon', async () => {
    const server = await startTestServer({ sowTopics: [] });
    cleanups.push(() => server.close());
    const publisher = client('pub-offline', [server.tcpUri('json')]);
    const subscriber = client('sub-offline', [server.tcpUri('json')]);
    const sub = collector(subscriber, 'offline');
    await subscriber.connectAndLogon();
    await sub.subscription.ready;
    // Not connected yet: stored, not lost, not an error.
    for (const n of range(1, 20)) expect(() => publisher.publish('offline', JSON.stringify({ n }))).not.toThrow();
    expect(publisher.publishStore?.unpersistedCount()).toBe(20);
    await publisher.connectAndLogon();
    await sub.until(20);
    expect(sub.seen).toEqual(range(1, 20));
  });

  it('holds large publishes made while disconnected up to capacityBytes, and lets the rest in as the server persists them', async () => {
    const server = await startTestServer({ sowTopics: [] });
    cleanups.push(() => server.close());
    const uri = server.tcpUri('json');
    const capacityBytes = 1024 * 1024;
    const publisher = client('pub-bytes', [uri], { publishStore: new MemoryPublishStore({ capacityBytes }) });
    const subscriber = client('sub-bytes', [uri]);
    const sub = collector(subscriber, 'bytes');
    await Promise.all([subscriber.connectAndLogon(), sub.subscription.ready]);
    const pad = 'p'.repeat(100 * 1024);
    const waits = range(1, 20).map((n) => publisher.publish('bytes', JSON.stringify({ n, pad })));
    // 11 of about 100 KiB reach the bound: the rest wait for room, in order, and nothing is lost.
    expect(waits.findIndex((w) => w !== undefined)).toBe(11);
    expect(publisher.publishStore?.unpersistedCount()).toBe(11);
    await publisher.connectAndLogon();
    await Promise.all(waits);
    await sub.until(20);
    expect(sub.seen).toEqual(range(1, 20));
  });

  it('sends a publish let into a full store before one stored after it (else the server drops it)', async () => {
    const server = await startTestServer({ ackConflationMs: 50 });
    cleanups.push(() => server.close());
    const uri = server.tcpUri('json');
    const publisher = client('pub-block', [uri], { publishStore: new MemoryPublishStore({ capacity: 3 }) });
    const subscriber = client('sub-block', [uri]);
    const sub = collector(subscriber, 'block');
    await Promise.all([publisher.connectAndLogon(), subscriber.connectAndLogon(), sub.subscription.ready]);
    // An application publishing as an ack arrives (as a handler in the same socket chunk would):
    // 4 and 5 were let in by that ack, so 6 must follow them on the wire.
    let published = false;
    publisher.client.onPersisted(() => {
      if (published) return;
      published = true;
      void publisher.publish('block', JSON.stringify({ n: 6 }));
    });
    for (const n of range(1, 5)) void publisher.publish('block', JSON.stringify({ n })); // 4 and 5 wait for room
    await sub.until(6);
    expect(sub.seen).toEqual(range(1, 6));
    expect(server.stats().duplicatesDropped).toBe(0);
  });

  it('keeps every other unpersisted publish when the server refuses one, and republishes them after a failover', async () => {
    const c = await cluster(2);
    const [a, b] = c.servers as [TestServer, TestServer];
    const publisher = client('pub-refused', [a.tcpUri('json'), b.tcpUri('json')]);
    await publisher.connectAndLogon();
    await b.kill(); // sync replication: A holds its persisted acks while its peer is down
    for (const n of range(1, 5)) publisher.publish('orders', JSON.stringify({ n }));
    const refused = new Promise((resolve) => publisher.onFailedWrite(resolve));
    publisher.publish('/AMPS/bad', JSON.stringify({ n: 6 }));
    await refused;
    expect(publisher.publishStore?.unpersistedCount()).toBe(5);

    const onB = stateWhere(publisher, (e) => e.state === 'Resubscribed' && e.uri === b.tcpUri('json'));
    await b.restart();
    await a.kill();
    await onB;
    const subscriber = client('sub-refused', [b.tcpUri('json')]);
    const sub = collector(subscriber, 'orders');
    await subscriber.connectAndLogon();
    await sub.until(5);
    expect(sub.seen).toEqual(range(1, 5));
  });

  it('fails a SOW query cut off after its first records rather than deliver them twice', async () => {
    const server = await startTestServer({ sowTopics: [{ topic: 'orders', key: '/id' }] });
    cleanups.push(() => server.close());
    const ha = client('sow-cut', [server.tcpUri('json')]);
    await ha.connectAndLogon();
    for (const id of range(1, 100)) ha.publish('orders', JSON.stringify({ id }));
    await ha.publishFlush(5000);
    const ids: number[] = [];
    const query = ha.sow('orders', {
      batchSize: 1,
      onMessage: (m) => {
        ids.push(m.json<{ id: number }>().id);
        if (ids.length === 10) ha.client.abort(new DisconnectedError('socket reset'));
      },
    });
    const error = await query.stats.catch((e: unknown) => e);
    expect(DisconnectedError.isInstance(error)).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('takes back on the server a subscription unsubscribed while recovery is still running', async () => {
    const server = await startTestServer({});
    cleanups.push(() => server.close());
    const forA = deliveriesTo('A');
    const ha = client('unsub-recovering', [server.tcpUri('json')], {
      client: { transportFilter: forA.transportFilter },
    });
    let unsubscribed: Promise<void> | undefined;
    const a = ha.subscribe('recovering', {
      subId: 'A',
      onMessage: () => {},
      // Entered by the first recovery, and dropped before that recovery has finished.
      onAck: () => {
        expect(ha.isReady).toBe(false);
        unsubscribed ??= a.unsubscribe();
      },
    });
    const sentinel = collector(ha, 'recovering');
    await ha.connectAndLogon();
    await unsubscribed;
    await sentinel.subscription.ready;
    const publisher = client('unsub-recovering-pub', [server.tcpUri('json')]);
    await publisher.connectAndLogon();
    for (const n of range(1, 10)) publisher.publish('recovering', JSON.stringify({ n }));
    await sentinel.until(10); // delivered after any message for A would have been
    expect(forA.count).toBe(0);
  });

  it('rejects ready with an AbortError for a subscription unsubscribed before the server accepted it', async () => {
    const server = await startTestServer({});
    cleanups.push(() => server.close());
    const { sent, transportFilter } = subscribeSent('in-flight');
    const ha = client('unsub-unaccepted', [server.tcpUri('json')], { heartbeat: false, client: { transportFilter } });
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    cleanups.push(async () => process.off('unhandledRejection', onUnhandled));

    // Never connected: the server has never heard of it.
    const offline = ha.subscribe('t', { onMessage: () => {} });
    await offline.unsubscribe();
    const offlineError = await offline.ready.catch((e: unknown) => e);
    expect(AbortError.isInstance(offlineError)).toBe(true);
    expect((offlineError as Error).message).toMatch(/unsubscribed before the server accepted it/);
    expect(await offline.closed).toBeUndefined();
    const neverAwaited = ha.subscribe('t', { onMessage: () => {} }); // nobody looks at its ready
    await neverAwaited.unsubscribe();

    // Sent, and the server has not answered yet.
    await ha.connectAndLogon();
    server.freeze();
    cleanups.push(async () => server.thaw());
    const inFlight = ha.subscribe('t', { subId: 'in-flight', onMessage: () => {} });
    await sent;
    void inFlight.unsubscribe();
    expect(AbortError.isInstance(await inFlight.ready.catch((e: unknown) => e))).toBe(true);

    await new Promise((resolve) => setImmediate(resolve)); // unhandled rejections are reported by now
    expect(unhandled).toEqual([]);
  });

  it('ends a subscription its own signal or timeoutMs calls off before the server accepts it, and takes it back there; once accepted they do nothing', async () => {
    const server = await startTestServer({});
    cleanups.push(() => server.close());
    const { sent, transportFilter } = subscribeSent('in-flight');
    const ha = client('bounded-subscribe', [server.tcpUri('json')], { heartbeat: false, client: { transportFilter } });
    expect(() => ha.subscribe('bounded', { timeoutMs: -1 })).toThrow(InvalidOptionsError);
    expect(() => ha.subscribe('bounded', { signal: {} as AbortSignal })).toThrow(InvalidOptionsError);

    // No server to accept them: the timeout passes, the signals abort.
    await server.kill();
    const timedOut = ha.subscribe('bounded', { timeoutMs: 20, onMessage: () => {} });
    const controller = new AbortController();
    const aborted = ha.subscribe('bounded', { signal: controller.signal, onMessage: () => {} });
    controller.abort();
    const abortedBefore = ha.subscribe('bounded', { signal: AbortSignal.abort(), onMessage: () => {} });
    const timeout = await timedOut.ready.catch((e: unknown) => e);
    expect(TimedOutError.isInstance(timeout)).toBe(true);
    expect((timeout as Error).message).toBe(`subscribe ${timedOut.subId} timed out after 20 ms`);
    expect(await timedOut.closed).toBe(timeout);
    for (const s of [aborted, abortedBefore]) {
      const error = await s.ready.catch((e: unknown) => e);
      expect(AbortError.isInstance(error)).toBe(true);
      expect(await s.closed).toBe(error);
    }
    await server.restart();
    await ha.connectAndLogon();

    // Sent, and the server has not answered yet: taken back once it reads again.
    server.freeze();
    const inFlightController = new AbortController();
    const inFlight = ha.subscribe('bounded', {
      subId: 'in-flight',
      signal: inFlightController.signal,
      onMessage: () => {},
    });
    await sent;
    inFlightController.abort(new Error('no longer wanted'));
    expect((await inFlight.ready.catch((e: unknown) => e)) as Error).toMatchObject({ message: 'no longer wanted' });
    server.thaw();

    // Accepted: the signal and the timeout are done with.
    const liveController = new AbortController();
    const got: number[] = [];
    let delivered!: () => void;
    const deliveredOnce = new Promise<void>((resolve) => {
      delivered = resolve;
    });
    const live = ha.subscribe('bounded', {
      signal: liveController.signal,
      timeoutMs: 60_000,
      onMessage: (m) => {
        got.push(m.json<{ n: number }>().n);
        delivered();
      },
    });
    await live.ready;
    expect(getEventListeners(liveController.signal, 'abort')).toHaveLength(0);
    liveController.abort();
    ha.publish('bounded', JSON.stringify({ n: 1 }));
    await deliveredOnce;
    expect(got).toEqual([1]);
    // The broker delivered it to the live subscription alone: none of the others is on it.
    expect(server.stats().topics.bounded?.delivered).toBe(1);
  });

  it('never generates a sub_id the application has taken', async () => {
    const server = await startTestServer({});
    cleanups.push(() => server.close());
    const ha = client('auto-ids', [server.tcpUri('json')]);
    await ha.connectAndLogon();
    const chosen = ha.subscribe('t', { subId: 'ha-1', onMessage: () => {} }); // the form auto ids take
    const auto = [ha.subscribe('t', { onMessage: () => {} }), ha.subscribe('t', { onMessage: () => {} })];
    await Promise.all([chosen.ready, ...auto.map((s) => s.ready)]);
    expect(new Set([chosen.subId, ...auto.map((s) => s.subId)]).size).toBe(3);
  });

  it('rejects ready with a DisconnectedError for a subscription the server had not accepted when disconnect() was called', async () => {
    const server = await startTestServer({});
    cleanups.push(() => server.close());
    const ha = client('disconnect-unaccepted', [server.tcpUri('json')]);
    const pending = ha.subscribe('t', { onMessage: () => {} });
    await ha.disconnect();
    expect(DisconnectedError.isInstance(await pending.ready.catch((e: unknown) => e))).toBe(true);
  });

  it('fails over when a new subscription times out on a server that stopped answering (before heartbeats would tell)', async () => {
    const c = await cluster(2);
    const uris = c.tcpUris('json');
    const publisher = client('pub-sub-timeout', uris);
    const subscriber = client('sub-sub-timeout', uris, {
      heartbeat: { intervalS: 30 },
      resubscriptionTimeoutMs: 300,
    });
    await Promise.all([publisher.connectAndLogon(), subscriber.connectAndLogon()]);
    const frozen = serverOf(c, subscriber);
    const disconnected = stateWhere(subscriber, (e) => e.state === 'Disconnected');
    frozen.freeze();
    const sub = collector(subscriber, 'late'); // times out on the frozen server
    expect((await disconnected).reason).toMatch(/timed out/);
    await sub.subscription.ready; // entered again on the other server
    expect(subscriber.uri).not.toBe(frozen.tcpUri('json'));
    frozen.thaw();
    for (const n of range(1, 10)) publisher.publish('late', JSON.stringify({ n }));
    await sub.until(10);
    expect(sub.seen).toEqual(range(1, 10));
  });

  it.each([
    ['an iterator nobody reads', {}],
    ['an async onMessage whose promises never settle', { onMessage: () => new Promise<void>(() => {}) }],
  ])(
    'ends a subscription whose consumer fell too far behind (%s), and takes it back on the server',
    async (_, consumer) => {
      const server = await startTestServer({});
      cleanups.push(() => server.close());
      const forSlow = deliveriesTo('slow');
      const ha = client('slow-consumer', [server.tcpUri('json')], {
        client: { transportFilter: forSlow.transportFilter },
      });
      const slow = ha.subscribe('slow', { subId: 'slow', maxQueue: 4, ...consumer });
      const sentinel = collector(ha, 'slow');
      await ha.connectAndLogon();
      await Promise.all([slow.ready, sentinel.subscription.ready]);
      const publisher = client('slow-consumer-pub', [server.tcpUri('json')]);
      await publisher.connectAndLogon();
      for (const n of range(1, 10)) publisher.publish('slow', JSON.stringify({ n }));
      const closedWith = await slow.closed;
      expect(SlowConsumerError.isInstance(closedWith)).toBe(true);
      await sentinel.until(10);
      const before = forSlow.count;
      for (const n of range(11, 20)) publisher.publish('slow', JSON.stringify({ n }));
      await sentinel.until(20); // delivered after any message for the dropped subscription would have been
      expect(forSlow.count).toBe(before);
    },
  );

  it("resumes a NOW subscription that started on an empty log from its first message, not from the next server's end", async () => {
    const c = await cluster(2);
    const [a, b] = c.servers as [TestServer, TestServer];
    const publisher = client('pub-now', [b.tcpUri('json')]);
    const subscriber = client('sub-now', [a.tcpUri('json'), b.tcpUri('json')]);
    let release!: () => void;
    const handling = new Promise<void>((resolve) => {
      release = resolve;
    });
    const seen: number[] = [];
    const arrived = new Map<number, () => void>();
    const seenCount = (count: number) => new Promise<void>((resolve) => arrived.set(count, resolve));
    const firstArrived = seenCount(1);
    const allFour = seenCount(4);
    const sub = subscriber.subscribe('now', {
      bookmark: Bookmarks.NOW,
      onMessage: async (m: Message) => {
        seen.push(m.json<{ n: number }>().n);
        arrived.get(seen.length)?.();
        await handling; // message 1 is still being handled when its broker dies
      },
    });
    await Promise.all([publisher.connectAndLogon(), subscriber.connectAndLogon(), sub.ready]);
    publisher.publish('now', JSON.stringify({ n: 1 }));
    await firstArrived;
    const onB = stateWhere(subscriber, (e) => e.state === 'Resubscribed' && e.uri === b.tcpUri('json'));
    await a.kill();
    // On B's log long before the subscriber, which has to reconnect and log on first, subscribes there.
    for (const n of [2, 3]) publisher.publish('now', JSON.stringify({ n }));
    await onB;
    publisher.publish('now', JSON.stringify({ n: 4 }));
    release();
    await allFour;
    expect(seen).toEqual([1, 2, 3, 4]);
  });

  it('fails a subscription the server refuses with its typed error, and does not enter it again after a failover', async () => {
    const c = await cluster(2);
    const filter = "/n = 'unterminated";
    let sent = 0;
    const ha = client('refused', c.tcpUris('json'), {
      client: {
        transportFilter: (bytes, direction) => {
          if (direction === 'out' && Buffer.from(bytes).includes(filter)) sent++;
          return bytes;
        },
      },
    });
    await ha.connectAndLogon();
    const refused = ha.subscribe('orders', { filter, onMessage: () => {} });
    const error = await refused.ready.catch((e: unknown) => e);
    expect(BadFilterError.isInstance(error)).toBe(true);
    expect(sent).toBe(1);

    const recovered = stateWhere(ha, (e) => e.state === 'Resubscribed');
    await serverOf(c, ha).kill();
    await recovered;
    expect(sent).toBe(1);
  });

  it('makes commands issued while reconnecting wait for recovery', async () => {
    const c = await cluster(2);
    const ha = client('cmd-wait', c.tcpUris('json'));
    await ha.connectAndLogon();
    const recovered = stateWhere(ha, (e) => e.state === 'Resubscribed');
    await serverOf(c, ha).kill();
    const flushed = ha.flush('processed', { timeoutMs: 5000 }); // issued while down
    await recovered;
    await expect(flushed).resolves.toBeUndefined();
  });

  describe('sowDelete, through the publish store', () => {
    const sowTopics = [{ topic: 'orders', key: '/n' }];

    it('applies one cut off by a failover once, on the next server, in order with the publishes around it', async () => {
      const c = await cluster(2, { sowTopics });
      const ha = client('sowdelete-cut', c.tcpUris('json'));
      await ha.connectAndLogon();
      ha.publish('orders', JSON.stringify({ n: 1, v: 1 }));
      ha.publish('orders', JSON.stringify({ n: 2, v: 1 }));
      await ha.publishFlush(5000);
      const recovered = stateWhere(ha, (e) => e.state === 'Resubscribed');
      const active = serverOf(c, ha);
      active.freeze(); // it reads nothing more and answers nothing
      const deleted = ha.sowDelete('orders', { filter: '/n = 1' });
      ha.publish('orders', JSON.stringify({ n: 1, v: 2 })); // after the delete, so it must outlive it
      await active.kill();
      await recovered;
      await expect(deleted).resolves.toMatchObject({ recordsDeleted: 1 });
      expect(await records(ha)).toEqual(['1:2', '2:1']);
    });

    it('resolves one whose counts were lost with the server that applied it, without applying it again', async () => {
      const c = await cluster(2, { sowTopics });
      let dropping = false;
      let lost!: () => void;
      const persistedAndLost = new Promise<void>((resolve) => {
        lost = resolve;
      });
      const ha = client('sowdelete-applied', c.tcpUris('json'), {
        client: {
          // While dropping, every ack is lost on its way: the delete's, its persisted one last.
          transportFilter: (bytes, direction) => {
            if (direction === 'out' || !dropping || !Buffer.from(bytes).includes('"c":"ack"')) return bytes;
            if (Buffer.from(bytes).includes('"a":"persisted"')) lost();
            return new Uint8Array(0);
          },
        },
      });
      await ha.connectAndLogon();
      ha.publish('orders', JSON.stringify({ n: 1, v: 1 }));
      await ha.publishFlush(5000);
      dropping = true;
      const deleted = ha.sowDelete('orders', { filter: '/n = 1' });
      await persistedAndLost; // applied, and held by the other server (sync replication)
      dropping = false;
      ha.publish('orders', JSON.stringify({ n: 1, v: 2 }));
      const recovered = stateWhere(ha, (e) => e.state === 'Resubscribed');
      await serverOf(c, ha).kill();
      await recovered;
      // Counts unknown, and not run again: the record published after it is still there.
      await expect(deleted).resolves.toEqual({});
      expect(await records(ha)).toEqual(['1:2']);
    });

    it('rejects one the server refuses with its typed error, and never sends it again', async () => {
      const c = await cluster(2, { sowTopics });
      const filter = "/n = 'unterminated";
      let sent = 0;
      const ha = client('sowdelete-refused', c.tcpUris('json'), {
        client: {
          transportFilter: (bytes, direction) => {
            if (direction === 'out' && Buffer.from(bytes).includes(filter)) sent++;
            return bytes;
          },
        },
      });
      await ha.connectAndLogon();
      await expect(ha.sowDelete('orders', { filter })).rejects.toSatisfy(BadFilterError.isInstance);
      expect(ha.publishStore?.unpersistedCount()).toBe(0);
      const recovered = stateWhere(ha, (e) => e.state === 'Resubscribed');
      await serverOf(c, ha).kill();
      await recovered;
      expect(sent).toBe(1);
    });

    it('says a wait that ended leaves the delete in the publish store, to be applied', async () => {
      const s = await startTestServer({ sowTopics });
      cleanups.push(() => s.close());
      const ha = client('sowdelete-waits', [s.tcpUri('json')]);
      await ha.connectAndLogon();
      ha.publish('orders', JSON.stringify({ n: 1, v: 1 }));
      await ha.publishFlush(5000);
      s.freeze();
      await expect(ha.sowDelete('orders', { filter: '/n = 1' }, { timeoutMs: 50 })).rejects.toMatchObject({
        name: 'TimedOutError',
        message:
          'sow_delete timed out after 50 ms; it stays in the publish store, which sends it until the server persists it: do not run it again',
      });
      const waiting = ha.sowDelete('orders', { keys: ['1'] });
      waiting.catch(() => {}); // rejected while disconnect() runs
      await ha.disconnect();
      await expect(waiting).rejects.toMatchObject({
        name: 'DisconnectedError',
        message: expect.stringMatching(/application; the sow_delete stays in the publish store, which sends it/),
      });
      expect(ha.publishStore?.unpersistedCount()).toBe(2);
    });
  });

  it('moves on from a broker that refuses the credentials, and gives up with every server named when all do', async () => {
    const wrong = await startTestServer({ auth: { users: { alice: 'other-password' } } });
    const right = await startTestServer({ auth: { users: { alice: 's3cret' } } });
    cleanups.push(
      () => wrong.close(),
      () => right.close(),
    );
    const withPassword = (s: TestServer) => s.tcpUri('json').replace('tcp://', 'tcp://alice:s3cret@');

    const ha = client('auth-1', [withPassword(wrong), withPassword(right)]);
    const events: HAStateEvent[] = [];
    ha.onStateChange((e) => events.push(e));
    await ha.connectAndLogon();
    expect(ha.uri).toBe(right.tcpUri('json').replace('tcp://', 'tcp://alice:***@'));
    expect(events.find((e) => e.state === 'Disconnected')?.reason).toMatch(/logon failed/);
    expect(JSON.stringify(events)).not.toContain('s3cret');

    // Every server refuses: a bounded budget, then one clear error.
    const attempts: string[] = [];
    let resets = 0;
    const giveUpAfter: ReconnectDelayStrategy = {
      getConnectWaitDuration: () => {
        if (attempts.length >= 6) throw new RetryExhaustedError('budget spent', { elapsedMs: 0, attempts: 6 });
        attempts.push('wait');
        return 5;
      },
      reset: () => {
        resets++;
      },
    };
    const bothWrong = client('auth-2', [withPassword(wrong), withPassword(right).replace('s3cret', 'nope')], {
      delay: giveUpAfter,
    });
    const error = await bothWrong.connectAndLogon().catch((e: unknown) => e);
    expect(RetryExhaustedError.isInstance(error)).toBe(true);
    const message = (error as Error).message;
    expect(message).toContain(wrong.tcpUri('json').replace('tcp://', 'tcp://alice:***@'));
    expect(message).toContain(right.tcpUri('json').replace('tcp://', 'tcp://alice:***@'));
    expect(message).not.toMatch(/s3cret|nope/);
    expect(attempts).toHaveLength(6); // the strategy, not a hot loop, decided every attempt
    expect((error as RetryExhaustedError).attempts).toBe(6);
    expect(message).toMatch(/after 6 attempts/);
    expect(resets).toBe(1); // the next connectAndLogon() gets a new budget

    // This strategy gives up again at once (it ignores reset): the call still settles.
    await expect(bothWrong.connectAndLogon()).rejects.toThrow(RetryExhaustedError);
  });

  it('runs on a custom chooser and a custom delay strategy written in a few lines', async () => {
    const c = await cluster(2);
    const [first, second] = c.tcpUris('json') as [string, string];
    // A chooser that always prefers the first server it has not seen fail.
    const failed = new Set<string>();
    const reports: string[] = [];
    const chooser: ServerChooser = {
      getCurrentURI: () => [first, second].find((u) => !failed.has(u)) ?? first,
      getCurrentAuthenticator: (): Authenticator | undefined => undefined,
      reportFailure: (_e: Error, info: ConnectionInfo) => {
        reports.push(`fail ${info.uri}`);
        failed.add(info.uri);
      },
      reportSuccess: (info: ConnectionInfo) => reports.push(`ok ${info.uri}`),
      getError: () => `failed: ${[...failed].join(', ')}`,
    };
    const waits: number[] = [];
    const delay: ReconnectDelayStrategy = {
      getConnectWaitDuration: () => {
        waits.push(waits.length * 10);
        return waits.length * 10;
      },
      reset: () => waits.push(-1),
    };
    const ha = client('custom-1', [], { chooser, delay, servers: undefined });
    const sub = collector(ha, 'custom');
    await ha.connectAndLogon();
    await sub.subscription.ready;
    expect(ha.uri).toBe(first);
    const recovered = stateWhere(ha, (e) => e.state === 'Resubscribed');
    await c.servers[0]?.kill();
    await recovered;
    expect(ha.uri).toBe(second);
    expect(reports).toEqual([`ok ${first}`, `fail ${first}`, `ok ${second}`]);
    expect(waits.filter((w) => w === -1).length).toBeLessThanOrEqual(1); // only when a held connection drops
    await ha.publish('custom', JSON.stringify({ n: 1 }));
    await sub.until(1);
  });

  it('gives up with an InvalidOptionsError when a delay strategy returns a wait it cannot wait (no hot loop)', async () => {
    const server = await startTestServer({});
    cleanups.push(() => server.close());
    for (const bad of [Number.NaN, -1, 2 ** 31, undefined]) {
      let calls = 0;
      const delay: ReconnectDelayStrategy = {
        // The bad wait, then giving up: without the check the first would be a connect attempt, which succeeds.
        getConnectWaitDuration: () => {
          if (++calls > 1) throw new RetryExhaustedError('second call', { elapsedMs: 0, attempts: 1, servers: [] });
          return bad as number;
        },
        reset: () => {},
      };
      const ha = client(`bad-wait-${String(bad)}`, [server.tcpUri('json')], { delay });
      await expect(ha.connectAndLogon()).rejects.toMatchObject({
        name: 'InvalidOptionsError',
        message: `the delay strategy returned a wait of ${bad} ms; it must be 0 to 2147483647`,
      });
      expect(calls).toBe(1);
    }
  });

  it("reports connect plus logon as the chooser's latencyMs, not the whole recovery", async () => {
    const server = await startTestServer({});
    cleanups.push(() => server.close());
    const uri = server.tcpUri('json');
    // Everything the server sends after the logon ack arrives 300 ms late: heartbeat and subscribe acks.
    const base = nodeTransport();
    const transport: Transport = {
      schemes: base.schemes,
      connect: (target, handlers, options) => {
        let chunks = 0;
        let late = Promise.resolve();
        return base.connect(
          target,
          {
            onData: (chunk) => {
              if (chunks++ === 0) return handlers.onData(chunk);
              late = late
                .then(() => new Promise((resolve) => setTimeout(resolve, 300)))
                .then(() => handlers.onData(chunk));
            },
            onClose: (error) => void late.then(() => handlers.onClose(error)),
          },
          options,
        );
      },
    };
    const successes: ConnectionInfo[] = [];
    const { chooser } = movableChooser(uri);
    chooser.reportSuccess = (info) => successes.push(info);
    const ha = client('latency-1', [], { chooser, servers: undefined, transport });
    ha.subscribe('latency', { onMessage: () => {} });
    const started = performance.now();
    await ha.connectAndLogon();
    expect(performance.now() - started).toBeGreaterThanOrEqual(300);
    expect(successes).toHaveLength(1);
    expect(successes[0]?.latencyMs).toBeLessThan(300);
  });

  it('starts a new backoff sweep only when a connection that held drops (no hot loop on a server that drops at once)', async () => {
    const server = await startTestServer({});
    cleanups.push(() => server.close());
    let now = 0; // the clock the client judges "held" by; timers stay real
    let resets = 0;
    const delay: ReconnectDelayStrategy = { getConnectWaitDuration: () => 0, reset: () => resets++ };
    const ha = client('held', [server.tcpUri('json')], {
      delay,
      heartbeat: false,
      environment: { ...defaultEnvironment, now: () => now },
    });
    await ha.connectAndLogon();
    const dropAndRecover = async () => {
      const recovered = stateWhere(ha, (e) => e.state === 'Resubscribed');
      ha.client.abort(new DisconnectedError('dropped by the server'));
      await recovered;
    };
    await dropAndRecover(); // dropped 0 ms after it was up
    expect(resets).toBe(0);
    now += 100;
    await dropAndRecover(); // held 100 ms
    expect(resets).toBe(1);
  });

  it('fails back to the preferred server once it has been healthy for a while, losing nothing', async () => {
    const c = await cluster(2);
    const [primary, backup] = c.tcpUris('json') as [string, string];
    const publisher = client('pub-failback', [backup]);
    const subscriber = client('sub-failback', [], {
      servers: undefined,
      chooser: priorityFailback([primary, backup], { failbackAfterMs: 300 }),
      failbackCheckMs: 50,
    });
    const sub = collector(subscriber, 'orders');
    await Promise.all([publisher.connectAndLogon(), subscriber.connectAndLogon()]);
    await sub.subscription.ready;
    expect(subscriber.uri).toBe(primary);

    const onBackup = stateWhere(subscriber, (e) => e.state === 'Resubscribed' && e.uri === backup);
    await c.servers[0]?.kill();
    await onBackup;
    for (const n of range(1, 100)) publisher.publish('orders', JSON.stringify({ n }));
    await sub.until(100);

    const backOnPrimary = stateWhere(subscriber, (e) => e.state === 'Resubscribed' && e.uri === primary);
    await c.servers[0]?.restart();
    await backOnPrimary;
    for (const n of range(101, 200)) publisher.publish('orders', JSON.stringify({ n }));
    await sub.until(200);
    expect(sub.seen).toEqual(range(1, 200));
  });

  it('has the old server process the batched queue acks before a fail-back closes its connection', async () => {
    const old = await startTestServer({ queues: ['jobs'] });
    const preferred = await startTestServer({});
    cleanups.push(
      () => old.close(),
      () => preferred.close(),
    );
    const { chooser, moveTo } = movableChooser(old.tcpUri('json'));
    const consumer = client('failback-acks', [], {
      servers: undefined,
      chooser,
      failbackCheckMs: 20,
      client: { ackBatchSize: 10, ackTimeoutMs: 600_000 }, // the batch is sent by nothing but the move
    });
    const acked: string[] = [];
    let allAcked!: () => void;
    const three = new Promise<void>((resolve) => {
      allAcked = resolve;
    });
    consumer.subscribe('jobs', {
      maxBacklog: 10,
      onMessage: (m: Message) => {
        consumer.ack(m);
        acked.push(m.bookmark as string);
        if (acked.length === 3) allAcked();
      },
    });
    await consumer.connectAndLogon();
    const publisher = client('failback-acks-pub', [old.tcpUri('json')]);
    await publisher.connectAndLogon();
    for (const n of range(1, 3)) publisher.publish('jobs', JSON.stringify({ n }));
    await three;
    expect(old.stats().queues.jobs).toEqual({ depth: 3, leased: 3 }); // acked, but batched
    const moved = stateWhere(consumer, (e) => e.state === 'Resubscribed' && e.uri === preferred.tcpUri('json'));
    moveTo(preferred.tcpUri('json'));
    await moved;
    expect(old.stats().queues.jobs).toEqual({ depth: 0, leased: 0 });
  });

  it('does not hand an iterating queue consumer the messages it still buffered from a lost connection (the server delivers them again)', async () => {
    const c = await cluster(2, { queues: [{ topic: 'jobs', leaseMs: 600_000, maxBacklog: 10 }] });
    const uris = c.tcpUris('json');
    let buffered!: () => void;
    const fiveArrived = new Promise<void>((resolve) => {
      buffered = resolve;
    });
    const toConsumer = deliveriesTo('jobs-consumer');
    const consumer = client('queue-buffered', uris, {
      client: {
        transportFilter: (bytes, direction) => {
          toConsumer.transportFilter(bytes, direction);
          if (toConsumer.count >= 5) buffered();
          return bytes;
        },
      },
    });
    const publisher = client('queue-buffered-pub', uris);
    await Promise.all([consumer.connectAndLogon(), publisher.connectAndLogon()]);
    const jobs = consumer.subscribe('jobs', { subId: 'jobs-consumer', maxBacklog: 5, autoAck: true });
    await jobs.ready;
    for (const n of range(1, 10)) publisher.publish('jobs', JSON.stringify({ n }));
    const iterator = jobs[Symbol.asyncIterator]();
    const seen = [(await iterator.next()).value.json().n]; // in hand when the connection drops
    await fiveArrived; // 2 to 5 wait in the iterator's buffer, leased on this connection
    const recovered = stateWhere(consumer, (e) => e.state === 'Resubscribed');
    const lost = serverOf(c, consumer);
    await lost.kill();
    await recovered;
    await lost.restart();
    // The new server leases 1 to 5 again, then 6 to 10 as they are acknowledged.
    while (seen.length < 11) seen.push((await iterator.next()).value.json().n);
    expect(seen).toEqual([1, ...range(1, 10)]);
  });

  it('drops an ack() of a queue message delivered on a connection that has gone: its lease went with it, and the server delivered it again', async () => {
    const server = await startTestServer({ queues: [{ topic: 'jobs', leaseMs: 600_000 }] });
    cleanups.push(() => server.close());
    const consumer = client('queue-stale-ack', [server.tcpUri('json')]);
    const delivered: Message[] = [];
    let arrived = () => {};
    const delivery = (n: number) =>
      new Promise<Message>((resolve) => {
        arrived = () => delivered[n - 1] && resolve(delivered[n - 1] as Message);
        arrived();
      });
    consumer.subscribe('jobs', {
      onMessage: (m: Message) => {
        delivered.push(m); // held, not acknowledged yet
        arrived();
      },
    });
    await consumer.connectAndLogon();
    const publisher = client('queue-stale-ack-pub', [server.tcpUri('json')]);
    await publisher.connectAndLogon();
    publisher.publish('jobs', JSON.stringify({ n: 1 }));
    const first = await delivery(1);
    const recovered = stateWhere(consumer, (e) => e.state === 'Resubscribed');
    consumer.client.abort(new DisconnectedError('connection lost'));
    await recovered;
    const again = await delivery(2); // the same job, leased anew (to another consumer, it could be)
    expect(again.bookmark).toBe(first.bookmark);
    consumer.ack(first);
    await consumer.flush();
    expect(server.stats().queues.jobs).toEqual({ depth: 1, leased: 1 }); // the new lease's holder still has it
    consumer.ack(again);
    await consumer.flush();
    expect(server.stats().queues.jobs).toEqual({ depth: 0, leased: 0 });
  });

  it('does not let a server that stopped answering hold up a fail-back for longer than commandTimeoutMs', async () => {
    const old = await startTestServer({});
    const preferred = await startTestServer({});
    cleanups.push(
      () => old.close(),
      () => preferred.close(),
    );
    const { chooser, moveTo } = movableChooser(old.tcpUri('json'));
    const ha = client('failback-stuck', [], {
      servers: undefined,
      chooser,
      failbackCheckMs: 20,
      heartbeat: false, // nothing but the bound ends the wait for the frozen server
      commandTimeoutMs: 200,
    });
    await ha.connectAndLogon();
    old.freeze();
    cleanups.push(async () => old.thaw());
    const events: HAStateEvent[] = [];
    ha.onStateChange((e) => events.push(e));
    const moved = stateWhere(ha, (e) => e.state === 'Resubscribed' && e.uri === preferred.tcpUri('json'));
    moveTo(preferred.tcpUri('json'));
    await moved;
    expect(events[0]).toMatchObject({ state: 'Disconnected', reason: 'failing back to a preferred server' });
    expect(events[0]?.uri).toBe(old.tcpUri('json'));
  });

  it('tells the chooser when disconnect() calls off a fail-back before its attempt (the next attempt is an ordinary one)', async () => {
    const old = await startTestServer({});
    const preferred = await startTestServer({});
    cleanups.push(
      () => old.close(),
      () => preferred.close(),
    );
    const { chooser, moveTo } = movableChooser(old.tcpUri('json'));
    const asked = chooser.shouldSwitch?.bind(chooser) as (uri: string) => boolean;
    let moving!: () => void;
    const moveStarted = new Promise<void>((resolve) => {
      moving = resolve;
    });
    chooser.shouldSwitch = (uri) => {
      const yes = asked(uri);
      if (yes) moving();
      return yes;
    };
    let cancelled = 0;
    chooser.reportSwitchCancelled = () => {
      cancelled++;
    };
    const ha = client('failback-called-off', [], {
      servers: undefined,
      chooser,
      failbackCheckMs: 20,
      heartbeat: false,
    });
    await ha.connectAndLogon();
    old.freeze(); // the move waits for the old server to confirm its acks: disconnect() comes first
    cleanups.push(async () => old.thaw());
    moveTo(preferred.tcpUri('json'));
    await moveStarted;
    await ha.disconnect();
    expect(cancelled).toBe(1);
    await ha.connectAndLogon(); // an ordinary attempt, reported as such
    expect(ha.uri).toBe(preferred.tcpUri('json'));
    expect(cancelled).toBe(1);
  });

  it('stops an attempt under way when disconnect() is called, leaving no connection behind', async () => {
    const server = await startTestServer({});
    cleanups.push(() => server.close());
    const { transport: slow, connectStarted, letConnect } = gatedTransport();
    const ha = client('stop-attempt', [server.tcpUri('json')], { transport: slow });
    const states: string[] = [];
    ha.onStateChange((e) => states.push(e.state));
    const attempt = ha.connectAndLogon().catch((e: unknown) => e);
    await connectStarted;
    const stopped = ha.disconnect();
    letConnect();
    await stopped;
    expect(DisconnectedError.isInstance(await attempt)).toBe(true);
    expect(ha.client.isConnected).toBe(false);
    expect(states).not.toContain('LoggedOn');
    expect(states.at(-1)).toBe('Shutdown');
  });

  it('keeps only the newest maxQueue events for a states() consumer that is behind, and says how many it dropped', async () => {
    const server = await startTestServer({});
    cleanups.push(() => server.close());
    const ha = client('states-bounded', [server.tcpUri('json')], { heartbeat: false });
    const all: HAStateEvent[] = [];
    ha.onStateChange((e) => all.push(e));
    const behind = ha.states({ maxQueue: 4 }); // not iterated until the end
    await ha.connectAndLogon();
    for (let i = 0; i < 2; i++) {
      const recovered = stateWhere(ha, (e) => e.state === 'Resubscribed');
      ha.client.abort(new DisconnectedError('dropped by the server'));
      await recovered;
    }
    await ha.disconnect();

    const read: HAStateEvent[] = [];
    for await (const e of behind) read.push(e);
    expect(all.length).toBeGreaterThan(4);
    expect(read.map((e) => e.state)).toEqual(all.slice(-4).map((e) => e.state));
    expect(read.map((e) => e.dropped)).toEqual([all.length - 4, undefined, undefined, undefined]);
    expect(read.at(-1)?.state).toBe('Shutdown');
    expect(all.some((e) => e.dropped !== undefined)).toBe(false); // listeners see every event
    expect(() => ha.states({ maxQueue: 0 })).toThrow(/maxQueue/);
  });

  it('stops reconnecting when the signal of connectAndLogon() aborts between attempts, and can connect again', async () => {
    const server = await startTestServer({});
    cleanups.push(() => server.close());
    const base = nodeTransport();
    let refuse = true;
    const transport: Transport = {
      schemes: base.schemes,
      connect: async (uri, handlers, options) => {
        if (refuse) throw new ConnectionError('connection refused');
        return base.connect(uri, handlers, options);
      },
    };
    // The wait between attempts runs on timers the test can see.
    const BETWEEN_ATTEMPTS_MS = 60_000;
    const waits = new Set<unknown>();
    const environment = {
      ...defaultEnvironment,
      setTimeout: (fn: () => void, ms: number) => {
        const handle = defaultEnvironment.setTimeout(() => {
          waits.delete(handle);
          fn();
        }, ms);
        if (ms === BETWEEN_ATTEMPTS_MS) waits.add(handle);
        return handle;
      },
      clearTimeout: (handle: TimerHandle) => {
        waits.delete(handle);
        defaultEnvironment.clearTimeout(handle);
      },
    };
    let askedToWait!: () => void;
    const waiting = new Promise<void>((resolve) => {
      askedToWait = resolve;
    });
    let attempts = 0;
    const delay: ReconnectDelayStrategy = {
      getConnectWaitDuration: () => {
        if (++attempts !== 2) return 0;
        askedToWait();
        return BETWEEN_ATTEMPTS_MS;
      },
      reset: () => {},
    };
    const ha = client('abort-connect-wait', [server.tcpUri('json')], { transport, delay, environment });
    const events: HAStateEvent[] = [];
    ha.onStateChange((e) => events.push(e));
    const controller = new AbortController();
    const connecting = ha.connectAndLogon({ signal: controller.signal }).catch((e: unknown) => e);
    await waiting; // the first attempt failed; the loop now waits a minute
    controller.abort();
    const error = await connecting;
    expect(AbortError.isInstance(error)).toBe(true);
    expect(waits.size).toBe(0); // the wait was cleared, not left to start another attempt
    expect(events.at(-1)?.state).toBe('Disconnected');
    expect(events.at(-1)?.reason).toMatch(/connectAndLogon\(\) aborted/);
    expect(ha.state).toBe('Disconnected');

    refuse = false;
    await ha.connectAndLogon();
    expect(ha.isReady).toBe(true);
    expect(attempts).toBe(3); // one more attempt, made by the second connectAndLogon()
  });

  it('closes the connection attempt under way when the signal of connectAndLogon() aborts; after success it does nothing', async () => {
    const server = await startTestServer({});
    cleanups.push(() => server.close());
    const gated = gatedTransport();
    const { connectStarted, letConnect } = gated;
    const ha = client('abort-connect-attempt', [server.tcpUri('json')], { transport: gated.transport });
    cleanups.push(async () => letConnect());
    const events: HAStateEvent[] = [];
    ha.onStateChange((e) => events.push(e));
    const controller = new AbortController();
    const attempt = ha.connectAndLogon({ signal: controller.signal }).catch((e: unknown) => e);
    await connectStarted;
    controller.abort();
    expect(AbortError.isInstance(await attempt)).toBe(true);
    expect(events.map((e) => e.state)).toEqual(['Disconnected']);
    letConnect(); // the aborted attempt's connect returns now, and is closed

    const again = new AbortController();
    await ha.connectAndLogon({ signal: again.signal });
    expect(gated.connects).toBe(2); // the aborted attempt did not go on to log on
    expect(events.map((e) => e.state).filter((s) => s === 'LoggedOn')).toHaveLength(1);
    again.abort(); // too late: the client is connected and stays so
    await ha.flush();
    expect(ha.isReady).toBe(true);
    expect(events.at(-1)?.state).toBe('Resubscribed');
  });

  it('refuses heartbeat settings the Client would refuse when it is built (each attempt failed after its logon, and reconnected for ever)', () => {
    const build = (heartbeat: HAClientOptions['heartbeat']) =>
      new HAClient('bad-heartbeat', {
        transport: nodeTransport(),
        servers: ['tcp://127.0.0.1:9/amps/json'],
        heartbeat,
      });
    for (const heartbeat of [
      { intervalS: 5, timeoutS: 2 },
      { intervalS: 0 },
      { intervalS: Number.NaN },
      { intervalS: '5' as unknown as number },
      { intervalS: 1, timeoutS: 2 ** 31 },
    ]) {
      expect(() => build(heartbeat), JSON.stringify(heartbeat)).toThrow(InvalidOptionsError);
    }
    expect(() => build({ intervalS: 0.2 })).not.toThrow();
    expect(() => build(false)).not.toThrow();
  });

  it('refuses timeouts setTimeout cannot wait, and a zero fail-back interval, when it is built (not on every attempt)', () => {
    const build = (options: Partial<HAClientOptions>) =>
      new HAClient('bad-timeouts', {
        transport: nodeTransport(),
        servers: ['tcp://127.0.0.1:9/amps/json'],
        ...options,
      });
    for (const options of [
      { connectTimeoutMs: 0 },
      { connectTimeoutMs: 2 ** 31 },
      { resubscriptionTimeoutMs: Number.NaN },
      { resubscriptionTimeoutMs: -1 },
      { failbackCheckMs: 0 },
      { failbackCheckMs: '1000' as unknown as number },
      { commandTimeoutMs: 2 ** 31 },
    ]) {
      expect(() => build(options), JSON.stringify(options)).toThrow(InvalidOptionsError);
    }
    expect(() =>
      build({ connectTimeoutMs: 1, resubscriptionTimeoutMs: 0, failbackCheckMs: 2 ** 31 - 1 }),
    ).not.toThrow();
  });

  it('refuses a connectAndLogon() signal that is not an AbortSignal before it starts connecting', async () => {
    const gated = gatedTransport();
    const ha = client('bad-signal', ['tcp://127.0.0.1:9/amps/json'], { transport: gated.transport });
    cleanups.push(async () => gated.letConnect());
    const events: HAStateEvent[] = [];
    ha.onStateChange((e) => events.push(e));
    await expect(ha.connectAndLogon({ signal: {} as AbortSignal })).rejects.toThrow(InvalidOptionsError);
    expect(gated.connects).toBe(0);
    expect(events).toEqual([]);
  });

  it('refuses a flush or execute ack type the server never sends at once, without starting to connect', async () => {
    const gated = gatedTransport();
    const ha = client('bad-ack-type', ['tcp://127.0.0.1:9/amps/json'], { transport: gated.transport });
    cleanups.push(async () => gated.letConnect());
    await expect(ha.flush('bogus' as never)).rejects.toThrow(
      'flush waits for processed, completed or persisted, got bogus',
    );
    await expect(ha.execute({ command: 'flush' }, { waitFor: 'done' as never })).rejects.toThrow(InvalidOptionsError);
    expect(gated.connects).toBe(0);
  });

  it('holds one connection and no more timers after 12 failovers than after one; disconnect() leaves none', async () => {
    const c = await cluster(2);
    const { held, transport, environment } = holdings();
    const ha = client('leaks-1', c.tcpUris('json'), { transport, environment });
    const sub = collector(ha, 'leaks');
    await ha.connectAndLogon();
    await sub.subscription.ready;
    let timersAfterFirst = 0;
    for (const round of range(1, 12)) {
      const recovered = stateWhere(ha, (e) => e.state === 'Resubscribed');
      const killed = serverOf(c, ha);
      await killed.kill();
      await recovered;
      await killed.restart();
      await c.linked();
      ha.publish('leaks', JSON.stringify({ n: round }));
      await sub.until(round);
      await ha.publishFlush(5000);
      expect(held.connections, `connections after failover ${round}`).toBe(1);
      if (round === 1) timersAfterFirst = held.timers();
      // A timer left behind by each failover would show here as one more per round.
      else expect(held.timers(), `timers after failover ${round}`).toBeLessThanOrEqual(timersAfterFirst + 1);
    }
    expect(sub.seen).toEqual(range(1, 12));
    await ha.disconnect();
    expect(held.connections).toBe(0);
    expect(held.timers()).toBe(0);
  });

  it('starts a fresh backoff sweep when connectAndLogon() follows disconnect(): the first attempt goes at once', async () => {
    const server = await startTestServer({});
    cleanups.push(() => server.close());
    const calls: string[] = [];
    let sweep = 0;
    const delay: ReconnectDelayStrategy = {
      getConnectWaitDuration: () => {
        calls.push(`wait ${sweep}`);
        return sweep++ === 0 ? 0 : 60_000; // anything but the first of a sweep would hold the test up
      },
      reset: () => {
        calls.push('reset');
        sweep = 0;
      },
    };
    const ha = client('fresh-sweep', [server.tcpUri('json')], { delay });
    await ha.connectAndLogon();
    await ha.disconnect();
    await ha.connectAndLogon();
    expect(calls.slice(-2)).toEqual(['reset', 'wait 0']);
  });

  it('ends in Shutdown and stops reconnecting after disconnect()', async () => {
    const c = await cluster(2);
    const ha = client('shutdown-1', c.tcpUris('json'));
    const states: string[] = [];
    const iterated = (async () => {
      for await (const e of ha.states()) states.push(e.state);
    })();
    await ha.connectAndLogon();
    await ha.disconnect();
    await iterated;
    expect(states.at(-1)).toBe('Shutdown');
    expect(ha.isReady).toBe(false);
    expect(() => ha.publish('x', '{}')).toThrow(/disconnected/);
  });
});
