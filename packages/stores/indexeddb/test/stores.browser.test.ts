/**
 * The IndexedDB stores in a real Chromium, with an HAClient on browserTransport against the test
 * broker over WebSocket. A tab is crashed (its renderer killed through `chrome://crash`) and a new
 * tab of the same site opens the same database: a publisher's unpersisted messages reach the
 * server exactly once, a subscriber resumes where its processing got to. Also the lock across
 * tabs, foreign and damaged databases, and a database deleted under a store.
 */
import { join } from 'node:path';
import { chromiumStatus } from '@amps-ts/config/chromium';
import { Bookmarks, Client } from '@amps-ts/core-protocol';
import {
  type FaultProxy,
  startFaultProxy,
  startTestCluster,
  startTestServer,
  type TestServer,
} from '@amps-ts/test-server';
import { nodeTransport } from '@amps-ts/transport-node';
import type { Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type BrowserPage, openBrowserPage } from '../../../transport-browser/test/browser-harness.js';
import type { IndexedDbBookmarkStore, IndexedDbPublishStore } from '../src/index.js';
import type { StoresPageApi } from './pages/stores-page.js';

const chromium = chromiumStatus('store-indexeddb');

/** Runs `fn` in `page` with the page API; `fn` may use only its arguments. */
function inPage<A, R>(page: Page, fn: (api: StoresPageApi, arg: A) => R | Promise<R>, arg: A): Promise<R> {
  return page.evaluate(`(${fn.toString()})(globalThis.ampsStores, ${JSON.stringify(arg) ?? 'undefined'})`);
}

describe.skipIf(!chromium.run)(chromium.title('IndexedDB stores in Chromium'), () => {
  let browser: BrowserPage;
  let server: TestServer;
  const cleanups: Array<() => Promise<unknown>> = [];

  beforeAll(async () => {
    server = await startTestServer();
    browser = await openBrowserPage({ entry: join(import.meta.dirname, 'pages', 'stores-page.ts') });
  }, 60_000);

  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
  });

  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  /** A new tab of the same site (the same databases), closed after the test. */
  async function newTab(): Promise<Page> {
    const page = await browser.context.newPage();
    cleanups.push(() => page.close());
    await page.goto(browser.url);
    await page.waitForFunction(() => (globalThis as { __entryLoaded?: boolean }).__entryLoaded === true);
    return page;
  }

  /** Kills the tab's renderer: nothing in the page runs after this, no close(), no pagehide. */
  async function crash(page: Page): Promise<void> {
    const crashed = new Promise((resolve) => page.once('crash', resolve));
    await page.goto('chrome://crash').catch(() => {});
    await crashed;
  }

  /** Every message on `topic` in the server's log, up to the one numbered `last`. */
  async function everything(topic: string, last: number, uri = server.tcpUri()): Promise<number[]> {
    const client = new Client(`reader-${topic}`, { transport: nodeTransport() });
    cleanups.push(() => client.disconnect());
    await client.connectAndLogon(uri);
    const seen: number[] = [];
    await new Promise<void>((resolve) => {
      client.subscribe(topic, {
        bookmark: Bookmarks.EPOCH,
        onMessage: (message) => {
          const { n } = JSON.parse(message.text()) as { n: number };
          seen.push(n);
          if (n === last) resolve();
        },
      });
    });
    return seen;
  }

  async function publishFromNode(topic: string, from: number, to: number): Promise<void> {
    const client = new Client(`node-publisher-${topic}`, { transport: nodeTransport() });
    cleanups.push(() => client.disconnect());
    await client.connectAndLogon(server.tcpUri());
    for (let n = from; n <= to; n++) client.publish(topic, JSON.stringify({ n }));
    await client.flush('processed');
  }

  const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

  describe('IndexedDbPublishStore', () => {
    let proxy: FaultProxy;
    beforeAll(async () => {
      proxy = await startFaultProxy({ target: server.wsPort as number });
    });
    afterAll(() => proxy?.close());

    it.each([
      ['reset', 'the dead tab connection is reset: the server never gets them'],
      ['heal', 'the dead tab connection delivers them: the new tab sends them again'],
    ] as const)(
      'a tab that crashed with publishes unpersisted: the next tab sends them, each exactly once (%s: %s)',
      async (fault, _) => {
        cleanups.push(async () => proxy.heal());
        const topic = `orders-${fault}`;
        const setup = { db: `publisher-${fault}`, name: `browser-publisher-${fault}`, topic };
        const tab1 = await newTab();
        const proxied = `ws://127.0.0.1:${proxy.port}/amps/json`;
        await inPage(
          tab1,
          async (api, { db, name, topic, uri }) => {
            const publishStore = await api.IndexedDbPublishStore.open(db);
            const client = api.client(name, uri, { publishStore });
            api.kept.client = client;
            api.kept.store = publishStore;
            await client.connectAndLogon();
            const published: Array<Promise<void> | undefined> = [];
            for (let n = 1; n <= 100; n++) published.push(client.publish(topic, JSON.stringify({ n })));
            await Promise.all(published);
            await client.publishFlush(5000);
          },
          { ...setup, uri: proxied },
        );
        proxy.blackhole();
        const unpersisted = await inPage(
          tab1,
          async (api, { topic }) => {
            const client = api.kept.client as ReturnType<StoresPageApi['client']>;
            const published: Array<Promise<void> | undefined> = [];
            for (let n = 101; n <= 300; n++) published.push(client.publish(topic, JSON.stringify({ n })));
            await Promise.all(published); // each one written to the database
            return (api.kept.store as IndexedDbPublishStore).unpersistedCount();
          },
          setup,
        );
        expect(unpersisted).toBe(200);
        await crash(tab1);
        if (fault === 'reset') proxy.reset();
        else proxy.heal();

        const tab2 = await newTab();
        const restored = await inPage(
          tab2,
          async (api, { db, name, topic, uri }) => {
            const publishStore = await api.IndexedDbPublishStore.open(db);
            const restored = publishStore.unpersistedCount();
            const client = api.client(name, uri, { publishStore });
            await client.connectAndLogon();
            const published: Array<Promise<void> | undefined> = [];
            for (let n = 301; n <= 310; n++) published.push(client.publish(topic, JSON.stringify({ n })));
            await Promise.all(published);
            await client.publishFlush(5000);
            await client.disconnect();
            await publishStore.close();
            return restored;
          },
          { ...setup, uri: server.wsUri() },
        );
        expect(restored).toBe(200);
        expect(await everything(topic, 310)).toEqual(range(1, 310));
        proxy.heal();
      },
    );

    it('through a failover and then a crash of its tab: every publish that resolved reaches the server exactly once, nothing twice, in order', async () => {
      const cluster = await startTestCluster({ count: 2, replication: 'sync' });
      cleanups.push(() => cluster.close());
      const uris = cluster.wsUris();
      const tab1 = await newTab();
      // Publishing in the page, 50 at a time, until the tab dies: `resolved` is how far it was told.
      const active = await inPage(
        tab1,
        async (api, servers) => {
          const publishStore = await api.IndexedDbPublishStore.open('through-failover');
          const client = api.client('browser-through-failover', servers, { publishStore });
          await client.connectAndLogon();
          const progress = { resolved: 0, error: '' };
          api.kept.progress = progress;
          void (async () => {
            try {
              for (let n = 1; ; n += 50) {
                const batch: Array<Promise<void> | undefined> = [];
                for (let i = n; i < n + 50; i++) batch.push(client.publish('through', JSON.stringify({ n: i })));
                await Promise.all(batch);
                progress.resolved = n + 49;
              }
            } catch (error) {
              progress.error = String(error);
            }
          })();
          return client.uri;
        },
        uris,
      );
      const resolvedAtLeast = (count: number) =>
        tab1.waitForFunction(
          (n) =>
            ((globalThis as unknown as { ampsStores: StoresPageApi }).ampsStores.kept.progress as { resolved: number })
              .resolved >= n,
          count,
          { timeout: 15_000 },
        );
      await resolvedAtLeast(500);
      const killed = cluster.servers.find((s) => s.wsUri() === active);
      if (!killed) throw new Error(`${active} is not in the cluster`);
      await killed.kill(); // the client fails over; the survivor's persisted acks wait for its peer
      await resolvedAtLeast(1500);
      await killed.restart();
      await resolvedAtLeast(2000);
      const { resolved, error } = await inPage(
        tab1,
        (api) => api.kept.progress as { resolved: number; error: string },
        undefined,
      );
      expect(error).toBe('');
      await crash(tab1);

      const tab2 = await newTab();
      const restored = await inPage(
        tab2,
        async (api, servers) => {
          const publishStore = await api.IndexedDbPublishStore.open('through-failover', { waitForLock: true });
          const restored = publishStore.unpersistedCount();
          const client = api.client('browser-through-failover', servers, { publishStore });
          await client.connectAndLogon();
          const tail: Array<Promise<void> | undefined> = [];
          for (let n = 1_000_001; n <= 1_000_100; n++) tail.push(client.publish('through', JSON.stringify({ n })));
          await Promise.all(tail);
          await client.publishFlush(15_000);
          await client.disconnect();
          await publishStore.close();
          return restored;
        },
        uris,
      );
      expect(restored).toBeGreaterThan(0); // the crash left publishes unpersisted: the new tab sent them
      const survivor = cluster.servers.find((s) => s !== killed) as TestServer;
      const seen = await everything('through', 1_000_100, survivor.tcpUri());
      // In order, each once: strictly increasing.
      expect(seen.filter((n, i) => i > 0 && n <= (seen[i - 1] as number))).toEqual([]);
      // Every publish the first tab was told of, then the second tab's.
      const have = new Set(seen);
      expect(range(1, resolved).filter((n) => !have.has(n))).toEqual([]);
      expect(seen.slice(-100)).toEqual(range(1_000_001, 1_000_100));
    });

    it('writes a publish made before the first logon only once that logon numbers it, above what the server holds for the name', async () => {
      const tab = await newTab();
      // The name's stream on the server is at 5 already (a store whose database was cleared since).
      await inPage(
        tab,
        async (api, uri) => {
          const publishStore = await api.IndexedDbPublishStore.open('early-first');
          const client = api.client('browser-early', uri, { publishStore });
          await client.connectAndLogon();
          for (let n = 1; n <= 5; n++) client.publish('early', JSON.stringify({ n }));
          await client.publishFlush(5000);
          await client.disconnect();
          await publishStore.close();
        },
        server.wsUri(),
      );
      const before = await inPage(
        tab,
        async (api, uri) => {
          const publishStore = await api.IndexedDbPublishStore.open('early-second');
          const client = api.client('browser-early', uri, { publishStore });
          api.kept.early = { client, publishStore };
          const published = [6, 7, 8].map((n) => client.publish('early', JSON.stringify({ n })));
          api.kept.published = Promise.all(published);
          let settled = false;
          void (api.kept.published as Promise<unknown>).then(() => {
            settled = true;
          });
          await publishStore.whenWritten();
          const rows = await new Promise<number>((resolve, reject) => {
            const open = indexedDB.open('early-second');
            open.onerror = () => reject(open.error);
            open.onsuccess = () => {
              const count = open.result
                .transaction('amps-ts-publish-commands')
                .objectStore('amps-ts-publish-commands')
                .count();
              count.onsuccess = () => {
                open.result.close();
                resolve(count.result);
              };
            };
          });
          return { settled, rows, unpersisted: publishStore.unpersistedCount() };
        },
        server.wsUri(),
      );
      expect(before).toEqual({ settled: false, rows: 0, unpersisted: 3 });
      await inPage(
        tab,
        async (api) => {
          const { client, publishStore } = api.kept.early as {
            client: ReturnType<StoresPageApi['client']>;
            publishStore: IndexedDbPublishStore;
          };
          await client.connectAndLogon();
          await (api.kept.published as Promise<unknown>);
          await client.publishFlush(5000);
          await client.disconnect();
          await publishStore.close();
        },
        undefined,
      );
      // Numbered 6 to 8: as 1 to 3 the server would have dropped them as duplicates.
      expect(await everything('early', 8)).toEqual(range(1, 8));
    });

    it("a new database closed before its first logon: reopened and logged on to a server past 0, it sends every publish that resolved, above the server's", async () => {
      // The file store once wrote such publishes numbered 1, 2 and resolved them; a restart took them
      // for ones the server had (40 here), and dropped them. This store writes nothing before that logon.
      const tab = await newTab();
      const result = await inPage(
        tab,
        async (api) => {
          const first = await api.IndexedDbPublishStore.open('unsynced-closed');
          const resolved: string[] = [];
          const errors: string[] = [];
          const published = [1, 2].map((n) =>
            first.store({ command: 'publish', topic: 't', data: `m${n}` }).then(
              () => resolved.push(`m${n}`),
              (error: Error) => errors.push(`${error.name}: ${error.message}`),
            ),
          );
          await first.whenWritten();
          await first.close();
          await Promise.all(published);
          const second = await api.IndexedDbPublishStore.open('unsynced-closed');
          second.syncWithServer(40); // the server holds 1 to 40 for the client name
          const replayed: Array<[number, unknown]> = [];
          second.replay((command) => replayed.push([command.sequence as number, command.data]));
          const next = await second.store({ command: 'publish', topic: 't', data: 'm3' });
          await second.close();
          return { resolved, errors, replayed, next };
        },
        undefined,
      );
      // What resolved goes out after the server's 40 (here nothing did: the close failed them).
      expect(result.replayed).toEqual(result.resolved.map((data, i) => [41 + i, data]));
      expect(result).toEqual({
        resolved: [],
        errors: [
          'DurableStoreError: the publish store "unsynced-closed" was closed before the first logon',
          'DurableStoreError: the publish store "unsynced-closed" was closed before the first logon',
        ],
        replayed: [],
        next: 41,
      });
    });

    it('goes on in memory when another tab deletes its database, and says so once', async () => {
      const tab1 = await newTab();
      await inPage(
        tab1,
        async (api, uri) => {
          const errors: string[] = [];
          api.kept.errors = errors;
          const publishStore = await api.IndexedDbPublishStore.open('doomed', {
            onWriteError: (error) => errors.push(`${error.code}: ${error.message}`),
          });
          const client = api.client('browser-doomed', uri, { publishStore });
          api.kept.client = client;
          await client.connectAndLogon();
          await client.publish('doomed', JSON.stringify({ n: 1 }));
        },
        server.wsUri(),
      );
      const tab2 = await newTab();
      await inPage(
        tab2,
        (_api, name) =>
          new Promise<void>((resolve, reject) => {
            const deletion = indexedDB.deleteDatabase(name);
            deletion.onsuccess = () => resolve();
            deletion.onerror = () => reject(deletion.error);
          }),
        'doomed',
      );
      const errors = await inPage(
        tab1,
        async (api) => {
          const client = api.kept.client as ReturnType<StoresPageApi['client']>;
          for (let n = 2; n <= 4; n++) await client.publish('doomed', JSON.stringify({ n }));
          await client.publishFlush(5000);
          await client.disconnect();
          return api.kept.errors;
        },
        undefined,
      );
      expect(errors).toEqual([
        'durable_store: the database "doomed" is being deleted or upgraded elsewhere: the store goes on in memory only',
      ]);
      expect(await everything('doomed', 4)).toEqual(range(1, 4));
    });
  });

  describe('IndexedDbBookmarkStore', () => {
    /** Subscribes `subId` to `topic` with a bookmark store on `db`; resolves once message `last` is processed. */
    function subscribe(
      page: Page,
      setup: { db: string; subId: string; topic: string; bookmark: string; last: number },
    ) {
      return inPage(
        page,
        async (api, { db, subId, topic, bookmark, last, uri }) => {
          const bookmarkStore = await api.IndexedDbBookmarkStore.open(db);
          const pointAtOpen = bookmarkStore.getMostRecent(subId) ?? null;
          const client = api.client(`browser-${subId}`, uri, { bookmarkStore });
          api.kept.bookmarkStore = bookmarkStore;
          await client.connectAndLogon();
          const received: number[] = [];
          await new Promise<void>((resolve) => {
            client.subscribe(topic, {
              subId,
              bookmark,
              onMessage: (message) => {
                const { n } = JSON.parse(message.text()) as { n: number };
                received.push(n);
                if (n === last) resolve();
              },
            });
          });
          return { received, pointAtOpen };
        },
        { ...setup, uri: server.wsUri() },
      );
    }

    it('a tab that crashed after its points were written: the next tab resumes at the next message', async () => {
      await publishFromNode('ticks', 1, 500);
      const tab1 = await newTab();
      const setup = { db: 'subscriber', subId: 'feed', topic: 'ticks' };
      const before = await subscribe(tab1, { ...setup, bookmark: Bookmarks.EPOCH, last: 500 });
      expect(before).toEqual({ received: range(1, 500), pointAtOpen: null });
      const point = await inPage(
        tab1,
        async (api, subId) => {
          const store = api.kept.bookmarkStore as IndexedDbBookmarkStore;
          await store.whenWritten();
          return store.getMostRecent(subId);
        },
        setup.subId,
      );
      await crash(tab1);
      await publishFromNode('ticks', 501, 800);
      const tab2 = await newTab();
      // The same recovery point (its entries: a position twice in it is written once), so the
      // server replays from message 501, not from the start.
      const after = await subscribe(tab2, { ...setup, bookmark: Bookmarks.MOST_RECENT, last: 800 });
      expect(after.received).toEqual(range(501, 800));
      const entries = (bookmark: string | null | undefined) => [...new Set(bookmark?.split(','))].sort();
      expect(entries(after.pointAtOpen)).toEqual(entries(point));
      expect(point).toMatch(/\d+\|\d+\|/);
    });

    it('a tab that crashed at once: the next tab misses nothing and gets again at most what the last write held', async () => {
      await publishFromNode('quotes', 1, 2000);
      const tab1 = await newTab();
      const setup = { db: 'subscriber-at-once', subId: 'quotes-feed', topic: 'quotes' };
      await subscribe(tab1, { ...setup, bookmark: Bookmarks.EPOCH, last: 2000 });
      await crash(tab1);
      await publishFromNode('quotes', 2001, 2100);
      const tab2 = await newTab();
      const { received } = await subscribe(tab2, { ...setup, bookmark: Bookmarks.MOST_RECENT, last: 2100 });
      const first = received[0] as number;
      expect(received).toEqual(range(first, 2100));
      // Written as it went: not from the start again.
      expect(first).toBeGreaterThan(1);
    });
  });

  describe('model-based, in the page', () => {
    it('IndexedDbPublishStore holds what the memory store holds, through failed writes and reopenings', async () => {
      const tab = await newTab();
      expect(await inPage(tab, (api, runs) => api.publishModel(runs), 150)).toBeNull();
    });

    it('IndexedDbBookmarkStore drops exactly what was processed in order, and resumes from the same positions', async () => {
      const tab = await newTab();
      expect(await inPage(tab, (api, runs) => api.bookmarkModel(runs), 150)).toBeNull();
    });
  });

  describe('opening', () => {
    it('one store per database across tabs: a second is refused until the first is closed', async () => {
      const [tab1, tab2] = [await newTab(), await newTab()];
      await inPage(
        tab1,
        async (api) => {
          api.kept.locked = await api.IndexedDbBookmarkStore.open('locked');
        },
        undefined,
      );
      const open = (page: Page) =>
        inPage(
          page,
          (api) =>
            api.IndexedDbBookmarkStore.open('locked').then(
              (store) => store.close().then(() => 'opened'),
              (error: unknown) => api.errorInfo(error),
            ),
          undefined,
        );
      const refused = {
        name: 'DurableStoreError',
        code: 'durable_store',
        message:
          'the bookmark store "locked" is in use by another store (in another tab, window or worker of this site, or in this page: close() it first, or open with waitForLock)',
      };
      expect(await open(tab2)).toEqual(refused);
      expect(await open(tab1)).toEqual(refused);
      await inPage(tab1, (api) => (api.kept.locked as IndexedDbBookmarkStore).close(), undefined);
      expect(await open(tab2)).toBe('opened');
    });

    it('waitForLock: a second tab waits for the database, and takes over with what the first wrote when that tab crashes', async () => {
      const [tab1, tab2] = [await newTab(), await newTab()];
      const point = await inPage(
        tab1,
        async (api) => {
          const store = await api.IndexedDbBookmarkStore.open('leader', { replicationLagMs: 0 });
          store.persisted('feed', api.Bookmarks.EPOCH);
          for (const bookmark of ['7|1|', '7|2|', '9|1|']) {
            store.log('feed', bookmark);
            store.discard('feed', bookmark);
          }
          await store.whenWritten();
          return store.getMostRecent('feed');
        },
        undefined,
      );
      const waiting = await inPage(
        tab2,
        (api) => {
          const state = { settled: false };
          api.kept.state = state;
          api.kept.opening = api.IndexedDbBookmarkStore.open('leader', {
            waitForLock: true,
            replicationLagMs: 0,
          }).finally(() => {
            state.settled = true;
          });
          // And one the page gives up on.
          const abort = new AbortController();
          const given = api.IndexedDbBookmarkStore.open('leader', { waitForLock: true, signal: abort.signal }).then(
            () => 'opened',
            (error: unknown) => api.errorInfo(error),
          );
          abort.abort();
          return given;
        },
        undefined,
      );
      expect(waiting).toEqual({
        name: 'AbortError',
        code: 'aborted',
        message: 'opening the bookmark store "leader" was aborted while another store had it open',
      });
      expect(await inPage(tab2, (api) => (api.kept.state as { settled: boolean }).settled, undefined)).toBe(false);
      await crash(tab1);
      const taken = await inPage(
        tab2,
        async (api) => {
          const store = (await api.kept.opening) as IndexedDbBookmarkStore;
          const resumed = store.getMostRecent('feed');
          await store.close();
          return resumed;
        },
        undefined,
      );
      expect(taken).toBe(point);
      expect(point).toBe('0,7|2|,9|1|');
    });

    it('signal ends a wait for the database behind a deletion elsewhere that an open connection blocks, and releases the lock', async () => {
      const tab = await newTab();
      const result = await inPage(
        tab,
        async (api) => {
          const name = 'behind-blocked-delete';
          const first = await api.IndexedDbBookmarkStore.open(name);
          await first.close();
          // A connection that ignores versionchange blocks a deletion; the store's open queues behind it.
          const held = await new Promise<IDBDatabase>((resolve, reject) => {
            const open = indexedDB.open(name);
            open.onsuccess = () => resolve(open.result);
            open.onerror = () => reject(open.error);
          });
          const deleted = new Promise<void>((resolve, reject) => {
            const deletion = indexedDB.deleteDatabase(name);
            deletion.onblocked = async () => {
              const abort = new AbortController();
              api.kept.opening = api.IndexedDbBookmarkStore.open(name, { signal: abort.signal }).then(
                (store) => store.close().then(() => 'opened'),
                (error: unknown) => api.errorInfo(error),
              );
              // Once it holds the lock, it waits for the database.
              const locked = async () => (await navigator.locks.query()).held?.some((l) => l.name?.endsWith(name));
              while (!(await locked()));
              abort.abort();
              held.close(); // the deletion, then the open, go ahead: too late for the aborted open
            };
            deletion.onsuccess = () => resolve();
            deletion.onerror = () => reject(deletion.error);
          });
          await deleted;
          const aborted = await (api.kept.opening as Promise<unknown>);
          // The lock was released: the next open does not find the database in use.
          const again = await api.IndexedDbBookmarkStore.open(name).then(
            (store) => store.close().then(() => 'opened'),
            (error: unknown) => api.errorInfo(error),
          );
          return { aborted, again };
        },
        undefined,
      );
      expect(result).toEqual({
        aborted: {
          name: 'AbortError',
          code: 'aborted',
          message:
            'opening the bookmark store "behind-blocked-delete" was aborted while it waited for a deletion or upgrade of the database elsewhere',
        },
        again: 'opened',
      });
    });

    it('refuses a database that is not its kind, or holds what it never writes', async () => {
      const tab = await newTab();
      const results = await inPage(
        tab,
        async (api) => {
          const raw = (
            name: string,
            create: (db: IDBDatabase) => void,
            fill: (db: IDBDatabase) => IDBTransaction | undefined,
          ) =>
            new Promise<void>((resolve, reject) => {
              const open = indexedDB.open(name, 1);
              open.onupgradeneeded = () => create(open.result);
              open.onerror = () => reject(open.error);
              open.onsuccess = () => {
                const transaction = fill(open.result);
                const done = () => {
                  open.result.close();
                  resolve();
                };
                if (transaction) transaction.oncomplete = done;
                else done();
              };
            });
          const tryOpen = (open: () => Promise<{ close(): Promise<void> }>) =>
            open().then(
              (store) => store.close().then(() => 'opened'),
              (error: unknown) => api.errorInfo(error).message,
            );
          await raw(
            'foreign',
            (db) => db.createObjectStore('other'),
            () => undefined,
          );
          const pub = await api.IndexedDbPublishStore.open('a-publish-store');
          await pub.close();
          await raw(
            'bad-points',
            (db) => db.createObjectStore('amps-ts-bookmark-points'),
            (db) => {
              const transaction = db.transaction('amps-ts-bookmark-points', 'readwrite');
              transaction.objectStore('amps-ts-bookmark-points').put(42, 'feed');
              return transaction;
            },
          );
          await raw(
            'bad-state',
            (db) => {
              db.createObjectStore('amps-ts-publish-commands');
              db.createObjectStore('amps-ts-publish-state');
            },
            (db) => {
              const transaction = db.transaction(['amps-ts-publish-commands', 'amps-ts-publish-state'], 'readwrite');
              transaction.objectStore('amps-ts-publish-state').put({ lastSequence: 1, lastPersisted: 0 }, 'state');
              transaction.objectStore('amps-ts-publish-commands').put({ topic: 'x', data: 7, sequence: 1 }, 1);
              return transaction;
            },
          );
          await raw(
            'misfiled',
            (db) => {
              db.createObjectStore('amps-ts-publish-commands');
              db.createObjectStore('amps-ts-publish-state');
            },
            (db) => {
              const transaction = db.transaction(['amps-ts-publish-commands'], 'readwrite');
              transaction.objectStore('amps-ts-publish-commands').put({ topic: 'x', data: 'y', sequence: 9 }, 2);
              return transaction;
            },
          );
          // Records the memory store or the encoder would refuse: damage too, found at open.
          const publishDatabase = (name: string, state: unknown, key: IDBValidKey, command: unknown) =>
            raw(
              name,
              (db) => {
                db.createObjectStore('amps-ts-publish-commands');
                db.createObjectStore('amps-ts-publish-state');
              },
              (db) => {
                const transaction = db.transaction(['amps-ts-publish-commands', 'amps-ts-publish-state'], 'readwrite');
                transaction.objectStore('amps-ts-publish-state').put(state, 'state');
                if (command !== undefined) transaction.objectStore('amps-ts-publish-commands').put(command, key);
                return transaction;
              },
            );
          const unsent = { lastSequence: 2, lastPersisted: 0 };
          await publishDatabase('fraction', unsent, 1.5, { command: 'publish', topic: 't', data: 'x', sequence: 1.5 });
          await publishDatabase('text-key', unsent, 'x', { command: 'publish', topic: 't', data: 'x', sequence: 'x' });
          await publishDatabase('negative', { lastSequence: 2, lastPersisted: -5 }, 0, undefined);
          await publishDatabase('no-command', unsent, 1, { sequence: 1, data: 'x' }); // an older or foreign schema
          return {
            fraction: await tryOpen(() => api.IndexedDbPublishStore.open('fraction')),
            textKey: await tryOpen(() => api.IndexedDbPublishStore.open('text-key')),
            negative: await tryOpen(() => api.IndexedDbPublishStore.open('negative')),
            noCommand: await tryOpen(() => api.IndexedDbPublishStore.open('no-command')),
            misfiled: await tryOpen(() => api.IndexedDbPublishStore.open('misfiled')),
            foreignAsPublish: await tryOpen(() => api.IndexedDbPublishStore.open('foreign')),
            foreignAsBookmark: await tryOpen(() => api.IndexedDbBookmarkStore.open('foreign')),
            publishAsBookmark: await tryOpen(() => api.IndexedDbBookmarkStore.open('a-publish-store')),
            badPoints: await tryOpen(() => api.IndexedDbBookmarkStore.open('bad-points')),
            badState: await tryOpen(() => api.IndexedDbPublishStore.open('bad-state')),
            // Refused, they hold no lock: each opens once the database is mended or replaced.
            publishAgain: await tryOpen(() => api.IndexedDbPublishStore.open('a-publish-store')),
          };
        },
        undefined,
      );
      expect(results).toEqual({
        foreignAsPublish: 'the database "foreign" is not a publish store\'s (it has other object stores)',
        foreignAsBookmark: 'the database "foreign" is not a bookmark store\'s (it has other object stores)',
        publishAsBookmark: 'the database "a-publish-store" is not a bookmark store\'s (it has other object stores)',
        badPoints: 'the bookmark store "bad-points" holds a record that is not a recovery point',
        badState: 'the publish store "bad-state" is damaged: command 1 has a body that is neither text nor bytes',
        misfiled: 'the publish store "misfiled" is damaged: the record under 2 is not the command with that sequence',
        fraction: 'the publish store "fraction" is damaged: the record under 1.5 is not the command with that sequence',
        textKey: 'the publish store "text-key" is damaged: the record under x is not the command with that sequence',
        negative: 'the publish store "negative" is damaged: its state record holds no sequences',
        noCommand: expect.stringMatching(/^the publish store "no-command" is damaged: command 1 cannot be sent/),
        publishAgain: 'opened',
      });
    });
  });

  describe('failed writes, close() and damaged records', () => {
    it('close() after a failed write writes what the failed write held: a resolved publish survives the reopening', async () => {
      const result = await inPage(
        browser.page,
        async (api) => {
          const errors: string[] = [];
          const name = 'failed-then-closed';
          const open = () => api.IndexedDbPublishStore.open(name, { onWriteError: (e) => errors.push(e.message) });
          const store = await open();
          store.syncWithServer(0);
          api.failNextWrite(); // as a quota error would
          const sequence = await store.store({ command: 'publish', topic: 't', data: 'kept' });
          await store.close();
          const again = await open();
          const replayed: Array<[number | undefined, unknown]> = [];
          again.replay((command) => replayed.push([command.sequence, command.data]));
          await again.close();
          return { sequence, errors: errors.length, replayed };
        },
        undefined,
      );
      expect(result).toEqual({ sequence: 1, errors: 1, replayed: [[1, 'kept']] });
    });

    it('close() rejects a publish waiting for room with an error that does not blame the first logon', async () => {
      const result = await inPage(
        browser.page,
        async (api) => {
          const store = await api.IndexedDbPublishStore.open('full-then-closed', { capacity: 1 });
          store.syncWithServer(0);
          await store.store({ command: 'publish', topic: 't', data: 'one' });
          const blocked = store.store({ command: 'publish', topic: 't', data: 'two' }).then(
            () => 'stored',
            (error: unknown) => api.errorInfo(error),
          );
          await store.close();
          return blocked;
        },
        undefined,
      );
      expect(result).toMatchObject({ name: 'DurableStoreError' });
      expect((result as { message: string }).message).not.toContain('before the first logon');
    });

    it('a change made while close() finishes is written, not reported as a failed write', async () => {
      const errors = await inPage(
        browser.page,
        async (api) => {
          const errors: string[] = [];
          const store = await api.IndexedDbPublishStore.open('change-while-closing', {
            onWriteError: (e) => errors.push(e.message),
          });
          store.syncWithServer(0);
          await store.store({ command: 'publish', topic: 't', data: 'one' });
          const closing = store.close();
          store.discardUpTo(1); // a persisted ack arriving as the page closes the store
          await closing;
          const again = await api.IndexedDbPublishStore.open('change-while-closing');
          const left = { lastPersisted: again.lastPersisted(), unpersisted: again.unpersistedCount() };
          await again.close();
          return { errors, left };
        },
        undefined,
      );
      // Written with the rest before the database closed, not reported as a failed write.
      expect(errors).toEqual({ errors: [], left: { lastPersisted: 1, unpersisted: 0 } });
    });
  });

  describe('the back/forward cache', () => {
    let cached: BrowserPage;
    beforeAll(async () => {
      cached = await openBrowserPage({
        entry: join(import.meta.dirname, 'pages', 'stores-page.ts'),
        backForwardCache: true,
        files: { '/elsewhere': { body: '<!doctype html><p>elsewhere</p>', type: 'text/html' } },
      });
    }, 60_000);
    afterAll(() => cached?.close());

    async function tab(): Promise<Page> {
      const page = await cached.context.newPage();
      await page.goto(cached.url);
      await page.waitForFunction(() => (globalThis as { __entryLoaded?: boolean }).__entryLoaded === true);
      return page;
    }
    const away = async (page: Page) => {
      await page.evaluate(() => {
        (globalThis as { beforeTrip?: boolean }).beforeTrip = true;
      });
      await page.goto(`${cached.url}elsewhere`);
    };
    const back = async (page: Page) => {
      await page.goBack({ waitUntil: 'commit' });
      return page.evaluate(() => (globalThis as { beforeTrip?: boolean }).beforeTrip === true);
    };

    it('keeps a page holding a store, which comes back with it; another tab opening the database evicts the page', async () => {
      const first = await tab();
      await inPage(
        first,
        async (api) => {
          api.kept.store = await api.IndexedDbBookmarkStore.open('cached');
        },
        undefined,
      );
      await away(first);
      expect(await back(first), 'restored from the cache, store and all').toBe(true);
      expect(
        await inPage(
          first,
          async (api) => {
            const store = api.kept.store as IndexedDbBookmarkStore;
            store.persisted('feed', api.Bookmarks.EPOCH);
            await store.whenWritten();
            return store.getMostRecent('feed');
          },
          undefined,
        ),
      ).toBe('0');

      await away(first);
      const second = await tab();
      // The lock held by the cached page does not keep this one waiting.
      const opened = await inPage(
        second,
        async (api) => {
          const store = await api.IndexedDbBookmarkStore.open('cached', { waitForLock: true });
          const point = store.getMostRecent('feed');
          await store.close();
          return point;
        },
        undefined,
      );
      expect(opened).toBe('0');
      expect(await back(first), 'evicted from the cache, loaded again').toBe(false);
      await Promise.all([first.close(), second.close()]);
    });
  });
});
