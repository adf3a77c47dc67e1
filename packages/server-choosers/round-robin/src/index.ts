export type { ServerEntry } from '@amps-ts/core-protocol';
export type { RoundRobinOptions } from './round-robin.js';
export { RoundRobinChooser, roundRobin } from './round-robin.js';
