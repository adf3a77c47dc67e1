import { type AddressInfo, connect, createServer, type Socket } from 'node:net';
import { encodeCommand, InvalidOptionsError, MessageDecoder } from '@amps-ts/core-protocol';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { type FaultProxy, startFaultProxy, startTestServer, type TestServer } from '../src/index.js';
import { isDelivery, TestClient, until } from './helpers.js';

let server: TestServer;
let proxy: FaultProxy;
let open: TestClient[] = [];

beforeEach(async () => {
  server = await startTestServer({ wsPort: false });
  proxy = await startFaultProxy({ target: server.tcpUri() });
});
afterEach(async () => {
  await Promise.all(open.map((c) => c.close()));
  open = [];
  await proxy.close();
  await server.close();
});

async function client(uri: string, name: string): Promise<TestClient> {
  const c = await TestClient.connect(uri);
  open.push(c);
  await c.logon(name);
  return c;
}

it('forwards both ways', async () => {
  const c = await client(proxy.tcpUri(), 'through');
  const sub = await c.subscribe('t');
  c.publish('t', { n: 1 });
  expect((await c.take(isDelivery(sub))).json()).toEqual({ n: 1 });
  expect(proxy.connections).toBe(1);
});

it('slice delivers in small chunks that still decode', async () => {
  proxy.slice(3);
  const socket = connect({ host: proxy.host, port: proxy.port });
  await new Promise((resolve) => socket.once('connect', resolve));
  let chunks = 0;
  const messages: string[] = [];
  const decoder = new MessageDecoder((m) => messages.push(m.command ?? ''));
  socket.on('data', (chunk) => {
    // The receiving side may coalesce slices, but never gets the frame in one piece.
    chunks++;
    decoder.push(chunk);
  });
  socket.write(encodeCommand({ command: 'logon', commandId: '1', clientName: 'sliced', ackType: 'processed' }));
  await until(() => messages.length === 1, 'the logon ack');
  expect(chunks).toBeGreaterThan(5);
  socket.destroy();
});

it('latency delays delivery and keeps order', async () => {
  const c = await client(proxy.tcpUri(), 'slow');
  const sub = await c.subscribe('t');
  proxy.latency(30);
  const start = Date.now();
  for (let n = 1; n <= 5; n++) c.publish('t', { n });
  const got = await c.takeN(5, isDelivery(sub));
  expect(got.map((m) => (m.json() as { n: number }).n)).toEqual([1, 2, 3, 4, 5]);
  // Each direction adds at least the latency (a lower bound, never flaky).
  expect(Date.now() - start).toBeGreaterThanOrEqual(55);
});

it('refuses a latency that is not a finite number of ms >= 0: blackhole() is the fault that holds data for good', () => {
  for (const ms of [Number.POSITIVE_INFINITY, Number.NaN, -1]) {
    expect(() => proxy.latency(ms)).toThrow(InvalidOptionsError);
  }
  expect(() => proxy.latency(Number.POSITIVE_INFINITY)).toThrow(
    'latency must be a finite number of ms >= 0 (blackhole() holds data for good), got Infinity',
  );
});

it('blackhole holds everything until heal, like dropped packets that TCP retransmits', async () => {
  const c = await client(proxy.tcpUri(), 'holed');
  const sub = await c.subscribe('t');
  proxy.blackhole();
  const cid = c.publish('t', { n: 1 }, { ackType: 'processed' });
  const direct = await client(server.tcpUri(), 'direct');
  // The broker never saw it: a direct round trip finds nothing logged.
  for (let i = 0; i < 10; i++) await direct.sync();
  expect(server.stats().txlogLength).toBe(0);
  expect(c.unread).toHaveLength(0);
  proxy.heal();
  await c.ack(cid);
  await c.take(isDelivery(sub));
});

it('a close during a blackhole is lost too: the client hears of it only at heal', async () => {
  const c = await client(proxy.tcpUri(), 'half-open');
  proxy.blackhole();
  server.dropConnections();
  await until(() => server.stats().connections.current === 0, 'the broker dropped the connection');
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
  expect(c.isClosed).toBe(false);
  proxy.heal();
  await c.closed;
});

it.each(['latency', 'slice'] as const)(
  'a close reaches the client after the data sent before it (%s)',
  async (fault) => {
    const c = await TestClient.connect(proxy.tcpUri());
    open.push(c);
    if (fault === 'latency') proxy.latency(30);
    else proxy.slice(1);
    // Before logon: the broker answers with a failure ack and closes at once.
    const cid = c.command({ command: 'publish', topic: 't', data: '{}', ackType: 'processed' });
    expect((await c.ack(cid)).reason).toBe('logon required');
    await c.closed;
    await until(() => proxy.connections === 0, 'the proxy dropped the pair');
  },
);

it('reset kills open connections; new ones work', async () => {
  const c = await client(proxy.tcpUri(), 'reset-me');
  proxy.reset();
  await c.closed;
  await until(() => server.stats().connections.current === 0, 'the broker saw the reset');
  const again = await client(proxy.tcpUri(), 'reset-me');
  expect(again.isClosed).toBe(false);
});

it('pushes back on the sender instead of holding without bound: a blackhole fills TCP buffers, then heal delivers every byte', async () => {
  let received = 0;
  let done!: () => void;
  const all = new Promise<void>((resolve) => {
    done = resolve;
  });
  const sink = createServer((socket) =>
    socket.on('data', (chunk) => {
      received += chunk.length;
      if (received === sent) done();
    }),
  );
  await new Promise<void>((resolve) => sink.listen(0, '127.0.0.1', resolve));
  const toSink = await startFaultProxy({ target: (sink.address() as AddressInfo).port });
  const sender: Socket = connect({ host: '127.0.0.1', port: toSink.port });
  await new Promise((resolve) => sender.once('connect', resolve));
  toSink.blackhole();
  // Write until the sender's own buffer holds 8 MiB: the kernel buffers on the way are full, so
  // nothing more leaves it. A proxy that kept reading would take everything (64 MiB) instead.
  const chunk = new Uint8Array(1024 * 1024).fill(7);
  let sent = 0;
  while (sent < 64 * 1024 * 1024 && sender.writableLength < 8 * 1024 * 1024) {
    sender.write(chunk);
    sent += chunk.length;
    await new Promise((resolve) => setImmediate(resolve));
  }
  expect(sent).toBeLessThan(64 * 1024 * 1024);
  expect(toSink.heldBytes).toBeLessThanOrEqual(1024 * 1024 + chunk.length);
  toSink.heal();
  await all;
  expect(received).toBe(sent);
  sender.destroy();
  await toSink.close();
  await new Promise((resolve) => sink.close(resolve));
});
