/**
 * Heartbeats against the real broker, over TCP and WebSocket: the client answers the server's
 * beats, and its watchdog closes a connection that goes silent (a frozen broker, a blackholed
 * network) with a heartbeat-timeout reason. Decided by events (heartbeat frames, disconnects).
 */
import type * as net from 'node:net';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { type FaultProxy, startFaultProxy, startTestServer, type TestServer } from '../../test-server/src/index.js';
import { nodeTransport } from '../../transport-node/src/index.js';
import { Client, ConnectionState, encodeCommand, type Message, MessageDecoder, TimedOutError } from '../src/index.js';
import { Collector, guardEachTest, leakCheck, outgoing } from './client-fakes.js';
import { rawServer } from './raw-server.js';

const schemes = ['tcp', 'ws'] as const;

describe.each(schemes)('Client heartbeats over %s', (scheme) => {
  let server: TestServer;
  let uri: string;
  let cleanups: Array<() => unknown>;
  let leaks: ReturnType<typeof leakCheck>;

  beforeEach(async () => {
    leaks = leakCheck();
    cleanups = [];
    server = await startTestServer();
    uri = scheme === 'tcp' ? server.tcpUri() : server.wsUri();
  });
  afterEach(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
    await server.close();
    await leaks.check();
  });

  function newClient(name: string, options: Partial<ConstructorParameters<typeof Client>[1]> = {}): Client {
    const client = new Client(`${scheme}-${name}`, { transport: nodeTransport(), ...options });
    cleanups.push(() => client.disconnect());
    return client;
  }

  it('answers the server heartbeats and stays connected', async () => {
    const { sent, received, filter } = outgoing();
    const client = newClient('alive', { transportFilter: filter });
    await client.connectAndLogon(uri);
    await client.heartbeat(0.05);
    expect(client.state).toBe(ConnectionState.HeartbeatInitiated);
    expect(sent.items.find((m) => m.command === 'heartbeat')?.options).toBe('start,0.05');
    const beats = (list: Message[], options?: string) =>
      list.filter((m) => m.command === 'heartbeat' && (options === undefined || m.options === options)).length;
    // The broker drops a client silent for 2 intervals: five server beats mean the answers arrive.
    while (beats(await received.atLeast(received.items.length + 1)) < 5);
    expect(beats(sent.items, 'beat')).toBeGreaterThanOrEqual(4);
    expect(client.isConnected).toBe(true);
    await client.flush();
    await client.disconnect();
    expect(sent.items.at(-1)).toMatchObject({ command: 'heartbeat', options: 'stop' });
  });

  it('the watchdog closes the connection to a frozen broker with a heartbeat timeout', async () => {
    const client = newClient('frozen');
    await client.connectAndLogon(uri);
    const sub = client.subscribe('t');
    await sub.ready;
    await client.heartbeat(0.05, 0.1);
    const disconnected = new Collector<Error | undefined>();
    client.onDisconnect(disconnected.push);
    const states = new Collector<string>();
    client.onStateChange((e) => states.push(e.state));
    server.freeze();
    const pending = client.flush();
    const [reason] = await disconnected.atLeast(1);
    expect(TimedOutError.isInstance(reason)).toBe(true);
    expect(reason?.message).toMatch(/^heartbeat timeout: nothing from .* for \d+ ms$/);
    expect(states.items).toEqual([ConnectionState.Disconnected]);
    await expect(pending).rejects.toMatchObject({ code: 'disconnected', cause: reason });
    expect(await sub.closed).toMatchObject({ code: 'disconnected', cause: reason });
    server.thaw();
  });

  it('the watchdog still fires after the wall clock steps back an hour (NTP, a resumed VM): silence is timed on a monotonic clock', async () => {
    const client = newClient('clock-step');
    await client.connectAndLogon(uri);
    await client.heartbeat(0.05, 0.1);
    const disconnected = new Collector<Error | undefined>();
    client.onDisconnect(disconnected.push);
    vi.useFakeTimers({ toFake: ['Date'], shouldAdvanceTime: true, now: Date.now() - 3_600_000 });
    cleanups.push(() => vi.useRealTimers());
    server.freeze();
    const [reason] = await disconnected.atLeast(1);
    expect(reason?.message).toMatch(/^heartbeat timeout: nothing from .* for \d+ ms$/);
    server.thaw();
  });

  describe('through a fault proxy', () => {
    let proxy: FaultProxy;
    let patient: TestServer;
    beforeEach(async () => {
      // The proxy passes a close through even when blackholed, so the broker must not drop the
      // silent client first: its own watchdog waits 20 intervals here.
      patient = await startTestServer({ heartbeat: { timeoutFactor: 20 } });
      cleanups.push(() => patient.close());
      proxy = await startFaultProxy({ target: scheme === 'tcp' ? patient.tcpPort : (patient.wsPort as number) });
      cleanups.push(() => proxy.close());
    });

    it('a blackholed network (half-open TCP) is detected by the watchdog', async () => {
      const client = newClient('blackholed');
      await client.connectAndLogon(`${scheme}://127.0.0.1:${proxy.port}/amps/json`);
      await client.heartbeat(0.05);
      await client.flush();
      const disconnected = new Collector<Error | undefined>();
      client.onDisconnect(disconnected.push);
      proxy.blackhole();
      const [reason] = await disconnected.atLeast(1);
      expect(TimedOutError.isInstance(reason)).toBe(true);
      expect(reason?.message).toMatch(/heartbeat timeout/);
      expect(client.state).toBe(ConnectionState.Disconnected);
    });

    it('a message that takes longer than the heartbeat timeout to arrive is not taken for silence', async () => {
      const client = newClient('slow-big-message');
      await client.connectAndLogon(`${scheme}://127.0.0.1:${proxy.port}/amps/json`);
      const got = new Collector<Message>();
      await client.subscribe('big', { onMessage: got.push }).ready;
      await client.heartbeat(0.1, 0.3);
      const disconnected = new Collector<Error | undefined>();
      client.onDisconnect(disconnected.push);
      const publisher = newClient('big-publisher');
      await publisher.connectAndLogon(scheme === 'tcp' ? patient.tcpUri() : patient.wsUri());
      // 16 bytes an event-loop turn: the message takes about a second (measured) to reach the client,
      // and over WebSocket it reaches the client only whole.
      proxy.slice(16);
      publisher.publish('big', 'z'.repeat(128 * 1024));
      const arrived = await Promise.race([got.atLeast(1, 30_000).then(() => 'delivered'), disconnected.atLeast(1)]);
      expect(arrived).toBe('delivered');
      expect(got.items[0]?.data.length).toBe(128 * 1024);
      proxy.heal();
      await client.flush();
      expect(disconnected.items).toEqual([]);
    });

    it('traffic sliced into 3-byte chunks still decodes, heartbeats included', async () => {
      proxy.slice(3);
      const client = newClient('sliced');
      await client.connectAndLogon(`${scheme}://127.0.0.1:${proxy.port}/amps/json`);
      await client.heartbeat(0.05);
      const got = new Collector<Message>();
      await client.subscribe('s', { onMessage: got.push }).ready;
      for (let i = 0; i < 20; i++) client.publish('s', JSON.stringify({ i, pad: 'x'.repeat(i * 7) }));
      await got.atLeast(20);
      expect(got.items.map((m) => m.json<{ i: number }>().i)).toEqual([...Array(20).keys()]);
      expect(client.isConnected).toBe(true);
    });
  });
});

describe('a blocked event loop', () => {
  const { cleanups, newClient } = guardEachTest();

  it('is not taken for a silent server: what arrived while it was blocked is read before the watchdog decides', async () => {
    let server: net.Socket | undefined;
    const answers = new Collector<Message>();
    const port = await rawServer(cleanups, (chunk, socket) => {
      new MessageDecoder((m) => {
        if (m.command === 'heartbeat' && m.options === 'beat') return answers.push(m);
        server = socket;
        socket.write(
          encodeCommand({ command: 'ack', commandId: m.commandId, ackType: 'processed', status: 'success' }),
        );
      }).push(chunk);
    });
    const client = newClient('blocked');
    await client.connectAndLogon(`tcp://127.0.0.1:${port}/amps/json`);
    await client.heartbeat(0.1, 0.3);
    const disconnected = new Collector<Error | undefined>();
    client.onDisconnect(disconnected.push);
    // The server beats, and the application blocks the event loop past the timeout (a long
    // handler, a GC pause): when it unblocks, the watchdog's timer is due before the beat is read.
    server?.write(encodeCommand({ command: 'heartbeat' }));
    const blockedUntil = performance.now() + 500;
    while (performance.now() < blockedUntil);
    const outcome = await Promise.race([answers.atLeast(1).then(() => 'answered'), disconnected.atLeast(1)]);
    expect(outcome).toBe('answered');
    expect(client.isConnected).toBe(true);
  });

  it('does not time out a command whose ack arrived while it was blocked', async () => {
    let server: net.Socket | undefined;
    const subscribes = new Collector<Message>();
    const port = await rawServer(cleanups, (chunk, socket) => {
      new MessageDecoder((m) => {
        server = socket;
        if (m.command === 'subscribe') return subscribes.push(m);
        socket.write(
          encodeCommand({ command: 'ack', commandId: m.commandId, ackType: 'processed', status: 'success' }),
        );
      }).push(chunk);
    });
    const client = newClient('blocked-command');
    await client.connectAndLogon(`tcp://127.0.0.1:${port}/amps/json`);
    const sub = client.subscribe('orders', { timeoutMs: 300 });
    const [subscribe] = await subscribes.atLeast(1);
    // The ack is on its way, and the application blocks the event loop past the command's timeout.
    server?.write(
      encodeCommand({ command: 'ack', commandId: subscribe?.commandId, ackType: 'processed', status: 'success' }),
    );
    const blockedUntil = performance.now() + 500;
    while (performance.now() < blockedUntil);
    await expect(sub.ready).resolves.toBeUndefined();
    expect(client.isConnected).toBe(true);
  });
});
