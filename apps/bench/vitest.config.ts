import { testConfig } from '@amps-ts/config/vitest';

export default testConfig();
