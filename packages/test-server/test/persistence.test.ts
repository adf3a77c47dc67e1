import { appendFileSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { clientNameHash, startTestCluster, startTestServer, type TestServer } from '../src/index.js';
import { isDelivery, TestClient, until } from './helpers.js';

let dir: string;
let servers: TestServer[] = [];
let open: TestClient[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'amps-test-server-'));
});
afterEach(async () => {
  await Promise.all(open.map((c) => c.close()));
  await Promise.all(servers.map((s) => s.close()));
  open = [];
  servers = [];
  rmSync(dir, { recursive: true, force: true });
});

const options = () => ({
  dataDir: dir,
  wsPort: false as const,
  sowTopics: [{ topic: 'q', key: '/id' }],
  queues: ['jobs'],
});

async function client(server: TestServer, name: string): Promise<TestClient> {
  const c = await TestClient.connect(server.tcpUri());
  open.push(c);
  await c.logon(name);
  return c;
}

it('a new instance on the same data directory has the txlog, SOW, queues and sequences', async () => {
  const first = await startTestServer(options());
  servers.push(first);
  const pub = await client(first, 'durable');
  pub.publish('q', { id: 1, v: 1 }, { sequence: 1 });
  pub.publish('q', { id: 2, v: 1 }, { sequence: 2 });
  pub.publish('q', { id: 1, v: 2 }, { sequence: 3, ackType: 'persisted' });
  pub.publish('jobs', { job: 'a' });
  pub.publish('jobs', { job: 'b' });
  await pub.take((m) => m.ackType === 'persisted');
  await pub.close();
  await first.close();
  expect(readdirSync(dir)).toContain('txlog.amps');

  const second = await startTestServer(options());
  servers.push(second);
  const again = await client(second, 'durable');
  expect(again.received[0]).toMatchObject({ sequence: 3, bookmark: `${clientNameHash('durable')}|3|` });
  // A republished duplicate is still recognised.
  again.publish('q', { id: 2, v: 99 }, { sequence: 2 });
  const sow = again.command({ command: 'sow', topic: 'q', orderBy: '/id', ackType: 'completed' });
  await again.ack(sow, 'completed');
  expect(again.takeAll((m) => m.command === 'sow').map((m) => m.json())).toEqual([
    { id: 1, v: 2 },
    { id: 2, v: 1 },
  ]);
  const replay = again.command({ command: 'subscribe', topic: 'q', bookmark: '0', ackType: 'completed' });
  await again.ack(replay, 'completed');
  expect(again.takeAll(isDelivery(replay)).map((m) => m.bookmark)).toEqual(
    [1, 2, 3].map((s) => `${clientNameHash('durable')}|${s}|`),
  );
  const consumer = await client(second, 'consumer');
  const jobs = await consumer.subscribe('jobs', { options: 'max_backlog=5' });
  const got = await consumer.takeN(2, isDelivery(jobs));
  expect(got.map((m) => m.json())).toEqual([{ job: 'a' }, { job: 'b' }]);
  consumer.command({ command: 'sow_delete', topic: 'jobs', bookmark: got[0]?.bookmark });
  await consumer.sync();
  await second.close();

  const third = await startTestServer(options());
  servers.push(third);
  expect(third.stats().queues.jobs?.depth).toBe(1);
  expect(third.stats().txlogLength).toBe(6);
});

it('ignores a damaged tail (a crash mid-write), with a log line', async () => {
  const first = await startTestServer(options());
  servers.push(first);
  const pub = await client(first, 'torn');
  pub.publish('q', { id: 1 }, { sequence: 1 });
  await pub.sync();
  await first.close();
  appendFileSync(join(dir, 'txlog.amps'), Buffer.from([0, 0, 1, 0, 0x7b, 0x22]));
  const warnings: string[] = [];
  const second = await startTestServer({ ...options(), logger: { warn: (m) => warnings.push(m) } });
  servers.push(second);
  expect(second.stats().txlogLength).toBe(1);
  expect(warnings).toContain('txlog: ignored a damaged tail');
  const more = await client(second, 'torn');
  more.publish('q', { id: 2 }, { sequence: 2 });
  await more.sync();
  await second.close();
  const third = await startTestServer(options());
  servers.push(third);
  expect(third.stats().txlogLength).toBe(2);
});

it('a cluster on data directories catches up after a full restart of one instance', async () => {
  const cluster = await startTestCluster({ count: 2, dataDir: dir, noWebSocket: true, name: 'disk' });
  try {
    const [a, b] = cluster.servers as [TestServer, TestServer];
    const pub = await client(a, 'disk-pub');
    await b.kill();
    for (let s = 1; s <= 10; s++) pub.publish('t', { s }, { sequence: s });
    await pub.sync();
    await b.restart();
    await until(() => b.stats().txlogLength === 10, 'B caught up');
    const cid = pub.command({ command: 'flush', ackType: 'persisted' });
    await pub.ack(cid, 'persisted');
    expect(readdirSync(dir).sort()).toEqual(['disk-1', 'disk-2']);
  } finally {
    await Promise.all(open.map((c) => c.close()));
    open = [];
    await cluster.close();
  }
});
