/**
 * The browser, in headless Chromium (playwright-core), against the test broker over WebSocket,
 * each row against a baseline on the same page and broker. The Client on browserTransport against
 * a raw WebSocket sending pre-encoded frames (publish, to a flush's ack) or only counting what
 * arrives (a bookmark replay from the start of the log). HAClient with the IndexedDB stores
 * against the memory stores: publishing all at once then awaited, and one at a time (each publish
 * awaited, as an order-entry page would), both to the last persisted ack; a bookmark replay.
 * Report-only: no issue sets a target. Skipped without Chromium.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromiumPath } from '@amps-ts/config/chromium';
import { Client } from '@amps-ts/core-protocol';
import { startTestServer } from '@amps-ts/test-server';
import { nodeTransport } from '@amps-ts/transport-node';
import { openBrowserPage } from '../../../../packages/transport-browser/test/browser-harness.js';
import type { BenchPageApi, StoreKind } from '../browser/page.js';
import type { BenchGroup, BenchResult } from '../runner.js';

const here = dirname(fileURLToPath(import.meta.url));

const group: BenchGroup = {
  name: 'browser',
  description:
    'the Client against a raw WebSocket, and the IndexedDB stores against the memory stores, in headless Chromium',
  async run({ quick, progress }) {
    if (!existsSync(chromiumPath)) {
      progress(`skipped: no Chromium at ${chromiumPath}`);
      return [];
    }
    // Persisted acks conflated every 10 ms, not the default second: the last one ends each run.
    const server = await startTestServer({ ackConflationMs: 10 });
    const browser = await openBrowserPage({ entry: join(here, '..', 'browser', 'page.ts'), title: 'amps-ts bench' });
    const inPage = <A extends unknown[]>(fn: keyof BenchPageApi, ...args: A): Promise<number> =>
      browser.page.evaluate(`globalThis.ampsBench.${fn}(...${JSON.stringify(args)})`);
    const uri = server.wsUri();
    const results: BenchResult[] = [];
    /** Messages a second for `count` messages: the baseline's first, then the measured side's. */
    const compare = async (
      name: string,
      count: number,
      baseline: [name: string, measure: () => Promise<number>],
      measure: () => Promise<number>,
    ) => {
      const rate = async (side: string, run: () => Promise<number>) => {
        const ms = await run();
        progress(`${name}, ${side}: ${count} messages in ${Math.round(ms)} ms`);
        return (count * 1000) / ms;
      };
      const base = await rate(baseline[0], baseline[1]);
      const value = await rate('measured', measure);
      results.push({ name, value, unit: 'msgs/s', baseline: { name: baseline[0], value: base } });
    };
    const stores = (name: string, count: number, measure: (kind: StoreKind) => Promise<number>) =>
      compare(`${name}, IndexedDB store`, count, ['memory store', () => measure('memory')], () => measure('indexeddb'));
    try {
      // The replays' messages first, into a log nothing else has written to yet.
      const replayed = quick ? 5_000 : 20_000;
      progress(`publishing ${replayed} messages for the replays`);
      const publisher = new Client('bench-replay-source', { transport: nodeTransport() });
      // Bounded, and reported while it runs: a stall here once held a run for minutes, silently.
      await publisher.connectAndLogon(server.tcpUri(), { timeoutMs: 30_000 });
      let sent = 0;
      const report = setInterval(() => progress(`  ${sent} of ${replayed} published`), 5_000);
      try {
        for (; sent < replayed; sent++) {
          const full = publisher.publish('bench-replay', JSON.stringify({ n: sent }));
          if (full) await full;
        }
        await publisher.flush('processed', { timeoutMs: 60_000 });
      } finally {
        clearInterval(report);
        await publisher.disconnect();
      }
      // Warm-up: the page's code compiled, the broker's topics in use.
      await inPage('publish', 'indexeddb', uri, 500, true);
      await inPage('clientPublish', uri, 2_000);

      await compare(
        'Client bookmark replay to a callback',
        replayed,
        ['raw WebSocket', () => inPage('rawReplay', uri, 'bench-replay', replayed)],
        () => inPage('clientReplay', uri, 'bench-replay', replayed),
      );
      await stores('HAClient bookmark replay', replayed, (kind) =>
        inPage('replay', kind, uri, 'bench-replay', replayed),
      );
      const count = quick ? 5_000 : 30_000;
      await compare('Client publish 100 B', count, ['raw WebSocket', () => inPage('rawPublish', uri, count)], () =>
        inPage('clientPublish', uri, count),
      );
      const published = quick ? 2_000 : 20_000;
      await stores('HAClient publish 100 B, all then awaited', published, (kind) =>
        inPage('publish', kind, uri, published, true),
      );
      const awaited = quick ? 200 : 1_000;
      await stores('HAClient publish 100 B, each awaited', awaited, (kind) =>
        inPage('publish', kind, uri, awaited, false),
      );
    } finally {
      await browser.close();
      await server.close();
    }
    return results;
  },
};

export default group;
