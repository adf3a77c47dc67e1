/**
 * Command semantics of the Client against the real test broker: what happens to routes, acks and
 * deliveries around unsubscribe, replace, queries run through `execute`, and queue acks. Decided by
 * events (acks, deliveries, flush round trips), never by sleeping.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../../test-server/src/index.js';
import { nodeTransport } from '../../transport-node/src/index.js';
import { Client, type ClientOptions, type Message } from '../src/index.js';
import { Collector, leakCheck } from './client-fakes.js';

describe('Client command semantics against the test broker', () => {
  let server: TestServer;
  let clients: Client[];
  let leaks: ReturnType<typeof leakCheck>;
  let n = 0;

  beforeEach(async () => {
    clients = [];
    leaks = leakCheck();
    server = await startTestServer({
      sowTopics: [{ topic: 'orders', key: '/id' }],
      queues: [{ topic: 'jobs', maxBacklog: 10, leaseMs: 60_000 }],
    });
  });
  afterEach(async () => {
    for (const c of clients) await c.disconnect();
    await server.close();
    await leaks.check();
  });

  async function loggedOn(options: Partial<ClientOptions> = {}): Promise<Client> {
    const c = new Client(`semantics-${++n}`, { transport: nodeTransport(), ...options });
    clients.push(c);
    await c.connectAndLogon(server.tcpUri());
    return c;
  }
  /** Whether `promise` has settled, after the microtasks already queued have run. */
  async function settled(promise: Promise<unknown>): Promise<boolean> {
    let done = false;
    void promise.then(
      () => {
        done = true;
      },
      () => {
        done = true;
      },
    );
    await new Promise((resolve) => setImmediate(resolve));
    return done;
  }

  it('unsubscribe sends the queue acks still batched first, so the server does not redeliver those messages', async () => {
    const producer = await loggedOn();
    for (let i = 0; i < 3; i++) producer.publish('jobs', String(i));
    await producer.flush();
    const c = await loggedOn({ ackBatchSize: 10 });
    const got = new Collector<Message>();
    const sub = c.subscribe('jobs', { maxBacklog: 3, onMessage: got.push });
    await sub.ready;
    await got.atLeast(3);
    for (const m of got.items) c.ack(m);
    await sub.unsubscribe();
    // Sent after the unsubscribe, the acks would find the leases already returned to the queue.
    expect(server.stats().queues.jobs).toMatchObject({ depth: 0, leased: 0 });
  });

  it('unsubscribe of a comma-separated list of ids ends each of those subscriptions', async () => {
    const c = await loggedOn();
    const a = c.subscribe('list', { subId: 'a' });
    const b = c.subscribe('list', { subId: 'b' });
    const other = c.subscribe('list', { subId: 'c' });
    await Promise.all([a.ready, b.ready, other.ready]);
    await c.unsubscribe('a,b');
    expect(await settled(a.closed)).toBe(true);
    expect(await settled(b.closed)).toBe(true);
    expect(await settled(other.closed)).toBe(false);
    // The ids are free again.
    await c.subscribe('list', { subId: 'a' }).ready;
  });

  it('unsubscribe all also releases the subscriptions made through execute', async () => {
    const c = await loggedOn();
    await c.execute({ command: 'subscribe', topic: 'ex', subId: 'e' }, { onMessage: () => {} });
    await c.unsubscribe();
    const got = new Collector<Message>();
    await c.subscribe('ex', { subId: 'e', onMessage: got.push }).ready;
    c.publish('ex', 'x');
    await got.atLeast(1);
  });

  it('a query run through execute releases its id when it completes (or at group_end, without completed)', async () => {
    const c = await loggedOn();
    c.publish('orders', JSON.stringify({ id: 1 }));
    await c.flush();
    const unhandled = new Collector<Message>();
    c.onUnhandledMessage(unhandled.push);
    for (const waitFor of ['completed', 'processed', 'completed'] as const) {
      const got = new Collector<Message>();
      await c.execute({ command: 'sow', topic: 'orders', queryId: 'q' }, { onMessage: got.push, waitFor });
      await got.atLeast(3);
      expect(got.items.map((m) => m.command)).toEqual(['group_begin', 'sow', 'group_end']);
    }
    expect((await c.sow('orders', { queryId: 'q' }).toArray()).records).toHaveLength(1);
    await c.flush();
    expect(unhandled.items).toEqual([]);
  });
});
