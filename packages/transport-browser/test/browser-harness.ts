/**
 * Runs code in a real Chromium: bundles a page entry from source with esbuild, serves it from a
 * tiny HTTP server on 127.0.0.1 (port 0), opens it in headless Chromium through playwright-core,
 * and hands back the page plus one cleanup function. The entry must end with
 * `globalThis.__entryLoaded = true` (it cannot import this file: this file is Node-only).
 *
 * Reusable by any package's browser tests:
 *
 * ```ts
 * const chromium = chromiumStatus('my-package'); // from @amps-ts/config/chromium
 * describe.skipIf(!chromium.run)(chromium.title('my page'), () => {
 *   let browser: BrowserPage;
 *   beforeAll(async () => { browser = await openBrowserPage({ entry: join(import.meta.dirname, 'my-page.ts') }); });
 *   afterAll(() => browser?.close());
 *   it('works', async () => expect(await browser.page.evaluate(() => window.myApi.run())).toBe(42));
 * });
 * ```
 */
import { mkdtempSync, rmSync } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromiumArgs, chromiumPath } from '@amps-ts/config/chromium';
import { build } from 'esbuild';
import { type BrowserContext, chromium, type Page } from 'playwright-core';

export interface BrowserPageOptions {
  /** Absolute path of the page's TypeScript entry; bundled with the `@amps-ts/source` condition. */
  entry: string;
  /** Page title. @default 'amps-ts browser test' */
  title?: string;
  /** Extra routes served beside the page (path -> body). */
  files?: Record<string, { body: string | Buffer; type: string }>;
  /**
   * Keep the back/forward cache on (Playwright turns it off), and serve without
   * `cache-control: no-store`, which keeps pages out of it. @default false
   */
  backForwardCache?: boolean;
}

export interface BrowserPage {
  page: Page;
  context: BrowserContext;
  /** The page's URL (`http://127.0.0.1:<port>/`). */
  url: string;
  /** Uncaught errors thrown in the page, in order. */
  pageErrors: Error[];
  /** Closes the browser, the HTTP server and the profile directory. */
  close(): Promise<void>;
}

/** Bundles `entry`, serves it, launches Chromium on it, and waits until the page has loaded. */
export async function openBrowserPage(options: BrowserPageOptions): Promise<BrowserPage> {
  const bundle = await build({
    entryPoints: [options.entry],
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    conditions: ['@amps-ts/source'],
    sourcemap: 'inline',
    logLevel: 'silent',
  });
  const script = bundle.outputFiles[0]?.contents ?? new Uint8Array();
  const html = `<!doctype html><html><head><meta charset="utf-8"><title>${options.title ?? 'amps-ts browser test'}</title></head><body><script type="module" src="/entry.js"></script></body></html>`;
  const files: Record<string, { body: string | Uint8Array; type: string }> = {
    '/': { body: html, type: 'text/html; charset=utf-8' },
    '/entry.js': { body: script, type: 'text/javascript; charset=utf-8' },
    '/favicon.ico': { body: '', type: 'image/x-icon' },
    ...options.files,
  };
  const server = http.createServer((request, response) => {
    const file = files[new URL(request.url ?? '/', 'http://x').pathname];
    if (!file) {
      response.writeHead(404).end();
      return;
    }
    const caching = options.backForwardCache ? {} : { 'cache-control': 'no-store' };
    response.writeHead(200, { 'content-type': file.type, ...caching }).end(file.body);
  });
  server.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;

  const profile = mkdtempSync(join(tmpdir(), 'amps-ts-chromium-'));
  const closeServer = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: chromiumPath,
      headless: true,
      args: chromiumArgs,
      ...(options.backForwardCache ? { ignoreDefaultArgs: ['--disable-back-forward-cache'] } : {}),
    });
  } catch (error) {
    await closeServer();
    rmSync(profile, { recursive: true, force: true });
    throw error;
  }
  const page = context.pages()[0] ?? (await context.newPage());
  const pageErrors: Error[] = [];
  page.on('pageerror', (error) => pageErrors.push(error));
  await page.goto(url);
  // The entry is a module script: wait until it has run.
  await page.waitForFunction(() => (globalThis as { __entryLoaded?: boolean }).__entryLoaded === true, undefined, {
    timeout: 10_000,
  });

  return {
    page,
    context,
    url,
    pageErrors,
    async close() {
      await context.close();
      await closeServer();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
