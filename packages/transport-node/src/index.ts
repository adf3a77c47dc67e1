export type { NodeConnection } from './connection.js';
export {
  DEFAULT_CLOSE_TIMEOUT_MS,
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_HIGH_WATER_MARK,
  DEFAULT_LOW_WATER_MARK,
  type NodeTlsOptions,
  type NodeTransportOptions,
} from './options.js';
export { type NodeTransport, nodeTransport } from './transport.js';
