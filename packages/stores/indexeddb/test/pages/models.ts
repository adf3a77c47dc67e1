/**
 * Model-based runs of the IndexedDB stores, in the page (where IndexedDB is): random operations
 * with reopenings of the database, checked against a model after every step. Each returns null,
 * or fast-check's report of the smallest failing run.
 */
import { Bookmarks, type Command } from '@amps-ts/core-protocol';
import { MemoryPublishStore } from '@amps-ts/ha-client';
import fc from 'fast-check';
import {
  BookmarkModel,
  type BookmarkOp,
  bookmarkOp,
  checkSameContents,
  type PublishOp,
  positions,
  publishOp,
  replayed,
  restarted,
  SUB_ID,
} from '../../../../ha-client/test/durable-store-models.js';
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

/** The shared operations, and a write made to fail (then one more publish, which rewrites). */
const idbPublishOp: fc.Arbitrary<PublishOp | { k: 'failWrite' }> = fc.oneof(
  { weight: 13, arbitrary: publishOp },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('failWrite' as const) }) },
);

/** Makes the next write transaction of this page fail (it is aborted once its changes are in it). */
export function failNextWrite(): void {
  failNext = true;
}
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

async function publishRun(ops: Array<PublishOp | { k: 'failWrite' }>): Promise<void> {
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
        case 'restart':
          await store.whenWritten();
          await store.close();
          store = await open();
          model = restarted(model);
          early = [];
          loggedOn = false;
          break;
      }
      checkSameContents(store, model, o);
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
  return report(fc.asyncProperty(fc.array(idbPublishOp, { maxLength: 50, size: 'max' }), publishRun), numRuns);
}

// ---- IndexedDbBookmarkStore against what was delivered and processed ----

async function bookmarkRun(ops: BookmarkOp[]): Promise<void> {
  const name = freshName('bookmark');
  const open = () => IndexedDbBookmarkStore.open(name, { replicationLagMs: 0 });
  let store = await open();
  store.persisted(SUB_ID, Bookmarks.EPOCH);
  const model = new BookmarkModel();
  try {
    for (const o of ops) {
      if (o.k !== 'restart') {
        model.step(o, store);
        continue;
      }
      const before = positions(store.getMostRecent(SUB_ID));
      await store.close();
      store = await open();
      const after = positions(store.getMostRecent(SUB_ID));
      check(after === before, () => `positions ${after}, before ${before}`);
      model.restarted();
    }
  } finally {
    await store.close();
    await deleteDatabase(name);
  }
}

export function bookmarkModel(numRuns: number): Promise<string | null> {
  return report(fc.asyncProperty(fc.array(bookmarkOp, { maxLength: 80, size: 'max' }), bookmarkRun), numRuns);
}
