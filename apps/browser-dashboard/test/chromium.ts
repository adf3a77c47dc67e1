/**
 * Headless Chromium for the dashboard test (Debian's `/usr/bin/chromium`, or `CHROMIUM_PATH`),
 * driven by playwright-core, with a fresh profile directory per launch.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromiumArgs, chromiumPath } from '@amps-ts/config/chromium';
import { type BrowserContext, chromium } from 'playwright-core';

export interface Browser {
  context: BrowserContext;
  close(): Promise<void>;
}

export async function launchChromium(): Promise<Browser> {
  const profile = mkdtempSync(join(tmpdir(), 'amps-ts-dashboard-'));
  try {
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: chromiumPath,
      headless: true,
      viewport: { width: 1100, height: 720 },
      args: chromiumArgs,
      // Playwright turns the back/forward cache off; the dashboard must survive it, so keep it on.
      ignoreDefaultArgs: ['--disable-back-forward-cache'],
    });
    return {
      context,
      async close() {
        await context.close();
        rmSync(profile, { recursive: true, force: true });
      },
    };
  } catch (error) {
    rmSync(profile, { recursive: true, force: true });
    throw error;
  }
}
