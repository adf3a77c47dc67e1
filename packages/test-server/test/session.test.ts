import { connect } from 'node:net';
import { encodeCommand, InvalidOptionsError, type Message, MessageDecoder } from '@amps-ts/core-protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { startTestServer, TestServer, type TestServerOptions } from '../src/index.js';
import { isDelivery, ManualEnvironment, TestClient, type Transport, transports, until } from './helpers.js';

let servers: TestServer[] = [];
let open: TestClient[] = [];

afterEach(async () => {
  await Promise.all(open.map((c) => c.close()));
  await Promise.all(servers.map((s) => s.close()));
  open = [];
  servers = [];
});

async function serve(options: TestServerOptions = {}): Promise<TestServer> {
  const server = await startTestServer(options);
  servers.push(server);
  return server;
}

async function client(server: TestServer, transport: Transport): Promise<TestClient> {
  const c = await TestClient.connectTo(server, transport);
  open.push(c);
  return c;
}

describe.each(transports)('sessions over %s', (transport) => {
  it('heartbeat: sends a heartbeat after N s of silence, and closes a client silent for 2N', async () => {
    const env = new ManualEnvironment();
    const server = await serve({ environment: env });
    const c = await client(server, transport);
    await c.logon('hb');
    const cid = c.command({ command: 'heartbeat', options: 'start,1', ackType: 'processed' });
    expect((await c.ack(cid)).status).toBe('success');
    env.advance(1000);
    await c.take((m) => m.command === 'heartbeat', 'server heartbeat');
    c.send({ command: 'heartbeat', options: 'beat' });
    await c.sync();
    env.advance(1000);
    // The beat refreshed the watchdog; the next silence is what closes it.
    await c.take((m) => m.command === 'heartbeat', 'second heartbeat');
    expect(c.isClosed).toBe(false);
    env.advance(2000);
    await c.closed;
  });

  it('heartbeat: a check run late (this process was blocked) gives the client an interval to answer', async () => {
    const env = new ManualEnvironment();
    const server = await serve({ environment: env });
    const c = await client(server, transport);
    await c.logon('hb-stall');
    const cid = c.command({ command: 'heartbeat', options: 'start,1', ackType: 'processed' });
    expect((await c.ack(cid)).status).toBe('success');
    // A client in the same process could not beat while it was blocked either.
    env.stall(5000);
    env.advance(0);
    await c.take((m) => m.command === 'heartbeat', 'server heartbeat');
    expect(c.isClosed).toBe(false);
    c.send({ command: 'heartbeat', options: 'beat' });
    await c.sync();
    env.advance(1999);
    await c.take((m) => m.command === 'heartbeat', 'next heartbeat');
    expect(c.isClosed).toBe(false);
    // Silent after that, it is closed as any other.
    env.advance(1);
    await c.closed;
  });

  it('heartbeat stop ends the watchdog; timers are cleared on close', async () => {
    const env = new ManualEnvironment();
    const server = await serve({ environment: env, heartbeat: { minIntervalS: 2 } });
    const c = await client(server, transport);
    await c.logon('hb-stop');
    c.send({ command: 'heartbeat', options: 'start,1' });
    await c.sync();
    expect(env.pending).toBe(1);
    c.send({ command: 'heartbeat', options: 'stop' });
    await c.sync();
    expect(env.pending).toBe(0);
    env.advance(10_000);
    expect(c.isClosed).toBe(false);
    c.send({ command: 'heartbeat', options: 'start,1' });
    await c.sync();
    // minIntervalS raised the interval to 2 s: nothing at 1 s.
    env.advance(1000);
    await c.sync();
    expect(c.unread.filter((m) => m.command === 'heartbeat')).toHaveLength(0);
    await server.close();
    expect(env.pending).toBe(0);
  });

  it('user/password auth: failure with reason auth failure, then a good logon on the same connection', async () => {
    const server = await serve({ auth: { users: { alice: 'secret', bob: 'pw' } } });
    const c = await client(server, transport);
    expect(await c.logon('auth-1', { userId: 'alice', password: 'wrong' })).toMatchObject({
      status: 'failure',
      reason: 'auth failure',
    });
    expect(await c.logon('auth-1', { userId: 'nobody', password: 'secret' })).toMatchObject({ status: 'failure' });
    const good = await c.logon('auth-1', { userId: 'alice', password: 'secret' });
    expect(good).toMatchObject({ status: 'success' });
    expect(good.reason).toBeUndefined();
    // Same name, another user: refused, and the first connection stays.
    const other = await client(server, transport);
    expect(await other.logon('auth-1', { userId: 'bob', password: 'pw' })).toMatchObject({
      status: 'failure',
      reason: 'name in use',
    });
    await other.closed;
    expect(c.isClosed).toBe(false);
  });

  it('challenge auth answers retry with a token, then accepts the token', async () => {
    const server = await serve({ auth: { users: { alice: 'secret' }, challenge: true } });
    const c = await client(server, transport);
    const retry = await c.logon('ch', { userId: 'alice', password: 'secret' });
    expect(retry).toMatchObject({ status: 'retry', userId: 'alice' });
    expect(retry.password).toMatch(/^[0-9a-f]{24}$/);
    expect(await c.logon('ch', { userId: 'alice', password: 'stale' })).toMatchObject({
      status: 'failure',
      reason: 'auth failure',
    });
    const again = await c.logon('ch', { userId: 'alice', password: 'secret' });
    expect(await c.logon('ch', { userId: 'alice', password: again.password })).toMatchObject({ status: 'success' });
  });

  it('conflates persisted acks by default, every second as AMPS: one ack without cid whose s covers the earlier ones', async () => {
    const env = new ManualEnvironment();
    const server = await serve({ environment: env });
    const c = await client(server, transport);
    await c.logon('conflate');
    for (let s = 1; s <= 3; s++) c.publish('c', { s }, { sequence: s, ackType: 'persisted' });
    await c.sync();
    env.advance(999);
    await c.sync();
    expect(c.unread.filter((m) => m.ackType === 'persisted')).toHaveLength(0);
    env.advance(1);
    const ack = await c.take((m) => m.ackType === 'persisted');
    expect(ack).toMatchObject({ commandId: undefined, sequence: 3, status: 'success' });
    // The logon option ack_conflation=0 turns it off for that client.
    const d = await client(server, transport);
    await d.logon('no-conflate', { options: 'ack_conflation=0' });
    const cid = d.publish('c', {}, { sequence: 1, ackType: 'persisted' });
    expect((await d.ack(cid, 'persisted')).sequence).toBe(1);
  });

  it('conflation reports a failure on its own, after a success for what came before it', async () => {
    const env = new ManualEnvironment();
    const server = await serve({ environment: env, ackConflationMs: 50 });
    const c = await client(server, transport);
    await c.logon('conflate-failure');
    c.publish('c', { s: 1 }, { sequence: 1, ackType: 'persisted' });
    c.publish('c', { s: 2 }, { sequence: 2, ackType: 'persisted' });
    c.publish('/AMPS/reserved', { s: 3 }, { sequence: 3, ackType: 'persisted' });
    c.publish('c', { s: 4 }, { sequence: 4, ackType: 'persisted' });
    c.publish('c', { s: 5 }, { sequence: 5, ackType: 'persisted' });
    await c.sync();
    env.advance(50);
    await c.take((m) => m.ackType === 'persisted' && m.sequence === 5, 'success@5');
    // As AMPS's example: success@2, failure@3, success@5.
    const acks = c.received.filter((m) => m.ackType === 'persisted');
    expect(acks.map((m) => [m.status, m.sequence])).toEqual([
      ['success', 2],
      ['failure', 3],
      ['success', 5],
    ]);
  });

  it("a flush's persisted ack comes after the conflated ack for the publishes before it, not a conflation interval ahead", async () => {
    const env = new ManualEnvironment();
    const server = await serve({ environment: env });
    const c = await client(server, transport);
    await c.logon('conflate-flush');
    for (let s = 1; s <= 3; s++) c.publish('c', { s }, { sequence: s, ackType: 'persisted' });
    const flush = c.command({ command: 'flush', ackType: 'persisted' });
    await c.ack(flush, 'persisted');
    const acks = c.received.filter((m) => m.ackType === 'persisted');
    expect(acks.map((m) => [m.commandId, m.status, m.sequence])).toEqual([
      [undefined, 'success', 3],
      [flush, 'success', undefined],
    ]);
  });

  it('a malformed frame closes that connection only, with a log line', async () => {
    const warnings: string[] = [];
    const server = await serve({ logger: { warn: (message) => warnings.push(message) } });
    const bystander = await client(server, transport);
    await bystander.logon('bystander');
    const sub = await bystander.subscribe('still');
    const bad = await client(server, transport);
    bad.writeRaw(new Uint8Array([0, 0, 0, 5, 0x6e, 0x6f, 0x70, 0x65, 0x21])); // "nope!"
    await bad.closed;
    expect(warnings).toContain('closing connection: bad frame');
    const zero = await client(server, transport);
    zero.writeRaw(new Uint8Array([0, 0, 0, 0]));
    await zero.closed;
    bystander.publish('still', { ok: true });
    expect((await bystander.take(isDelivery(sub))).json()).toEqual({ ok: true });
    expect(server.stats().badFrames).toBe(2);
  });

  it('an oversized frame closes that connection only, with a log line naming the limit', async () => {
    const warnings: Array<[string, Record<string, unknown> | undefined]> = [];
    const server = await serve({ maxFrameBytes: 1024, logger: { warn: (m, f) => warnings.push([m, f]) } });
    const bystander = await client(server, transport);
    await bystander.logon('big-bystander');
    const big = await client(server, transport);
    await big.logon('big');
    const cid = big.command({ command: 'flush', ackType: 'processed' });
    big.publish('t', { blob: 'x'.repeat(2000) });
    // What came before the oversized frame is still answered.
    expect((await big.ack(cid)).status).toBe('success');
    await big.closed;
    await bystander.sync();
    expect(warnings).toContainEqual([
      'closing connection: frame too large',
      expect.objectContaining({ frameBytes: expect.any(Number), maxFrameBytes: 1024, clientName: 'big' }),
    ]);
    expect(server.stats().badFrames).toBe(1);
  });

  it('rejects unknown commands and a second logon, keeping the connection', async () => {
    const server = await serve();
    const c = await client(server, transport);
    await c.logon('misc');
    const again = await c.logon('misc');
    expect(again).toMatchObject({ status: 'failure', reason: 'already logged on' });
    const cid = c.command({ command: 'start_timer', ackType: 'processed' });
    expect(await c.ack(cid)).toMatchObject({ status: 'failure', reason: 'unknown command' });
    await c.sync();
  });
});

it('wsFrames batch sends several frames in one WebSocket message', async () => {
  const server = await serve({ wsFrames: 'batch' });
  const c = await client(server, 'ws');
  await c.logon('batched');
  const sub = await c.subscribe('b');
  for (let i = 0; i < 5; i++) c.publish('b', { i });
  const got = await c.takeN(5, isDelivery(sub));
  expect(got.map((m) => (m.json() as { i: number }).i)).toEqual([0, 1, 2, 3, 4]);
});

it('accepts a stream split anywhere and many frames in one write (TCP)', async () => {
  const server = await serve();
  const c = await client(server, 'tcp');
  await c.logon('stream');
  const sub = await c.subscribe('s');
  const frames = Buffer.concat(
    Array.from({ length: 20 }, (_, i) => encodeCommand({ command: 'publish', topic: 's', data: `{"i":${i}}` })),
  );
  const raw = connect({ host: '127.0.0.1', port: server.tcpPort });
  await new Promise((resolve) => raw.once('connect', resolve));
  raw.write(encodeCommand({ command: 'logon', clientName: 'raw' }));
  // One byte at a time for the first frame, then the rest at once.
  for (let i = 0; i < 30; i++) raw.write(frames.subarray(i, i + 1));
  raw.write(frames.subarray(30));
  const got = await c.takeN(20, isDelivery(sub));
  expect(got.map((m) => (m.json() as { i: number }).i)).toEqual(Array.from({ length: 20 }, (_, i) => i));
  raw.destroy();
});

it('an oversized frame over TCP ends the connection gracefully: a FIN, no reset, however much follows', async () => {
  const server = await serve({ maxFrameBytes: 1024 });
  const raw = connect({ host: '127.0.0.1', port: server.tcpPort });
  const events: string[] = [];
  raw.on('end', () => events.push('end'));
  raw.on('error', (error: NodeJS.ErrnoException) => events.push(`error ${error.code}`));
  const closed = new Promise<boolean>((resolve) => raw.once('close', resolve));
  const acks: Message[] = [];
  const decoder = new MessageDecoder((m) => acks.push(m));
  raw.on('data', (chunk) => decoder.push(chunk));
  raw.write(encodeCommand({ command: 'logon', commandId: '1', clientName: 'huge', ackType: 'processed' }));
  // 4 MiB: most of it reaches the broker after it has refused the frame.
  raw.write(encodeCommand({ command: 'publish', topic: 't', data: 'x'.repeat(4 * 1024 * 1024) }));
  expect(await closed).toBe(false); // no error
  expect(events).toEqual(['end']);
  expect(acks.map((m) => [m.commandId, m.status])).toEqual([['1', 'success']]);
  await until(() => server.stats().connections.current === 0, 'the broker closed its side');
});

it('an oversized frame over TCP: output for the refused connection after its end does not reset it', async () => {
  const env = new ManualEnvironment(); // the close timer does not fire during the test
  const server = await serve({ environment: env, maxFrameBytes: 1024 });
  const publisher = await client(server, 'tcp');
  await publisher.logon('after-end-publisher');
  const raw = connect({ host: '127.0.0.1', port: server.tcpPort, allowHalfOpen: true });
  const events: string[] = [];
  raw.on('end', () => events.push('end'));
  raw.on('error', (error: NodeJS.ErrnoException) => events.push(`error ${error.code}`));
  const closed = new Promise<boolean>((resolve) => raw.once('close', resolve));
  const ended = new Promise((resolve) => raw.once('end', resolve));
  const acks: Message[] = [];
  const decoder = new MessageDecoder((m) => acks.push(m));
  raw.on('data', (chunk) => decoder.push(chunk));
  raw.write(encodeCommand({ command: 'logon', commandId: '1', clientName: 'after-end', ackType: 'processed' }));
  raw.write(encodeCommand({ command: 'subscribe', commandId: '2', topic: 't', ackType: 'processed' }));
  // The start of a 4 MiB frame: the broker refuses it and ends its side; the client goes on sending.
  const big = encodeCommand({ command: 'publish', topic: 'big', data: 'x'.repeat(4 * 1024 * 1024) });
  raw.write(big.subarray(0, 64 * 1024));
  await ended;
  // A delivery for the refused connection's subscription, after the broker's end.
  const cid = publisher.publish('t', { n: 1 }, { ackType: 'processed' });
  await publisher.ack(cid);
  await new Promise((resolve) => raw.write(big.subarray(64 * 1024), resolve));
  raw.end();
  expect(await closed).toBe(false); // no error
  expect(events).toEqual(['end']);
  expect(acks.map((m) => [m.commandId, m.status])).toEqual([
    ['1', 'success'],
    ['2', 'success'],
  ]);
  await until(() => server.stats().connections.current === 1, 'the broker closed the refused connection');
});

describe('WebSocket close codes', () => {
  async function rawWs(server: TestServer): Promise<{ ws: WebSocket; closed: Promise<[number, string]> }> {
    const ws = new WebSocket(server.wsUri());
    ws.on('error', () => {});
    const closed = new Promise<[number, string]>((resolve) =>
      ws.once('close', (code, reason) => resolve([code, reason.toString()])),
    );
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    return { ws, closed };
  }

  it('an oversized frame: close 1009 (message too big) with a reason naming the limit', async () => {
    const server = await serve({ maxFrameBytes: 1024 });
    const { ws, closed } = await rawWs(server);
    ws.send(encodeCommand({ command: 'logon', clientName: 'big-ws' }));
    ws.send(encodeCommand({ command: 'publish', topic: 't', data: 'x'.repeat(100_000) }));
    const [code, reason] = await closed;
    expect(code).toBe(1009);
    expect(reason).toMatch(/^frame of \d+ bytes exceeds maxFrameBytes \(1024\)$/);
  });

  it('a WebSocket message above 2 * maxFrameBytes + 1024 and 64 MiB: close 1009 and a log line', async () => {
    const warnings: Array<[string, Record<string, unknown> | undefined]> = [];
    const server = await serve({ maxFrameBytes: 1024, logger: { warn: (m, f) => warnings.push([m, f]) } });
    const { ws, closed } = await rawWs(server);
    // Smaller messages reach the broker, which closes with a reason; this one the library refuses.
    ws.send(encodeCommand({ command: 'publish', topic: 't', data: 'x'.repeat(64 * 1024 * 1024) }));
    expect((await closed)[0]).toBe(1009);
    expect(warnings).toContainEqual([
      'closing connection: frame too large',
      expect.objectContaining({ maxFrameBytes: 1024, maxWebSocketMessageBytes: 64 * 1024 * 1024 }),
    ]);
    expect(server.stats().badFrames).toBe(1);
  });

  it('a WebSocket message the library refuses: a client that never closes is cut off after closeTimeoutMs', async () => {
    const env = new ManualEnvironment();
    const server = await serve({ environment: env, maxFrameBytes: 1024, closeTimeoutMs: 500 });
    // A hand-made WebSocket client that never answers the close (allowHalfOpen: nor the FIN).
    const raw = connect({ host: '127.0.0.1', port: Number(new URL(server.wsUri()).port), allowHalfOpen: true });
    raw.on('error', () => {});
    let handshake = '';
    const upgraded = new Promise<void>((resolve) => {
      const onData = (chunk: Buffer) => {
        handshake += chunk.toString('latin1');
        if (!handshake.includes('\r\n\r\n')) return;
        raw.off('data', onData);
        raw.resume();
        resolve();
      };
      raw.on('data', onData);
    });
    const ended = new Promise((resolve) => raw.once('end', resolve));
    raw.write(
      'GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
    );
    await upgraded;
    expect(handshake).toMatch(/^HTTP\/1\.1 101/);
    // The header of a masked binary message of 100 MiB: above the library's payload limit.
    const header = Buffer.alloc(14);
    header[0] = 0x82;
    header[1] = 0x80 | 127;
    header.writeBigUInt64BE(BigInt(100 * 1024 * 1024), 2);
    raw.write(header);
    await ended; // the library's close frame, then its FIN
    expect(server.stats().connections.current).toBe(1);
    env.advance(500);
    expect(server.stats().connections.current).toBe(0);
    raw.destroy();
  });

  it("a malformed frame: close 1002 (protocol error) with the decoder's reason", async () => {
    const server = await serve();
    const { ws, closed } = await rawWs(server);
    ws.send(new Uint8Array([0, 0, 0, 5, 0x6e, 0x6f, 0x70, 0x65, 0x21])); // "nope!"
    const [code, reason] = await closed;
    expect(code).toBe(1002);
    expect(reason).toMatch(/^bad frame: /);
    expect(Buffer.byteLength(reason)).toBeLessThanOrEqual(123);
  });
});

it('destroys a refused connection whose client never closes its side, after closeTimeoutMs', async () => {
  expect(() => new TestServer({ closeTimeoutMs: -1 })).toThrow(InvalidOptionsError);
  const env = new ManualEnvironment();
  const server = await serve({ environment: env, closeTimeoutMs: 500 });
  // allowHalfOpen: the client does not answer the broker's end with its own.
  const raw = connect({ host: '127.0.0.1', port: server.tcpPort, allowHalfOpen: true });
  raw.on('error', () => {});
  raw.resume();
  const ended = new Promise((resolve) => raw.once('end', resolve));
  raw.write(encodeCommand({ command: 'publish', topic: 't', data: '{}' })); // before logon: refused
  await ended;
  env.advance(499);
  expect(server.stats().connections.current).toBe(1);
  env.advance(1);
  expect(server.stats().connections.current).toBe(0);
  // The broker's socket is gone: what the client writes is answered with a reset, and a write after
  // that fails (having seen the broker's end, the client no longer reads, so only a write notices).
  const frame = encodeCommand({ command: 'heartbeat', options: 'beat' });
  while (!raw.destroyed) await new Promise((resolve) => raw.write(frame, resolve));
});

it('refuses at start a maxFrameBytes the frame decoder cannot take (it threw on the first connection), and intervals of 0', async () => {
  // Before: the server started, and the first TCP or WebSocket connection threw InvalidOptionsError
  // from the 'connection' handler: an uncaught exception that ends the test process (or the CLI).
  for (const maxFrameBytes of [0, -1, 1.5, Number.NaN]) {
    expect(() => new TestServer({ maxFrameBytes }), String(maxFrameBytes)).toThrow(InvalidOptionsError);
  }
  await expect(startTestServer({ maxFrameBytes: 0 })).rejects.toThrow(/maxFrameBytes/);
  // Each 0 would be a busy loop of timers.
  const busy = [{ persistedAckIntervalMs: 0 }, { peerReconnectMs: 0 }, { heartbeat: { minIntervalS: 0 } }];
  for (const options of busy)
    expect(() => new TestServer(options), JSON.stringify(options)).toThrow(InvalidOptionsError);
});

it('a log entry from a replication connection with a time no Date holds is stamped now, not a crash later', async () => {
  // Before: `ts` was taken as any finite number; a subscriber asking for `ts` (option timestamp)
  // made the broker format it, and the RangeError thrown from a replay in the broker's flush was an
  // uncaught exception that ends the test process. Any client can log on with opts=replication.
  const server = await serve({ wsPort: false });
  const peer = await client(server, 'tcp');
  expect((await peer.logon('not-a-peer', { options: 'replication' })).status).toBe('success');
  for (let s = 1; s <= 3; s++) {
    peer.send({
      command: 'publish',
      topic: 'far',
      sequence: s,
      timestamp: '1e20',
      data: '{}',
      headers: { pub: '123' },
    });
  }
  await until(() => server.stats().txlogLength === 3, 'the entries logged');
  const c = await client(server, 'tcp');
  await c.logon('asks-for-ts');
  const sub = await c.subscribe('far', { bookmark: '0', options: 'timestamp' });
  const replayed = await c.takeN(3, isDelivery(sub));
  for (const m of replayed) expect(m.timestamp).toMatch(/^\d{8}T\d{6}\.\d{6}Z$/);
});
