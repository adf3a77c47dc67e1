/**
 * Publish and subscribe: one client subscribes to a topic with a content filter, another publishes
 * to it, and the subscriber gets only the messages its filter matches.
 *
 *   pnpm --filter @amps-ts/examples start publish-subscribe
 */
import assert from 'node:assert/strict';
import { Client } from '@amps-ts/core-protocol';
import { startTestServer } from '@amps-ts/test-server';
import { nodeTransport } from '@amps-ts/transport-node';

// A broker in this process. With a real AMPS server, use its URI instead (tcp://host:9007/amps/json).
const server = await startTestServer();
const subscriber = new Client('example-subscriber', { transport: nodeTransport() });
const publisher = new Client('example-publisher', { transport: nodeTransport() });

try {
  await subscriber.connectAndLogon(server.tcpUri());
  await publisher.connectAndLogon(server.tcpUri());

  const largeOrders = subscriber.subscribe('orders', { filter: '/qty >= 100' });
  await largeOrders.ready; // the server has the subscription: nothing published from now on is missed

  for (const [id, qty] of [
    [1, 50],
    [2, 500],
    [3, 120],
    [4, 10],
  ]) {
    await publisher.publish('orders', JSON.stringify({ id, qty })); // a promise only when the send buffer is full
  }

  const received: number[] = [];
  for await (const message of largeOrders) {
    const order = message.json<{ id: number; qty: number }>();
    console.log(`order ${order.id}: qty ${order.qty}`);
    received.push(order.id);
    if (received.length === 2) break; // leaving the loop unsubscribes
  }
  assert.deepEqual(received, [2, 3]);
} finally {
  await Promise.all([subscriber.disconnect(), publisher.disconnect()]);
  await server.close();
}
