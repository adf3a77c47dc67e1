/**
 * Page entry for the IndexedDB store tests: the stores, an HAClient on browserTransport, and a
 * place to keep them between calls, on `globalThis.ampsStores`. Tests run functions in the page
 * against it; results cross the page boundary as plain JSON, errors as `{ name, code, message }`.
 */
import { AmpsError, Bookmarks } from '@amps-ts/core-protocol';
import { HAClient } from '@amps-ts/ha-client';
import { browserTransport } from '@amps-ts/transport-browser';
import { IndexedDbBookmarkStore, IndexedDbPublishStore } from '../../src/index.js';
import { bookmarkModel, failNextWrite, publishModel } from './models.js';

export interface ErrorInfo {
  name: string;
  code: string | undefined;
  message: string;
}

const api = {
  IndexedDbBookmarkStore,
  IndexedDbPublishStore,
  Bookmarks,
  publishModel,
  bookmarkModel,
  failNextWrite,

  /** An HAClient on browserTransport with the given stores, and no heartbeats. */
  client(
    name: string,
    uris: string | string[],
    stores: { publishStore?: IndexedDbPublishStore; bookmarkStore?: IndexedDbBookmarkStore },
  ) {
    const servers = typeof uris === 'string' ? [uris] : uris;
    return new HAClient(name, { transport: browserTransport(), servers, heartbeat: false, ...stores });
  },

  errorInfo(error: unknown): ErrorInfo {
    const e = error as Error;
    return { name: e.name, code: AmpsError.isInstance(e) ? e.code : undefined, message: e.message };
  },

  /** What the tests keep between calls (clients, stores, what arrived). */
  kept: {} as Record<string, unknown>,
};

export type StoresPageApi = typeof api;

(globalThis as { ampsStores?: StoresPageApi }).ampsStores = api;
(globalThis as { __entryLoaded?: boolean }).__entryLoaded = true;
