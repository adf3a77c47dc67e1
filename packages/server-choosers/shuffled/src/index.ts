export type { ServerEntry } from './servers.js';
export type { ShuffledOptions } from './shuffled.js';
export { ShuffledChooser, shuffled } from './shuffled.js';
