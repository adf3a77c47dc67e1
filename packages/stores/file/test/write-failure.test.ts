/** A full or failing disk, by a `writeSync` that fails on cue (the rest of node:fs is real). */
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Bookmarks, type Command, DurableStoreError } from '@amps-ts/core-protocol';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { FileBookmarkStore, FilePublishStore } from '../src/index.js';

vi.mock('node:fs', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:fs')>();
  return { ...actual, writeSync: vi.fn(actual.writeSync) };
});

const realWrite = (await vi.importActual<typeof import('node:fs')>('node:fs')).writeSync;
const noSpace = () => {
  throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
};

const cleanups: Array<() => unknown> = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
});

const publish = (n: number): Command => ({ command: 'publish', topic: 't', data: `m${n}` });

/** A path in a new folder, removed after the test. */
function tempPath(name: string): string {
  const dir = fs.mkdtempSync(join(tmpdir(), 'amps-ts-store-'));
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  return join(dir, name);
}

function store(): { store: FilePublishStore; path: string } {
  const path = tempPath('publisher.store');
  const store = new FilePublishStore(path);
  cleanups.push(() => store.close());
  return { store, path };
}

const sequences = (s: FilePublishStore) => {
  const out: number[] = [];
  s.replay((c) => out.push(c.sequence as number));
  return out;
};

describe('FilePublishStore on a failing disk', () => {
  it('fails a publish it could not write, forgets it, and writes the next ones after the whole records', () => {
    const { store: s, path } = store();
    s.store(publish(1));
    // Part of the record goes in, then the disk is full.
    vi.mocked(fs.writeSync)
      .mockImplementationOnce(((fd: number, bytes: Uint8Array) => realWrite(fd, bytes, 0, 7)) as typeof fs.writeSync)
      .mockImplementationOnce(noSpace);
    const error = (() => {
      try {
        s.store(publish(2));
      } catch (e) {
        return e;
      }
    })();
    expect(DurableStoreError.isInstance(error)).toBe(true);
    expect((error as Error).message).toMatch(/cannot write the publish store .*ENOSPC/);
    expect(((error as Error).cause as { code: string }).code).toBe('ENOSPC');
    expect(sequences(s)).toEqual([1]);

    expect(s.store(publish(3))).toBe(3);
    s.close();
    const again = new FilePublishStore(path);
    cleanups.push(() => again.close());
    expect(sequences(again)).toEqual([1, 3]);
  });

  it('removes the temporary file of a rewrite that failed, and the next rewrite succeeds', () => {
    const { store: s, path } = store();
    s.store(publish(1));
    vi.mocked(fs.writeSync).mockImplementationOnce(noSpace);
    // The first logon rewrites the file before anything is sent: it fails, and so does the logon.
    expect(() => s.syncWithServer(0)).toThrow(DurableStoreError);
    expect(fs.existsSync(`${path}.rewrite`)).toBe(false);
    s.syncWithServer(0);
    expect(fs.existsSync(`${path}.rewrite`)).toBe(false);
    s.close();
    const again = new FilePublishStore(path);
    cleanups.push(() => again.close());
    expect(sequences(again)).toEqual([1]);
  });

  it('keeps working when noting an ack fails: a restart then replays a little more, which the server drops', () => {
    const { store: s, path } = store();
    s.store(publish(1));
    s.store(publish(2));
    vi.mocked(fs.writeSync).mockImplementationOnce(noSpace);
    s.discardUpTo(1);
    expect(sequences(s)).toEqual([2]);
    s.close();
    const again = new FilePublishStore(path);
    cleanups.push(() => again.close());
    expect(sequences(again)).toEqual([1, 2]);
  });
});

describe('FileBookmarkStore on a failing disk', () => {
  it.each([
    ['one subscription', (s: FileBookmarkStore) => s.purge('orders')],
    ['every subscription', (s: FileBookmarkStore) => s.purge()],
  ])(
    'forgets a purged subscription (%s) after a restart though that purge failed to write, with nothing written after it',
    (_, purge) => {
      const path = tempPath('subscriber.store');
      const s = new FileBookmarkStore(path, { replicationLagMs: 0, writeThrough: true });
      s.persisted('orders', Bookmarks.EPOCH);
      s.log('orders', '11|1|');
      s.discard('orders', '11|1|');
      vi.mocked(fs.writeSync).mockImplementationOnce(noSpace);
      purge(s);
      s.close();
      const again = new FileBookmarkStore(path);
      cleanups.push(() => again.close());
      // Back, it would resume a new subscription with the id (from MOST_RECENT) past message 1.
      expect(again.getMostRecent('orders')).toBeUndefined();
    },
  );
});
