/**
 * The file store against the memory store it extends: any run of publishes, acks, refusals,
 * logons and restarts leaves both holding the same commands, sequences and positions, where the
 * memory store "restarts" by `restore` from its own contents. So the file keeps exactly what the
 * store holds, through its records and its rewrites.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from '@amps-ts/core-protocol';
import { MemoryPublishStore } from '@amps-ts/ha-client';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FilePublishStore } from '../src/index.js';

type Op =
  | { k: 'publish'; body: string | Uint8Array }
  | { k: 'ack'; ahead: number }
  | { k: 'refuse'; pick: number }
  | { k: 'logon'; ahead: number }
  | { k: 'restart' };

const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      k: fc.constant('publish' as const),
      body: fc.oneof(fc.string({ unit: 'binary', maxLength: 20 }), fc.uint8Array({ maxLength: 20 })),
    }),
  },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('ack' as const), ahead: fc.integer({ min: -2, max: 3 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('refuse' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('logon' as const), ahead: fc.integer({ min: -3, max: 6 }) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('restart' as const) }) },
);

function contents(store: MemoryPublishStore) {
  return {
    commands: replayed(store).map(({ sequence, data, topic }) => ({ sequence, data, topic })),
    lastSequence: store.nextSequence() - 1,
    lastPersisted: store.lastPersisted(),
  };
}

function run(ops: Op[]): void {
  const dir = mkdtempSync(join(tmpdir(), 'amps-ts-store-'));
  const path = join(dir, 'publisher.store');
  let file = new FilePublishStore(path);
  let memory = new MemoryPublishStore();
  try {
    for (const o of ops) {
      const both = (act: (store: MemoryPublishStore) => void) => {
        act(memory);
        act(file);
      };
      const unpersisted = contents(memory).commands.map((c) => c.sequence as number);
      switch (o.k) {
        case 'publish':
          both((store) => store.store({ command: 'publish', topic: 't', data: o.body }));
          break;
        case 'ack':
          both((store) => store.discardUpTo(Math.max(0, store.nextSequence() - 1 + o.ahead)));
          break;
        case 'refuse': {
          const sequence = unpersisted[o.pick % Math.max(1, unpersisted.length)];
          if (sequence !== undefined) both((store) => store.discard?.(sequence));
          break;
        }
        case 'logon':
          both((store) => store.syncWithServer(Math.max(0, store.lastPersisted() + o.ahead)));
          break;
        case 'restart':
          file.close();
          file = new FilePublishStore(path);
          memory = new MemoryPublishStore({ restore: { ...contents(memory), commands: replayed(memory) } });
          break;
      }
      expect(contents(file)).toEqual(contents(memory));
    }
  } finally {
    file.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

function replayed(store: MemoryPublishStore): Command[] {
  const commands: Command[] = [];
  store.replay((command) => commands.push(command));
  return commands;
}

describe('FilePublishStore, model-based', () => {
  it('holds what the memory store holds, through restarts from its file', () => {
    fc.assert(fc.property(fc.array(op, { maxLength: 60, size: 'max' }), run), { numRuns: 500 });
  });
});
