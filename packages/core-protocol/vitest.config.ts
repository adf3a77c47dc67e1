import { sourceConditions, testConfig } from '@amps-ts/config/vitest';

const base = testConfig();
/** Resolves package.json `imports` (`#header`, `#encoder`) to the compact codec, as bundlers do for browsers. */
const browserConditions = ['browser', ...sourceConditions];

export default {
  test: {
    projects: [
      { ...base, test: { ...base.test, name: 'core-protocol' } },
      {
        // The codec has two builds with one behaviour: the same codec tests run against the compact one.
        ...base,
        resolve: { conditions: browserConditions },
        ssr: { resolve: { conditions: browserConditions, externalConditions: ['@amps-ts/source'] } },
        test: {
          ...base.test,
          name: 'compact codec',
          include: [
            'test/codec.test.ts',
            'test/codec.property.test.ts',
            'test/codec-builds.test.ts',
            'test/encoder.test.ts',
            'test/framing.test.ts',
          ],
          env: { AMPS_TS_CODEC: 'compact' },
        },
      },
    ],
  },
};
