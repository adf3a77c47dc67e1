/**
 * The lock against other processes starting on the same file at the same time. Another process is
 * a fresh copy of the store's module (its own stores open) run under that process's id, whole, at
 * a chosen `node:fs` call of this process's lock routine: every such point is tried.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { describe, expect, it, vi } from 'vitest';
import { FilePublishStore } from '../src/index.js';
import { cleanups, tempFile } from './helpers.js';

/** Run before each synchronous `node:fs` call, when set. */
const fsCalls = vi.hoisted(() => ({ before: undefined as (() => void) | undefined }));
vi.mock('node:fs', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:fs')>();
  const wrapped = Object.entries(actual).map(([name, value]) =>
    typeof value === 'function' && name.endsWith('Sync')
      ? [
          name,
          vi.fn((...args: unknown[]) => {
            fsCalls.before?.();
            return (value as (...args: unknown[]) => unknown)(...args);
          }),
        ]
      : [name, value],
  );
  return { ...actual, ...Object.fromEntries(wrapped) };
});

const real = await vi.importActual<typeof import('node:fs')>('node:fs');
const ownPid = Object.getOwnPropertyDescriptor(process, 'pid') as PropertyDescriptor;

/** Runs `call` as the process `pid` would: under its id, its own `node:fs` calls not stopped at. */
function as<T>(pid: number, call: () => T): T {
  const before = fsCalls.before;
  fsCalls.before = undefined;
  Object.defineProperty(process, 'pid', { value: pid, configurable: true });
  try {
    return call();
  } finally {
    Object.defineProperty(process, 'pid', ownPid);
    fsCalls.before = before;
  }
}

interface OtherProcess {
  readonly pid: number;
  /** Opens a store on `path`: true if it took the lock, false if it was refused as in use. */
  open(path: string): boolean;
  close(path: string): void;
}

/** Another process, running (until the test ends) or ended. */
async function otherProcess(state: 'running' | 'ended'): Promise<OtherProcess> {
  const child = spawn(process.execPath, ['-e', state === 'running' ? 'setInterval(() => {}, 1000)' : '']);
  if (state === 'running') cleanups.push(() => child.kill('SIGKILL'));
  else await new Promise((resolve) => child.on('exit', resolve));
  const pid = child.pid as number;
  vi.resetModules();
  const { FilePublishStore: Store } = await import('../src/index.js');
  const open = new Map<string, InstanceType<typeof Store>>();
  return {
    pid,
    open: (path) =>
      as(pid, () => {
        try {
          open.set(path, new Store(path));
          return true;
        } catch (error) {
          if ((error as Error).message.includes('is in use by process')) return false;
          throw error;
        }
      }),
    close: (path) => as(pid, () => open.get(path)?.close()),
  };
}

/**
 * Opens a store on `path` in this process, running each event before the `node:fs` call of this
 * process it names (from 0, in the order given; or after its last call); returns the store, or
 * undefined if the lock was refused as in use.
 */
function openWith(path: string, events: Array<[at: number, event: () => void]>): FilePublishStore | undefined {
  let calls = 0;
  const run = (now: (at: number) => boolean) => {
    for (const [at, event] of events) if (now(at)) event();
  };
  fsCalls.before = () => {
    const call = calls++;
    run((at) => at === call);
  };
  try {
    return new FilePublishStore(path);
  } catch (error) {
    if ((error as Error).message.includes('is in use by process')) return undefined;
    throw error;
  } finally {
    fsCalls.before = undefined;
    run((at) => at >= calls);
  }
}

/** How many `node:fs` calls opening a store on a file with a stale lock makes. */
function callsToOpen(ended: OtherProcess): number {
  const path = tempFile();
  ended.open(path); // never closed: its lock is left
  let calls = 0;
  fsCalls.before = () => calls++;
  try {
    new FilePublishStore(path).close();
  } finally {
    fsCalls.before = undefined;
  }
  return calls;
}

describe('the lock', () => {
  it('is held by at most one of three processes taking over a stale lock together, however their steps interleave', async () => {
    const [ended, first, third, later] = [
      await otherProcess('ended'),
      await otherProcess('running'),
      await otherProcess('running'),
      await otherProcess('running'),
    ];
    const calls = callsToOpen(ended);
    for (let firstAt = 0; firstAt <= calls; firstAt++) {
      for (let thirdAt = firstAt; thirdAt <= calls; thirdAt++) {
        const path = tempFile();
        ended.open(path);
        const others: OtherProcess[] = [];
        const store = openWith(path, [
          [firstAt, () => first.open(path) && others.push(first)],
          [thirdAt, () => third.open(path) && others.push(third)],
        ]);
        const holders = [...others.map((other) => other.pid), ...(store ? [process.pid] : [])];
        expect(holders.length, `${first.pid} at ${firstAt}, ${third.pid} at ${thirdAt}`).toBeLessThanOrEqual(1);
        // And the one holding it holds it: a fourth process is refused.
        if (holders.length === 1) expect(later.open(path)).toBe(false);
        store?.close();
        for (const other of others) other.close(path);
      }
    }
  });

  it('is free once its holder closes, even while another process was taking it over', async () => {
    const [ended, holder, later] = [
      await otherProcess('ended'),
      await otherProcess('running'),
      await otherProcess('running'),
    ];
    const calls = callsToOpen(ended);
    for (let opensAt = 0; opensAt <= calls; opensAt++) {
      for (let closesAt = opensAt; closesAt <= calls; closesAt++) {
        const path = tempFile();
        ended.open(path);
        const store = openWith(path, [
          [opensAt, () => holder.open(path)],
          [closesAt, () => holder.close(path)],
        ]);
        store?.close();
        // Its holder closed its store, this one too: nothing holds the lock, though both still run.
        expect(later.open(path), `${holder.pid} opens at ${opensAt}, closes at ${closesAt}`).toBe(true);
        later.close(path);
      }
    }
  });

  it('fails, rather than trying for ever, on a lock it cannot read', () => {
    const path = tempFile();
    const lock = `${path}.lock`;
    // Another user's, say, which this one may not read.
    real.mkdirSync(lock);
    real.writeFileSync(`${lock}/12345.held`, '');
    let reads = 0;
    vi.mocked(fs.readdirSync).mockImplementation(((folder: fs.PathLike) => {
      if (String(folder) !== lock) return real.readdirSync(folder);
      if (++reads > 1000) {
        // Still trying: let the loop end (the lock goes), so that the test can fail rather than hang.
        real.rmSync(lock, { recursive: true, force: true });
        throw Object.assign(new Error(`ENOENT: no such file or directory, scandir '${lock}'`), { code: 'ENOENT' });
      }
      throw Object.assign(new Error(`EACCES: permission denied, scandir '${lock}'`), { code: 'EACCES' });
    }) as typeof fs.readdirSync);
    try {
      expect(() => {
        const store = new FilePublishStore(path);
        cleanups.push(() => store.close());
      }).toThrow(/cannot lock the publish store .*EACCES/);
      expect(reads).toBe(1);
    } finally {
      vi.mocked(fs.readdirSync).mockReset();
    }
  });
});
