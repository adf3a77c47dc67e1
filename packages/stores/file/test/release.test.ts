/**
 * A store that fails to open, or is closed after its disk failed, holds nothing: no file
 * descriptor, no lock (here or on disk), no timer or immediate. `node:fs` fails on cue.
 */
import * as fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import * as net from 'node:net';
import { join } from 'node:path';
import type { Command } from '@amps-ts/core-protocol';
import { HAClient } from '@amps-ts/ha-client';
import { nodeTransport } from '@amps-ts/transport-node';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FileBookmarkStore, FilePublishStore } from '../src/index.js';
import { tempFile } from './helpers.js';

/** The `node:fs` calls to fail, each once: on its n-th call from now (see failOn). */
const failing = vi.hoisted(() => new Map<string, number>());
vi.mock('node:fs', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:fs')>();
  const failable = (name: 'writeSync' | 'renameSync' | 'openSync' | 'truncateSync') =>
    vi.fn((...args: unknown[]) => {
      const left = failing.get(name);
      if (left === 1) {
        failing.delete(name);
        throw Object.assign(new Error(`EIO: i/o error, ${name}`), { code: 'EIO' });
      }
      if (left !== undefined) failing.set(name, left - 1);
      return (actual[name] as (...a: unknown[]) => unknown)(...args);
    });
  return {
    ...actual,
    writeSync: failable('writeSync'),
    renameSync: failable('renameSync'),
    openSync: failable('openSync'),
    truncateSync: failable('truncateSync'),
  };
});

/** Fails the `nth` next call of `name` (a disk error), once. */
const failOn = (name: string, nth = 1) => failing.set(name, nth);

const openFds = () => fs.readdirSync('/proc/self/fd').length;
const publish = (n: number): Command => ({ command: 'publish', topic: 't', data: `m${n}` });

let fdsBefore: number;
beforeEach(() => {
  failing.clear();
  fdsBefore = openFds();
});
afterEach(() => {
  expect(openFds(), 'file descriptors left open').toBe(fdsBefore);
  expect(process.getActiveResourcesInfo().filter((r) => r === 'FSReqCallback' || r === 'FileHandle')).toEqual([]);
});

/** The file is free again: no lock folder left, and a new store opens it (and is closed). */
function expectReleased(path: string, Store: typeof FilePublishStore | typeof FileBookmarkStore): void {
  expect(fs.existsSync(`${path}.lock`)).toBe(false);
  expect(fs.readdirSync(join(path, '..')).filter((name) => name.includes('.lock'))).toEqual([]);
  new Store(path).close();
}

describe.each([
  ['FilePublishStore', FilePublishStore, 'AMPSBS01'],
  ['FileBookmarkStore', FileBookmarkStore, 'AMPSPS01'],
] as const)('%s', (_, Store, otherMagic) => {
  it('refusing a file that is not its own holds nothing', () => {
    const path = tempFile();
    fs.writeFileSync(path, otherMagic);
    expect(() => new Store(path)).toThrow(/is not a/);
    fs.rmSync(path);
    expectReleased(path, Store);
  });

  it('refusing a damaged file holds nothing', () => {
    const path = tempFile();
    const store = new Store(path);
    store.close();
    // A record whose checksum fails, with a whole record after it: damage, not a crash.
    const record = Buffer.from([0, 0, 0, 1, 0, 0, 0, 0, 7]);
    fs.appendFileSync(path, Buffer.concat([record, record]));
    expect(() => new Store(path)).toThrow(/damaged/);
    fs.rmSync(path);
    expectReleased(path, Store);
  });

  it('refusing a file locked by another running process holds nothing of its own', () => {
    const path = tempFile();
    fs.mkdirSync(`${path}.lock`);
    fs.writeFileSync(join(`${path}.lock`, `${process.ppid}.holder`), '');
    expect(() => new Store(path)).toThrow(/in use by process/);
    fs.rmSync(`${path}.lock`, { recursive: true });
    expectReleased(path, Store);
  });

  it('failing to open the file for writing holds nothing', () => {
    const path = tempFile();
    new Store(path).close();
    failOn('truncateSync');
    expect(() => new Store(path)).toThrow(/EIO/);
    failOn('openSync');
    expect(() => new Store(path)).toThrow(/EIO/);
    expectReleased(path, Store);
  });

  it('a bad option holds nothing', () => {
    const path = tempFile();
    expect(() => new Store(path, { fsync: 'yes' as unknown as boolean })).toThrow(/fsync/);
    expectReleased(path, Store);
  });
});

describe('closed after a failed write', () => {
  it.each([
    ['its rename', () => failOn('renameSync')],
    // The temporary file is the first open, the store's file opened again the second.
    ['its rename, and opening the file again', () => failOn('renameSync') && failOn('openSync', 2)],
  ])('FilePublishStore whose rewrite failed in %s holds nothing', (_, fail) => {
    const path = tempFile();
    const store = new FilePublishStore(path);
    store.store(publish(1));
    fail();
    // The first logon rewrites the file, which fails: so does the logon.
    expect(() => store.syncWithServer(0)).toThrow(/EIO/);
    store.close();
    expectReleased(path, FilePublishStore);
  });

  it('FilePublishStore holds nothing', () => {
    const path = tempFile();
    const store = new FilePublishStore(path);
    store.store(publish(1));
    failOn('writeSync');
    expect(() => store.store(publish(2))).toThrow(/EIO/);
    store.close();
    expectReleased(path, FilePublishStore);
  });

  it('FileBookmarkStore holds nothing, its scheduled write included', () => {
    const path = tempFile();
    const store = new FileBookmarkStore(path);
    failOn('writeSync');
    store.persisted('s', '1|1|'); // schedules a write in an immediate
    store.flush(); // fails
    store.persisted('s', '1|2|'); // schedules another
    store.close();
    expect(process.getActiveResourcesInfo()).not.toContain('Immediate');
    expectReleased(path, FileBookmarkStore);
  });
});

describe('under an HAClient disconnected while publishes wait for room in the file', () => {
  it('each waiting publish fails, the store closes holding nothing, and what it had written survives', async () => {
    const path = tempFile();
    const store = new FilePublishStore(path, { capacity: 1, policy: 'block' });
    // A port nothing listens on: the client keeps trying until disconnect().
    const probe = net.createServer().listen(0, '127.0.0.1');
    await new Promise((resolve) => probe.once('listening', resolve));
    const { port } = probe.address() as AddressInfo;
    await new Promise((resolve) => probe.close(resolve));
    const ha = new HAClient('release-publisher', {
      transport: nodeTransport(),
      servers: [`tcp://127.0.0.1:${port}/amps/json`],
      heartbeat: false,
      publishStore: store,
    });
    const connecting = ha.connectAndLogon().catch((e: Error) => e.name);
    expect(ha.publish('t', 'm1')).toBeUndefined();
    const waiting = [ha.publish('t', 'm2'), ha.publish('t', 'm3')].map((p) =>
      (p as Promise<void>).then(
        () => 'resolved',
        (e: Error) => e.name,
      ),
    );
    const flush = ha.publishFlush().catch((e: Error) => e.name);
    await ha.disconnect();
    expect(await Promise.all([connecting, flush, ...waiting])).toEqual([
      'DisconnectedError',
      'DisconnectedError',
      'DisconnectedError',
      'DisconnectedError',
    ]);
    store.close();
    const again = new FilePublishStore(path);
    const kept: unknown[] = [];
    again.replay((c) => kept.push(c.data));
    again.close();
    expect(kept).toEqual(['m1']);
    expectReleased(path, FilePublishStore);
  });
});
