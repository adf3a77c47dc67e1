import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { WebSocketFrameSplitter } from '../src/index.js';
import { concat, frame } from './helpers.js';

function splitAll(splitter: WebSocketFrameSplitter, parts: Uint8Array[]): Buffer[] {
  const out: Buffer[] = [];
  for (const part of parts) splitter.split(part, (f) => out.push(Buffer.from(f)));
  return out;
}

describe('WebSocketFrameSplitter', () => {
  it('emits whole frames as views of the input, without copying', () => {
    const input = concat(frame('{"c":"p"}a'), frame(''), frame('{"c":"p"}bcd'));
    const views: Uint8Array[] = [];
    new WebSocketFrameSplitter().split(input, (f) => views.push(f));
    expect(views.map((v) => v.length)).toEqual([14, 4, 16]);
    for (const view of views) expect(view.buffer).toBe(input.buffer);
  });

  it('holds a partial frame until the rest arrives, counting it as pending', () => {
    const splitter = new WebSocketFrameSplitter();
    const f = frame('{"c":"p"}body');
    expect(splitAll(splitter, [f.subarray(0, 3)])).toEqual([]);
    expect(splitter.pendingBytes).toBe(3);
    expect(splitAll(splitter, [f.subarray(3, 10)])).toEqual([]);
    expect(splitter.pendingBytes).toBe(10);
    expect(splitAll(splitter, [f.subarray(10)])).toEqual([Buffer.from(f)]);
    expect(splitter.pendingBytes).toBe(0);
  });

  it('copies a frame sent in many pieces about once, not once per piece', () => {
    const big = frame(new Uint8Array(1024 * 1024).fill(0x61));
    const splitter = new WebSocketFrameSplitter();
    const set = Uint8Array.prototype.set;
    let copied = 0;
    Uint8Array.prototype.set = function (this: Uint8Array, source: ArrayLike<number>, offset?: number) {
      copied += source.length;
      set.call(this, source, offset);
    };
    let out: Buffer[];
    try {
      out = splitAll(
        splitter,
        Array.from({ length: Math.ceil(big.length / 1024) }, (_, i) => big.subarray(i * 1024, (i + 1) * 1024)),
      );
    } finally {
      Uint8Array.prototype.set = set;
    }
    expect(out).toEqual([Buffer.from(big)]);
    // Joining what was held to each new piece copied 512 MiB here (a 4 MiB frame in 1 KiB sends took 13 s).
    expect(copied).toBeLessThan(4 * big.length);
  });

  it('reads lengths above 2^31 as unsigned', () => {
    const splitter = new WebSocketFrameSplitter();
    splitter.split(Uint8Array.of(0x80, 0, 0, 0, 1, 2), () => expect.fail('not a whole frame'));
    expect(splitter.pendingBytes).toBe(6);
    splitter.reset();
    expect(splitter.pendingBytes).toBe(0);
  });

  it('yields the original frames however the stream is cut', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 300 }), { minLength: 1, maxLength: 20, size: 'max' }),
        fc.array(fc.nat(), { maxLength: 10 }),
        (bodies, cuts) => {
          const frames = bodies.map((b) => Buffer.from(frame(b)));
          const stream = concat(...frames);
          const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
          const parts: Uint8Array[] = [];
          let from = 0;
          for (const p of [...points, stream.length]) {
            parts.push(stream.subarray(from, p));
            from = p;
          }
          const splitter = new WebSocketFrameSplitter();
          expect(splitAll(splitter, parts)).toEqual(frames);
          expect(splitter.pendingBytes).toBe(0);
        },
      ),
    );
  });
});
