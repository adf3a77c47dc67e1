/** The first logon's rewrite on a failing disk: `writeSync` and `renameSync` fail on cue (the rest of node:fs is real). */
import * as fs from 'node:fs';
import type { Command } from '@amps-ts/core-protocol';
import { describe, expect, it, vi } from 'vitest';
import { FilePublishStore } from '../src/index.js';
import { cleanups, tempFile } from './helpers.js';

vi.mock('node:fs', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:fs')>();
  return { ...actual, renameSync: vi.fn(actual.renameSync) };
});

const noSpace = () => {
  throw Object.assign(new Error('ENOSPC: no space left on device, rename'), { code: 'ENOSPC' });
};

const publish = (n: number): Command => ({ command: 'publish', topic: 't', data: `m${n}` });

function open(path: string): FilePublishStore {
  const store = new FilePublishStore(path);
  cleanups.push(() => store.close());
  return store;
}

function replayed(store: FilePublishStore): Array<[number, unknown]> {
  const out: Array<[number, unknown]> = [];
  store.replay((command) => out.push([command.sequence as number, command.data]));
  return out;
}

describe('FilePublishStore at its first logon, on a failing disk', () => {
  it('loses nothing and sends nothing twice when the rewrite that takes the new numbering fails (or the process dies in it)', () => {
    // A new file for a client name the server holds 1..40 of; two publishes before the logon.
    const path = tempFile();
    const first = open(path);
    first.store(publish(1));
    first.store(publish(2));
    // The rewrite at the first logon cannot complete: the disk is full (or the process dies there).
    vi.mocked(fs.renameSync).mockImplementationOnce(noSpace);
    let sent: boolean;
    try {
      first.syncWithServer(40);
      sent = true; // the HAClient replays now: 41 and 42 go out, and the server persists 41
    } catch {
      sent = false; // the logon failed: nothing went out
    }
    first.close(); // the process dies

    const second = open(path);
    second.syncWithServer(sent ? 41 : 40);
    expect(replayed(second)).toEqual(
      sent
        ? [[42, 'm2']]
        : [
            [41, 'm1'],
            [42, 'm2'],
          ],
    );
  });
});
