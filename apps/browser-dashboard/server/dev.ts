/**
 * `pnpm --filter @amps-ts/browser-dashboard dev`: two replicated test brokers, the ticker
 * publisher, and the page on Vite's dev server. Open the printed URL, then kill and restart the
 * brokers from this terminal and watch the page fail over.
 */
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { startTestCluster } from '@amps-ts/test-server';
import { createServer } from 'vite';
import { startTicker } from './ticker.js';

const root = join(import.meta.dirname, '..');
const cluster = await startTestCluster({ count: 2, replication: 'sync', persistedAckIntervalMs: 100 });
const ticker = await startTicker({ servers: cluster.tcpUris() });
const vite = await createServer({ root, configFile: join(root, 'vite.config.ts') });
await vite.listen();

const names = ['a', 'b'];
const page = `${vite.resolvedUrls?.local[0] ?? 'http://127.0.0.1:5173/'}?servers=${cluster.wsUris().join(',')}`;
console.log(`brokers  ${cluster.servers.map((s, i) => `${names[i]?.toUpperCase()}=${s.wsUri()}`).join('  ')}`);
console.log(`ticker   publishing to ${ticker.client.uri}`);
console.log(`\nopen     ${page}\n`);
console.log('type a or b (then Enter) to kill or restart that broker, q to quit');

async function quit(): Promise<void> {
  await ticker.stop().catch(() => {});
  await vite.close();
  await cluster.close();
  process.exit(0);
}

const down = new Set<string>();
async function toggle(key: string): Promise<void> {
  const server = cluster.servers[names.indexOf(key)];
  if (!server) return console.log('a, b or q');
  if (down.delete(key)) {
    await server.restart();
    console.log(`${key.toUpperCase()} restarted`);
  } else {
    down.add(key);
    await server.kill();
    console.log(`${key.toUpperCase()} killed`);
  }
}

createInterface({ input: process.stdin }).on('line', (line) => {
  const key = line.trim().toLowerCase();
  void (key === 'q' ? quit() : toggle(key)).catch((error: Error) => console.error(error.message));
});
process.once('SIGINT', () => void quit());
