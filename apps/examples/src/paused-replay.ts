/**
 * Pausing a bookmark subscription: a journal reader subscribes paused while it gets ready (loads a
 * lookup table, say), resumes to get the whole journal in order, and, paused again for a while,
 * misses nothing: resumed, it gets what was published meanwhile first. `HAClient` keeps the paused
 * state, so a failover while paused brings the subscription back paused.
 *
 *   pnpm --filter @amps-ts/examples start paused-replay
 */
import assert from 'node:assert/strict';
import { Bookmarks } from '@amps-ts/core-protocol';
import { HAClient } from '@amps-ts/ha-client';
import { startTestServer } from '@amps-ts/test-server';
import { nodeTransport } from '@amps-ts/transport-node';

// A broker in this process. With real AMPS servers, list their URIs instead.
const server = await startTestServer();
const servers = [server.tcpUri()];
const reader = new HAClient('example-journal-reader', { transport: nodeTransport(), servers });
const writer = new HAClient('example-journal-writer', { transport: nodeTransport(), servers });

async function write(...entries: number[]): Promise<void> {
  for (const n of entries) writer.publish('journal', JSON.stringify({ n }));
  await writer.publishFlush(); // the server has them all
}

try {
  await Promise.all([reader.connectAndLogon(), writer.connectAndLogon()]);
  await write(1, 2, 3);

  const read: number[] = [];
  const waiting: Array<{ count: number; resolve: () => void }> = [];
  /** Resolves once the reader has read `count` entries. */
  const readUpTo = (count: number) =>
    new Promise<void>((resolve) => (read.length >= count ? resolve() : waiting.push({ count, resolve })));

  const journal = reader.subscribe('journal', {
    subId: 'journal-reader',
    bookmark: Bookmarks.EPOCH, // the whole journal
    options: { pause: true }, // nothing is delivered until resume()
    onMessage: (message) => {
      const { n } = message.json<{ n: number }>();
      console.log(`read entry ${n}`);
      read.push(n);
      for (const w of waiting.filter((w) => read.length >= w.count)) w.resolve();
    },
  });
  await journal.ready; // accepted, and paused

  console.log('subscribed paused: getting ready...');
  await reader.flush();
  assert.deepEqual(read, []);

  await reader.resume('journal-reader');
  await readUpTo(3);

  await reader.pause('journal-reader');
  console.log('paused; entries 4 and 5 are written meanwhile');
  await write(4, 5);
  await reader.flush(); // a round trip: anything delivered would be here by now
  assert.deepEqual(read, [1, 2, 3]);

  await reader.resume('journal-reader');
  await readUpTo(5);
  assert.deepEqual(read, [1, 2, 3, 4, 5]);
  console.log('resumed: nothing missed, nothing twice');
} finally {
  await Promise.all([reader.disconnect(), writer.disconnect()]);
  await server.close();
}
