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

  // Tried again (the HAClient retries a failed attempt), maybe on another server further on.
  it('numbers what it holds after the server the retry logs on to (nothing was sent by the failed one)', () => {
    // A new file, for a client name server A holds 1..40 of (server B, further on, 1..50).
    const store = open(tempFile());
    store.store(publish(1));
    store.store(publish(2));
    vi.mocked(fs.renameSync).mockImplementationOnce(noSpace);
    expect(() => store.syncWithServer(40)).toThrow(/no space/); // server A: the logon fails, nothing sent
    store.syncWithServer(50); // the retry logs on to server B
    // Sent as 41 and 42 (or left out as persisted), server B would drop them as duplicates.
    expect(replayed(store)).toEqual([
      [51, 'm1'],
      [52, 'm2'],
    ]);
  });

  it('keeps the file unsynced until a logon rewrote it: a publish between the attempts, then a crash', () => {
    const path = tempFile();
    const first = open(path);
    first.store(publish(1));
    vi.mocked(fs.renameSync).mockImplementationOnce(noSpace);
    expect(() => first.syncWithServer(40)).toThrow(/no space/); // server A: the logon fails, nothing sent
    first.store(publish(2)); // a publish while the client reconnects: its write rewrites the file first
    first.close(); // the process dies before a logon succeeds

    const second = open(path);
    second.syncWithServer(50); // the next run logs on to server B
    expect(replayed(second)).toEqual([
      [51, 'm1'],
      [52, 'm2'],
    ]);
  });
});
