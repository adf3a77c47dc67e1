/**
 * What HAClient keeps in memory over a long run: a publisher with the memory publish store and a
 * bookmark subscriber on two sync-replicated brokers (in a child process, see
 * `../ha/cluster-process.ts`). Each cycle publishes 100 messages and waits for them, then does
 * what an application does all day, five times over: a SOW query with a long-lived signal, one left after its
 * first record, a subscribe and unsubscribe, a subscribe aborted by its signal, an iterated
 * subscription left early, a `sowAndSubscribe` and unsubscribe; every other cycle the
 * subscriber's broker is killed and restarted (a failover). The heap is measured after a full
 * GC every 10 cycles once warm; the slope through those samples is what each cycle keeps, what
 * would leak in production (a few hundred bytes either way is GC noise).
 * Report-only (the issues set no target): under 1 KB a cycle here; with the aborted-subscribe leak
 * of 2026-11 put back, 55 KB. The subscriber must still get every message exactly once, in order.
 */
import { getEventListeners } from 'node:events';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { Bookmarks, type Message } from '@amps-ts/core-protocol';
import { HAClient, MemoryBookmarkStore, MemoryPublishStore } from '@amps-ts/ha-client';
import { nodeTransport } from '@amps-ts/transport-node';
import { ClusterProcess } from '../ha/cluster-process.js';
import { type BenchContext, type BenchGroup, type BenchResult, unlessStalled } from '../runner.js';

const TOPIC = 'soak';
const PER_CYCLE = 100;
/** SOW keys the records cycle through, so the broker's SOW stays small. */
const KEYS = 50;
const SAMPLE_EVERY = 10;
/** Rounds of queries and subscriptions per cycle: a leak in them shows this many times over. */
const CHURN = 5;

/** The slope of the least-squares line through `points`. */
function slope(points: ReadonlyArray<readonly [number, number]>): number {
  const n = points.length;
  const mx = points.reduce((sum, [x]) => sum + x, 0) / n;
  const my = points.reduce((sum, [, y]) => sum + y, 0) / n;
  let sxy = 0;
  let sxx = 0;
  for (const [x, y] of points) {
    sxy += (x - mx) * (y - my);
    sxx += (x - mx) ** 2;
  }
  return sxx === 0 ? 0 : sxy / sxx;
}

let gc: (() => void) | undefined;

/** A full GC (twice: what the first frees can free more), then the heap in use. */
function heapAfterGc(): number {
  if (!gc) {
    v8.setFlagsFromString('--expose-gc');
    gc = vm.runInNewContext('gc') as () => void;
  }
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

const group: BenchGroup = {
  name: 'soak',
  description: 'HAClient memory over cycles of traffic, subscription churn and failovers',
  async run(context: BenchContext): Promise<BenchResult[]> {
    const warmUp = context.quick ? 5 : 20;
    const cycles = context.quick ? 20 : 150;
    const cluster = await ClusterProcess.start({
      count: 2,
      replication: 'sync',
      persistedAckIntervalMs: 20,
      sowTopics: [{ topic: TOPIC, key: '/k' }],
    });
    const options = {
      transport: nodeTransport(),
      servers: cluster.uris,
      heartbeat: { intervalS: 0.5, timeoutS: 1 },
      connectTimeoutMs: 1000,
    };
    const publisher = new HAClient('soak-publisher', { ...options, publishStore: new MemoryPublishStore() });
    const subscriber = new HAClient('soak-subscriber', { ...options, bookmarkStore: new MemoryBookmarkStore() });
    try {
      await Promise.all([publisher.connectAndLogon(), subscriber.connectAndLogon()]);
      let next = 0; // the n the subscriber expects next
      let anomalies = 0; // messages missing, doubled or out of order
      let published = 0;
      let received = 0;
      let caughtUp: (() => void) | undefined;
      const live = subscriber.subscribe(TOPIC, {
        bookmark: Bookmarks.EPOCH,
        onMessage: (m: Message) => {
          const n = m.json<{ n: number }>().n;
          received++;
          if (n !== next) anomalies++;
          next = Math.max(next, n + 1);
          if (next === published) caughtUp?.();
        },
      });
      await live.ready;
      const longLived = new AbortController();
      let failovers = 0;

      const cycle = async (index: number) => {
        for (let i = 0; i < PER_CYCLE; i++) {
          const wait = publisher.publish(TOPIC, JSON.stringify({ n: published++, k: published % KEYS }));
          if (wait) await wait;
        }
        await publisher.publishFlush(10_000);
        if (next < published) {
          const caughtUpNow = new Promise<void>((resolve) => (caughtUp = resolve));
          await unlessStalled(caughtUpNow, `soak cycle ${index}`, published, () => received);
        }
        for (let round = 0; round < CHURN; round++) {
          for await (const _ of subscriber.sow(TOPIC, { signal: longLived.signal, topN: 1 })) {
          }
          for await (const _ of subscriber.sow(TOPIC)) break;
          const churn = subscriber.subscribe('soak-other', { signal: longLived.signal, onMessage: () => {} });
          await churn.ready;
          await churn.unsubscribe();
          const aborting = new AbortController();
          const aborted = subscriber.subscribe('soak-other', { signal: aborting.signal, onMessage: () => {} });
          aborting.abort();
          await aborted.ready.catch(() => {});
          let taken = 0;
          for await (const _ of subscriber.subscribe(TOPIC, { bookmark: Bookmarks.EPOCH })) if (++taken === 10) break;
          const snapshot = subscriber.sowAndSubscribe(TOPIC, { topN: 5, onMessage: () => {} });
          await snapshot.ready;
          await snapshot.unsubscribe();
        }
        if (index % 2 === 1) {
          const active = cluster.uris.indexOf(subscriber.uri ?? '');
          if (active >= 0) {
            await cluster.kill(active);
            await cluster.restart(active);
            failovers++;
          }
        }
      };

      for (let c = 0; c < warmUp; c++) await cycle(c);
      const failoversBefore = failovers;
      const publishedBefore = published;
      // The heap after every SAMPLE_EVERY cycles; the slope of a least-squares line through
      // them is what each cycle keeps (a single before/after pair is mostly GC noise).
      const samples: Array<[cycle: number, bytes: number]> = [[0, heapAfterGc()]];
      for (let c = 1; c <= cycles; c++) {
        await cycle(c);
        if (c % SAMPLE_EVERY !== 0) continue;
        const bytes = heapAfterGc();
        samples.push([c, bytes]);
        if (c % (5 * SAMPLE_EVERY) === 0) {
          const mb = ((bytes - (samples[0]?.[1] ?? 0)) / 1e6).toFixed(2);
          context.progress(
            `cycle ${c}/${cycles}: ${published.toLocaleString('en-US')} messages, heap ${mb} MB over the warm start`,
          );
        }
      }
      const details = {
        cycles,
        failovers: failovers - failoversBefore,
        messages: published - publishedBefore,
        heapSamples: samples,
        abortListenersLeft: getEventListeners(longLived.signal, 'abort').length,
      };
      return [
        {
          name: `heap kept per cycle (${PER_CYCLE} messages, ${6 * CHURN} queries and subscriptions, a failover every other), slope`,
          value: slope(samples),
          unit: 'B',
          details,
        },
        {
          name: 'abort listeners left on a signal given to every query and subscribe',
          value: details.abortListenersLeft,
          unit: 'listeners',
          target: { max: 0 },
        },
        {
          name: 'soak: messages missing, duplicated or out of order',
          value: anomalies + (next === published ? 0 : published - next),
          unit: 'messages',
          target: { max: 0 },
          details,
        },
      ];
    } finally {
      await Promise.all([publisher.disconnect(), subscriber.disconnect()]);
      await cluster.close();
    }
  },
};

export default group;
