/**
 * Headless Chromium for the dashboard test (Debian's `/usr/bin/chromium`, or `CHROMIUM_PATH`),
 * driven by playwright-core, with a fresh profile directory per launch.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BrowserContext, chromium } from 'playwright-core';

export const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/**
 * Whether the browser test runs. Without Chromium it is skipped, and says why in its title;
 * under CI (`CI` set) it runs anyway, and fails.
 */
export function chromiumStatus(): { run: boolean; title(name: string): string } {
  const run = existsSync(chromiumPath) || Boolean(process.env.CI);
  const reason = `SKIPPED: no Chromium at ${chromiumPath} (apt-get install -y chromium, or set CHROMIUM_PATH; with CI set this test runs and fails)`;
  if (!run) console.warn(`[browser-dashboard] ${reason}`);
  return { run, title: (name) => (run ? name : `${name} (${reason})`) };
}

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
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
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
