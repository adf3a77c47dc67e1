/**
 * The Client's outbox: whatever is written, in any mix and size, the batches it hands over decode
 * to the same commands in order, and a batch already handed over is never written into again
 * (the connection may still be sending it).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Outbox } from '../src/client/outbox.js';
import { type Message, MessageDecoder } from '../src/index.js';

type Op =
  | { kind: 'publish'; command: 'publish' | 'delta_publish'; topic: string; data: string | Uint8Array }
  | { kind: 'heartbeat' }
  | { kind: 'take' };

const text = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 1200 }),
  // Around the size below which frames are short (pending text, or the scratch area), and past a slab.
  fc
    .record({ unit: fc.constantFrom('x', 'é', '€', '😀'), count: fc.nat({ max: 120_000 }) })
    .map(({ unit, count }) => unit.repeat(count)),
);
const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record({
      kind: fc.constant('publish' as const),
      command: fc.constantFrom('publish' as const, 'delta_publish' as const),
      topic: fc.constantFrom('orders', 'trades', 'é/topic'),
      data: fc.oneof(
        text,
        text.map((s) => new TextEncoder().encode(s)),
      ),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: 'heartbeat' as const }) },
  { weight: 2, arbitrary: fc.constant({ kind: 'take' as const }) },
);

describe('Outbox', () => {
  it('hands over batches that decode to what was written, in order, never overwritten later', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60, size: 'max' }), (ops) => {
        const outbox = new Outbox();
        const batches: Uint8Array[] = [];
        const expected: Array<{ command: string; topic?: string; text: string }> = [];
        for (const o of ops) {
          if (o.kind === 'take') {
            batches.push(outbox.take());
            continue;
          }
          if (o.kind === 'heartbeat') {
            outbox.write({ command: 'heartbeat', options: 'beat' });
            expected.push({ command: 'heartbeat', text: '' });
            continue;
          }
          outbox.writePublish(o.command, o.topic, o.data);
          const body = typeof o.data === 'string' ? o.data : new TextDecoder().decode(o.data);
          expected.push({ command: o.command, topic: o.topic, text: body });
        }
        batches.push(outbox.take());
        expect(outbox.byteLength).toBe(0);
        // Decoded only now: every batch was kept as handed over while later ones were written.
        const got: Message[] = [];
        const decoder = new MessageDecoder((m) => got.push(m), { maxFrameSize: 1 << 30 });
        for (const batch of batches) decoder.push(batch);
        // Lone surrogates in a string body are encoded as U+FFFD, as TextEncoder does.
        const wellFormed = (s: string) => new TextDecoder().decode(new TextEncoder().encode(s));
        expect(got.map((m) => ({ command: m.command, topic: m.topic, text: m.text() }))).toEqual(
          expected.map((e) => ({ ...e, text: wellFormed(e.text) })),
        );
      }),
      { numRuns: 150 },
    );
  });

  it('moves pending frames to a new slab with the bytes not yet taken, ASCII or not', () => {
    for (const unit of ['x', 'é']) {
      const outbox = new Outbox();
      outbox.writePublish('publish', 'big', new Uint8Array(220_000).fill(0x41));
      const first = outbox.take();
      outbox.write({ command: 'heartbeat', options: 'beat' }); // written, not yet taken
      const bodies = Array.from({ length: 60 }, (_, i) => `${i}:${unit.repeat(900)}`); // short: pending
      for (const body of bodies) outbox.writePublish('publish', 'small', body);
      const second = outbox.take();
      expect(second.buffer).not.toBe(first.buffer);
      const got: Message[] = [];
      new MessageDecoder((m) => got.push(m)).push(second);
      expect(got.map((m) => m.command)).toEqual(['heartbeat', ...bodies.map(() => 'publish')]);
      expect(got.slice(1).map((m) => m.text())).toEqual(bodies);
    }
  });
});
