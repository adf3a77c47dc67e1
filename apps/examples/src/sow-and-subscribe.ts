/**
 * SOW and subscribe: a SOW topic keeps the latest message per key (here, per symbol).
 * `sowAndSubscribe` returns the current records, then live updates, in one atomic step: no update
 * falls between the query and the subscription.
 *
 *   pnpm --filter @amps-ts/examples start sow-and-subscribe
 */
import assert from 'node:assert/strict';
import { Client } from '@amps-ts/core-protocol';
import { startTestServer } from '@amps-ts/test-server';
import { nodeTransport } from '@amps-ts/transport-node';

interface Price {
  symbol: string;
  price: number;
}

const server = await startTestServer({ sowTopics: [{ topic: 'prices', key: '/symbol' }] });
const client = new Client('example-sow', { transport: nodeTransport() });

try {
  await client.connectAndLogon(server.tcpUri());
  for (const tick of [
    { symbol: 'ACME', price: 10 },
    { symbol: 'INIT', price: 52 },
    { symbol: 'ACME', price: 11 }, // replaces ACME's record
  ]) {
    await client.publish('prices', JSON.stringify(tick));
  }
  await client.flush(); // the server has processed all three

  // A one-off query: the records as they are now.
  const { records } = await client.sow('prices', { filter: "/symbol = 'ACME'" }).toArray();
  assert.deepEqual(
    records.map((r) => r.json<Price>()),
    [{ symbol: 'ACME', price: 11 }],
  );

  // The query and a subscription in one: the records between group_begin and group_end, then updates.
  const prices = new Map<string, number>();
  for await (const message of client.sowAndSubscribe('prices')) {
    if (message.command === 'group_begin' || message.command === 'group_end') {
      console.log(`${message.command}: ${JSON.stringify(Object.fromEntries(prices))}`);
      if (message.command === 'group_end') {
        await client.publish('prices', JSON.stringify({ symbol: 'INIT', price: 53 }));
      }
      continue;
    }
    const { symbol, price } = message.json<Price>(); // a `sow` record, then a live `publish`
    console.log(`${message.command}: ${symbol} ${price}`);
    prices.set(symbol, price);
    if (message.command === 'publish') break;
  }
  assert.deepEqual(Object.fromEntries(prices), { ACME: 11, INIT: 53 });
} finally {
  await client.disconnect();
  await server.close();
}
