import { spawn } from 'node:child_process';
import {
  appendFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { type Command, DurableStoreError, InvalidOptionsError } from '@amps-ts/core-protocol';
import { describe, expect, it } from 'vitest';
import { FilePublishStore } from '../src/index.js';
import { crc32, frame } from '../src/journal.js';
import { encodePublishRecord } from '../src/publish-records.js';
import { cleanups, tempFile } from './helpers.js';

function open(path: string, options?: ConstructorParameters<typeof FilePublishStore>[1]): FilePublishStore {
  const store = new FilePublishStore(path, options);
  cleanups.push(() => store.close());
  return store;
}

const publish = (n: number, data: Command['data'] = `m${n}`): Command => ({ command: 'publish', topic: 't', data });

function replayed(store: FilePublishStore): Command[] {
  const out: Command[] = [];
  store.replay((command) => out.push(command));
  return out;
}

/** What `store` would send: each command's sequence and body. */
const numbered = (store: FilePublishStore) => replayed(store).map((c) => [c.sequence, c.data]);

/** Leaves a lock on `path` held by the process `pid`, as its store writes one. */
function writeLock(path: string, pid: number): void {
  mkdirSync(`${path}.lock`);
  writeFileSync(join(`${path}.lock`, `${pid}.0a1b2c`), '');
}

/** The ids of the processes the lock on `path` names. */
const lockHolders = (path: string) => readdirSync(`${path}.lock`).map((name) => Number.parseInt(name, 10));

/** A process that has ended, its id. */
async function endedProcess(): Promise<number> {
  const ended = spawn(process.execPath, ['-e', '']);
  await new Promise((resolve) => ended.on('exit', resolve));
  return ended.pid as number;
}

describe('FilePublishStore', () => {
  it('gives a new store on the file what was unpersisted, with its sequences, headers and bodies', () => {
    const path = tempFile();
    const store = open(path);
    store.store(publish(1));
    store.store({ ...publish(2, new Uint8Array([0, 1, 2, 255])), correlationId: 'c-2', expiration: 30 });
    store.store({ ...publish(3, 'ünïcödé ✓'), headers: { custom: 'x' } });
    store.store({ command: 'sow_delete', topic: 't', filter: '/id = 4', commandId: 'from-the-old-connection' });
    store.store(publish(5));
    store.discardUpTo(1);
    store.discard(4); // refused by the server
    store.close();

    const again = open(path);
    expect(again.lastPersisted()).toBe(1);
    expect(again.unpersistedCount()).toBe(3);
    expect(replayed(again)).toEqual([
      {
        ...publish(2, new Uint8Array([0, 1, 2, 255])),
        correlationId: 'c-2',
        expiration: 30,
        sequence: 2,
        ackType: 'persisted',
      },
      { ...publish(3, 'ünïcödé ✓'), headers: { custom: 'x' }, sequence: 3, ackType: 'persisted' },
      { ...publish(5), sequence: 5, ackType: 'persisted' },
    ]);
    expect(again.store(publish(6))).toBe(6);
  });

  it('starts empty on a file that does not exist, and on one a crash cut inside its header', () => {
    const path = tempFile();
    expect(open(path).unpersistedCount()).toBe(0);
    const cut = tempFile();
    writeFileSync(cut, 'AMPS');
    const store = open(cut);
    expect(store.store(publish(1))).toBe(1);
    store.close();
    expect(replayed(open(cut)).map((c) => c.data)).toEqual(['m1']);
  });

  /** A file holding m1 and m2 with `tail` after them: a new store keeps both, cuts the tail, and appends after them. */
  function reopenedWithTail(tail: Uint8Array): string {
    const path = tempFile();
    const store = open(path);
    store.store(publish(1));
    store.store(publish(2));
    store.close();
    const whole = statSync(path).size;
    appendFileSync(path, tail);

    const again = open(path);
    expect(numbered(again)).toEqual([
      [1, 'm1'],
      [2, 'm2'],
    ]);
    expect(statSync(path).size).toBe(whole);
    expect(again.store(publish(3))).toBe(3);
    again.close();
    const third = open(path);
    expect(replayed(third).map((c) => c.data)).toEqual(['m1', 'm2', 'm3']);
    third.close();
    return path;
  }

  it('drops a last record a crash left half written, and appends after what is whole', () => {
    const torn = frame(encodePublishRecord({ kind: 'stored', command: { ...publish(3), sequence: 3 } }));
    reopenedWithTail(torn.subarray(0, torn.length - 5));
  });

  it('drops a tail of zero bytes a power loss left (the size written, not the data), and appends after what is whole', () => {
    const path = reopenedWithTail(new Uint8Array(4096));

    // The last record's end lost as well: its length kept, its payload's end and what follows zeros.
    const kept = statSync(path).size;
    const bytes = readFileSync(path);
    bytes.fill(0, kept - 10);
    writeFileSync(path, Buffer.concat([bytes, new Uint8Array(4096)]));
    expect(replayed(open(path)).map((c) => c.data)).toEqual(['m1', 'm2']);
  });

  it('refuses a file with a zero length field followed by records: damage, not a power loss', () => {
    const path = tempFile();
    const store = open(path);
    store.store(publish(1));
    store.close();
    const bytes = readFileSync(path);
    writeFileSync(path, Buffer.concat([bytes.subarray(0, 8), new Uint8Array(8), bytes.subarray(8)]));
    expect(() => new FilePublishStore(path)).toThrow(/damaged: a record's length is zero at byte 8\b/);
  });

  it('refuses, with a DurableStoreError saying where, a file damaged before its end', () => {
    const path = tempFile();
    const store = open(path);
    store.store(publish(1));
    store.store(publish(2));
    store.close();
    const bytes = readFileSync(path);
    bytes[30] = (bytes[30] as number) ^ 0xff; // inside the first publish's record (after the new file's N record)
    writeFileSync(path, bytes);
    expect(() => new FilePublishStore(path)).toThrow(DurableStoreError);
    expect(() => new FilePublishStore(path)).toThrow(/damaged: a record fails its checksum at byte 17\b/);
    expect(readFileSync(path)).toEqual(bytes); // left as it was, for someone to look at
  });

  it('refuses a file that is not a publish store', () => {
    const path = tempFile();
    writeFileSync(path, '{"not": "a store"}');
    expect(() => new FilePublishStore(path)).toThrow(/is not a publish store file/);
  });

  it('rewrites the file with only what is unpersisted once acks leave most of it dead', () => {
    const path = tempFile();
    const store = open(path);
    const body = 'x'.repeat(10_000);
    for (let n = 1; n <= 1_000; n++) {
      store.store(publish(n, body));
      if (n % 10 === 0) store.discardUpTo(n - 2);
    }
    expect(statSync(path).size).toBeLessThan(2 * 1024 * 1024); // 10 MB went through it
    store.close();
    const again = open(path);
    expect(again.lastPersisted()).toBe(998);
    expect(replayed(again).map((c) => c.sequence)).toEqual([999, 1000]);
    expect(again.store(publish(1001))).toBe(1001);
  });

  it('takes the first logon’s numbering into the file: a restart after it sends the same sequences', () => {
    const path = tempFile();
    const store = open(path);
    store.store(publish(1));
    store.store(publish(2));
    store.syncWithServer(40); // this client name's earlier run reached 40: stored before logon, renumbered
    expect(replayed(store).map((c) => c.sequence)).toEqual([41, 42]);
    store.close();
    const again = open(path);
    expect(replayed(again).map((c) => c.sequence)).toEqual([41, 42]);
    expect(again.lastPersisted()).toBe(40);
  });

  it('remembers the last sequence it gave even when that command is gone from the file', () => {
    const path = tempFile();
    const store = open(path);
    store.store(publish(1));
    store.store(publish(2));
    store.discard(2);
    store.syncWithServer(0);
    store.close();
    expect(open(path).store(publish(3))).toBe(3);
  });

  it('writes a publish let into a full store as it gets its sequence: the client may send it in that turn, with the next publish', async () => {
    const path = tempFile();
    const store = open(path, { capacity: 1 });
    store.syncWithServer(0);
    store.store(publish(1));
    const letIn = publish(2, 'let in');
    const waiting = store.store(letIn);
    store.discardUpTo(1);
    // Numbered: the HAClient sends it (in sequence order) with the next publish, before this turn ends.
    expect(letIn.sequence).toBe(2);
    expect(readFileSync(path).includes('let in')).toBe(true);
    expect(await waiting).toBe(2);
    store.close();
    expect(numbered(open(path))).toEqual([[2, 'let in']]);
  });

  it('refuses to store once closed, with a DurableStoreError; closing twice is fine', () => {
    const store = open(tempFile());
    store.close();
    store.close();
    expect(() => store.store(publish(1))).toThrow(DurableStoreError);
    expect(() => store.store(publish(1))).toThrow(/is closed/);
    expect(store.unpersistedCount()).toBe(0);
    store.discardUpTo(5); // an ack after close: kept in memory, nothing written, no error
    expect(store.lastPersisted()).toBe(5);
  });

  it('refuses bad options with an InvalidOptionsError, and an unreadable path with a DurableStoreError', () => {
    expect(() => new FilePublishStore('')).toThrow(InvalidOptionsError);
    expect(() => new FilePublishStore(tempFile(), { fsync: 'yes' as unknown as boolean })).toThrow(InvalidOptionsError);
    const path = tempFile();
    expect(() => new FilePublishStore(path, { capacity: 0 })).toThrow(InvalidOptionsError);
    expect(existsSync(`${path}.lock`)).toBe(false);
    const dir = join(tempFile(), '..');
    expect(() => new FilePublishStore(dir)).toThrow(DurableStoreError);
    expect(() => new FilePublishStore(join(dir, 'missing', 'publisher.store'))).toThrow(
      /cannot lock the publish store .*ENOENT/,
    );
  });

  it('writes through with fsync when asked', () => {
    const path = tempFile();
    const store = open(path, { fsync: true });
    store.store(publish(1));
    store.discardUpTo(1);
    store.store(publish(2));
    store.close();
    expect(replayed(open(path)).map((c) => c.sequence)).toEqual([2]);
  });
});

describe('FilePublishStore lock', () => {
  it('keeps a second store in this process off the file until the first is closed', () => {
    const path = tempFile();
    const store = open(path);
    expect(() => new FilePublishStore(path)).toThrow(/already open in this process/);
    store.close();
    expect(existsSync(`${path}.lock`)).toBe(false);
    open(path).store(publish(1));
  });

  it('keeps a store off a file another running process holds, and takes over once that process has ended', async () => {
    const path = tempFile();
    const holder = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)']);
    cleanups.push(() => holder.kill('SIGKILL'));
    writeLock(path, holder.pid as number);
    expect(() => new FilePublishStore(path)).toThrow(DurableStoreError);
    expect(() => new FilePublishStore(path)).toThrow(`in use by process ${holder.pid}`);
    await new Promise((resolve) => {
      holder.on('exit', resolve);
      holder.kill('SIGKILL');
    });
    open(path);
    expect(lockHolders(path)).toEqual([process.pid]);
  });

  it("takes over a lock holding this process's own id that no store here holds (a restarted container)", () => {
    const path = tempFile();
    writeLock(path, process.pid);
    expect(open(path).store(publish(1))).toBe(1);
  });

  it('removes what a kill in the lock routine left beside the lock, of processes that have ended only', async () => {
    const path = tempFile();
    const ended = await endedProcess();
    const running = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)']);
    cleanups.push(() => running.kill('SIGKILL'));
    for (const pid of [ended, running.pid as number, process.pid]) {
      mkdirSync(`${path}.lock.${pid}`);
      writeFileSync(join(`${path}.lock.${pid}`, `${pid}.0a1b2c`), '');
    }
    open(path);
    expect(existsSync(`${path}.lock.${ended}`)).toBe(false);
    expect(existsSync(`${path}.lock.${process.pid}`)).toBe(false); // this process's own, taken up
    expect(existsSync(`${path}.lock.${running.pid}`)).toBe(true); // maybe taking the lock right now
    expect(lockHolders(path)).toEqual([process.pid]);
  });
});

describe('crc32', () => {
  it('is the IEEE CRC-32 zlib computes', () => {
    expect(crc32(Buffer.from('123456789'))).toBe(0xcbf43926);
    expect(crc32(new Uint8Array(0))).toBe(0);
  });

  it('keeps publishes stored before any logon on a new file, when the process dies before it logs on', () => {
    // A new file (the first run with this store, or a damaged one moved aside) for a client name
    // the server already holds sequences 1..40 of.
    const path = tempFile();
    const first = open(path);
    first.store(publish(1)); // resolved: the application counts on it
    first.store(publish(2));
    first.close(); // the process dies before it ever logs on (what it wrote is all there is)

    const second = open(path);
    second.syncWithServer(40);
    // Never sent: they go out after the server's 40, not dropped as if the server had them.
    expect(numbered(second)).toEqual([
      [41, 'm1'],
      [42, 'm2'],
    ]);
  });

  it('keeps the file within bounds when the server refuses every publish (nothing is ever persisted)', () => {
    const path = tempFile();
    const store = open(path);
    const body = 'x'.repeat(10_000);
    for (let n = 1; n <= 2_000; n++) {
      const sequence = store.store(publish(n, body)) as number;
      store.discard(sequence); // a failure ack: the HAClient calls discard
    }
    expect(store.unpersistedCount()).toBe(0);
    // Nothing is live: the README promises at most about twice what is live plus 8 MiB.
    expect(statSync(path).size).toBeLessThan(9 * 1024 * 1024);
  });

  it('refuses a file whose first record has a damaged length, rather than cutting off every record after it', () => {
    const path = tempFile();
    const store = open(path);
    for (let n = 1; n <= 3; n++) store.store(publish(n));
    store.close();
    const bytes = readFileSync(path);
    bytes.writeUInt32BE(0x00ffffff, 8); // the first record's length, past the end of the file
    writeFileSync(path, bytes);
    expect(() => new FilePublishStore(path)).toThrow(/damaged/);
    expect(readFileSync(path)).toEqual(bytes); // left as it was
  });

  it('keeps a second store in this process off the file when it is reached through a symbolic link', () => {
    const path = tempFile();
    const dir = join(path, '..');
    mkdirSync(join(dir, 'real'));
    symlinkSync(join(dir, 'real'), join(dir, 'link'));
    const store = open(join(dir, 'real', 'p.store'));
    store.store(publish(1));
    expect(() => open(join(dir, 'link', 'p.store'))).toThrow(/already open in this process/);
  });

  it('locks a file reached through a symbolic link to it under its real path, for every process', () => {
    const path = tempFile();
    const link = join(path, '..', 'link.store');
    open(path).close();
    symlinkSync(path, link);
    open(link);
    expect(() => open(path)).toThrow(/already open in this process/);
    expect(lockHolders(path)).toEqual([process.pid]); // where a store in another process looks
    expect(existsSync(`${link}.lock`)).toBe(false);
  });

  it('rewrites a file reached through a symbolic link to it in place, keeping the link', () => {
    const path = tempFile();
    const link = join(path, '..', 'link.store');
    open(path).close();
    symlinkSync(path, link);
    const store = open(link);
    store.store(publish(1));
    store.syncWithServer(40); // the first logon rewrites the file
    store.close();
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(numbered(open(path))).toEqual([[41, 'm1']]);
  });
});
