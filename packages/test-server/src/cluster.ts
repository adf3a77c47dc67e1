/** Several brokers replicating to each other (full mesh), started together. */
import { join } from 'node:path';
import { InvalidOptionsError, TimedOutError } from '@amps-ts/core-protocol';
import type { TestServerOptions } from './options.js';
import { startTestServer, type TestServer } from './server.js';

export interface TestClusterOptions
  extends Omit<TestServerOptions, 'name' | 'tcpPort' | 'wsPort' | 'dataDir' | 'peers'> {
  /** How many instances. @default 3 */
  count?: number;
  /** Replication mode of every link. @default 'sync' */
  replication?: 'sync' | 'async';
  /** Instance names are `<name>-1`, `<name>-2`, ... @default 'amps' */
  name?: string;
  /** Each instance keeps its log in `<dataDir>/<instance name>`. Without it, memory only. */
  dataDir?: string;
  /** Disable WebSocket listeners. @default false */
  noWebSocket?: boolean;
  /** How long to wait for every link to come up, in ms. @default 10000 */
  linkTimeoutMs?: number;
}

export interface TestCluster {
  readonly servers: readonly TestServer[];
  tcpUris(messageType?: string): string[];
  wsUris(messageType?: string): string[];
  /** Resolves when every running instance's replication links are connected. */
  linked(timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

/**
 * Starts `count` instances, then links each to every other one (ports are known only once they
 * listen) and waits until every link is connected.
 */
export async function startTestCluster(options: TestClusterOptions = {}): Promise<TestCluster> {
  const { count = 3, replication = 'sync', name = 'amps', dataDir, noWebSocket, linkTimeoutMs, ...shared } = options;
  if (!Number.isInteger(count) || count < 1) throw new InvalidOptionsError(`cluster count must be >= 1, got ${count}`);
  const servers: TestServer[] = [];
  const close = async () => {
    await Promise.all(servers.map((s) => s.close()));
  };
  try {
    for (let i = 1; i <= count; i++) {
      const instance = `${name}-${i}`;
      servers.push(
        await startTestServer({
          ...shared,
          name: instance,
          ...(noWebSocket ? { wsPort: false as const } : {}),
          ...(dataDir === undefined ? {} : { dataDir: join(dataDir, instance) }),
        }),
      );
    }
    for (const from of servers) {
      for (const to of servers) {
        if (from !== to) from.addPeer({ port: to.tcpPort, host: to.host, name: to.name, mode: replication });
      }
    }
    const cluster: TestCluster = {
      servers,
      tcpUris: (mt = 'json') => servers.map((s) => s.tcpUri(mt)),
      wsUris: (mt = 'json') => servers.map((s) => s.wsUri(mt)),
      linked: (timeoutMs = linkTimeoutMs ?? 10_000) => waitLinked(servers, timeoutMs),
      close,
    };
    await cluster.linked();
    return cluster;
  } catch (error) {
    await close();
    throw error;
  }
}

async function waitLinked(servers: readonly TestServer[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const running = servers.map((s) => s.stats()).filter((s) => s.state === 'running' && !s.frozen);
    if (running.every((s) => s.peers.every((p) => p.connected || !running.some((r) => r.name === p.name)))) return;
    if (Date.now() > deadline) throw new TimedOutError(`replication links not connected within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
