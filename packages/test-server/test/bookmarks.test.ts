import { encodeCommand, type Message } from '@amps-ts/core-protocol';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { clientNameHash, startTestServer, type TestServer } from '../src/index.js';
import { isDelivery, ManualEnvironment, TestClient, type Transport, transports } from './helpers.js';

const env = new ManualEnvironment();
let server: TestServer;
let open: TestClient[] = [];

beforeAll(async () => {
  // One persisted ack per publish, with its cid, so that a test can wait for its own.
  server = await startTestServer({
    name: 'bookmarks',
    environment: env,
    persistedAckIntervalMs: 100,
    ackConflationMs: 0,
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

const n = (m: Message) => (m.json() as { n: number }).n;

describe.each(transports)('bookmark subscriptions over %s', (transport) => {
  const topic = `bm-${transport}`;
  const publisher = `bm-pub-${transport}`;
  const hash = clientNameHash(publisher);
  let sub: TestClient;

  beforeAll(async () => {
    const pub = await TestClient.connect(server.tcpUri());
    await pub.logon(publisher);
    for (let s = 1; s <= 5; s++) pub.publish(topic, { n: s }, { sequence: s });
    pub.publish('other', { n: 0 }, { sequence: 6 });
    await pub.sync();
    await pub.close();
  });

  afterEach(async () => {
    await sub?.close();
  });

  async function bookmarkSubscribe(bookmark: string, options?: string) {
    sub = await client(transport, `bm-sub-${transport}-${Math.random()}`);
    const cid = sub.command({ command: 'subscribe', topic, bookmark, options, ackType: 'processed,completed' });
    const processed = await sub.ack(cid);
    return { cid, processed };
  }

  it('EPOCH replays the whole log with bookmarks, then a completed ack, then live', async () => {
    const { cid } = await bookmarkSubscribe('0');
    const replayed = await sub.takeN(5, isDelivery(cid));
    expect(replayed.map(n)).toEqual([1, 2, 3, 4, 5]);
    expect(replayed.map((m) => m.bookmark)).toEqual([1, 2, 3, 4, 5].map((s) => `${hash}|${s}|`));
    const completed = await sub.ack(cid, 'completed');
    // The completed bookmark is the log position at subscribe time (here a message on another topic).
    expect(completed.bookmark).toBe(`${hash}|6|`);
    expect(completed.subId).toBe(cid);
    const pub = await client('tcp', `bm-live-${transport}`);
    pub.publish(topic, { n: 100 });
    const live = await sub.take(isDelivery(cid));
    expect(n(live)).toBe(100);
    expect(live.bookmark).toMatch(/^\d+\|\d+\|$/);
  });

  it('starts after the earliest listed bookmark the log holds', async () => {
    const { cid } = await bookmarkSubscribe(`${hash}|4|,99999|3|,${hash}|2|`);
    expect((await sub.takeN(3, isDelivery(cid))).map(n)).toEqual([3, 4, 5]);
    await sub.ack(cid, 'completed');
  });

  it('starts at NOW when none is found, unless bookmark_not_found says otherwise', async () => {
    const now = await bookmarkSubscribe('12345|1|');
    await sub.ack(now.cid, 'completed');
    await sub.sync();
    expect(sub.unread.filter(isDelivery())).toHaveLength(0);

    const epoch = await bookmarkSubscribe('12345|1|', 'bookmark_not_found=epoch');
    expect((await sub.takeN(5, isDelivery(epoch.cid))).map(n)).toEqual([1, 2, 3, 4, 5]);

    const fail = await bookmarkSubscribe('12345|1|', 'bookmark_not_found=fail');
    expect(fail.processed).toMatchObject({ status: 'failure', reason: 'bookmark not found' });
  });

  it('NOW delivers only new messages; a bad bookmark fails', async () => {
    const now = await bookmarkSubscribe('0|1|');
    await sub.ack(now.cid, 'completed');
    const bad = sub.command({ command: 'subscribe', topic, bookmark: 'nonsense', ackType: 'processed' });
    expect(await sub.ack(bad)).toMatchObject({ status: 'failure', reason: 'invalid bookmark' });
  });

  it('refuses a delta_subscribe with a bookmark, as AMPS does', async () => {
    sub = await client(transport, `bm-delta-${transport}`);
    const cid = sub.command({ command: 'delta_subscribe', topic, bookmark: '0', ackType: 'processed' });
    expect(await sub.ack(cid)).toMatchObject({ status: 'failure', subId: cid });
    // Refused, so nothing is replayed and nothing is live.
    await sub.sync();
    expect(sub.unread.filter(isDelivery())).toHaveLength(0);
  });

  it('sends periodic persisted acks with the latest persisted bookmark', async () => {
    sub = await client(transport, `bm-persisted-${transport}`);
    const cid = sub.command({ command: 'subscribe', topic, bookmark: '0', ackType: 'processed,persisted' });
    await sub.ack(cid);
    await sub.takeN(5, isDelivery(cid));
    env.advance(100);
    const ack = await sub.take((m) => m.command === 'ack' && m.ackType === 'persisted' && m.subId === cid);
    // Routed by sub_id: it answers no command.
    expect(ack.commandId).toBeUndefined();
    expect(ack.bookmark).toMatch(/^\d+\|\d+\|$/);
    expect(ack.status).toBe('success');
    // Nothing new: no new ack. A new message: a new ack with its bookmark.
    const pub = await client('tcp', `bm-persisted-pub-${transport}`);
    const pcid = pub.publish(topic, { n: 7 }, { sequence: 1, ackType: 'persisted' });
    await pub.ack(pcid, 'persisted');
    await sub.take(isDelivery(cid));
    env.advance(100);
    const next = await sub.take((m) => m.command === 'ack' && m.ackType === 'persisted' && m.subId === cid);
    expect(next.bookmark).toBe(`${clientNameHash(`bm-persisted-pub-${transport}`)}|1|`);
  });

  it('timestamp bookmarks start at the first message at or after that time', async () => {
    const { cid } = await bookmarkSubscribe('20000101T000000Z');
    expect((await sub.takeN(5, isDelivery(cid))).map(n).slice(0, 5)).toEqual([1, 2, 3, 4, 5]);
  });
});

describe('replays longer than one write', () => {
  let own: TestServer | undefined;
  afterEach(async () => {
    await own?.close();
    own = undefined;
  });

  /** Publishes `count` messages in one write, so the publisher needs no round trip per message. */
  async function fill(target: TestServer, count: number, body: (i: number) => string): Promise<void> {
    const pub = await TestClient.connect(target.tcpUri());
    await pub.logon('replay-fill');
    const frames: Uint8Array[] = [];
    for (let i = 0; i < count; i++) frames.push(encodeCommand({ command: 'publish', topic: 'long', data: body(i) }));
    pub.writeRaw(Buffer.concat(frames));
    await pub.sync();
    await pub.close();
  }

  it.each(transports)(
    'a replay is paced below maxClientBufferBytes: a reading client is no slow consumer (%s)',
    async (transport) => {
      own = await startTestServer({ maxClientBufferBytes: 1024 * 1024 });
      const padding = 'x'.repeat(16 * 1024);
      await fill(own, 400, (i) => JSON.stringify({ n: i, padding }));
      const c = await TestClient.connectTo(own, transport);
      open.push(c);
      await c.logon('replay-reader');
      const cid = c.command({ command: 'subscribe', topic: 'long', bookmark: '0', ackType: 'processed,completed' });
      await c.ack(cid, 'completed');
      expect(c.takeAll(isDelivery(cid)).map(n)).toEqual(Array.from({ length: 400 }, (_, i) => i));
    },
  );

  it('the completed ack comes before what was published after the subscribe, also when the replay spans ticks', async () => {
    own = await startTestServer({ wsPort: false });
    // More entries than one tick replays (20,000), so the replay goes on after the publish below.
    const logged = 20_005;
    await fill(own, logged, (i) => `{"n":${i}}`);
    const c = await TestClient.connect(own.tcpUri());
    open.push(c);
    await c.logon('replay-completed');
    // The subscribe and a publish in one write: the publish is logged while the replay is under way.
    const subscribe = encodeCommand({
      command: 'subscribe',
      topic: 'long',
      bookmark: '0',
      commandId: 'replay',
      ackType: 'completed',
    });
    const publish = encodeCommand({ command: 'publish', topic: 'long', data: '{"n":-1}' });
    c.writeRaw(Buffer.concat([subscribe, publish]));
    await c.ack('replay', 'completed');
    await c.take((m) => isDelivery('replay')(m) && n(m) === -1, 'the live message');
    const order = c.received.filter((m) => m.commandId === 'replay' || m.subId === 'replay');
    expect(order.slice(-3).map((m) => (m.command === 'ack' ? m.ackType : n(m)))).toEqual([logged - 1, 'completed', -1]);
  });
});
