export type { CircuitState, HealthWeightedOptions, ServerHealth } from './health-weighted.js';
export { HealthWeightedChooser, healthWeighted } from './health-weighted.js';
export type { ServerEntry } from './servers.js';
