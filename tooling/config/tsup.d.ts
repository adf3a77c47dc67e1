import type { Options } from 'tsup';
export declare function libraryConfig(overrides?: Options): ReturnType<typeof import('tsup').defineConfig>;
