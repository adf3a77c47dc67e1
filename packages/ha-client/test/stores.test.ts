import {
  BadFilterError,
  Bookmarks,
  type Command,
  DisconnectedError,
  InvalidOptionsError,
  PublishStoreGapError,
  StoreFullError,
  TimedOutError,
} from '@amps-ts/core-protocol';
import { describe, expect, it } from 'vitest';
import { Fifo } from '../src/fifo.js';
import { MemoryBookmarkStore, resumeRecoveryPoint, splitRecoveryPoint } from '../src/memory-bookmark-store.js';
import { MemoryPublishStore } from '../src/memory-publish-store.js';
import { MemorySubscriptionManager } from '../src/subscription-manager.js';

/** One event-loop turn: every promise callback queued before it has run. */
const turn = () => new Promise((resolve) => setImmediate(resolve));

const publish = (n: number): Command => ({ command: 'publish', topic: 't', data: `m${n}` });

function replayed(store: MemoryPublishStore): number[] {
  const out: number[] = [];
  store.replay((c) => out.push(c.sequence as number));
  return out;
}

describe('MemoryPublishStore', () => {
  it('assigns sequences, asks for persisted acks, and trims on (conflated) persisted acks', () => {
    const store = new MemoryPublishStore();
    const commands = [1, 2, 3, 4, 5].map(publish);
    expect(commands.map((c) => store.store(c))).toEqual([1, 2, 3, 4, 5]);
    expect(commands[0]?.ackType).toBe('persisted');
    store.discardUpTo(3);
    expect(store.unpersistedCount()).toBe(2);
    expect(store.lastPersisted()).toBe(3);
    expect(replayed(store)).toEqual([4, 5]);
    store.discardUpTo(2); // an older ack changes nothing
    expect(replayed(store)).toEqual([4, 5]);
  });

  it('copies byte bodies so the caller may reuse its buffer', () => {
    const store = new MemoryPublishStore();
    const bytes = new Uint8Array([1, 2, 3]);
    const command: Command = { command: 'publish', topic: 't', data: bytes };
    store.store(command);
    bytes[0] = 9;
    store.replay((c) => expect((c.data as Uint8Array)[0]).toBe(1));
  });

  it('syncs with the logon sequence: discards what the server holds and continues above it', () => {
    const store = new MemoryPublishStore();
    for (let i = 1; i <= 5; i++) store.store(publish(i));
    store.syncWithServer(0); // first logon on a fresh name: nothing held
    expect(replayed(store)).toEqual([1, 2, 3, 4, 5]);
    store.syncWithServer(3); // failover: the new server holds 1-3
    expect(replayed(store)).toEqual([4, 5]);
  });

  it('renumbers messages stored before the first logon above what the server already holds for the name', () => {
    const store = new MemoryPublishStore();
    store.store(publish(1));
    store.store(publish(2));
    store.syncWithServer(40); // a previous run of this publisher got to 40
    expect(replayed(store)).toEqual([41, 42]);
    expect(store.store(publish(3))).toBe(43);
  });

  it('raises a publish gap when asked to and the new server is behind what was persisted', () => {
    const store = new MemoryPublishStore({ errorOnPublishGap: true });
    for (let i = 1; i <= 5; i++) store.store(publish(i));
    store.syncWithServer(0);
    store.discardUpTo(4);
    expect(() => store.syncWithServer(2)).toThrow(PublishStoreGapError);
    expect(() => store.syncWithServer(4)).not.toThrow();
  });

  it('blocks publishes when full and lets them in, in order, as acks make room', async () => {
    const store = new MemoryPublishStore({ capacity: 2 });
    store.store(publish(1));
    store.store(publish(2));
    const third = store.store(publish(3));
    const fourth = store.store(publish(4));
    expect(third).toBeInstanceOf(Promise);
    store.discardUpTo(1);
    expect(await third).toBe(3);
    store.discardUpTo(2);
    expect(await fourth).toBe(4);
    expect(replayed(store)).toEqual([3, 4]);
  });

  it('rejects publishes when full with the reject policy', () => {
    const store = new MemoryPublishStore({ capacity: 1, policy: 'reject' });
    store.store(publish(1));
    expect(() => store.store(publish(2))).toThrow(StoreFullError);
  });

  it('bounds the bytes of unpersisted bodies: full at capacityBytes, one message past it at most, room as acks and refusals free it', async () => {
    const body = (n: number, size: number): Command => ({
      command: 'publish',
      topic: 't',
      data: 'x'.repeat(size - 1) + n,
    });
    const store = new MemoryPublishStore({ capacityBytes: 100 });
    expect(store.store(body(1, 60))).toBe(1);
    expect(store.store(body(2, 60))).toBe(2); // let in under the bound: 120 bytes held
    const third = store.store(body(3, 10));
    const fourth = store.store({ command: 'publish', topic: 't', data: new Uint8Array(30) }); // bytes count, in order
    expect(third).toBeInstanceOf(Promise);
    store.discardUpTo(1); // 60 bytes held: 3 comes in (70), then 4 (100)
    expect(await third).toBe(3);
    expect(await fourth).toBe(4);
    const fifth = store.store(body(5, 1));
    expect(fifth).toBeInstanceOf(Promise);
    store.discard(3); // refused: its bytes are free, though 2 is still ahead of it
    expect(await fifth).toBe(5);
    store.discardUpTo(5);
    expect(store.store(body(6, 500))).toBe(6); // larger than the bound, into an empty store
    expect(store.store(body(7, 1))).toBeInstanceOf(Promise);
  });

  it('says how full it is when the reject policy refuses a publish', () => {
    const store = new MemoryPublishStore({ capacityBytes: 10, policy: 'reject' });
    store.store({ command: 'publish', topic: 't', data: 'x'.repeat(12) });
    expect(() => store.store(publish(2))).toThrow(
      'the publish store is full: 1 unpersisted messages, 12 bytes (policy: reject)',
    );
  });

  it.each([0, -1, 1.5, Number.NaN, '10'])('refuses capacityBytes %s', (capacityBytes) => {
    expect(() => new MemoryPublishStore({ capacityBytes: capacityBytes as number })).toThrow(
      `publish store capacityBytes must be a positive integer, got ${String(capacityBytes)}`,
    );
  });

  it('refuses an environment without the timer functions its flush uses (a TypeError on the first flush otherwise)', () => {
    expect(() => new MemoryPublishStore({ environment: { now: () => 0 } as never })).toThrow(
      'MemoryPublishStore: environment needs setTimeout() and clearTimeout()',
    );
  });

  it('flush resolves when everything is persisted and times out otherwise', async () => {
    const store = new MemoryPublishStore();
    store.store(publish(1));
    const flushed = store.flush(10_000);
    store.discardUpTo(1);
    await expect(flushed).resolves.toBeUndefined();
    store.store(publish(2));
    await expect(store.flush(5)).rejects.toBeInstanceOf(TimedOutError);
  });

  it('refuses a flush timeout it cannot wait (NaN, negative, past setTimeout) instead of waiting forever', () => {
    const store = new MemoryPublishStore();
    store.store(publish(1));
    for (const timeoutMs of [Number.NaN, -1, 2 ** 31, Number.POSITIVE_INFINITY]) {
      expect(() => store.flush(timeoutMs)).toThrow(InvalidOptionsError);
    }
  });

  it('forgets a refused publish alone: the ones before it stay, and it is never replayed', async () => {
    const store = new MemoryPublishStore({ capacity: 3 });
    for (const n of [1, 2, 3]) store.store(publish(n));
    const fourth = store.store(publish(4));
    store.discard(2);
    expect(await fourth).toBe(4); // the refused one made room
    expect(store.unpersistedCount()).toBe(3);
    expect(store.lastPersisted()).toBe(0);
    expect(replayed(store)).toEqual([1, 3, 4]);
    const flushed = store.flush(10_000);
    store.discard(1); // the head: 1 and 2 leave, 3 is next
    expect(replayed(store)).toEqual([3, 4]);
    store.discardUpTo(4);
    await expect(flushed).resolves.toBeUndefined();
    expect(store.unpersistedCount()).toBe(0);
  });

  it('continues above a persisted ack for sequences it never assigned, so new publishes are not dropped as duplicates', () => {
    const store = new MemoryPublishStore();
    store.store(publish(1));
    store.store(publish(2));
    store.discardUpTo(10); // a conflated ack far ahead: the server holds up to 10 for this name
    expect(store.unpersistedCount()).toBe(0);
    expect(store.lastPersisted()).toBe(10);
    expect(store.store(publish(3))).toBe(11);
  });

  it('gives a publish let in by a logon sync a sequence above what that server holds', async () => {
    const store = new MemoryPublishStore({ capacity: 1 });
    store.store(publish(1));
    store.syncWithServer(0);
    const waiting = store.store(publish(2));
    store.syncWithServer(7); // the next server holds 1-7 for this name: 1 is persisted, room for 2
    expect(await waiting).toBe(8);
    expect(replayed(store)).toEqual([8]);
  });

  it('restores an earlier run: its commands keep their sequences through the first logon, new ones go above them', () => {
    const restored = [91, 93, 94].map((sequence) => ({ ...publish(sequence), sequence, ackType: 'persisted' }));
    const store = new MemoryPublishStore({ restore: { commands: restored, lastSequence: 94, lastPersisted: 90 } });
    expect(store.unpersistedCount()).toBe(3);
    expect(store.store(publish(95))).toBe(95);
    // The server holds up to 93: the restored commands were sent, so none is renumbered.
    store.syncWithServer(93);
    expect(replayed(store)).toEqual([94, 95]);
    expect(store.get(94)?.data).toBe('m94');
    store.discard(94);
    expect(replayed(store)).toEqual([95]);
  });

  it("renumbers only this run's publishes when the server is past everything restored", () => {
    const restored = [{ ...publish(7), sequence: 7 }];
    const store = new MemoryPublishStore({ restore: { commands: restored, lastSequence: 8, lastPersisted: 6 } });
    expect(store.store(publish(9))).toBe(9);
    store.syncWithServer(20);
    expect(replayed(store)).toEqual([21]);
    expect(store.nextSequence()).toBe(22);
  });

  it('keeps a refused publish refused when the first logon renumbers it', () => {
    const store = new MemoryPublishStore();
    for (let n = 1; n <= 3; n++) store.store(publish(n));
    store.discard(2);
    store.syncWithServer(10);
    expect(replayed(store)).toEqual([11, 13]);
    expect(store.unpersistedCount()).toBe(2);
    store.discardUpTo(11);
    expect(replayed(store)).toEqual([13]);
  });

  it('keeps the refusal on the refused publish when the first logon renumbers by less than the stored run', () => {
    const store = new MemoryPublishStore();
    for (let n = 1; n <= 4; n++) store.store(publish(n));
    store.discard(2);
    store.syncWithServer(1); // 1-4 become 2-5: the new numbers are later entries' old ones
    const sent: string[] = [];
    store.replay((c) => sent.push(`${c.sequence}:${c.data}`));
    expect(sent).toEqual(['2:m1', '4:m3', '5:m4']);
    expect(store.unpersistedCount()).toBe(3);
  });

  it('keeps its byte count when the first logon renumbers around a refusal', () => {
    const store = new MemoryPublishStore({ capacityBytes: 100, policy: 'reject' });
    store.store({ ...publish(1), data: 'a' });
    store.store({ ...publish(2), data: 'b'.repeat(50) });
    store.store({ ...publish(3), data: 'c' });
    store.discard(2);
    store.syncWithServer(1);
    store.discardUpTo(4);
    expect(store.unpersistedCount()).toBe(0);
    store.store({ ...publish(4), data: 'd'.repeat(100) }); // empty, so it fits
    expect(() => store.store(publish(5))).toThrow(StoreFullError);
  });

  it("renumbers this run's publishes above a server past them after a gap error on an earlier server", () => {
    const restore = { commands: [], lastSequence: 10, lastPersisted: 10 };
    const store = new MemoryPublishStore({ errorOnPublishGap: true, restore });
    expect(store.store(publish(11))).toBe(11);
    expect(() => store.syncWithServer(5)).toThrow(PublishStoreGapError); // that logon fails, nothing sent
    store.syncWithServer(20); // the next server holds up to 20 for this name
    expect(replayed(store)).toEqual([21]);
  });

  it('refuses a publish with a StoreFullError once sequences reach 2^53, rather than give two the same', async () => {
    const max = Number.MAX_SAFE_INTEGER;
    const store = new MemoryPublishStore({
      capacity: 1,
      restore: { commands: [], lastSequence: max - 2, lastPersisted: max - 2 },
    });
    expect(store.store(publish(1))).toBe(max - 1);
    const [second, third] = [store.store(publish(2)), store.store(publish(3))]; // wait for room
    store.discardUpTo(max - 1);
    await expect(second).resolves.toBe(max);
    expect(() => store.store(publish(4))).toThrow(StoreFullError);
    store.discardUpTo(max);
    await expect(third).rejects.toThrow(StoreFullError);
    expect(store.unpersistedCount()).toBe(0);
    const acked = new MemoryPublishStore();
    acked.discardUpTo(max); // a persisted ack at the top of the range
    expect(() => acked.store(publish(1))).toThrow(StoreFullError);
  });

  it('never gives a sequence at or below a persisted ack that came before the first logon', () => {
    const store = new MemoryPublishStore();
    store.discardUpTo(2);
    store.syncWithServer(1);
    expect(store.store(publish(1))).toBe(3);
    const stored = new MemoryPublishStore();
    stored.discardUpTo(2);
    stored.store(publish(1));
    stored.syncWithServer(1);
    expect(replayed(stored)).toEqual([3]);
  });

  it('refuses a restore whose sequences are out of order, not numbers, or past its lastSequence', () => {
    const at = (sequence: unknown) => ({ ...publish(1), sequence }) as Command;
    const bad = [
      { commands: [at(3), at(2)], lastSequence: 3, lastPersisted: 0 },
      { commands: [at(2)], lastSequence: 2, lastPersisted: 2 },
      { commands: [at('2')], lastSequence: 2, lastPersisted: 0 },
      { commands: [at(5)], lastSequence: 4, lastPersisted: 0 },
      { commands: [], lastSequence: 0, lastPersisted: -1 },
    ];
    for (const restore of bad) expect(() => new MemoryPublishStore({ restore })).toThrow(InvalidOptionsError);
  });

  it('rejects what waits for room and every flush when told to, keeping what is stored', async () => {
    const store = new MemoryPublishStore({ capacity: 1 });
    store.store(publish(1));
    const blocked = store.store(publish(2));
    const flushed = store.flush();
    const error = new DisconnectedError('gone');
    store.cancelWaits(error);
    await expect(blocked).rejects.toBe(error);
    await expect(flushed).rejects.toBe(error);
    expect(replayed(store)).toEqual([1]);
    store.discardUpTo(1);
    expect(store.store(publish(3))).toBe(2); // the rejected one never took a sequence
  });
});

describe('MemoryBookmarkStore', () => {
  it('detects duplicates by publisher and sequence', () => {
    const store = new MemoryBookmarkStore();
    expect(store.log('s', '11|1|')).toBe(true);
    expect(store.log('s', '11|2|')).toBe(true);
    expect(store.log('s', '22|1|')).toBe(true);
    expect(store.log('s', '11|2|')).toBe(false);
    expect(store.log('s', '11|1|')).toBe(false);
    expect(store.isDuplicate('s', '22|1|')).toBe(true);
    expect(store.isDuplicate('s', '22|2|')).toBe(false);
    expect(store.isDuplicate('other', '11|1|')).toBe(false);
  });

  it('orders long sequences correctly without losing precision', () => {
    const store = new MemoryBookmarkStore();
    expect(store.log('s', '7|9007199254740993|')).toBe(true);
    expect(store.log('s', '7|9007199254740992|')).toBe(false);
    expect(store.log('s', '7|10000000000000000000|')).toBe(true);
  });

  it('gives a per-publisher recovery point that only moves over discarded messages', () => {
    const store = new MemoryBookmarkStore();
    expect(store.getMostRecent('s')).toBeUndefined();
    for (const b of ['11|1|', '22|1|', '11|2|', '11|3|', '22|2|']) store.log('s', b);
    store.discard('s', '11|1|');
    store.discard('s', '11|3|'); // out of order: 11|2| is still being handled
    store.discard('s', '22|1|');
    expect(store.getMostRecent('s')).toBe('11|1|,22|1|');
    store.discard('s', '11|2|');
    expect(store.getMostRecent('s')).toBe('11|3|,22|1|');
  });

  it('keeps its recovery point right for a consumer thousands of messages behind, discarding in and out of order', () => {
    const store = new MemoryBookmarkStore();
    // Sequences with gaps (a filtered subscription), so a discard of one never logged is ignored.
    for (let n = 1; n <= 3000; n++) store.log('s', `11|${n * 2}|`);
    store.discard('s', '11|3|'); // never delivered
    for (let n = 1; n <= 2000; n++) store.discard('s', `11|${n * 2}|`);
    expect(store.getMostRecent('s')).toBe('11|4000|');
    for (let n = 3000; n > 2001; n--) store.discard('s', `11|${n * 2}|`); // newest first
    store.discard('s', '11|5000|'); // twice
    expect(store.outstandingCount('s')).toBe(1);
    expect(store.getMostRecent('s')).toBe('11|4000|');
    store.discard('s', '11|4002|');
    expect(store.outstandingCount('s')).toBe(0);
    expect(store.getMostRecent('s')).toBe('11|6000|');
    store.log('s', '11|6002|');
    store.discard('s', '11|6002|');
    expect(store.getMostRecent('s')).toBe('11|6002|');
    expect(store.isDuplicate('s', '11|6002|')).toBe(true);
  });

  it('keeps the starting point until a persisted ack arrives with nothing outstanding', () => {
    const store = new MemoryBookmarkStore({ clock: () => Date.parse('2026-11-26T12:00:30.500Z') });
    store.persisted('s', '0');
    expect(store.getMostRecent('s')).toBe('0');
    store.log('s', '11|1|');
    store.persisted('s', '11|1|'); // outstanding message: the base must stay before it
    expect(store.getMostRecent('s')).toBe('0');
    store.discard('s', '11|1|');
    expect(store.getMostRecent('s')).toBe('0,11|1|');
    store.persisted('s', '33|9|');
    // With the base a log position, a time 2 s before it was learnt (see the next test).
    expect(store.getMostRecent('s')).toBe('33|9|,20261126T120028Z,11|1|');
    store.purge('s');
    expect(store.getMostRecent('s')).toBeUndefined();
  });

  it('adds a time replicationLagMs before its base, for messages another replica logged before it', () => {
    let now = Date.parse('2026-11-26T12:00:30.500Z');
    const store = new MemoryBookmarkStore({ replicationLagMs: 5000, clock: () => now });
    store.persisted('s', '0'); // EPOCH reaches everything: no time
    expect(store.getMostRecent('s')).toBe('0');
    store.persisted('s', '33|9|');
    now += 60_000; // the time is when the base was learnt, not when the list is asked for
    expect(store.getMostRecent('s')).toBe('33|9|,20261126T120025Z');
    store.log('s', '11|1|');
    store.persisted('s', '33|10|'); // not taken while a message is outstanding
    expect(store.getMostRecent('s')).toBe('33|9|,20261126T120025Z');
    store.discard('s', '11|1|');
    store.persisted('s', '33|11|', 10_000); // known to be logged 10 s ago (a completed ack's position)
    expect(store.getMostRecent('s')).toBe('33|11|,20261126T120115Z,11|1|');
    const without = new MemoryBookmarkStore({ replicationLagMs: 0 });
    without.persisted('s', '33|9|');
    expect(without.getMostRecent('s')).toBe('33|9|');
    expect(() => new MemoryBookmarkStore({ replicationLagMs: -1 })).toThrow(InvalidOptionsError);
    expect(() => new MemoryBookmarkStore({ clock: 5 as never })).toThrow(InvalidOptionsError);
  });
});

describe('MemoryBookmarkStore bookmark forms', () => {
  it('reads every publisher|sequence| form the protocol allows: leading zeros, no trailing bar', () => {
    const store = new MemoryBookmarkStore();
    expect(store.log('s', '11|7|')).toBe(true);
    expect(store.log('s', '11|06|')).toBe(false); // 6 is before 7: a duplicate
    expect(store.log('s', '11|8')).toBe(true);
    expect(store.log('s', '11|8|')).toBe(false); // the same message
    expect(store.isDuplicate('s', '11|0008|')).toBe(true);
    store.discard('s', '11|7|');
    store.discard('s', '11|08|');
    expect(store.outstandingCount('s')).toBe(0);
    expect(store.getMostRecent('s')).toBe('11|8|');
    expect(store.log('s', 'not|a|bookmark')).toBe(true); // not tracked, never taken for a duplicate
    expect(store.log('s', 'x1|9|')).toBe(true);
    expect(store.getMostRecent('s')).toBe('11|8|');
  });

  it('refuses a bookmark that is not a string with an InvalidOptionsError', () => {
    const store = new MemoryBookmarkStore();
    for (const bad of [undefined, null, 5]) {
      const bookmark = bad as unknown as string;
      expect(() => store.log('s', bookmark)).toThrow(InvalidOptionsError);
      expect(() => store.discard('s', bookmark)).toThrow(InvalidOptionsError);
      expect(() => store.isDuplicate('s', bookmark)).toThrow(InvalidOptionsError);
    }
  });

  it('takes NOW written without its trailing bar (0|1) for NOW, not for a position', () => {
    const store = new MemoryBookmarkStore({ replicationLagMs: 0 });
    store.persisted('s', '0|1');
    store.log('s', '11|1|');
    expect(store.getMostRecent('s')).toBe('11|1|');
  });
});

describe('MemoryBookmarkStore from NOW', () => {
  it('takes the first message as the recovery position when the subscription started at NOW', () => {
    let now = Date.parse('2026-11-26T12:00:30.500Z');
    const store = new MemoryBookmarkStore({ clock: () => now });
    store.persisted('s', Bookmarks.NOW); // the log was empty: no ack carried a position
    now += 2000;
    store.log('s', '11|1|'); // delivered, still being handled
    // The time reaches back 2 s, but not before the second the subscription started in.
    expect(store.getMostRecent('s')).toBe('11|1|,20261126T120030Z');
    store.log('s', '11|2|');
    expect(store.getMostRecent('s')).toBe('11|1|,20261126T120030Z');
  });
});

describe('MemoryBookmarkStore from a bookmark or a time', () => {
  it('sends the starting bookmark as given, and adds no time before the start later', () => {
    let now = Date.parse('2026-11-26T12:00:30.500Z');
    const store = new MemoryBookmarkStore({ clock: () => now });
    store.persisted('b', '33|9|'); // after a bookmark, at 12:00:30.5
    store.persisted('t', '20261126T120040Z'); // from a time still to come
    store.persisted('l', '33|9|,20261126T120000Z'); // a list: its earliest
    expect(store.getMostRecent('b')).toBe('33|9|');
    expect(store.getMostRecent('t')).toBe('20261126T120040Z');
    expect(store.getMostRecent('l')).toBe('33|9|,20261126T120000Z');
    now += 500;
    for (const s of ['b', 't', 'l']) store.persisted(s, '33|10|');
    expect(store.getMostRecent('b')).toBe('33|10|,20261126T120030Z');
    expect(store.getMostRecent('t')).toBe('33|10|,20261126T120040Z');
    expect(store.getMostRecent('l')).toBe('33|10|,20261126T120029Z');
  });
});

describe('MemoryBookmarkStore for a range', () => {
  it('resumes inside the range: the recovery point as its start, its end and brackets as given', () => {
    let now = Date.parse('2026-11-26T12:00:30.500Z');
    const store = new MemoryBookmarkStore({ clock: () => now });
    store.persisted('r', '[20261126T110000Z:20261126T120000Z)');
    expect(store.getMostRecent('r')).toBe('[20261126T110000Z:20261126T120000Z)');
    store.log('r', '11|1|');
    store.log('r', '22|1|');
    store.discard('r', '11|1|');
    expect(store.getMostRecent('r')).toBe('[20261126T110000Z,11|1|:20261126T120000Z)');
    store.discard('r', '22|1|');
    now += 1000;
    store.persisted('r', '22|1|');
    // The time never reaches back before the range's start (11:00), here it does not need to.
    expect(store.getMostRecent('r')).toBe('[22|1|,20261126T120029Z,11|1|,22|1|:20261126T120000Z)');

    store.persisted('x', ' (33|9|,20261126T110000Z:44|2|] ');
    store.log('x', '33|10|');
    store.discard('x', '33|10|');
    expect(store.getMostRecent('x')).toBe('(33|9|,20261126T110000Z,33|10|:44|2|]');
    // Starting at NOW (12:00:31.5): the first message becomes the start, as outside a range.
    store.persisted('n', '[0|1|:20261126T130000Z]');
    store.log('n', '11|5|');
    expect(store.getMostRecent('n')).toBe('[11|5|,20261126T120031Z:20261126T130000Z]');
    // Placed at NOW, reported back as NOW as of when the subscribe was sent (its completed ack
    // comes only at the range's end): a failover resumes from that second, not the next server's NOW.
    store.persisted('p', '(0|1|:20261126T130000Z)');
    expect(store.getMostRecent('p')).toBe('(0|1|:20261126T130000Z)');
    now += 3000;
    store.persisted('p', Bookmarks.NOW, 2500);
    expect(store.getMostRecent('p')).toBe('(0|1|,20261126T120031Z:20261126T130000Z)');
  });
});

describe('splitRecoveryPoint', () => {
  it('splits a recovery point into where the subscription started and each publisher position', () => {
    expect(splitRecoveryPoint('7|10|,9|3|')).toEqual({ start: '7|10|', positions: ['7|10|', '9|3|'] });
    expect(splitRecoveryPoint('0, 20260101T000000Z , 7|10|')).toEqual({
      start: '0,20260101T000000Z',
      positions: ['7|10|'],
    });
    expect(splitRecoveryPoint('0|1|')).toEqual({ start: '0|1|', positions: [] });
    // A range keeps its brackets and its end around the start.
    expect(splitRecoveryPoint('(20260101T000000Z,7|10|:20270101T000000Z]')).toEqual({
      start: '(20260101T000000Z:20270101T000000Z]',
      positions: ['7|10|'],
    });
    expect(splitRecoveryPoint('')).toBeUndefined();
  });

  it('round-trips: a store started from a split point gives the same point back', () => {
    const before = new MemoryBookmarkStore({ replicationLagMs: 0 });
    before.persisted('s', '0');
    for (const bookmark of ['7|1|', '9|1|', '7|2|']) {
      before.log('s', bookmark);
      before.discard('s', bookmark);
    }
    const point = before.getMostRecent('s') as string;
    const after = new MemoryBookmarkStore({ replicationLagMs: 0 });
    expect(resumeRecoveryPoint(after, 's', point)).toBe(true);
    expect(resumeRecoveryPoint(after, 'empty', '')).toBe(false);
    expect(after.getMostRecent('s')).toBe(point);
    expect(after.isDuplicate('s', '7|2|')).toBe(true);
    expect(after.log('s', '7|3|')).toBe(true);
  });
});

describe('MemorySubscriptionManager', () => {
  it('keeps one entry per sub_id and resubscribes in order', async () => {
    const manager = new MemorySubscriptionManager();
    manager.add({ subId: 'a', command: { command: 'subscribe', topic: 'x', subId: 'a' } });
    manager.add({ subId: 'b', command: { command: 'subscribe', topic: 'y', subId: 'b' } });
    manager.add({ subId: 'a', command: { command: 'subscribe', topic: 'z', subId: 'a' } });
    const sent: string[] = [];
    await manager.resubscribe(async (c) => {
      sent.push(`${c.subId}:${c.topic}`);
    });
    expect(sent).toEqual(['a:z', 'b:y']);
  });

  it('drops a failing subscription when the hook says so, and aborts recovery otherwise', async () => {
    const dropped: string[] = [];
    const lenient = new MemorySubscriptionManager({
      onFailedResubscribe: (s) => {
        dropped.push(s.subId);
        return true;
      },
    });
    lenient.add({ subId: 'a', command: { command: 'subscribe', topic: 'x', subId: 'a' } });
    lenient.add({ subId: 'b', command: { command: 'subscribe', topic: 'y', subId: 'b' } });
    await lenient.resubscribe(async (c) => {
      if (c.subId === 'a') throw new BadFilterError('bad filter');
    });
    expect(dropped).toEqual(['a']);
    expect(lenient.list().map((s) => s.subId)).toEqual(['b']);
    // A connection lost during recovery is not a refusal: the recovery fails, nothing is dropped.
    const lost = new DisconnectedError('connection lost');
    await expect(
      lenient.resubscribe(async () => {
        throw lost;
      }),
    ).rejects.toBe(lost);
    expect(dropped).toEqual(['a']);
    expect(lenient.list().map((s) => s.subId)).toEqual(['b']);

    const strict = new MemorySubscriptionManager();
    strict.add({ subId: 'a', command: { command: 'subscribe', topic: 'x', subId: 'a' } });
    await expect(
      strict.resubscribe(async () => {
        throw new Error('nope');
      }),
    ).rejects.toThrow('nope');
  });

  /**
   * Starts `manager.resubscribe` over `count` subscriptions s0, s1, ..., each answered when the
   * test settles it: `sent` lists what went out, `settle[i](error?)` acks or fails the i-th.
   */
  function scriptedResubscribe(
    manager: MemorySubscriptionManager,
    count: number,
    options: Parameters<MemorySubscriptionManager['resubscribe']>[1] = {},
  ) {
    for (let i = 0; i < count; i++) {
      manager.add({ subId: `s${i}`, command: { command: 'subscribe', topic: 't', subId: `s${i}` } });
    }
    const sent: string[] = [];
    const settle: Array<(error?: Error) => void> = [];
    const done = manager.resubscribe(
      (c) =>
        new Promise<void>((resolve, reject) => {
          sent.push(c.subId as string);
          settle.push((error) => (error ? reject(error) : resolve()));
        }),
      options,
    );
    return { sent, settle, done };
  }

  it('keeps maxInFlight resubscribes waiting for their ack at once, sent in order', async () => {
    const { sent, settle, done } = scriptedResubscribe(new MemorySubscriptionManager({ maxInFlight: 3 }), 7);
    expect(sent).toEqual(['s0', 's1', 's2']);
    settle[1]?.(); // acks may come in any order: each frees a place for the next
    await turn();
    expect(sent).toEqual(['s0', 's1', 's2', 's3']);
    for (let i = 0; i < 7; i++) {
      settle[i]?.();
      await turn();
    }
    await done;
    expect(sent).toEqual(['s0', 's1', 's2', 's3', 's4', 's5', 's6']);
  });

  it('sends no more resubscribes after a failure that is not dropped, and rejects with it', async () => {
    const { sent, settle, done } = scriptedResubscribe(new MemorySubscriptionManager({ maxInFlight: 2 }), 5);
    const lost = new DisconnectedError('connection lost');
    settle[0]?.(lost);
    await expect(done).rejects.toBe(lost);
    settle[1]?.(new DisconnectedError('connection lost')); // the other one in flight fails too: handled
    await turn();
    expect(sent).toEqual(['s0', 's1']);
  });

  it('sends no more resubscribes once the failed-resubscribe hook throws, and rejects with its error', async () => {
    const hookError = new Error('hook failed');
    const manager = new MemorySubscriptionManager({
      maxInFlight: 2,
      onFailedResubscribe: () => {
        throw hookError;
      },
    });
    const { sent, settle, done } = scriptedResubscribe(manager, 5);
    settle[0]?.(new BadFilterError('bad filter'));
    await expect(done).rejects.toBe(hookError);
    settle[1]?.(); // the other one in flight succeeds: its lane must not send the next
    await turn();
    expect(sent).toEqual(['s0', 's1']);
  });

  it('takes a failed-resubscribe hook that throws as false: its error to onException, the recovery fails with the refusal', async () => {
    const hookError = new Error('hook failed');
    const reported: unknown[] = [];
    const manager = new MemorySubscriptionManager({
      onFailedResubscribe: () => {
        throw hookError;
      },
    });
    const { sent, settle, done } = scriptedResubscribe(manager, 2, { onException: (e) => reported.push(e) });
    const refusal = new BadFilterError('bad filter');
    settle[0]?.(refusal);
    await expect(done).rejects.toBe(refusal);
    expect(reported).toEqual([hookError]);
    settle[1]?.();
    await turn();
    expect(manager.list().map((s) => s.subId)).toEqual(['s0', 's1']); // nothing dropped
    expect(sent).toEqual(['s0', 's1']);
  });

  it('refuses a maxInFlight that is not a positive integer', () => {
    for (const maxInFlight of [0, -1, 1.5, Number.NaN]) {
      expect(() => new MemorySubscriptionManager({ maxInFlight })).toThrow(InvalidOptionsError);
    }
  });
});

describe('Fifo (publishes waiting for room, and those not sent yet)', () => {
  it('keeps order across compactions, and deletes at the head or in the middle', () => {
    const fifo = new Fifo<number>();
    for (let n = 0; n < 3000; n++) fifo.push(n);
    for (let n = 0; n < 2000; n++) expect(fifo.shift()).toBe(n);
    fifo.delete(2000);
    fifo.delete(2500);
    fifo.delete(1); // shifted already: nothing to delete
    expect(fifo.peek()).toBe(2001);
    const rest: number[] = [];
    while (fifo.peek() !== undefined) rest.push(fifo.shift() as number);
    expect(rest).toEqual(Array.from({ length: 999 }, (_, i) => 2001 + i).filter((n) => n !== 2500));
    expect(fifo.peek()).toBeUndefined();
    fifo.push(7);
    expect(fifo.peek()).toBe(7);
  });
});
