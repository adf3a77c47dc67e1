export type { DatabaseOptions } from './database.js';
export { IndexedDbBookmarkStore, type IndexedDbBookmarkStoreOptions } from './indexeddb-bookmark-store.js';
export { IndexedDbPublishStore, type IndexedDbPublishStoreOptions } from './indexeddb-publish-store.js';
