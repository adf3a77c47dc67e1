import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'vitest';

/** Run after each test, last first (stores closed before their folders go). */
export const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A path in a new folder, removed after the test. */
export function tempFile(name = 'test.store'): string {
  const dir = mkdtempSync(join(tmpdir(), 'amps-ts-store-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, name);
}
