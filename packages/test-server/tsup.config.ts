import { libraryConfig } from '@amps-ts/config/tsup';

// The CLI is a second entry (bin/amps-test-server.mjs imports dist/cli.js); only the library has types.
export default libraryConfig({ entry: ['src/index.ts', 'src/cli.ts'], dts: { entry: 'src/index.ts' } });
