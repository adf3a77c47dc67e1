export type { ExponentialBackoffOptions, ExponentialDelaySettings, JitterMode } from './exponential.js';
export {
  ExponentialBackoff,
  exponentialBackoff,
  exponentialDelay,
  recommendedBackoff,
  recommendedBackoffOptions,
} from './exponential.js';
