/**
 * What the HAClient test files share: cleanup after each test, a broker and a client cleaned up
 * with it, and waiting for a state event.
 */
import { startTestServer, type TestServer } from '@amps-ts/test-server';
import { nodeTransport } from '@amps-ts/transport-node';
import { afterEach } from 'vitest';
import { HAClient, type HAClientOptions, type HAStateEvent } from '../src/index.js';

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

/** A broker without SOW topics, closed after the test. */
export async function server(): Promise<TestServer> {
  const s = await startTestServer({ sowTopics: [] });
  cleanups.push(() => s.close());
  return s;
}

/** An HAClient on one server, without heartbeats, disconnected after the test. */
export function client(name: string, uri: string, extra: Partial<HAClientOptions> = {}): HAClient {
  const ha = new HAClient(name, {
    transport: nodeTransport(),
    servers: [uri],
    heartbeat: false,
    connectTimeoutMs: 1000,
    ...extra,
  });
  cleanups.push(() => ha.disconnect());
  return ha;
}

/** The records of `orders` as `n:v`, sorted, from a SOW query through `ha`. */
export async function records(ha: HAClient): Promise<string[]> {
  const found: string[] = [];
  for await (const m of ha.sow('orders')) {
    const { n, v } = m.json<{ n: number; v: number }>();
    found.push(`${n}:${v}`);
  }
  return found.sort();
}
