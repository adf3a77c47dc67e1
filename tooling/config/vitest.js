import { defaultServerConditions } from 'vite';

/** Tests read sibling packages from `src` through the `@amps-ts/source` export condition. */
export const sourceConditions = ['@amps-ts/source', ...defaultServerConditions];

/**
 * @param {import('vitest/config').ViteUserConfig['test']} overrides
 * @returns {import('vitest/config').ViteUserConfig}
 */
export function testConfig(overrides = {}) {
  return {
    resolve: { conditions: sourceConditions },
    ssr: { resolve: { conditions: sourceConditions, externalConditions: ['@amps-ts/source'] } },
    test: {
      include: ['test/**/*.test.ts', 'src/**/*.test.ts'],
      passWithNoTests: true,
      testTimeout: 20_000,
      hookTimeout: 20_000,
      ...overrides,
    },
  };
}
