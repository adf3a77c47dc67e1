/**
 * The Client under large and hostile traffic, against the real broker over TCP and WebSocket:
 * messages of megabytes each way, traffic cut into 1-byte chunks, and frames around maxFrameSize.
 * Nothing may be lost or corrupted, and nothing left hanging: no unhandled rejection, socket or timer.
 */
import type * as net from 'node:net';
import { beforeEach, describe, expect, it } from 'vitest';
import { type FaultProxy, startFaultProxy, startTestServer, type TestServer } from '../../test-server/src/index.js';
import {
  type ClientOptions,
  type Command,
  encodeCommand,
  InvalidOptionsError,
  type Message,
  MessageDecoder,
} from '../src/index.js';
import { Collector, guardEachTest } from './client-fakes.js';
import { rawServer } from './raw-server.js';

const schemes = ['tcp', 'ws'] as const;
const MiB = 1024 * 1024;

const { cleanups, newClient } = guardEachTest();

/** A body of `size` bytes whose content depends on `seed` and the position (so a shifted or mixed-up byte shows). */
function body(size: number, seed: number): Uint8Array {
  const out = new Uint8Array(size);
  let x = seed * 2654435761;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = 0x20 + ((x >>> 16) % 90);
  }
  return out;
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.length), Buffer.from(b)) === 0;
}

/** A publisher and a subscriber (with `subscriberOptions`), logged on to `uri` in that order. */
async function loggedOnPair(name: string, uri: string, subscriberOptions: Partial<ClientOptions> = {}) {
  const publisher = newClient(`${name}-publisher`);
  const subscriber = newClient(`${name}-subscriber`, subscriberOptions);
  await publisher.connectAndLogon(uri);
  await subscriber.connectAndLogon(uri);
  return { publisher, subscriber };
}

describe.each(schemes)('large messages over %s', (scheme) => {
  let server: TestServer;
  let uri: string;
  beforeEach(async () => {
    server = await startTestServer({ maxFrameBytes: 40 * MiB });
    cleanups.push(() => server.close());
    uri = scheme === 'tcp' ? server.tcpUri() : server.wsUri();
  });

  it('publishes and delivers 1 MiB and 16 MiB bodies intact, between small ones, in order', async () => {
    const { publisher, subscriber } = await loggedOnPair(`${scheme}-big`, uri);
    const got = new Collector<Message>();
    await subscriber.subscribe('big', { onMessage: (m) => got.push(m) }).ready;
    const sizes = [10, MiB, 3, 16 * MiB, 7, MiB + 1, 1];
    const bodies = sizes.map((size, i) => body(size, i + 1));
    for (const b of bodies) await publisher.publish('big', b);
    await got.atLeast(bodies.length, 30_000);
    expect(got.items.map((m) => m.data.length)).toEqual(sizes);
    expect(got.items.map((m, i) => same(m.data, bodies[i] as Uint8Array))).toEqual(sizes.map(() => true));
  });

  it('publishes 1 MiB and 16 MiB string bodies, ASCII and not, intact', async () => {
    const { publisher, subscriber } = await loggedOnPair(`${scheme}-text`, uri);
    const got = new Collector<Message>();
    await subscriber.subscribe('text', { onMessage: (m) => got.push(m) }).ready;
    const bodies = ['a'.repeat(MiB), 'é€😀'.repeat(MiB / 3), 'x', 'b'.repeat(16 * MiB), 'ü'.repeat(2 * MiB)];
    for (const b of bodies) await publisher.publish('text', b);
    await got.atLeast(bodies.length, 30_000);
    expect(got.items.map((m, i) => m.text() === bodies[i])).toEqual(bodies.map(() => true));
  });

  it('a frame of exactly maxFrameSize is delivered; one byte more closes the connection with a ProtocolError', async () => {
    const maxFrameSize = MiB;
    const frames: number[] = [];
    const { publisher, subscriber } = await loggedOnPair(`${scheme}-edge`, uri, {
      maxFrameSize,
      transportFilter: (bytes, direction) => {
        if (direction === 'in') frames.push(bytes.length);
        return undefined;
      },
    });
    const got = new Collector<Message>();
    const sub = subscriber.subscribe('edge', { onMessage: (m) => got.push(m) });
    await sub.ready;
    await subscriber.flush();
    // A probe measures the delivery header, which is the same length for the next deliveries.
    frames.length = 0;
    publisher.publish('edge', body(1000, 1));
    await got.atLeast(1);
    const header = frames.reduce((a, b) => a + b, 0) - 4 - 1000;
    publisher.publish('edge', body(maxFrameSize - header, 2));
    await got.atLeast(2, 20_000);
    expect(got.items[1]?.data.length).toBe(maxFrameSize - header);
    const disconnected = new Collector<Error | undefined>();
    subscriber.onDisconnect(disconnected.push);
    publisher.publish('edge', body(maxFrameSize - header + 1, 3));
    const [reason] = await disconnected.atLeast(1, 20_000);
    expect(reason).toMatchObject({ code: 'protocol' });
    // Names the setting to raise: this limit is the client's, not the server's.
    expect(reason?.message).toMatch(/exceeds the maximum frame size of 1048576 bytes \(the maxFrameSize option\)/);
    expect(subscriber.isConnected).toBe(false);
    expect(await sub.closed).toMatchObject({ code: 'disconnected' });
    expect(got.items).toHaveLength(2);
  });
});

describe.each(schemes)('frames longer than maxFrameSize, sent, over %s', (scheme) => {
  it('are refused before they are sent: up to the limit goes, one byte more is an InvalidOptionsError, and the connection stays up', async () => {
    const server = await startTestServer({ maxFrameBytes: 40 * MiB });
    cleanups.push(() => server.close());
    const uri = scheme === 'tcp' ? server.tcpUri() : server.wsUri();
    const maxFrameSize = MiB;
    const { publisher, subscriber } = await loggedOnPair(`${scheme}-send-edge`, uri);
    const limited = newClient(`${scheme}-send-edge-limited`, { maxFrameSize });
    await limited.connectAndLogon(uri);
    const got = new Collector<Message>();
    await subscriber.subscribe('edge', { onMessage: got.push }).ready;
    // The header of a plain publish to 'edge': a body of the rest makes a frame of exactly the limit.
    const room = maxFrameSize - (encodeCommand({ command: 'publish', topic: 'edge' }).length - 4);
    await limited.publish('edge', body(room, 1));
    await limited.flush(); // processed before the other publisher's below: the order delivered is known
    expect(() => limited.publish('edge', body(room + 1, 2))).toThrow(
      /publish of 1048577 bytes is longer than maxFrameSize/,
    );
    expect(() => limited.publish('edge', 'é'.repeat(Math.floor(room / 2) + 1))).toThrow(InvalidOptionsError); // 2 bytes each
    expect(() => limited.send({ command: 'publish', topic: 'edge', data: body(room + 1, 3) })).toThrow(
      InvalidOptionsError,
    );
    await expect(
      limited.execute({ command: 'sow_delete', topic: 'edge', data: body(room, 4) }, { waitFor: 'processed' }),
    ).rejects.toBeInstanceOf(InvalidOptionsError);
    // A server accepting larger frames is still sent them by a client that allows them.
    await publisher.publish('edge', body(room + 1, 5));
    await publisher.flush();
    await limited.flush();
    await got.atLeast(2, 20_000);
    expect(got.items.map((m) => m.data.length)).toEqual([room, room + 1]);
    expect(limited.isConnected).toBe(true);
  });
});

describe.each(schemes)('traffic cut into 1-byte chunks over %s', (scheme) => {
  let proxy: FaultProxy;
  beforeEach(async () => {
    const server = await startTestServer();
    cleanups.push(() => server.close());
    proxy = await startFaultProxy({ target: scheme === 'tcp' ? server.tcpPort : (server.wsPort as number) });
    cleanups.push(() => proxy.close());
  });

  it('logs on, subscribes and receives every message intact, split at every byte', async () => {
    proxy.slice(1);
    const client = newClient(`${scheme}-sliced-1`);
    await client.connectAndLogon(`${scheme}://127.0.0.1:${proxy.port}/amps/json`);
    const got = new Collector<Message>();
    await client.subscribe('s', { onMessage: got.push }).ready;
    const bodies = Array.from({ length: 12 }, (_, i) => JSON.stringify({ i, pad: 'é'.repeat(i * 5) }));
    for (const b of bodies) client.publish('s', b);
    await got.atLeast(bodies.length, 20_000);
    expect(got.items.map((m) => m.text())).toEqual(bodies);
    await client.flush();
    expect(client.isConnected).toBe(true);
  });
});

describe.each(schemes)('a flood over %s', (scheme) => {
  let server: TestServer;
  let uri: string;
  beforeEach(async () => {
    // Every frame of a tick in one WebSocket message, as TCP packs them into one chunk.
    server = await startTestServer({ wsFrames: 'batch' });
    cleanups.push(() => server.close());
    uri = scheme === 'tcp' ? server.tcpUri() : server.wsUri();
  });

  it('a handler that aborts the connection gets nothing more, and nothing more is reported unhandled', async () => {
    const { publisher, subscriber } = await loggedOnPair(`${scheme}-flood`, uri);
    const unhandled: Message[] = [];
    subscriber.onUnhandledMessage((m) => unhandled.push(m));
    const disconnected = new Collector<Error | undefined>();
    subscriber.onDisconnect(disconnected.push);
    let delivered = 0;
    await subscriber.subscribe('flood', {
      onMessage: () => {
        if (++delivered === 1) subscriber.abort();
      },
    }).ready;
    // Published in one tick, the 50 deliveries reach the subscriber together.
    for (let i = 0; i < 50; i++) publisher.publish('flood', `{"i":${i}}`);
    await disconnected.atLeast(1);
    await publisher.flush();
    expect(delivered).toBe(1);
    expect(unhandled.map((m) => m.command)).toEqual([]);
  });

  it("publish's promise settles when the connection drops while the broker does not read", async () => {
    const publisher = newClient(`${scheme}-stuck-publisher`, { sendHighWaterMark: 64 * 1024 });
    await publisher.connectAndLogon(uri);
    const disconnected = new Collector<Error | undefined>();
    publisher.onDisconnect(disconnected.push);
    server.freeze();
    const pad = 'x'.repeat(1000);
    let wait: Promise<void> | undefined;
    while (!wait) wait = publisher.publish('stuck', pad);
    // Fill the kernel buffers too, so that the promise waits on the transport.
    for (let i = 0; i < 20_000; i++) wait = publisher.publish('stuck', pad) ?? wait;
    const settled = wait.then(
      () => 'resolved',
      (error: unknown) => error,
    );
    await server.kill();
    await disconnected.atLeast(1);
    expect(await settled).toBe('resolved');
    expect(() => publisher.publish('stuck', pad)).toThrow(/not connected/);
  });
});

describe('a hostile server', () => {
  /** A server that accepts the logon, then answers each later command with `answer`. */
  async function scripted(answer: (command: Message, socket: net.Socket) => void): Promise<string> {
    const port = await rawServer(cleanups, (chunk, socket) => {
      new MessageDecoder((m) => {
        if (m.command === 'logon') {
          socket.write(
            encodeCommand({ command: 'ack', commandId: m.commandId, ackType: 'processed', status: 'success' }),
          );
        } else {
          answer(m, socket);
        }
      }).push(chunk);
    });
    return `tcp://127.0.0.1:${port}/amps/json`;
  }

  const ack = (m: Message, extra: Partial<Command> = {}) =>
    encodeCommand({ command: 'ack', commandId: m.commandId, ackType: 'processed', status: 'success', ...extra });

  it('an ack for an unknown command id and a delivery for an unknown sub id are reported, and the connection stays up', async () => {
    const uri = await scripted((m, socket) => {
      if (m.command !== 'flush') return;
      socket.write(
        Buffer.concat([
          encodeCommand({ command: 'ack', commandId: 'nobody', ackType: 'processed', status: 'success' }),
          encodeCommand({
            command: 'ack',
            commandId: 'nobody-2',
            ackType: 'processed',
            status: 'failure',
            reason: 'bad',
          }),
          encodeCommand({ command: 'publish', topic: 't', subId: 'no-such-sub', data: '{}' }),
          ack(m),
        ]),
      );
    });
    const client = newClient('hostile-unknown');
    const unhandled = new Collector<Message>();
    client.onUnhandledMessage(unhandled.push);
    const failed: string[] = [];
    client.onFailedWrite((f) => failed.push(`${f.commandId} ${f.reason}`));
    await client.connectAndLogon(uri);
    await client.flush();
    expect(unhandled.items.map((m) => `${m.command} ${m.commandId ?? m.subId}`)).toEqual([
      'ack nobody',
      'publish no-such-sub',
    ]);
    expect(failed).toEqual(['nobody-2 bad']);
    expect(client.isConnected).toBe(true);
  });

  it('a subscription that takes an unsubscribed id gets its first delivery when it comes in the chunk that acks the unsubscribe', async () => {
    let unsubscribe: Message | undefined;
    const uri = await scripted((m, socket) => {
      if (m.command === 'subscribe' && m.topic === 'old') socket.write(ack(m, { subId: m.subId }));
      if (m.command === 'unsubscribe') unsubscribe = m;
      if (m.command === 'subscribe' && m.topic === 'new' && unsubscribe) {
        // As a server may send them: processed in order, written together.
        socket.write(
          Buffer.concat([
            ack(unsubscribe),
            ack(m, { subId: m.subId }),
            encodeCommand({ command: 'publish', topic: 'new', subId: 'x', data: '{"n":1}' }),
          ]),
        );
      }
    });
    const client = newClient('reused-id-same-chunk');
    const unhandled = new Collector<Message>();
    client.onUnhandledMessage(unhandled.push);
    await client.connectAndLogon(uri);
    await client.subscribe('old', { subId: 'x', onMessage: () => {} }).ready;
    const unsubscribed = client.unsubscribe('x');
    const got = new Collector<Message>();
    const again = client.subscribe('new', { subId: 'x', onMessage: got.push });
    await Promise.all([unsubscribed, again.ready]);
    await got.atLeast(1);
    expect(got.items.map((m) => [m.topic, m.json()])).toEqual([['new', { n: 1 }]]);
    expect(unhandled.items).toEqual([]);
  });

  it('a server that closes in the middle of a frame ends the subscription and fails waiting commands, with DisconnectedError', async () => {
    const half = encodeCommand({ command: 'publish', topic: 't', subId: 'sub-1', data: 'x'.repeat(1000) }).subarray(
      0,
      500,
    );
    const uri = await scripted((m, socket) => {
      if (m.command === 'subscribe') socket.write(ack(m, { subId: m.subId }));
      if (m.command === 'flush') socket.end(half);
    });
    const client = newClient('hostile-half-frame');
    await client.connectAndLogon(uri);
    const got = new Collector<Message>();
    const sub = client.subscribe('t', { subId: 'sub-1', onMessage: got.push });
    await sub.ready;
    await expect(client.flush()).rejects.toMatchObject({ code: 'disconnected' });
    expect(await sub.closed).toMatchObject({
      code: 'disconnected',
      message: expect.stringMatching(/closed the connection/),
    });
    expect(got.items).toEqual([]);
    expect(client.isConnected).toBe(false);
  });
});

describe('a server that reads slowly', () => {
  it('publish hands back promises that keep what the client holds near sendHighWaterMark; every byte arrives', async () => {
    const sendHighWaterMark = 512 * 1024;
    let received = 0;
    let logonAnswered = false;
    const target = 24 * MiB;
    const allReceived = new Collector<number>();
    const port = await rawServer(cleanups, (chunk, socket) => {
      if (!logonAnswered) {
        logonAnswered = true;
        new MessageDecoder((m) => {
          socket.write(
            encodeCommand({ command: 'ack', commandId: m.commandId, ackType: 'processed', status: 'success' }),
          );
        }).push(chunk);
        return;
      }
      received += chunk.length;
      if (received >= target) allReceived.push(received);
      // Reads a chunk an event-loop turn: much slower than the client writes.
      socket.pause();
      setImmediate(() => socket.resume());
    });
    const client = newClient('slow-sink', { sendHighWaterMark });
    await client.connectAndLogon(`tcp://127.0.0.1:${port}/amps/json`);
    const body = 'p'.repeat(4096);
    let peak = 0;
    let waits = 0;
    let sent = 0;
    while (sent < target) {
      const wait = client.publish('sink', body);
      sent += body.length + 22; // the frame: prefix, {"c":"p","t":"sink"}, body
      peak = Math.max(peak, client.bufferedAmount);
      if (wait) {
        waits++;
        await wait;
      }
    }
    expect(waits).toBeGreaterThan(0);
    // Above it by at most a batch still to flush (64 KiB) and the message written last.
    expect(peak).toBeLessThanOrEqual(sendHighWaterMark + 64 * 1024 + body.length + 64);
    await allReceived.atLeast(1, 30_000);
    expect(received).toBeGreaterThanOrEqual(target);
  });
});
