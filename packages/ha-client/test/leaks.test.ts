/**
 * HAClient leaves nothing behind: after each way a run ends (disconnect() at each stage of the
 * reconnect pipeline, a give-up, an invalid URI), no socket is open, no timer of the client's is
 * armed, no promise a caller awaits is left pending and nothing is rejected unhandled. Real
 * brokers and raw servers over real sockets; each test waits for events, never for time.
 */
import { once } from 'node:events';
import * as net from 'node:net';
import {
  DisconnectedError,
  encodeCommand,
  InvalidUriError,
  type Message,
  MessageDecoder,
  type ReconnectDelayStrategy,
  RetryExhaustedError,
} from '@amps-ts/core-protocol';
import { startTestServer, type TestServer } from '@amps-ts/test-server';
import { nodeTransport } from '@amps-ts/transport-node';
import { describe, expect, it } from 'vitest';
import { closedPort, guardEachTest } from '../../transport-node/test/helpers.js';
import { HAClient, type HAClientOptions, type HAStateEvent, MemoryPublishStore } from '../src/index.js';

/** The timers of the client and its plugins, not the in-process broker's. */
const clientTimers = /packages\/(core-protocol|transport-node|ha-client|delay-strategies|server-choosers|stores)\//;

const { cleanups, checkLeaks } = guardEachTest({ timersFrom: clientTimers });

async function broker(): Promise<TestServer> {
  const s = await startTestServer({ sowTopics: [{ topic: 'orders', key: '/id' }] });
  cleanups.push(() => s.close());
  return s;
}

function haClient(name: string, servers: string[], extra: Partial<HAClientOptions> = {}): HAClient {
  const ha = new HAClient(name, { transport: nodeTransport(), servers, heartbeat: false, ...extra });
  cleanups.push(() => ha.disconnect());
  return ha;
}

function stateWhere(ha: HAClient, predicate: (e: HAStateEvent) => boolean): Promise<HAStateEvent> {
  return new Promise((resolve) => {
    const stop = ha.onStateChange((e) => {
      if (predicate(e)) {
        stop();
        resolve(e);
      }
    });
  });
}

/** Waits `ms` between attempts (the first of a sweep at once), never giving up. */
function fixedDelay(ms: number): ReconnectDelayStrategy {
  let attempts = 0;
  return {
    getConnectWaitDuration: () => (attempts++ === 0 ? 0 : ms),
    reset: () => {
      attempts = 0;
    },
  };
}

/** Settles: 'resolved', or the error's name. A promise still pending fails the test by its timeout. */
const outcome = (p: Promise<unknown>) =>
  p.then(
    () => 'resolved',
    (e: Error) => e.name,
  );

/**
 * A raw TCP server that acks logon (and heartbeat) with success and hands every other command to
 * `onCommand`, which may answer through `reply`.
 */
async function scriptedBroker(
  onCommand: (m: Message, reply: (command: Parameters<typeof encodeCommand>[0]) => void) => void,
): Promise<string> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
    const reply = (command: Parameters<typeof encodeCommand>[0]) => socket.write(encodeCommand(command));
    const decoder = new MessageDecoder((m) => {
      if (m.command === 'logon' || m.command === 'heartbeat') {
        reply({
          command: 'ack',
          commandId: m.commandId,
          ackType: 'processed',
          status: 'success',
          ...(m.command === 'logon' ? { sequence: 0, bookmark: '1|0|', version: 'scripted' } : {}),
        });
      } else {
        onCommand(m, reply);
      }
    });
    socket.on('data', (chunk) => decoder.push(chunk));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });
  return `tcp://127.0.0.1:${(server.address() as net.AddressInfo).port}/amps/json`;
}

describe('HAClient disconnect() at each stage leaves nothing behind', () => {
  it('during the backoff between attempts', async () => {
    const ha = haClient('leak-backoff', [`tcp://127.0.0.1:${await closedPort()}/amps/json`], {
      delay: fixedDelay(60_000),
    });
    const connecting = outcome(ha.connectAndLogon());
    await stateWhere(ha, (e) => e.state === 'Disconnected'); // the first attempt failed: now waiting 60 s
    await ha.disconnect();
    expect(await connecting).toBe('DisconnectedError');
  });

  it('during a logon the server never answers (frozen)', async () => {
    const s = await broker();
    s.freeze();
    cleanups.push(() => s.thaw());
    const ha = haClient('leak-logon', [s.tcpUri()], { connectTimeoutMs: 60_000 });
    const connecting = outcome(ha.connectAndLogon());
    await stateWhere(ha, (e) => e.state === 'Connected');
    await ha.disconnect();
    expect(await connecting).toBe('DisconnectedError');
  });

  it('after a logon timed out on a frozen server, during the backoff that follows', async () => {
    const s = await broker();
    s.freeze();
    cleanups.push(() => s.thaw());
    const ha = haClient('leak-logon-timeout', [s.tcpUri()], { connectTimeoutMs: 50, delay: fixedDelay(60_000) });
    const connecting = outcome(ha.connectAndLogon());
    const failed = await stateWhere(ha, (e) => e.state === 'Disconnected');
    expect(failed.reason).toMatch(/timed out/);
    await ha.disconnect();
    expect(await connecting).toBe('DisconnectedError');
  });

  it('during a resubscribe the server never answers', async () => {
    let subscribeArrived!: () => void;
    const arrived = new Promise<void>((resolve) => {
      subscribeArrived = resolve;
    });
    const uri = await scriptedBroker((m) => {
      if (m.command === 'subscribe') subscribeArrived();
    });
    const ha = haClient('leak-resubscribe', [uri], { connectTimeoutMs: 60_000, commandTimeoutMs: 60_000 });
    const sub = ha.subscribe('orders');
    const iterator = sub[Symbol.asyncIterator]();
    const next = outcome(iterator.next());
    const connecting = outcome(ha.connectAndLogon());
    await arrived;
    await ha.disconnect();
    expect(await connecting).toBe('DisconnectedError');
    expect(await outcome(sub.ready)).toBe('DisconnectedError');
    expect(await next).toBe('resolved');
    expect(await sub.closed).toBeUndefined();
  });

  it('with publishes waiting in the store for room and for the server, and a flush waiting', async () => {
    const ha = haClient('leak-store', [`tcp://127.0.0.1:${await closedPort()}/amps/json`], {
      delay: fixedDelay(60_000),
    });
    const full = haClient('leak-store-full', [`tcp://127.0.0.1:${await closedPort()}/amps/json`], {
      delay: fixedDelay(60_000),
      publishStore: new MemoryPublishStore({ capacity: 1, policy: 'block' }),
    });
    expect(ha.publish('orders', '{"id":1}')).toBeUndefined(); // stored, sent after a logon
    expect(full.publish('orders', '{"id":1}')).toBeUndefined();
    const waitingForRoom = outcome(full.publish('orders', '{"id":2}') as Promise<void>);
    const flush = outcome(ha.publishFlush());
    const flushWithTimeout = outcome(full.publishFlush(60_000));
    const connecting = [outcome(ha.connectAndLogon()), outcome(full.connectAndLogon())];
    await Promise.all([
      stateWhere(ha, (e) => e.state === 'Disconnected'),
      stateWhere(full, (e) => e.state === 'Disconnected'),
    ]);
    await Promise.all([ha.disconnect(), full.disconnect()]);
    expect(await waitingForRoom).toBe('DisconnectedError');
    expect(await flush).toBe('DisconnectedError');
    expect(await flushWithTimeout).toBe('DisconnectedError');
    expect(await Promise.all(connecting)).toEqual(['DisconnectedError', 'DisconnectedError']);
  });

  it('with commands and a SOW waiting for the connection', async () => {
    const ha = haClient('leak-commands', [`tcp://127.0.0.1:${await closedPort()}/amps/json`], {
      delay: fixedDelay(60_000),
      commandTimeoutMs: 60_000,
    });
    const sow = ha.sow('orders');
    const records = outcome(sow.toArray());
    const flush = outcome(ha.flush());
    const execute = outcome(ha.execute({ command: 'sow', topic: 'orders' }));
    await stateWhere(ha, (e) => e.state === 'Disconnected');
    await ha.disconnect();
    expect([await records, await flush, await execute]).toEqual([
      'DisconnectedError',
      'DisconnectedError',
      'DisconnectedError',
    ]);
  });

  it('with a SOW under way on a server that froze', async () => {
    const s = await broker();
    const ha = haClient('leak-sow', [s.tcpUri()], { commandTimeoutMs: 60_000 });
    await ha.connectAndLogon();
    s.freeze();
    cleanups.push(() => s.thaw());
    const records = outcome(ha.sow('orders').toArray());
    await ha.disconnect();
    expect(await records).toBe('DisconnectedError');
  });

  it('after the heartbeat watchdog found a frozen server, while reconnecting to it', async () => {
    const s = await broker();
    const ha = haClient('leak-watchdog', [s.tcpUri()], {
      heartbeat: { intervalS: 1, timeoutS: 1 },
      connectTimeoutMs: 60_000,
    });
    await ha.connectAndLogon();
    s.freeze();
    cleanups.push(() => s.thaw());
    await stateWhere(ha, (e) => e.state === 'Disconnected');
    await stateWhere(ha, (e) => e.state === 'Connected'); // the next attempt, whose logon waits
    await ha.disconnect();
  });

  it('after the delay strategy gave up, and without calling disconnect()', async () => {
    let attempts = 0;
    const ha = haClient('leak-give-up', [`tcp://127.0.0.1:${await closedPort()}/amps/json`], {
      delay: {
        getConnectWaitDuration: () => {
          if (++attempts > 2) throw new Error('budget spent');
          return 1;
        },
        reset: () => {},
      },
    });
    const sow = outcome(ha.sow('orders').toArray());
    const error = await ha.connectAndLogon().catch((e: unknown) => e);
    expect(RetryExhaustedError.isInstance(error)).toBe(true);
    expect(await sow).toBe('RetryExhaustedError');
    await checkLeaks(); // before disconnect(): a give-up alone holds nothing open
  });

  it('connectAndLogon() rejected with an InvalidUriError, without calling disconnect()', async () => {
    let turn = 0;
    const ha = haClient('leak-invalid-uri', [], {
      // Two invalid URIs in turn: after one pass over them the client gives up, without waiting.
      chooser: {
        getCurrentURI: () => `nope://127.0.0.1:${1 + (turn++ % 2)}/amps/json`,
        getCurrentAuthenticator: () => undefined,
        reportFailure: () => {},
        reportSuccess: () => {},
        getError: () => '',
      },
    });
    ha.onException(() => {});
    const error = await ha.connectAndLogon().catch((e: unknown) => e);
    expect(InvalidUriError.isInstance(error)).toBe(true);
    await checkLeaks();
  });

  it('with a failback check armed', async () => {
    const s = await broker();
    const uri = s.tcpUri();
    const ha = haClient('leak-failback', [uri], {
      chooser: {
        getCurrentURI: () => uri,
        getCurrentAuthenticator: () => undefined,
        reportFailure: () => {},
        reportSuccess: () => {},
        getError: () => '',
        shouldSwitch: () => false,
      },
      failbackCheckMs: 60_000,
    });
    await ha.connectAndLogon();
    await ha.disconnect();
  });
});

describe('HAClient connectAndLogon() aborted by its signal at each stage leaves nothing behind', () => {
  it('during the backoff, during a logon, and during a resubscribe', async () => {
    const dead = `tcp://127.0.0.1:${await closedPort()}/amps/json`;
    const s = await broker();
    s.freeze();
    cleanups.push(() => s.thaw());
    let subscribeArrived!: () => void;
    const arrived = new Promise<void>((resolve) => {
      subscribeArrived = resolve;
    });
    const silent = await scriptedBroker((m) => {
      if (m.command === 'subscribe') subscribeArrived();
    });
    const stages: Array<[string, string, (ha: HAClient) => Promise<unknown>]> = [
      ['backoff', dead, (ha) => stateWhere(ha, (e) => e.state === 'Disconnected')],
      ['logon', s.tcpUri(), (ha) => stateWhere(ha, (e) => e.state === 'Connected')],
      ['resubscribe', silent, () => arrived],
    ];
    for (const [stage, uri, reached] of stages) {
      const ha = haClient(`leak-abort-${stage}`, [uri], {
        delay: fixedDelay(60_000),
        connectTimeoutMs: 60_000,
        commandTimeoutMs: 60_000,
      });
      const sub = ha.subscribe('orders');
      const abort = new AbortController();
      const connecting = outcome(ha.connectAndLogon({ signal: abort.signal }));
      await reached(ha);
      abort.abort();
      expect([stage, await connecting]).toEqual([stage, 'AbortError']);
      await ha.disconnect();
      expect([stage, await outcome(sub.ready)]).toEqual([stage, 'DisconnectedError']);
    }
  });
});

describe('HAClient subscriptions used as async iterators', () => {
  it('left with break: unsubscribed, nothing left', async () => {
    const s = await broker();
    const ha = haClient('leak-break', [s.tcpUri()]);
    await ha.connectAndLogon();
    const sub = ha.subscribe('orders');
    await sub.ready;
    ha.publish('orders', '{"id":1}');
    for await (const _ of sub) break;
    expect(await sub.closed).toBeUndefined();
    await ha.disconnect();
  });

  it('a next() pending when the connection drops waits through the reconnect, and ends at disconnect()', async () => {
    const s = await broker();
    const ha = haClient('leak-pending-next', [s.tcpUri()], { delay: fixedDelay(60_000) });
    await ha.connectAndLogon();
    const sub = ha.subscribe('orders');
    await sub.ready;
    const next = sub[Symbol.asyncIterator]().next();
    await s.kill();
    await stateWhere(ha, (e) => e.state === 'Disconnected' && e.attempt > 0); // a reconnect failed: backing off
    await ha.disconnect();
    expect(await next).toEqual({ value: undefined, done: true });
  });

  it('a next() pending on a Client subscription ends with DisconnectedError when the connection drops', async () => {
    const s = await broker();
    const ha = haClient('leak-client-next', [s.tcpUri()], { delay: fixedDelay(60_000) });
    await ha.connectAndLogon();
    const sub = ha.client.subscribe('orders');
    await sub.ready;
    const next = outcome(sub[Symbol.asyncIterator]().next());
    s.dropConnections();
    expect(await next).toBe(DisconnectedError.name);
    await ha.disconnect();
  });
});
