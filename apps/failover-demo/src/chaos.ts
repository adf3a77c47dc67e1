/**
 * The chaos run behind `pnpm demo` and the CI chaos test: replicated brokers, publishers and a
 * bookmark subscriber on HAClient, and a seeded schedule that kills, freezes and restarts brokers
 * while messages flow. The verdict counts what the subscriber lost, saw twice or saw out of order.
 */
import { Bookmarks, type ConnectionState, seededRandom } from '@amps-ts/core-protocol';
import { HAClient, type HAStateEvent, MemoryPublishStore } from '@amps-ts/ha-client';
import { startTestCluster, type TestServer } from '@amps-ts/test-server';
import { nodeTransport } from '@amps-ts/transport-node';
import { DeliveryTally } from './tally.js';

export interface ChaosOptions {
  /** Seeds the chaos schedule (and nothing else): the same seed, the same schedule. */
  seed: number;
  /** How long the chaos lasts, in ms. */
  durationMs: number;
  /** Messages published per second. */
  rate: number;
  /** Replicated brokers. At least 2. */
  servers: number;
  /**
   * Topics the messages are spread over (message n goes to topic n mod topics), with one bookmark
   * subscription each: every failover then resubscribes them all. @default 1
   */
  topics?: number;
  /**
   * Publishers taking turns, each an HAClient with its own publish store starting on another
   * broker: the subscriber then de-duplicates and resumes per publisher, and the brokers log the
   * publishers' messages interleaved differently. @default 1
   */
  publishers?: number;
  /**
   * The subscriber pauses and resumes its subscriptions on a second seeded schedule, through the
   * chaos (every subscription is resumed before the end): whatever it does, each message must
   * still arrive once, in order. @default false
   */
  pausing?: boolean;
  /**
   * The subscriber's handler does a millisecond of asynchronous work per message, one message at a
   * time, with `maxQueue` 200: past about 1,000 messages/s (and in every replay after a failover)
   * it falls behind, and its bookmark subscriptions are paused on the server until it catches up.
   * @default false
   */
  slowConsumer?: boolean;
  /** Each publisher's publish store capacity, in messages. @default MemoryPublishStore's */
  publishStoreCapacity?: number;
  /** Live events, for the terminal display. */
  onEvent?: (event: ChaosEvent) => void;
}

/** `publisher` (or `publisher-1`, `publisher-2`, ... when there are several) and `subscriber`. */
export type ClientRole = string;

export type ChaosEvent =
  | { type: 'started'; at: number; servers: Array<{ name: string; uri: string }> }
  | { type: 'chaos'; at: number; action: ChaosAction; server: string; hits: ClientRole[] }
  | {
      type: 'state';
      at: number;
      client: ClientRole;
      state: ConnectionState;
      server: string | undefined;
      reason?: string;
    }
  | {
      type: 'failover';
      at: number;
      client: ClientRole;
      from: string | undefined;
      to: string | undefined;
      durationMs: number;
    }
  | {
      type: 'progress';
      at: number;
      published: number;
      received: number;
      servers: Record<string, ServerStatus>;
      on: Record<ClientRole, string | undefined>;
    }
  | { type: 'draining'; at: number; published: number; received: number };

export type ChaosAction = 'kill' | 'freeze' | 'restart' | 'thaw';
export type ServerStatus = 'up' | 'down' | 'frozen';

export interface ChaosReport {
  seed: number;
  durationMs: number;
  servers: number;
  topics: number;
  publishers: number;
  published: number;
  received: number;
  lost: number;
  duplicated: number;
  outOfOrder: number;
  /** Messages delivered to the subscription of a topic they were not published to. */
  misrouted: number;
  failovers: number;
  failoverP50Ms: number;
  failoverMaxMs: number;
  actions: Record<ChaosAction, number>;
  /**
   * With `pausing`: the subscriber's pause() and resume() calls, those that failed (the client
   * keeps the state even so), and the messages delivered to a subscription between the server's
   * ack to its pause and the call to resume it (there must be none).
   */
  pauses: { pause: number; resume: number; failed: number; deliveredWhilePaused: number };
  /** With `slowConsumer`: the most messages its handler had not finished at once. */
  maxBehind: number;
  ok: boolean;
}

function percentile(values: number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** After the chaos, how long the run waits for a message before it counts what is missing. */
const DRAIN_STALL_MS = 30_000;

/**
 * Once every message is in, how much longer the run listens before it counts: a message that
 * comes later (a duplicate from a replay still under way) must not go unseen. Twice the heartbeat
 * timeout, so a failover under way when the last message came has time to finish.
 */
const DRAIN_SETTLE_MS = 2000;

/** The slow consumer's `maxQueue`: past it, its subscriptions are paused on the server. */
const SLOW_CONSUMER_MAX_QUEUE = 200;

export async function runChaos(options: ChaosOptions): Promise<ChaosReport> {
  const { seed, durationMs, rate, onEvent } = options;
  const topics = options.topics ?? 1;
  const publisherCount = options.publishers ?? 1;
  if (options.servers < 2) throw new Error('chaos needs at least 2 servers');
  // No regex characters: a subscription to `orders.1` would also get `orders.10`.
  const topicOf = (k: number) => (topics === 1 ? 'orders' : `orders-${k}`);
  const random = seededRandom(seed);
  const t0 = performance.now();
  const now = () => performance.now() - t0;
  const emit = (event: ChaosEvent) => onEvent?.(event);

  // Persisted acks conflated every second, as AMPS sends them by default with a transaction log:
  // the publish store then holds, and after a failover replays, up to a second of publishes.
  const cluster = await startTestCluster({
    count: options.servers,
    replication: 'sync',
    persistedAckIntervalMs: 100,
    ackConflationMs: 1000,
  });
  const servers = cluster.servers;
  const names = servers.map((_, i) => String.fromCharCode(65 + i));
  const status = new Map<TestServer, ServerStatus>(servers.map((s) => [s, 'up']));
  const uriOf = new Map<string, string>(servers.map((s, i) => [s.tcpUri('json'), names[i] as string]));
  const common = {
    transport: nodeTransport(),
    heartbeat: { intervalS: 0.5, timeoutS: 1 },
    connectTimeoutMs: 1000,
  };
  const uris = servers.map((s) => s.tcpUri('json'));
  // Publisher i starts on broker i (round the list), the subscriber on the last one.
  const publishers = Array.from({ length: publisherCount }, (_, i) => {
    const name = publisherCount === 1 ? 'publisher' : `publisher-${i + 1}`;
    const start = i % uris.length;
    const servers = [...uris.slice(start), ...uris.slice(0, start)];
    const publishStore = new MemoryPublishStore({ capacity: options.publishStoreCapacity });
    return [name, new HAClient(`chaos-${name}`, { ...common, servers, publishStore })] as const;
  });
  const subscriber = new HAClient('chaos-subscriber', {
    ...common,
    servers: [...uris].reverse(),
    ...(options.slowConsumer ? { client: { maxQueue: SLOW_CONSUMER_MAX_QUEUE } } : {}),
  });
  const clients = new Map<ClientRole, HAClient>([...publishers, ['subscriber', subscriber]]);
  const roles = [...clients.keys()];
  let running = true;
  let progress: ReturnType<typeof setInterval> | undefined;

  // A run that fails (an onEvent that throws, a broker that cannot restart) still closes the
  // brokers and clients and stops publishing: the caller is a test runner, or the demo's process.
  try {
    emit({
      type: 'started',
      at: now(),
      servers: servers.map((s, i) => ({ name: names[i] as string, uri: s.tcpUri('json') })),
    });

    // Failover timing: from the chaos action that hit a client's server (or its disconnect) to recovery.
    const failovers: number[] = [];
    const hitAt = new Map<ClientRole, number>();
    /** The clients disconnected since they last recovered: a freeze thawed before that was ridden out. */
    const down = new Set<ClientRole>();
    const lastServer = new Map<ClientRole, string | undefined>();
    for (const [role, client] of clients) {
      client.onStateChange((e: HAStateEvent) => {
        const server = e.uri === undefined ? undefined : (uriOf.get(e.uri) ?? e.uri);
        emit({ type: 'state', at: now(), client: role, state: e.state, server, reason: e.reason });
        if (e.state === 'Disconnected') {
          down.add(role);
          if (!hitAt.has(role)) hitAt.set(role, now());
        }
        if (e.state === 'Resubscribed') {
          const start = hitAt.get(role);
          if (start !== undefined) {
            const durationMs = now() - start;
            failovers.push(durationMs);
            emit({ type: 'failover', at: now(), client: role, from: lastServer.get(role), to: server, durationMs });
          }
          hitAt.delete(role);
          down.delete(role);
          lastServer.set(role, server);
        }
      });
    }

    // The subscriber: every message exactly once, in order on each topic from each publisher
    // (AMPS orders a topic per publisher; two publishers' messages may interleave differently).
    const tally = new DeliveryTally();
    // With `slowConsumer`: the work, one message after the other, and how far it fell behind.
    let work = Promise.resolve();
    let behind = 0;
    let maxBehind = 0;
    // With `pausing`: the topics whose subscription the server has paused (its ack is in), until resume() is called.
    const paused = new Set<number>();
    const pauses = { pause: 0, resume: 0, failed: 0, deliveredWhilePaused: 0 };
    // Message n is published to topic n mod topics: on any other subscription it was misdelivered.
    let misrouted = 0;
    const subscriptions = Array.from({ length: topics }, (_, k) =>
      subscriber.subscribe(topicOf(k), {
        bookmark: Bookmarks.EPOCH,
        onMessage: (m) => {
          const { n } = m.json<{ n: number }>();
          if (n % topics !== k) misrouted++;
          tally.record(n, k * publisherCount + (n % publisherCount));
          if (paused.has(k)) pauses.deliveredWhilePaused++;
          if (!options.slowConsumer) return undefined;
          maxBehind = Math.max(maxBehind, ++behind);
          work = work.then(() => sleep(1)).then(() => void behind--);
          return work;
        },
      }),
    );

    await Promise.all([...clients.values()].map((c) => c.connectAndLogon()));
    await Promise.all(subscriptions.map((s) => s.ready));

    const actions: Record<ChaosAction, number> = { kill: 0, freeze: 0, restart: 0, thaw: 0 };
    let published = 0;

    const publishing = (async () => {
      const tickMs = 10;
      let due = 0;
      const start = performance.now();
      while (running) {
        const target = Math.floor(((performance.now() - start) / 1000) * rate);
        due = target - published;
        for (; due > 0 && running; due--) {
          published++;
          const [, publisher] = publishers[published % publisherCount] as (typeof publishers)[number];
          const wait = publisher.publish(topicOf(published % topics), `{"n":${published}}`);
          if (wait) await wait;
        }
        await sleep(tickMs);
      }
    })();
    // Awaited once the chaos is over: a publish that throws before then must not end the process.
    publishing.catch(() => {});

    // Pausing and resuming, on a schedule of its own: the chaos's does not depend on its timing.
    const pausing = (async () => {
      if (!options.pausing) return;
      const pauseRandom = seededRandom(seed ^ 0x5eed);
      const wanted = new Set<number>();
      while (running) {
        await sleep(100 + pauseRandom() * 600);
        if (!running) break;
        const k = Math.floor(pauseRandom() * topics);
        const subId = subscriptions[k]?.subId as string;
        const resume = wanted.delete(k);
        if (resume) paused.delete(k);
        else wanted.add(k);
        try {
          await (resume ? subscriber.resume(subId) : subscriber.pause(subId));
          pauses[resume ? 'resume' : 'pause']++;
          if (!resume) paused.add(k);
        } catch {
          // Timed out through a long outage: the client keeps the state and sends it after recovery.
          pauses.failed++;
        }
      }
    })();

    const progressEvent = (): ChaosEvent => ({
      type: 'progress',
      at: now(),
      published,
      received: tally.received,
      servers: Object.fromEntries(servers.map((s, i) => [names[i], status.get(s)])) as Record<string, ServerStatus>,
      on: Object.fromEntries(roles.map((r) => [r, uriOf.get(clients.get(r)?.uri ?? '')])),
    });
    progress = setInterval(() => emit(progressEvent()), 1000);

    const act = async (action: ChaosAction, server: TestServer) => {
      const name = names[servers.indexOf(server)] as string;
      const hits = roles.filter((r) => clients.get(r)?.uri === server.tcpUri('json'));
      if (action === 'kill' || action === 'freeze') for (const r of hits) if (!hitAt.has(r)) hitAt.set(r, now());
      emit({ type: 'chaos', at: now(), action, server: name, hits: [...hits] });
      actions[action]++;
      if (action === 'kill') {
        status.set(server, 'down');
        await server.kill();
      } else if (action === 'freeze') {
        status.set(server, 'frozen');
        server.freeze();
      } else if (action === 'restart') {
        await server.restart();
        status.set(server, 'up');
      } else {
        server.thaw();
        status.set(server, 'up');
        // Thawed before the heartbeat timeout: the clients on it stayed, there was no failover to time.
        for (const r of hits) if (!down.has(r)) hitAt.delete(r);
      }
    };

    const chaosEnd = performance.now() + durationMs;
    for (;;) {
      const wait = 300 + random() * 1200;
      const left = chaosEnd - performance.now();
      // The chaos ends on time: no action after the last full wait.
      if (wait >= left) {
        await sleep(Math.max(0, left));
        break;
      }
      await sleep(wait);
      const up = servers.filter((s) => status.get(s) === 'up');
      const disrupted = servers.filter((s) => status.get(s) !== 'up');
      const heal = disrupted.length > 0 && (up.length <= 1 || random() < 0.5);
      if (heal) {
        const server = disrupted[Math.floor(random() * disrupted.length)] as TestServer;
        await act(status.get(server) === 'down' ? 'restart' : 'thaw', server);
      } else if (up.length > 1) {
        // Prefer the brokers the clients are on: that is where failover happens.
        const active = up.filter((s) => [...clients.values()].some((c) => c.uri === s.tcpUri('json')));
        const pool = active.length > 0 && random() < 0.7 ? active : up;
        const server = pool[Math.floor(random() * pool.length)] as TestServer;
        await act(random() < 0.65 ? 'kill' : 'freeze', server);
      }
    }

    // Stop publishing, heal everything, and let every message arrive. Healed first: a publish
    // waiting for room in a full store waits for persisted acks, which wait for every broker.
    running = false;
    for (const server of servers) {
      if (status.get(server) === 'down') await act('restart', server);
      else if (status.get(server) === 'frozen') await act('thaw', server);
    }
    await Promise.all([publishing, pausing]);
    // Everything resumed, or what is paused would never arrive.
    paused.clear();
    if (options.pausing) await subscriber.resume(subscriptions.map((sub) => sub.subId));
    emit({ type: 'draining', at: now(), published, received: tally.received });
    await Promise.all(publishers.map(([, p]) => p.publishFlush(DRAIN_STALL_MS).catch(() => {})));
    // As long as messages keep coming (a slow consumer catches up at its own pace).
    let stalledSince = performance.now();
    for (let seen = tally.received; tally.received < published; await sleep(50)) {
      if (tally.received > seen) {
        seen = tally.received;
        stalledSince = performance.now();
      } else if (performance.now() - stalledSince > DRAIN_STALL_MS) {
        break;
      }
    }
    if (tally.received >= published) await sleep(DRAIN_SETTLE_MS);
    clearInterval(progress);
    emit(progressEvent());

    const { ok: delivered, ...counts } = tally.verdict(published);
    const ok = delivered && misrouted === 0 && pauses.deliveredWhilePaused === 0;
    return {
      seed,
      durationMs,
      servers: servers.length,
      topics,
      publishers: publisherCount,
      published,
      ...counts,
      misrouted,
      failovers: failovers.length,
      failoverP50Ms: Math.round(percentile(failovers, 50)),
      failoverMaxMs: Math.round(Math.max(0, ...failovers)),
      actions,
      pauses,
      maxBehind,
      ok,
    };
  } finally {
    running = false;
    clearInterval(progress);
    await Promise.allSettled([...clients.values()].map((c) => c.disconnect()));
    await cluster.close();
  }
}
