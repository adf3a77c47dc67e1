export type { DecorrelatedJitterOptions, DecorrelatedJitterSettings } from './decorrelated-jitter.js';
export { DecorrelatedJitter, decorrelatedDelay, decorrelatedJitter } from './decorrelated-jitter.js';
