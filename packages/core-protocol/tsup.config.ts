import { libraryConfig } from '@amps-ts/config/tsup';

// Two builds of one source: the `browser` export condition gets the compact codec (package.json
// `imports` with the `browser` condition, which esbuild applies for `platform: 'browser'`), with the
// same types as the default build.
export default [
  libraryConfig({ clean: ['!browser/**'] }),
  libraryConfig({ platform: 'browser', outDir: 'dist/browser', dts: false }),
];
