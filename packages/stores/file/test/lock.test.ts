/** The lock's takeover of a stale lock, raced by another process taking it over too (`readFileSync` on cue). */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { describe, expect, it, vi } from 'vitest';
import { FilePublishStore } from '../src/index.js';
import { cleanups, tempFile } from './helpers.js';

vi.mock('node:fs', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:fs')>();
  return { ...actual, readFileSync: vi.fn(actual.readFileSync) };
});
const real = await vi.importActual<typeof import('node:fs')>('node:fs');

describe('the lock', () => {
  it('keeps a store off a file when another process takes over the same stale lock first', async () => {
    const path = tempFile();
    const lock = `${path}.lock`;
    // A lock left by a process that has ended.
    const dead = spawn(process.execPath, ['-e', '']);
    await new Promise((resolve) => dead.on('exit', resolve));
    real.writeFileSync(lock, String(dead.pid));
    // Another process, running, starting on the same file at the same time.
    const other = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)']);
    cleanups.push(() => other.kill('SIGKILL'));
    vi.mocked(fs.readFileSync).mockImplementationOnce(((file: fs.PathOrFileDescriptor, options: never) => {
      const stale = real.readFileSync(file, options);
      // Right after this process read the stale lock, the other one takes it over, as this one would.
      real.rmSync(lock, { force: true });
      real.writeFileSync(lock, String(other.pid), { flag: 'wx' });
      return stale;
    }) as typeof fs.readFileSync);
    let opened: FilePublishStore | undefined;
    try {
      opened = new FilePublishStore(path);
      cleanups.push(() => opened?.close());
    } catch (error) {
      expect((error as Error).message).toContain(`in use by process ${other.pid}`);
    }
    // The other process holds the lock it took: this one must not have it too.
    expect(real.readFileSync(lock, 'utf8')).toBe(String(other.pid));
    expect(opened).toBeUndefined();
  });

  it('fails, rather than trying for ever, on a lock file it cannot read', () => {
    const path = tempFile();
    const lock = `${path}.lock`;
    real.writeFileSync(lock, '12345'); // another user's, say, which this one may not read
    let reads = 0;
    vi.mocked(fs.readFileSync).mockImplementation(((file: fs.PathOrFileDescriptor, options: never) => {
      if (String(file) !== lock) return real.readFileSync(file, options);
      if (++reads > 1000) {
        // Still trying: let the loop end (the lock goes), so that the test can fail rather than hang.
        real.rmSync(lock, { force: true });
        throw Object.assign(new Error(`ENOENT: no such file, open '${lock}'`), { code: 'ENOENT' });
      }
      throw Object.assign(new Error(`EACCES: permission denied, open '${lock}'`), { code: 'EACCES' });
    }) as typeof fs.readFileSync);
    try {
      expect(() => {
        const store = new FilePublishStore(path);
        cleanups.push(() => store.close());
      }).toThrow(/cannot lock the publish store .*EACCES/);
      expect(reads).toBe(1);
    } finally {
      vi.mocked(fs.readFileSync).mockImplementation(real.readFileSync);
    }
  });
});
