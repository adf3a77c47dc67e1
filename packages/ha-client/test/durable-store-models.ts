/**
 * What the durable stores' model-based tests share (`@amps-ts/store-file` in Node.js,
 * `@amps-ts/store-indexeddb` in a page): the operations they draw, and models of what a store
 * must hold after a restart. A publish store must hold what the memory store holds, where the
 * memory store "restarts" by `restore` from its own contents; a bookmark store must drop exactly
 * the messages processed in order and resume from the same positions. Failures throw. No Node.js
 * import: a browser page bundles this too.
 */
import type { BookmarkStore, Command } from '@amps-ts/core-protocol';
import fc from 'fast-check';
import { MemoryPublishStore } from '../src/index.js';

// ---- publish stores ----

export type PublishOp =
  | { k: 'publish'; body: string | Uint8Array }
  | { k: 'ack'; ahead: number }
  | { k: 'refuse'; pick: number }
  | { k: 'logon'; ahead: number }
  | { k: 'restart' };

export const publishOp: fc.Arbitrary<PublishOp> = fc.oneof(
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

export function replayed(store: MemoryPublishStore): Command[] {
  const commands: Command[] = [];
  store.replay((command) => commands.push(command));
  return commands;
}

/** What a publish store holds, as comparable text (bodies as text or bytes). */
export function publishContents(store: MemoryPublishStore): string {
  const body = (data: Command['data']) =>
    data instanceof Uint8Array ? `bytes ${[...data].join(' ')}` : `text ${JSON.stringify(data)}`;
  const commands = replayed(store).map(({ sequence, topic, data }) => `${sequence} ${topic} ${body(data)}`);
  return JSON.stringify({ commands, lastSequence: store.nextSequence() - 1, lastPersisted: store.lastPersisted() });
}

/**
 * The memory store a restart of `model` leaves. `synced: false` for a store no logon has numbered
 * since it started on an empty file: nothing in it was sent, and the next logon may renumber it.
 */
export function restarted(model: MemoryPublishStore, synced = true): MemoryPublishStore {
  const state = {
    lastSequence: model.nextSequence() - 1,
    lastPersisted: model.lastPersisted(),
    ...(synced ? {} : { sentUpTo: model.lastPersisted() }),
  };
  return new MemoryPublishStore({ restore: { ...state, commands: replayed(model) } });
}

/** Throws unless `store` holds what `model` holds. */
export function checkSameContents(store: MemoryPublishStore, model: MemoryPublishStore, after: unknown): void {
  const [held, expected] = [publishContents(store), publishContents(model)];
  if (held !== expected) throw new Error(`after ${JSON.stringify(after)}: ${held}, expected ${expected}`);
}

// ---- bookmark stores ----

export type BookmarkOp =
  | { k: 'deliver'; publisher: number; step: number }
  | { k: 'discard'; pick: number; oldest: boolean }
  | { k: 'ack' }
  | { k: 'restart' };

const PUBLISHERS = [11, 22, 33];

export const bookmarkOp: fc.Arbitrary<BookmarkOp> = fc.oneof(
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

/** The publisher positions in a recovery point, sorted, without repeats. */
export const positions = (point: string | undefined): string =>
  [...new Set((point ?? '').split(',').filter((entry) => /^[1-9]\d*\|\d+\|$/.test(entry)))].sort().join(',');

/** The subscription the model drives (started from EPOCH). */
export const SUB_ID = 'orders';

/**
 * A bookmark subscription's messages: what each publisher has published (the server's log), how
 * far this run has been delivered, and which delivered messages are processed.
 */
export class BookmarkModel {
  readonly #published = new Map<number, number[]>(PUBLISHERS.map((p) => [p, []]));
  readonly #delivered = new Map<number, number>(PUBLISHERS.map((p) => [p, 0]));
  readonly #outstanding: Array<{ p: number; seq: number }> = [];
  readonly #processed = new Map<number, Set<number>>(PUBLISHERS.map((p) => [p, new Set()]));

  /** Applies a step other than a restart to the store; throws if the store got it wrong. */
  step(o: Exclude<BookmarkOp, { k: 'restart' }>, store: BookmarkStore): void {
    const bookmark = (p: number, seq: number) => `${p}|${seq}|`;
    if (o.k === 'deliver') {
      const log = this.#published.get(o.publisher) as number[];
      let index = this.#delivered.get(o.publisher) as number;
      if (index === log.length) log.push((log.at(-1) ?? 0) + o.step); // a new message
      const seq = log[index++] as number;
      this.#delivered.set(o.publisher, index);
      const fresh = store.log(SUB_ID, bookmark(o.publisher, seq));
      // Delivered again after a restart: processed in order before it, it must be a duplicate.
      if (fresh === this.#inOrderProcessed(o.publisher).has(seq)) {
        throw new Error(`${bookmark(o.publisher, seq)} logged as ${fresh ? 'new' : 'a duplicate'}`);
      }
      if (fresh) this.#outstanding.push({ p: o.publisher, seq });
    } else if (o.k === 'discard') {
      if (this.#outstanding.length === 0) return;
      const [m] = this.#outstanding.splice(o.oldest ? 0 : o.pick % this.#outstanding.length, 1);
      if (!m) return;
      store.discard(SUB_ID, bookmark(m.p, m.seq));
      this.#processed.get(m.p)?.add(m.seq);
    } else if (this.#outstanding.length === 0) {
      const last = [...this.#delivered].find(([, n]) => n > 0);
      if (last) store.persisted(SUB_ID, bookmark(last[0], this.#published.get(last[0])?.[last[1] - 1] as number));
    }
  }

  /** The store restarted: the server replays each publisher from after the last message processed in order. */
  restarted(): void {
    for (const p of PUBLISHERS) {
      const prefix = this.#inOrderProcessed(p);
      this.#delivered.set(p, (this.#published.get(p) as number[]).filter((seq) => prefix.has(seq)).length);
      this.#processed.set(p, prefix);
    }
    this.#outstanding.length = 0;
  }

  /** The messages of `p` processed without a gap from its first one. */
  #inOrderProcessed(p: number): Set<number> {
    const done = this.#processed.get(p) as Set<number>;
    const prefix = new Set<number>();
    for (const seq of this.#published.get(p) as number[]) {
      if (!done.has(seq)) break;
      prefix.add(seq);
    }
    return prefix;
  }
}
