import type { ViteUserConfig } from 'vitest/config';
export declare const sourceConditions: string[];
export declare function testConfig(overrides?: ViteUserConfig['test']): ViteUserConfig;
