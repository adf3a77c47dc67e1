export type { HAClientOptions, HAStateEvent, HeartbeatOptions } from './ha-client.js';
export { HAClient } from './ha-client.js';
export { MemoryBookmarkStore, type MemoryBookmarkStoreOptions, resumeRecoveryPoint } from './memory-bookmark-store.js';
export type { MemoryPublishStoreOptions, PublishStoreState } from './memory-publish-store.js';
export { MemoryPublishStore } from './memory-publish-store.js';
export type { MemorySubscriptionManagerOptions } from './subscription-manager.js';
export { MemorySubscriptionManager } from './subscription-manager.js';
