export type { BrokerStats, PeerStats, TopicStats } from './broker.js';
export type { TestCluster, TestClusterOptions } from './cluster.js';
export { startTestCluster } from './cluster.js';
export type { Filter } from './filter.js';
export { compileFilter } from './filter.js';
export type {
  AuthOptions,
  HeartbeatOptions,
  PeerOptions,
  QueueOptions,
  SowTopicOptions,
  TestServerOptions,
} from './options.js';
export type { FaultProxy, FaultProxyOptions } from './proxy.js';
export { startFaultProxy } from './proxy.js';
export type { TestServerStats } from './server.js';
export { startTestServer, TestServer } from './server.js';
export { nameHash as clientNameHash } from './util.js';
