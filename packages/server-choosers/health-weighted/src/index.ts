export type { ServerEntry } from '@amps-ts/core-protocol';
export type { CircuitState, HealthWeightedOptions, ServerHealth } from './health-weighted.js';
export { HealthWeightedChooser, healthWeighted } from './health-weighted.js';
