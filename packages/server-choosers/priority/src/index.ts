export type { PriorityFailbackOptions } from './priority.js';
export { PriorityFailbackChooser, priorityFailback } from './priority.js';
export type { ServerEntry } from './servers.js';
