import type { Command, Message } from '@amps-ts/core-protocol';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../src/index.js';
import { isDelivery, ManualEnvironment, TestClient, type Transport, transports } from './helpers.js';

const env = new ManualEnvironment();
let server: TestServer;
let open: TestClient[] = [];

beforeAll(async () => {
  server = await startTestServer({
    name: 'sow',
    environment: env,
    sowTopics: [
      { topic: 'quotes-tcp', key: '/id' },
      { topic: 'quotes-ws', key: '/id' },
      { topic: 'orders', key: ['/region', '/id'] },
      { topic: 'userkeys' },
      { topic: 'pages-tcp', key: '/id' },
      { topic: 'pages-ws', key: '/id' },
      { topic: 'moved-tcp', key: '/id' },
      { topic: 'moved-ws', key: '/id' },
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

/** Sends a query and collects everything up to its completed ack. */
async function query(c: TestClient, fields: Parameters<TestClient['command']>[0]) {
  const cid = c.command({ ackType: 'processed,completed,stats', ...fields });
  const processed = await c.ack(cid);
  if (processed.status !== 'success') return { processed, records: [] as Message[] };
  const queryId = fields.queryId ?? fields.subId ?? cid;
  const begin = await c.take((m) => m.command === 'group_begin' && m.queryId === queryId, 'group_begin');
  const end = await c.take((m) => m.command === 'group_end' && m.queryId === queryId, 'group_end');
  const completed = await c.ack(cid, 'completed');
  const stats = await c.ack(cid, 'stats');
  // Everything before group_end has arrived; records come between the markers.
  const records = c.takeAll((m) => m.command === 'sow' && m.queryId === queryId);
  return { processed, begin, end, completed, stats, records };
}

describe.each(transports)('SOW over %s', (transport) => {
  const topic = `quotes-${transport}`;

  it('upserts by key and answers queries in batches with group markers and counts', async () => {
    const c = await client(transport, `sow-a-${transport}`);
    for (let id = 1; id <= 5; id++) c.publish(topic, { id, px: id * 10 });
    c.publish(topic, { id: 3, px: 33 });
    await c.sync();
    const all = await query(c, { command: 'sow', topic, batchSize: 2, orderBy: '/id' });
    expect(all.records.map((r) => r.json())).toEqual([
      { id: 1, px: 10 },
      { id: 2, px: 20 },
      { id: 3, px: 33 },
      { id: 4, px: 40 },
      { id: 5, px: 50 },
    ]);
    // 5 records in batches of 2: 3 sow frames, the records of a frame share its batch header.
    expect(new Set(all.records.map((r) => r.batchSize))).toEqual(new Set([2, 1]));
    // As AMPS: the counts come on the stats ack, not on completed.
    expect(all.stats).toMatchObject({ recordsReturned: 5, matches: 5, topicMatches: 1 });
    expect(all.completed?.recordsReturned).toBeUndefined();
    for (const r of all.records) expect(r.sowKey).toMatch(/^\d+$/);

    const top = await query(c, { command: 'sow', topic, orderBy: '/px DESC', topN: 2, filter: '/px < 45' });
    expect(top.records.map((r) => r.json())).toEqual([
      { id: 4, px: 40 },
      { id: 3, px: 33 },
    ]);
    expect(top.stats).toMatchObject({ recordsReturned: 2, matches: 4 });

    const key = all.records[1]?.sowKey as string;
    const byKey = await query(c, { command: 'sow', topic, sowKeys: key });
    expect(byKey.records.map((r) => r.json())).toEqual([{ id: 2, px: 20 }]);
  });

  it('pages with skip_n and top_n: ordered by orderby then SowKey, or by SowKey alone', async () => {
    const c = await client(transport, `sow-p-${transport}`);
    const pageTopic = `pages-${transport}`;
    // Inserted out of order; px ties in pairs, so pages rely on the SowKey tie-break.
    for (const id of [7, 3, 9, 1, 5, 2, 8, 4, 6, 10]) c.publish(pageTopic, { id, px: Math.ceil(id / 2) });
    await c.sync();
    const page = async (options: string, fields: Partial<Command> = {}) => {
      const result = await query(c, { command: 'sow', topic: pageTopic, batchSize: 3, options, ...fields });
      expect(result.processed.status).toBe('success');
      return result;
    };
    // By orderby, then SowKey: pages of 3 cover every record once, in the same order as a full query.
    const full = await page('skip_n=0', { orderBy: '/px DESC', topN: 10 });
    const keys = full.records.map((r) => r.sowKey);
    expect(full.records.map((r) => (r.json() as { px: number }).px)).toEqual([5, 5, 4, 4, 3, 3, 2, 2, 1, 1]);
    const pages: Message[][] = [];
    for (let skip = 0; skip < 12; skip += 3) {
      const result = await page(`skip_n=${skip},top_n=3`, { orderBy: '/px DESC' });
      expect(result.stats).toMatchObject({ recordsReturned: Math.min(3, Math.max(0, 10 - skip)), matches: 10 });
      pages.push(result.records);
    }
    expect(pages.map((p) => p.length)).toEqual([3, 3, 3, 1]);
    expect(pages.flat().map((r) => r.sowKey)).toEqual(keys);
    // The header top_n works with the skip_n option; a filter applies before the page.
    const filtered = await page('skip_n=1', { orderBy: '/id', topN: 2, filter: '/id > 4' });
    expect(filtered.records.map((r) => (r.json() as { id: number }).id)).toEqual([6, 7]);
    expect(filtered.stats).toMatchObject({ recordsReturned: 2, matches: 6 });
    // Without orderby: SowKey order (broker keys are decimal numbers).
    const byKey = await page('skip_n=2,top_n=4');
    const sortedKeys = [...keys].sort((a, b) => (BigInt(a as string) < BigInt(b as string) ? -1 : 1));
    expect(byKey.records.map((r) => r.sowKey)).toEqual(sortedKeys.slice(2, 6));
    // top_n=0: counts only.
    const none = await page('skip_n=3,top_n=0');
    expect(none.records).toEqual([]);
    expect(none.stats).toMatchObject({ recordsReturned: 0, matches: 10 });
  });

  it('refuses skip_n without top_n, bad top_n or skip_n values, and paginated subscriptions', async () => {
    const c = await client(transport, `sow-pr-${transport}`);
    const refused = async (fields: Parameters<TestClient['command']>[0]) => (await query(c, fields)).processed;
    expect(await refused({ command: 'sow', topic, options: 'skip_n=2' })).toMatchObject({
      status: 'failure',
      reason: 'invalid skip_n: skip_n requires top_n',
    });
    expect(await refused({ command: 'sow', topic, options: 'skip_n=-1,top_n=2' })).toMatchObject({
      reason: 'invalid skip_n',
    });
    expect(await refused({ command: 'sow', topic, options: 'top_n=x' })).toMatchObject({ reason: 'invalid top_n' });
    // A value is required: a bare or empty option is not a number (it was read as 1 or 0).
    expect(await refused({ command: 'sow', topic, options: 'skip_n,top_n=2' })).toMatchObject({
      reason: 'invalid skip_n',
    });
    expect(await refused({ command: 'sow', topic, options: 'skip_n=,top_n=2' })).toMatchObject({
      reason: 'invalid skip_n',
    });
    expect(await refused({ command: 'sow', topic, options: 'top_n' })).toMatchObject({ reason: 'invalid top_n' });
    expect(await refused({ command: 'sow', topic, options: 'top_n=' })).toMatchObject({ reason: 'invalid top_n' });
    expect(await refused({ command: 'sow', topic, options: 'skip_n=0x2,top_n=2' })).toMatchObject({
      reason: 'invalid skip_n',
    });
    const subId = `paged-${transport}`;
    const paged = await refused({ command: 'sow_and_subscribe', topic, subId, topN: 2, options: 'skip_n=2' });
    expect(paged).toMatchObject({
      status: 'failure',
      reason: 'invalid skip_n: paginated subscriptions are not supported by this broker',
      subId,
      queryId: subId,
    });
    // Refused before it was registered: the sub_id is free, and a bad orderby fails the same way.
    const badOrder = await refused({ command: 'sow_and_subscribe', topic, subId, orderBy: 'px' });
    expect(badOrder).toMatchObject({ status: 'failure', reason: 'invalid orderby' });
    const ok = await refused({ command: 'sow_and_subscribe', topic, subId, topN: 1 });
    expect(ok).toMatchObject({ status: 'success', subId, queryId: subId });
  });

  it('the processed ack of sow_and_subscribe carries query_id (its own, or the sub_id)', async () => {
    const c = await client(transport, `sow-q-${transport}`);
    const own = await query(c, { command: 'sow_and_subscribe', topic, subId: `qa-${transport}`, queryId: 'q-own' });
    expect(own.processed).toMatchObject({ status: 'success', subId: `qa-${transport}`, queryId: 'q-own' });
    expect(own.completed).toMatchObject({ queryId: 'q-own' });
    const byDefault = await query(c, { command: 'sow_and_delta_subscribe', topic, subId: `qb-${transport}` });
    expect(byDefault.processed).toMatchObject({ subId: `qb-${transport}`, queryId: `qb-${transport}` });
    // A plain subscribe's ack has no query_id.
    const sub = c.command({ command: 'subscribe', topic, subId: `qc-${transport}`, ackType: 'processed' });
    expect((await c.ack(sub)).queryId).toBeUndefined();
  });

  it('the received ack of the sow family carries query_id and sub_id, as its processed ack does', async () => {
    const c = await client(transport, `sow-rq-${transport}`);
    const subId = `rq-${transport}`;
    const ss = c.command({ command: 'sow_and_subscribe', topic, subId, queryId: 'rq-own', ackType: 'received' });
    expect(await c.ack(ss, 'received')).toMatchObject({ status: 'success', subId, queryId: 'rq-own' });
    const sow = c.command({ command: 'sow', topic, ackType: 'received' });
    expect(await c.ack(sow, 'received')).toMatchObject({ status: 'success', queryId: sow });
  });

  it('sends group markers for an empty result and fails a query on a non-SOW topic', async () => {
    const c = await client(transport, `sow-b-${transport}`);
    const empty = await query(c, { command: 'sow', topic, filter: '/px > 1000000' });
    expect(empty.records).toEqual([]);
    expect(empty.begin).toBeDefined();
    expect(empty.stats).toMatchObject({ recordsReturned: 0 });
    const bad = await query(c, { command: 'sow', topic: 'not-a-sow-topic' });
    expect(bad.processed).toMatchObject({ status: 'failure', reason: 'invalid topic' });
  });

  it('sow_and_subscribe: the snapshot, then live publishes; an empty group on a non-SOW topic', async () => {
    const c = await client(transport, `sow-c-${transport}`);
    c.publish(topic, { id: 100, px: 1 });
    await c.sync();
    const result = await query(c, {
      command: 'sow_and_subscribe',
      topic,
      subId: `ss-${transport}`,
      filter: '/id >= 100',
    });
    expect(result.records.map((r) => r.json())).toEqual([{ id: 100, px: 1 }]);
    c.publish(topic, { id: 101, px: 2 });
    expect((await c.take(isDelivery(`ss-${transport}`))).json()).toEqual({ id: 101, px: 2 });
    const adhoc = await query(c, { command: 'sow_and_subscribe', topic: 'adhoc', subId: `ah-${transport}` });
    expect(adhoc.records).toEqual([]);
    expect(adhoc.end).toBeDefined();
  });

  it('a replaced sow_and_subscribe sends records newly in scope and oof for those that left', async () => {
    const c = await client(transport, `sow-r-${transport}`);
    c.publish(topic, { id: 500, px: 1 });
    c.publish(topic, { id: 501, px: 2 });
    await c.sync();
    const subId = `rs-${transport}`;
    const first = await query(c, { command: 'sow_and_subscribe', topic, subId, filter: '/id = 500', options: 'oof' });
    expect(first.records.map((r) => r.json())).toEqual([{ id: 500, px: 1 }]);
    const second = await query(c, {
      command: 'sow_and_subscribe',
      topic,
      subId,
      filter: '/id = 501',
      options: 'oof,replace',
    });
    expect(second.records.map((r) => r.json())).toEqual([{ id: 501, px: 2 }]);
    const left = await c.take((m) => m.command === 'oof' && m.subId === subId, 'oof for the record that left');
    expect(left).toMatchObject({ reason: 'match' });
    expect(left.json()).toEqual({ id: 500, px: 1 });
  });

  it('a replaced sow_and_subscribe orders and cuts the records newly in scope by its orderby and top_n', async () => {
    const c = await client(transport, `sow-rn-${transport}`);
    for (const [id, px] of [
      [530, 1],
      [531, 5],
      [532, 9],
      [533, 7],
    ])
      c.publish(topic, { id, px });
    await c.sync();
    const subId = `rn-${transport}`;
    await query(c, { command: 'sow_and_subscribe', topic, subId, filter: '/id = 530' });
    const replaced = await query(c, {
      command: 'sow_and_subscribe',
      topic,
      subId,
      filter: '/id IN (531, 532, 533)',
      orderBy: '/px DESC',
      topN: 2,
      options: 'replace',
    });
    expect(replaced.records.map((r) => r.json())).toEqual([
      { id: 532, px: 9 },
      { id: 533, px: 7 },
    ]);
    expect(replaced.stats).toMatchObject({ recordsReturned: 2, matches: 3 });
  });

  it("a sow_and_subscribe replaced onto another topic sends that topic's records; those left behind get oof", async () => {
    const c = await client(transport, `sow-rt-${transport}`);
    const region = `rt-${transport}`;
    const other = `moved-${transport}`;
    c.publish(topic, { id: 520, px: 1, region });
    c.publish(other, { id: 521, px: 2, region });
    await c.sync();
    const subId = `rt-${transport}`;
    // The same filter on both topics: only the topic changes.
    const filter = `/region = '${region}'`;
    const first = await query(c, { command: 'sow_and_subscribe', topic, subId, filter, options: 'oof' });
    expect(first.records.map((r) => r.json())).toEqual([{ id: 520, px: 1, region }]);
    const moved = await query(c, {
      command: 'sow_and_subscribe',
      topic: other,
      subId,
      filter,
      options: 'oof,replace',
    });
    expect(moved.records.map((r) => r.json())).toEqual([{ id: 521, px: 2, region }]);
    expect(moved.stats).toMatchObject({ recordsReturned: 1, topicMatches: 1 });
    const left = await c.take((m) => m.command === 'oof' && m.subId === subId, 'oof for the record left behind');
    expect(left).toMatchObject({ topic, reason: 'match' });
    expect(left.json()).toEqual({ id: 520, px: 1, region });
  });

  it('delta_publish merges (and cannot remove a field); delta_subscribe gets keys and changed fields', async () => {
    const c = await client(transport, `sow-d-${transport}`);
    const subId = `ds-${transport}`;
    c.publish(topic, { id: 200, px: 1, qty: 5, venue: 'X' });
    await c.sync();
    const cid = c.command({ command: 'delta_subscribe', topic, subId, filter: '/id = 200', ackType: 'processed' });
    await c.ack(cid);
    c.command({ command: 'delta_publish', topic, data: JSON.stringify({ id: 200, px: 2, venue: null }) });
    const delta = await c.take(isDelivery(subId));
    expect(delta.json()).toEqual({ id: 200, px: 2 });
    const full = await query(c, { command: 'sow', topic, filter: '/id = 200' });
    expect(full.records.map((r) => r.json())).toEqual([{ id: 200, px: 2, qty: 5, venue: 'X' }]);
    // A delta on a key not yet in the SOW is an insert; the delta subscriber gets it whole.
    c.command({ command: 'delta_publish', topic, data: JSON.stringify({ id: 201, px: 9 }) });
    c.command({ command: 'delta_publish', topic, data: JSON.stringify({ id: 200, qty: 6 }) });
    expect((await c.take(isDelivery(subId))).json()).toEqual({ id: 200, qty: 6 });
  });

  it('merges the deliveries of one message to one connection: one frame, every sub_id in sids', async () => {
    const c = await client(transport, `sow-m-${transport}`);
    const deltaSub = `md-${transport}`;
    const plainSub = `mp-${transport}`;
    c.publish(topic, { id: 250, px: 1, qty: 5 });
    await c.sync();
    const d = c.command({
      command: 'delta_subscribe',
      topic,
      subId: deltaSub,
      filter: '/id = 250',
      ackType: 'processed',
    });
    await c.ack(d);
    await c.subscribe(topic, { subId: plainSub, filter: '/id >= 250' });
    // Both match: one frame, and the delta subscription gets the full message with the plain one (as AMPS).
    c.publish(topic, { id: 250, px: 2, qty: 5 });
    await c.sync();
    const both = c.takeAll(isDelivery());
    expect(both).toHaveLength(1);
    expect(both[0]?.subscriptionIds.sort()).toEqual([deltaSub, plainSub].sort());
    expect(both[0]?.subId).toBeUndefined();
    expect(both[0]?.json()).toEqual({ id: 250, px: 2, qty: 5 });
    // Only one matches: sub_id, as before.
    c.publish(topic, { id: 251, px: 1 });
    await c.sync();
    const one = c.takeAll(isDelivery());
    expect(one.map((m) => [m.subId, m.subIds])).toEqual([[plainSub, undefined]]);
  });

  it('sends oof for match, deleted and expired', async () => {
    const c = await client(transport, `sow-e-${transport}`);
    const subId = `oof-${transport}`;
    await c.subscribe(topic, { subId, filter: '/px < 100', options: 'oof' });
    c.publish(topic, { id: 300, px: 1 }, { correlationId: 'first' });
    c.publish(topic, { id: 300, px: 500 }, { correlationId: 'update' });
    const delivered = await c.take(isDelivery(subId));
    const match = await c.take((m) => m.command === 'oof' && m.subId === subId, 'oof match');
    // The documented fields: t, k, reason, x and l of the body (the updated message for match).
    expect(match).toMatchObject({ topic, sowKey: delivered.sowKey, reason: 'match', correlationId: 'update' });
    expect(match.json()).toEqual({ id: 300, px: 500 });
    expect(match.length).toBe(match.data.length);
    expect(match.subIds).toBeUndefined();

    c.publish(topic, { id: 301, px: 2 }, { correlationId: 'previous' });
    await c.take(isDelivery(subId));
    const del = c.command({ command: 'sow_delete', topic, filter: '/id = 301', ackType: 'processed,stats' });
    expect(await c.ack(del, 'stats')).toMatchObject({ recordsDeleted: 1, matches: 1 });
    const deleted = await c.take((m) => m.command === 'oof' && m.subId === subId, 'oof deleted');
    // deleted and expired carry the previous message, with its x.
    expect(deleted).toMatchObject({ reason: 'deleted', correlationId: 'previous' });
    expect(deleted.json()).toEqual({ id: 301, px: 2 });
    expect(deleted.length).toBe(deleted.data.length);

    c.publish(topic, { id: 302, px: 3 }, { expiration: 2 });
    await c.take(isDelivery(subId));
    env.advance(2000);
    const expired = await c.take((m) => m.command === 'oof' && m.subId === subId, 'oof expired');
    expect(expired.reason).toBe('expired');
    expect(expired.correlationId).toBeUndefined();
    const after = await query(c, { command: 'sow', topic, filter: '/id = 302' });
    expect(after.records).toEqual([]);
  });

  it('merges the oofs of one record to one connection: one frame, every sub_id in sids', async () => {
    const c = await client(transport, `sow-om-${transport}`);
    const other = await client(transport, `sow-om2-${transport}`);
    const [a, b, quiet, bookmarked, alone] = ['a', 'b', 'quiet', 'bm', 'alone'].map((n) => `om-${n}-${transport}`);
    await c.subscribe(topic, { subId: a, filter: '/id >= 400 AND /px < 100', options: 'oof' });
    await c.subscribe(topic, { subId: b, filter: '/id >= 400 AND /px < 50', options: 'oof' });
    await c.subscribe(topic, { subId: quiet, filter: '/id >= 400 AND /px < 100' }); // no oof option
    // A bookmark subscription never gets oof, also once live (amps-protocol.md §10.4).
    const live = c.command({
      command: 'subscribe',
      topic,
      subId: bookmarked,
      bookmark: '0|1|',
      filter: '/id >= 400 AND /px < 100',
      options: 'oof',
      ackType: 'processed,completed',
    });
    await c.ack(live, 'completed');
    await other.subscribe(topic, { subId: alone, filter: '/id >= 400 AND /px < 100', options: 'oof' });
    c.publish(topic, { id: 400, px: 1 }); // in a and b
    c.publish(topic, { id: 400, px: 200 }); // leaves both
    c.publish(topic, { id: 401, px: 60 }); // in a only
    c.publish(topic, { id: 402, px: 10 }); // in a and b
    for (const id of [401, 402]) {
      const del = c.command({ command: 'sow_delete', topic, filter: `/id = ${id}`, ackType: 'stats' });
      expect(await c.ack(del, 'stats')).toMatchObject({ recordsDeleted: 1 });
    }
    await c.sync();
    const oofs = c.takeAll((m) => m.command === 'oof');
    expect(oofs.map((m) => [m.reason, (m.json() as { id: number }).id, m.subId, m.subIds])).toEqual([
      ['match', 400, undefined, `${a},${b}`],
      ['deleted', 401, a, undefined],
      ['deleted', 402, undefined, `${a},${b}`],
    ]);
    // The other connection has frames of its own.
    const theirs = await other.takeN(3, (m) => m.command === 'oof', 'oofs on the other connection');
    expect(theirs.map((m) => [m.reason, m.subId, m.subIds])).toEqual([
      ['match', alone, undefined],
      ['deleted', alone, undefined],
      ['deleted', alone, undefined],
    ]);
  });

  it('sow_delete by keys and by data', async () => {
    const c = await client(transport, `sow-f-${transport}`);
    c.publish(topic, { id: 400, px: 1 });
    c.publish(topic, { id: 401, px: 1 });
    await c.sync();
    const found = await query(c, { command: 'sow', topic, filter: '/id IN (400, 401)', orderBy: '/id' });
    const byKeys = c.command({
      command: 'sow_delete',
      topic,
      sowKeys: found.records[0]?.sowKey,
      ackType: 'processed,stats',
    });
    expect(await c.ack(byKeys, 'stats')).toMatchObject({ recordsDeleted: 1 });
    // As AMPS orders a command's acks: processed, then the stats that end it.
    const acksOfByKeys = c.received.filter((m) => m.command === 'ack' && m.commandId === byKeys);
    expect(acksOfByKeys.map((m) => m.ackType)).toEqual(['processed', 'stats']);
    const byData = c.command({
      command: 'sow_delete',
      topic,
      data: JSON.stringify({ id: 401 }),
      ackType: 'processed,stats',
    });
    expect(await c.ack(byData, 'stats')).toMatchObject({ recordsDeleted: 1 });
    const left = await query(c, { command: 'sow', topic, filter: '/id IN (400, 401)' });
    expect(left.records).toEqual([]);
  });
  it("a sow_delete's stats ack carries the command's query_id", async () => {
    const c = await client(transport, `sow-dq-${transport}`);
    c.publish(topic, { id: 410, px: 1 });
    const cid = c.command({
      command: 'sow_delete',
      topic,
      filter: '/id = 410',
      queryId: `dq-${transport}`,
      ackType: 'stats',
    });
    expect(await c.ack(cid, 'stats')).toMatchObject({ recordsDeleted: 1, queryId: `dq-${transport}` });
  });
});

describe('SOW keys', () => {
  it('combines several key fields, and takes k from the publisher when the topic has none', async () => {
    const c = await client('tcp', 'sow-keys');
    c.publish('orders', { region: 'eu', id: 1, v: 1 });
    c.publish('orders', { region: 'us', id: 1, v: 2 });
    c.publish('orders', { region: 'eu', id: 1, v: 3 });
    const missing = c.publish('orders', { id: 2 }, { ackType: 'processed' });
    expect(await c.ack(missing)).toMatchObject({ status: 'failure', reason: 'missing sow key' });
    c.publish('userkeys', { a: 1 }, { sowKey: 'K1' });
    c.publish('userkeys', { a: 2 }, { sowKey: 'K1' });
    await c.sync();
    const orders = await query(c, { command: 'sow', topic: 'orders', orderBy: '/v' });
    expect(orders.records.map((r) => r.json())).toEqual([
      { region: 'us', id: 1, v: 2 },
      { region: 'eu', id: 1, v: 3 },
    ]);
    const user = await query(c, { command: 'sow', topic: 'userkeys' });
    expect(user.records.map((r) => [r.sowKey, r.json()])).toEqual([['K1', { a: 2 }]]);
    const regex = await query(c, { command: 'sow', topic: '^(orders|userkeys)$', batchSize: 10 });
    expect(regex.stats).toMatchObject({ topicMatches: 2, recordsReturned: 3 });
    expect(new Set(regex.records.map((r) => r.topic))).toEqual(new Set(['orders', 'userkeys']));
  });
});

it('an expiration longer than a timer can wait (30 days) expires on time, waited in steps', async () => {
  const clock = new ManualEnvironment();
  const own = await startTestServer({ environment: clock, wsPort: false, sowTopics: [{ topic: 'long', key: '/id' }] });
  try {
    const c = await TestClient.connect(own.tcpUri());
    await c.logon('long-expiry');
    await c.subscribe('long', { subId: 'long', options: 'oof' });
    const days30 = 30 * 86_400;
    c.publish('long', { id: 1 }, { expiration: days30 });
    await c.take(isDelivery('long'));
    // setTimeout fires at once (after 1 ms) for anything longer than 2^31-1 ms.
    expect(clock.longestDelayMs).toBeLessThanOrEqual(2 ** 31 - 1);
    clock.advance(days30 * 1000 - 1);
    await c.sync();
    expect(c.unread.filter((m) => m.command === 'oof')).toEqual([]);
    clock.advance(1);
    expect((await c.take((m) => m.command === 'oof', 'oof expired')).reason).toBe('expired');
    await c.close();
  } finally {
    await own.close();
  }
});

describe('no_sowkey on queries', () => {
  it.each(transports)(
    'leaves k out of the records of sow and sow_and_subscribe, as out of deliveries (%s)',
    async (transport) => {
      // amps-protocol.md §10.1: "SOW messages carry k by default. The option no_sowkey turns that off."
      // Before: the records of a query always had k; only deliveries honoured the option.
      const c = await client(transport, `nokey-${transport}`);
      const topic = `quotes-${transport}`;
      c.publish(topic, { id: 900, px: 9 });
      await c.sync();
      const plain = await query(c, { command: 'sow', topic, filter: '/id = 900' });
      expect(plain.records.map((r) => r.sowKey)).toEqual([expect.stringMatching(/^\d+$/)]);
      const without = await query(c, { command: 'sow', topic, filter: '/id = 900', options: 'no_sowkey' });
      expect(without.records.map((r) => [r.json(), r.sowKey])).toEqual([[{ id: 900, px: 9 }, undefined]]);
      const subId = `nokey-ss-${transport}`;
      const ss = await query(c, {
        command: 'sow_and_subscribe',
        topic,
        subId,
        filter: '/id = 900',
        options: 'no_sowkey',
      });
      expect(ss.records.map((r) => r.sowKey)).toEqual([undefined]);
      c.publish(topic, { id: 900, px: 10 });
      expect((await c.take(isDelivery(subId))).sowKey).toBeUndefined();
    },
  );
});
