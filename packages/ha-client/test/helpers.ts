/** What the HAClient test files share: cleanup after each test, and waiting for a state event. */
import { afterEach } from 'vitest';
import type { HAClient, HAStateEvent } from '../src/index.js';

/** Run after each test, last added first (clients before the brokers they are on). */
export const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
});

/** Resolves when `predicate` holds for a state event (checked as events arrive, no polling). */
export function stateWhere(ha: HAClient, predicate: (e: HAStateEvent) => boolean): Promise<HAStateEvent> {
  return new Promise((resolve) => {
    const stop = ha.onStateChange((e) => {
      if (predicate(e)) {
        stop();
        resolve(e);
      }
    });
  });
}
