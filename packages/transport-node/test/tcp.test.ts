import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import {
  AbortError,
  ConnectionError,
  DisconnectedError,
  InvalidOptionsError,
  InvalidUriError,
  parseUri,
  TimedOutError,
} from '@amps-ts/core-protocol';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { nodeTransport } from '../src/index.js';
import {
  catchUncaught,
  closedPort,
  concat,
  failure,
  frame,
  leakCheck,
  Recorder,
  readBytes,
  TcpServer,
} from './helpers.js';

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

async function server(): Promise<{ tcp: TcpServer; port: number }> {
  const tcp = new TcpServer();
  const port = await tcp.listen();
  cleanups.push(() => tcp.close());
  return { tcp, port };
}

describe('tcp://', () => {
  it('carries bytes both ways and describes the connection', async () => {
    const { tcp, port } = await server();
    const recorder = new Recorder();
    const connection = await nodeTransport().connect(`tcp://127.0.0.1:${port}/amps/json`, recorder);
    expect(connection.description).toMatch(new RegExp(`^tcp 127\\.0\\.0\\.1:\\d+ -> 127\\.0\\.0\\.1:${port}$`));
    const peer = await tcp.accepted();

    const out = concat(frame('{"c":"logon"}'), frame('{"c":"p","t":"x"}hello'));
    connection.send(out);
    expect(await readBytes(peer, out.length)).toEqual(out);

    const back = frame('{"c":"ack"}');
    peer.write(back);
    expect(await recorder.waitForBytes(back.length)).toEqual(back);

    connection.close();
    expect(await recorder.closed).toBeUndefined();
    expect(recorder.closes).toHaveLength(1);
  });

  it('pause() stops onData until resume(), pushing back on the server; nothing is lost', async () => {
    const { tcp, port } = await server();
    const recorder = new Recorder();
    const connection = await nodeTransport().connect(`tcp://127.0.0.1:${port}/amps/json`, recorder);
    const peer = await tcp.accepted();
    connection.pause?.();
    const big = Buffer.alloc(32 * 1024 * 1024, 7);
    // The kernel buffers fill and the server's socket has to hold the rest: backpressure.
    expect(peer.write(big)).toBe(false);
    for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
    expect(recorder.length).toBe(0);
    connection.resume?.();
    await recorder.waitForBytes(big.length);
    expect(recorder.length).toBe(big.length);
    connection.close();
    await recorder.closed;
  });

  it('moves large payloads intact in both directions, in chunks of any size', async () => {
    const { tcp, port } = await server();
    const recorder = new Recorder();
    const connection = await nodeTransport().connect(`tcp://127.0.0.1:${port}/amps/json`, recorder);
    const peer = await tcp.accepted();
    const big = Buffer.alloc(8 * 1024 * 1024);
    for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff;

    const received = readBytes(peer, big.length);
    connection.send(big);
    expect((await received).equals(big)).toBe(true);

    peer.write(big);
    expect((await recorder.waitForBytes(big.length)).equals(big)).toBe(true);
    expect(recorder.chunks.length).toBeGreaterThan(1);
    connection.close();
    await recorder.closed;
  });

  it('sends the first send of a tick at once and the rest of the tick in one writev', async () => {
    const { tcp, port } = await server();
    const writes: string[] = [];
    const transport = nodeTransport({
      netConnect: (options) => {
        const socket = net.connect(options);
        const write = socket._write.bind(socket);
        const writev = socket._writev?.bind(socket);
        socket._write = (chunk, encoding, callback) => {
          writes.push('write');
          write(chunk, encoding, callback);
        };
        socket._writev = (chunks, callback) => {
          writes.push(`writev ${chunks.length}`);
          writev?.(chunks, callback);
        };
        return socket;
      },
    });
    const recorder = new Recorder();
    const connection = await transport.connect(`tcp://127.0.0.1:${port}/amps/json`, recorder);
    const peer = await tcp.accepted();
    const frames = Array.from({ length: 50 }, (_, i) => frame(`{"c":"p","s":${i}}`));
    for (const f of frames) connection.send(f);
    expect(writes).toEqual(['write']);
    const all = concat(...frames);
    expect(await readBytes(peer, all.length)).toEqual(all);
    expect(writes).toEqual(['write', 'writev 49']);
    connection.send(frame('next tick'));
    expect(writes).toEqual(['write', 'writev 49', 'write']);
    connection.close();
    await recorder.closed;
  });

  it('reports backpressure: over the high-water mark while the server does not read, drained once it does', async () => {
    const { tcp, port } = await server();
    const recorder = new Recorder();
    const connection = await nodeTransport({ highWaterMark: 256 * 1024, lowWaterMark: 64 * 1024 }).connect(
      `tcp://127.0.0.1:${port}/amps/json`,
      recorder,
    );
    expect(connection.highWaterMark).toBe(256 * 1024);
    expect(connection.lowWaterMark).toBe(64 * 1024);
    const peer = await tcp.accepted();
    peer.pause();

    const chunk = Buffer.alloc(64 * 1024, 7);
    let sent = 0;
    // The kernel's buffers fill first; a bounded number of ticks later the socket buffers.
    for (let i = 0; i < 4096 && connection.bufferedAmount <= connection.highWaterMark; i++) {
      connection.send(chunk);
      sent += chunk.length;
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(connection.bufferedAmount).toBeGreaterThan(connection.highWaterMark);

    let drained = false;
    const whenDrained = connection.whenDrained().then(() => {
      drained = true;
    });
    await new Promise((resolve) => setImmediate(resolve));
    expect(drained).toBe(false);

    let read = 0;
    peer.on('data', (data: Buffer) => {
      read += data.length;
    });
    peer.resume();
    await whenDrained;
    expect(connection.bufferedAmount).toBeLessThanOrEqual(connection.lowWaterMark);
    await vi.waitFor(() => expect(read).toBe(sent), { timeout: 10_000 });
    expect(connection.bufferedAmount).toBe(0);
    await connection.whenDrained(); // resolves at once when drained
    connection.close();
    await recorder.closed;
  });

  it('close() flushes what was sent, ends the socket and calls onClose once without an error', async () => {
    const { tcp, port } = await server();
    const recorder = new Recorder();
    const connection = await nodeTransport().connect(`tcp://127.0.0.1:${port}/amps/json`, recorder);
    const peer = await tcp.accepted();
    const last = frame('{"c":"logoff"}');
    connection.send(last);
    connection.close();
    connection.close();
    connection.send(frame('{"c":"ignored"}'));
    expect(await readBytes(peer, last.length)).toEqual(last);
    await once(peer, 'end');
    expect(await recorder.closed).toBeUndefined();
    expect(recorder.closes).toEqual([undefined]);
    expect(connection.bufferedAmount).toBe(0);
    await connection.whenDrained();
  });

  it('close(error) destroys at once and hands the error to onClose', async () => {
    const { tcp, port } = await server();
    const recorder = new Recorder();
    const connection = await nodeTransport().connect(`tcp://127.0.0.1:${port}/amps/json`, recorder);
    await tcp.accepted();
    const error = new Error('heartbeat timed out');
    connection.close(error);
    connection.close(new Error('second'));
    expect(await recorder.closed).toBe(error);
    expect(recorder.closes).toHaveLength(1);
  });

  it('a graceful close the peer never answers is cut off by the close timeout', async () => {
    const tcp = new TcpServer(net.createServer({ allowHalfOpen: true }));
    const port = await tcp.listen();
    cleanups.push(() => tcp.close());
    const recorder = new Recorder();
    const connection = await nodeTransport({ closeTimeoutMs: 50 }).connect(`tcp://127.0.0.1:${port}/amps`, recorder);
    const peer = await tcp.accepted();
    connection.close();
    await once(peer, 'end'); // the peer keeps its half open
    expect(await recorder.closed).toBeUndefined();
    expect(recorder.closes).toHaveLength(1);
  });

  it('close(error) during a graceful close the peer never answers destroys at once, as close(error) does', async () => {
    const tcp = new TcpServer(net.createServer({ allowHalfOpen: true }));
    const port = await tcp.listen();
    cleanups.push(() => tcp.close());
    const recorder = new Recorder();
    const connection = await nodeTransport({ closeTimeoutMs: 60_000 }).connect(
      `tcp://127.0.0.1:${port}/amps`,
      recorder,
    );
    const peer = await tcp.accepted();
    connection.close();
    await once(peer, 'end'); // the peer keeps its half open
    const error = new Error('gave up on the close');
    connection.close(error);
    expect(await recorder.closed).toBe(error);
    expect(recorder.closes).toHaveLength(1);
  });

  it('close() of a paused connection still reads the peer closing: onClose without waiting out the timeout', async () => {
    const { tcp, port } = await server();
    const recorder = new Recorder();
    const connection = await nodeTransport({ closeTimeoutMs: 60_000 }).connect(
      `tcp://127.0.0.1:${port}/amps`,
      recorder,
    );
    const peer = await tcp.accepted();
    peer.resume(); // so that it sees the client's end, and ends too
    connection.pause?.();
    // More than a paused socket reads ahead: the peer's end of stream sits behind it.
    peer.write(Buffer.alloc(4 * 1024 * 1024));
    connection.close();
    expect(await recorder.closed).toBeUndefined();
    expect(recorder.length).toBe(0);
  });

  it('a server that ends its side but never reads what is left to send is cut off after closeTimeoutMs', async () => {
    const tcp = new TcpServer(net.createServer({ allowHalfOpen: true }));
    const port = await tcp.listen();
    cleanups.push(() => tcp.close());
    const recorder = new Recorder();
    const connection = await nodeTransport({ closeTimeoutMs: 100 }).connect(`tcp://127.0.0.1:${port}/amps`, recorder);
    const peer = await tcp.accepted();
    connection.send(frame(Buffer.alloc(32 * 1024 * 1024))); // more than the kernel buffers take
    peer.end();
    const error = await recorder.closed;
    expect(DisconnectedError.isInstance(error)).toBe(true);
    expect(recorder.closes).toHaveLength(1);
  });

  it('the server closing is a DisconnectedError; no data after onClose', async () => {
    const { tcp, port } = await server();
    const recorder = new Recorder();
    await nodeTransport().connect(`tcp://alice:s3cret@127.0.0.1:${port}/amps/json`, recorder);
    const peer = await tcp.accepted();
    peer.end(frame('{"c":"bye"}'));
    const error = await recorder.closed;
    expect(DisconnectedError.isInstance(error)).toBe(true);
    expect(error?.message).toContain(`tcp://alice:***@127.0.0.1:${port}`);
    expect(error?.message).not.toContain('s3cret');
    expect(recorder.bytes).toEqual(frame('{"c":"bye"}'));
    expect(recorder.closes).toHaveLength(1);
  });

  it('a send after the server closed its side still reports the close as a DisconnectedError', async () => {
    const { tcp, port } = await server();
    let socket!: net.Socket;
    const transport = nodeTransport({ netConnect: (options) => (socket = net.connect(options)) });
    const recorder = new Recorder();
    const connection = await transport.connect(`tcp://alice:s3cret@127.0.0.1:${port}/amps/json`, recorder);
    (await tcp.accepted()).end();
    await once(socket, 'end');
    // Node has ended our side too, but the socket is not closed yet: a heartbeat could go out now.
    expect(socket.writableEnded && !socket.destroyed).toBe(true);
    connection.send(frame('{"c":"heartbeat"}'));
    const error = await recorder.closed;
    expect(DisconnectedError.isInstance(error), String(error)).toBe(true);
    expect(error?.message).toBe(`tcp://alice:***@127.0.0.1:${port}/amps/json closed the connection`);
    expect(recorder.closes).toHaveLength(1);
  });

  it('a reset by the server is a ConnectionError', async () => {
    const { tcp, port } = await server();
    const recorder = new Recorder();
    await nodeTransport().connect(`tcp://127.0.0.1:${port}/amps/json`, recorder);
    const peer = await tcp.accepted();
    peer.resetAndDestroy();
    const error = await recorder.closed;
    expect(ConnectionError.isInstance(error)).toBe(true);
    expect(error?.message).toMatch(/lost: .*ECONNRESET/);
    expect(recorder.closes).toHaveLength(1);
  });

  it('an onData handler that throws closes the connection with that error', async () => {
    const { tcp, port } = await server();
    const failure = new Error('handler bug');
    let closedWith: Error | undefined;
    const closed = new Promise<void>((resolve) => {
      void nodeTransport().connect(`tcp://127.0.0.1:${port}/amps`, {
        onData: () => {
          throw failure;
        },
        onClose: (error) => {
          closedWith = error;
          resolve();
        },
      });
    });
    (await tcp.accepted()).write('x');
    await closed;
    expect(closedWith).toBe(failure);
  });

  it('an onClose handler that throws leaves no socket or timer behind, and its error is not swallowed', async () => {
    const { tcp, port } = await server();
    const uncaught = catchUncaught();
    cleanups.push(() => uncaught.restore());
    const failure = new Error('handler bug');
    // The server's end arms the close timer: the throw must not leave it running (afterEach checks).
    await nodeTransport({ closeTimeoutMs: 60_000 }).connect(`tcp://127.0.0.1:${port}/amps`, {
      onData: () => {},
      onClose: () => {
        throw failure;
      },
    });
    (await tcp.accepted()).end();
    expect(await uncaught.next).toBe(failure);
  });

  it('refused: ConnectionError naming the redacted URI', async () => {
    const port = await closedPort();
    const error = await failure(
      nodeTransport().connect(`tcp://alice:s3cret@127.0.0.1:${port}/amps/json`, new Recorder()),
    );
    expect(ConnectionError.isInstance(error)).toBe(true);
    expect(error.message).toContain(`cannot connect to tcp://alice:***@127.0.0.1:${port}/amps/json`);
    expect(error.message).toContain('ECONNREFUSED');
    expect(error.message).not.toContain('s3cret');
    expect((error as ConnectionError).isRetryable).toBe(true);
  });

  it('an aborted signal rejects with AbortError before dialing', async () => {
    const dial = vi.fn((options: net.NetConnectOpts) => net.connect(options));
    const controller = new AbortController();
    controller.abort(new Error('shutting down'));
    const error = await failure(
      nodeTransport({ netConnect: dial }).connect('tcp://127.0.0.1:1/amps', new Recorder(), {
        signal: controller.signal,
      }),
    );
    expect(AbortError.isInstance(error)).toBe(true);
    expect(dial).not.toHaveBeenCalled();
  });

  it('aborting while the HTTP preflight waits destroys the socket', async () => {
    const { tcp, port } = await server();
    const controller = new AbortController();
    const pending = nodeTransport().connect(`tcp://127.0.0.1:${port}/amps?http_preflight=true`, new Recorder(), {
      signal: controller.signal,
    });
    const peer = await tcp.accepted();
    await readBytes(peer, 1);
    controller.abort();
    const error = await failure(pending);
    expect(AbortError.isInstance(error)).toBe(true);
    await once(peer, 'close');
  });

  it('times out with TimedOutError when the preflight is never answered', async () => {
    const { tcp, port } = await server();
    const error = await failure(
      nodeTransport().connect(`tcp://u:pw@127.0.0.1:${port}/amps?http_preflight=true`, new Recorder(), {
        timeoutMs: 100,
      }),
    );
    expect(TimedOutError.isInstance(error)).toBe(true);
    expect(error.message).toBe(
      `connecting to tcp://u:***@127.0.0.1:${port}/amps?http_preflight=true timed out after 100 ms`,
    );
    const peer = await tcp.accepted();
    peer.resume();
    await once(peer, 'close');
  });
});

describe('http_preflight', () => {
  async function preflightServer(response: (request: string) => Buffer | string) {
    const { tcp, port } = await server();
    const request = (async () => {
      const peer = await tcp.accepted();
      let text = '';
      while (!text.includes('\r\n\r\n')) text += ((await once(peer, 'data')) as [Buffer])[0].toString('latin1');
      peer.write(response(text));
      return { text, peer };
    })();
    return { port, request };
  }

  it('sends GET /amps with Host and the configured headers, then streams AMPS bytes (including those after the response)', async () => {
    const early = frame('{"c":"ack","a":"processed"}');
    const { port, request } = await preflightServer(() =>
      concat(Buffer.from('HTTP/1.1 101 Switching Protocols\r\nUpgrade: amps\r\n\r\n'), early),
    );
    const recorder = new Recorder();
    const connection = await nodeTransport({ preflightHeaders: { Cookie: 'a=1', 'X-Route': 'amps-1' } }).connect(
      `tcp://127.0.0.1:${port}/amps/json?http_preflight=true`,
      recorder,
    );
    const { text, peer } = await request;
    expect(text).toBe(`GET /amps HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nCookie: a=1\r\nX-Route: amps-1\r\n\r\n`);
    expect(await recorder.waitForBytes(early.length)).toEqual(early);

    const out = frame('{"c":"logon"}');
    connection.send(out);
    expect(await readBytes(peer, out.length)).toEqual(out);
    peer.write(frame('{"c":"p"}'));
    expect(await recorder.waitForBytes(early.length + frame('{"c":"p"}').length)).toEqual(
      concat(early, frame('{"c":"p"}')),
    );
    connection.close();
    await recorder.closed;
  });

  it('a refusal (status 400 and above) is a ConnectionError quoting the status line', async () => {
    const { port } = await preflightServer(() => 'HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n');
    const error = await failure(
      nodeTransport().connect(`tcp://127.0.0.1:${port}/amps?http_preflight=true`, new Recorder()),
    );
    expect(ConnectionError.isInstance(error)).toBe(true);
    expect(error.message).toContain("HTTP preflight was refused: 'HTTP/1.1 403 Forbidden'");
  });

  it('a response that is not HTTP/1.x is a ConnectionError', async () => {
    const { port } = await preflightServer(() => 'SSH-2.0-OpenSSH\r\n\r\n');
    const error = await failure(
      nodeTransport().connect(`tcp://127.0.0.1:${port}/amps?http_preflight=true`, new Recorder()),
    );
    expect(ConnectionError.isInstance(error)).toBe(true);
    expect(error.message).toContain("expected an HTTP/1.x response to the HTTP preflight, got 'SSH-2.0-OpenSSH'");
  });
});

describe('unix://', () => {
  it('connects to a Unix socket given as the URI path or the path option', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'amps-ts-unix-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, 'amps.sock');
    const tcp = new TcpServer();
    await tcp.listenPath(path);
    cleanups.push(() => tcp.close());

    for (const [index, uri] of [`unix://${path}/amps/json`, `unix://localhost/amps/json?path=${path}`].entries()) {
      const recorder = new Recorder();
      const connection = await nodeTransport().connect(uri, recorder);
      expect(connection.description).toBe(`unix ${path}`);
      const peer = await tcp.accepted(index);
      connection.send(frame('ping'));
      expect(await readBytes(peer, 8)).toEqual(frame('ping'));
      peer.write(frame('pong'));
      expect(await recorder.waitForBytes(8)).toEqual(frame('pong'));
      peer.destroy();
      expect(DisconnectedError.isInstance(await recorder.closed)).toBe(true);
    }
  });

  it('a missing socket file is a ConnectionError', async () => {
    const error = await failure(
      nodeTransport().connect('unix:///nonexistent/amps-ts/amps.sock/amps/json', new Recorder()),
    );
    expect(ConnectionError.isInstance(error)).toBe(true);
    expect(error.message).toContain('ENOENT');
  });
});

describe('socket options from the URI', () => {
  function spyingTransport(logger?: { warn: (message: string) => void }) {
    const calls: Array<[string, unknown]> = [];
    const transport = nodeTransport({
      logger,
      netConnect: (options) => {
        calls.push(['options', options]);
        const socket = net.connect(options);
        const setNoDelay = socket.setNoDelay.bind(socket);
        const setKeepAlive = socket.setKeepAlive.bind(socket);
        socket.setNoDelay = (v) => {
          calls.push(['noDelay', v]);
          return setNoDelay(v);
        };
        socket.setKeepAlive = (v, d) => {
          calls.push(['keepAlive', v]);
          return setKeepAlive(v, d);
        };
        return socket;
      },
    });
    return { transport, calls };
  }

  it('tcp_nodelay defaults to on and follows the URI; tcp_keepalive is applied', async () => {
    const { port } = await server();
    const { transport, calls } = spyingTransport();
    const first = await transport.connect(`tcp://127.0.0.1:${port}/amps`, new Recorder());
    expect(calls.filter(([k]) => k !== 'options')).toEqual([['noDelay', true]]);
    calls.length = 0;
    const second = await transport.connect(
      `tcp://127.0.0.1:${port}/amps?tcp_nodelay=false&tcp_keepalive=true`,
      new Recorder(),
    );
    expect(calls.filter(([k]) => k !== 'options')).toEqual([
      ['noDelay', false],
      ['keepAlive', true],
    ]);
    first.close();
    second.close();
  });

  it('bind sets the local address (and port)', async () => {
    const { tcp, port } = await server();
    const recorder = new Recorder();
    const connection = await nodeTransport().connect(`tcp://127.0.0.1:${port}/amps?bind=127.0.0.2`, recorder);
    expect(connection.description).toMatch(/^tcp 127\.0\.0\.2:\d+ -> /);
    expect((await tcp.accepted()).remoteAddress).toBe('127.0.0.2');
    connection.close();
    await recorder.closed;

    const spy = spyingTransport();
    const withPort = await spy.transport.connect(`tcp://127.0.0.1:${port}/amps?bind=127.0.0.2:0`, new Recorder());
    expect(spy.calls[0]?.[1]).toMatchObject({ localAddress: '127.0.0.2', localPort: 0 });
    withPort.close();
  });

  it('ip_protocol_prefer resolves through a lookup that puts the preferred family first and falls back', async () => {
    const { port } = await server();
    const { transport, calls } = spyingTransport();
    const connection = await transport.connect(`tcp://localhost:${port}/amps?ip_protocol_prefer=ipv6`, new Recorder());
    // This machine's localhost is IPv4 only: the IPv4 address is the fallback.
    expect(connection.description).toMatch(new RegExp(`-> 127\\.0\\.0\\.1:${port}$`));
    const lookup = (calls[0]?.[1] as net.TcpNetConnectOpts | undefined)?.lookup;
    expect(lookup).toBeTypeOf('function');
    connection.close();
  });

  it('warns through the logger about options Node cannot apply', async () => {
    const { port } = await server();
    const warn = vi.fn();
    const connection = await nodeTransport({ logger: { warn } }).connect(
      `tcp://127.0.0.1:${port}/amps?tcp_sndbuf=100000&tcp_rcvbuf=100000`,
      new Recorder(),
    );
    expect(warn).toHaveBeenCalledWith('Node.js cannot apply tcp_sndbuf, tcp_rcvbuf; ignored', {
      uri: `tcp://127.0.0.1:${port}/amps?tcp_sndbuf=100000&tcp_rcvbuf=100000`,
      ignored: ['tcp_sndbuf', 'tcp_rcvbuf'],
    });
    connection.close();
  });
});

describe('bad input', () => {
  it('nodeTransport() rejects bad options with InvalidOptionsError', () => {
    const cases: unknown[] = [
      { highWaterMark: 0 },
      { highWaterMark: 1.5 },
      { lowWaterMark: -1 },
      { highWaterMark: 1000, lowWaterMark: 2000 },
      { connectTimeoutMs: 0 },
      { closeTimeoutMs: -1 },
      // setTimeout would fire these at once.
      { connectTimeoutMs: 2 ** 31 },
      { closeTimeoutMs: 2 ** 31 },
      { preflightHeaders: { 'Bad Name': 'x' } },
      { preflightHeaders: { Cookie: 'a=1\r\nX-Injected: 1' } },
      // A string would be read as headers named 0, 1, 2...
      { preflightHeaders: 'Cookie: a=1' },
      { preflightHeaders: [['Cookie', 'a=1']] },
      { preflightHeaders: null },
      { webSocket: 'perMessageDeflate' },
      { webSocket: null },
      { webSocket: { headers: 'Cookie: a=1' } },
      { tls: { servername: 42 } },
      { tls: { rejectUnauthorized: 'no' } },
      // Each would fail every connect: untyped on tcps://, as a retryable ConnectionError on wss://.
      { tls: { minVersion: 'TLSv9' } },
      { tls: { ca: 42 } },
      { tls: { cert: 'not a certificate', key: 'not a key' } },
      { tls: { passphrase: 42 } },
      { netConnect: 'net' },
    ];
    for (const options of cases) {
      expect(() => nodeTransport(options as never), JSON.stringify(options)).toThrow(InvalidOptionsError);
    }
    expect(() => nodeTransport({ preflightHeaders: 'Cookie: a=1' as never })).toThrow(
      'nodeTransport: preflightHeaders must be an object, got string',
    );
    expect(() => nodeTransport({ highWaterMark: 1000 })).not.toThrow();
  });

  it('connect() rejects what it cannot honour with typed errors, before opening anything', async () => {
    const dial = vi.fn((options: net.NetConnectOpts) => net.connect(options));
    const transport = nodeTransport({ netConnect: dial });
    const recorder = new Recorder();
    await expect(transport.connect('tcp://h:9007/amps?compression=zlib', recorder)).rejects.toThrow(
      /compression=zlib is not supported by @amps-ts\/transport-node/,
    );
    await expect(transport.connect('tcp://h:9007/amps?compression=zlib', recorder)).rejects.toBeInstanceOf(
      InvalidUriError,
    );
    await expect(transport.connect('http://h:80/amps', recorder)).rejects.toBeInstanceOf(InvalidUriError);
    await expect(transport.connect('tcp://h:9007/amps', {} as never)).rejects.toBeInstanceOf(InvalidOptionsError);
    await expect(transport.connect(parseUri('tcp://h:9007/amps'), recorder, { timeoutMs: 0 })).rejects.toBeInstanceOf(
      InvalidOptionsError,
    );
    await expect(transport.connect('tcp://h:9007/amps', recorder, { timeoutMs: 2 ** 31 })).rejects.toBeInstanceOf(
      InvalidOptionsError,
    );
    expect(dial).not.toHaveBeenCalled();
    expect(transport.schemes).toEqual(['tcp', 'tcps', 'ws', 'wss', 'unix']);
  });

  it('a bind that is not an IP address (or has a port above 65535) is an InvalidUriError, before dialing', async () => {
    const dial = vi.fn((options: net.NetConnectOpts) => net.connect(options));
    const transport = nodeTransport({ netConnect: dial });
    for (const scheme of ['tcp', 'ws']) {
      for (const bind of ['1.2.3', '...', '127.0.0.1:70000', '[::1]:65536']) {
        const error = await failure(
          transport.connect(`${scheme}://u:s3cret@127.0.0.1:1/amps?bind=${bind}`, new Recorder()),
        );
        expect(InvalidUriError.isInstance(error), `${scheme} bind=${bind}: ${error}`).toBe(true);
        expect(error.message).toBe(
          `cannot connect to ${scheme}://u:***@127.0.0.1:1/amps?bind=${bind}: bind must be an IP address, optionally with :port ([address]:port for IPv6), got '${bind}'`,
        );
      }
    }
    expect(dial).not.toHaveBeenCalled();
  });
});

describe('the password in the URI', () => {
  it('is not shown by util.inspect or JSON of the connection', async () => {
    const { port } = await server();
    const recorder = new Recorder();
    const connection = await nodeTransport().connect(`tcp://alice:Zq7xSECRET@127.0.0.1:${port}/amps/json`, recorder);
    cleanups.push(async () => {
      connection.close(new Error('test over'));
      await recorder.closed;
    });
    const shown = [inspect(connection, { depth: 8, showHidden: true, getters: true }), JSON.stringify(connection)];
    expect(shown.join('\n')).not.toContain('Zq7xSECRET');
  });
});
