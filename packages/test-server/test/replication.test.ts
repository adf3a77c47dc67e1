import { InvalidOptionsError, type Message } from '@amps-ts/core-protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { clientNameHash, startTestCluster, startTestServer, type TestCluster, type TestServer } from '../src/index.js';
import { isDelivery, TestClient, type Transport, transports, until } from './helpers.js';

let clusters: TestCluster[] = [];
let open: TestClient[] = [];

afterEach(async () => {
  await Promise.all(open.map((c) => c.close()));
  await Promise.all(clusters.map((c) => c.close()));
  open = [];
  clusters = [];
});

async function cluster(options: Parameters<typeof startTestCluster>[0] = {}): Promise<TestCluster> {
  // One persisted ack per publish, with its cid: these tests follow each message's.
  const c = await startTestCluster({ ackConflationMs: 0, ...options });
  clusters.push(c);
  return c;
}

async function client(server: TestServer, transport: Transport, name: string): Promise<TestClient> {
  const c = await TestClient.connectTo(server, transport);
  open.push(c);
  await c.logon(name);
  return c;
}

const n = (m: Message) => (m.json() as { n: number }).n;

describe.each(transports)('replication, clients over %s', (transport) => {
  it('publish on A, receive on B and C; bookmarks are the same on every replica', async () => {
    const { servers } = await cluster({ name: `r1-${transport}` });
    const [a, b, c] = servers as [TestServer, TestServer, TestServer];
    const onB = await client(b, transport, 'sub-b');
    const onC = await client(c, transport, 'sub-c');
    const subB = await onB.subscribe('t', { options: 'bookmark' });
    const subC = await onC.subscribe('t', { options: 'bookmark' });
    const pub = await client(a, transport, 'pub');
    pub.publish('t', { n: 1 }, { sequence: 1 });
    pub.publish('t', { n: 2 }, { sequence: 2 });
    const gotB = await onB.takeN(2, isDelivery(subB));
    const gotC = await onC.takeN(2, isDelivery(subC));
    expect(gotB.map(n)).toEqual([1, 2]);
    expect(gotB.map((m) => m.bookmark)).toEqual([`${clientNameHash('pub')}|1|`, `${clientNameHash('pub')}|2|`]);
    expect(gotC.map((m) => m.bookmark)).toEqual(gotB.map((m) => m.bookmark));
  });

  it('sync: the persisted ack waits until every sync peer holds the message', async () => {
    const { servers } = await cluster({ name: `r2-${transport}` });
    const [a, b] = servers as [TestServer, TestServer, TestServer];
    const pub = await client(a, transport, 'sync-pub');
    b.freeze();
    const cid = pub.publish('t', { n: 1 }, { sequence: 1, ackType: 'processed,persisted' });
    await pub.ack(cid, 'processed');
    await pub.sync();
    expect(pub.unread.some((m) => m.ackType === 'persisted')).toBe(false);
    expect(a.stats().peers.find((p) => p.name === b.name)?.lag).toBe(1);
    // A peer that is down holds acks back too; logon s counts only what every sync peer holds.
    await b.kill();
    const again = await client(a, transport, 'sync-pub');
    expect(again.received[0]?.sequence).toBe(0);
    await pub.closed; // name in use: the older connection was dropped
    const dup = again.publish('t', { n: 1 }, { sequence: 1, ackType: 'persisted' });
    await again.sync();
    expect(again.unread.some((m) => m.ackType === 'persisted')).toBe(false);
    await b.restart();
    // The duplicate is dropped but acked, once the message is persisted everywhere.
    expect(await again.ack(dup, 'persisted')).toMatchObject({ status: 'success', sequence: 1 });
    const third = await client(a, transport, 'sync-pub');
    expect(third.received[0]?.sequence).toBe(1);
    expect(a.stats().txlogLength).toBe(1);
  });

  it('kill A mid-stream, republish on B: no duplicate delivered', async () => {
    const { servers } = await cluster({ name: `r3-${transport}` });
    const [a, b, c] = servers as [TestServer, TestServer, TestServer];
    const watcher = await client(c, transport, 'watcher');
    const sub = await watcher.subscribe('stream');
    const pubA = await client(a, transport, 'failover-pub');
    let persisted = 0;
    for (let s = 1; s <= 50; s++) pubA.publish('stream', { n: s }, { sequence: s, ackType: 'persisted' });
    // Kill A once some (not necessarily all) of the stream is persisted.
    await pubA.take((m) => m.ackType === 'persisted' && (m.sequence ?? 0) >= 10);
    await a.kill();
    for (const m of pubA.received) if (m.ackType === 'persisted') persisted = Math.max(persisted, m.sequence ?? 0);
    // The publisher fails over to B and republishes everything not known persisted, then more.
    const pubB = await client(b, transport, 'failover-pub');
    const logon = pubB.received[0] as Message;
    expect(logon.sequence).toBeGreaterThanOrEqual(persisted);
    for (let s = persisted + 1; s <= 60; s++) pubB.publish('stream', { n: s }, { sequence: s });
    const got = await watcher.takeN(60, isDelivery(sub));
    expect(got.map(n)).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
    await pubB.sync();
    await watcher.sync();
    expect(watcher.unread.filter(isDelivery())).toHaveLength(0);
    expect(b.stats().duplicatesDropped + c.stats().duplicatesDropped).toBeGreaterThan(0);
  });

  it('a bookmark taken on A resumes on B', async () => {
    const { servers } = await cluster({ name: `r4-${transport}` });
    const [a, b] = servers as [TestServer, TestServer, TestServer];
    const pub = await client(a, transport, 'bm-pub');
    for (let s = 1; s <= 6; s++) pub.publish('bm', { n: s }, { sequence: s });
    const onA = await client(a, transport, 'bm-sub');
    const cidA = onA.command({ command: 'subscribe', topic: 'bm', bookmark: '0', ackType: 'processed' });
    const seen = await onA.takeN(3, isDelivery(cidA));
    const resumeFrom = seen[2]?.bookmark as string;
    await until(() => b.stats().txlogLength >= 6, 'B holds the stream');
    await onA.close();
    const onB = await client(b, transport, 'bm-sub');
    const cidB = onB.command({ command: 'subscribe', topic: 'bm', bookmark: resumeFrom, ackType: 'processed' });
    expect((await onB.takeN(3, isDelivery(cidB))).map(n)).toEqual([4, 5, 6]);
  });
});

describe('replication', () => {
  it('refuses a second link to a peer it replicates to already: the two would replace each other on the peer for ever', async () => {
    const { servers } = await cluster({ name: 'r12', count: 2, noWebSocket: true });
    const [a, b] = servers as [TestServer, TestServer];
    expect(() => a.addPeer({ port: b.tcpPort as number, mode: 'async' })).toThrow(InvalidOptionsError);
    expect(() => a.addPeer({ port: b.tcpPort as number })).toThrow(
      `server ${a.name} replicates to 127.0.0.1:${b.tcpPort} already (peer ${b.name})`,
    );
    expect(a.stats().peers).toHaveLength(1);
    const twice = { port: b.tcpPort as number, name: 'b-again' };
    await expect(startTestServer({ name: 'r12-c', wsPort: false, peers: [twice, twice] })).rejects.toThrow(
      InvalidOptionsError,
    );
  });

  it('async peers never delay persisted acks', async () => {
    const { servers } = await cluster({ name: 'r5', count: 2, replication: 'async', noWebSocket: true });
    const [a, b] = servers as [TestServer, TestServer];
    await b.kill();
    const pub = await client(a, 'tcp', 'async-pub');
    const cid = pub.publish('t', { n: 1 }, { sequence: 1, ackType: 'persisted' });
    expect((await pub.ack(cid, 'persisted')).status).toBe('success');
    await b.restart();
    await until(() => b.stats().txlogLength === 1, 'B caught up');
  });

  it('a peer that was down catches up from the log without duplicates, through any live peer', async () => {
    const { servers } = await cluster({ name: 'r6', replication: 'async', noWebSocket: true });
    const [a, b, c] = servers as [TestServer, TestServer, TestServer];
    await c.kill();
    const pub = await client(a, 'tcp', 'catchup-pub');
    for (let s = 1; s <= 20; s++) pub.publish('t', { n: s }, { sequence: s });
    await pub.sync();
    await until(() => b.stats().txlogLength === 20, 'B has the stream');
    // A goes away before C is back: C catches up from B (passthrough).
    await a.kill();
    await c.restart();
    await until(() => c.stats().txlogLength === 20, 'C caught up from B');
    const sub = await client(c, 'tcp', 'catchup-sub');
    const cid = sub.command({ command: 'subscribe', topic: 't', bookmark: '0', ackType: 'processed,completed' });
    const got = await sub.takeN(20, isDelivery(cid));
    expect(got.map(n)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    await sub.ack(cid, 'completed');
    // A returns with nothing new; nobody logs anything twice.
    await a.restart();
    await cluster_linked([a, b, c]);
    for (const s of [a, b, c]) expect(s.stats().txlogLength).toBe(20);
  });

  it('a sync peer down longer than syncDowngradeMs stops delaying acks, until it is back', async () => {
    const { servers } = await cluster({ name: 'r7', count: 2, syncDowngradeMs: 30, noWebSocket: true });
    const [a, b] = servers as [TestServer, TestServer];
    await b.kill();
    const pub = await client(a, 'tcp', 'downgrade-pub');
    const cid = pub.publish('t', { n: 1 }, { sequence: 1, ackType: 'persisted' });
    expect((await pub.ack(cid, 'persisted')).status).toBe('success');
    expect(a.stats().peers[0]).toMatchObject({ downgraded: true });
    await b.restart();
    await until(() => a.stats().peers[0]?.downgraded === false, 'sync restored');
  });

  it('fully_durable bookmark subscriptions deliver only what every sync peer holds', async () => {
    const { servers } = await cluster({ name: 'r10', count: 2, noWebSocket: true });
    const [a, b] = servers as [TestServer, TestServer];
    const sub = await client(a, 'tcp', 'durable-sub');
    const cid = sub.command({ command: 'subscribe', topic: 'd', bookmark: '0|1|', options: 'fully_durable' });
    const pub = await client(a, 'tcp', 'durable-pub');
    b.freeze();
    pub.publish('d', { n: 1 }, { sequence: 1 });
    await pub.sync();
    await sub.sync();
    expect(sub.unread.filter(isDelivery())).toHaveLength(0);
    b.thaw();
    expect(n(await sub.take(isDelivery(cid)))).toBe(1);
  });

  it('replicates SOW state, delta merges and sow_delete', async () => {
    const { servers } = await cluster({
      name: 'r8',
      count: 2,
      noWebSocket: true,
      sowTopics: [{ topic: 'q', key: '/id' }],
    });
    const [a, b] = servers as [TestServer, TestServer];
    const pub = await client(a, 'tcp', 'sow-pub');
    pub.publish('q', { id: 1, px: 1, v: 'a' });
    pub.publish('q', { id: 2, px: 2 });
    pub.command({ command: 'delta_publish', topic: 'q', data: JSON.stringify({ id: 1, px: 5 }) });
    pub.command({ command: 'sow_delete', topic: 'q', filter: '/id = 2' });
    await pub.sync();
    await until(() => b.stats().txlogLength === 4, 'B has everything');
    const reader = await client(b, 'tcp', 'sow-reader');
    const cid = reader.command({ command: 'sow', topic: 'q', ackType: 'completed' });
    await reader.ack(cid, 'completed');
    expect(reader.takeAll((m) => m.command === 'sow').map((m) => m.json())).toEqual([{ id: 1, px: 5, v: 'a' }]);
  });

  it('queue acknowledgements replicate: after A dies, B delivers what A leased but not what A acked', async () => {
    const { servers } = await cluster({ name: 'r9', count: 2, noWebSocket: true, queues: ['jobs'] });
    const [a, b] = servers as [TestServer, TestServer];
    const pub = await client(a, 'tcp', 'q-pub');
    pub.publish('jobs', { n: 1 });
    pub.publish('jobs', { n: 2 });
    const onA = await client(a, 'tcp', 'q-consumer-a');
    const subA = await onA.subscribe('jobs', { options: 'max_backlog=2' });
    const [done, leased] = (await onA.takeN(2, isDelivery(subA))) as [Message, Message];
    expect([done, leased].map(n)).toEqual([1, 2]);
    // A persisted ack on the acknowledgement: every sync peer holds it.
    const ack = onA.command({ command: 'sow_delete', topic: 'jobs', bookmark: done.bookmark, ackType: 'persisted' });
    await onA.ack(ack, 'persisted');
    await a.kill();
    const onB = await client(b, 'tcp', 'q-consumer-b');
    const subB = await onB.subscribe('jobs', { options: 'max_backlog=2' });
    // Leases are local: the one A's consumer held is B's to give (at-least-once); the acked job is gone.
    expect((await onB.take(isDelivery(subB))).bookmark).toBe(leased.bookmark);
    await onB.sync();
    expect(onB.takeAll(isDelivery(subB))).toEqual([]);
    expect(b.stats().queues.jobs).toEqual({ depth: 1, leased: 1 });
  });

  it('an ack that reaches a replica before the message still removes it there', async () => {
    const { servers } = await cluster({ name: 'r14', count: 2, noWebSocket: true, queues: ['jobs'] });
    const [a, b] = servers as [TestServer, TestServer];
    // A delivers the job before B holds it, then dies; the consumer fails over to B and acks it there.
    await b.kill();
    const pub = await client(a, 'tcp', 'early-pub');
    pub.publish('jobs', { n: 1 });
    const onA = await client(a, 'tcp', 'early-consumer');
    const job = await onA.take(isDelivery(await onA.subscribe('jobs')));
    await a.kill();
    await b.restart();
    const onB = await client(b, 'tcp', 'early-consumer');
    const ack = onB.command({ command: 'sow_delete', topic: 'jobs', bookmark: job.bookmark, ackType: 'processed' });
    await onB.ack(ack);
    expect(b.stats().queues.jobs?.depth).toBe(0);
    // A comes back and replicates the job to B after the ack: B must not deliver it.
    await a.restart();
    await cluster_linked([a, b]);
    const sub = await onB.subscribe('jobs');
    await onB.sync();
    expect(onB.unread.filter(isDelivery(sub))).toHaveLength(0);
    expect(b.stats().queues.jobs?.depth).toBe(0);
    expect(a.stats().queues.jobs?.depth).toBe(0);
  });
});

describe('a peer that comes back without its data', () => {
  it('counts as lagging until it holds the entries again (what it held before does not count)', async () => {
    // Freezes the replacement at the moment A's link to it is up, before A sends it anything.
    let freezeOnLinkUp: TestServer | undefined;
    let a: TestServer | undefined;
    const logger = {
      info(message: string, fields?: Record<string, unknown>) {
        if (message === 'replication link up' && fields?.server === a?.name) freezeOnLinkUp?.freeze();
      },
    };
    const { servers } = await cluster({ name: 'r11', count: 2, noWebSocket: true, logger, syncDowngradeMs: 20 });
    a = servers[0] as TestServer;
    const b = servers[1] as TestServer;
    const pub = await client(a, 'tcp', 'fresh-pub');
    for (let i = 1; i <= 3; i++) pub.publish('t', { n: i }, { sequence: i });
    await pub.sync();
    await until(() => a.stats().peers[0]?.lag === 0, 'B holds everything');
    // Same name and port, no data: a process restarted without a data directory.
    await b.close();
    await until(() => a.stats().peers[0]?.downgraded === true, 'B down long enough to be downgraded');
    const fresh = await startTestServer({ name: b.name, tcpPort: b.tcpPort, wsPort: false, logger });
    freezeOnLinkUp = fresh;
    try {
      await until(() => a.stats().peers[0]?.connected === true, 'A linked to the replacement');
      expect(fresh.stats().txlogLength).toBe(0);
      expect(a.stats().peers[0]).toMatchObject({ lag: 3, downgraded: true });
      freezeOnLinkUp = undefined;
      fresh.thaw();
      await until(() => a.stats().peers[0]?.lag === 0, 'the replacement caught up');
      expect(fresh.stats().txlogLength).toBe(3);
      expect(a.stats().peers[0]?.downgraded).toBe(false);
    } finally {
      await fresh.close();
    }
  });
});

async function cluster_linked(servers: TestServer[]): Promise<void> {
  await until(
    () => servers.every((s) => s.stats().peers.every((p) => p.connected && p.lag === 0)),
    'links up and caught up',
  );
}
