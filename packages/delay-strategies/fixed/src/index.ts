export type { FixedDelayOptions } from './fixed.js';
export { FixedDelay, fixedDelay } from './fixed.js';
