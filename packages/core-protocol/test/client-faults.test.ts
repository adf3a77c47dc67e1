/**
 * The Client against bad input and hostile peers: bad URIs and options, a broker that answers
 * with garbage, refused connections, authentication (with the retry challenge), and conflated
 * persisted acks. Nothing may be left hanging: no unhandled rejection, socket or timer.
 */
import { once } from 'node:events';
import * as net from 'node:net';
import { beforeEach, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../../test-server/src/index.js';
import { nodeTransport } from '../../transport-node/src/index.js';
import {
  type AmpsError,
  AuthenticationError,
  type Authenticator,
  Client,
  type ClientOptions,
  ConnectionError,
  ConnectionState,
  DisconnectedError,
  encodeCommand,
  InvalidOptionsError,
  InvalidUriError,
  type Message,
  MessageDecoder,
  ProtocolError,
  type Transport,
} from '../src/index.js';
import { Collector, guardEachTest, ManualEnvironment } from './client-fakes.js';
import { closedPort, rawServer } from './raw-server.js';

const schemes = ['tcp', 'ws'] as const;

const { cleanups, newClient } = guardEachTest();

describe('bad URIs and options', () => {
  it('rejects malformed URIs and schemes the transport lacks with InvalidUriError, before any I/O', async () => {
    const client = newClient('bad-uri');
    for (const uri of [
      'nope',
      'http://127.0.0.1:9007/amps/json',
      'tcp://127.0.0.1/amps/json',
      'tcp://127.0.0.1:70000/amps/json',
      'tcp://127.0.0.1:9007/not-amps',
      'tcp://127.0.0.1:9007/amps/json?bogus=1',
    ]) {
      await expect(client.connect(uri), uri).rejects.toSatisfy(InvalidUriError.isInstance);
    }
    const wsOnly: Transport = { schemes: ['ws'], connect: () => Promise.reject(new Error('not called')) };
    const c = new Client('ws-only', { transport: wsOnly });
    await expect(c.connect('tcp://u:hunter2@127.0.0.1:9007/amps/json')).rejects.toThrow(
      /does not support tcp:\/\/.*tcp:\/\/u:\*\*\*@127\.0\.0\.1:9007/,
    );
    expect(client.state).toBe(ConnectionState.Disconnected);
  });

  it('rejects bad constructor options and bad arguments with InvalidOptionsError', async () => {
    const transport = nodeTransport();
    const bad: Array<[string, () => unknown]> = [
      ['empty name', () => new Client('', { transport })],
      ['no transport', () => new Client('x', {} as ClientOptions)],
      ['maxFrameSize 0', () => new Client('x', { transport, maxFrameSize: 0 })],
      ['commandTimeoutMs -1', () => new Client('x', { transport, commandTimeoutMs: -1 })],
      ['sendHighWaterMark NaN', () => new Client('x', { transport, sendHighWaterMark: Number.NaN })],
      ['maxQueue Infinity', () => new Client('x', { transport, maxQueue: Number.POSITIVE_INFINITY })],
      ['ackBatchSize 0', () => new Client('x', { transport, ackBatchSize: 0 })],
      ['maxQueue 1.5', () => new Client('x', { transport, maxQueue: 1.5 })],
      // Longer than setTimeout can wait: such a timer fires at once.
      ['commandTimeoutMs 2^31', () => new Client('x', { transport, commandTimeoutMs: 2 ** 31 })],
      ['ackTimeoutMs 2^31', () => new Client('x', { transport, ackTimeoutMs: 2 ** 31 })],
      ['commandTimeoutMs a string', () => new Client('x', { transport, commandTimeoutMs: '5000' as never })],
      ['ackTimeoutMs NaN', () => new Client('x', { transport, ackTimeoutMs: Number.NaN })],
      ['environment without timers', () => new Client('x', { transport, environment: { now: () => 0 } as never })],
    ];
    for (const [what, make] of bad) expect(make, what).toThrow(expect.objectContaining({ code: 'invalid_options' }));

    const server = await startTestServer({ wsPort: false });
    cleanups.push(() => server.close());
    const client = newClient('bad-args');
    await client.connectAndLogon(server.tcpUri());
    // A bookmark is sent as given: null, '' or a number would subscribe from a bookmark the server cannot read.
    for (const bookmark of [null, '', ' ', 5]) {
      const refused = /^bookmark must be a non-empty string, got /;
      await expect(client.subscribe('orders', { bookmark: bookmark as never }).ready, String(bookmark)).rejects.toThrow(
        refused,
      );
      expect(() => client.sow('orders', { bookmark: bookmark as never }), String(bookmark)).toThrow(refused);
    }
    await expect(client.heartbeat(0)).rejects.toSatisfy(InvalidOptionsError.isInstance);
    await expect(client.heartbeat(2, 1)).rejects.toSatisfy(InvalidOptionsError.isInstance);
    await expect(client.heartbeat(1, 2 ** 31 / 1000)).rejects.toThrow(/must be from the interval \(1s\) to 2147483s/);
    // A per-call timeout that is not a number of ms setTimeout can wait: refused, not ignored
    // (NaN and negatives waited forever) nor fired at once (above 2^31-1 ms).
    for (const timeoutMs of [Number.NaN, -1, 2 ** 31, '100' as unknown as number]) {
      await expect(client.flush('processed', { timeoutMs }), String(timeoutMs)).rejects.toThrow(
        /timeoutMs must be 0 to 2147483647 ms/,
      );
      await expect(client.subscribe('t', { timeoutMs }).ready).rejects.toSatisfy(InvalidOptionsError.isInstance);
    }
    // An ack type the server never sends for it would only time out; not a string, it threw a TypeError.
    for (const ackType of ['bogus', 'stats', { timeoutMs: 5 }]) {
      await expect(client.flush(ackType as never), String(ackType)).rejects.toThrow(
        /^flush waits for processed, completed or persisted, got /,
      );
    }
    await expect(client.execute({ command: 'flush' }, { waitFor: 'done' as never })).rejects.toThrow(
      'waitFor must be one of received, parsed, processed, persisted, completed, stats or none, got done',
    );
    await expect(client.sowDelete('t', { filter: '/a = 1', keys: ['1'] } as never)).rejects.toSatisfy(
      InvalidOptionsError.isInstance,
    );
    await expect(client.sowDelete('', { filter: '/a = 1' })).rejects.toSatisfy(InvalidOptionsError.isInstance);
    expect(() => client.publish('', 'x')).toThrow(expect.objectContaining({ code: 'invalid_options' }));
    // No body is refused with options as without: it would go out as an empty message.
    for (const options of [undefined, { correlationId: 'c' }]) {
      for (const publish of [client.publish, client.deltaPublish]) {
        expect(() => publish.call(client, 't', undefined as never, options)).toThrow(/command data must be/);
      }
    }
    expect(() => client.sow('')).toThrow(expect.objectContaining({ code: 'invalid_options' }));
    expect(() => client.ack({ topic: 'q', bookmark: '' })).toThrow(
      expect.objectContaining({ code: 'invalid_options' }),
    );
    await expect(client.subscribe('').ready).rejects.toSatisfy(InvalidOptionsError.isInstance);
    await expect(client.connect(server.tcpUri())).rejects.toSatisfy(ConnectionError.isInstance);
    // Only 0 means "the transport's own connect timeout"; other bad values still reach the transport's check.
    for (const timeoutMs of [Number.NaN, -1]) {
      await expect(newClient('bad-connect-timeout').connect(server.tcpUri(), { timeoutMs })).rejects.toSatisfy(
        InvalidOptionsError.isInstance,
      );
    }
    // None of that hurt the connection.
    await client.flush();
  });

  it('refuses a subId, queryId or commandId that is not a string, sending nothing', async () => {
    const server = await startTestServer({ wsPort: false });
    cleanups.push(() => server.close());
    const sent: string[] = [];
    const client = newClient('number-ids', {
      transportFilter: (bytes, direction) => {
        if (direction === 'out') sent.push(Buffer.from(bytes).toString());
        return undefined;
      },
    });
    await client.connectAndLogon(server.tcpUri());
    // The server echoes ids as strings: an id given as a number would never be routed.
    const refused: Array<[string, () => Promise<unknown>]> = [
      ['subId', () => client.subscribe('t', { subId: 5 as never }).ready],
      ['subId', () => client.sowAndSubscribe('t', { subId: 6 as never }).ready],
      ['queryId', () => client.sow('t', { queryId: 7 as never }).stats],
      ['subId', () => client.execute({ command: 'subscribe', topic: 't', subId: 8 as never }, { onMessage: () => {} })],
      ['commandId', () => client.execute({ command: 'flush', commandId: 9 as never })],
      ['subId', () => client.unsubscribe(5 as never)],
    ];
    for (const [name, call] of refused) {
      await expect(call(), name).rejects.toThrow(expect.objectContaining({ code: 'invalid_options' }));
      await expect(call(), name).rejects.toThrow(`${name} must be a string, got number`);
    }
    await client.flush();
    expect(sent.join('')).not.toMatch(/"c":"(subscribe|sow|sow_and_subscribe|unsubscribe)"/);
    // Nothing of the refused subscriptions is left: the same ids as strings work.
    const messages = new Collector<Message>();
    const sub = client.subscribe('t', { subId: '5', onMessage: messages.push });
    await sub.ready;
    await client.publish('t', 'x');
    expect((await messages.atLeast(1))[0]?.subId).toBe('5');
  });

  it('refuses a signal that is not an AbortSignal with an InvalidOptionsError, sending nothing', async () => {
    const server = await startTestServer({ wsPort: false });
    cleanups.push(() => server.close());
    const sent: string[] = [];
    const client = newClient('bad-signal', {
      transportFilter: (bytes, direction) => {
        if (direction === 'out') sent.push(Buffer.from(bytes).toString());
        return undefined;
      },
    });
    const notSignals = ['abort', {}, { aborted: false }, true, null] as unknown as AbortSignal[];
    for (const signal of notSignals) {
      await expect(client.connectAndLogon(server.tcpUri(), { signal }), String(signal)).rejects.toThrow(
        expect.objectContaining({ code: 'invalid_options', message: 'signal must be an AbortSignal' }),
      );
    }
    expect(client.isConnected).toBe(false);
    await client.connect(server.tcpUri());
    for (const signal of notSignals) {
      const calls: Array<() => Promise<unknown>> = [
        () => client.logon({ signal }),
        () => client.subscribe('t', { signal }).ready,
        () => client.sow('t', { signal }).stats,
        () => client.execute({ command: 'sow_delete', topic: 't', filter: '1=1' }, { signal }),
        () => client.flush('processed', { signal }),
        () => client.heartbeat(5, 10, { signal }),
      ];
      for (const call of calls) {
        await expect(call(), String(signal)).rejects.toThrow(expect.objectContaining({ code: 'invalid_options' }));
      }
    }
    // Nothing was sent, not even an unsubscribe for the refused subscribe.
    expect(sent).toEqual([]);
    // A signal from another realm (or a polyfill) is taken by its shape.
    const foreign = new AbortController().signal;
    Object.setPrototypeOf(foreign, Object.create(EventTarget.prototype, { aborted: { get: () => false } }));
    expect(foreign).not.toBeInstanceOf(AbortSignal);
    await client.logon({ signal: foreign });
    await client.flush('processed', { signal: foreign });
  });

  it('refuses a maxBacklog that is not a positive integer, for the Client and for HAClient (subscribeCommand)', async () => {
    const client = newClient('bad-backlog');
    for (const maxBacklog of [0, -1, 1.5, Number.NaN, '10' as unknown as number]) {
      const message = `maxBacklog must be a positive integer, got ${maxBacklog}`;
      expect(() => client.subscribeCommand('subscribe', 'q', { maxBacklog }, 's')).toThrow(message);
      await expect(client.subscribe('q', { maxBacklog }).ready).rejects.toThrow(
        expect.objectContaining({ code: 'invalid_options', message }),
      );
    }
    const command = client.subscribeCommand('subscribe', 'q', { maxBacklog: 2, options: 'oof' }, 's');
    expect(command.options).toBe('oof,max_backlog=2');
  });

  it('refuses a per-call maxQueue that is not a positive integer (NaN left the queue unbounded)', () => {
    const client = newClient('bad-queue');
    for (const maxQueue of [0, 1.5, Number.NaN, '8' as unknown as number]) {
      const message = `maxQueue must be a positive integer, got ${maxQueue}`;
      expect(() => client.subscribe('q', { maxQueue }), message).toThrow(InvalidOptionsError);
      expect(() => client.sow('q', { maxQueue }), message).toThrow(message);
    }
  });

  it('a refused connection is a ConnectionError naming the URI without its password', async () => {
    const port = await closedPort();
    const client = newClient('refused');
    const error = await client.connectAndLogon(`tcp://me:hunter2@127.0.0.1:${port}/amps/json`).catch((e) => e);
    expect(ConnectionError.isInstance(error)).toBe(true);
    expect(error.message).toContain(`tcp://me:***@127.0.0.1:${port}/amps/json`);
    expect(error.message).not.toContain('hunter2');
    expect(client.state).toBe(ConnectionState.Disconnected);
    expect(client.isConnected).toBe(false);
  });
});

function lengthPrefixed(body: string | Uint8Array): Buffer {
  const bytes = typeof body === 'string' ? Buffer.from(body) : Buffer.from(body);
  const out = Buffer.alloc(4 + bytes.length);
  out.writeUInt32BE(bytes.length);
  bytes.copy(out, 4);
  return out;
}

describe('a broker that sends garbage', () => {
  const garbage: Array<[string, Buffer]> = [
    ['a frame whose header is not JSON', lengthPrefixed('this is not an AMPS header')],
    ['a zero-length frame', Buffer.from([0, 0, 0, 0])],
    ['a length prefix above maxFrameSize', Buffer.from([0x7f, 0xff, 0xff, 0xff, 1, 2, 3])],
    ['an HTTP response', Buffer.from('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n')],
    ['random bytes', Buffer.from(Array.from({ length: 64 }, (_, i) => (i * 37 + 11) & 0xff))],
  ];

  it.each(garbage)('%s in answer to the logon: ProtocolError, disconnected, nothing left open', async (_, junk) => {
    const port = await rawServer(cleanups, (_chunk, socket) => socket.write(junk));
    const client = newClient('victim', { maxFrameSize: 1024 * 1024 });
    const disconnects = new Collector<Error | undefined>();
    client.onDisconnect(disconnects.push);
    const states: string[] = [];
    client.onStateChange((e) => states.push(e.state));
    const error = await client.connectAndLogon(`tcp://127.0.0.1:${port}/amps/json`).catch((e: unknown) => e);
    expect(DisconnectedError.isInstance(error)).toBe(true);
    expect(ProtocolError.isInstance((error as Error).cause)).toBe(true);
    const [reason] = await disconnects.atLeast(1);
    expect(ProtocolError.isInstance(reason)).toBe(true);
    expect(states).toEqual([ConnectionState.Connected, ConnectionState.Disconnected]);
    expect(client.isConnected).toBe(false);
  });

  it('garbage after a good logon fails pending commands and ends subscriptions with the ProtocolError as cause', async () => {
    let socket!: net.Socket;
    const port = await rawServer(cleanups, (chunk, s) => {
      if (socket) return; // only the logon is answered
      socket = s;
      let logon: Message | undefined;
      new MessageDecoder((m) => {
        logon ??= m;
      }).push(chunk);
      s.write(
        encodeCommand({ command: 'ack', ackType: 'processed', status: 'success', commandId: logon?.commandId ?? '' }),
      );
    });
    const client = newClient('victim-2');
    await client.connectAndLogon(`tcp://127.0.0.1:${port}/amps/json`);
    const sub = client.subscribe('t');
    const flushed = client.flush();
    socket.write(lengthPrefixed('{"c":"p","t":"t","sub_id":"1"'));
    await expect(flushed).rejects.toSatisfy(
      (e: Error) => DisconnectedError.isInstance(e) && ProtocolError.isInstance(e.cause),
    );
    await expect(sub.ready).rejects.toSatisfy(DisconnectedError.isInstance);
    expect(DisconnectedError.isInstance(await sub.closed)).toBe(true);
  });

  it('a server that closes during logon: DisconnectedError; one that never answers: TimedOutError', async () => {
    const closing = await rawServer(cleanups, (_chunk, socket) => socket.destroy());
    const a = newClient('closed-on');
    await expect(a.connectAndLogon(`tcp://127.0.0.1:${closing}/amps/json`)).rejects.toSatisfy(
      DisconnectedError.isInstance,
    );
    const silent = await rawServer(cleanups, () => {});
    const b = newClient('ignored');
    await expect(b.connectAndLogon(`tcp://127.0.0.1:${silent}/amps/json`, { timeoutMs: 50 })).rejects.toMatchObject({
      code: 'timed_out',
    });
    expect(b.isConnected).toBe(false);
  });
});

describe.each(schemes)('authentication and conflated acks over %s', (scheme) => {
  let server: TestServer;
  const uriFor = (s: TestServer, credentials = '') =>
    scheme === 'tcp'
      ? s.tcpUri().replace('tcp://', `tcp://${credentials}`)
      : s.wsUri().replace('ws://', `ws://${credentials}`);

  beforeEach(async () => {
    server = await startTestServer({ auth: { users: { alice: 's3cret' }, challenge: true } });
    cleanups.push(() => server.close());
  });

  it('logs on through the retry challenge with the default authenticator', async () => {
    const client = newClient(`${scheme}-alice`);
    const result = await client.connectAndLogon(uriFor(server, 'alice:s3cret@'));
    expect(result.sequence).toBe(0);
    expect(client.state).toBe(ConnectionState.LoggedOn);
    await client.flush();
  });

  it('calls a custom authenticator: authenticate, retry with the server token, completed', async () => {
    const calls: string[] = [];
    const authenticator: Authenticator = {
      authenticate: (user, password) => {
        calls.push(`authenticate ${user} ${password}`);
        return 's3cret';
      },
      retry: async (user, token) => {
        calls.push(`retry ${user} ${token ? 'token' : 'none'}`);
        return token ?? '';
      },
      completed: (user) => {
        calls.push(`completed ${user}`);
      },
    };
    const client = newClient(`${scheme}-custom`);
    await client.connectAndLogon(uriFor(server, 'alice@'), { authenticator });
    expect(calls).toEqual(['authenticate alice undefined', 'retry alice token', 'completed alice']);
  });

  it('a wrong password is an AuthenticationError without the password; the connection is closed', async () => {
    const client = newClient(`${scheme}-mallory`);
    const states: string[] = [];
    client.onStateChange((e) => states.push(e.state));
    const error = await client.connectAndLogon(uriFor(server, 'alice:wrong-pw-42@')).catch((e: unknown) => e);
    expect(AuthenticationError.isInstance(error)).toBe(true);
    expect((error as AmpsError).reason).toBe('auth failure');
    expect(JSON.stringify({ message: (error as Error).message, states })).not.toContain('wrong-pw-42');
    expect(client.isConnected).toBe(false);
    expect(states).toEqual([ConnectionState.Connected, ConnectionState.Disconnected]);
  });

  it.each([
    ['authenticate()', { authenticate: () => new Promise<string>(() => {}), completed: () => {} }],
    ['completed()', { authenticate: () => 's3cret', completed: () => new Promise<void>(() => {}) }],
  ])(
    'an authenticator whose %s never answers times out with the logon, and the connection closes',
    async (_, calls) => {
      const client = newClient(`${scheme}-stuck-authenticator`);
      // The server answers s3cret with a retry and a token, which it then accepts.
      const authenticator: Authenticator = { retry: (_user, token) => token ?? '', ...calls };
      const error = await client
        .connectAndLogon(uriFor(server, 'alice@'), { authenticator, timeoutMs: 100 })
        .catch((e: unknown) => e);
      expect(error).toMatchObject({ code: 'timed_out', message: expect.stringContaining('the authenticator') });
      expect(client.isConnected).toBe(false);
      expect(client.state).toBe(ConnectionState.Disconnected);
    },
  );

  it('a connection that closes while completed() runs is not reported LoggedOn', async () => {
    const client = newClient(`${scheme}-closed-in-completed`);
    const states: string[] = [];
    client.onStateChange((e) => states.push(e.state));
    const authenticator: Authenticator = {
      authenticate: () => 's3cret',
      retry: (_user, token) => token ?? '',
      completed: async () => client.abort(),
    };
    const error = await client.connectAndLogon(uriFor(server, 'alice@'), { authenticator }).catch((e: unknown) => e);
    expect(DisconnectedError.isInstance(error)).toBe(true);
    expect(states).toEqual([ConnectionState.Connected, ConnectionState.Disconnected]);
    expect(client.isConnected).toBe(false);
  });

  it.each([
    ['disconnect()', (client: Client) => client.disconnect()],
    ['abort()', (client: Client) => client.abort()],
    ['the server dropping the connection', () => server.dropConnections()],
  ])(
    'a connection closed by %s while the authenticator has not answered ends the logon at once, its timer cleared',
    async (_, close) => {
      const client = newClient(`${scheme}-closed-while-authenticating`);
      let asked!: () => void;
      const authenticating = new Promise<void>((resolve) => {
        asked = resolve;
      });
      const authenticator: Authenticator = {
        authenticate: () => {
          asked();
          return new Promise<string>(() => {});
        },
        retry: (_user, token) => token ?? '',
        completed: () => {},
      };
      const closed = new Promise<unknown>((resolve) => client.onDisconnect(resolve));
      await client.connect(uriFor(server, 'alice@'));
      let settled = false;
      const logon = client.logon({ authenticator, timeoutMs: 60_000 }).finally(() => {
        settled = true;
      });
      logon.catch(() => {});
      await authenticating;
      await close(client);
      await closed;
      // A few turns for the close to reach the logon; no wall-clock wait decides this.
      for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
      expect(settled, 'the logon still waits for an authenticator whose connection has gone').toBe(true);
      await expect(logon).rejects.toSatisfy(DisconnectedError.isInstance);
    },
  );

  it('a retry answered with a bad token is an AuthenticationError', async () => {
    const client = newClient(`${scheme}-bad-token`);
    const authenticator: Authenticator = {
      authenticate: () => 's3cret',
      retry: () => 'not-the-token',
      completed: () => {},
    };
    await expect(client.connectAndLogon(uriFor(server, 'alice@'), { authenticator })).rejects.toSatisfy(
      AuthenticationError.isInstance,
    );
  });

  it('routes conflated persisted acks (no cid) by their sequence to onPersisted', async () => {
    const conflating = await startTestServer({ ackConflationMs: 5 });
    cleanups.push(() => conflating.close());
    const client = newClient(`${scheme}-conflated`);
    await client.connectAndLogon(uriFor(conflating));
    const persisted = new Collector<[number, Message]>();
    client.onPersisted((sequence, ack) => persisted.push([sequence, ack]));
    const unhandled = new Collector<Message>();
    client.onUnhandledMessage(unhandled.push);
    const failures = new Collector<unknown>();
    client.onFailedWrite(failures.push);
    for (let s = 1; s <= 200; s++) {
      client.publish('conflated', String(s), { sequence: s, ackType: 'persisted' });
      if (s % 50 === 0) await client.flush();
    }
    while ((await persisted.atLeast(persisted.items.length + 1)).at(-1)?.[0] !== 200);
    const sequences = persisted.items.map(([s]) => s);
    expect(sequences.length).toBeLessThan(200);
    expect([...sequences].sort((a, b) => a - b)).toEqual(sequences);
    expect(persisted.items.every(([, ack]) => ack.commandId === undefined)).toBe(true);
    expect(unhandled.items).toEqual([]);
    expect(failures.items).toEqual([]);
  });

  it('asks for ack conflation with a logon option', async () => {
    const plain = await startTestServer();
    cleanups.push(() => plain.close());
    const client = newClient(`${scheme}-asks`);
    await client.connectAndLogon(uriFor(plain), { options: { ackConflation: '5ms' } });
    const persisted = new Collector<Message>();
    client.onPersisted((_, ack) => persisted.push(ack));
    for (let s = 1; s <= 50; s++) client.publish('c', String(s), { sequence: s, ackType: 'persisted' });
    while ((await persisted.atLeast(persisted.items.length + 1)).at(-1)?.sequence !== 50);
    expect(persisted.items.every((ack) => ack.commandId === undefined)).toBe(true);
  });
});

describe.each(schemes)('a server that never answers our close, over %s', (scheme) => {
  it("disconnect() gives up on it after its 2 s and destroys the connection, whatever the transport's closeTimeoutMs", async () => {
    let uri: string;
    let freeze = () => {};
    if (scheme === 'tcp') {
      // Never reads, so never sees our end of the connection, as a half-open peer.
      const server = net.createServer({ pauseOnConnect: true });
      const accepted: net.Socket[] = [];
      server.on('connection', (socket) => accepted.push(socket));
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      cleanups.push(async () => {
        for (const socket of accepted) socket.destroy();
        await new Promise((resolve) => server.close(resolve));
      });
      uri = `tcp://127.0.0.1:${(server.address() as net.AddressInfo).port}/amps/json`;
    } else {
      const broker = await startTestServer();
      cleanups.push(() => broker.close());
      cleanups.push(() => broker.thaw());
      uri = broker.wsUri();
      freeze = () => broker.freeze(); // once the WebSocket is open: its close frame is never answered
    }
    const environment = new ManualEnvironment();
    const client = newClient(`${scheme}-never-closed`, {
      transport: nodeTransport({ closeTimeoutMs: 60_000 }),
      environment,
    });
    const sockets = () => process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap').length;
    const before = sockets();
    await client.connect(uri);
    freeze();
    const disconnected = client.disconnect();
    environment.advance(2000);
    await disconnected;
    expect(client.state).toBe(ConnectionState.Shutdown);
    // Only the server's end is left: a few turns for the client's handle to go.
    for (let turn = 0; turn < 20 && sockets() > before + 1; turn++) {
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(sockets(), 'the client socket is still open after disconnect() resolved').toBe(before + 1);
  });
});

describe('routing what the test broker never sends', () => {
  /** A raw AMPS peer: acks every command that asks for acks; the test writes deliveries itself. */
  async function scriptedPeer(): Promise<{ port: number; socket: Promise<net.Socket> }> {
    let accepted!: (socket: net.Socket) => void;
    const socket = new Promise<net.Socket>((resolve) => {
      accepted = resolve;
    });
    let decoder: MessageDecoder | undefined;
    const port = await rawServer(cleanups, (chunk, s) => {
      if (!decoder) {
        decoder = new MessageDecoder((m) => {
          for (const ackType of m.ackType?.split(',') ?? []) {
            s.write(encodeCommand({ command: 'ack', ackType, status: 'success', commandId: m.commandId ?? '' }));
          }
        });
        accepted(s);
      }
      decoder.push(chunk);
    });
    return { port, socket };
  }

  it('a delivery listing several subscriptions in sids reaches each of them once', async () => {
    const peer = await scriptedPeer();
    const client = newClient('sids');
    await client.connectAndLogon(`tcp://127.0.0.1:${peer.port}/amps/json`);
    const a = new Collector<Message>();
    const b = new Collector<Message>();
    const unhandled = new Collector<Message>();
    client.onUnhandledMessage(unhandled.push);
    await client.subscribe('t', { subId: 'a', onMessage: a.push }).ready;
    await client.subscribe('t', { subId: 'b', onMessage: b.push }).ready;
    const socket = await peer.socket;
    socket.write(encodeCommand({ command: 'publish', topic: 't', subIds: 'a,b,gone', data: 'both' }));
    socket.write(encodeCommand({ command: 'publish', topic: 't', subIds: 'gone', data: 'nobody' }));
    socket.write(encodeCommand({ command: 'publish', topic: 't', subId: 'b', data: 'b only' }));
    await b.atLeast(2);
    await unhandled.atLeast(1);
    expect(a.items.map((m) => m.text())).toEqual(['both']);
    expect(b.items.map((m) => m.text())).toEqual(['both', 'b only']);
    expect(unhandled.items.map((m) => m.text())).toEqual(['nobody']);
  });
});
