/**
 * A password given to the Client (in the URI or by an authenticator) must not show up in anything
 * observable: errors (message, stack, cause chain, properties), log calls, state, disconnect and
 * exception events, JSON and util.inspect of all of them. Real sockets, real broker.
 */
import { inspect } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startTestServer } from '../../test-server/src/index.js';
import { nodeTransport } from '../../transport-node/src/index.js';
import {
  AuthenticationError,
  type Authenticator,
  Client,
  ConnectionState,
  encodeCommand,
  type Logger,
  MessageDecoder,
} from '../src/index.js';
import { leakCheck } from './client-fakes.js';
import { closedPort, rawServer } from './raw-server.js';

const SECRET = 'Zq7xSECRETpw';

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

/** Everything a client lets anyone see, collected as it happens. */
function watched(name: string): { client: Client; seen: unknown[] } {
  const seen: unknown[] = [];
  const log =
    (level: string) =>
    (message: string, fields?: Record<string, unknown>): void => {
      seen.push({ level, message, fields });
    };
  const logger: Logger = { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') };
  const client = new Client(name, { transport: nodeTransport({ logger }), logger });
  client.onStateChange((event) => seen.push(event));
  client.onDisconnect((error) => seen.push(error));
  client.onException((error) => seen.push(error));
  // Kept as it is: `inspect` and `toJSON()` leave the password out. Only reading the property
  // gives it (what the server sent, for the application to read).
  client.onUnhandledMessage((message) => seen.push(message));
  client.onFailedWrite((failure) => seen.push(failure));
  cleanups.push(() => client.disconnect());
  return { client, seen };
}

/** Every way the values can be looked at: inspect (hidden properties, getters), JSON, messages, stacks, causes. */
function shown(values: unknown[]): string {
  const out: string[] = [];
  const visit = (value: unknown, depth: number): void => {
    out.push(inspect(value, { depth: 8, showHidden: true, getters: true }));
    try {
      out.push(JSON.stringify(value) ?? '');
    } catch {
      // Not serialisable (a cycle): inspect covered it.
    }
    if (value instanceof Error) {
      out.push(String(value), value.stack ?? '');
      if (value.cause !== undefined && depth < 8) visit(value.cause, depth + 1);
    } else if (typeof value === 'object' && value !== null) {
      for (const v of Object.values(value)) if (typeof v === 'object' && v !== null) visit(v, depth + 1);
    }
  };
  for (const value of values) visit(value, 0);
  return out.join('\n');
}

describe('the password stays hidden', () => {
  it.each([
    ['a plain password', `alice:${SECRET}`],
    ['a user name with @', `alice@example.com:${SECRET}`],
    ['a user name with /', `corp/alice:${SECRET}`],
    ['a password with @ and :', `alice:${SECRET}@x:y`],
    ['a percent-encoded password', `alice:${SECRET}%40%2F%3F%23`],
  ])('in a refused connection: %s', async (_, userinfo) => {
    const port = await closedPort();
    const { client, seen } = watched('refused');
    const error = await client.connectAndLogon(`TCP://${userinfo}@127.0.0.1:${port}/amps/json`).catch((e) => e);
    expect(error).toBeInstanceOf(Error);
    expect(shown([error, ...seen])).not.toContain(SECRET);
  });

  it('in the redacted URI of a password equal to part of the host', async () => {
    const port = await closedPort();
    const { client, seen } = watched('same-as-host');
    const error = await client.connectAndLogon(`tcp://u:127.0@127.0.0.1:${port}/amps/json`).catch((e) => e);
    expect(error.message).toContain(`tcp://u:***@127.0.0.1:${port}/amps/json`);
    expect(shown([error, ...seen])).not.toContain('127.0@');
  });

  it('in a refused logon, a logon that times out, and a server that echoes the logon back', async () => {
    const server = await startTestServer({ wsPort: false, auth: { users: { alice: 'right' } } });
    cleanups.push(() => server.close());
    const refused = watched('refused-logon');
    const uri = server.tcpUri().replace('tcp://', `tcp://alice:${SECRET}@`);
    const refusal = await refused.client.connectAndLogon(uri).catch((e) => e);
    expect(refusal.code).toBe('authentication');

    const silent = await rawServer(cleanups, () => {});
    const timing = watched('silent');
    const timeout = await timing.client
      .connectAndLogon(`tcp://alice:${SECRET}@127.0.0.1:${silent}/amps/json`, { timeoutMs: 50 })
      .catch((e) => e);
    expect(timeout.code).toBe('timed_out');

    // Echoes every frame back: the client sees its own logon, with `pw`, as an unhandled message.
    const echo = await rawServer(cleanups, (chunk, socket) => socket.write(chunk));
    const echoed = watched('echoed');
    const unhandled = new Promise((resolve) => echoed.client.onUnhandledMessage(resolve));
    const echoFailure = echoed.client
      .connectAndLogon(`tcp://alice:${SECRET}@127.0.0.1:${echo}/amps/json`, { timeoutMs: 5000 })
      .catch((e) => e);
    await unhandled;
    echoed.client.abort();
    expect((await echoFailure).code).toBe('disconnected');

    expect(shown([refusal, ...refused.seen, timeout, ...timing.seen, await echoFailure, ...echoed.seen])).not.toContain(
      SECRET,
    );
  });

  it('in a logon answered with retry, and in the token a hostile server sends back', async () => {
    let decoderFor: MessageDecoder | undefined;
    const port = await rawServer(cleanups, (chunk, socket) => {
      decoderFor ??= new MessageDecoder((m) => {
        // Answers every logon with `retry`, quoting the password it got as the next one.
        socket.write(
          encodeCommand({
            command: 'ack',
            ackType: 'processed',
            status: 'retry',
            commandId: m.commandId ?? '',
            password: m.password ?? '',
            reason: 'again',
          }),
        );
      });
      decoderFor.push(chunk);
    });
    const { client, seen } = watched('retried');
    const error = await client.connectAndLogon(`tcp://alice:${SECRET}@127.0.0.1:${port}/amps/json`).catch((e) => e);
    expect(error.code).toBe('authentication');
    expect(shown([error, ...seen])).not.toContain(SECRET);
  });

  it('in a refused logon whose reason quotes the password', async () => {
    const port = await rawServer(cleanups, (chunk, socket) => {
      new MessageDecoder((m) => {
        const reason = `bad password '${m.password}' for ${m.userId}`;
        socket.write(
          encodeCommand({
            command: 'ack',
            ackType: 'processed',
            status: 'failure',
            commandId: m.commandId ?? '',
            reason,
          }),
        );
      }).push(chunk);
    });
    const { client, seen } = watched('quoted');
    const error = await client.connectAndLogon(`tcp://alice:${SECRET}@127.0.0.1:${port}/amps/json`).catch((e) => e);
    expect(error.code).toBe('authentication');
    expect(error.message).toBe("logon failed: bad password '***' for alice");
    expect(shown([error, ...seen])).not.toContain(SECRET);
  });

  it('when the authenticator fails with an error that quotes the password or the server token', async () => {
    const server = await startTestServer({ wsPort: false, auth: { users: { alice: SECRET }, challenge: true } });
    cleanups.push(() => server.close());
    let token = '';
    const authenticator: Authenticator = {
      authenticate: (_user, password) => password ?? '',
      retry: (_user, serverToken) => {
        token = serverToken ?? '';
        throw `token ${serverToken} refused, and ${SECRET} too`;
      },
      completed: () => {},
    };
    const { client, seen } = watched('bad-retry');
    const uri = server.tcpUri().replace('tcp://', `tcp://alice:${SECRET}@`);
    const error = await client.connectAndLogon(uri, { authenticator }).catch((e) => e);
    expect(error.code).toBe('authentication');
    expect(error.message).toBe('logon failed: the authenticator threw: token *** refused, and *** too');
    expect(token).not.toBe('');
    expect(shown([error, ...seen])).not.toContain(token);
    expect(shown([error, ...seen])).not.toContain(SECRET);
  });

  it("when the authenticator's retry() fails quoting the credential its authenticate() gave", async () => {
    const server = await startTestServer({ wsPort: false, auth: { users: { alice: SECRET }, challenge: true } });
    cleanups.push(() => server.close());
    // The credential comes from the authenticator (a vault, say), not from the URI.
    const authenticator: Authenticator = {
      authenticate: () => SECRET,
      retry: () => {
        throw new Error(`vault: credential ${SECRET} could not be refreshed`);
      },
      completed: () => {},
    };
    const { client, seen } = watched('vault');
    const uri = server.tcpUri().replace('tcp://', 'tcp://alice@');
    const error = await client.connectAndLogon(uri, { authenticator }).catch((e) => e);
    expect(error.message).toBe('logon failed: the authenticator threw: vault: credential *** could not be refreshed');
    expect(shown([error, ...seen])).not.toContain(SECRET);
  });

  it.each([
    [
      'throws',
      (message: string) => {
        throw new Error(message);
      },
    ],
    ['returns a rejected promise', (message: string) => Promise.reject(new Error(message))],
  ])(
    'when the authenticator completed() %s: the logon fails and the connection closes, nothing half set up',
    async (_, fail) => {
      const server = await startTestServer({ wsPort: false, auth: { users: { alice: SECRET } } });
      cleanups.push(() => server.close());
      const authenticator: Authenticator = {
        authenticate: (_user, password) => password ?? '',
        retry: () => '',
        completed: (user, password) => fail(`completed for ${user} with ${password}`),
      };
      const { client, seen } = watched('bad-completed');
      const states: string[] = [];
      client.onStateChange((event) => states.push(event.state));
      const uri = server.tcpUri().replace('tcp://', `tcp://alice:${SECRET}@`);
      await client.connect(uri);
      // logon() on its own: the server accepted it, so the connection must not stay open half logged on.
      const error = await client.logon({ authenticator }).catch((e) => e);
      expect(AuthenticationError.isInstance(error)).toBe(true);
      expect(error.message).toBe('logon failed: the authenticator threw: completed for alice with ***');
      expect(states).toEqual([ConnectionState.Connected, ConnectionState.Disconnected]);
      expect(client.isConnected).toBe(false);
      expect(client.serverVersion).toBeUndefined();
      expect(client.nameHash).toBeUndefined();
      expect(shown([error, ...seen])).not.toContain(SECRET);
      // Nothing is left behind: the same client connects and logs on again.
      await client.connectAndLogon(uri);
      expect(client.state).toBe(ConnectionState.LoggedOn);
    },
  );

  it('when the authenticator throws an error that quotes the password', async () => {
    const server = await startTestServer({ wsPort: false });
    cleanups.push(() => server.close());
    const authenticator: Authenticator = {
      authenticate: (_user, password) => {
        throw new Error(`token service refused ${password}`);
      },
      retry: () => '',
      completed: () => {},
    };
    const { client, seen } = watched('bad-authenticator');
    const uri = server.tcpUri().replace('tcp://', `tcp://alice:${SECRET}@`);
    const error = await client.connectAndLogon(uri, { authenticator }).catch((e) => e);
    expect(AuthenticationError.isInstance(error)).toBe(true);
    expect(error.message).toBe('logon failed: the authenticator threw: token service refused ***');
    expect(client.isConnected).toBe(false);
    expect(shown([error, ...seen])).not.toContain(SECRET);
  });
});
