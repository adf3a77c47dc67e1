export type { BrowserConnection } from './connection.js';
export {
  type BrowserTransportOptions,
  DEFAULT_CLOSE_TIMEOUT_MS,
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_DRAIN_POLL_MS,
  DEFAULT_HIGH_WATER_MARK,
  DEFAULT_LOW_WATER_MARK,
  type PageEventSource,
} from './options.js';
export { type BrowserTransport, browserTransport } from './transport.js';
