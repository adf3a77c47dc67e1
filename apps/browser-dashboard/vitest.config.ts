import { testConfig } from '@amps-ts/config/vitest';

export default testConfig({ testTimeout: 30_000, hookTimeout: 30_000 });
