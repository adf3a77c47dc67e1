export type { ServerEntry } from '@amps-ts/core-protocol';
export type { PriorityFailbackOptions } from './priority.js';
export { PriorityFailbackChooser, priorityFailback } from './priority.js';
