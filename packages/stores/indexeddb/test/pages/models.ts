/**
 * Model-based runs of the IndexedDB stores, in the page (where IndexedDB is): random operations
 * with reopenings of the database, checked against a model after every step. Each returns null,
 * or fast-check's report of the smallest failing run.
 */
import { Bookmarks, type Command } from '@amps-ts/core-protocol';
import { MemoryPublishStore } from '@amps-ts/ha-client';
import fc from 'fast-check';
import { IndexedDbBookmarkStore, IndexedDbPublishStore } from '../../src/index.js';

let databases = 0;
const freshName = (kind: string) => `model-${kind}-${databases++}`;

function check(ok: boolean, what: () => string): void {
  if (!ok) throw new Error(what());
}

function deleteDatabase(name: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const request = indexedDB.deleteDatabase(name);
    request.onsuccess = () => resolve();
    request.onerror = () => reject(request.error);
  });
}

async function report(property: fc.IAsyncProperty<[unknown]>, numRuns: number): Promise<string | null> {
  const details = await fc.check(property, { numRuns });
  return details.failed ? (fc.defaultReportMessage(details) ?? 'failed') : null;
}

// ---- IndexedDbPublishStore against MemoryPublishStore ----

type PublishOp =
  | { k: 'publish'; body: string | Uint8Array }
  | { k: 'ack'; ahead: number }
  | { k: 'refuse'; pick: number }
  | { k: 'logon'; ahead: number }
  | { k: 'failWrite' }
  | { k: 'reopen' };

const publishOp: fc.Arbitrary<PublishOp> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      k: fc.constant('publish' as const),
      body: fc.oneof(fc.string({ unit: 'binary', maxLength: 20 }), fc.uint8Array({ maxLength: 20 })),
    }),
  },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('ack' as const), ahead: fc.integer({ min: -2, max: 3 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('refuse' as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('logon' as const), ahead: fc.integer({ min: -3, max: 6 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('failWrite' as const) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('reopen' as const) }) },
);

function replayed(store: MemoryPublishStore): Command[] {
  const commands: Command[] = [];
  store.replay((command) => commands.push(command));
  return commands;
}

/** What a store holds, as comparable text. */
function contents(store: MemoryPublishStore): string {
  const body = (data: Command['data']) =>
    data instanceof Uint8Array ? `bytes ${[...data].join(' ')}` : `text ${JSON.stringify(data)}`;
  const commands = replayed(store).map(({ sequence, topic, data }) => `${sequence} ${topic} ${body(data)}`);
  return JSON.stringify({ commands, lastSequence: store.nextSequence() - 1, lastPersisted: store.lastPersisted() });
}

/** Makes the next write transaction of this page fail (it is aborted once its changes are in it). */
let failNext = false;
const transaction = IDBDatabase.prototype.transaction;
IDBDatabase.prototype.transaction = function (this: IDBDatabase, ...args: Parameters<typeof transaction>) {
  const opened = transaction.apply(this, args);
  if (failNext && args[1] === 'readwrite') {
    failNext = false;
    queueMicrotask(() => opened.abort());
  }
  return opened;
};

async function publishRun(ops: PublishOp[]): Promise<void> {
  const name = freshName('publish');
  const writeErrors: string[] = [];
  const open = () => IndexedDbPublishStore.open(name, { onWriteError: (error) => writeErrors.push(error.message) });
  let store = await open();
  // The model: a memory store, and the publishes waiting for this run's first logon.
  let model = new MemoryPublishStore();
  let early: Command[] = [];
  let loggedOn = false;
  const publish = (body: string | Uint8Array) => {
    // A publish waiting for the first logon fails when the store closes: expected here.
    store.store({ command: 'publish', topic: 't', data: body }).catch(() => {});
    if (loggedOn) model.store({ command: 'publish', topic: 't', data: body });
    else early.push({ command: 'publish', topic: 't', data: body });
  };
  try {
    for (const o of ops) {
      switch (o.k) {
        case 'publish':
          publish(o.body);
          break;
        case 'ack': {
          const sequence = Math.max(0, model.nextSequence() - 1 + o.ahead);
          model.discardUpTo(sequence);
          store.discardUpTo(sequence);
          break;
        }
        case 'refuse': {
          const unpersisted = replayed(model);
          const sequence = unpersisted[o.pick % Math.max(1, unpersisted.length)]?.sequence;
          if (sequence !== undefined) {
            model.discard(sequence);
            store.discard(sequence);
          }
          break;
        }
        case 'logon': {
          const sequence = Math.max(0, model.lastPersisted() + o.ahead);
          model.syncWithServer(sequence);
          store.syncWithServer(sequence);
          if (!loggedOn) for (const command of early) model.store(command);
          early = [];
          loggedOn = true;
          break;
        }
        case 'failWrite':
          // Only once logged on, with a publish after it: before the first logon nothing is written.
          if (!loggedOn) break;
          await store.whenWritten();
          failNext = true;
          publish('written after a failure');
          await store.whenWritten();
          check(writeErrors.length === 1, () => `write errors: ${JSON.stringify(writeErrors)}`);
          writeErrors.length = 0;
          // The next write puts everything back.
          publish('and one more');
          break;
        case 'reopen':
          await store.whenWritten();
          await store.close();
          store = await open();
          model = new MemoryPublishStore({
            restore: {
              commands: replayed(model),
              lastSequence: model.nextSequence() - 1,
              lastPersisted: model.lastPersisted(),
            },
          });
          early = [];
          loggedOn = false;
          break;
      }
      check(
        contents(store) === contents(model),
        () => `after ${JSON.stringify(o)}: ${contents(store)} != ${contents(model)}`,
      );
      check(
        store.unpersistedCount() === model.unpersistedCount() + early.length,
        () => `unpersisted ${store.unpersistedCount()}`,
      );
    }
    check(writeErrors.length === 0, () => `write errors: ${JSON.stringify(writeErrors)}`);
  } finally {
    failNext = false;
    await store.close();
    await deleteDatabase(name);
  }
}

export function publishModel(numRuns: number): Promise<string | null> {
  return report(fc.asyncProperty(fc.array(publishOp, { maxLength: 50, size: 'max' }), publishRun), numRuns);
}

// ---- IndexedDbBookmarkStore against what was delivered and processed ----

const PUBLISHERS = [11, 22, 33];
const S = 'orders';

type BookmarkOp =
  | { k: 'deliver'; publisher: number; step: number }
  | { k: 'discard'; pick: number; oldest: boolean }
  | { k: 'ack' }
  | { k: 'reopen' };

const bookmarkOp: fc.Arbitrary<BookmarkOp> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      k: fc.constant('deliver' as const),
      publisher: fc.constantFrom(...PUBLISHERS),
      step: fc.integer({ min: 1, max: 3 }),
    }),
  },
  { weight: 5, arbitrary: fc.record({ k: fc.constant('discard' as const), pick: fc.nat(), oldest: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('ack' as const) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('reopen' as const) }) },
);

const positions = (point: string | undefined) =>
  [...new Set((point ?? '').split(',').filter((entry) => /^[1-9]\d*\|\d+\|$/.test(entry)))].sort().join(',');

/**
 * After each reopening, every message processed in order from the start of its publisher's
 * stream is a duplicate (never processed twice), every other one is not (never skipped), and the
 * recovery point names the same positions as before.
 */
async function bookmarkRun(ops: BookmarkOp[]): Promise<void> {
  const name = freshName('bookmark');
  const open = () => IndexedDbBookmarkStore.open(name, { replicationLagMs: 0 });
  let store = await open();
  store.persisted(S, Bookmarks.EPOCH);
  const published = new Map<number, number[]>(PUBLISHERS.map((p) => [p, []]));
  const delivered = new Map<number, number>(PUBLISHERS.map((p) => [p, 0]));
  const outstanding: Array<{ p: number; seq: number }> = [];
  const processed = new Map<number, Set<number>>(PUBLISHERS.map((p) => [p, new Set()]));
  const bookmark = (p: number, seq: number) => `${p}|${seq}|`;
  /** The messages of `p` processed without a gap from its first one. */
  const inOrderProcessed = (p: number) => {
    const done = processed.get(p) as Set<number>;
    const prefix = new Set<number>();
    for (const seq of published.get(p) as number[]) {
      if (!done.has(seq)) break;
      prefix.add(seq);
    }
    return prefix;
  };
  try {
    for (const o of ops) {
      switch (o.k) {
        case 'deliver': {
          const log = published.get(o.publisher) as number[];
          let index = delivered.get(o.publisher) as number;
          if (index === log.length) log.push((log.at(-1) ?? 0) + o.step);
          const seq = log[index++] as number;
          delivered.set(o.publisher, index);
          const fresh = store.log(S, bookmark(o.publisher, seq));
          const expected = !inOrderProcessed(o.publisher).has(seq);
          check(fresh === expected, () => `${bookmark(o.publisher, seq)} logged as new: ${fresh}`);
          if (fresh) outstanding.push({ p: o.publisher, seq });
          break;
        }
        case 'discard': {
          if (outstanding.length === 0) break;
          const [m] = outstanding.splice(o.oldest ? 0 : o.pick % outstanding.length, 1);
          if (!m) break;
          store.discard(S, bookmark(m.p, m.seq));
          processed.get(m.p)?.add(m.seq);
          break;
        }
        case 'ack':
          if (outstanding.length === 0) {
            const last = [...delivered].find(([, n]) => n > 0);
            if (last) store.persisted(S, bookmark(last[0], published.get(last[0])?.[last[1] - 1] as number));
          }
          break;
        case 'reopen': {
          const before = positions(store.getMostRecent(S));
          await store.close();
          store = await open();
          const after = positions(store.getMostRecent(S));
          check(after === before, () => `positions ${after}, before ${before}`);
          for (const p of PUBLISHERS) {
            const prefix = inOrderProcessed(p);
            delivered.set(p, (published.get(p) as number[]).filter((seq) => prefix.has(seq)).length);
            processed.set(p, prefix);
          }
          outstanding.length = 0;
          break;
        }
      }
    }
  } finally {
    await store.close();
    await deleteDatabase(name);
  }
}

export function bookmarkModel(numRuns: number): Promise<string | null> {
  return report(fc.asyncProperty(fc.array(bookmarkOp, { maxLength: 80, size: 'max' }), bookmarkRun), numRuns);
}
