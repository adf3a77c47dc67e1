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
import {
  BookmarkModel,
  type BookmarkOp,
  bookmarkOp,
  positions,
  SUB_ID,
} from '../../../ha-client/test/durable-store-models.js';
import { FileBookmarkStore } from '../src/index.js';

function run(ops: BookmarkOp[]): void {
  const dir = mkdtempSync(join(tmpdir(), 'amps-ts-store-'));
  const path = join(dir, 'subscriber.bookmarks');
  const open = () => new FileBookmarkStore(path, { replicationLagMs: 0 });
  let store = open();
  store.persisted(SUB_ID, Bookmarks.EPOCH);
  const model = new BookmarkModel();
  try {
    for (const o of ops) {
      if (o.k !== 'restart') {
        model.step(o, store);
        continue;
      }
      const before = positions(store.getMostRecent(SUB_ID));
      store.close();
      store = open();
      expect(positions(store.getMostRecent(SUB_ID))).toBe(before);
      model.restarted();
    }
  } finally {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('FileBookmarkStore, model-based', () => {
  it('after each restart, drops exactly the messages processed in order and resumes from the same positions', () => {
    fc.assert(fc.property(fc.array(bookmarkOp, { maxLength: 80, size: 'max' }), run), { numRuns: 300 });
  });
});
