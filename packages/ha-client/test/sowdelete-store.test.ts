/**
 * HAClient.sowDelete through the publish store, on a real broker over real sockets: the cases
 * where the delete's sequence is not the one it was first given, or not given yet, and the
 * caller's wait ends while it is (or is not yet) stored.
 */
import { startTestServer, type TestServer } from '@amps-ts/test-server';
import { describe, expect, it } from 'vitest';
import { MemoryPublishStore } from '../src/index.js';
import { cleanups, client, records } from './helpers.js';

const sowTopics = [{ topic: 'orders', key: '/n' }];

async function broker(ackConflationMs?: number): Promise<TestServer> {
  const s = await startTestServer({ sowTopics, ackConflationMs });
  cleanups.push(() => s.close());
  return s;
}

const record = (n: number, v = 1) => JSON.stringify({ n, v });

describe('HAClient.sowDelete through the publish store (real broker)', () => {
  it('resolves with the counts of one stored before the first logon, renumbered after the sequences the server holds for the name', async () => {
    const s = await broker(20);
    const before = client('sowdelete-renumbered', s.tcpUri('json'));
    await before.connectAndLogon();
    before.publish('orders', record(1));
    before.publish('orders', record(2));
    await before.publishFlush(5000);
    await before.disconnect();
    // The same name again, with a new store: the server holds its sequences up to 2, so the
    // delete stored as 1 goes out as 3.
    const ha = client('sowdelete-renumbered', s.tcpUri('json'));
    const deleted = ha.sowDelete('orders', { filter: '/n > 0' }, { timeoutMs: 5000 });
    await ha.connectAndLogon();
    await expect(deleted).resolves.toMatchObject({ recordsDeleted: 2 });
    expect(await records(ha)).toEqual([]);
  });

  it('resolves with the counts of one let into a full store in the same persisted ack as a publish ahead of it', async () => {
    const s = await broker(50);
    const ha = client('sowdelete-blocked', s.tcpUri('json'), {
      publishStore: new MemoryPublishStore({ capacity: 2 }),
    });
    await ha.connectAndLogon();
    ha.publish('orders', record(1));
    ha.publish('orders', record(2)); // the store is full until their (one, conflated) persisted ack
    const published = ha.publish('orders', record(3)); // waits for room, ahead of the delete
    const deleted = ha.sowDelete('orders', { filter: '/n = 1' }, { timeoutMs: 5000 });
    await published;
    await expect(deleted).resolves.toMatchObject({ recordsDeleted: 1 });
    expect(await records(ha)).toEqual(['2:1', '3:1']);
  });

  it('neither stores nor sends one whose signal was aborted before the call', async () => {
    const s = await broker(20);
    const ha = client('sowdelete-aborted-first', s.tcpUri('json'));
    await ha.connectAndLogon();
    ha.publish('orders', record(1));
    await ha.publishFlush(5000);
    const aborted = new AbortController();
    aborted.abort();
    await expect(ha.sowDelete('orders', { filter: '/n = 1' }, { signal: aborted.signal })).rejects.toMatchObject({
      name: 'AbortError',
    });
    expect(ha.publishStore?.unpersistedCount()).toBe(0);
    expect(await records(ha)).toEqual(['1:1']);
  });

  it('says an abort once stored ends only the wait, as a timeout does', async () => {
    const s = await broker();
    const ha = client('sowdelete-aborted', s.tcpUri('json'));
    await ha.connectAndLogon();
    const abort = new AbortController();
    const deleted = ha.sowDelete('orders', { filter: '/n = 1' }, { signal: abort.signal });
    abort.abort();
    await expect(deleted).rejects.toMatchObject({
      name: 'AbortError',
      message:
        'sow_delete aborted; it stays in the publish store, which sends it until the server persists it: do not run it again',
    });
    expect(ha.publishStore?.unpersistedCount()).toBe(1);
  });

  it('reports one the server refuses to onFailedWrite once, though both its processed and its persisted acks say so', async () => {
    const s = await broker();
    const ha = client('sowdelete-refused-once', s.tcpUri('json'));
    const failures: Array<number | undefined> = [];
    ha.onFailedWrite((failure) => failures.push(failure.sequence));
    await ha.connectAndLogon();
    await expect(ha.sowDelete('orders', { filter: "/n = 'unterminated" })).rejects.toThrow(/bad filter/);
    ha.publish('orders', record(1));
    await ha.publishFlush(5000); // the persisted acks: the refused delete's, then the publish's
    expect(failures).toEqual([1]);
    expect(ha.publishStore?.unpersistedCount()).toBe(0);
  });

  it('does not claim one still waiting for room in a full store is stored: a disconnect drops it, and says so', async () => {
    const s = await broker();
    const ha = client('sowdelete-no-room', s.tcpUri('json'), {
      publishStore: new MemoryPublishStore({ capacity: 1 }),
    });
    await ha.connectAndLogon();
    ha.publish('orders', record(1)); // fills the store until its persisted ack, a second away
    const abort = new AbortController();
    const deleted = ha.sowDelete('orders', { filter: '/n = 1' }, { signal: abort.signal, timeoutMs: 1 });
    deleted.catch(() => {});
    abort.abort(); // while it waits for room
    await ha.disconnect(); // rejects the waits for room: the delete is never stored
    expect(ha.publishStore?.unpersistedCount()).toBe(1);
    await expect(deleted).rejects.toMatchObject({
      name: 'DisconnectedError',
      message: 'the client was disconnected by the application',
    });
  });
});
