/**
 * HAClient against replicated test brokers (issue 5):
 * - failover: a 3-broker sync cluster; a publisher and a bookmark subscriber on HAClient with the
 *   default plugins (round-robin over `servers`, `recommendedBackoff()`), both on the active broker.
 *   Each round kills the subscriber's broker and times until the subscriber's callback gets its
 *   first message through the next one, then restarts the killed broker and waits for the cluster
 *   to be linked again.
 * - half-open: the subscriber's broker is frozen (sockets open, silent); time until the client
 *   declares it dead (`Disconnected`) with heartbeat 1 s / timeout 2 s.
 * - resubscribe: 500 subscriptions on brokers 10 ms away (fault proxies in this process); time from
 *   the kill of the client's broker to `Resubscribed` on the next, resubscribing up to 64 at a time
 *   (the default) against one at a time.
 * - publish throughput: the default memory publish store (persisted acks, every message kept until
 *   acked), with one ack per message and with conflated acks, and the file publish store
 *   (`@amps-ts/store-file`, conflated acks), against fire-and-forget (`publishStore: false`), on
 *   one broker.
 * - delivery: a bookmark subscription's replay, pre-encoded and sent as fast as the connection
 *   takes it by the `client` group's peer (not a broker: the broker would be the bottleneck),
 *   delivered to a callback through HAClient with its memory bookmark store (each message logged,
 *   checked for a duplicate, discarded once handled), with the file bookmark store
 *   (`@amps-ts/store-file`) and without one, against the Client.
 * Brokers run in a child process (see `../ha/cluster-process.ts` for why).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Bookmarks, Client, ConnectionState } from '@amps-ts/core-protocol';
import { HAClient, type HAStateEvent, MemorySubscriptionManager } from '@amps-ts/ha-client';
import { FileBookmarkStore, FilePublishStore } from '@amps-ts/store-file';
import { startFaultProxy } from '@amps-ts/test-server';
import { nodeTransport } from '@amps-ts/transport-node';
import { CheckingSubscriber, percentile, SteadyPublisher, tenth } from '../ha/clients.js';
import { ClusterProcess } from '../ha/cluster-process.js';
import { type BenchContext, type BenchGroup, type BenchResult, unlessStalled } from '../runner.js';
import { compare, Peer, TOPIC } from './client.js';

/** A failover that takes longer than this is reported as this long, and ends the rounds. */
const ROUND_TIMEOUT_MS = 10_000;
/** Messages the subscriber must receive on its new broker before the next fault: steady state. */
const SETTLE_MESSAGES = 50;
const HEARTBEAT = { intervalS: 1, timeoutS: 2 };
const WARM_UP_FAILOVERS = 3;
const CONFLATION = '10ms';

const recoveryStates = [
  ConnectionState.Disconnected,
  ConnectionState.Connected,
  ConnectionState.LoggedOn,
  ConnectionState.HeartbeatInitiated,
  ConnectionState.PublishReplayed,
  ConnectionState.Resubscribed,
] as const;

interface Pair {
  publisher: SteadyPublisher;
  subscriber: CheckingSubscriber;
  close(): Promise<void>;
}

/** A steady publisher and a checking subscriber, both on HAClient with the same server list. */
async function startPair(name: string, servers: readonly string[], heartbeat?: typeof HEARTBEAT): Promise<Pair> {
  const topic = `bench-${name}`;
  const options = { transport: nodeTransport(), servers, ...(heartbeat ? { heartbeat } : {}) };
  const publisherClient = new HAClient(`bench-${name}-publisher`, options);
  const subscriber = new CheckingSubscriber(`bench-${name}-subscriber`, topic, options);
  await Promise.all([publisherClient.connectAndLogon(), subscriber.client.connectAndLogon()]);
  const publisher = new SteadyPublisher(publisherClient, topic);
  if ((await subscriber.messages(SETTLE_MESSAGES, ROUND_TIMEOUT_MS)) === undefined) {
    throw new Error(`${name}: no messages flowing after connecting`);
  }
  return {
    publisher,
    subscriber,
    async close() {
      publisher.stop();
      await Promise.all([publisherClient.disconnect(), subscriber.client.disconnect()]);
    },
  };
}

interface Integrity {
  published: number;
  received: number;
  /** Never delivered (gaps included). */
  missing: number;
  duplicates: number;
}

/** Stops publishing and waits for the subscriber to catch up; returns what was lost or doubled. */
async function integrity(pair: Pair): Promise<Integrity> {
  pair.publisher.stop();
  const published = pair.publisher.published;
  await pair.publisher.client.publishFlush(ROUND_TIMEOUT_MS).catch(() => {});
  if (pair.subscriber.last < published) {
    await pair.subscriber.nextMessage(() => pair.subscriber.last >= published, ROUND_TIMEOUT_MS).promise;
  }
  return {
    published,
    received: pair.subscriber.received,
    missing: Math.max(0, published - pair.subscriber.last) + pair.subscriber.gaps,
    duplicates: pair.subscriber.duplicates,
  };
}

/** The broker index the subscriber is on. */
function brokerOf(pair: Pair, servers: readonly string[]): number {
  const index = servers.indexOf(pair.subscriber.client.uri ?? '');
  if (index < 0) throw new Error(`the subscriber is not on a known broker (${pair.subscriber.client.uri})`);
  return index;
}

async function failover(context: BenchContext, cluster: ClusterProcess): Promise<BenchResult[]> {
  const rounds = context.quick ? 10 : 50;
  const servers = cluster.uris;
  const pair = await startPair('failover', servers);
  const { subscriber } = pair;
  const times: number[] = [];
  const phases = new Map<ConnectionState, number[]>(recoveryStates.map((s) => [s, []]));
  let worst: { ms: number; timeline: string[] } | undefined;
  let timedOut = false;
  let publisherStates: Array<{ at: number; event: HAStateEvent }> = [];
  pair.publisher.client.onStateChange((event) => publisherStates.push({ at: performance.now(), event }));

  /** One failover: kill the subscriber's broker, time the first message through the next one, heal. */
  const round = async (): Promise<{ ms: number; states: Record<string, number>; timeline: string[] } | undefined> => {
    const index = brokerOf(pair, servers);
    const killedUri = servers[index];
    subscriber.states = [];
    publisherStates = [];
    const first = subscriber.nextMessage(
      () => subscriber.client.uri !== killedUri && subscriber.states.some((s) => s.state === 'Disconnected'),
      ROUND_TIMEOUT_MS,
    );
    const killedAt = performance.now();
    const killed = cluster.kill(index);
    const at = await first.promise;
    await killed;
    const states: Record<string, number> = {};
    for (const s of subscriber.states) states[s.state] ??= tenth(s.at - killedAt);
    // Both clients' state changes and the first message, for the slowest round's details.
    const timeline = [
      ...subscriber.states.map(({ at, event }) => ({ at, who: 'subscriber', event })),
      ...publisherStates.map(({ at, event }) => ({ at, who: 'publisher', event })),
      ...(at === undefined ? [] : [{ at, who: 'subscriber', event: undefined }]),
    ]
      .sort((a, b) => a.at - b.at)
      .map(({ at, who, event }) => {
        const what = event
          ? `${event.state} ${event.uri ?? ''} attempt ${event.attempt}${event.reason ? ` (${event.reason})` : ''}`
          : 'first message via the next broker';
        return `+${tenth(at - killedAt)} ms ${who} ${what}`;
      });
    await cluster.restart(index);
    await cluster.linked();
    if (at === undefined || (await subscriber.messages(SETTLE_MESSAGES, ROUND_TIMEOUT_MS)) === undefined) {
      return undefined;
    }
    return { ms: at - killedAt, states, timeline };
  };

  try {
    // Not counted: the first failovers of a process run cold code (JIT) on both sides.
    for (let i = 0; i < WARM_UP_FAILOVERS; i++) await round();
    for (let n = 1; n <= rounds && !timedOut; n++) {
      const result = await round();
      if (result === undefined) {
        timedOut = true;
        times.push(ROUND_TIMEOUT_MS);
      } else {
        times.push(result.ms);
        for (const state of recoveryStates) {
          const at = result.states[state];
          if (at !== undefined) phases.get(state)?.push(at);
        }
        if (!worst || result.ms > worst.ms) worst = { ms: tenth(result.ms), timeline: result.timeline };
      }
      if (n % 10 === 0 || timedOut) {
        context.progress(`failover ${n}/${rounds}: p50 so far ${tenth(percentile(times, 50))} ms`);
      }
    }
    const checked = await integrity(pair);
    // Median time from the kill to each state of the subscriber's recovery: where the time goes.
    const breakdown = Object.fromEntries(
      [...phases].map(([state, values]) => [`${state} p50 ms`, tenth(percentile(values, 50))]),
    );
    const details = {
      failovers: times.length,
      warmUp: WARM_UP_FAILOVERS,
      timedOut,
      ...checked,
      ...breakdown,
      timesMs: times.map(tenth),
      worst,
    };
    return [
      {
        name: 'failover, kill to first message via next broker: p50',
        value: tenth(percentile(times, 50)),
        unit: 'ms',
        target: { max: 50 },
        details,
      },
      {
        // Nearest rank: with 50 rounds, p99 is the slowest one.
        name: 'failover, kill to first message via next broker: p99',
        value: tenth(percentile(times, 99)),
        unit: 'ms',
        target: { max: 150 },
      },
      { name: 'failover, kill to first message via next broker: max', value: tenth(Math.max(...times)), unit: 'ms' },
      {
        name: 'failover: messages missing or duplicated',
        value: checked.missing + checked.duplicates,
        unit: 'messages',
        target: { max: 0 },
      },
    ];
  } finally {
    await pair.close();
  }
}

async function halfOpen(context: BenchContext, cluster: ClusterProcess): Promise<BenchResult[]> {
  const repetitions = context.quick ? 1 : 3;
  const servers = cluster.uris;
  const pair = await startPair('half-open', servers, HEARTBEAT);
  const { subscriber } = pair;
  const detected: number[] = [];
  const recovered: number[] = [];
  try {
    for (let rep = 1; rep <= repetitions; rep++) {
      const index = brokerOf(pair, servers);
      const frozenUri = servers[index];
      const disconnected = subscriber.nextState(ConnectionState.Disconnected, ROUND_TIMEOUT_MS);
      const first = subscriber.nextMessage(() => subscriber.client.uri !== frozenUri, ROUND_TIMEOUT_MS);
      const frozenAt = performance.now();
      await cluster.freeze(index);
      const at = await disconnected;
      const firstAt = await first.promise;
      detected.push(at === undefined ? ROUND_TIMEOUT_MS : at - frozenAt);
      recovered.push(firstAt === undefined ? ROUND_TIMEOUT_MS : firstAt - frozenAt);
      context.progress(`half-open ${rep}/${repetitions}: dead after ${Math.round(detected.at(-1) as number)} ms`);
      await cluster.thaw(index);
      await cluster.linked();
      if ((await subscriber.messages(SETTLE_MESSAGES, ROUND_TIMEOUT_MS)) === undefined) break;
    }
    const checked = await integrity(pair);
    const timeoutMs = HEARTBEAT.timeoutS * 1000;
    return [
      {
        name: `half-open (freeze), heartbeat ${HEARTBEAT.intervalS} s / timeout ${HEARTBEAT.timeoutS} s: detection, max`,
        value: tenth(Math.max(...detected)),
        unit: 'ms',
        target: { max: timeoutMs + 250 },
        details: { repetitions: detected.length, detectedMs: detected.map(tenth) },
      },
      {
        name: 'half-open (freeze): freeze to first message via next broker, max',
        value: tenth(Math.max(...recovered)),
        unit: 'ms',
        details: { recoveredMs: recovered.map(tenth) },
      },
      {
        name: 'half-open: messages missing or duplicated',
        value: checked.missing + checked.duplicates,
        unit: 'messages',
        target: { max: 0 },
        details: { ...checked },
      },
    ];
  } finally {
    await pair.close();
  }
}

const BODY = JSON.stringify({ id: 1, sym: 'ABC', qty: 100, px: 101.25, note: 'x'.repeat(48) }); // 100 bytes

/** Publishes `count` messages (waiting when the client says so), then waits until the broker has persisted them all. */
async function publishAll(client: HAClient, count: number): Promise<number> {
  const start = performance.now();
  for (let i = 0; i < count; i++) {
    const wait = client.publish('bench-throughput', BODY);
    if (wait) await wait;
  }
  await client.publishFlush(60_000);
  return count / ((performance.now() - start) / 1000);
}

async function throughput(context: BenchContext): Promise<BenchResult[]> {
  const count = context.quick ? 20_000 : 100_000;
  const rounds = context.quick ? 1 : 3;
  const broker = await ClusterProcess.start({ count: 1, name: 'bench-throughput', noWebSocket: true });
  const transport = nodeTransport();
  const servers = broker.uris;
  const dir = mkdtempSync(join(tmpdir(), 'amps-ts-bench-'));
  const fileStore = new FilePublishStore(join(dir, 'publisher.store'));
  const sides = [
    {
      name: 'store',
      // One persisted ack per message (the test broker conflates them every second by default, as AMPS does).
      client: new HAClient('bench-throughput-store', { transport, servers, logon: { options: 'ack_conflation=0' } }),
    },
    {
      // AMPS's advice for fast publishers: one persisted ack per interval instead of one per message.
      name: 'store, conflated acks',
      client: new HAClient('bench-throughput-conflated', {
        transport,
        servers,
        logon: { options: `ack_conflation=${CONFLATION}` },
      }),
    },
    {
      // Every publish written to a file before it is sent (a write call each, no fsync).
      name: 'file store, conflated acks',
      client: new HAClient('bench-throughput-file', {
        transport,
        servers,
        publishStore: fileStore,
        logon: { options: `ack_conflation=${CONFLATION}` },
      }),
    },
    {
      name: 'fire-and-forget',
      client: new HAClient('bench-throughput-ff', { transport, servers, publishStore: false }),
    },
  ];
  const best = new Map(sides.map((side) => [side.name, 0]));
  try {
    await Promise.all(sides.map((side) => side.client.connectAndLogon()));
    // Warm-up, then the best of rounds in rotating order (a run right after another is favoured).
    for (const side of sides) await publishAll(side.client, count / 5);
    for (let round = 0; round < rounds; round++) {
      for (let i = 0; i < sides.length; i++) {
        const side = sides[(round + i) % sides.length] as (typeof sides)[number];
        best.set(side.name, Math.max(best.get(side.name) as number, await publishAll(side.client, count)));
      }
      context.progress(
        `publish round ${round + 1}/${rounds}: ${[...best].map(([name, rate]) => `${name} ${Math.round(rate)}/s`).join(', ')}`,
      );
    }
    const baseline = { name: 'fire-and-forget', value: best.get('fire-and-forget') as number };
    const details = {
      messages: count,
      bodyBytes: BODY.length,
      rounds,
      note: 'best of rounds; each ends when publishFlush() resolves',
    };
    return [
      {
        name: `publish ${count.toLocaleString('en-US')} msgs, memory publish store (a persisted ack per message)`,
        value: best.get('store') as number,
        unit: 'msgs/s',
        baseline,
        details,
      },
      {
        name: `publish ${count.toLocaleString('en-US')} msgs, memory publish store, acks conflated (${CONFLATION})`,
        value: best.get('store, conflated acks') as number,
        unit: 'msgs/s',
        baseline,
      },
      {
        name: `publish ${count.toLocaleString('en-US')} msgs, file publish store (@amps-ts/store-file), acks conflated (${CONFLATION})`,
        value: best.get('file store, conflated acks') as number,
        unit: 'msgs/s',
        baseline,
      },
    ];
  } finally {
    await Promise.all(sides.map((side) => side.client.disconnect()));
    fileStore.close();
    rmSync(dir, { recursive: true, force: true });
    await broker.close();
  }
}

type DeliverySide = 'Client' | 'HAClient' | 'HAClient, no bookmark store' | 'HAClient, file bookmark store';

/**
 * Seconds from subscribe until `count` deliveries of a bookmark subscription's replay (the peer of
 * the `client` group, in a child process, sends them as fast as the connection takes them) have
 * reached the callback.
 */
async function replayDelivery(peer: Peer, side: DeliverySide, count: number): Promise<number> {
  const uri = peer.uri('tcp');
  const transport = nodeTransport();
  let seen = 0;
  let finish!: () => void;
  const finished = new Promise<void>((resolve) => {
    finish = resolve;
  });
  // A fixed sub id: the peer encodes the replay once for it.
  const options = {
    subId: 'replay',
    bookmark: Bookmarks.EPOCH,
    onMessage: () => {
      if (++seen === count) finish();
    },
  };
  const dir = mkdtempSync(join(tmpdir(), 'amps-ts-bench-'));
  const bookmarkStore =
    side === 'HAClient, no bookmark store'
      ? false
      : side === 'HAClient, file bookmark store'
        ? new FileBookmarkStore(join(dir, 'subscriber.bookmarks'))
        : undefined;
  // The peer sends no heartbeats.
  const client =
    side === 'Client'
      ? new Client('source-replay-client', { transport })
      : new HAClient('source-replay-ha', { transport, servers: [uri], heartbeat: false, bookmarkStore });
  await (client instanceof Client ? client.connectAndLogon(uri) : client.connectAndLogon());
  await peer.expect(count);
  const start = performance.now();
  client.subscribe(TOPIC, options);
  await unlessStalled(finished, `bookmark replay to the ${side}`, count, () => seen);
  const seconds = (performance.now() - start) / 1000;
  await client.disconnect();
  if (bookmarkStore) bookmarkStore.close();
  rmSync(dir, { recursive: true, force: true });
  return seconds;
}

async function delivery(context: BenchContext): Promise<BenchResult[]> {
  const count = context.quick ? 50_000 : 500_000;
  const rounds = context.quick ? 1 : 4;
  const peer = await Peer.start();
  try {
    const sides: DeliverySide[] = [
      'HAClient',
      'HAClient, no bookmark store',
      'HAClient, file bookmark store',
      'Client',
    ];
    const [ha, haNoStore, haFile, client] = await compare(
      rounds,
      sides.map((side) => () => replayDelivery(peer, side, count)),
    );
    const baseline = { name: 'Client, the same subscription', value: count / (client as number) };
    const details = { messages: count, rounds, note: 'best of rounds, after a warm-up of each; TCP' };
    return [
      {
        name: 'bookmark replay delivered to a callback: HAClient, memory bookmark store (duplicate check, auto-discard)',
        value: count / (ha as number),
        unit: 'msgs/s',
        baseline,
        details,
      },
      {
        name: 'bookmark replay delivered to a callback: HAClient, no bookmark store',
        value: count / (haNoStore as number),
        unit: 'msgs/s',
        baseline,
      },
      {
        name: 'bookmark replay delivered to a callback: HAClient, file bookmark store (@amps-ts/store-file, points written once a turn)',
        value: count / (haFile as number),
        unit: 'msgs/s',
        baseline,
      },
    ];
  } finally {
    await peer.close();
  }
}

/** Subscriptions re-entered in the resubscribe benchmark, and the one-way delay to the brokers. */
const MANY_SUBSCRIPTIONS = 500;
const ONE_WAY_MS = 5;

/**
 * Recovery of many subscriptions over a link with a round trip: from the kill of the broker to
 * `Resubscribed` on the next one, resubscribing up to 64 at a time (the default) against one at a
 * time (`maxInFlight: 1`). Fault proxies in this process add the delay.
 */
async function resubscribe(context: BenchContext, cluster: ClusterProcess): Promise<BenchResult[]> {
  const rounds = context.quick ? 1 : 3;
  const proxies = await Promise.all(cluster.uris.map((uri) => startFaultProxy({ target: uri })));
  for (const proxy of proxies) proxy.latency(ONE_WAY_MS);
  const servers = proxies.map((proxy) => proxy.tcpUri());
  /** ms from the kill to `Resubscribed` (or the round timeout), best of the rounds. */
  const recover = async (maxInFlight: number): Promise<number> => {
    const client = new HAClient(`bench-resubscribe-${maxInFlight}`, {
      transport: nodeTransport(),
      servers,
      subscriptionManager: new MemorySubscriptionManager({ maxInFlight }),
    });
    let best = ROUND_TIMEOUT_MS;
    try {
      await client.connectAndLogon();
      const subscriptions = Array.from({ length: MANY_SUBSCRIPTIONS }, (_, i) =>
        client.subscribe(`bench-many-${i}`, { onMessage: () => {} }),
      );
      await Promise.all(subscriptions.map((s) => s.ready));
      for (let round = 1; round <= rounds; round++) {
        const index = servers.indexOf(client.uri ?? '');
        const resubscribed = new Promise<number>((resolve) => {
          const timer = setTimeout(() => resolve(performance.now()), ROUND_TIMEOUT_MS);
          const stop = client.onStateChange((e) => {
            if (e.state !== ConnectionState.Resubscribed) return;
            clearTimeout(timer);
            stop();
            resolve(performance.now());
          });
        });
        const killedAt = performance.now();
        await cluster.kill(index);
        const ms = (await resubscribed) - killedAt;
        best = Math.min(best, ms);
        context.progress(`resubscribe ${MANY_SUBSCRIPTIONS}, maxInFlight ${maxInFlight}: ${Math.round(ms)} ms`);
        await cluster.restart(index);
        await cluster.linked();
      }
    } finally {
      await client.disconnect();
    }
    return best;
  };
  try {
    const oneAtATime = await recover(1);
    const windowed = await recover(64);
    return [
      {
        name: `failover with ${MANY_SUBSCRIPTIONS} subscriptions, ${2 * ONE_WAY_MS} ms round trip: kill to Resubscribed`,
        value: tenth(windowed),
        unit: 'ms',
        baseline: { name: 'one resubscribe at a time (maxInFlight 1)', value: tenth(oneAtATime) },
        details: { rounds, note: 'best of rounds; 64 in flight is the default' },
      },
    ];
  } finally {
    await Promise.all(proxies.map((proxy) => proxy.close()));
  }
}

const group: BenchGroup = {
  name: 'ha',
  description:
    'HAClient: failover time (3-broker sync cluster), half-open detection, resubscribing many subscriptions, publish store throughput vs fire-and-forget, bookmark replay delivery vs Client',
  async run(context) {
    const results: BenchResult[] = [];
    const cluster = await ClusterProcess.start({ count: 3, replication: 'sync', name: 'bench-ha', noWebSocket: true });
    try {
      context.progress('failover: kill the subscriber’s broker, time the first message through the next one');
      results.push(...(await failover(context, cluster)));
      context.progress('half-open: freeze the subscriber’s broker, time the heartbeat detection');
      results.push(...(await halfOpen(context, cluster)));
      context.progress(
        `resubscribe: ${MANY_SUBSCRIPTIONS} subscriptions, ${2 * ONE_WAY_MS} ms away, 64 at a time vs one`,
      );
      results.push(...(await resubscribe(context, cluster)));
    } finally {
      await cluster.close();
    }
    context.progress('publish throughput: memory and file publish stores vs fire-and-forget');
    results.push(...(await throughput(context)));
    context.progress('delivery: a bookmark replay through HAClient (memory, file and no bookmark store) vs Client');
    results.push(...(await delivery(context)));
    return results;
  },
};

export default group;
