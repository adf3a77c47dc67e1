import type { Message } from '@amps-ts/core-protocol';
import { startTestServer, type TestServer } from '@amps-ts/test-server';
import { nodeTransport } from '@amps-ts/transport-node';
import { describe, expect, it } from 'vitest';
import { HAClient, type HAClientOptions, MemorySubscriptionManager } from '../src/index.js';
import { cleanups, stateWhere } from './helpers.js';

/* Exactly-once edge cases: a subscription's id taken again, recovery and publishing interleaved. */

async function server(): Promise<TestServer> {
  const s = await startTestServer({ sowTopics: [] });
  cleanups.push(() => s.close());
  return s;
}

function client(name: string, uri: string, extra: Partial<HAClientOptions> = {}): HAClient {
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

/** Topics a handler has seen. */
function topics() {
  const seen: string[] = [];
  return { seen, onMessage: (m: Message) => void seen.push(m.topic as string) };
}

/**
 * Publishes one message to each of `topics`, then one to a sentinel topic `ha` subscribes to:
 * resolves once the sentinel arrives, after anything published before it would have.
 */
async function publishThenSentinel(ha: HAClient, uri: string, topicNames: string[]): Promise<void> {
  let arrived!: () => void;
  const sentinel = new Promise<void>((resolve) => {
    arrived = resolve;
  });
  const watch = ha.subscribe('sentinel', { onMessage: () => arrived() });
  await watch.ready;
  const publisher = client(`${ha.name}-pub`, uri);
  await publisher.connectAndLogon();
  for (const topic of [...topicNames, 'sentinel']) publisher.publish(topic, '{}');
  await sentinel;
}

describe('HAClient: a sub_id taken again by a new subscription', () => {
  it('enters the new subscription, not the old one, when the id is taken again before the old one was entered', async () => {
    const s = await server();
    const ha = client('sub-id-again', s.tcpUri('json'));
    await ha.connectAndLogon();
    const handler = topics();
    const old = ha.subscribe('old', { subId: 'X', onMessage: handler.onMessage });
    void old.unsubscribe();
    const fresh = ha.subscribe('new', { subId: 'X', onMessage: handler.onMessage });
    await fresh.ready;
    await publishThenSentinel(ha, s.tcpUri('json'), ['old', 'new']);
    expect(handler.seen).toEqual(['new']);
  });

  it('resubscribes the new subscription, not the old one, when the id is taken again during a recovery', async () => {
    const s = await server();
    const ha = client('sub-id-recovery', s.tcpUri('json'), {
      // One at a time: X's resubscribe goes out after A's ack, where the id is taken again.
      subscriptionManager: new MemorySubscriptionManager({ maxInFlight: 1 }),
    });
    const handler = topics();
    let recovering = false;
    let swapped = false;
    ha.subscribe('a', {
      subId: 'A',
      onMessage: () => {},
      onAck: () => {
        if (!recovering || swapped) return;
        swapped = true;
        void ha.unsubscribe('X');
        ha.subscribe('new', { subId: 'X', onMessage: handler.onMessage });
      },
    });
    const x = ha.subscribe('old', { subId: 'X', onMessage: handler.onMessage });
    await ha.connectAndLogon();
    await x.ready;
    recovering = true;
    const resubscribed = stateWhere(ha, (e) => e.state === 'Resubscribed');
    s.dropConnections();
    await resubscribed;
    expect(swapped).toBe(true);
    await ha.flush();
    await publishThenSentinel(ha, s.tcpUri('json'), ['old', 'new']);
    expect(handler.seen).toEqual(['new']);
  });
});
