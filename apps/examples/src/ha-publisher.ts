/**
 * An HA publisher that survives a broker restart. `HAClient` keeps every publish in its publish
 * store until the broker has persisted it; when the broker goes away it keeps accepting publishes,
 * reconnects once the broker is back, and republishes whatever was not persisted. The broker
 * drops the copies it already had, so each message is in its transaction log exactly once, in order.
 *
 *   pnpm --filter @amps-ts/examples start ha-publisher
 */
import assert from 'node:assert/strict';
import { setTimeout } from 'node:timers/promises';
import { Bookmarks, Client } from '@amps-ts/core-protocol';
import { fixedDelay } from '@amps-ts/delay-fixed';
import { HAClient } from '@amps-ts/ha-client';
import { startTestServer } from '@amps-ts/test-server';
import { nodeTransport } from '@amps-ts/transport-node';

const server = await startTestServer();
const publisher = new HAClient('example-ha-publisher', {
  transport: nodeTransport(),
  servers: [server.tcpUri()], // list every replica here; one is enough to show a restart
  delay: fixedDelay({ delayMs: 100 }),
});
publisher.onStateChange((e) => console.log(`publisher: ${e.state} ${e.reason ?? ''}`));
const reader = new Client('example-reader', { transport: nodeTransport() });

try {
  await publisher.connectAndLogon();
  const count = 1000;
  for (let n = 1; n <= count; n++) {
    if (n === 400) await server.kill(); // a crash, mid-stream: what was in flight is lost
    if (n === 700) {
      console.log(`broker down: ${publisher.publishStore?.unpersistedCount()} messages wait in the publish store`);
      await server.restart();
    }
    // Stored first, then sent when connected; a promise means "wait": the store or the socket is full.
    await publisher.publish('orders', JSON.stringify({ n }));
    if (n % 50 === 0) await setTimeout(5); // publishing over time, not all at once
  }
  await publisher.publishFlush(10_000); // resolves once the broker has persisted every message

  // Read the topic back from the start of the transaction log.
  await reader.connectAndLogon(server.tcpUri());
  const logged: number[] = [];
  await new Promise<void>((resolve, reject) => {
    const replay = reader.subscribe('orders', {
      bookmark: Bookmarks.EPOCH,
      ackTypes: ['completed'], // sent once the replay has caught up with the log
      onAck: (ack) => {
        if (ack.ackType === 'completed') resolve();
      },
      onMessage: (m) => {
        logged.push(m.json<{ n: number }>().n);
      },
    });
    replay.ready.catch(reject);
  });
  assert.deepEqual(
    logged,
    Array.from({ length: count }, (_, i) => i + 1),
  );
  console.log(`the log holds 1..${count}, each once, in order`);
} finally {
  await Promise.all([publisher.disconnect(), reader.disconnect()]);
  await server.close();
}
