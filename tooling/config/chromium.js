// Headless Chromium for the workspace's browser tests: where it is, how it is launched, and
// whether the tests run at all. Launching stays with each test (through playwright-core).
import { existsSync } from 'node:fs';

/** Where Chromium is: `CHROMIUM_PATH`, else Debian's `/usr/bin/chromium`. */
export const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Arguments for a quiet, sandbox-free headless run on a CI machine with loopback only. */
export const chromiumArgs = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/**
 * Whether Chromium is there. Without it the browser tests are skipped with a visible reason,
 * except under CI (`CI` set), where a missing browser fails instead.
 *
 * @param {string} label who is asking, for the warning printed when skipping
 * @returns {import('./chromium.d.ts').ChromiumStatus}
 */
export function chromiumStatus(label) {
  const run = existsSync(chromiumPath) || Boolean(process.env.CI);
  const reason = run
    ? undefined
    : `SKIPPED: no Chromium at ${chromiumPath} (apt-get install -y chromium, or set CHROMIUM_PATH; with CI set the browser tests run and fail)`;
  if (reason) console.warn(`[${label}] ${reason}`);
  return { run, reason, title: (name) => (reason ? `${name} (${reason})` : name) };
}
