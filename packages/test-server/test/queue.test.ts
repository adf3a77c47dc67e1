import { InvalidOptionsError } from '@amps-ts/core-protocol';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../src/index.js';
import { isDelivery, ManualEnvironment, TestClient, type Transport, transports } from './helpers.js';

const env = new ManualEnvironment();
let server: TestServer;
let open: TestClient[] = [];

beforeAll(async () => {
  server = await startTestServer({
    name: 'queues',
    environment: env,
    queues: [
      { topic: 'jobs-tcp', leaseMs: 5000, maxBacklog: 3 },
      { topic: 'jobs-ws', leaseMs: 5000, maxBacklog: 3 },
      'other-jobs-tcp',
      'other-jobs-ws',
    ],
  });
});
afterEach(async () => {
  await Promise.all(open.map((c) => c.close()));
  open = [];
});
afterAll(async () => {
  await server.close();
});

async function client(transport: Transport, name: string): Promise<TestClient> {
  const c = await TestClient.connectTo(server, transport);
  open.push(c);
  await c.logon(name);
  return c;
}

function json(m: { json(): unknown }) {
  return m.json() as { n: number };
}

describe.each(transports)('queues over %s', (transport) => {
  const topic = `jobs-${transport}`;

  it('leases within max_backlog, with lp, and moves on when a message is acknowledged', async () => {
    const producer = await client(transport, `q-prod-${transport}`);
    const consumer = await client(transport, `q-cons-${transport}`);
    for (let n = 1; n <= 4; n++) producer.publish(topic, { n });
    await producer.sync();
    const cid = consumer.command({ command: 'subscribe', topic, options: 'max_backlog=2', ackType: 'processed' });
    const ack = await consumer.ack(cid);
    expect(ack.options).toBe('max_backlog=2');
    const [first, second] = await consumer.takeN(2, isDelivery(cid));
    expect([json(first!).n, json(second!).n]).toEqual([1, 2]);
    expect(first?.leasePeriod).toMatch(/^\d{8}T\d{6}\.\d{6}Z$/);
    expect(first?.bookmark).toMatch(/^\d+\|\d+\|$/);
    await consumer.sync();
    expect(consumer.unread.filter(isDelivery())).toHaveLength(0);
    const del = consumer.command({
      command: 'sow_delete',
      topic,
      bookmark: first?.bookmark,
      ackType: 'processed',
    });
    await consumer.ack(del);
    expect(json(await consumer.take(isDelivery(cid)))).toEqual({ n: 3 });
    expect(server.stats().queues[topic]).toEqual({ depth: 3, leased: 2 });
  });

  it('grants at most the queue maximum and 1 by default', async () => {
    const c = await client(transport, `q-grant-${transport}`);
    const big = c.command({ command: 'subscribe', topic, options: 'max_backlog=50', ackType: 'processed' });
    expect((await c.ack(big)).options).toBe('max_backlog=3');
    const plain = c.command({ command: 'subscribe', topic, ackType: 'processed' });
    expect((await c.ack(plain)).options).toBe('max_backlog=1');
  });

  it('redelivers on cancel, on holder disconnect and on lease expiry; expire removes', async () => {
    const producer = await client(transport, `q2-prod-${transport}`);
    const a = await client(transport, `q2-a-${transport}`);
    const sub = await a.subscribe(topic, { subId: 'a' });
    // Drain what earlier tests left.
    for (;;) {
      await a.sync();
      const left = a.takeAll(isDelivery(sub));
      if (left.length === 0) break;
      a.command({ command: 'sow_delete', topic, bookmark: left.map((m) => m.bookmark).join(',') });
    }
    producer.publish(topic, { n: 10 });
    const m1 = await a.take(isDelivery(sub));
    a.command({ command: 'sow_delete', topic, bookmark: m1.bookmark, options: 'cancel' });
    const again = await a.take(isDelivery(sub));
    expect(again.bookmark).toBe(m1.bookmark);

    // The holder goes away: another consumer gets it.
    const b = await client(transport, `q2-b-${transport}`);
    const subB = await b.subscribe(topic, { subId: 'b' });
    await a.close();
    const onB = await b.take(isDelivery(subB));
    expect(onB.bookmark).toBe(m1.bookmark);

    // The lease runs out: delivered again.
    env.advance(5000);
    const expired = await b.take(isDelivery(subB));
    expect(expired.bookmark).toBe(m1.bookmark);

    // expire: gone for good.
    const cid = b.command({
      command: 'sow_delete',
      topic,
      bookmark: m1.bookmark,
      options: 'expire',
      ackType: 'processed',
    });
    await b.ack(cid);
    expect(server.stats().queues[topic]?.depth).toBe(0);

    // The Go client's queue ack (c=ack with bm) is accepted too.
    producer.publish(topic, { n: 11 });
    const m2 = await b.take(isDelivery(subB));
    b.send({ command: 'ack', topic, bookmark: m2.bookmark });
    await b.sync();
    expect(server.stats().queues[topic]?.depth).toBe(0);
  });

  it('a replace on the same queue grants the new max_backlog, and the consumer keeps what it leases', async () => {
    const queue = `other-jobs-${transport}`; // maxBacklog 10, and empty
    const producer = await client(transport, `q4-prod-${transport}`);
    const c = await client(transport, `q4-cons-${transport}`);
    const consumer = await c.subscribe(queue, { subId: 'consumer' });
    for (let n = 1; n <= 3; n++) producer.publish(queue, { n });
    const first = await c.take(isDelivery(consumer));
    expect(json(first)).toEqual({ n: 1 });
    await producer.sync();
    await c.sync();
    expect(c.unread.filter(isDelivery())).toHaveLength(0); // a backlog of 1: the rest waits

    const cid = c.command({
      command: 'subscribe',
      topic: queue,
      subId: consumer,
      options: 'replace,max_backlog=3',
      ackType: 'processed',
    });
    expect(await c.ack(cid)).toMatchObject({ status: 'success', options: 'max_backlog=3' });
    const second = await c.take(isDelivery(consumer));
    const third = await c.take(isDelivery(consumer));
    expect([json(second), json(third)]).toEqual([{ n: 2 }, { n: 3 }]);
    expect(server.stats().queues[queue]).toEqual({ depth: 3, leased: 3 });
    await c.ack(
      c.command({
        command: 'sow_delete',
        topic: queue,
        bookmark: `${first.bookmark},${second.bookmark},${third.bookmark}`,
        ackType: 'processed',
      }),
    );
    expect(server.stats().queues[queue]).toEqual({ depth: 0, leased: 0 });
  });

  it('refuses a replace that moves a subscription to, from or between queues, and keeps it as it was', async () => {
    const producer = await client(transport, `q3-prod-${transport}`);
    const c = await client(transport, `q3-cons-${transport}`);
    const plainTopic = `not-a-queue-${transport}`;
    const otherQueue = `other-jobs-${transport}`;
    const replace = async (subId: string, to: string, filter?: string) => {
      const cid = c.command({
        command: 'subscribe',
        topic: to,
        subId,
        filter,
        options: 'replace',
        ackType: 'processed',
      });
      return c.ack(cid);
    };
    const refused = {
      status: 'failure',
      reason: 'invalid replace: cannot move a subscription to, from or between queues',
    };
    const plain = await c.subscribe(plainTopic, { subId: 'plain' });
    const consumer = await c.subscribe(otherQueue, { subId: 'consumer' });
    expect(await replace(plain, otherQueue)).toMatchObject(refused);
    expect(await replace(consumer, plainTopic)).toMatchObject(refused);
    expect(await replace(consumer, topic)).toMatchObject(refused);
    // Same queue, another filter: allowed.
    expect(await replace(consumer, otherQueue, '/n > 0')).toMatchObject({
      status: 'success',
      options: 'max_backlog=1',
    });

    // Unchanged: the plain subscription gets only its topic, the consumer leases the queue's messages.
    producer.publish(otherQueue, { n: 1 });
    producer.publish(plainTopic, { n: 2 });
    const leased = await c.take(isDelivery(consumer));
    expect(json(leased)).toEqual({ n: 1 });
    expect(leased.leasePeriod).toBeDefined();
    expect(json(await c.take(isDelivery(plain)))).toEqual({ n: 2 });
    await producer.sync();
    await c.sync();
    expect(c.unread.filter(isDelivery())).toHaveLength(0);
    expect(server.stats().queues[otherQueue]).toEqual({ depth: 1, leased: 1 });
  });
});

describe('lease lengths', () => {
  it('refuses a leaseMs that has no expiry time (Infinity), and delivers with a long one', async () => {
    // Before: Infinity passed the check (> 0), and the first delivery threw a RangeError formatting
    // `lp` from the broker's flush: an uncaught exception that ends the test process.
    for (const leaseMs of [Number.POSITIVE_INFINITY, Number.MAX_SAFE_INTEGER, Number.NaN]) {
      await expect(startTestServer({ queues: [{ topic: 'forever', leaseMs }] }), String(leaseMs)).rejects.toThrow(
        InvalidOptionsError,
      );
    }
    const own = await startTestServer({ queues: [{ topic: 'long', leaseMs: 10 * 365 * 86_400_000 }], wsPort: false });
    const c = await TestClient.connectTo(own, 'tcp');
    try {
      await c.logon('long-lease');
      const sub = await c.subscribe('long');
      c.publish('long', { n: 1 });
      expect((await c.take(isDelivery(sub))).leasePeriod).toMatch(/^\d{8}T\d{6}\.\d{6}Z$/);
    } finally {
      await c.close();
      await own.close();
    }
  });
});

describe('acknowledging by filter', () => {
  it('a sow_delete with a filter acknowledges every queue message it matches, leased or not', async () => {
    // amps-protocol.md §12: "A sow_delete with a filter acknowledges every matching message, whether
    // or not this client holds the lease". Before: refused with `invalid topic`, nothing removed.
    const own = await startTestServer({ queues: [{ topic: 'work', maxBacklog: 5 }], wsPort: false });
    const mine: TestClient[] = [];
    try {
      const producer = await TestClient.connectTo(own, 'tcp');
      const consumer = await TestClient.connectTo(own, 'tcp');
      mine.push(producer, consumer);
      await producer.logon('filter-ack-prod');
      await consumer.logon('filter-ack-cons');
      for (let n = 1; n <= 5; n++) producer.publish('work', { n });
      await producer.sync();
      const sub = await consumer.subscribe('work'); // max_backlog 1: leases n = 1
      expect(json(await consumer.take(isDelivery(sub)))).toEqual({ n: 1 });
      const cid = producer.command({
        command: 'sow_delete',
        topic: 'work',
        filter: '/n <= 3',
        ackType: 'processed,stats',
      });
      expect((await producer.ack(cid)).status).toBe('success');
      expect(await producer.ack(cid, 'stats')).toMatchObject({ status: 'success', recordsDeleted: 3 });
      expect(own.stats().queues.work?.depth).toBe(2);
      // The consumer's lease on n = 1 was acknowledged with it: it gets the next message.
      expect(json(await consumer.take(isDelivery(sub)))).toEqual({ n: 4 });
      const bad = producer.command({ command: 'sow_delete', topic: 'work', filter: '/n = = 1', ackType: 'processed' });
      expect(await producer.ack(bad)).toMatchObject({ status: 'failure', reason: 'bad filter' });
    } finally {
      await Promise.all(mine.map((c) => c.close()));
      await own.close();
    }
  });
});
