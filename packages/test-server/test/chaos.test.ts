/**
 * Kills, freezes and restarts instances of a sync cluster while a publisher that behaves like an HA
 * client (store until persisted, fail over, republish above the logon `s`) keeps publishing. In the
 * end every instance must hold the whole stream once, in order.
 */
import type { Message } from '@amps-ts/core-protocol';
import { expect, it } from 'vitest';
import { startTestCluster, type TestServer } from '../src/index.js';
import { isDelivery, TestClient } from './helpers.js';

function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Publishes 1..total with persisted acks, failing over across `uris` until all are persisted. */
async function haPublisher(uris: readonly string[], total: number): Promise<number> {
  const store = new Map<number, string>();
  let next = 1;
  let failovers = 0;
  for (let attempt = 0; ; attempt++) {
    const uri = uris[attempt % uris.length] as string;
    let c: TestClient | undefined;
    try {
      c = await TestClient.connect(uri);
      const cid = c.command({ command: 'logon', clientName: 'chaos-pub', ackType: 'processed' });
      const logon = await c.take((m) => m.commandId === cid, 'logon', 300);
      const discard = (upTo: number) => {
        for (const seq of store.keys()) if (seq <= upTo) store.delete(seq);
      };
      discard(logon.sequence ?? 0);
      for (const [seq, body] of store)
        c.send({ command: 'publish', topic: 'chaos', sequence: seq, ackType: 'persisted', data: body });
      for (;;) {
        while (next <= total && store.size < 20) {
          const body = JSON.stringify({ n: next });
          store.set(next, body);
          c.send({ command: 'publish', topic: 'chaos', sequence: next, ackType: 'persisted', data: body });
          next++;
        }
        if (store.size === 0) {
          await c.close();
          return failovers;
        }
        const ack = await c.take((m: Message) => m.ackType === 'persisted', 'persisted ack', 300);
        discard(ack.sequence ?? 0);
      }
    } catch {
      failovers++;
      await c?.close();
      await pause(2);
    }
  }
}

it('survives kills, freezes and restarts with every message on every instance once, in order', async () => {
  const cluster = await startTestCluster({ name: 'chaos', count: 3, noWebSocket: true });
  const servers = cluster.servers as TestServer[];
  const rand = random(20240601);
  let done = false;
  let actions = 0;
  const chaos = (async () => {
    while (!done) {
      await pause(10 + rand() * 40);
      const victim = servers[Math.floor(rand() * servers.length)] as TestServer;
      const action = rand();
      actions++;
      if (action < 0.3) {
        await victim.kill();
        await pause(rand() * 30);
        await victim.restart();
      } else if (action < 0.6) {
        victim.freeze();
        await pause(rand() * 30);
        victim.thaw();
      } else if (action < 0.8) {
        await victim.restart();
      } else {
        victim.dropConnections();
      }
    }
  })();
  try {
    const total = 3000;
    const failovers = await haPublisher(cluster.tcpUris(), total);
    done = true;
    await chaos;
    expect(failovers).toBeGreaterThan(0);
    expect(actions).toBeGreaterThan(10);
    await cluster.linked();
    for (const server of servers) {
      const reader = await TestClient.connect(server.tcpUri());
      await reader.logon(`reader-${server.name}`);
      const cid = reader.command({ command: 'subscribe', topic: 'chaos', bookmark: '0', ackType: 'completed' });
      await reader.ack(cid, 'completed');
      const got = reader.takeAll(isDelivery(cid)).map((m) => (m.json() as { n: number }).n);
      expect(got, server.name).toEqual(Array.from({ length: total }, (_, i) => i + 1));
      await reader.close();
    }
  } finally {
    done = true;
    await chaos;
    await cluster.close();
  }
}, 30_000);
