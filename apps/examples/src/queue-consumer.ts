/**
 * A queue consumer with acknowledgements: each message on a queue is leased to one consumer at a
 * time. Acknowledging it removes it from the queue; cancelling the lease (or the consumer going
 * away, or the lease running out) hands it out again.
 *
 *   pnpm --filter @amps-ts/examples start queue-consumer
 */
import assert from 'node:assert/strict';
import { Client } from '@amps-ts/core-protocol';
import { startTestServer } from '@amps-ts/test-server';
import { nodeTransport } from '@amps-ts/transport-node';

const server = await startTestServer({ queues: [{ topic: 'jobs', leaseMs: 30_000 }] });
const producer = new Client('example-producer', { transport: nodeTransport() });
const worker = new Client('example-worker', { transport: nodeTransport() });

try {
  await producer.connectAndLogon(server.tcpUri());
  await worker.connectAndLogon(server.tcpUri());
  for (let id = 1; id <= 5; id++) await producer.publish('jobs', JSON.stringify({ id }));

  // Up to two leased messages at once. (`autoAck: true` would acknowledge each once handled.)
  const jobs = worker.subscribe('jobs', { maxBacklog: 2 });
  const done: number[] = [];
  let deliveries = 0;
  let failedOnce = false;
  for await (const message of jobs) {
    deliveries++;
    const { id } = message.json<{ id: number }>();
    if (id === 3 && !failedOnce) {
      failedOnce = true;
      console.log(`job ${id}: failed, back to the queue`);
      worker.ack(message, { cancel: true }); // returns the lease: the job is delivered again
      continue;
    }
    console.log(`job ${id}: done`);
    worker.ack(message); // removes it from the queue
    done.push(id);
    if (done.length === 5) break;
  }
  await worker.flush(); // the server has processed the acknowledgements

  assert.deepEqual(
    done.sort((a, b) => a - b),
    [1, 2, 3, 4, 5],
  );
  assert.equal(deliveries, 6); // job 3 twice
  assert.deepEqual(server.stats().queues.jobs, { depth: 0, leased: 0 });
} finally {
  await Promise.all([producer.disconnect(), worker.disconnect()]);
  await server.close();
}
