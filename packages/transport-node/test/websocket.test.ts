import { createHash } from 'node:crypto';
import { once } from 'node:events';
import * as http from 'node:http';
import * as net from 'node:net';
import { AbortError, ConnectionError, DisconnectedError, TimedOutError } from '@amps-ts/core-protocol';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { type WebSocket, WebSocketServer } from 'ws';
import { nodeTransport } from '../src/index.js';
import { closedPort, concat, failure, frame, leakCheck, Recorder, TcpServer } from './helpers.js';

let leaks: ReturnType<typeof leakCheck>;
let cleanups: Array<() => unknown>;
beforeEach(() => {
  leaks = leakCheck();
  cleanups = [];
});
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  await leaks.check();
});

/** A `ws` server on 127.0.0.1 port 0 that records each message it receives. */
async function wsServer() {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, maxPayload: 512 * 1024 * 1024 });
  await once(wss, 'listening');
  const messages: Buffer[] = [];
  const sockets: WebSocket[] = [];
  wss.on('connection', (ws) => {
    sockets.push(ws);
    ws.on('error', () => {});
    ws.on('message', (data: Buffer) => messages.push(Buffer.from(data)));
  });
  cleanups.push(async () => {
    for (const ws of sockets) ws.terminate();
    await new Promise((resolve) => wss.close(resolve));
  });
  const port = (wss.address() as net.AddressInfo).port;
  const next = () => once(wss, 'connection') as Promise<[WebSocket, http.IncomingMessage]>;
  return { port, messages, next, uri: `ws://127.0.0.1:${port}/amps/json` };
}

/**
 * A raw TCP server that completes the WebSocket handshake and then hands the socket to the test,
 * to play a broken or hostile server. It never closes TCP on its own (the half-open case).
 */
async function rawWebSocketServer() {
  const tcp = new TcpServer(net.createServer({ allowHalfOpen: true }));
  const port = await tcp.listen();
  cleanups.push(() => tcp.close());
  const upgraded = async (index = 0): Promise<net.Socket> => {
    const socket = await tcp.accepted(index);
    let request = '';
    while (!request.includes('\r\n\r\n')) request += ((await once(socket, 'data')) as [Buffer])[0].toString('latin1');
    const key = /sec-websocket-key: *(\S+)/i.exec(request)?.[1];
    const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
    );
    return socket;
  };
  return { port, upgraded, uri: `ws://127.0.0.1:${port}/amps/json` };
}

/** An unmasked server-to-client WebSocket frame. */
function wsFrame(firstByte: number, payload: Buffer, { masked = false } = {}): Buffer {
  const mask = masked ? Buffer.alloc(4) : Buffer.alloc(0);
  return Buffer.concat([Buffer.from([firstByte, (masked ? 0x80 : 0) | payload.length]), mask, payload]);
}

function closePayload(code: number, reason = ''): Buffer {
  const out = Buffer.alloc(2 + Buffer.byteLength(reason));
  out.writeUInt16BE(code, 0);
  out.write(reason, 2);
  return out;
}

async function connected() {
  const server = await wsServer();
  const accepted = server.next();
  const recorder = new Recorder();
  const connection = await nodeTransport({ highWaterMark: 256 * 1024, lowWaterMark: 64 * 1024 }).connect(
    server.uri,
    recorder,
  );
  const [peer, request] = await accepted;
  return { ...server, recorder, connection, peer, request };
}

describe('ws://', () => {
  it('pause() stops onData until resume(); nothing is lost', async () => {
    const { recorder, connection, peer } = await connected();
    connection.pause?.();
    const payload = frame('{"c":"p","t":"x"}paused');
    for (let i = 0; i < 100; i++) peer.send(payload);
    await new Promise<void>((resolve) => peer.send(payload, () => resolve()));
    for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
    expect(recorder.length).toBe(0);
    connection.resume?.();
    await recorder.waitForBytes(payload.length * 101);
    expect(recorder.length).toBe(payload.length * 101);
    connection.close();
    await recorder.closed;
  });

  it('dials the URI path without credentials or client options, with the configured headers', async () => {
    const server = await wsServer();
    const accepted = server.next();
    const recorder = new Recorder();
    const connection = await nodeTransport({ preflightHeaders: { Cookie: 'a=1' } }).connect(
      `ws://alice:s3cret@127.0.0.1:${server.port}/amps/json?tcp_nodelay=true`,
      recorder,
    );
    const [, request] = await accepted;
    expect(request.url).toBe('/amps/json');
    expect(request.headers.cookie).toBe('a=1');
    expect(request.headers.authorization).toBeUndefined();
    expect(connection.description).toMatch(
      new RegExp(`^ws 127\\.0\\.0\\.1:\\d+ -> 127\\.0\\.0\\.1:${server.port}/amps/json$`),
    );
    connection.close();
    expect(await recorder.closed).toBeUndefined();
  });

  it('offers permessage-deflate only when asked to', async () => {
    const server = await wsServer();
    for (const [options, offered] of [
      [{}, false],
      [{ webSocket: { perMessageDeflate: true } }, true],
    ] as const) {
      const accepted = server.next();
      const recorder = new Recorder();
      const connection = await nodeTransport(options).connect(server.uri, recorder);
      const [peer, request] = await accepted;
      expect(request.headers['sec-websocket-extensions'] !== undefined).toBe(offered);
      const message = once(peer, 'message');
      connection.send(frame('{"c":"p"}compressible compressible compressible'));
      expect(Buffer.from((await message)[0] as Buffer)).toEqual(
        frame('{"c":"p"}compressible compressible compressible'),
      );
      connection.close();
      await recorder.closed;
    }
  });

  it('sends exactly one frame per WebSocket message, however the frames were batched', async () => {
    const { connection, messages, recorder } = await connected();
    const a = frame('{"c":"p","t":"a"}1');
    const b = frame('{"c":"p","t":"b"}22');
    const c = frame('{"c":"p","t":"c"}333');
    connection.send(concat(a, b, c)); // three frames in one buffer
    const d = frame('{"c":"p","t":"d"}split across sends');
    connection.send(d.subarray(0, 2)); // inside the length prefix
    connection.send(d.subarray(2, 11));
    expect(connection.bufferedAmount).toBeGreaterThanOrEqual(11);
    connection.send(d.subarray(11));
    await vi.waitFor(() => expect(messages).toHaveLength(4));
    expect(messages).toEqual([a, b, c, d].map((f) => Buffer.from(f)));
    connection.close();
    await recorder.closed;
  });

  it('treats incoming messages as one byte stream (several frames, or part of one, per message)', async () => {
    const { connection, peer, recorder } = await connected();
    const stream = concat(frame('{"c":"p"}one'), frame('{"c":"p"}two'), frame('{"c":"p"}three'));
    peer.send(stream.subarray(0, 25));
    peer.send(stream.subarray(25, 26));
    peer.send(stream.subarray(26));
    peer.send('text is bytes too');
    expect(await recorder.waitForBytes(stream.length + 17)).toEqual(concat(stream, Buffer.from('text is bytes too')));
    connection.close();
    await recorder.closed;
  });

  it('moves a large frame intact both ways (above ws default maxPayload)', async () => {
    const { connection, peer, messages, recorder } = await connected();
    const body = Buffer.alloc(101 * 1024 * 1024, 0x61);
    const big = frame(body);
    connection.send(big);
    await vi.waitFor(() => expect(messages).toHaveLength(1), { timeout: 15_000 });
    expect(messages[0]?.equals(big)).toBe(true);
    messages.length = 0;
    peer.send(big);
    expect((await recorder.waitForBytes(big.length)).equals(big)).toBe(true);
    connection.close();
    await recorder.closed;
  });

  it('reports backpressure while the server does not read, and drains once it does', async () => {
    const { connection, peer, messages, recorder } = await connected();
    peer.pause();
    const chunk = frame(Buffer.alloc(64 * 1024, 1));
    let sent = 0;
    for (let i = 0; i < 4096 && connection.bufferedAmount <= connection.highWaterMark; i++) {
      connection.send(chunk);
      sent++;
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(connection.bufferedAmount).toBeGreaterThan(connection.highWaterMark);
    let drained = false;
    const whenDrained = connection.whenDrained().then(() => {
      drained = true;
    });
    await new Promise((resolve) => setImmediate(resolve));
    expect(drained).toBe(false);
    peer.resume();
    await whenDrained;
    expect(connection.bufferedAmount).toBeLessThanOrEqual(connection.lowWaterMark);
    await vi.waitFor(() => expect(messages).toHaveLength(sent), { timeout: 10_000 });
    connection.close();
    await recorder.closed;
  });

  it('whenDrained() does not wait for a frame held back until the rest of it is sent', async () => {
    const { connection, messages, recorder } = await connected();
    const big = frame(Buffer.alloc(1024 * 1024, 7));
    const cut = 300 * 1024;
    connection.send(big.subarray(0, cut));
    expect(connection.bufferedAmount).toBeGreaterThan(connection.highWaterMark);
    await connection.whenDrained();
    connection.send(big.subarray(cut));
    await vi.waitFor(() => expect(messages).toHaveLength(1));
    expect(messages[0]?.equals(big)).toBe(true);
    connection.close();
    await recorder.closed;
  });

  it('close() sends a normal close and calls onClose once without an error', async () => {
    const { connection, peer, recorder } = await connected();
    const closing = once(peer, 'close');
    connection.close();
    connection.close();
    expect((await closing)[0]).toBe(1000);
    expect(await recorder.closed).toBeUndefined();
    expect(recorder.closes).toHaveLength(1);
  });

  it('the server closing is a DisconnectedError with the close code', async () => {
    const { peer, recorder } = await connected();
    peer.close(1001, 'going away');
    const error = await recorder.closed;
    expect(DisconnectedError.isInstance(error)).toBe(true);
    expect(error?.message).toContain('WebSocket code 1001, going away');
    expect(recorder.closes).toHaveLength(1);
  });

  it('the server dropping the socket is a ConnectionError', async () => {
    const { peer, recorder } = await connected();
    peer.terminate();
    const error = await recorder.closed;
    expect(ConnectionError.isInstance(error)).toBe(true);
    expect(error?.message).toContain('1006');
  });

  it('refused: ConnectionError naming the redacted URI', async () => {
    const port = await closedPort();
    const error = await failure(nodeTransport().connect(`ws://u:pw@127.0.0.1:${port}/amps`, new Recorder()));
    expect(ConnectionError.isInstance(error)).toBe(true);
    expect(error.message).toContain(`cannot connect to ws://u:***@127.0.0.1:${port}/amps`);
    expect(error.message).toContain('ECONNREFUSED');
  });

  it('a non-WebSocket HTTP answer is a ConnectionError', async () => {
    const server = http.createServer((_request, response) => response.writeHead(404).end());
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    cleanups.push(() => new Promise((resolve) => server.close(resolve)));
    const port = (server.address() as net.AddressInfo).port;
    const error = await failure(nodeTransport().connect(`ws://127.0.0.1:${port}/amps/json`, new Recorder()));
    expect(ConnectionError.isInstance(error)).toBe(true);
    expect(error.message).toContain('Unexpected server response: 404');
  });

  it('times out with TimedOutError when the handshake is never answered, leaving no socket', async () => {
    const tcp = new TcpServer();
    const port = await tcp.listen();
    cleanups.push(() => tcp.close());
    const error = await failure(
      nodeTransport().connect(`ws://127.0.0.1:${port}/amps/json`, new Recorder(), { timeoutMs: 100 }),
    );
    expect(TimedOutError.isInstance(error)).toBe(true);
    const peer = await tcp.accepted();
    peer.resume();
    await once(peer, 'close');
  });

  it('aborts a handshake in progress with AbortError', async () => {
    const tcp = new TcpServer();
    const port = await tcp.listen();
    cleanups.push(() => tcp.close());
    const controller = new AbortController();
    const pending = nodeTransport().connect(`ws://127.0.0.1:${port}/amps/json`, new Recorder(), {
      signal: controller.signal,
    });
    const peer = await tcp.accepted();
    await once(peer, 'data');
    controller.abort();
    expect(AbortError.isInstance(await failure(pending))).toBe(true);
    await once(peer, 'close');
  });

  it('uses the injected WebSocket class', async () => {
    const server = await wsServer();
    const { WebSocket } = await import('ws');
    const constructed: string[] = [];
    class Spy extends WebSocket {
      constructor(url: string, options: import('ws').ClientOptions) {
        super(url, options);
        constructed.push(url);
      }
    }
    const recorder = new Recorder();
    const connection = await nodeTransport({ WebSocket: Spy as typeof WebSocket }).connect(server.uri, recorder);
    expect(constructed).toEqual([server.uri]);
    connection.close();
    await recorder.closed;
  });

  it('close() of a paused connection still reads the close handshake: onClose without waiting out the timeout', async () => {
    const server = await wsServer();
    const accepted = server.next();
    const recorder = new Recorder();
    const connection = await nodeTransport({ closeTimeoutMs: 60_000 }).connect(server.uri, recorder);
    const [peer] = await accepted;
    connection.pause?.();
    await new Promise<void>((resolve) => peer.send(frame('{"c":"p"}unread'), () => resolve()));
    connection.close();
    expect(await recorder.closed).toBeUndefined();
    expect(recorder.length).toBe(0);
  });
});

describe('ws:// backpressure', () => {
  it('whenDrained() resolves once a send that fit under the low-water mark only without its WebSocket header has gone', async () => {
    const server = await wsServer();
    const accepted = server.next();
    const recorder = new Recorder();
    // Far more than the kernel takes at once, so the frame waits in the socket's buffer.
    const low = 16 * 1024 * 1024;
    const connection = await nodeTransport({ highWaterMark: low, lowWaterMark: low }).connect(server.uri, recorder);
    await accepted;
    connection.send(frame(Buffer.alloc(low - 4, 1))); // exactly the mark: ws adds up to 14 bytes
    expect(connection.bufferedAmount).toBeGreaterThan(connection.lowWaterMark);
    await connection.whenDrained(); // waited for ever
    expect(connection.bufferedAmount).toBeLessThanOrEqual(connection.lowWaterMark);
    connection.close();
    await recorder.closed;
  });
});

describe('ws:// messages that arrive slowly', () => {
  it('calls onActivity as the bytes of a message arrive, before onData hands it over whole', async () => {
    const server = await rawWebSocketServer();
    const recorder = new Recorder();
    const activity: number[] = [];
    let onActivity!: () => void;
    const active = new Promise<void>((resolve) => {
      onActivity = () => {
        activity.push(recorder.length);
        resolve();
      };
    });
    const connecting = nodeTransport().connect(server.uri, {
      onData: recorder.onData,
      onClose: recorder.onClose,
      onActivity,
    });
    const socket = await server.upgraded();
    const connection = await connecting;
    const amps = frame('x'.repeat(1000));
    const header = Buffer.from([0x82, 126, amps.length >> 8, amps.length & 0xff]);
    socket.write(Buffer.concat([header, amps.subarray(0, 500)]));
    await active;
    // The heartbeat watchdog hears from the server, though no data has been handed over yet.
    expect(activity[0]).toBe(0);
    socket.write(amps.subarray(500));
    expect((await recorder.waitForBytes(amps.length)).equals(amps)).toBe(true);
    connection.close(new Error('done'));
    await recorder.closed;
  });
});

describe('ws:// against a broken or hostile server', () => {
  it('a server that sends a close frame but never closes TCP is cut off after closeTimeoutMs', async () => {
    const server = await rawWebSocketServer();
    const recorder = new Recorder();
    const connecting = nodeTransport({ closeTimeoutMs: 100 }).connect(server.uri, recorder);
    const peer = await server.upgraded();
    await connecting;
    peer.write(wsFrame(0x88, closePayload(1001, 'going away')));
    const error = await recorder.closed;
    expect(DisconnectedError.isInstance(error)).toBe(true);
    expect(error?.message).toContain('WebSocket code 1001, going away');
  });

  it.each([
    [
      'a masked frame',
      wsFrame(0x82, Buffer.from('abcd'), { masked: true }),
      'Invalid WebSocket frame: MASK must be clear',
    ],
    ['a reserved bit', wsFrame(0xc2, Buffer.from('x')), 'Invalid WebSocket frame: RSV1 must be clear'],
    ['a reserved opcode', wsFrame(0x83, Buffer.from('x')), 'Invalid WebSocket frame: invalid opcode 3'],
    [
      'a continuation with nothing to continue',
      wsFrame(0x80, Buffer.from('x')),
      'Invalid WebSocket frame: invalid opcode 0',
    ],
    ['a fragmented ping', wsFrame(0x09, Buffer.from('x')), 'Invalid WebSocket frame: FIN must be set'],
    [
      'text that is not UTF-8',
      wsFrame(0x81, Buffer.from([0xff, 0xfe])),
      'Invalid WebSocket frame: invalid UTF-8 sequence',
    ],
    [
      'a close code that is not allowed',
      wsFrame(0x88, closePayload(999)),
      'Invalid WebSocket frame: invalid status code 999',
    ],
    ['a length above maxPayload', Buffer.from([0x82, 0x7f, 0, 0, 0, 0x20, 0, 0, 0, 0]), 'Max payload size exceeded'],
  ])(
    '%s, from a server that then keeps TCP open: ConnectionError saying so, cut off after closeTimeoutMs',
    async (_name, bytes, why) => {
      const server = await rawWebSocketServer();
      const recorder = new Recorder();
      const connecting = nodeTransport({ closeTimeoutMs: 100 }).connect(
        `ws://u:s3cret@127.0.0.1:${server.port}/amps/json`,
        recorder,
      );
      const peer = await server.upgraded();
      await connecting;
      peer.write(bytes);
      const error = await recorder.closed;
      expect(ConnectionError.isInstance(error)).toBe(true);
      expect(error?.message).toBe(`connection to ws://u:***@127.0.0.1:${server.port}/amps/json lost: ${why}`);
    },
  );
});
