/**
 * Processes killed with SIGKILL, then started again on the same store file: a publisher whose last
 * publishes the server had not persisted (the new process sends them, and the server ends with
 * every message exactly once, in order), and a subscriber part way through a replay (the new
 * process resumes where processing got to). Real broker, real sockets, real processes.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Bookmarks, Client } from '@amps-ts/core-protocol';
import { HAClient } from '@amps-ts/ha-client';
import { startFaultProxy, startTestServer } from '@amps-ts/test-server';
import { nodeTransport } from '@amps-ts/transport-node';
import { describe, expect, it } from 'vitest';
import { FilePublishStore } from '../src/index.js';
import { cleanups, tempFile } from './helpers.js';

/** A fixture as a process, with a way to wait for a line it prints. */
function fixture(script: string, ...args: string[]) {
  const child: ChildProcessWithoutNullStreams = spawn(
    process.execPath,
    ['--conditions=@amps-ts/source', '--import', 'tsx', join(import.meta.dirname, 'fixtures', script), ...args],
    { cwd: join(import.meta.dirname, '..') },
  );
  cleanups.push(() => child.kill('SIGKILL'));
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  return {
    send: (line: string) => child.stdin.write(`${line}\n`),
    async expect(line: string): Promise<void> {
      const next = await lines.next();
      if (next.value !== line)
        throw new Error(`${script} printed ${String(next.value)}, not ${line}; stderr: ${stderr}`);
    },
    /** Reads lines until `line`. */
    async until(line: string): Promise<void> {
      for (;;) {
        const next = await lines.next();
        if (next.done) throw new Error(`${script} ended before printing ${line}; stderr: ${stderr}`);
        if (next.value === line) return;
      }
    },
    kill: () =>
      new Promise<void>((resolve) => {
        child.on('exit', () => resolve());
        child.kill('SIGKILL');
      }),
  };
}

/** Every message on `orders`, from the start of the server's log, up to the one numbered `last`. */
async function everything(uri: string, last: number): Promise<number[]> {
  const client = new Client('reader', { transport: nodeTransport() });
  cleanups.push(() => client.disconnect());
  await client.connectAndLogon(uri);
  const seen: number[] = [];
  await new Promise<void>((resolve) => {
    client.subscribe('orders', {
      bookmark: Bookmarks.EPOCH,
      onMessage: (message) => {
        const { n } = JSON.parse(message.text()) as { n: number };
        seen.push(n);
        if (n === last) resolve();
      },
    });
  });
  return seen;
}

describe('FilePublishStore across a crash of the publishing process', () => {
  it('sends what the killed process stored and the server never persisted, and nothing twice', async () => {
    const server = await startTestServer();
    cleanups.push(() => server.close());
    const proxy = await startFaultProxy({ target: server.tcpUri() });
    cleanups.push(() => proxy.close());
    const path = tempFile();

    const first = fixture('publisher.ts', 'orders-publisher', proxy.tcpUri(), path);
    await first.expect('ready');
    first.send('publish 1 300');
    await first.expect('stored 300');
    first.send('flush');
    await first.expect('flushed');
    // The network goes: these reach the store and its file, never the server. Then the process dies.
    proxy.blackhole();
    first.send('publish 301 500');
    await first.expect('stored 500');
    await first.kill();

    const left = new FilePublishStore(path);
    expect(left.unpersistedCount()).toBeGreaterThanOrEqual(200);
    left.close();
    await restartAndCheck(server.tcpUri(), path, 500);
  });

  it('killed while the server persists faster than its acks are read: nothing lost, nothing renumbered into a duplicate', async () => {
    const server = await startTestServer();
    cleanups.push(() => server.close());
    const path = tempFile();
    const first = fixture('publisher.ts', 'orders-publisher', server.tcpUri(), path);
    await first.expect('ready');
    first.send('publish 1 3000');
    await first.expect('stored 3000');
    await first.kill();
    await restartAndCheck(server.tcpUri(), path, 3000);
  });
});

/**
 * A new publisher on the killed one's file and client name publishes 50 more: the server must
 * then hold `1..published + 50`, each once, in order.
 */
async function restartAndCheck(uri: string, path: string, published: number): Promise<void> {
  const store = new FilePublishStore(path);
  cleanups.push(() => store.close());
  const second = new HAClient('orders-publisher', { transport: nodeTransport(), servers: [uri], publishStore: store });
  cleanups.push(() => second.disconnect());
  await second.connectAndLogon();
  const last = published + 50;
  for (let n = published + 1; n <= last; n++) second.publish('orders', JSON.stringify({ n }));
  await second.publishFlush(10_000);
  expect(store.unpersistedCount()).toBe(0);
  expect(await everything(uri, last)).toEqual(Array.from({ length: last }, (_, i) => i + 1));
}

describe('FileBookmarkStore across a crash of the subscribing process', () => {
  it.each([true, false])(
    'resumes where processing got to (writeThrough: %s): every message processed, in order, again only what was cut short',
    async (writeThrough) => {
      const server = await startTestServer();
      cleanups.push(() => server.close());
      const publisher = new Client('orders-publisher', { transport: nodeTransport() });
      cleanups.push(() => publisher.disconnect());
      await publisher.connectAndLogon(server.tcpUri());
      const total = 20_000;
      for (let n = 1; n <= total; n++) publisher.publish('orders', JSON.stringify({ n }));
      await publisher.flush();
      const store = tempFile();
      const processed = `${store}.processed`;

      const first = fixture('subscriber.ts', server.tcpUri(), store, processed, String(writeThrough));
      await first.until('processed 1000');
      await first.kill(); // part way through the replay
      const second = fixture('subscriber.ts', server.tcpUri(), store, processed, String(writeThrough));
      await second.until(`processed ${total}`);
      await second.kill();

      const ns = readFileSync(processed, 'utf8').trim().split('\n').map(Number);
      expect(new Set(ns).size).toBe(total);
      expect(Math.min(...ns)).toBe(1);
      expect(Math.max(...ns)).toBe(total);
      // In order, but for one step back: where the second process resumed.
      const backs = ns.flatMap((n, i) => (i > 0 && n <= (ns[i - 1] as number) ? [i] : []));
      expect(backs.length).toBeLessThanOrEqual(1);
      // writeThrough: a message processed, its discard not yet written, when the process died: at
      // most the last one. Otherwise what the last event-loop turn processed (here about 1,000).
      if (writeThrough) expect(ns.length - total).toBeLessThanOrEqual(1);
    },
  );
});
