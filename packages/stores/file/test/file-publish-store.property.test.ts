/**
 * The file store against the memory store it extends: any run of publishes, acks, refusals,
 * logons and restarts leaves both holding the same commands, sequences and positions, where the
 * memory store "restarts" by `restore` from its own contents. So the file keeps exactly what the
 * store holds, through its records and its rewrites.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryPublishStore } from '@amps-ts/ha-client';
import fc from 'fast-check';
import { describe, it } from 'vitest';
import {
  checkSameContents,
  type PublishOp,
  publishOp,
  replayed,
  restarted,
} from '../../../ha-client/test/durable-store-models.js';
import { FilePublishStore } from '../src/index.js';

function run(ops: PublishOp[]): void {
  const dir = mkdtempSync(join(tmpdir(), 'amps-ts-store-'));
  const path = join(dir, 'publisher.store');
  let file = new FilePublishStore(path);
  let memory = new MemoryPublishStore();
  let synced = false; // a logon since the file was new
  try {
    for (const o of ops) {
      const both = (act: (store: MemoryPublishStore) => void) => {
        act(memory);
        act(file);
      };
      switch (o.k) {
        case 'publish':
          both((store) => store.store({ command: 'publish', topic: 't', data: o.body }));
          break;
        case 'ack':
          both((store) => store.discardUpTo(Math.max(0, store.nextSequence() - 1 + o.ahead)));
          break;
        case 'refuse': {
          const unpersisted = replayed(memory);
          const sequence = unpersisted[o.pick % Math.max(1, unpersisted.length)]?.sequence;
          if (sequence !== undefined) both((store) => store.discard(sequence));
          break;
        }
        case 'logon':
          synced = true;
          both((store) => store.syncWithServer(Math.max(0, store.lastPersisted() + o.ahead)));
          break;
        case 'restart':
          file.close();
          file = new FilePublishStore(path);
          memory = restarted(memory, synced);
          break;
      }
      checkSameContents(file, memory, o);
    }
  } finally {
    file.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('FilePublishStore, model-based', () => {
  it('holds what the memory store holds, through restarts from its file', () => {
    fc.assert(fc.property(fc.array(publishOp, { maxLength: 60, size: 'max' }), run), { numRuns: 500 });
  });
});
