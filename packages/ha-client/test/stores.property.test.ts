/**
 * Model-based properties of the two memory stores: random runs of what a subscription or a
 * publisher goes through (deliveries in several replicas' orders, redeliveries, failovers,
 * out-of-order discards, persisted acks; publishes, conflated acks, refusals, reconnects with a
 * logon ack behind or ahead, a full store), checked after every step against a small reference
 * model kept in plain arrays and sets.
 */
import {
  Bookmarks,
  type Command,
  DisconnectedError,
  PublishStoreGapError,
  StoreFullError,
} from '@amps-ts/core-protocol';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MemoryBookmarkStore } from '../src/memory-bookmark-store.js';
import { MemoryPublishStore } from '../src/memory-publish-store.js';

/** `expect(actual, what).toBe(expected)`, without its cost when they agree (the runs check often). */
function same(actual: unknown, expected: unknown, what?: string): void {
  if (!Object.is(actual, expected)) expect(actual, what).toBe(expected);
}

/* ---------------- MemoryBookmarkStore ---------------- */

/** One message in the transaction log: the `i`-th of publisher `p`'s stream. */
interface Entry {
  readonly p: number;
  readonly i: number;
  readonly seq: bigint;
  /** Whether it matches the subscription's filter (delivered), or is only a log position. */
  readonly match: boolean;
  readonly key: string;
}

interface Publisher {
  readonly id: string;
  readonly entries: Entry[];
}

type StartMode = 'epoch' | 'none' | 'now' | 'now-no-bar';

interface BookmarkScenario {
  publishers: ReadonlyArray<{ id: string; start: bigint; steps: ReadonlyArray<{ gap: bigint; match: boolean }> }>;
  /** Per replica, the choices that interleave the publishers' streams into its log. */
  replicas: ReadonlyArray<readonly number[]>;
  mode: StartMode;
  ops: BookmarkOp[];
}

type BookmarkOp =
  | { k: 'deliver'; n: number; form: number }
  | { k: 'redeliver'; pick: number; form: number }
  | { k: 'discard'; pick: number; form: number }
  | { k: 'discardStale'; pick: number; form: number }
  | { k: 'persisted'; lag: number }
  | { k: 'failover'; replica: number }
  | { k: 'purge'; all: boolean };

const S = 'sub';
const OTHER = 'other';

/** The ways the protocol allows a bookmark to be written (leading zeros, trailing bar optional). */
function format(publisher: string, seq: bigint, form: number): string {
  switch (form % 3) {
    case 1:
      return `${publisher}|${seq}`;
    case 2:
      return `${publisher}|000${seq}|`;
    default:
      return `${publisher}|${seq}|`;
  }
}

/** Merges the publishers' streams in an order `choices` picks; each keeps its own order. */
function interleave(publishers: Publisher[], choices: readonly number[]): Entry[] {
  const next = publishers.map(() => 0);
  const log: Entry[] = [];
  for (let step = 0; ; step++) {
    const open = publishers.filter((pub, p) => (next[p] as number) < pub.entries.length);
    if (open.length === 0) return log;
    const choice = choices.length === 0 ? 0 : (choices[step % choices.length] as number);
    const pub = open[choice % open.length] as Publisher;
    const p = publishers.indexOf(pub);
    log.push(pub.entries[next[p] as number] as Entry);
    next[p] = (next[p] as number) + 1;
  }
}

/** The `n`-th of a set, in insertion order (without copying it: the bulk runs have thousands). */
function nth(set: Set<string>, n: number): string {
  let i = 0;
  for (const x of set) if (i++ === n) return x;
  throw new Error(`no element ${n}`);
}

class BookmarkRun {
  // No timestamp in the recovery list: the model has none (stores.test.ts checks the timestamp).
  readonly store = new MemoryBookmarkStore({ replicationLagMs: 0 });
  readonly publishers: Publisher[];
  readonly replicas: Entry[][];
  readonly positions: Array<Map<string, number>>;
  /** Every replica holds the publishers in one order: a resume may then skip nothing at all. */
  readonly oneOrder: boolean;
  readonly mode: StartMode;
  /** The replica connected to, and the log position delivered next. */
  replica = 0;
  cursor = 0;
  /** The first position of this connection's replay (persisted acks come from here on). */
  connectionStart = 0;
  /** The resume position on the connected replica, last seen: it only moves forward. */
  resumeSeen = -1;
  /** The position of this connection's last persisted ack. */
  persistedAt = -1;
  /** The model's base, and NOW's first message, at the last check. */
  baseChecked: string | undefined;
  nowFirstChecked: string | undefined;

  // The reference model, reset by a purge.
  highest: number[] = [];
  /** Per publisher, the indices delivered as new, in delivery (= sequence) order. */
  delivered: number[][] = [];
  outstanding = new Set<string>();
  discarded = new Set<string>();
  reportedNew = new Map<string, number>();
  base: string | undefined;
  /** NOW's first message, taken as the base while it is still being handled (documented). */
  nowFirst: { key: string; bookmark: string } | undefined;
  /** Per publisher, its recovery sequence last seen in getMostRecent(): it only moves forward. */
  recoverySeen = new Map<string, bigint>();
  /** A message logged on another subscription, which a purge of this one must leave alone. */
  otherBookmark: string | undefined;

  constructor(scenario: BookmarkScenario) {
    this.mode = scenario.mode;
    this.publishers = scenario.publishers.map(({ id, start, steps }, p) => {
      let seq = start;
      const entries = steps.map(({ gap, match }, i) => {
        seq += gap;
        return { p, i, seq, match, key: `${p}:${i}` };
      });
      return { id, entries };
    });
    this.replicas = scenario.replicas.map((choices) => interleave(this.publishers, choices));
    this.positions = this.replicas.map((log) => new Map(log.map((e, pos) => [e.key, pos])));
    const first = this.replicas[0] as Entry[];
    this.oneOrder = this.replicas.every((log) => log.every((e, pos) => e === first[pos]));
    const firstEntry = first[0];
    if (firstEntry) {
      this.otherBookmark = this.bookmark(firstEntry, 0);
      expect(this.store.log(OTHER, this.otherBookmark)).toBe(true);
    }
    this.subscribe();
  }

  bookmark(e: Entry, form: number): string {
    return format((this.publishers[e.p] as Publisher).id, e.seq, form);
  }

  /** A new subscription (first, or after a purge): what HAClient tells the store, and its model. */
  subscribe(): void {
    this.highest = this.publishers.map(() => -1);
    this.delivered = this.publishers.map(() => []);
    this.outstanding = new Set();
    this.discarded = new Set();
    this.reportedNew = new Map();
    this.base = undefined;
    this.nowFirst = undefined;
    this.recoverySeen = new Map();
    const start = { epoch: Bookmarks.EPOCH, none: undefined, now: Bookmarks.NOW, 'now-no-bar': '0|1' }[this.mode];
    if (start !== undefined) {
      this.store.persisted(S, start);
      this.base = start;
    }
    // The whole log is newer than the subscription: from the epoch, or from NOW placed before it.
    this.cursor = 0;
    this.connectionStart = 0;
    this.persistedAt = -1;
    this.resumeSeen = -1;
    this.baseChecked = this.base;
    this.nowFirstChecked = undefined;
  }

  /** One delivery, with the store's answer checked against the model. */
  deliver(e: Entry, form: number): void {
    const bookmark = this.bookmark(e, form);
    const fresh = e.i > (this.highest[e.p] as number);
    same(this.store.isDuplicate(S, bookmark), !fresh, `isDuplicate(${bookmark})`);
    const logged = this.store.log(S, bookmark);
    same(logged, fresh, `log(${bookmark}) reports it new`);
    if (!logged) return;
    const count = (this.reportedNew.get(e.key) ?? 0) + 1;
    this.reportedNew.set(e.key, count);
    same(count, 1, `${bookmark} reported new once`);
    this.highest[e.p] = e.i;
    this.delivered[e.p]?.push(e.i);
    this.outstanding.add(e.key);
    if (this.base === Bookmarks.NOW || this.base === '0|1') {
      this.base = bookmark;
      this.nowFirst = { key: e.key, bookmark };
    }
  }

  entry(key: string): Entry {
    const [p, i] = key.split(':').map(Number);
    return (this.publishers[p as number] as Publisher).entries[i as number] as Entry;
  }

  apply(op: BookmarkOp): void {
    const log = this.replicas[this.replica] as Entry[];
    switch (op.k) {
      case 'deliver': {
        for (let n = 0; n < op.n && this.cursor < log.length; ) {
          const e = log[this.cursor++] as Entry;
          if (!e.match) continue;
          this.deliver(e, op.form + n);
          n++;
        }
        return;
      }
      case 'redeliver': {
        // Replication or a replay sends one again that this subscription already has.
        const seen = [...this.reportedNew.keys()];
        if (seen.length === 0) return;
        this.deliver(this.entry(seen[op.pick % seen.length] as string), op.form);
        return;
      }
      case 'discard': {
        if (this.outstanding.size === 0) return;
        const key = nth(this.outstanding, op.pick % this.outstanding.size);
        this.store.discard(S, this.bookmark(this.entry(key), op.form));
        this.outstanding.delete(key);
        this.discarded.add(key);
        return;
      }
      case 'discardStale': {
        // Discarded already, or never delivered (filtered out, or not yet): changes nothing.
        const stale = [
          ...this.discarded,
          ...this.publishers.flatMap((pub) =>
            pub.entries.filter((e) => !this.reportedNew.has(e.key)).map((e) => e.key),
          ),
        ];
        if (stale.length === 0) return;
        this.store.discard(S, this.bookmark(this.entry(stale[op.pick % stale.length] as string), op.form));
        return;
      }
      case 'persisted': {
        // A persisted ack: a log position this connection has passed (lagging, for a live one),
        // never before one the server reported already (its persisted point only moves on).
        const at = Math.max(this.cursor - 1 - op.lag, this.persistedAt);
        if (at >= this.connectionStart) {
          this.persistedAt = at;
          const bookmark = this.bookmark(log[at] as Entry, 0);
          this.store.persisted(S, bookmark);
          if (this.outstanding.size === 0) {
            this.base = bookmark;
            this.nowFirst = undefined;
          }
        } else if (this.cursor === 0) {
          // An ack on an empty log carries no bookmark: HAClient turns a NOW start into the epoch.
          const recent = this.store.getMostRecent(S)?.trim();
          if (recent === Bookmarks.NOW || recent === '0|1') {
            this.store.persisted(S, Bookmarks.EPOCH);
            if (this.outstanding.size === 0) this.base = Bookmarks.EPOCH;
          }
        }
        return;
      }
      case 'failover': {
        // The next server (maybe the same one) replays from the recovery point.
        const replica = op.replica % this.replicas.length;
        const resume = this.resume(replica);
        this.replica = replica;
        this.cursor = resume.at + 1;
        this.connectionStart = this.cursor;
        this.persistedAt = -1;
        this.resumeSeen = resume.at;
        return;
      }
      case 'purge': {
        if (op.all) this.store.purge();
        else this.store.purge(S);
        // Purge forgets: nothing outstanding, no recovery point, nothing a duplicate any more.
        expect(this.store.getMostRecent(S)).toBeUndefined();
        expect(this.store.outstandingCount(S)).toBe(0);
        for (const pub of this.publishers) {
          for (const e of pub.entries) same(this.store.isDuplicate(S, this.bookmark(e, 0)), false, 'purged');
        }
        if (this.otherBookmark !== undefined) {
          // Only the subscription named: another keeps what it knows.
          expect(this.store.isDuplicate(OTHER, this.otherBookmark)).toBe(!op.all);
          if (op.all) expect(this.store.log(OTHER, this.otherBookmark)).toBe(true);
        }
        this.subscribe();
        return;
      }
    }
  }

  /** getMostRecent() as the model says it is: the base, then each publisher's recovery point. */
  expectedRecent(): string | undefined {
    const list: string[] = [];
    if (this.base !== undefined) list.push(this.base);
    const recoveries: Array<[publisher: string, bookmark: string]> = [];
    this.publishers.forEach((pub, p) => {
      // The last message such that it and every one delivered before it is discarded.
      let recovery: Entry | undefined;
      for (const i of this.delivered[p] as number[]) {
        const e = pub.entries[i] as Entry;
        if (!this.discarded.has(e.key)) break;
        recovery = e;
      }
      if (recovery) recoveries.push([pub.id, format(pub.id, recovery.seq, 0)]);
    });
    // In the order of the publishers' ids (as strings).
    recoveries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    list.push(...recoveries.map(([, bookmark]) => bookmark));
    return list.length === 0 ? undefined : list.join(',');
  }

  /**
   * Where `replica` resumes the subscription from its recovery point, as AMPS does with a list: at
   * the earliest listed bookmark in its log (replaying what follows); and the publishers listed.
   */
  resume(replica: number): { at: number; listed: Set<number> } {
    const recent = this.store.getMostRecent(S);
    const listed = new Set<number>();
    // Nothing known: the caller subscribes from the start bookmark, here the start of the log.
    if (recent === undefined) return { at: -1, listed };
    let at = Number.POSITIVE_INFINITY;
    for (const part of recent.split(',')) {
      const t = part.trim();
      if (t === Bookmarks.EPOCH) {
        at = -1;
        continue;
      }
      if (t === Bookmarks.NOW || t === '0|1') {
        // Only before the first delivery: the log here is all newer than the subscription.
        expect(this.reportedNew.size, 'NOW in the recovery point after a delivery').toBe(0);
        at = -1;
        continue;
      }
      const match = /^(\d+)\|0*(\d+)\|?$/.exec(t);
      expect(match, `recovery point part ${t}`).not.toBeNull();
      const p = this.publishers.findIndex((pub) => pub.id === match?.[1]);
      const e = this.publishers[p]?.entries.find((x) => x.seq === BigInt(match?.[2] as string));
      expect(e, `recovery point ${t} names a message in the log`).toBeDefined();
      listed.add(p);
      at = Math.min(at, this.positions[replica]?.get((e as Entry).key) as number);
    }
    expect(at).toBeLessThan(Number.POSITIVE_INFINITY);
    return { at, listed };
  }

  /** Everything checked after each step. */
  check(): void {
    const store = this.store;
    // A position the resume must not move back from: the start, or one the server reported.
    const positionBefore = this.baseChecked !== undefined && this.baseChecked !== this.nowFirstChecked;
    this.baseChecked = this.base;
    this.nowFirstChecked = this.nowFirst?.bookmark;
    expect(store.outstandingCount(S)).toBe(this.outstanding.size);
    const recent = store.getMostRecent(S);
    expect(recent).toBe(this.expectedRecent());
    for (const pub of this.publishers) {
      for (const e of pub.entries) {
        same(
          store.isDuplicate(S, this.bookmark(e, e.i)),
          e.i <= (this.highest[e.p] as number),
          `isDuplicate(${e.key})`,
        );
      }
    }
    // The recovery point only moves forward: per publisher, and on the connected replica.
    const parts = (recent ?? '').split(',').filter((x) => x !== '');
    for (const part of this.base === undefined ? parts : parts.slice(1)) {
      const [publisher, seq] = part.split('|') as [string, string];
      const before = this.recoverySeen.get(publisher);
      if (before !== undefined) expect(BigInt(seq) >= before, `${publisher} moved back from ${before}`).toBe(true);
      this.recoverySeen.set(publisher, BigInt(seq));
    }
    for (const publisher of this.recoverySeen.keys()) {
      expect(
        parts.some((part) => part.startsWith(`${publisher}|`)),
        `${publisher} left the list`,
      ).toBe(true);
    }
    const here = this.resume(this.replica).at;
    // As a position in one log, when every replica has the same order (across orders, positions of
    // different publishers do not compare: a publisher newly listed may sit earlier on this one).
    // Nor before the store knows a start position (HAClient always tells it one), or while it
    // stands in NOW's first message for one: a persisted ack lagging the deliveries (a live
    // subscription) may then land behind the recovery points. Either replays more, skips none.
    if (this.oneOrder && positionBefore) {
      expect(here, 'the resume position moved back').toBeGreaterThanOrEqual(this.resumeSeen);
    }
    this.resumeSeen = here;
    // Resuming on any replica replays every message of a listed publisher still being handled, or
    // not yet delivered; with one order for all, every message not yet delivered.
    for (let replica = 0; replica < this.replicas.length; replica++) {
      const { at, listed } = this.resume(replica);
      const positions = this.positions[replica] as Map<string, number>;
      for (const key of this.outstanding) {
        const e = this.entry(key);
        // Documented: a NOW subscription's first message is its position while handled (there is
        // none before it to name); a replay would only bring it again as a duplicate.
        if (this.nowFirst?.key === key && this.base === this.nowFirst.bookmark) continue;
        if (listed.has(e.p)) {
          const pos = positions.get(key) as number;
          if (pos <= at) expect(pos, `${this.bookmark(e, 0)}, being handled, skipped`).toBeGreaterThan(at);
        }
      }
      this.publishers.forEach((pub, p) => {
        if (!listed.has(p) && !this.oneOrder) return;
        for (const e of pub.entries) {
          if (!e.match || e.i <= (this.highest[p] as number)) continue;
          const pos = positions.get(e.key) as number;
          if (pos <= at) expect(pos, `${this.bookmark(e, 0)}, never delivered, skipped`).toBeGreaterThan(at);
        }
      });
    }
  }

  /** A last failover and replay to the end of the log. */
  finish(): void {
    this.apply({ k: 'failover', replica: this.replica });
    this.apply({ k: 'deliver', n: Number.POSITIVE_INFINITY, form: 0 });
    this.check();
    if (!this.oneOrder) return;
    for (const pub of this.publishers) {
      for (const e of pub.entries) {
        same(this.reportedNew.get(e.key) ?? 0, e.match ? 1 : 0, `${this.bookmark(e, 0)} delivered`);
      }
    }
  }
}

const publisherId = fc.oneof(
  fc.constantFrom('11', '22', '7094790850998930143', '12290412031115262887'),
  fc.bigInt({ min: 1n, max: 2n ** 64n - 1n }).map(String),
);

const bookmarkOp: fc.Arbitrary<BookmarkOp> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({ k: fc.constant('deliver' as const), n: fc.integer({ min: 1, max: 5 }), form: fc.nat(2) }),
  },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('redeliver' as const), pick: fc.nat(), form: fc.nat(2) }) },
  { weight: 6, arbitrary: fc.record({ k: fc.constant('discard' as const), pick: fc.nat(), form: fc.nat(2) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('discardStale' as const), pick: fc.nat(), form: fc.nat(2) }) },
  {
    weight: 3,
    arbitrary: fc.record({ k: fc.constant('persisted' as const), lag: fc.oneof(fc.constant(0), fc.nat(3)) }),
  },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('failover' as const), replica: fc.nat(2) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('purge' as const), all: fc.boolean() }) },
);

function bookmarkScenario(maxSteps: number, maxOps: number): fc.Arbitrary<BookmarkScenario> {
  return fc.record({
    publishers: fc.uniqueArray(
      fc.record({
        id: publisherId,
        start: fc.oneof(fc.bigInt({ min: 0n, max: 5n }), fc.bigInt({ min: 0n, max: 2n ** 63n })),
        steps: fc.array(
          fc.record({
            gap: fc.oneof({ weight: 4, arbitrary: fc.constant(1n) }, fc.bigInt({ min: 2n, max: 1000n })),
            match: fc.oneof({ weight: 5, arbitrary: fc.constant(true) }, fc.constant(false)),
          }),
          { minLength: 1, maxLength: maxSteps, size: 'max' },
        ),
      }),
      { minLength: 1, maxLength: 4, selector: (p) => p.id },
    ),
    replicas: fc.array(fc.array(fc.nat(7), { maxLength: 40, size: 'max' }), { minLength: 1, maxLength: 3 }),
    mode: fc.constantFrom<StartMode>('epoch', 'none', 'now', 'now-no-bar'),
    ops: fc.array(bookmarkOp, { maxLength: maxOps, size: 'max' }),
  });
}

function runBookmarks(scenario: BookmarkScenario): void {
  const run = new BookmarkRun(scenario);
  run.check();
  for (const op of scenario.ops) {
    run.apply(op);
    run.check();
  }
  run.finish();
}

describe('MemoryBookmarkStore against a model', () => {
  it('tracks exactly the publisher|sequence| forms the protocol allows, a sequence with leading zeros as without', () => {
    const allowed = /^(\d+)\|0*(\d+)\|?$/;
    const text = fc.string({ unit: fc.constantFrom('0', '1', '7', '|', 'a', ' '), maxLength: 9 });
    fc.assert(
      fc.property(text, fc.nat(3), (bookmark, zeros) => {
        const store = new MemoryBookmarkStore();
        expect(store.log('s', bookmark)).toBe(true);
        const match = allowed.exec(bookmark);
        // Logged again, as written or with more leading zeros: a duplicate only if it was tracked.
        expect(store.log('s', bookmark)).toBe(!match);
        if (!match) return;
        expect(store.isDuplicate('s', `${match[1]}|${'0'.repeat(zeros)}${match[2]}|`)).toBe(true);
        store.discard('s', bookmark);
        expect(store.getMostRecent('s')).toBe(`${match[1]}|${match[2]}|`);
      }),
      { numRuns: 2000 },
    );
  });

  it('reports each message new once, keeps outstanding messages replayable on every replica, only moves forward, and forgets on purge', () => {
    fc.assert(fc.property(bookmarkScenario(10, 70), runBookmarks), { numRuns: 300 });
  });

  it('stays right with thousands outstanding from one publisher, discarded mostly in order (its compactions)', () => {
    const bulk = fc.record({
      publishers: fc.constant([
        { id: '11', start: 0n, steps: Array.from({ length: 3000 }, (_, i) => ({ gap: 1n, match: i % 7 !== 3 })) },
        { id: '22', start: 0n, steps: [{ gap: 1n, match: true }] },
      ]),
      replicas: fc.constant([[0]]),
      mode: fc.constant<StartMode>('epoch'),
      ops: fc.array(
        fc.oneof(
          fc.record({ k: fc.constant('deliver' as const), n: fc.integer({ min: 500, max: 3000 }), form: fc.nat(2) }),
          // Oldest first, every `every`-th one out of order instead (0: all in order).
          fc.record({
            k: fc.constant('discards' as const),
            count: fc.integer({ min: 300, max: 2000 }),
            every: fc.nat(60),
            pick: fc.nat(),
          }),
          fc.record({ k: fc.constant('persisted' as const), lag: fc.constant(0) }),
          fc.record({ k: fc.constant('failover' as const), replica: fc.constant(0) }),
        ),
        { maxLength: 12, size: 'max' },
      ),
    });
    fc.assert(
      fc.property(bulk, (scenario) => {
        const run = new BookmarkRun({ ...scenario, ops: [] });
        for (const op of scenario.ops) {
          if (op.k === 'discards') {
            for (let n = 0; n < op.count && run.outstanding.size > 0; n++) {
              const outOfOrder = op.every > 0 && n % op.every === op.every - 1;
              run.apply({ k: 'discard', pick: outOfOrder ? op.pick + n : 0, form: n });
            }
          } else {
            run.apply(op);
          }
          run.check();
        }
        run.finish();
      }),
      { numRuns: 10 },
    );
  });
});

/* ---------------- MemoryPublishStore ---------------- */

type PublishOp =
  | { k: 'publish'; n: number }
  | { k: 'ack'; how: number; pick: number }
  | { k: 'refuse'; pick: number }
  | { k: 'reconnect'; how: number; pick: number }
  | { k: 'disconnect' }
  | { k: 'cancel' }
  | { k: 'flush' }
  | { k: 'inspect' };

interface PublishScenario {
  capacity: number;
  /** Bodies are `m<id>`, 2 to 4 bytes: a few messages fill a small one. */
  capacityBytes: number;
  policy: 'block' | 'reject';
  errorOnGap: boolean;
  ops: PublishOp[];
}

interface Stored {
  readonly id: number;
  readonly command: Command;
  seq: number;
  /** How the promise `store` returned for it (when it had to wait for room) settled. */
  outcome?: { sequence?: number; error?: unknown };
}

type Settled = 'pending' | 'resolved' | 'rejected';

/** An environment with no timers: nothing in these runs may wait on the clock. */
const noTimers = {
  now: () => 0,
  setTimeout: () => {
    throw new Error('no timers here');
  },
  clearTimeout: () => {},
  random: () => 0,
};

/** Lets promise callbacks queued so far run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) await Promise.resolve();
}

/** `toEqual` on long lists is slow: compares, then shows the first difference. */
function expectSame(actual: string[], expected: string[]): void {
  const at = actual.findIndex((x, i) => x !== expected[i]);
  if (at >= 0 || actual.length !== expected.length) {
    const from = at >= 0 ? at : Math.min(actual.length, expected.length);
    expect(actual.slice(from, from + 5), `from index ${from}`).toEqual(expected.slice(from, from + 5));
  }
}

class PublishRun {
  readonly store: MemoryPublishStore;
  // The reference model.
  /** Unpersisted, unrefused messages in sequence order. */
  entries: Stored[] = [];
  waiting: Stored[] = [];
  lastSeq = 0;
  lastPersisted = 0;
  synced = false;
  connected = false;
  nextId = 1;
  /** The highest sequence any server reported holding (logon or persisted ack). */
  maxReported = 0;
  /** The connected server: the highest sequence it holds for this publisher (it drops any at or below). */
  serverHigh = 0;
  /** Every sequence sent, and the message it was sent for. */
  readonly sentSeq = new Map<number, number>();
  readonly sentAs = new Map<number, number>();
  /** Each flush started: how it settled, and how the model says it must have by now. */
  readonly flushes: Array<{ got: Settled; want: Settled }> = [];
  /** Publishes that waited for room: let in (with a sequence) or rejected. */
  readonly waited: Stored[] = [];

  constructor(readonly scenario: PublishScenario) {
    this.store = new MemoryPublishStore({
      capacity: scenario.capacity,
      capacityBytes: scenario.capacityBytes,
      policy: scenario.policy,
      errorOnPublishGap: scenario.errorOnGap,
      environment: noTimers,
    });
  }

  /** A new sequence: strictly above every one before and every one a server reported holding. */
  assign(stored: Stored): void {
    stored.seq = ++this.lastSeq;
    if (this.synced && stored.seq <= this.maxReported) expect(stored.seq).toBeGreaterThan(this.maxReported);
    same(stored.command.sequence, stored.seq, 'the sequence set on the command');
    same(stored.command.ackType, 'persisted', 'the ack asked for');
    this.entries.push(stored);
  }

  /** What the server does with a publish: one at or below what it holds would be dropped. */
  send(stored: Stored): void {
    same(stored.command.sequence, stored.seq, 'the sequence sent');
    if (stored.seq <= this.serverHigh) {
      expect(stored.seq, `sequence ${stored.seq} at or below the server's ${this.serverHigh}`).toBeGreaterThan(
        this.serverHigh,
      );
    }
    this.serverHigh = stored.seq;
    const sentFor = this.sentSeq.get(stored.seq);
    if (sentFor !== undefined) same(sentFor, stored.id, `sequence ${stored.seq} reused`);
    const sentAs = this.sentAs.get(stored.id);
    if (sentAs !== undefined) same(stored.seq, sentAs, `message ${stored.id} sent again renumbered`);
    this.sentSeq.set(stored.seq, stored.id);
    this.sentAs.set(stored.id, stored.seq);
  }

  /** The server holds everything up to `s` (a persisted ack or a logon ack). */
  persistedUpTo(s: number): void {
    this.maxReported = Math.max(this.maxReported, s);
    if (s <= this.lastPersisted) return;
    this.lastPersisted = s;
    this.lastSeq = Math.max(this.lastSeq, s);
    this.entries = this.entries.filter((e) => e.seq > s);
    this.letIn();
  }

  /** Under both bounds: the bytes are the unpersisted, unrefused bodies'. */
  hasRoom(): boolean {
    const bytes = this.entries.reduce((sum, e) => sum + String(e.command.data).length, 0);
    return this.entries.length < this.scenario.capacity && bytes < this.scenario.capacityBytes;
  }

  /** Publishes waiting for room get it, in order; once connected they go out. */
  letIn(): Stored[] {
    const added: Stored[] = [];
    while (this.waiting.length > 0 && this.hasRoom()) {
      const stored = this.waiting.shift() as Stored;
      this.assign(stored);
      added.push(stored);
    }
    return added;
  }

  replayed(): Stored[] {
    const out: Stored[] = [];
    const byCommand = new Map(this.entries.map((e) => [e.command, e]));
    this.store.replay((command) => {
      const stored = byCommand.get(command);
      expect(stored, `replayed ${String(command.data)}, not unpersisted`).toBeDefined();
      out.push(stored as Stored);
    });
    // Exactly the unpersisted ones, in order, each with the sequence it was given.
    expectSame(
      out.map((e) => `m${e.id} as ${e.command.sequence}`),
      this.entries.map((e) => `m${e.id} as ${e.seq}`),
    );
    return out;
  }

  apply(op: PublishOp): void {
    switch (op.k) {
      case 'publish': {
        for (let n = 0; n < op.n; n++) {
          const stored: Stored = { id: this.nextId++, command: { command: 'publish', topic: 't', data: '' }, seq: 0 };
          stored.command.data = `m${stored.id}`;
          const full = !this.hasRoom() || this.waiting.length > 0;
          if (full && this.scenario.policy === 'reject') {
            expect(() => this.store.store(stored.command)).toThrow(StoreFullError);
            continue;
          }
          const result = this.store.store(stored.command);
          if (full) {
            expect(result).toBeInstanceOf(Promise);
            (result as Promise<number>).then(
              (sequence) => (stored.outcome = { sequence }),
              (error: unknown) => (stored.outcome = { error }),
            );
            this.waiting.push(stored);
            this.waited.push(stored);
            continue;
          }
          this.assign(stored);
          expect(result).toBe(stored.seq);
          if (this.connected) this.send(stored);
        }
        return;
      }
      case 'ack': {
        if (!this.connected) return;
        // Conflated: one sequence covers all before it. An unpersisted one, one persisted already,
        // or one ahead of any this store gave (the server holds more for this name).
        const s =
          op.how === 3 && this.entries.length > 0
            ? (this.entries[Math.max(0, this.entries.length - 1 - (op.pick % 50))] as Stored).seq
            : op.how % 3 === 0 && this.entries.length > 0
              ? (this.entries[op.pick % this.entries.length] as Stored).seq
              : op.how % 3 === 1
                ? op.pick % (this.lastPersisted + 1)
                : this.lastSeq + 1 + (op.pick % 3);
        this.store.discardUpTo(s);
        this.serverHigh = Math.max(this.serverHigh, s);
        const before = this.entries.length;
        this.persistedUpTo(s);
        for (const stored of this.entries.slice(before)) this.send(stored);
        return;
      }
      case 'refuse': {
        if (!this.connected || this.entries.length === 0) return;
        // A failure ack: that one publish is never persisted; the rest stay.
        const stored = this.entries[op.pick % this.entries.length] as Stored;
        this.store.discard(stored.seq);
        this.entries = this.entries.filter((e) => e !== stored);
        for (const added of this.letIn()) this.send(added);
        return;
      }
      case 'reconnect': {
        // A logon ack's s: nothing held, behind what was persisted (a replica behind), the
        // persisted point, in the middle of what is unpersisted, or ahead of every sequence given.
        const unpersisted = this.entries.length > 0 ? (this.entries[op.pick % this.entries.length] as Stored).seq : 0;
        const s = [
          0,
          op.pick % (this.lastPersisted + 1),
          this.lastPersisted,
          unpersisted,
          this.lastSeq + 1 + (op.pick % 4),
        ][op.how % 5] as number;
        this.connected = false;
        if (!this.synced) {
          this.synced = true;
          // Documented: what was stored before the first logon (never sent) continues the
          // server's numbering for the client name.
          if (s >= this.lastPersisted + 1 && this.entries.length > 0) {
            let seq = s;
            for (const e of this.entries) e.seq = ++seq;
            this.lastSeq = seq;
          }
        }
        if (this.scenario.errorOnGap && s < this.lastPersisted) {
          expect(() => this.store.syncWithServer(s)).toThrow(PublishStoreGapError);
          return;
        }
        this.store.syncWithServer(s);
        this.persistedUpTo(s);
        this.connected = true;
        this.serverHigh = s;
        const first = this.replayed();
        for (const e of first) this.send(e);
        expect(this.replayed()).toEqual(first); // replay keeps them
        return;
      }
      case 'disconnect':
        this.connected = false;
        return;
      case 'cancel': {
        // The client gave up: what waits for room is rejected and never stored.
        this.store.cancelWaits(new DisconnectedError('gave up'));
        for (const stored of this.waiting) expect(stored.command.sequence).toBeUndefined();
        this.waiting = [];
        // Every flush not settled yet is rejected too.
        for (const flush of this.flushes) if (flush.want === 'pending') flush.want = 'rejected';
        return;
      }
      case 'flush': {
        const flush: { got: Settled; want: Settled } = { got: 'pending', want: 'pending' };
        this.store.flush().then(
          () => (flush.got = 'resolved'),
          () => (flush.got = 'rejected'),
        );
        this.flushes.push(flush);
        return;
      }
      case 'inspect':
        this.replayed();
        return;
    }
  }

  /** After promise callbacks have run: flushes and publishes that waited settled as they must. */
  checkSettled(): void {
    // A flush resolves once nothing is unpersisted (nothing then waits for room either).
    if (this.entries.length === 0) {
      for (const flush of this.flushes) if (flush.want === 'pending') flush.want = 'resolved';
    }
    expect(this.flushes.map((f) => f.got)).toEqual(this.flushes.map((f) => f.want));
    for (const stored of this.waited) {
      if (this.waiting.includes(stored)) expect(stored.outcome).toBeUndefined();
      else if (stored.seq > 0) expect(stored.outcome).toEqual({ sequence: stored.seq });
      else expect(stored.outcome?.error).toBeInstanceOf(DisconnectedError);
    }
  }

  check(): void {
    expect(this.store.unpersistedCount()).toBe(this.entries.length);
    expect(this.store.lastPersisted()).toBe(this.lastPersisted);
    expect(this.store.nextSequence()).toBe(this.lastSeq + 1);
    expect(this.entries.length).toBeLessThanOrEqual(this.scenario.capacity);
    const wrong = this.entries.find((e) => this.store.get(e.seq) !== e.command);
    expect(wrong && `get(${wrong.seq})`, 'get(sequence) gives the stored command').toBeUndefined();
    // Sequences strictly increasing along the store.
    const unordered = this.entries.findIndex((e, i) => i > 0 && e.seq <= (this.entries[i - 1] as Stored).seq);
    expect(unordered).toBe(-1);
  }
}

const publishOp: fc.Arbitrary<PublishOp> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ k: fc.constant('publish' as const), n: fc.integer({ min: 1, max: 4 }) }) },
  { weight: 4, arbitrary: fc.record({ k: fc.constant('ack' as const), how: fc.nat(3), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('refuse' as const), pick: fc.nat() }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('reconnect' as const), how: fc.nat(4), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('disconnect' as const) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('cancel' as const) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('flush' as const) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('inspect' as const) }) },
);

async function runPublishes(scenario: PublishScenario): Promise<void> {
  const run = new PublishRun(scenario);
  for (const op of scenario.ops) {
    run.apply(op);
    run.check();
    if (run.waited.length > 0 || run.flushes.length > 0) {
      await settle();
      run.checkSettled();
    }
  }
  // A last reconnect to a server holding what was persisted: everything else goes out again.
  run.apply({ k: 'reconnect', how: 2, pick: 0 });
  run.check();
}

describe('MemoryPublishStore against a model', () => {
  it('replays exactly the unpersisted messages in order with their sequences, never reuses one, and counts right', async () => {
    const scenario = fc.record({
      capacity: fc.integer({ min: 1, max: 8 }),
      capacityBytes: fc.oneof(fc.integer({ min: 1, max: 24 }), fc.constant(256 * 1024 * 1024)),
      policy: fc.constantFrom<'block' | 'reject'>('reject', 'block'),
      errorOnGap: fc.boolean(),
      ops: fc.array(publishOp, { maxLength: 80, size: 'max' }),
    });
    await fc.assert(fc.asyncProperty(scenario, runPublishes), { numRuns: 300 });
  });

  it('stays right past its compaction threshold (thousands trimmed)', async () => {
    const scenario = fc.record({
      capacity: fc.constant(100_000),
      capacityBytes: fc.constant(256 * 1024 * 1024),
      policy: fc.constant<'reject'>('reject'),
      errorOnGap: fc.constant(false),
      ops: fc.array(
        fc.oneof(
          {
            weight: 3,
            arbitrary: fc.record({ k: fc.constant('publish' as const), n: fc.integer({ min: 1000, max: 5000 }) }),
          },
          // Up to one of the newest: most of the store goes at once.
          { weight: 3, arbitrary: fc.record({ k: fc.constant('ack' as const), how: fc.constant(3), pick: fc.nat() }) },
          fc.record({ k: fc.constant('refuse' as const), pick: fc.nat() }),
          fc.record({ k: fc.constant('reconnect' as const), how: fc.nat(4), pick: fc.nat() }),
        ),
        { maxLength: 10 },
      ),
    });
    await fc.assert(
      fc.asyncProperty(scenario, (s) => runPublishes({ ...s, ops: [{ k: 'reconnect', how: 0, pick: 0 }, ...s.ops] })),
      { numRuns: 10 },
    );
  });
});
