/**
 * A subscriber process killed with SIGKILL, then started again, resumes where its processing got
 * to, not from the start: its `FileBookmarkStore` (from `@amps-ts/store-file`) keeps each
 * subscription's recovery point in a file, and a subscription from `Bookmarks.MOST_RECENT` with
 * the same `subId` starts there. The subscriber processes are this file, run again as a child.
 *
 *   pnpm --filter @amps-ts/examples start resuming-subscriber
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Bookmarks, Client } from '@amps-ts/core-protocol';
import { HAClient } from '@amps-ts/ha-client';
import { FileBookmarkStore } from '@amps-ts/store-file';
import { startTestServer } from '@amps-ts/test-server';
import { nodeTransport } from '@amps-ts/transport-node';

const [mode, uri, storeFile] = process.argv.slice(2);
if (mode === '--subscriber') await subscriber(uri as string, storeFile as string);
else await main();

/** The subscriber process: "processes" each message of `orders` by printing its `n`. */
async function subscriber(uri: string, storeFile: string): Promise<void> {
  const client = new HAClient('example-resuming-subscriber', {
    transport: nodeTransport(),
    servers: [uri],
    // writeThrough: the recovery point is written in each discard, not once per event-loop turn.
    bookmarkStore: new FileBookmarkStore(storeFile, { writeThrough: true }),
  });
  await client.connectAndLogon();
  client.subscribe('orders', {
    subId: 'orders-all', // the same on every run
    bookmark: Bookmarks.MOST_RECENT, // the store's recovery point; the first time, the start of the log
    onMessage: (message) => {
      process.stdout.write(`${message.json<{ n: number }>().n}\n`);
    },
  });
}

async function main(): Promise<void> {
  const server = await startTestServer();
  const dir = mkdtempSync(join(tmpdir(), 'amps-ts-example-'));
  const storeFile = join(dir, 'orders-subscriber.bookmarks');
  const publisher = new Client('example-publisher', { transport: nodeTransport() });
  try {
    await publisher.connectAndLogon(server.tcpUri());
    const publish = async (from: number, to: number) => {
      for (let n = from; n <= to; n++) publisher.publish('orders', JSON.stringify({ n }));
      await publisher.flush(); // the broker has them in its transaction log
    };

    await publish(1, 1000);
    const first = await runSubscriber(server.tcpUri(), storeFile, (n) => n === 1000);
    console.log(`first subscriber process: processed ${first[0]} to ${first.at(-1)}, then killed (SIGKILL)`);
    await publish(1001, 2000); // while no subscriber runs
    const second = await runSubscriber(server.tcpUri(), storeFile, (n) => n === 2000);
    console.log(`second subscriber process: resumed at ${second[0]}, processed up to ${second.at(-1)}`);

    // Nothing skipped, in order, nothing from the start again: at most the message being
    // processed as the signal landed, before its recovery point was written, comes twice.
    const again = second[0] === first.at(-1) ? 1 : 0;
    assert.deepEqual(
      [...first, ...second.slice(again)],
      Array.from({ length: 2000 }, (_, i) => i + 1),
    );
  } finally {
    await publisher.disconnect();
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs a subscriber process until `stopAt(n)` is true, then kills it; returns what it processed. */
function runSubscriber(serverUri: string, storeFile: string, stopAt: (n: number) => boolean): Promise<number[]> {
  const child = spawn(process.execPath, [
    ...process.execArgv,
    import.meta.filename,
    '--subscriber',
    serverUri,
    storeFile,
  ]);
  const processed: number[] = [];
  createInterface({ input: child.stdout }).on('line', (line) => {
    processed.push(Number(line));
    if (stopAt(Number(line))) child.kill('SIGKILL'); // it goes on processing until the signal lands
  });
  return new Promise((resolve) => child.on('close', () => resolve(processed)));
}
