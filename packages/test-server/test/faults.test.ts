import { existsSync, readFileSync } from 'node:fs';
import { parseUri } from '@amps-ts/core-protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { startFaultProxy, startTestServer, type TestServer, type TestServerOptions } from '../src/index.js';
import { isDelivery, ManualEnvironment, TestClient, type Transport, transports, until } from './helpers.js';

/** Linux: the range the OS gives outgoing connections their local ports from. */
const PORT_RANGE = '/proc/sys/net/ipv4/ip_local_port_range';

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

async function connect(server: TestServer, transport: Transport): Promise<TestClient> {
  const c = await TestClient.connectTo(server, transport);
  open.push(c);
  return c;
}

/** Several round trips through another broker: time for a frozen server to misbehave if it would. */
async function settle(): Promise<void> {
  const reference = await serve({ wsPort: false });
  const c = await connect(reference, 'tcp');
  await c.logon('reference');
  for (let i = 0; i < 10; i++) await c.sync();
}

describe.each(transports)('fault controls, clients over %s', (transport) => {
  it('freeze: sockets stay open, nothing is read or written, new connections hang; thaw resumes', async () => {
    const server = await serve();
    const c = await connect(server, transport);
    await c.logon('frozen');
    const sub = await c.subscribe('t');
    server.freeze();
    expect(server.stats().frozen).toBe(true);
    const cid = c.publish('t', { n: 1 }, { ackType: 'processed' });
    // A connection made while frozen: accepted by TCP, never answered.
    let late: TestClient | undefined;
    const lateConnect = TestClient.connectTo(server, transport).then((l) => {
      late = l;
      open.push(l);
      if (transport === 'tcp') l.command({ command: 'logon', clientName: 'late', ackType: 'processed' });
      return l;
    });
    await settle();
    expect(c.unread).toHaveLength(0);
    expect(c.isClosed).toBe(false);
    if (transport === 'ws') expect(late).toBeUndefined();
    else expect(late?.unread ?? []).toHaveLength(0);
    server.thaw();
    expect((await c.ack(cid)).status).toBe('success');
    await c.take(isDelivery(sub));
    const l = await lateConnect;
    if (transport === 'ws') l.command({ command: 'logon', clientName: 'late', ackType: 'processed' });
    await l.take((m) => m.command === 'ack' && m.clientName === 'late', 'late logon ack');
  });

  it('kill: every socket closed, connections refused; restart: same ports, same data', async () => {
    const server = await serve({ sowTopics: [{ topic: 'q', key: '/id' }] });
    const { tcpPort, wsPort } = server;
    const c = await connect(server, transport);
    await c.logon('killed');
    c.publish('q', { id: 1 }, { sequence: 5 });
    await c.sync();
    await server.kill();
    await c.closed;
    await expect(TestClient.connect(server.tcpUri())).rejects.toThrow();
    expect(server.stats().state).toBe('killed');
    await server.restart();
    expect([server.tcpPort, server.wsPort]).toEqual([tcpPort, wsPort]);
    const back = await connect(server, transport);
    expect((await back.logon('killed')).sequence).toBe(5);
    const cid = back.command({ command: 'sow', topic: 'q', ackType: 'completed' });
    await back.ack(cid, 'completed');
    expect(back.takeAll((m) => m.command === 'sow').map((m) => m.json())).toEqual([{ id: 1 }]);
  });

  // A port from the range outgoing connections take their local ports from could be taken, while
  // the broker is down, by a client's connection elsewhere: then restart() failed with EADDRINUSE.
  it.runIf(existsSync(PORT_RANGE))(
    'listens below the ports outgoing connections are given, so a restart finds its ports free',
    async () => {
      const ephemeralFrom = Number(readFileSync(PORT_RANGE, 'utf8').trim().split(/\s+/)[0]);
      const server = await serve();
      for (const port of [server.tcpPort, server.wsPort as number]) {
        expect(port).toBeLessThan(ephemeralFrom);
        expect(port).toBeGreaterThanOrEqual(Math.max(1024, ephemeralFrom - 16384));
      }
      await server.restart();
      expect((await (await connect(server, transport)).logon('back')).status).toBe('success');
    },
  );

  it('dropConnections closes clients and keeps listening', async () => {
    const server = await serve();
    const c = await connect(server, transport);
    await c.logon('dropped');
    server.dropConnections();
    await c.closed;
    const again = await connect(server, transport);
    expect((await again.logon('dropped')).status).toBe('success');
    expect(server.stats().connections).toMatchObject({ current: 1, total: 2 });
  });
});

it('freeze holds heartbeat watchdogs: a frozen server does not close silent clients', async () => {
  const env = new ManualEnvironment();
  const server = await serve({ environment: env });
  const c = await connect(server, 'tcp');
  await c.logon('hb-frozen');
  c.send({ command: 'heartbeat', options: 'start,1' });
  await c.sync();
  server.freeze();
  env.advance(10_000);
  server.thaw();
  await c.sync();
  expect(c.isClosed).toBe(false);
  env.advance(2000);
  await c.closed;
});

it('freeze holds a WebSocket upgrade whose connection was accepted before: answered on thaw', async () => {
  const server = await serve();
  // The proxy holds the client's upgrade request while the server accepts the connection.
  const proxy = await startFaultProxy({ target: server.wsPort as number });
  try {
    proxy.blackhole();
    let late: TestClient | undefined;
    const lateConnect = TestClient.connect(`ws://127.0.0.1:${proxy.port}/amps/json`).then((l) => {
      late = l;
      open.push(l);
      return l;
    });
    await until(() => proxy.heldBytes > 0, 'the upgrade request held by the proxy');
    await settle();
    server.freeze();
    proxy.heal();
    await settle();
    expect(late).toBeUndefined();
    server.thaw();
    const l = await lateConnect;
    expect((await l.logon('upgraded-after-thaw')).status).toBe('success');
  } finally {
    await proxy.close();
  }
});

it('kill while frozen: after restart nothing is frozen and timers run again', async () => {
  const env = new ManualEnvironment();
  const server = await serve({ environment: env });
  server.freeze();
  await server.kill();
  await server.restart();
  expect(server.stats().frozen).toBe(false);
  const c = await connect(server, 'tcp');
  await c.logon('after-frozen-kill');
  c.send({ command: 'heartbeat', options: 'start,1' });
  await c.sync();
  env.advance(1000);
  await c.take((m) => m.command === 'heartbeat', 'heartbeat after restart');
});

it('stats counts connections, messages, duplicates and topics', async () => {
  const server = await serve({ sowTopics: [{ topic: 's', key: '/id' }] });
  const pub = await connect(server, 'tcp');
  const sub = await connect(server, 'ws');
  await pub.logon('stats-pub');
  await sub.logon('stats-sub');
  await sub.subscribe('s');
  pub.publish('s', { id: 1 }, { sequence: 1 });
  pub.publish('s', { id: 1 }, { sequence: 1 });
  pub.publish('s', { id: 2 }, { sequence: 2 });
  await sub.takeN(2, isDelivery());
  await pub.sync();
  expect(server.stats()).toMatchObject({
    name: expect.any(String),
    state: 'running',
    connections: { current: 2, total: 2, replication: 0 },
    published: 2,
    delivered: 2,
    duplicatesDropped: 1,
    txlogLength: 2,
    sowRecords: 2,
    topics: { s: { published: 2, delivered: 2 } },
    peers: [],
  });
});

it('close releases every socket, server and timer', async () => {
  const kinds = ['TCPServerWrap', 'TCPSocketWrap', 'Timeout'];
  const count = () => process.getActiveResourcesInfo().filter((r) => kinds.includes(r)).length;
  const before = count();
  const env = new ManualEnvironment();
  const server = await startTestServer({ environment: env, queues: [{ topic: 'jobs', leaseMs: 1000 }] });
  const c = await TestClient.connect(server.wsUri());
  await c.logon('leak');
  c.send({ command: 'heartbeat', options: 'start,1' });
  await c.subscribe('jobs');
  c.publish('jobs', {});
  await c.take(isDelivery());
  expect(env.pending).toBeGreaterThan(0);
  await server.close();
  await c.closed;
  expect(env.pending).toBe(0);
  await until(() => count() <= before, 'sockets and servers released');
  await expect(server.restart()).rejects.toThrow(/closed/);
});

it('overlapping lifecycle calls run one at a time, in order', async () => {
  const server = await serve();
  await Promise.all([server.restart(), server.kill(), server.restart(), server.restart()]);
  expect(server.stats().state).toBe('running');
  const c = await connect(server, 'tcp');
  expect((await c.logon('overlap')).status).toBe('success');
});

it('on an IPv6 address, tcpUri() and wsUri() (and a fault proxy) give URIs a client can parse and connect to', async () => {
  // Before: `tcp://::1:<port>/amps/json`, which no URI parser takes (the project's parseUri says
  // "malformed host:port"); RFC 3986 brackets an IPv6 literal: `tcp://[::1]:<port>/amps/json`.
  const server = await serve({ host: '::1' });
  const proxy = await startFaultProxy({ target: server.tcpUri(), host: '::1' });
  try {
    for (const uri of [server.tcpUri(), server.wsUri(), proxy.tcpUri()]) {
      expect(parseUri(uri).host, uri).toBe('::1');
      const c = await TestClient.connect(uri);
      open.push(c);
      expect((await c.logon(`v6-${open.length}`)).status, uri).toBe('success');
    }
  } finally {
    await Promise.all(open.splice(0).map((c) => c.close()));
    await proxy.close();
  }
});
