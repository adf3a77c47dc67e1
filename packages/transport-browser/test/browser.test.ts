import { once } from 'node:events';
import type * as http from 'node:http';
import * as net from 'node:net';
import { join } from 'node:path';
import { chromiumStatus } from '@amps-ts/config/chromium';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { type WebSocket, WebSocketServer } from 'ws';
import { type BrowserPage, openBrowserPage } from './browser-harness.js';
import type { PageApi } from './pages/transport-page.js';

const chromium = chromiumStatus('transport-browser');

function frame(payload: string | Buffer): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const out = Buffer.alloc(4 + body.length);
  out.writeUInt32BE(body.length, 0);
  body.copy(out, 4);
  return out;
}
const hex = (bytes: Buffer) => bytes.toString('hex');

describe.skipIf(!chromium.run)(chromium.title('browserTransport in Chromium'), () => {
  let browser: BrowserPage;
  let wss: WebSocketServer;
  let wsUrl: string;
  let sockets: WebSocket[];
  let messages: Buffer[];
  let cleanups: Array<() => unknown>;

  /** Runs `fn` in the page with the page API. */
  function inPage<A, R>(fn: (api: PageApi, arg: A) => R | Promise<R>, arg: A): Promise<R> {
    // The function runs in the page: it may use only its arguments.
    return browser.page.evaluate(`(${fn.toString()})(globalThis.ampsTest, ${JSON.stringify(arg) ?? 'undefined'})`);
  }

  beforeAll(async () => {
    browser = await openBrowserPage({ entry: join(import.meta.dirname, 'pages', 'transport-page.ts') });
    wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await once(wss, 'listening');
    wsUrl = `ws://127.0.0.1:${(wss.address() as net.AddressInfo).port}/amps/json`;
    wss.on('connection', (ws) => {
      sockets.push(ws);
      ws.on('error', () => {});
      ws.on('message', (data: Buffer) => messages.push(Buffer.from(data)));
    });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    if (wss) await new Promise((resolve) => wss.close(resolve));
  });

  beforeEach(() => {
    sockets = [];
    messages = [];
    cleanups = [];
  });

  afterEach(async () => {
    for (const ws of sockets) ws.terminate();
    for (const cleanup of cleanups.reverse()) await cleanup();
    await inPage((api) => api.useTransport({}), undefined);
  });

  async function connect(uri = wsUrl) {
    const accepted = once(wss, 'connection') as Promise<[WebSocket, http.IncomingMessage]>;
    const result = await inPage((api, u) => api.connect(u), uri);
    if (!('id' in result)) throw new Error(`connect failed: ${JSON.stringify(result.error)}`);
    const [peer, request] = await accepted;
    return { ...result, peer, request };
  }

  it('connects to the URI path (no credentials in the URL) and describes the connection', async () => {
    const port = new URL(wsUrl).port;
    const { id, description, request } = await connect(`ws://alice:s3cret@127.0.0.1:${port}/amps/json`);
    expect(request.url).toBe('/amps/json');
    expect(request.headers.authorization).toBeUndefined();
    expect(description).toBe(`ws 127.0.0.1:${port}/amps/json`);
    await inPage((api, i) => api.close(i), id);
    expect(await inPage((api, i) => api.waitForClose(i), id)).toEqual({ closes: [null], dataAfterClose: 0 });
  });

  it('sends one binary frame per WebSocket message, however the frames were batched', async () => {
    const { id } = await connect();
    const a = frame('{"c":"p","t":"a"}1');
    const b = frame('{"c":"p","t":"b"}22');
    const c = frame('{"c":"p","t":"c"}333');
    const d = frame('{"c":"p","t":"d"}split across sends');
    await inPage(
      (api, [i, merged, d1, d2]) => {
        api.send(i, merged);
        api.send(i, d1);
        api.send(i, d2);
      },
      [id, hex(Buffer.concat([a, b, c])), hex(d.subarray(0, 3)), hex(d.subarray(3))] as const,
    );
    await vi.waitFor(() => expect(messages).toHaveLength(4));
    expect(messages).toEqual([a, b, c, d]);
    await inPage((api, i) => api.close(i), id);
  });

  it('receives messages as one byte stream (several frames, or part of one, per message)', async () => {
    const { id, peer } = await connect();
    const stream = Buffer.concat([frame('{"c":"p"}one'), frame('{"c":"p"}two'), frame('{"c":"p"}three')]);
    peer.send(stream.subarray(0, 25));
    peer.send(stream.subarray(25, 26));
    peer.send(stream.subarray(26));
    expect(await inPage((api, [i, n]) => api.waitForBytes(i, n), [id, stream.length] as const)).toBe(hex(stream));
    await inPage((api, i) => api.close(i), id);
  });

  it('moves a large frame intact both ways', async () => {
    const { id, peer } = await connect();
    const length = 4 * 1024 * 1024;
    await inPage((api, [i, n]) => api.sendPattern(i, n), [id, length] as const);
    await vi.waitFor(() => expect(messages).toHaveLength(1), { timeout: 15_000 });
    const body = Buffer.alloc(length);
    for (let i = 0; i < length; i++) body[i] = i & 0xff;
    expect(messages[0]?.equals(frame(body))).toBe(true);

    peer.send(frame(body));
    expect(await inPage((api, [i, n]) => api.receivedPattern(i, n), [id, length] as const)).toMatchObject({
      intact: true,
    });
    await inPage((api, i) => api.close(i), id);
  });

  it('reports bufferedAmount above the high-water mark while the server does not read, and drains once it does', async () => {
    await inPage((api) => api.useTransport({ highWaterMark: 512 * 1024, lowWaterMark: 128 * 1024 }), undefined);
    const { id, peer } = await connect();
    peer.pause();
    const filled = await inPage((api, i) => api.fillPastHighWaterMark(i, 256 * 1024, 2000, 32 * 1024 * 1024), id);
    expect(filled.buffered).toBeGreaterThan(filled.highWaterMark);
    await inPage((api, i) => api.startDrainWait(i), id);
    expect((await inPage((api, i) => api.isDrained(i), id)).drained).toBe(false);
    peer.resume();
    await vi.waitFor(async () => expect((await inPage((api, i) => api.isDrained(i), id)).drained).toBe(true), {
      timeout: 15_000,
    });
    expect((await inPage((api, i) => api.isDrained(i), id)).buffered).toBeLessThanOrEqual(filled.lowWaterMark);
    await vi.waitFor(() => expect(messages).toHaveLength(filled.frames), { timeout: 15_000 });
    await inPage((api, i) => api.close(i), id);
  });

  it.each([
    ['the client closes', 'client'],
    ['the server drops the socket', 'server'],
  ] as const)('whenDrained() resolves when %s while the server is not reading; onClose comes once', async (_, who) => {
    await inPage((api) => api.useTransport({ highWaterMark: 512 * 1024, lowWaterMark: 128 * 1024 }), undefined);
    const { id, peer } = await connect();
    peer.pause();
    const filled = await inPage((api, i) => api.fillPastHighWaterMark(i, 256 * 1024, 2000, 32 * 1024 * 1024), id);
    expect(filled.buffered).toBeGreaterThan(filled.highWaterMark);
    const drained = inPage((api, i) => api.whenDrained(i), id);
    if (who === 'client') await inPage((api, i) => api.close(i, 'giving up'), id);
    else peer.terminate();
    // Resolves, with the bytes that will never be sent still counted.
    expect(await drained).toBeGreaterThan(filled.lowWaterMark);
    const closed = await inPage((api, i) => api.waitForClose(i), id);
    expect(closed.closes).toHaveLength(1);
    expect(closed.closes[0]).toMatchObject(who === 'client' ? { message: 'giving up' } : { code: 'connection' });
  });

  it('whenDrained() does not wait for a frame held back until the rest of it is sent', async () => {
    await inPage((api) => api.useTransport({ highWaterMark: 256 * 1024, lowWaterMark: 64 * 1024 }), undefined);
    const { id } = await connect();
    const big = frame(Buffer.alloc(1024 * 1024, 7));
    const cut = 300 * 1024;
    await inPage((api, [i, part]) => api.send(i, part), [id, hex(big.subarray(0, cut))] as const);
    expect(await inPage((api, i) => api.whenDrained(i), id)).toBe(cut);
    await inPage((api, [i, part]) => api.send(i, part), [id, hex(big.subarray(cut))] as const);
    await vi.waitFor(() => expect(messages).toHaveLength(1));
    expect(messages[0]?.equals(big)).toBe(true);
    await inPage((api, i) => api.close(i), id);
  });

  it('close() sends a normal close; onClose comes once, without an error', async () => {
    const { id, peer } = await connect();
    const closed = once(peer, 'close');
    await inPage((api, i) => {
      api.close(i);
      api.close(i);
    }, id);
    expect((await closed)[0]).toBe(1000);
    expect(await inPage((api, i) => api.waitForClose(i), id)).toEqual({ closes: [null], dataAfterClose: 0 });
  });

  it('close(error) calls onClose with that error at once', async () => {
    const { id } = await connect();
    await inPage((api, i) => api.close(i, 'heartbeat timed out'), id);
    const { closes } = await inPage((api, i) => api.waitForClose(i), id);
    expect(closes).toEqual([{ name: 'Error', code: undefined, message: 'heartbeat timed out' }]);
  });

  it('the server closing is a DisconnectedError; the server dropping the socket a ConnectionError', async () => {
    const first = await connect();
    first.peer.close(1001, 'going away');
    const { closes } = await inPage((api, i) => api.waitForClose(i), first.id);
    expect(closes).toHaveLength(1);
    expect(closes[0]).toMatchObject({ name: 'DisconnectedError', code: 'disconnected' });
    expect(closes[0]?.message).toContain('WebSocket code 1001, going away');

    const second = await connect();
    second.peer.terminate();
    const dropped = await inPage((api, i) => api.waitForClose(i), second.id);
    expect(dropped.closes[0]).toMatchObject({ name: 'ConnectionError', code: 'connection' });
    expect(dropped.closes[0]?.message).toContain('1006');
  });

  it('refused: ConnectionError naming the redacted URI', async () => {
    const probe = net.createServer().listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const { port } = probe.address() as net.AddressInfo;
    await new Promise((resolve) => probe.close(resolve));
    const result = await inPage((api, u) => api.connect(u), `ws://u:pw@127.0.0.1:${port}/amps/json`);
    expect(result).toEqual({
      error: {
        name: 'ConnectionError',
        code: 'connection',
        message: `cannot connect to ws://u:***@127.0.0.1:${port}/amps/json: the WebSocket closed before opening (code 1006)`,
      },
    });
  });

  it('times out with TimedOutError when the handshake is never answered, and aborts with AbortError', async () => {
    const silent = net.createServer((socket) => socket.on('error', () => {}));
    silent.listen(0, '127.0.0.1');
    await once(silent, 'listening');
    const accepted: net.Socket[] = [];
    silent.on('connection', (socket) => accepted.push(socket));
    cleanups.push(async () => {
      for (const socket of accepted) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    });
    const uri = `ws://127.0.0.1:${(silent.address() as net.AddressInfo).port}/amps/json`;
    expect(await inPage((api, u) => api.connect(u, { timeoutMs: 200 }), uri)).toMatchObject({
      error: { name: 'TimedOutError', code: 'timed_out' },
    });
    expect(await inPage((api, u) => api.connect(u, { abortAfterMs: 50 }), uri)).toMatchObject({
      error: { name: 'AbortError', code: 'aborted' },
    });
    expect(await inPage((api, u) => api.connect(u, { abortBefore: true }), uri)).toMatchObject({
      error: { name: 'AbortError', code: 'aborted' },
    });
  });

  it('a connect timeout longer than setTimeout can wait is an InvalidOptionsError, not an instant TimedOutError', async () => {
    const accepted: net.Socket[] = [];
    const silent = net.createServer((socket) => accepted.push(socket.on('error', () => {})));
    silent.listen(0, '127.0.0.1');
    await once(silent, 'listening');
    cleanups.push(async () => {
      for (const socket of accepted) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    });
    const uri = `ws://127.0.0.1:${(silent.address() as net.AddressInfo).port}/amps/json`;
    expect(await inPage((api, u) => api.connect(u, { timeoutMs: 2 ** 31 }), uri)).toMatchObject({
      error: { name: 'InvalidOptionsError', code: 'invalid_options', message: expect.stringContaining('2147483647') },
    });
  });

  it('rejects schemes a browser cannot open with InvalidUriError', async () => {
    expect(await inPage((api) => api.connect('tcp://127.0.0.1:9007/amps/json'), undefined)).toMatchObject({
      error: { name: 'InvalidUriError', code: 'invalid_uri', message: expect.stringContaining('ws:// and wss://') },
    });
  });

  it('surfaces online, offline, visibilitychange, pagehide and a restoring pageshow as hints to each listener until it unsubscribes', async () => {
    const log = await inPage((api) => {
      const a = api.hints.subscribe('a');
      const b = api.hints.subscribe('b', { throws: true });
      // A first load's pageshow (not persisted) is no hint: only a restore from the back/forward cache.
      for (const event of ['offline', 'online', 'hidden', 'visible', 'pagehide', 'load-pageshow', 'pageshow'] as const)
        api.hints.dispatch(event);
      api.hints.unsubscribe(b);
      api.hints.dispatch('offline');
      api.hints.unsubscribe(a);
      api.hints.dispatch('online');
      return api.hints.take();
    }, undefined);
    expect(log).toEqual([
      'a:offline',
      'b:offline',
      'a:online',
      'b:online',
      'a:hidden',
      'b:hidden',
      'a:visible',
      'b:visible',
      'a:pagehide',
      'b:pagehide',
      'a:pageshow',
      'b:pageshow',
      'a:offline',
    ]);
    // The throwing listener's errors surface as page errors without stopping the others.
    await vi.waitFor(() => expect(browser.pageErrors.map((e) => e.message)).toContain('listener b failed'));
    expect(browser.pageErrors).toHaveLength(6);
    browser.pageErrors.length = 0;
  });

  it('leaves no uncaught page errors behind', () => {
    expect(browser.pageErrors).toEqual([]);
  });
});
