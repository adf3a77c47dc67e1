/**
 * The core-protocol Client on browserTransport, in a real Chromium, against the test broker over
 * WebSocket: logon, subscribe (callback and iterator), publish, SOW, heartbeats (the watchdog
 * catches a frozen broker) and disconnect. Skipped without Chromium, like the other browser tests.
 */
import { join } from 'node:path';
import { chromiumStatus } from '@amps-ts/config/chromium';
import { startTestServer, type TestServer } from '@amps-ts/test-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BrowserPage, openBrowserPage } from './browser-harness.js';
import type { ClientPageApi } from './pages/client-page.js';

const chromium = chromiumStatus('transport-browser');

describe.skipIf(!chromium.run)(chromium.title('Client on browserTransport in Chromium'), () => {
  let browser: BrowserPage;
  let server: TestServer;

  /** Runs `fn` in the page with the page API. */
  function inPage<A, R>(fn: (api: ClientPageApi, arg: A) => R | Promise<R>, arg: A): Promise<R> {
    // The function runs in the page: it may use only its arguments.
    return browser.page.evaluate(`(${fn.toString()})(globalThis.ampsClient, ${JSON.stringify(arg) ?? 'undefined'})`);
  }

  beforeAll(async () => {
    server = await startTestServer({ sowTopics: [{ topic: 'orders', key: '/id' }] });
    browser = await openBrowserPage({ entry: join(import.meta.dirname, 'pages', 'client-page.ts') });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  it('logs on over WebSocket and reports the server facts', async () => {
    const uri = server.wsUri();
    const result = await inPage((api, u) => api.logon('browser-1', u), uri);
    expect(result).toEqual({
      ok: {
        sequence: 0,
        bookmark: expect.stringMatching(/^\d+\|0\|$/),
        serverVersion: '5.3.5.0.amps-ts-test-server',
        nameHash: expect.stringMatching(/^\d+$/),
        uri,
      },
    });
    expect(await inPage((api) => api.states, undefined)).toEqual(['Connected', 'LoggedOn']);
    expect(server.stats().connections.current).toBe(1);
  });

  it.each(['callback', 'iterator'] as const)('subscribes, publishes and receives (%s)', async (mode) => {
    const result = await inPage((api, m) => api.roundTrip(`ticks-${m}`, 200, m), mode);
    if (!('ok' in result)) throw new Error(JSON.stringify(result.error));
    expect(result.ok.received).toHaveLength(200);
    expect(result.ok.received.map((r) => (r.body as { i: number }).i)).toEqual([...Array(200).keys()]);
    expect(result.ok.received[0]).toEqual({
      body: { i: 0, from: 'browser' },
      subId: result.ok.subId,
      topic: `ticks-${mode}`,
    });
  });

  it('publishes and receives 1 MiB and 16 MiB bodies intact, between small ones', async () => {
    const big = await startTestServer({ maxFrameBytes: 40 * 1024 * 1024 });
    try {
      await inPage((api, u) => api.logon('browser-big', u), big.wsUri());
      const sizes = [10, 1024 * 1024, 3, 16 * 1024 * 1024, 1];
      const result = await inPage((api, s) => api.bigRoundTrip('big', s), sizes);
      expect(result).toEqual({ ok: sizes.map((length) => ({ length, intact: true })) });
    } finally {
      await inPage((api) => api.disconnect(), undefined);
      await big.close();
    }
  });

  it('a subscription past maxQueue ends with SlowConsumerError (a browser cannot pause); the rest is dropped, the connection stays', async () => {
    await inPage((api, u) => api.logon('browser-slow', u, { maxQueue: 8 }), server.wsUri());
    const result = await inPage((api) => api.overflow('flood', 300), undefined);
    expect(result).toEqual({
      ok: {
        seen: [0, 1, 2, 3, 4, 5, 6, 7],
        error: expect.objectContaining({ code: 'slow_consumer' }),
        closed: expect.objectContaining({ code: 'slow_consumer' }),
        unhandled: [],
        connected: true,
      },
    });
  });

  it('publish hands back a promise while the broker does not read, which resolves once it reads again; nothing is lost', async () => {
    await inPage((api, u) => api.logon('browser-publisher', u, { sendHighWaterMark: 256 * 1024 }), server.wsUri());
    expect(await inPage((api) => api.watch('pressed'), undefined)).toEqual({});
    server.freeze();
    let filled: Awaited<ReturnType<ClientPageApi['fill']>>;
    try {
      filled = await inPage((api) => api.fill('pressed'), undefined);
    } finally {
      server.thaw();
    }
    if (!('ok' in filled)) throw new Error(JSON.stringify(filled.error));
    expect(filled.ok.buffered).toBeGreaterThan(256 * 1024);
    expect(await inPage((api) => api.drained(), undefined)).toEqual({
      ok: { published: filled.ok.published, received: filled.ok.published, connected: true },
    });
  });

  it('runs a SOW query across batches with its stats', async () => {
    expect(await inPage((api) => api.sow('orders', 7), undefined)).toEqual({
      ok: { ids: [2, 3, 4, 5, 6, 7], stats: expect.objectContaining({ recordsReturned: 6, matches: 6 }) },
    });
  });

  it('rejects tcp:// in a browser with InvalidUriError', async () => {
    expect(await inPage((api) => api.connectTcp('tcp://127.0.0.1:9007/amps/json'), undefined)).toMatchObject({
      error: { name: 'InvalidUriError', code: 'invalid_uri' },
    });
  });

  it('heartbeats: the watchdog closes the connection to a frozen broker', async () => {
    await inPage((api, u) => api.logon('browser-2', u), server.wsUri());
    expect(await inPage((api) => api.heartbeat(0.05), undefined)).toEqual({});
    const disconnected = inPage((api) => api.nextDisconnect(), undefined);
    server.freeze();
    try {
      const reason = await disconnected;
      expect(reason).toMatchObject({ name: 'TimedOutError', code: 'timed_out' });
      expect(reason?.message).toMatch(/heartbeat timeout/);
      expect(await inPage((api) => api.flush(), undefined)).toMatchObject({ error: { code: 'disconnected' } });
    } finally {
      server.thaw();
    }
  });

  it('disconnects to Shutdown', async () => {
    await inPage((api, u) => api.logon('browser-3', u), server.wsUri());
    expect(await inPage((api) => api.flush(), undefined)).toEqual({});
    expect(await inPage((api) => api.disconnect(), undefined)).toEqual({
      ok: { state: 'Shutdown', isConnected: false },
    });
    expect(await inPage((api) => api.disconnects, undefined)).toEqual([null]);
  });
});
