import { type Command, encodeCommand, type Message, timestampBookmark } from '@amps-ts/core-protocol';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { clientNameHash, startTestServer, type TestServer } from '../src/index.js';
import { isDelivery, ManualEnvironment, TestClient, type Transport, transports, until } from './helpers.js';

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

describe.each(transports)('pause and resume over %s', (transport) => {
  const topic = `pause-${transport}`;
  let pub: TestClient;
  let next = 1;

  beforeAll(async () => {
    pub = await TestClient.connect(server.tcpUri());
    await publish(3);
  });
  afterAll(async () => {
    await pub.close();
  });

  /** Publishes `count` more messages (numbered on from the last), processed by the broker when it resolves. */
  async function publish(count: number): Promise<void> {
    if (next === 1) await pub.logon(`pause-pub-${transport}`);
    for (let i = 0; i < count; i++) pub.publish(topic, { n: next++ });
    await pub.sync();
  }

  const numbers = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

  /** Sends `pause` or `resume` for `subId` (a comma list allowed); resolves with its processed ack. */
  function toggle(c: TestClient, option: string, subId: string, fields: Partial<Command> = {}): Promise<Message> {
    return c.ack(c.command({ command: 'subscribe', subId, options: option, ackType: 'processed', ...fields }));
  }

  /** Everything delivered to `c` up to now, after a round trip. */
  async function deliveredNow(c: TestClient, subId: string): Promise<number[]> {
    await c.sync();
    return c.takeAll(isDelivery(subId)).map(n);
  }

  it('a subscription that starts paused gets nothing until resumed, then replays and goes live', async () => {
    const c = await client(transport, `pause-start-${transport}`);
    const cid = c.command({
      command: 'subscribe',
      topic,
      subId: 'p',
      bookmark: '0',
      options: 'pause',
      ackType: 'processed,completed',
    });
    expect(await c.ack(cid)).toMatchObject({ status: 'success', subId: 'p' });
    await publish(1);
    expect(await deliveredNow(c, 'p')).toEqual([]);
    expect(await toggle(c, 'resume', 'p')).toMatchObject({ status: 'success', subId: 'p' });
    await c.ack(cid, 'completed');
    const upTo = next - 1;
    expect(c.takeAll(isDelivery('p')).map(n)).toEqual(numbers(1, upTo));
    await publish(1);
    expect(await deliveredNow(c, 'p')).toEqual([upTo + 1]);
  });

  it('a live subscription paused misses nothing: what was published meanwhile comes on resume, in order, once', async () => {
    const c = await client(transport, `pause-live-${transport}`);
    const cid = c.command({
      command: 'subscribe',
      topic,
      subId: 'live',
      bookmark: '0',
      ackType: 'processed,completed',
    });
    await c.ack(cid, 'completed');
    const before = next - 1;
    expect(c.takeAll(isDelivery('live')).map(n)).toEqual(numbers(1, before));
    expect(await toggle(c, 'pause', 'live')).toMatchObject({ status: 'success' });
    // Pausing again is no change, and no error.
    expect(await toggle(c, 'pause', 'live')).toMatchObject({ status: 'success' });
    await publish(3);
    expect(await deliveredNow(c, 'live')).toEqual([]);
    await toggle(c, 'resume', 'live');
    expect(await deliveredNow(c, 'live')).toEqual(numbers(before + 1, before + 3));
    // Resuming one that runs is no change either.
    await toggle(c, 'resume', 'live');
    await publish(1);
    expect(await deliveredNow(c, 'live')).toEqual([before + 4]);
  });

  it('pauses and resumes a comma list of subscriptions; the others go on', async () => {
    const c = await client(transport, `pause-list-${transport}`);
    for (const subId of ['a', 'b', 'c']) {
      await c.subscribe(topic, { subId, bookmark: '0|1|' });
    }
    await toggle(c, 'pause', 'a,b');
    await publish(2);
    expect(await deliveredNow(c, 'c')).toEqual([next - 2, next - 1]);
    expect(c.unread.filter(isDelivery())).toEqual([]);
    await toggle(c, 'resume', 'a,b');
    await c.sync();
    expect(c.takeAll(isDelivery('a')).map(n)).toEqual([next - 2, next - 1]);
    expect(c.takeAll(isDelivery('b')).map(n)).toEqual([next - 2, next - 1]);
  });

  it('refuses what it cannot pause or resume, and changes nothing', async () => {
    const c = await client(transport, `pause-refused-${transport}`);
    await c.subscribe(topic, { subId: 'plain' });
    await c.subscribe(topic, { subId: 'bm', bookmark: '0|1|' });
    expect(await toggle(c, 'pause', 'plain')).toMatchObject({
      status: 'failure',
      reason: 'invalid pause: not a bookmark subscription: plain',
    });
    expect(await toggle(c, 'resume', 'bm,nope,gone')).toMatchObject({
      status: 'failure',
      reason: 'subscription not found: nope,gone',
    });
    expect(await toggle(c, 'pause', 'bm,nope')).toMatchObject({
      status: 'failure',
      reason: 'subscription not found: nope',
    });
    expect(await toggle(c, 'pause,resume', 'bm')).toMatchObject({
      status: 'failure',
      reason: 'invalid options: pause and resume together',
    });
    expect(await toggle(c, 'pause,replace', 'bm', { topic })).toMatchObject({
      status: 'failure',
      reason: 'invalid options: pause cannot be combined with replace or live',
    });
    // A new id with pause but no bookmark is no bookmark subscription either.
    expect(await toggle(c, 'pause', 'new', { topic })).toMatchObject({
      status: 'failure',
      reason: 'invalid pause: only a bookmark subscription can be paused',
    });
    // Both still deliver: nothing was paused.
    await publish(1);
    await c.sync();
    expect(
      c
        .takeAll(isDelivery())
        .flatMap((m) => m.subscriptionIds)
        .sort(),
    ).toEqual(['bm', 'plain']);
  });
});

describe.each(transports)('bookmark ranges over %s', (transport) => {
  const topic = `range-${transport}`;
  const publisher = `range-pub-${transport}`;
  const hash = clientNameHash(publisher);
  const bm = (s: number) => `${hash}|${s}|`;
  /** The log time of message s (1..5), one second apart on whole seconds. */
  const times: number[] = [];
  const at = (s: number) => timestampBookmark(new Date(times[s - 1] as number));
  let sub: TestClient;

  beforeAll(async () => {
    // Whole seconds, so that YYYYMMDDTHHMMSSZ names each message's time exactly.
    env.advance(10_000 - (env.now() % 10_000));
    const pub = await TestClient.connect(server.tcpUri());
    await pub.logon(publisher);
    for (let s = 1; s <= 5; s++) {
      pub.publish(topic, { n: s }, { sequence: s });
      await pub.sync();
      times.push(env.now());
      env.advance(1000);
    }
    await pub.close();
  });

  afterEach(async () => {
    await sub?.close();
  });

  async function rangeSubscribe(bookmark: string, fields: Partial<Command> = {}, t = topic) {
    sub = await client(transport, `range-sub-${transport}-${Math.random()}`);
    const cid = sub.command({ command: 'subscribe', topic: t, bookmark, ackType: 'processed,completed', ...fields });
    const processed = await sub.ack(cid);
    return { cid, processed };
  }

  /** Nothing more for `cid` once a flush round trip is done: a completed range delivers nothing. */
  async function expectNothingMore(cid: string) {
    await sub.sync();
    expect(sub.unread.filter((m) => isDelivery(cid)(m) || (m.command === 'ack' && m.subId === cid))).toEqual([]);
  }

  it.each([
    ['[a:b] includes both ends', `[${bm(2)}:${bm(4)}]`, [2, 3, 4], 4],
    ['(a:b) excludes both ends', `(${bm(2)}:${bm(4)})`, [3], 3],
    ['[a:b) includes the begin, stops before the end', `[${bm(2)}:${bm(4)})`, [2, 3], 3],
    ['(a:b] starts after the begin, includes the end', `(${bm(2)}:${bm(4)}]`, [3, 4], 4],
  ])('bookmark range %s, then completed and gone', async (_, range, expected, last) => {
    const { cid, processed } = await rangeSubscribe(range);
    expect(processed.status).toBe('success');
    expect((await sub.takeN(expected.length, isDelivery(cid))).map(n)).toEqual(expected);
    const completed = await sub.ack(cid, 'completed');
    expect(completed).toMatchObject({ status: 'success', subId: cid, bookmark: bm(last) });
    await expectNothingMore(cid);
  });

  it.each([
    ['[T2:T4]', '[', ']', [2, 3, 4], 4],
    ['(T2:T4)', '(', ')', [3], 3],
    ['[T2:T4)', '[', ')', [2, 3], 3],
    ['(T2:T4]', '(', ']', [3, 4], 4],
  ])('timestamp begin and end %s', async (_, open, close, expected, last) => {
    const { cid } = await rangeSubscribe(`${open}${at(2)}:${at(4)}${close}`);
    expect((await sub.takeN(expected.length, isDelivery(cid))).map(n)).toEqual(expected);
    expect((await sub.ack(cid, 'completed')).bookmark).toBe(bm(last));
    await expectNothingMore(cid);
  });

  it('a list begin starts at the earliest listed bookmark the log holds', async () => {
    const { cid } = await rangeSubscribe(`[${bm(4)},99999|1|,${bm(2)}:${bm(3)}]`);
    expect((await sub.takeN(2, isDelivery(cid))).map(n)).toEqual([2, 3]);
    expect((await sub.ack(cid, 'completed')).bookmark).toBe(bm(3));
  });

  it('an end not logged yet: live until it is, then exactly up to it, completed once, persisted acks stop', async () => {
    const late = `range-late-${transport}`;
    const lateBm = (s: number) => `${clientNameHash(late)}|${s}|`;
    const lateTopic = `range-late-${transport}`;
    const { cid } = await rangeSubscribe(
      `[${bm(1)}:${lateBm(2)}]`,
      { ackType: 'processed,completed,persisted' },
      lateTopic,
    );
    const pub = await client('tcp', late);
    pub.publish(lateTopic, { n: 1 }, { sequence: 1 });
    await pub.sync();
    expect(n(await sub.take(isDelivery(cid)))).toBe(1);
    // Still running: persisted acks go on, no completed yet.
    env.advance(100);
    await sub.take((m) => m.command === 'ack' && m.ackType === 'persisted' && m.subId === cid);
    await sub.sync();
    expect(sub.received.filter((m) => m.ackType === 'completed' && m.commandId === cid)).toHaveLength(0);
    for (let s = 2; s <= 4; s++) pub.publish(lateTopic, { n: s }, { sequence: s });
    await pub.sync();
    expect(n(await sub.take(isDelivery(cid)))).toBe(2);
    const completed = await sub.ack(cid, 'completed');
    expect(completed).toMatchObject({ subId: cid, commandId: cid, bookmark: lateBm(2) });
    pub.publish(lateTopic, { n: 5 }, { sequence: 5 });
    await pub.sync();
    env.advance(100);
    await expectNothingMore(cid);
    expect(sub.received.filter((m) => m.ackType === 'completed' && m.commandId === cid)).toHaveLength(1);
  });

  it('a timestamp end in the future: live until that time, then completed; its timer is cleared on unsubscribe and close', async () => {
    const t = `range-future-${transport}`;
    const pub = await client('tcp', `range-future-pub-${transport}`);
    pub.publish(t, { n: 0 });
    await pub.sync();
    const end = Math.ceil((env.now() + 5000) / 1000) * 1000;
    const pending = env.pending;
    // [0|1| includes the last log entry: the message just published.
    const { cid } = await rangeSubscribe(`[0|1|:${timestampBookmark(new Date(end))})`, {}, t);
    expect(n(await sub.take(isDelivery(cid)))).toBe(0);
    expect(env.pending).toBe(pending + 1);
    env.advance(end - env.now() - 1);
    const live = pub.publish(t, { n: 1 }, { ackType: 'processed' });
    const { bookmark: lastBm } = await pub.ack(live);
    expect(n(await sub.take(isDelivery(cid)))).toBe(1);
    await sub.sync();
    expect(sub.received.filter((m) => m.ackType === 'completed' && m.commandId === cid)).toHaveLength(0);
    env.advance(1);
    const completed = await sub.ack(cid, 'completed');
    expect(completed).toMatchObject({ subId: cid, bookmark: lastBm });
    expect(env.pending).toBe(pending);
    pub.publish(t, { n: 2 });
    await pub.sync();
    await expectNothingMore(cid);

    const far = `(0|1|:20991231T000000Z]`;
    const other = sub.command({ command: 'subscribe', topic: t, bookmark: far, ackType: 'processed' });
    await sub.ack(other);
    expect(env.pending).toBe(pending + 1);
    await sub.ack(sub.command({ command: 'unsubscribe', subId: other, ackType: 'processed' }));
    expect(env.pending).toBe(pending);
    await sub.ack(sub.command({ command: 'subscribe', topic: t, bookmark: far, ackType: 'processed' }));
    expect(env.pending).toBe(pending + 1);
    await sub.close();
    await until(() => env.pending === pending, 'the range timer is cleared on close');
  });

  it('an empty range, or one that ends before it begins, delivers nothing and completes at once', async () => {
    for (const [range, last] of [
      [`(${bm(3)}:${bm(3)}]`, 3],
      [`[${bm(3)}:${bm(3)})`, 2],
      [`[${bm(4)}:${bm(2)}]`, 3],
    ] as const) {
      const { cid, processed } = await rangeSubscribe(range);
      expect(processed.status).toBe('success');
      // The completed bm is where the subscription stopped: before its begin, here.
      expect((await sub.ack(cid, 'completed')).bookmark).toBe(bm(last));
      await expectNothingMore(cid);
      await sub.close();
    }
  });

  it('invalid range syntax fails with invalid bookmark', async () => {
    sub = await client(transport, `range-invalid-${transport}`);
    for (const bookmark of [
      `[${bm(1)}:${bm(3)}`,
      `[${bm(1)}]`,
      `(:${bm(3)})`,
      `[nonsense:${bm(3)}]`,
      `[recent:${bm(3)}]`,
    ]) {
      const cid = sub.command({ command: 'subscribe', topic, bookmark, ackType: 'processed' });
      expect(await sub.ack(cid)).toMatchObject({ status: 'failure', reason: 'invalid bookmark', subId: cid });
    }
    await sub.sync();
    expect(sub.unread.filter(isDelivery())).toHaveLength(0);
  });

  it('the sub_id is free once the range has completed; unsubscribing it is accepted quietly', async () => {
    const { cid } = await rangeSubscribe(`[${bm(1)}:${bm(2)}]`, { subId: 'ranged' });
    await sub.takeN(2, isDelivery('ranged'));
    await sub.ack(cid, 'completed');
    const unsubscribe = sub.command({ command: 'unsubscribe', subId: 'ranged', ackType: 'processed' });
    expect((await sub.ack(unsubscribe)).status).toBe('success');
    const again = sub.command({ command: 'subscribe', topic, subId: 'ranged', ackType: 'processed' });
    expect(await sub.ack(again)).toMatchObject({ status: 'success', subId: 'ranged' });
  });

  it('bookmark_not_found applies to a range begin', async () => {
    const range = `[12345|1|:${bm(3)}]`;
    const fail = await rangeSubscribe(range, { options: 'bookmark_not_found=fail' });
    expect(fail.processed).toMatchObject({ status: 'failure', reason: 'bookmark not found' });
    const epoch = await rangeSubscribe(range, { options: 'bookmark_not_found=epoch' });
    expect((await sub.takeN(3, isDelivery(epoch.cid))).map(n)).toEqual([1, 2, 3]);
    await sub.ack(epoch.cid, 'completed');
    // The default, NOW: the log's end, after the range's end: nothing, completed at once.
    const now = await rangeSubscribe(range);
    await sub.ack(now.cid, 'completed');
    await expectNothingMore(now.cid);
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

  it('a replay paused part way resumes where it stopped: every entry once, in order', async () => {
    own = await startTestServer({ wsPort: false });
    const logged = 30_000;
    await fill(own, logged, (i) => `{"n":${i}}`);
    const c = await TestClient.connect(own.tcpUri());
    open.push(c);
    await c.logon('replay-paused');
    // The pause in the same write as the subscribe: it comes while the replay is under way.
    const subscribe = encodeCommand({
      command: 'subscribe',
      topic: 'long',
      bookmark: '0',
      subId: 'r',
      ackType: 'processed',
    });
    const pause = encodeCommand({
      command: 'subscribe',
      subId: 'r',
      options: 'pause',
      commandId: 'p',
      ackType: 'processed',
    });
    c.writeRaw(Buffer.concat([subscribe, pause]));
    await c.ack('p');
    await c.sync();
    const first = c.takeAll(isDelivery('r')).map(n);
    expect(first.length).toBeGreaterThan(0);
    expect(first.length).toBeLessThan(logged);
    c.command({ command: 'subscribe', subId: 'r', options: 'resume' });
    const rest = await c.takeN(logged - first.length, isDelivery('r'));
    expect([...first, ...rest.map(n)]).toEqual(Array.from({ length: logged }, (_, i) => i));
    await c.sync();
    expect(c.unread.filter(isDelivery())).toEqual([]);
  });
});
