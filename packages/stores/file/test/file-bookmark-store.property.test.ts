/**
 * The file bookmark store across restarts, against a model of what was delivered and processed:
 * after a restart, every message processed in order from the start of its publisher's stream is a
 * duplicate (never processed twice), and every other one is not (never skipped); the recovery
 * point names the same positions as before.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Bookmarks } from '@amps-ts/core-protocol';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FileBookmarkStore } from '../src/index.js';

const PUBLISHERS = [11, 22, 33];
const S = 'orders';

type Op =
  | { k: 'deliver'; publisher: number; step: number }
  | { k: 'discard'; pick: number; oldest: boolean }
  | { k: 'ack' }
  | { k: 'restart' };

const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      k: fc.constant('deliver' as const),
      publisher: fc.constantFrom(...PUBLISHERS),
      step: fc.integer({ min: 1, max: 3 }),
    }),
  },
  { weight: 5, arbitrary: fc.record({ k: fc.constant('discard' as const), pick: fc.nat(), oldest: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('ack' as const) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('restart' as const) }) },
);

const positions = (point: string | undefined) =>
  new Set((point ?? '').split(',').filter((entry) => /^[1-9]\d*\|\d+\|$/.test(entry)));

function run(ops: Op[]): void {
  const dir = mkdtempSync(join(tmpdir(), 'amps-ts-store-'));
  const path = join(dir, 'subscriber.bookmarks');
  const open = () => new FileBookmarkStore(path, { replicationLagMs: 0 });
  let store = open();
  store.persisted(S, Bookmarks.EPOCH);
  // Per publisher: every sequence it has published (the server's log), how far this run has been
  // delivered, and which delivered ones are processed.
  const published = new Map<number, number[]>(PUBLISHERS.map((p) => [p, []]));
  const delivered = new Map<number, number>(PUBLISHERS.map((p) => [p, 0])); // count of published delivered
  const outstanding: Array<{ p: number; seq: number }> = [];
  const processed = new Map<number, Set<number>>(PUBLISHERS.map((p) => [p, new Set()]));
  const bookmark = (p: number, seq: number) => `${p}|${seq}|`;
  try {
    for (const o of ops) {
      switch (o.k) {
        case 'deliver': {
          const log = published.get(o.publisher) as number[];
          let index = delivered.get(o.publisher) as number;
          if (index === log.length) log.push((log.at(-1) ?? 0) + o.step); // a new message
          const seq = log[index++] as number;
          delivered.set(o.publisher, index);
          const fresh = store.log(S, bookmark(o.publisher, seq));
          // Delivered again after a restart: processed in order before it, it must be a duplicate.
          expect(fresh, `${bookmark(o.publisher, seq)} new?`).toBe(!inOrderProcessed(o.publisher).has(seq));
          if (fresh) outstanding.push({ p: o.publisher, seq });
          break;
        }
        case 'discard': {
          if (outstanding.length === 0) break;
          const [m] = outstanding.splice(o.oldest ? 0 : o.pick % outstanding.length, 1);
          store.discard(S, bookmark(m!.p, m!.seq));
          processed.get(m!.p)?.add(m!.seq);
          break;
        }
        case 'ack':
          if (outstanding.length === 0) {
            const last = [...delivered].find(([, n]) => n > 0);
            if (last) store.persisted(S, bookmark(last[0], published.get(last[0])?.[last[1] - 1] as number));
          }
          break;
        case 'restart': {
          const before = positions(store.getMostRecent(S));
          store.close();
          store = open();
          expect(positions(store.getMostRecent(S))).toEqual(before);
          // The server replays each publisher from after the last message processed in order.
          for (const p of PUBLISHERS) {
            const prefix = inOrderProcessed(p);
            const log = published.get(p) as number[];
            delivered.set(p, log.filter((seq) => prefix.has(seq)).length);
            processed.set(p, prefix);
          }
          outstanding.length = 0;
          break;
        }
      }
    }
  } finally {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  }

  /** The messages of `p` processed without a gap from its first one. */
  function inOrderProcessed(p: number): Set<number> {
    const done = processed.get(p) as Set<number>;
    const prefix = new Set<number>();
    for (const seq of published.get(p) as number[]) {
      if (!done.has(seq)) break;
      prefix.add(seq);
    }
    return prefix;
  }
}

describe('FileBookmarkStore, model-based', () => {
  it('after each restart, drops exactly the messages processed in order and resumes from the same positions', () => {
    fc.assert(fc.property(fc.array(op, { maxLength: 80, size: 'max' }), run), { numRuns: 300 });
  });
});
