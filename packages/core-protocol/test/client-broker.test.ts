/**
 * The Client against the real test broker, over TCP and WebSocket: every command, acks, filters,
 * SOW batches, queue acks, bookmark subscriptions, timeouts, aborts and hooks. Tests decide by
 * events (acks, deliveries, flush round trips), never by sleeping.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer, type TestServerOptions } from '../../test-server/src/index.js';
import { nodeTransport } from '../../transport-node/src/index.js';
import {
  AbortError,
  AmpsError,
  Bookmarks,
  Client,
  type ClientOptions,
  type Command,
  ConnectionError,
  ConnectionState,
  DisconnectedError,
  type FailedWrite,
  InvalidOptionsError,
  type Message,
  SubscriptionAlreadyExistsError,
  TimedOutError,
  type Transport,
} from '../src/index.js';
import { Collector, leakCheck, ManualEnvironment, outgoing } from './client-fakes.js';

const schemes = ['tcp', 'ws'] as const;

const brokerOptions: TestServerOptions = {
  sowTopics: [{ topic: 'orders', key: '/id' }],
  queues: [{ topic: 'jobs', maxBacklog: 10, leaseMs: 60_000 }],
  persistedAckIntervalMs: 20,
};

const order = (id: number, qty = id * 10) => JSON.stringify({ id, qty, sym: `S${id % 3}` });

describe.each(schemes)('Client against the test broker over %s', (scheme) => {
  let server: TestServer;
  let uri: string;
  let clients: Client[];
  let leaks: ReturnType<typeof leakCheck>;
  let n = 0;

  beforeEach(async () => {
    clients = [];
    leaks = leakCheck();
    server = await startTestServer(brokerOptions);
    uri = scheme === 'tcp' ? server.tcpUri() : server.wsUri();
  });
  afterEach(async () => {
    for (const c of clients) await c.disconnect();
    await server.close();
    await leaks.check();
  });

  function client(options: Partial<ClientOptions> = {}): Client {
    const c = new Client(`${scheme}-client-${++n}`, { transport: nodeTransport(), ...options });
    clients.push(c);
    return c;
  }

  async function loggedOn(options: Partial<ClientOptions> = {}): Promise<Client> {
    const c = client(options);
    await c.connectAndLogon(uri);
    return c;
  }

  /** Publishes SOW records `1..count` to `orders` and waits until the broker has processed them. */
  async function seedOrders(c: Client, count: number): Promise<void> {
    for (let id = 1; id <= count; id++) c.publish('orders', order(id));
    await c.flush();
  }

  /* ------------------------------------------------------------ connection */

  it('connects, logs on, reports states and server facts, and disconnects to Shutdown', async () => {
    const c = client();
    const states: string[] = [];
    c.onStateChange((e) => states.push(e.state));
    const disconnects = new Collector<Error | undefined>();
    c.onDisconnect(disconnects.push);
    const result = await c.connectAndLogon(uri);
    expect(result).toMatchObject({ sequence: 0, serverVersion: '5.3.5.0.amps-ts-test-server' });
    expect(c.serverVersion).toBe(result.serverVersion);
    expect(c.nameHash).toMatch(/^\d+$/);
    expect(result.nameHash).toBe(c.nameHash);
    expect(result.bookmark).toBe(`${c.nameHash}|0|`);
    expect(c.uri).toBe(uri);
    expect(c.isConnected).toBe(true);
    await c.disconnect();
    expect(c.isConnected).toBe(false);
    expect(states).toEqual([
      ConnectionState.Connected,
      ConnectionState.LoggedOn,
      ConnectionState.Disconnected,
      ConnectionState.Shutdown,
    ]);
    expect(disconnects.items).toEqual([undefined]);
  });

  it('connect then logon as two steps, with logon options and a correlation id; connects again after a disconnect', async () => {
    const c = client();
    const { sent, filter } = outgoing();
    const d = new Client(c.name, { transport: nodeTransport(), transportFilter: filter });
    clients.push(d);
    await d.connect(uri);
    expect(d.state).toBe(ConnectionState.Connected);
    await d.logon({ correlationId: 'Y29ycg==', options: { ackConflation: '10ms' } });
    const logon = sent.items.find((m) => m.command === 'logon');
    expect(logon).toMatchObject({ clientName: c.name, correlationId: 'Y29ycg==', options: 'ack_conflation=10ms' });
    expect(logon?.version).toMatch(/amps-ts/);
    await d.disconnect();
    await d.connectAndLogon(uri);
    expect(d.state).toBe(ConnectionState.LoggedOn);
  });

  it('commandTimeoutMs 0 (wait forever) connects: the connect timeout is left to the transport', async () => {
    const inner = nodeTransport();
    const connectTimeouts: Array<number | undefined> = [];
    const transport: Transport = {
      schemes: inner.schemes,
      connect: (target, handlers, options) => {
        connectTimeouts.push(options?.timeoutMs);
        return inner.connect(target, handlers, options);
      },
    };
    const c = client({ transport, commandTimeoutMs: 0 });
    await c.connectAndLogon(uri);
    await c.flush();
    expect(c.state).toBe(ConnectionState.LoggedOn);
    await c.disconnect();
    await c.connect(uri, { timeoutMs: 0 });
    expect(c.isConnected).toBe(true);
    expect(connectTimeouts).toEqual([undefined, undefined]);
  });

  it('a connect while another is in flight is refused; the first connects and nothing is left open', async () => {
    const c = client();
    const states: string[] = [];
    c.onStateChange((e) => states.push(e.state));
    const first = c.connect(uri);
    const second = c.connect(uri);
    await expect(second).rejects.toSatisfy(ConnectionError.isInstance);
    await expect(second).rejects.toThrow(`already connecting to ${uri}`);
    await first;
    await expect(c.connect(uri)).rejects.toThrow(`already connected to ${uri}`);
    await c.logon();
    await c.disconnect();
    expect(states).toEqual([
      ConnectionState.Connected,
      ConnectionState.LoggedOn,
      ConnectionState.Disconnected,
      ConnectionState.Shutdown,
    ]);
  });

  it('disconnect() or abort() during connect cancels it: connect rejects, closes what it opened, never Connected', async () => {
    // A transport that ignores the abort signal: the connection opens anyway and must be closed.
    const inner = nodeTransport();
    let opened = 0;
    const closed = new Collector<Error | undefined>();
    const deaf: Transport = {
      schemes: inner.schemes,
      connect: async (target, handlers, options) => {
        const onClose = (error: Error | undefined) => {
          closed.push(error);
          handlers.onClose(error);
        };
        const connection = await inner.connect(target, { ...handlers, onClose }, { timeoutMs: options?.timeoutMs });
        opened++;
        return connection;
      },
    };
    for (const transport of [nodeTransport(), deaf]) {
      const c = client({ transport });
      const states: string[] = [];
      c.onStateChange((e) => states.push(e.state));
      const connecting = c.connect(uri);
      await c.disconnect();
      await expect(connecting).rejects.toSatisfy(DisconnectedError.isInstance);
      await expect(connecting).rejects.toThrow(`connection to ${uri} closed while connecting: disconnect() was called`);
      expect(c.isConnected).toBe(false);
      expect(c.state).toBe(ConnectionState.Shutdown);
      expect(states).toEqual([ConnectionState.Shutdown]);

      const aborting = c.connect(uri);
      c.abort(new Error('given up'));
      await expect(aborting).rejects.toThrow(`connection to ${uri} closed while connecting: given up`);
      expect(c.isConnected).toBe(false);
      expect(states).toEqual([ConnectionState.Shutdown]);

      // The client is usable afterwards.
      await c.connectAndLogon(uri);
      await c.flush();
    }
    // The deaf transport opened both cancelled connections; connect() closed them again.
    expect(opened).toBe(3);
    await closed.atLeast(2);
  });

  it('a second logon with the same client name drops the first connection', async () => {
    const first = await loggedOn();
    const dropped = new Collector<Error | undefined>();
    first.onDisconnect(dropped.push);
    const second = new Client(first.name, { transport: nodeTransport() });
    clients.push(second);
    await second.connectAndLogon(uri);
    const [error] = await dropped.atLeast(1);
    expect(AmpsError.isInstance(error)).toBe(true);
    expect(first.isConnected).toBe(false);
    expect(first.state).toBe(ConnectionState.Disconnected);
  });

  /* ---------------------------------------------------------- publish, subscribe */

  it('publishes and delivers to a subscribe callback, in order', async () => {
    const c = await loggedOn();
    const got = new Collector<Message>();
    const sub = c.subscribe('ticks', { onMessage: got.push });
    await sub.ready;
    for (let i = 0; i < 500; i++) c.publish('ticks', JSON.stringify({ i }));
    await got.atLeast(500);
    expect(got.items.map((m) => m.json<{ i: number }>().i)).toEqual([...Array(500).keys()]);
    expect(got.items[0]).toMatchObject({ subId: sub.subId, topic: 'ticks' });
    expect(sub.received).toBe(500);
  });

  it('publishes bytes and strings alike, with correlation id and expiration', async () => {
    const c = await loggedOn();
    const got = new Collector<Message>();
    await c.subscribe('raw', { onMessage: got.push }).ready;
    c.publish('raw', new TextEncoder().encode('bytes é'), { correlationId: 'abc' });
    c.publish('raw', 'text é');
    const [a, b] = await got.atLeast(2);
    expect(a?.text()).toBe('bytes é');
    expect(a?.correlationId).toBe('abc');
    expect(b?.text()).toBe('text é');
  });

  it('delivers bodies of every size and script intact, across batch and buffer boundaries', async () => {
    const c = await loggedOn();
    const got = new Collector<Message>();
    await c.subscribe('bodies', { onMessage: got.push }).ready;
    const bodies: Array<string | Uint8Array> = [];
    for (let i = 0; i < 400; i++) {
      const text = `${i}:${'aé€😀'.repeat(i * 7)}`;
      bodies.push(i % 3 === 0 ? new TextEncoder().encode(text) : text);
    }
    bodies.push('x'.repeat(3 * 1024 * 1024)); // larger than a batch buffer
    bodies.push('after the large one');
    for (const [i, body] of bodies.entries()) {
      if (i % 2 === 0) c.publish('bodies', body);
      else c.deltaPublish('bodies', body);
    }
    await got.atLeast(bodies.length, 20_000);
    const expected = bodies.map((b) => (typeof b === 'string' ? b : new TextDecoder().decode(b)));
    expect(got.items.map((m) => m.text()) as string[]).toEqual(expected);
  });

  it('iterates a subscription; breaking out unsubscribes it', async () => {
    const c = await loggedOn();
    const { sent, filter } = outgoing();
    const d = await loggedOn({ transportFilter: filter });
    const sub = d.subscribe('feed');
    await sub.ready;
    for (let i = 0; i < 10; i++) c.publish('feed', String(i));
    const seen: string[] = [];
    for await (const m of sub) {
      seen.push(m.text());
      if (seen.length === 10) break;
    }
    expect(seen).toEqual(['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
    expect(await sub.closed).toBeUndefined();
    await d.flush();
    expect(sent.items.find((m) => m.command === 'unsubscribe')?.subId).toBe(sub.subId);
  });

  it('applies content filters on subscribe', async () => {
    const c = await loggedOn();
    const got = new Collector<Message>();
    await c.subscribe('orders', { filter: '/qty > 50 AND /sym = "S1"', onMessage: got.push }).ready;
    for (let id = 1; id <= 12; id++) c.publish('orders', order(id));
    await c.flush();
    expect(got.items.map((m) => m.json<{ id: number }>().id)).toEqual([7, 10]);
  });

  it('fails a subscribe with a bad filter with a typed error', async () => {
    const c = await loggedOn();
    const sub = c.subscribe('orders', { filter: '/qty >' });
    await expect(sub.ready).rejects.toMatchObject({ code: 'bad_filter', reason: 'bad filter' });
    expect(AmpsError.isInstance(await sub.closed)).toBe(true);
  });

  it('fails a second subscribe with the same sub id', async () => {
    const c = await loggedOn();
    await c.subscribe('a', { subId: 'same' }).ready;
    await expect(c.subscribe('b', { subId: 'same' }).ready).rejects.toMatchObject({
      code: 'subscription_already_exists',
    });
  });

  it('a sub id in use is refused locally, and the subscription holding it keeps running', async () => {
    const { sent, filter } = outgoing();
    const c = await loggedOn({ transportFilter: filter });
    const got = new Collector<Message>();
    const first = c.subscribe('dup', { subId: 'x', onMessage: got.push });
    await first.ready;
    let firstClosed = false;
    void first.closed.then(() => {
      firstClosed = true;
    });
    const second = c.subscribe('dup', { subId: 'x' });
    await expect(second.ready).rejects.toSatisfy(SubscriptionAlreadyExistsError.isInstance);
    await expect(second.ready).rejects.toThrow(/sub_id 'x' is in use/);
    expect(await second.closed).toBeInstanceOf(SubscriptionAlreadyExistsError);
    for (const call of [
      () => c.execute({ command: 'subscribe', topic: 'dup', subId: 'x' }, { onMessage: () => {} }),
      () => c.execute({ command: 'subscribe', topic: 'dup', subId: 'x' }),
      () => c.execute({ command: 'sow_and_subscribe', topic: 'orders', subId: 'x' }, { onMessage: () => {} }),
    ]) {
      await expect(call()).rejects.toSatisfy(SubscriptionAlreadyExistsError.isInstance);
    }
    // A query may not take a live subscription's id either.
    await expect(c.sow('orders', { queryId: 'x' }).stats).rejects.toSatisfy(InvalidOptionsError.isInstance);
    c.publish('dup', '1');
    await got.atLeast(1);
    await c.flush();
    expect(got.items.map((m) => m.text())).toEqual(['1']);
    expect(firstClosed).toBe(false);
    // Nothing reached the server: one subscribe, no unsubscribe.
    expect(sent.items.filter((m) => m.command === 'subscribe' || m.command === 'unsubscribe').length).toBe(1);
  });

  it("the 'replace' option takes a sub id over: the replaced subscription ends, a failed replace keeps it", async () => {
    const { sent, filter } = outgoing();
    const c = await loggedOn({ transportFilter: filter });
    const before = new Collector<Message>();
    const first = c.subscribe('repl', { subId: 'r', onMessage: before.push });
    await first.ready;
    const after = new Collector<Message>();
    const second = c.subscribe('repl', {
      subId: 'r',
      filter: '/n > 5',
      options: { replace: true },
      onMessage: after.push,
    });
    await second.ready;
    expect(await first.closed).toBeUndefined();
    // A replace the server refuses leaves the current subscription as it was, and not unsubscribed.
    const bad = c.subscribe('repl', { subId: 'r', filter: '/n >', options: 'replace' });
    await expect(bad.ready).rejects.toMatchObject({ code: 'bad_filter' });
    // The replaced subscription no longer owns the id: unsubscribing it leaves the new one alone.
    await first.unsubscribe();
    c.publish('repl', JSON.stringify({ n: 3 }));
    c.publish('repl', JSON.stringify({ n: 7 }));
    await after.atLeast(1);
    await c.flush();
    expect(before.items).toEqual([]);
    expect(after.items.map((m) => m.json())).toEqual([{ n: 7 }]);
    expect(sent.items.filter((m) => m.command === 'unsubscribe')).toEqual([]);
    await second.unsubscribe();
    expect(await second.closed).toBeUndefined();
  });

  it('two replaces sent before the server answers the first: the last takes the deliveries', async () => {
    const c = await loggedOn();
    const first = c.subscribe('repl2', { subId: 'r', filter: '/n = 1' });
    await first.ready;
    const second = c.subscribe('repl2', { subId: 'r', filter: '/n = 2', options: 'replace' });
    const third = new Collector<Message>();
    const last = c.subscribe('repl2', { subId: 'r', filter: '/n = 3', options: 'replace', onMessage: third.push });
    await Promise.all([second.ready, last.ready]);
    expect(await first.closed).toBeUndefined();
    expect(await second.closed).toBeUndefined();
    for (const n of [1, 2, 3]) c.publish('repl2', JSON.stringify({ n }));
    await c.flush();
    expect(third.items.map((m) => m.json())).toEqual([{ n: 3 }]);
    // Through execute too.
    const viaExecute = new Collector<Message>();
    const a = c.execute(
      { command: 'subscribe', topic: 'repl2', subId: 'r', filter: '/n = 4', options: 'replace' },
      { onMessage: () => {} },
    );
    const b = c.execute(
      { command: 'subscribe', topic: 'repl2', subId: 'r', filter: '/n = 5', options: 'replace' },
      { onMessage: viaExecute.push },
    );
    await Promise.all([a, b]);
    for (const n of [4, 5]) c.publish('repl2', JSON.stringify({ n }));
    await c.flush();
    expect(viaExecute.items.map((m) => m.json())).toEqual([{ n: 5 }]);
  });

  it('two replaces sent together, both refused: the subscription they were to replace keeps the id', async () => {
    const { sent, filter } = outgoing();
    const c = await loggedOn({ transportFilter: filter });
    const kept = new Collector<Message>();
    const first = c.subscribe('repl3', { subId: 'r', onMessage: kept.push });
    await first.ready;
    const second = c.subscribe('repl3', { subId: 'r', filter: '/n >', options: 'replace' });
    const third = c.subscribe('repl3', { subId: 'r', filter: '/n <', options: 'replace' });
    await expect(second.ready).rejects.toMatchObject({ code: 'bad_filter' });
    await expect(third.ready).rejects.toMatchObject({ code: 'bad_filter' });
    c.publish('repl3', JSON.stringify({ n: 1 }));
    await kept.atLeast(1);
    // Its unsubscribe() still stops it, here and on the server.
    await first.unsubscribe();
    expect(await Promise.race([first.closed, 'open'])).toBeUndefined();
    expect(sent.items.filter((m) => m.command === 'unsubscribe').map((m) => m.subId)).toEqual(['r']);
    c.publish('repl3', JSON.stringify({ n: 2 }));
    await c.flush();
    expect(kept.items.map((m) => m.json())).toEqual([{ n: 1 }]);
  });

  it('two replaces sent together, the first refused: the second ends the subscription it replaced', async () => {
    const c = await loggedOn();
    const first = c.subscribe('repl4', { subId: 'r', onMessage: () => {} });
    await first.ready;
    const second = c.subscribe('repl4', { subId: 'r', filter: '/n >', options: 'replace' });
    const after = new Collector<Message>();
    const third = c.subscribe('repl4', { subId: 'r', filter: '/n = 2', options: 'replace', onMessage: after.push });
    await expect(second.ready).rejects.toMatchObject({ code: 'bad_filter' });
    await third.ready;
    expect(await Promise.race([first.closed, 'open'])).toBeUndefined();
    for (const n of [1, 2]) c.publish('repl4', JSON.stringify({ n }));
    await after.atLeast(1);
    await third.unsubscribe();
    expect(await Promise.race([third.closed, 'open'])).toBeUndefined();
  });

  it('a replace answered after the range it replaces has ended takes the id: the server made it a new subscription', async () => {
    const c = await loggedOn();
    const unhandled = new Collector<Message>();
    c.onUnhandledMessage(unhandled.push);
    for (let i = 0; i < 2; i++) c.publish('journal', String(i));
    await c.flush();
    const all = new Collector<Message>();
    await c.subscribe('journal', { bookmark: Bookmarks.EPOCH, onMessage: all.push }).ready;
    const [zero, one] = await all.atLeast(2);
    const range = `[${zero?.bookmark}:${one?.bookmark}]`;
    // Sent together: the server replays the range and ends it (its completed ack) before it reads the replace.
    const old = new Collector<Message>();
    const ended = c.subscribe('journal', { subId: 'rr', bookmark: range, onMessage: old.push });
    const fresh = new Collector<Message>();
    const replace = c.subscribe('journal', { subId: 'rr', options: { replace: true }, onMessage: fresh.push });
    await replace.ready;
    expect(await ended.closed).toBeUndefined();
    // Through execute too.
    void c.execute(
      { command: 'subscribe', topic: 'journal', subId: 'rx', bookmark: range, ackType: 'completed' },
      { onMessage: () => {} },
    );
    const viaExecute = new Collector<Message>();
    await c.execute(
      { command: 'subscribe', topic: 'journal', subId: 'rx', options: 'replace' },
      { onMessage: viaExecute.push },
    );
    c.publish('journal', '2');
    await c.flush();
    expect(old.items.map((m) => m.text())).toEqual(['0', '1']);
    expect(fresh.items.map((m) => m.text())).toEqual(['2']);
    expect(viaExecute.items.map((m) => m.text())).toEqual(['2']);
    expect(unhandled.items.filter((m) => m.command !== 'ack')).toEqual([]);
  });

  it('a replace that leaves the bookmark out goes on with the range it replaces, and ends at its end', async () => {
    const c = await loggedOn();
    // Publisher sequences set here, so the bookmark of a message not yet published is known.
    const publish = (n: number) => c.publish('journal', String(n), { sequence: 100 + n });
    publish(0);
    await c.flush();
    const all = new Collector<Message>();
    await c.subscribe('journal', { bookmark: Bookmarks.EPOCH, onMessage: all.push }).ready;
    const [zero] = await all.atLeast(1);
    // The range ends at the second message from now: not logged yet, so it goes on live.
    const [publisher] = (zero?.bookmark ?? '').split('|');
    const range = `(${zero?.bookmark}:${publisher}|102|]`;
    const old = c.subscribe('journal', { subId: 'rr', bookmark: range, onMessage: () => {} });
    await old.ready;
    const fresh = new Collector<Message>();
    const replace = c.subscribe('journal', { subId: 'rr', options: { replace: true }, onMessage: fresh.push });
    await replace.ready;
    const viaExecute = new Collector<Message>();
    await c.execute(
      { command: 'subscribe', topic: 'journal', subId: 'rx', bookmark: range, ackType: 'completed' },
      { onMessage: () => {} },
    );
    await c.execute(
      { command: 'subscribe', topic: 'journal', subId: 'rx', options: 'replace' },
      { onMessage: viaExecute.push },
    );
    for (let i = 1; i <= 3; i++) publish(i);
    await c.flush();
    expect(fresh.items.map((m) => m.text())).toEqual(['1', '2']);
    expect(viaExecute.items.map((m) => m.text())).toEqual(['1', '2']);
    // Its completed ack came before the flush's: it has ended, and both ids are free again.
    expect(await Promise.race([replace.closed, 'open'])).toBeUndefined();
    await c.subscribe('journal', { subId: 'rr' }).ready;
    await c.subscribe('journal', { subId: 'rx' }).ready;
  });

  it('a subscribe the server refuses as a duplicate does not unsubscribe the subscription it collided with', async () => {
    const { sent, filter } = outgoing();
    const unhandled = new Collector<Message>();
    const c = await loggedOn({ transportFilter: filter });
    c.onUnhandledMessage(unhandled.push);
    // Registered on the server without the client knowing (no route): only the server can refuse.
    c.send({ command: 'subscribe', topic: 'raw', subId: 'raw-1' });
    await expect(c.execute({ command: 'subscribe', topic: 'raw', subId: 'raw-1' })).rejects.toMatchObject({
      code: 'subscription_already_exists',
    });
    c.publish('raw', 'still here');
    await unhandled.atLeast(1);
    expect(unhandled.items[0]?.text()).toBe('still here');
    expect(sent.items.filter((m) => m.command === 'unsubscribe')).toEqual([]);
  });

  it('delta publish merges into the SOW; a delta subscription sees only changed fields', async () => {
    const c = await loggedOn();
    const got = new Collector<Message>();
    await c.deltaSubscribe('orders', { onMessage: got.push }).ready;
    c.publish('orders', JSON.stringify({ id: 1, qty: 5, px: 10 }));
    c.deltaPublish('orders', JSON.stringify({ id: 1, qty: 7 }));
    await got.atLeast(2);
    expect(got.items[0]?.json()).toEqual({ id: 1, qty: 5, px: 10 });
    expect(got.items[1]?.json()).toEqual({ id: 1, qty: 7 });
    const { records } = await c.sow('orders').toArray();
    expect(records.map((r) => r.json())).toEqual([{ id: 1, qty: 7, px: 10 }]);
  });

  it("execute with waitFor 'none': a command that cannot be sent leaves no route behind", async () => {
    const c = await loggedOn();
    // A header value the encoder refuses: nothing is written.
    const bad: Command = { command: 'subscribe', topic: 'nw', subId: 'nw-1', headers: { bad: {} as never } };
    await expect(c.execute(bad, { waitFor: 'none', onMessage: () => {} })).rejects.toSatisfy(
      InvalidOptionsError.isInstance,
    );
    await c.disconnect();
    await expect(
      c.execute({ command: 'subscribe', topic: 'nw', subId: 'nw-2' }, { waitFor: 'none', onMessage: () => {} }),
    ).rejects.toSatisfy(DisconnectedError.isInstance);
    // Both ids are free: left-behind routes would refuse them as in use.
    await c.connectAndLogon(uri);
    const got = new Collector<Message>();
    await c.subscribe('nw', { subId: 'nw-1', onMessage: got.push }).ready;
    await c.subscribe('nw', { subId: 'nw-2', onMessage: got.push }).ready;
    c.publish('nw', 'x');
    await got.atLeast(2);
  });

  /* ----------------------------------------------------------------- SOW */

  it('sow: records across batches as an async iterable, then the completion stats', async () => {
    const c = await loggedOn();
    await seedOrders(c, 25);
    const query = c.sow('orders', { batchSize: 4 });
    const ids: number[] = [];
    for await (const record of query) {
      expect(record.command).toBe('sow');
      expect(record.sowKey).toBeTruthy();
      ids.push(record.json<{ id: number }>().id);
    }
    expect(ids).toEqual([...Array(25).keys()].map((i) => i + 1));
    expect(await query.stats).toMatchObject({ recordsReturned: 25, matches: 25, topicMatches: 1 });
  });

  it('sow with filter, order and top_n, into a callback', async () => {
    const c = await loggedOn();
    await seedOrders(c, 10);
    const got = new Collector<Message>();
    const query = c.sow('orders', { filter: '/qty >= 30', orderBy: '/qty DESC', topN: 3, onMessage: got.push });
    expect(await query.stats).toMatchObject({ recordsReturned: 3, matches: 8 });
    expect(got.items.map((m) => m.json<{ id: number }>().id)).toEqual([10, 9, 8]);
  });

  it('sow by keys; an empty result completes with zero records', async () => {
    const c = await loggedOn();
    await seedOrders(c, 5);
    const { records: all } = await c.sow('orders').toArray();
    const keys = all.filter((r) => r.json<{ id: number }>().id % 2 === 1).map((r) => r.sowKey as string);
    const { records } = await c.sow('orders', { sowKeys: keys }).toArray();
    expect(records.map((r) => r.json<{ id: number }>().id)).toEqual([1, 3, 5]);
    const empty = await c.sow('orders', { filter: '/id > 100' }).toArray();
    expect(empty.records).toEqual([]);
    expect(empty.stats.recordsReturned).toBe(0);
  });

  it('leaving a sow iterator early drops the rest of its records: the connection keeps reading and stats resolve', async () => {
    // A short command timeout: before the fix the full queue held the socket paused for good.
    const c = await loggedOn({ commandTimeoutMs: 3000 });
    const count = 2000; // well over one socket read, so the queue fills and the connection pauses
    for (let id = 1; id <= count; id++) c.publish('orders', JSON.stringify({ id, pad: 'x'.repeat(200) }));
    await c.flush();
    const unhandled = new Collector<Message>();
    c.onUnhandledMessage(unhandled.push);
    const query = c.sow('orders', { maxQueue: 4, batchSize: 1 });
    const ids: number[] = [];
    for await (const record of query) {
      ids.push(record.json<{ id: number }>().id);
      break;
    }
    expect(ids).toEqual([1]);
    await c.flush();
    expect(await query.stats).toMatchObject({ recordsReturned: count, matches: count });
    expect(unhandled.items).toEqual([]);
    expect(c.isConnected).toBe(true);
  });

  it('sow on a filter the broker rejects fails the stats and ends the iterator with the error', async () => {
    const c = await loggedOn();
    const query = c.sow('orders', { filter: 'id ==' });
    await expect(query.stats).rejects.toMatchObject({ code: 'bad_filter' });
    await expect(
      (async () => {
        for await (const _ of query);
      })(),
    ).rejects.toMatchObject({ code: 'bad_filter' });
  });

  it('sowAndSubscribe: the SOW records between group markers, then live messages', async () => {
    const c = await loggedOn();
    await seedOrders(c, 3);
    const got = new Collector<Message>();
    const sub = c.sowAndSubscribe('orders', { batchSize: 2, onMessage: got.push });
    await sub.ready;
    await got.atLeast(5);
    c.publish('orders', order(4));
    await got.atLeast(6);
    expect(got.items.map((m) => m.command)).toEqual(['group_begin', 'sow', 'sow', 'sow', 'group_end', 'publish']);
    expect(got.items[5]?.json<{ id: number }>().id).toBe(4);
    expect(got.items[5]?.subId).toBe(sub.subId);
  });

  it("sowAndSubscribe with a range bookmark does not end at the query's completed ack", async () => {
    const c = await loggedOn();
    await seedOrders(c, 1);
    const got = new Collector<Message>();
    const acks = new Collector<Message>();
    const sub = c.sowAndSubscribe('orders', {
      bookmark: '[0:0|1|]', // a historical query's range (the test broker ignores it)
      ackTypes: ['completed'],
      onAck: acks.push,
      onMessage: got.push,
    });
    await sub.ready;
    await acks.atLeast(1); // the query's completed ack
    c.publish('orders', order(2));
    const items = await got.atLeast(4);
    expect(items.map((m) => m.command)).toEqual(['group_begin', 'sow', 'group_end', 'publish']);
  });

  it('sowAndDeltaSubscribe: SOW records, then deltas', async () => {
    const c = await loggedOn();
    c.publish('orders', JSON.stringify({ id: 1, qty: 1, px: 3 }));
    await c.flush();
    const got = new Collector<Message>();
    await c.sowAndDeltaSubscribe('orders', { onMessage: got.push }).ready;
    await got.atLeast(3);
    c.deltaPublish('orders', JSON.stringify({ id: 1, px: 4 }));
    await got.atLeast(4);
    expect(got.items[1]?.json()).toEqual({ id: 1, qty: 1, px: 3 });
    expect(got.items[3]?.json()).toEqual({ id: 1, px: 4 });
  });

  it('sowDelete by filter, by keys and by data, returning the counts', async () => {
    const c = await loggedOn();
    await seedOrders(c, 10);
    expect(await c.sowDelete('orders', { filter: '/id > 7' })).toMatchObject({ recordsDeleted: 3, matches: 3 });
    const { records } = await c.sow('orders', { filter: '/id <= 2' }).toArray();
    expect(await c.sowDelete('orders', { keys: records.map((r) => r.sowKey as string) })).toMatchObject({
      recordsDeleted: 2,
    });
    expect(await c.sowDelete('orders', { data: order(5) })).toMatchObject({ recordsDeleted: 1 });
    const left = await c.sow('orders').toArray();
    expect(left.records.map((r) => r.json<{ id: number }>().id)).toEqual([3, 4, 6, 7]);
    await expect(c.sowDelete('orders', { filter: 'nope (' })).rejects.toMatchObject({ code: 'bad_filter' });
  });

  /* -------------------------------------------------------- unsubscribe, flush */

  it('unsubscribe one, then all: the server stops delivering and the subscriptions close', async () => {
    const c = await loggedOn();
    const unhandled = new Collector<Message>();
    c.onUnhandledMessage(unhandled.push);
    const a = new Collector<Message>();
    const b = new Collector<Message>();
    const subA = c.subscribe('u', { onMessage: a.push });
    const subB = c.subscribe('u', { onMessage: b.push });
    const subC = c.subscribe('v');
    await Promise.all([subA.ready, subB.ready, subC.ready]);
    c.publish('u', '1');
    await c.flush();
    await c.unsubscribe(subA.subId);
    expect(await subA.closed).toBeUndefined();
    c.publish('u', '2');
    await c.flush();
    expect(a.items.map((m) => m.text())).toEqual(['1']);
    expect(b.items.map((m) => m.text())).toEqual(['1', '2']);
    await c.unsubscribe();
    expect(await subB.closed).toBeUndefined();
    expect(await subC.closed).toBeUndefined();
    c.publish('u', '3');
    c.publish('v', '3');
    await c.flush();
    expect(b.items).toHaveLength(2);
    expect(unhandled.items).toEqual([]);
    // An iterator over a closed subscription ends.
    const rest: Message[] = [];
    for await (const m of subC) rest.push(m);
    expect(rest).toEqual([]);
  });

  it('flush waits for processed and persisted acks', async () => {
    const c = await loggedOn();
    c.publish('orders', order(1));
    await c.flush('processed');
    c.publish('orders', order(2));
    await c.flush('persisted');
    expect(server.stats().published).toBe(2);
  });

  /* ------------------------------------------------------------------ execute */

  it('execute: any command, with routed deliveries, every ack, and the ack it waits for', async () => {
    const c = await loggedOn();
    await seedOrders(c, 3);
    const deliveries = new Collector<Message>();
    const acks = new Collector<Message>();
    const completed = await c.execute(
      { command: 'sow', topic: 'orders', batchSize: 2, ackType: 'processed' },
      { onMessage: deliveries.push, onAck: acks.push, waitFor: 'completed' },
    );
    expect(completed).toMatchObject({ ackType: 'completed', status: 'success', queryId: expect.any(String) });
    expect(deliveries.items.map((m) => m.command)).toEqual(['group_begin', 'sow', 'sow', 'sow', 'group_end']);
    expect(acks.items.map((m) => m.ackType)).toEqual(['processed', 'completed']);

    expect(await c.execute({ command: 'publish', topic: 'x', data: '1' }, { waitFor: 'none' })).toBeUndefined();
    await expect(c.execute({ command: 'subscribe', topic: 'bad(' })).rejects.toMatchObject({
      code: 'bad_regex_topic',
    });
  });

  /* ---------------------------------------------------------------- queues */

  it('queue: leases up to max backlog, acks in batches release the next messages', async () => {
    const producer = await loggedOn();
    for (let i = 0; i < 6; i++) producer.publish('jobs', JSON.stringify({ job: i }));
    await producer.flush();
    const { sent, filter } = outgoing();
    const c = await loggedOn({ ackBatchSize: 2, transportFilter: filter });
    const got = new Collector<Message>();
    await c.subscribe('jobs', { maxBacklog: 2, onMessage: got.push }).ready;
    await got.atLeast(2);
    await c.flush();
    expect(got.items).toHaveLength(2);
    expect(got.items[0]?.leasePeriod).toBeTruthy();
    expect(got.items[0]?.bookmark).toBeTruthy();

    c.ack(got.items[0] as Message);
    await c.flush();
    expect(sent.items.filter((m) => m.command === 'sow_delete')).toHaveLength(0); // batch of 2 not full
    c.ack(got.items[1] as Message);
    await got.atLeast(4);
    const acks = sent.items.filter((m) => m.command === 'sow_delete');
    expect(acks).toHaveLength(1);
    expect(acks[0]?.bookmark).toBe(`${got.items[0]?.bookmark},${got.items[1]?.bookmark}`);
    expect(server.stats().queues.jobs).toMatchObject({ depth: 4, leased: 2 });
  });

  it('queue: an ack left alone is sent when its batch times out; flushAcks sends at once', async () => {
    const producer = await loggedOn();
    for (let i = 0; i < 3; i++) producer.publish('jobs', String(i));
    await producer.flush();
    const { sent, filter } = outgoing();
    const c = await loggedOn({ ackBatchSize: 100, ackTimeoutMs: 20, transportFilter: filter });
    const got = new Collector<Message>();
    await c.subscribe('jobs', { maxBacklog: 3, onMessage: got.push }).ready;
    await got.atLeast(3);
    c.ack(got.items[0] as Message);
    const deletes = () => sent.items.filter((m) => m.command === 'sow_delete');
    await sent.atLeast(sent.items.length + 1); // the timer's sow_delete
    expect(deletes()).toHaveLength(1);
    c.ack(got.items[1] as Message);
    c.ack(got.items[2] as Message);
    c.flushAcks();
    await c.flush();
    expect(deletes()).toHaveLength(2);
    expect(deletes()[1]?.bookmark?.split(',')).toHaveLength(2);
    expect(server.stats().queues.jobs).toMatchObject({ depth: 0, leased: 0 });
  });

  it('queue: an ack after a disconnect is dropped: no batch timer left armed, nothing sent on the next connection', async () => {
    const environment = new ManualEnvironment();
    const { sent, filter } = outgoing();
    const c = await loggedOn({ environment, ackBatchSize: 10, transportFilter: filter });
    await c.disconnect();
    expect(environment.pendingTimers).toBe(0);
    c.ack({ topic: 'jobs', bookmark: '1|1|' });
    expect(environment.pendingTimers).toBe(0);
    await c.connectAndLogon(uri);
    c.flushAcks();
    await c.flush();
    expect(sent.items.filter((m) => m.command === 'sow_delete')).toEqual([]);
  });

  it('queue: cancel returns the message for redelivery, expire removes it', async () => {
    const producer = await loggedOn();
    producer.publish('jobs', 'a');
    producer.publish('jobs', 'b');
    await producer.flush();
    const c = await loggedOn();
    const got = new Collector<Message>();
    await c.subscribe('jobs', { maxBacklog: 1, onMessage: got.push }).ready;
    const [first] = await got.atLeast(1);
    expect(first?.text()).toBe('a');
    c.ack(first as Message, { cancel: true });
    await got.atLeast(2);
    expect(got.items[1]?.text()).toBe('a');
    expect(got.items[1]?.bookmark).toBe(first?.bookmark);
    c.ack(got.items[1] as Message, { expire: true });
    await got.atLeast(3);
    expect(got.items[2]?.text()).toBe('b');
    c.ack(got.items[2] as Message);
    await c.flush();
    expect(server.stats().queues.jobs).toMatchObject({ depth: 0, leased: 0 });
  });

  it('queue: autoAck acknowledges each message once its handler is done (callback and async handler)', async () => {
    const producer = await loggedOn();
    for (let i = 0; i < 20; i++) producer.publish('jobs', String(i));
    await producer.flush();
    const c = await loggedOn();
    const got = new Collector<Message>();
    await c.subscribe('jobs', {
      autoAck: true,
      onMessage: async (m) => {
        await Promise.resolve();
        got.push(m);
      },
    }).ready;
    await got.atLeast(20);
    expect(got.items.map((m) => m.text())).toEqual([...Array(20).keys()].map(String));
    await c.flush();
    expect(server.stats().queues.jobs).toMatchObject({ depth: 0, leased: 0 });
  });

  it('queue: autoAck in iterator mode acknowledges a message when the next is requested', async () => {
    const producer = await loggedOn();
    for (let i = 0; i < 5; i++) producer.publish('jobs', String(i));
    await producer.flush();
    const c = await loggedOn();
    const sub = c.subscribe('jobs', { autoAck: true });
    await sub.ready;
    const seen: string[] = [];
    for await (const m of sub) {
      seen.push(m.text());
      if (seen.length === 5) break;
    }
    expect(seen).toEqual(['0', '1', '2', '3', '4']);
    await c.flush();
    // Four acked; the fifth was not asked past, so its lease went back on unsubscribe.
    expect(server.stats().queues.jobs).toMatchObject({ depth: 1, leased: 0 });
  });

  /* ------------------------------------------------------------- bookmarks */

  it('bookmark subscription: replays from EPOCH, then completed and persisted acks, then live', async () => {
    const c = await loggedOn();
    for (let i = 0; i < 5; i++) c.publish('journal', String(i));
    await c.flush();
    const got = new Collector<Message>();
    const acks = new Collector<Message>();
    const sub = c.subscribe('journal', {
      bookmark: Bookmarks.EPOCH,
      ackTypes: ['completed', 'persisted'],
      onAck: acks.push,
      onMessage: got.push,
    });
    await sub.ready;
    await got.atLeast(5);
    expect(got.items.map((m) => m.text())).toEqual(['0', '1', '2', '3', '4']);
    expect(got.items.every((m) => m.bookmark?.includes('|'))).toBe(true);
    const waitFor = async (type: string) => {
      for (let seen = 1; ; seen++) {
        const items = await acks.atLeast(seen);
        const ack = items.find((a) => a.ackType === type);
        if (ack) return ack;
      }
    };
    const completed = await waitFor('completed');
    expect(completed.subId).toBe(sub.subId);
    expect(completed.bookmark).toBe(got.items[4]?.bookmark);
    c.publish('journal', '5');
    await got.atLeast(6);
    const persisted = await waitFor('persisted');
    expect(persisted.subId).toBe(sub.subId);
    expect(acks.items.some((a) => a.ackType === 'processed')).toBe(false); // the processed ack settles ready
  });

  it('bookmark subscription from a bookmark resumes after it; MOST_RECENT without a store is EPOCH', async () => {
    const c = await loggedOn();
    for (let i = 0; i < 4; i++) c.publish('journal', String(i));
    await c.flush();
    const all = new Collector<Message>();
    await c.subscribe('journal', { bookmark: Bookmarks.MOST_RECENT, onMessage: all.push }).ready;
    await all.atLeast(4);
    const after = new Collector<Message>();
    await c.subscribe('journal', { bookmark: all.items[1]?.bookmark, onMessage: after.push }).ready;
    await after.atLeast(2);
    await c.flush();
    expect(after.items.map((m) => m.text())).toEqual(['2', '3']);
  });

  it('bookmark range: delivers the range, then ends at its completed ack and frees its id', async () => {
    const c = await loggedOn();
    for (let i = 0; i < 6; i++) c.publish('journal', String(i));
    await c.flush();
    const all = new Collector<Message>();
    await c.subscribe('journal', { bookmark: Bookmarks.EPOCH, onMessage: all.push }).ready;
    const [, one, , , four] = await all.atLeast(6);
    const sub = c.subscribe('journal', { subId: 'range', bookmark: `(${one?.bookmark}:${four?.bookmark}]` });
    const got: string[] = [];
    for await (const m of sub) got.push(m.text());
    expect(got).toEqual(['2', '3', '4']);
    await expect(sub.closed).resolves.toBeUndefined();
    // The server removed it at the end: the id is free here too.
    const again = new Collector<Message>();
    await c.subscribe('journal', {
      subId: 'range',
      bookmark: `[${four?.bookmark}:${four?.bookmark}]`,
      onMessage: again.push,
    }).ready;
    expect((await again.atLeast(1)).map((m) => m.text())).toEqual(['4']);
  });

  it('pause and resume: a paused bookmark subscription gets nothing; resumed, what it missed comes first, in order', async () => {
    const c = await loggedOn();
    const got = new Collector<Message>();
    const texts = () => got.items.map((m) => m.text());
    // Started paused: no replay until resumed.
    c.publish('journal', '0');
    const sub = c.subscribe('journal', {
      subId: 'j',
      bookmark: Bookmarks.EPOCH,
      options: { pause: true },
      onMessage: got.push,
    });
    await sub.ready;
    c.publish('journal', '1');
    await c.flush();
    expect(texts()).toEqual([]);
    await c.resume('j');
    await got.atLeast(2);
    await c.pause(['j']);
    c.publish('journal', '2');
    c.publish('journal', '3');
    await c.flush();
    expect(texts()).toEqual(['0', '1']);
    await c.resume(['j']);
    c.publish('journal', '4');
    await got.atLeast(5);
    await c.flush();
    expect(texts()).toEqual(['0', '1', '2', '3', '4']);
  });

  it("pause and resume through the subscription's handle, which refuses once it no longer holds its id", async () => {
    const c = await loggedOn();
    const got = new Collector<Message>();
    const texts = () => got.items.map((m) => m.text());
    const sub = c.subscribe('journal', { subId: 'h', bookmark: Bookmarks.EPOCH, onMessage: got.push });
    await sub.ready;
    await sub.pause();
    c.publish('journal', '1');
    await c.flush();
    expect(texts()).toEqual([]);
    await sub.resume({ timeoutMs: 5_000 });
    expect((await got.atLeast(1)).map((m) => m.text())).toEqual(['1']);
    // Replaced, the old handle leaves the id to the new one.
    const replacing = c.subscribe('journal', {
      subId: 'h',
      bookmark: Bookmarks.NOW,
      options: { replace: true },
      onMessage: got.push,
    });
    await replacing.ready;
    for (const call of [() => sub.pause(), () => sub.resume()]) {
      const error = await call().catch((e: unknown) => e);
      expect(InvalidOptionsError.isInstance(error)).toBe(true);
      expect((error as Error).message).toMatch(/^(pause|resume): subscription h has ended$/);
    }
    await replacing.pause();
    c.publish('journal', '2');
    await c.flush();
    expect(texts()).toEqual(['1']);
    await replacing.resume();
    expect((await got.atLeast(2)).map((m) => m.text())).toEqual(['1', '2']);
    await replacing.unsubscribe();
    await expect(replacing.pause()).rejects.toThrow('pause: subscription h has ended');
  });

  it('pause and resume: refused by the server with its reason, or before sending for ids that are not ids', async () => {
    const c = await loggedOn();
    await c.subscribe('journal', { subId: 'plain', onMessage: () => {} }).ready;
    const unknown = await c.resume('plain,nope').catch((e: unknown) => e);
    expect(unknown).toMatchObject({ code: 'command_failed', message: 'resume failed: subscription not found: nope' });
    await expect(c.pause('plain')).rejects.toThrow('pause failed: invalid pause: not a bookmark subscription: plain');
    for (const bad of [[], '', 'a,,b', ['a,b'], [7 as unknown as string]]) {
      const error = await c.pause(bad).catch((e: unknown) => e);
      expect(InvalidOptionsError.isInstance(error)).toBe(true);
      expect((error as Error).message).toMatch(/^pause: subIds must be one or more non-empty ids/);
    }
    // Timed out, it says what it was.
    server.freeze();
    const timedOut = await c.pause('plain', { timeoutMs: 30 }).catch((e: unknown) => e);
    server.thaw();
    expect(TimedOutError.isInstance(timedOut)).toBe(true);
    expect((timedOut as Error).message).toMatch(/^pause \(cid \d+\) timed out after 30 ms/);
    // Still subscribed: a refused pause changes nothing.
    const got = new Collector<Message>();
    await c.subscribe('journal', { subId: 'after', bookmark: Bookmarks.NOW, onMessage: got.push }).ready;
    c.publish('journal', 'x');
    expect((await got.atLeast(1)).map((m) => m.text())).toEqual(['x']);
  });

  /* --------------------------------------------------- timeouts and aborts */

  it('a command times out on a frozen broker, clearing its timer', async () => {
    const c = await loggedOn();
    server.freeze();
    const error = await c.flush('processed', { timeoutMs: 30 }).catch((e: unknown) => e);
    expect(TimedOutError.isInstance(error)).toBe(true);
    expect((error as Error).message).toMatch(/flush \(cid \d+\) timed out after 30 ms/);
    server.thaw();
    await c.flush();
  });

  it('a subscribe that times out sends unsubscribe, so the thawed broker delivers nothing to it', async () => {
    const { sent, filter } = outgoing();
    const c = await loggedOn({ transportFilter: filter });
    const unhandled = new Collector<Message>();
    c.onUnhandledMessage(unhandled.push);
    server.freeze();
    const sub = c.subscribe('late', { timeoutMs: 30 });
    await expect(sub.ready).rejects.toMatchObject({ code: 'timed_out' });
    expect(TimedOutError.isInstance(await sub.closed)).toBe(true);
    await sent.atLeast(sent.items.findIndex((m) => m.command === 'subscribe') + 2);
    expect(sent.items.find((m) => m.command === 'unsubscribe')?.subId).toBe(sub.subId);
    server.thaw();
    c.publish('late', 'x');
    await c.flush();
    // The late processed ack of the subscribe has no one waiting; no delivery arrives.
    expect(unhandled.items.filter((m) => m.command !== 'ack')).toEqual([]);
  });

  it('a subscribe aborted with a reason of any kind is taken back from the server', async () => {
    const { sent, filter } = outgoing();
    const c = await loggedOn({ transportFilter: filter });
    const unhandled = new Collector<Message>();
    c.onUnhandledMessage(unhandled.push);
    server.freeze();
    const controller = new AbortController();
    const reason = new Error('user gave up');
    const aborted = c.subscribe('given-up', { signal: controller.signal });
    const timedOut = c.subscribe('given-up', { signal: AbortSignal.timeout(20) });
    controller.abort(reason);
    await expect(aborted.ready).rejects.toBe(reason);
    await expect(timedOut.ready).rejects.toMatchObject({ name: 'TimeoutError' });
    server.thaw();
    await c.flush(); // written after the unsubscribes, so they have been sent
    const unsubscribed = sent.items.filter((m) => m.command === 'unsubscribe').map((m) => m.subId);
    expect(unsubscribed.sort()).toEqual([aborted.subId, timedOut.subId].sort());
    c.publish('given-up', 'x');
    await c.flush();
    expect(unhandled.items.filter((m) => m.command !== 'ack')).toEqual([]);
  });

  it('aborts a waiting command and an already-aborted call', async () => {
    const c = await loggedOn();
    server.freeze();
    const controller = new AbortController();
    const flushed = c.flush('processed', { signal: controller.signal });
    controller.abort();
    await expect(flushed).rejects.toSatisfy(AbortError.isInstance);
    await expect(c.flush('processed', { signal: AbortSignal.abort() })).rejects.toSatisfy(AbortError.isInstance);
    const query = c.sow('orders', { signal: AbortSignal.abort() });
    await expect(query.stats).rejects.toSatisfy(AbortError.isInstance);
    const reason = new Error('shutting down');
    const sub = c.subscribe('x', { signal: AbortSignal.abort(reason) });
    await expect(sub.ready).rejects.toBe(reason);
    const signal = AbortSignal.abort();
    for (const call of [
      () => c.sowDelete('orders', { filter: '/id = 1' }, { signal }),
      () => c.execute({ command: 'flush' }, { signal }),
      () => c.unsubscribe('x', { signal }),
      () => c.heartbeat(1, 2, { signal }),
    ]) {
      await expect(call()).rejects.toSatisfy(AbortError.isInstance);
    }
    server.thaw();
    await c.flush();
    expect(c.isConnected).toBe(true);
  });

  it('aborts or times out connecting and logging on to a frozen broker, leaving nothing open', async () => {
    server.freeze();
    const a = client();
    const connecting = new AbortController();
    const attempt = a.connectAndLogon(uri, { signal: connecting.signal });
    connecting.abort();
    await expect(attempt).rejects.toSatisfy(AbortError.isInstance);
    expect(a.isConnected).toBe(false);
    const b = client();
    await expect(b.connectAndLogon(uri, { timeoutMs: 30 })).rejects.toSatisfy(TimedOutError.isInstance);
    expect(b.isConnected).toBe(false);
    server.thaw();

    const c = client();
    await c.connect(uri);
    server.freeze();
    const logon = new AbortController();
    const loggingOn = c.logon({ signal: logon.signal });
    logon.abort();
    await expect(loggingOn).rejects.toSatisfy(AbortError.isInstance);
    await expect(c.logon({ timeoutMs: 30 })).rejects.toSatisfy(TimedOutError.isInstance);
    expect(c.state).toBe(ConnectionState.Connected);
    server.thaw();
  });

  /* ------------------------------------------------------------------- hooks */

  it('handler errors go to the exception listener; delivery goes on', async () => {
    const c = await loggedOn();
    const errors = new Collector<unknown>();
    c.onException(errors.push);
    const got = new Collector<Message>();
    await c.subscribe('boom', {
      onMessage: (m) => {
        got.push(m);
        if (m.text() === 'sync') throw new Error('sync failure');
        if (m.text() === 'async') return Promise.reject(new Error('async failure'));
      },
    }).ready;
    c.publish('boom', 'sync');
    c.publish('boom', 'async');
    c.publish('boom', 'fine');
    await got.atLeast(3);
    await errors.atLeast(2);
    expect(errors.items.map((e) => (e as Error).message).sort()).toEqual(['async failure', 'sync failure']);
  });

  it('a throwing onAck or logger is reported, not taken for bad data: the connection stays up', async () => {
    const logged: string[] = [];
    const throwing = (message: string) => {
      logged.push(message);
      throw new Error('logger bug');
    };
    const c = await loggedOn({ logger: { debug: throwing, info: throwing, warn: throwing, error: throwing } });
    const disconnects = new Collector<Error | undefined>();
    c.onDisconnect(disconnects.push);
    const errors = new Collector<unknown>();
    const stopListening = c.onException(errors.push);
    c.publish('acked', '1');
    const acks = new Collector<string | undefined>();
    // The completed ack comes after the processed ack execute waits for: it reaches the route's onAck.
    const subscribeWith = (subId: string) =>
      c.execute(
        { command: 'subscribe', topic: 'acked', subId, bookmark: Bookmarks.EPOCH, ackType: 'completed' },
        {
          onMessage: () => {},
          onAck: (ack) => {
            acks.push(ack.ackType);
            if (ack.ackType === 'completed') throw new Error('onAck bug');
          },
        },
      );
    await subscribeWith('first');
    await errors.atLeast(1);
    expect((errors.items[0] as Error).message).toBe('onAck bug');
    await c.flush();
    expect(c.isConnected).toBe(true);

    // With no exception listener the error goes to the logger, which throws too.
    stopListening();
    await subscribeWith('second');
    await acks.atLeast(4);
    await c.flush();
    expect(logged).toContain('uncaught error in a handler or listener');
    expect(c.isConnected).toBe(true);
    expect(disconnects.items).toEqual([]);
  });

  it('a transport filter that throws on the way out closes the connection with its error', async () => {
    let failing = false;
    const c = await loggedOn({
      transportFilter: (_bytes, direction) => {
        if (failing && direction === 'out') throw new Error('filter bug');
        return undefined;
      },
    });
    const disconnects = new Collector<Error | undefined>();
    c.onDisconnect(disconnects.push);
    failing = true;
    // Sent at the end of the tick, with no caller to throw to (it used to be an uncaught exception).
    c.publish('filtered', 'lost');
    const [error] = await disconnects.atLeast(1);
    expect(error?.message).toBe('filter bug');
    expect(c.isConnected).toBe(false);
    await expect(c.flush()).rejects.toMatchObject({ code: 'disconnected' });
  });

  it('messages no route claims go to unhandled listeners, else to the last-chance handler', async () => {
    const lastChance = new Collector<Message>();
    const c = await loggedOn({ lastChanceMessageHandler: lastChance.push });
    // A fire-and-forget subscribe has no route in the client.
    c.send({ command: 'subscribe', topic: 'stray', subId: 'stray-1' });
    await c.flush();
    c.publish('stray', '1');
    await lastChance.atLeast(1);
    const unhandled = new Collector<Message>();
    const stop = c.onUnhandledMessage(unhandled.push);
    c.publish('stray', '2');
    await unhandled.atLeast(1);
    expect(unhandled.items[0]).toMatchObject({ subId: 'stray-1' });
    expect(unhandled.items[0]?.text()).toBe('2');
    stop();
    c.publish('stray', '3');
    await lastChance.atLeast(2);
    expect(lastChance.items.map((m) => m.text())).toEqual(['1', '3']);
  });

  it('failed writes reach the failed-write listener with their reason and id', async () => {
    const c = await loggedOn();
    const failures = new Collector<FailedWrite>();
    c.onFailedWrite(failures.push);
    c.publish('/AMPS/nope', '1', { ackType: 'processed', commandId: 'pub-1' });
    c.publish('orders', 'not json', { ackType: 'persisted', sequence: 1 });
    c.publish('orders', order(1), { ackType: 'persisted', sequence: 2 });
    await failures.atLeast(2);
    await c.flush('persisted');
    expect(failures.items).toHaveLength(2);
    expect(failures.items[0]).toMatchObject({ commandId: 'pub-1', reason: 'invalid topic' });
    expect(failures.items[1]).toMatchObject({ sequence: 1, reason: 'invalid message' });
  });

  it('persisted acks for sequenced publishes reach onPersisted, conflated as AMPS sends them', async () => {
    const c = await loggedOn();
    const persisted = new Collector<number>();
    c.onPersisted(persisted.push);
    for (let s = 1; s <= 5; s++) c.publish('orders', order(s), { sequence: s, ackType: 'persisted' });
    await persisted.atLeast(1);
    // One ack, about a second later, without a cid: its s covers every earlier sequence.
    expect(persisted.items).toEqual([5]);
  });

  it('the transport filter sees (and may replace) every chunk both ways', async () => {
    let inBytes = 0;
    let outBytes = 0;
    const c = await loggedOn({
      transportFilter: (bytes, direction) => {
        if (direction === 'in') inBytes += bytes.length;
        else outBytes += bytes.length;
        // Rewrites the body of outgoing publishes to `replaced-topic`.
        if (direction !== 'out') return undefined;
        const text = new TextDecoder().decode(bytes);
        return text.includes('original') ? new TextEncoder().encode(text.replace('original', 'replaced')) : undefined;
      },
    });
    const got = new Collector<Message>();
    await c.subscribe('filtered', { onMessage: got.push }).ready;
    c.publish('filtered', 'original');
    const [m] = await got.atLeast(1);
    expect(m?.text()).toBe('replaced');
    expect(inBytes).toBeGreaterThan(0);
    expect(outBytes).toBeGreaterThan(0);
  });

  it('commands on a disconnected client fail with DisconnectedError; pending ones reject when the broker drops it', async () => {
    const c = client();
    expect(() => c.publish('x', '1')).toThrow(expect.objectContaining({ code: 'disconnected' }));
    await expect(c.flush()).rejects.toMatchObject({ code: 'disconnected' });
    await c.connectAndLogon(uri);
    const sub = c.subscribe('gone');
    await sub.ready;
    const disconnected = new Collector<Error | undefined>();
    c.onDisconnect(disconnected.push);
    server.freeze();
    const pending = c.flush();
    server.dropConnections();
    await expect(pending).rejects.toMatchObject({ code: 'disconnected' });
    const [error] = await disconnected.atLeast(1);
    expect(AmpsError.isInstance(error)).toBe(true);
    expect((await sub.closed)?.message).toMatch(/disconnected from/);
    await expect(
      (async () => {
        for await (const _ of sub);
      })(),
    ).rejects.toMatchObject({ code: 'disconnected' });
    server.thaw();
  });
});
