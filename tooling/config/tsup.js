import { defineConfig } from 'tsup';

/**
 * The build every published package shares: ESM + CJS with per-format declarations.
 * @param {import('tsup').Options} overrides
 */
export function libraryConfig(overrides = {}) {
  return defineConfig({
    entry: ['src/index.ts'],
    format: ['esm', 'cjs'],
    dts: true,
    sourcemap: true,
    clean: true,
    target: 'es2022',
    splitting: false,
    treeshake: true,
    ...overrides,
  });
}
