/**
 * The browser, in headless Chromium (playwright-core), against the test broker over WebSocket:
 * HAClient with the IndexedDB stores against HAClient with the memory stores, on the same page
 * and broker. Publishing: all at once then awaited, and one at a time (each publish awaited, as
 * an order-entry page would); both to the last persisted ack. A bookmark replay from the start of
 * the log. Report-only: no issue sets a target. Skipped without Chromium.
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
  description: 'the IndexedDB stores against the memory stores, HAClient in headless Chromium over WebSocket',
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
    /** Rate for `count` messages, the memory store's first (the baseline), then the IndexedDB store's. */
    const compare = async (name: string, count: number, measure: (kind: StoreKind) => Promise<number>) => {
      const rate = async (kind: StoreKind) => {
        const ms = await measure(kind);
        progress(`${name}, ${kind}: ${count} messages in ${Math.round(ms)} ms`);
        return (count * 1000) / ms;
      };
      const memory = await rate('memory');
      const indexeddb = await rate('indexeddb');
      results.push({
        name: `${name}, IndexedDB store`,
        value: indexeddb,
        unit: 'msgs/s',
        baseline: { name: 'memory store', value: memory },
      });
    };
    try {
      // Warm-up: the page's code compiled, the broker's topic and log in use.
      await inPage('publish', 'indexeddb', uri, 500, true);
      const count = quick ? 2_000 : 20_000;
      await compare('publish 100 B, all then awaited', count, (kind) => inPage('publish', kind, uri, count, true));
      const awaited = quick ? 200 : 1_000;
      await compare('publish 100 B, each awaited', awaited, (kind) => inPage('publish', kind, uri, awaited, false));

      const replayed = quick ? 5_000 : 50_000;
      const publisher = new Client('bench-replay-source', { transport: nodeTransport() });
      await publisher.connectAndLogon(server.tcpUri());
      for (let n = 0; n < replayed; n++) publisher.publish('bench-replay', JSON.stringify({ n }));
      await publisher.flush('processed');
      await publisher.disconnect();
      await compare('bookmark replay from EPOCH', replayed, (kind) =>
        inPage('replay', kind, uri, 'bench-replay', replayed),
      );
    } finally {
      await browser.close();
      await server.close();
    }
    return results;
  },
};

export default group;
