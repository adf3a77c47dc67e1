export { FilePublishStore, type FilePublishStoreOptions } from './file-publish-store.js';
