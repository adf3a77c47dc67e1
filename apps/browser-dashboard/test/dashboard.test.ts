/**
 * The dashboard in a real browser: two replicated brokers, the ticker publishing to them over
 * TCP, the page (built with Vite) subscribed over WebSocket. Killing the broker the page is on
 * must show a failover to the other broker, and ticks must keep arriving with no gap in `seq`.
 */
import { mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromiumStatus } from '@amps-ts/config/chromium';
import { startTestCluster, type TestCluster } from '@amps-ts/test-server';
import type { Page } from 'playwright-core';
import { build, type InlineConfig, type PreviewServer, preview } from 'vite';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { startTicker, type Ticker } from '../server/ticker.js';
import { type Browser, launchChromium } from './chromium.js';

const root = join(import.meta.dirname, '..');
const screenshots = join(root, 'screenshots');
const chromium = chromiumStatus('browser-dashboard');

/** Everything the page shows, from its data attributes. */
function readPage(page: Page) {
  return page.evaluate(() => {
    const data = (selector: string) =>
      [...document.querySelectorAll<HTMLElement>(selector)].map((element) => ({ ...element.dataset }));
    return {
      connection: data('#connection')[0],
      sequence: data('#sequence')[0],
      timeline: data('#timeline li'),
      rows: data('#prices tbody tr'),
      pause: data('#pause')[0],
    };
  });
}

describe.skipIf(!chromium.run)(chromium.title('the dashboard in Chromium'), () => {
  let outDir: string;
  let cluster: TestCluster;
  let ticker: Ticker;
  let site: PreviewServer;
  let browser: Browser;

  beforeAll(async () => {
    outDir = mkdtempSync(join(tmpdir(), 'amps-ts-dashboard-build-'));
    const config: InlineConfig = {
      root,
      configFile: join(root, 'vite.config.ts'),
      logLevel: 'warn',
      build: { outDir, emptyOutDir: true },
    };
    [cluster] = await Promise.all([
      startTestCluster({ count: 2, replication: 'sync', persistedAckIntervalMs: 100 }),
      build(config),
    ]);
    site = await preview({ ...config, preview: { port: 0, host: '127.0.0.1' } });
    // The ticker publishes to the second broker, the page starts on the first: while the page fails
    // over, ticks keep coming, and only its bookmark resume can fill the gap.
    ticker = await startTicker({ servers: cluster.tcpUris().reverse() });
    browser = await launchChromium();
  });

  afterAll(async () => {
    const results = await Promise.allSettled([browser?.close(), ticker?.stop(), site?.close()]);
    await cluster?.close();
    if (outDir) rmSync(outDir, { recursive: true, force: true });
    for (const result of results) if (result.status === 'rejected') throw result.reason;
  });

  it('shows the failover to the other broker, and prices keep arriving with no gap', async () => {
    const page = await browser.context.newPage();
    const pageErrors: Error[] = [];
    page.on('pageerror', (error) => pageErrors.push(error));
    onTestFailed(async () => {
      mkdirSync(screenshots, { recursive: true });
      await page.screenshot({ path: join(screenshots, 'failure.png'), fullPage: true });
    });

    const ws = cluster.wsUris();
    const port = (site.httpServer.address() as AddressInfo).port;
    await page.goto(`http://127.0.0.1:${port}/?servers=${ws.join(',')}&name=dashboard-test`);

    // Connected, and ticks arriving.
    await expect
      .poll(() => readPage(page), { timeout: 15_000, interval: 100 })
      .toMatchObject({ connection: { state: 'Resubscribed' } });
    await expect
      .poll(async () => Number((await readPage(page)).sequence?.received), { timeout: 15_000, interval: 100 })
      .toBeGreaterThanOrEqual(20);
    const before = (await readPage(page)).connection?.broker as string;
    const on = ws.indexOf(before);
    expect(on, `the page is on ${before}`).toBeGreaterThanOrEqual(0);
    const other = ws[1 - on] as string;

    // Kill the broker the page is on.
    const killedAt = ticker.published;
    await cluster.servers[on]?.kill();

    // The page moves to the other broker, and ticks published since keep coming.
    await expect
      .poll(() => readPage(page), { timeout: 15_000, interval: 100 })
      .toMatchObject({ connection: { state: 'Resubscribed', broker: other } });
    await expect
      .poll(async () => Number((await readPage(page)).sequence?.lastSeq), { timeout: 15_000, interval: 100 })
      .toBeGreaterThanOrEqual(killedAt + 50);

    const shown = await readPage(page);
    mkdirSync(screenshots, { recursive: true });
    await page.screenshot({ path: join(screenshots, 'failover.png'), fullPage: true });
    expect(statSync(join(screenshots, 'failover.png')).size).toBeGreaterThan(10_000);

    // One unbroken run of sequence numbers from before the kill to well after it, nothing twice.
    const ranges = shown.sequence?.ranges ?? '';
    expect(ranges, 'received seqs').toMatch(/^\d+-\d+$/);
    const [first, last] = ranges.split('-').map(Number) as [number, number];
    expect(first).toBeLessThan(killedAt);
    expect(last).toBeGreaterThanOrEqual(killedAt + 50);
    expect(shown.sequence).toMatchObject({ duplicates: '0', received: String(last - first + 1) });

    // The timeline: Resubscribed on the first broker, Disconnected from it, Resubscribed on the other.
    const timeline = shown.timeline.map((e) => ({ state: e.state, broker: e.broker }));
    const lost = timeline.findIndex((e) => e.state === 'Disconnected' && e.broker === before);
    expect(lost, 'the timeline shows the disconnect').toBeGreaterThan(0);
    expect(timeline.slice(0, lost)).toContainEqual({ state: 'Resubscribed', broker: before });
    const recovered = shown.timeline.slice(lost).find((e) => e.state === 'Resubscribed');
    expect(recovered).toMatchObject({ broker: other, failoverMs: expect.stringMatching(/^\d+$/) });

    // Every symbol's price has moved since the kill.
    expect(shown.rows).toHaveLength(5);
    for (const row of shown.rows) expect(Number(row.seq), `${row.symbol} updated`).toBeGreaterThan(killedAt);
    expect(pageErrors).toEqual([]);
  });

  it('pauses the ticks, stays paused through a failover, and resumed fills in what it missed with no gap', async () => {
    // Both brokers up: the failover test left one killed.
    for (const server of cluster.servers) if (server.stats().state === 'killed') await server.restart();
    const page = await browser.context.newPage();
    const pageErrors: Error[] = [];
    page.on('pageerror', (error) => pageErrors.push(error));
    const ws = cluster.wsUris();
    const port = (site.httpServer.address() as AddressInfo).port;
    await page.goto(`http://127.0.0.1:${port}/?servers=${ws.join(',')}&name=dashboard-pause`);
    await expect
      .poll(async () => Number((await readPage(page)).sequence?.received), { timeout: 15_000, interval: 100 })
      .toBeGreaterThanOrEqual(10);

    await page.click('#pause');
    await expect
      .poll(async () => (await readPage(page)).pause?.paused, { timeout: 15_000, interval: 100 })
      .toBe('true');
    // The server's ack is in: nothing comes after it.
    const atPause = (await readPage(page)).sequence;
    const on = ws.indexOf((await readPage(page)).connection?.broker as string);
    await cluster.servers[on]?.kill();
    await expect
      .poll(() => readPage(page), { timeout: 15_000, interval: 100 })
      .toMatchObject({ connection: { state: 'Resubscribed', broker: ws[1 - on] } });
    // Re-entered paused on the other broker: ticks published since do not come either.
    const published = ticker.published;
    await expect
      .poll(() => ticker.published, { timeout: 15_000, interval: 100 })
      .toBeGreaterThanOrEqual(published + 25);
    expect((await readPage(page)).sequence).toEqual(atPause);

    await page.click('#pause');
    const resumed = ticker.published;
    await expect
      .poll(async () => Number((await readPage(page)).sequence?.lastSeq), { timeout: 15_000, interval: 100 })
      .toBeGreaterThanOrEqual(resumed + 10);
    const shown = await readPage(page);
    expect(shown.pause?.paused).toBe('false');
    expect(shown.sequence?.ranges, 'one unbroken run').toMatch(/^\d+-\d+$/);
    expect(shown.sequence?.duplicates).toBe('0');
    expect(Number(shown.sequence?.received)).toBeGreaterThan(Number(atPause?.received) + 25);
    expect(pageErrors).toEqual([]);
    await page.close();
  });

  it('comes back after a trip through the back/forward cache, resuming the ticks with no gap', async () => {
    const page = await browser.context.newPage();
    const pageErrors: Error[] = [];
    page.on('pageerror', (error) => pageErrors.push(error));
    const port = (site.httpServer.address() as AddressInfo).port;
    await page.goto(`http://127.0.0.1:${port}/?servers=${cluster.wsUris().join(',')}&name=dashboard-bfcache`);
    await expect
      .poll(async () => Number((await readPage(page)).sequence?.received), { timeout: 15_000, interval: 100 })
      .toBeGreaterThanOrEqual(10);

    // Away and back: the browser freezes the page in its cache (closing its WebSocket) and restores it.
    await page.evaluate(() => {
      (globalThis as { beforeTrip?: boolean }).beforeTrip = true;
    });
    await page.goto(`http://127.0.0.1:${port}/elsewhere`);
    await page.goBack({ waitUntil: 'commit' });
    const restored = await page.evaluate(() => (globalThis as { beforeTrip?: boolean }).beforeTrip === true);
    expect(restored, 'restored from the back/forward cache, not loaded again').toBe(true);
    const back = ticker.published;

    await expect
      .poll(async () => Number((await readPage(page)).sequence?.lastSeq), { timeout: 15_000, interval: 100 })
      .toBeGreaterThanOrEqual(back + 20);
    const shown = await readPage(page);
    expect(shown.connection?.state).toBe('Resubscribed');
    expect(shown.sequence?.ranges, 'one unbroken run').toMatch(/^\d+-\d+$/);
    expect(shown.sequence?.duplicates).toBe('0');
    expect(pageErrors).toEqual([]);
    await page.close();
  });
});
