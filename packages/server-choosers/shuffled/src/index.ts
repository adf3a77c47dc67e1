export type { ServerEntry } from '@amps-ts/core-protocol';
export type { ShuffledOptions } from './shuffled.js';
export { ShuffledChooser, shuffled } from './shuffled.js';
