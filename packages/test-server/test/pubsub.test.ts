import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clientNameHash, startTestServer, type TestServer } from '../src/index.js';
import { isDelivery, TestClient, type Transport, transports } from './helpers.js';

let server: TestServer;
const clients: TestClient[] = [];

beforeAll(async () => {
  // One persisted ack per publish, with its cid, so that a test can wait for its own.
  server = await startTestServer({ name: 'pubsub', ackConflationMs: 0 });
});
afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await server.close();
});

async function client(transport: Transport): Promise<TestClient> {
  const c = await TestClient.connectTo(server, transport);
  clients.push(c);
  return c;
}

describe.each(transports)('over %s', (transport) => {
  it('logs on and returns s and bm for the client name', async () => {
    const c = await client(transport);
    const ack = await c.logon(`logon-${transport}`);
    expect(ack.status).toBe('success');
    expect(ack.clientName).toBe(`logon-${transport}`);
    expect(ack.sequence).toBe(0);
    expect(ack.bookmark).toBe(`${clientNameHash(`logon-${transport}`)}|0|`);
    expect(ack.version).toMatch(/^\d+\.\d+\.\d+\.\d+/);
    // As the real AMPS trace shows: a successful logon without auth still has a reason.
    expect(ack.reason).toBe('authentication disabled');
  });

  it('delivers a publish on one connection to a subscriber on another', async () => {
    const sub = await client(transport);
    const pub = await client(transport);
    await sub.logon(`sub-${transport}`);
    await pub.logon(`pub-${transport}`);
    const subId = await sub.subscribe(`orders-${transport}`);
    pub.publish(`orders-${transport}`, { id: 1, qty: 5 }, { sequence: 1 });
    const m = await sub.take(isDelivery(subId));
    expect(m.topic).toBe(`orders-${transport}`);
    expect(m.json()).toEqual({ id: 1, qty: 5 });
    expect(m.bookmark).toBeUndefined();
  });

  it('acks received, processed, completed and persisted with s and bm', async () => {
    const pub = await client(transport);
    await pub.logon(`acks-${transport}`);
    const cid = pub.publish('acks', { a: 1 }, { sequence: 7, ackType: 'received,processed,persisted,completed' });
    const hash = clientNameHash(`acks-${transport}`);
    for (const type of ['received', 'processed', 'completed', 'persisted']) {
      const ack = await pub.ack(cid, type);
      expect(ack.status).toBe('success');
    }
    const persisted = pub.received.find((m) => m.ackType === 'persisted');
    expect(persisted?.sequence).toBe(7);
    expect(persisted?.bookmark).toBe(`${hash}|7|`);
  });

  it('drops a duplicate (s at or below the high-water mark) but still acks it', async () => {
    const sub = await client(transport);
    const pub = await client(transport);
    await sub.logon(`dsub-${transport}`);
    await pub.logon(`dpub-${transport}`);
    const subId = await sub.subscribe(`dup-${transport}`);
    pub.publish(`dup-${transport}`, { n: 1 }, { sequence: 1 });
    pub.publish(`dup-${transport}`, { n: 2 }, { sequence: 2 });
    const cid = pub.publish(`dup-${transport}`, { n: 1 }, { sequence: 1, ackType: 'persisted' });
    expect((await pub.ack(cid, 'persisted')).status).toBe('success');
    pub.publish(`dup-${transport}`, { n: 3 }, { sequence: 3 });
    const got = await sub.takeN(3, isDelivery(subId));
    expect(got.map((m) => (m.json() as { n: number }).n)).toEqual([1, 2, 3]);
    // A new connection with the same name learns the high-water mark at logon.
    await pub.close();
    const again = await client(transport);
    expect((await again.logon(`dpub-${transport}`)).sequence).toBe(3);
  });

  it('assigns a sequence to publishes without s, and bookmarks carry it', async () => {
    const sub = await client(transport);
    const pub = await client(transport);
    await sub.logon(`usub-${transport}`);
    await pub.logon(`upub-${transport}`);
    const subId = await sub.subscribe(`unseq-${transport}`, { options: 'bookmark' });
    const cid = pub.publish(`unseq-${transport}`, { x: 1 }, { ackType: 'persisted' });
    const ack = await pub.ack(cid, 'persisted');
    expect(ack.sequence).toBeUndefined();
    const m = await sub.take(isDelivery(subId));
    expect(m.bookmark).toBe(ack.bookmark);
    expect(m.bookmark).toMatch(/^\d+\|\d+\|$/);
  });

  it('routes by regex topic, filter, and unsubscribes one, a list, or all', async () => {
    const sub = await client(transport);
    const pub = await client(transport);
    await sub.logon(`rsub-${transport}`);
    await pub.logon(`rpub-${transport}`);
    const a = await sub.subscribe(`^re-${transport}-.*`);
    const b = await sub.subscribe(`re-${transport}-x`, { filter: '/qty > 10' });
    const c = await sub.subscribe(`re-${transport}-y`);
    pub.publish(`re-${transport}-x`, { qty: 5 });
    pub.publish(`re-${transport}-x`, { qty: 50 });
    pub.publish(`re-${transport}-y`, { qty: 1 });
    await pub.sync();
    const viaRegex = await sub.takeN(3, isDelivery(a));
    expect(viaRegex.map((m) => m.topic)).toEqual([`re-${transport}-x`, `re-${transport}-x`, `re-${transport}-y`]);
    // A message several subscriptions of a connection match comes once, with every id in `sids`.
    expect(viaRegex.map((m) => m.subscriptionIds.sort())).toEqual([[a], [a, b].sort(), [a, c].sort()]);
    expect(viaRegex[1]?.json()).toEqual({ qty: 50 });
    expect(viaRegex[1]?.subId).toBeUndefined();
    await sub.sync();
    expect(sub.unread.filter(isDelivery())).toHaveLength(0);
    const cid = sub.command({ command: 'unsubscribe', subId: `${a},${b}`, ackType: 'processed' });
    // As AMPS: the unsubscribe ack has no extra fields, so no sub_id to route it by.
    expect((await sub.ack(cid)).subId).toBeUndefined();
    pub.publish(`re-${transport}-x`, { qty: 99 });
    pub.publish(`re-${transport}-y`, { qty: 2 });
    expect((await sub.take(isDelivery())).subId).toBe(c);
    const all = sub.command({ command: 'unsubscribe', subId: 'all', ackType: 'processed' });
    await sub.ack(all);
    pub.publish(`re-${transport}-y`, { qty: 3 });
    await pub.sync();
    await sub.sync();
    expect(sub.unread.filter(isDelivery())).toHaveLength(0);
  });

  it('refuses an unsubscribe that names no sub_id or query_id, and keeps the subscriptions', async () => {
    const sub = await client(transport);
    await sub.logon(`nounsub-${transport}`);
    const subId = await sub.subscribe(`nounsub-${transport}`);
    const cid = sub.command({ command: 'unsubscribe', ackType: 'processed' });
    expect(await sub.ack(cid)).toMatchObject({
      status: 'failure',
      reason: 'invalid unsubscribe: no sub_id or query_id',
    });
    sub.publish(`nounsub-${transport}`, { n: 1 });
    await sub.take(isDelivery(subId));
  });

  it('replaces a subscription atomically', async () => {
    const sub = await client(transport);
    const pub = await client(transport);
    await sub.logon(`repl-sub-${transport}`);
    await pub.logon(`repl-pub-${transport}`);
    const id = await sub.subscribe(`rp-${transport}`, { filter: '/v = 1' });
    const cid = sub.command({
      command: 'subscribe',
      topic: `rp-${transport}`,
      subId: id,
      filter: '/v = 2',
      options: 'replace',
      ackType: 'processed',
    });
    expect((await sub.ack(cid)).status).toBe('success');
    pub.publish(`rp-${transport}`, { v: 1 });
    pub.publish(`rp-${transport}`, { v: 2 });
    const m = await sub.take(isDelivery(id));
    expect(m.json()).toEqual({ v: 2 });
    const dup = sub.command({ command: 'subscribe', topic: 'x', subId: id, ackType: 'processed' });
    const failure = await sub.ack(dup);
    expect(failure.status).toBe('failure');
    expect(failure.reason).toBe('subscription already exists');
  });

  it('fails a bad filter and a bad regex topic with reasons', async () => {
    const c = await client(transport);
    await c.logon(`bad-${transport}`);
    const f = c.command({ command: 'subscribe', topic: 't', filter: '/a = = 1', ackType: 'processed' });
    expect(await c.ack(f)).toMatchObject({ status: 'failure', reason: 'bad filter' });
    const r = c.command({ command: 'subscribe', topic: 'a(b', ackType: 'processed' });
    expect(await c.ack(r)).toMatchObject({ status: 'failure', reason: 'bad regex topic' });
  });

  it('answers flush with processed, completed and persisted', async () => {
    const c = await client(transport);
    await c.logon(`flush-${transport}`);
    c.publish('f', { a: 1 }, { sequence: 1 });
    const cid = c.command({ command: 'flush', ackType: 'processed,completed,persisted' });
    for (const type of ['processed', 'completed', 'persisted']) expect((await c.ack(cid, type)).status).toBe('success');
  });

  it('requires logon first: failure ack, then the connection closes', async () => {
    const c = await client(transport);
    const cid = c.command({ command: 'subscribe', topic: 't', ackType: 'processed' });
    expect(await c.ack(cid)).toMatchObject({ status: 'failure', reason: 'logon required' });
    await c.closed;
  });

  it('a new logon with a live client name drops the older connection', async () => {
    const first = await client(transport);
    await first.logon(`twice-${transport}`);
    const second = await client(transport);
    expect((await second.logon(`twice-${transport}`)).status).toBe('success');
    await first.closed;
    expect(second.isClosed).toBe(false);
  });
});

describe('mixed transports', () => {
  it('delivers from a TCP publisher to a WebSocket subscriber and back', async () => {
    const tcp = await client('tcp');
    const ws = await client('ws');
    await tcp.logon('mix-tcp');
    await ws.logon('mix-ws');
    const onWs = await ws.subscribe('mix');
    const onTcp = await tcp.subscribe('mix');
    tcp.publish('mix', { from: 'tcp' });
    ws.publish('mix', { from: 'ws' });
    expect((await ws.takeN(2, isDelivery(onWs))).map((m) => m.json())).toEqual([{ from: 'tcp' }, { from: 'ws' }]);
    expect((await tcp.takeN(2, isDelivery(onTcp))).map((m) => m.json())).toEqual([{ from: 'tcp' }, { from: 'ws' }]);
    expect(server.stats().topics.mix).toEqual({ published: 2, delivered: 4 });
  });
});

describe('a filter of many terms', () => {
  it('delivers live and replayed messages, and fails no publisher, instead of overflowing the stack', async () => {
    // Before: `a OR b OR ...` was evaluated as nested closures, one stack frame per term. A live
    // publish failed with `internal error` for its publisher (another client), and a replay threw a
    // RangeError from the broker's flush, an uncaught exception that ends the test process.
    const own = await startTestServer({ name: 'long-filter', ackConflationMs: 0, wsPort: false });
    const mine: TestClient[] = [];
    try {
      const pub = await TestClient.connectTo(own, 'tcp');
      mine.push(pub);
      await pub.logon('long-pub');
      pub.publish('long', { n: 99_999 });
      pub.publish('long', { n: 1 });
      await pub.sync();
      const c = await TestClient.connectTo(own, 'tcp');
      mine.push(c);
      await c.logon('long-sub');
      const filter = Array.from({ length: 100_000 }, (_, i) => `/n = ${i}`).join(' OR ');
      await c.subscribe('long', { filter, subId: 'live' });
      await c.subscribe('long', { filter, subId: 'replay', bookmark: '0' });
      expect((await c.takeN(2, isDelivery('replay'))).map((m) => m.json())).toEqual([{ n: 99_999 }, { n: 1 }]);
      const cid = pub.publish('long', { n: 5 }, { ackType: 'processed' });
      expect((await pub.ack(cid)).status).toBe('success');
      expect((await c.take(isDelivery('live'))).json()).toEqual({ n: 5 });
    } finally {
      await Promise.all(mine.map((c) => c.close()));
      await own.close();
    }
  });
});
