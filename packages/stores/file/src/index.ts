export { FileBookmarkStore, type FileBookmarkStoreOptions } from './file-bookmark-store.js';
export { FilePublishStore, type FilePublishStoreOptions } from './file-publish-store.js';
