export type { RoundRobinOptions } from './round-robin.js';
export { RoundRobinChooser, roundRobin } from './round-robin.js';
export type { ServerEntry } from './servers.js';
