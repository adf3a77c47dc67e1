import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_MAX_FRAME_SIZE,
  encodeCommand,
  FrameDecoder,
  InvalidOptionsError,
  type Message,
  MessageDecoder,
  ProtocolError,
} from '../src/index.js';
import { concat, decodeAll, frame, text } from './helpers.js';

function framesOf(decoder: FrameDecoder, ...chunks: Uint8Array[]): string[] {
  const out: string[] = [];
  for (const chunk of chunks) decoder.push(chunk, (f) => out.push(text(f)));
  return out;
}

const stream = concat(
  frame('{"c":"p","t":"a"}', 'one'),
  frame('{"c":"p","t":"b"}'),
  frame('{"c":"sow","t":"q"}', '{"k":"1","l":1}x{"k":"2","l":1}y'),
  frame('{"c":"p","t":"d"}', 'x'.repeat(300)),
);
const expected = [
  '{"c":"p","t":"a"}one',
  '{"c":"p","t":"b"}',
  '{"c":"sow","t":"q"}{"k":"1","l":1}x{"k":"2","l":1}y',
  `{"c":"p","t":"d"}${'x'.repeat(300)}`,
];

describe('FrameDecoder', () => {
  it('yields exactly the frames sent, split at any offset', () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      expect(framesOf(new FrameDecoder(), stream.subarray(0, cut), stream.subarray(cut))).toEqual(expected);
    }
  });

  it('yields exactly the frames sent, one byte at a time', () => {
    const decoder = new FrameDecoder();
    const chunks = Array.from(stream, (b) => new Uint8Array([b]));
    expect(framesOf(decoder, ...chunks)).toEqual(expected);
    expect(decoder.hasPartialFrame).toBe(false);
  });

  it('yields exactly the frames sent, cut into three at every pair of offsets', () => {
    const small = stream.subarray(0, 60);
    for (let a = 0; a <= small.length; a++) {
      for (let b = a; b <= small.length; b++) {
        const got = framesOf(new FrameDecoder(), small.subarray(0, a), small.subarray(a, b), small.subarray(b));
        expect(got).toEqual(expected.slice(0, 2));
      }
    }
  });

  it('hands out frames inside one chunk as views and copies frames split over chunks', () => {
    const decoder = new FrameDecoder();
    const seen: Uint8Array[] = [];
    decoder.push(stream, (f) => seen.push(f));
    expect(seen.every((f) => f.buffer === stream.buffer)).toBe(true);

    const split: Uint8Array[] = [];
    const first = stream.slice(0, 10);
    const rest = stream.slice(10);
    decoder.push(first, (f) => split.push(f));
    expect(decoder.hasPartialFrame).toBe(true);
    first.fill(0); // the caller reuses its chunk: the carried-over bytes were copied
    decoder.push(rest, (f) => split.push(f));
    expect(split.map(text)).toEqual(expected);
    expect(split[0]?.buffer).not.toBe(rest.buffer);
  });

  it('holds a frame arriving a byte at a time in about its own size of memory', () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const size = 1024 * 1024;
    const big = frame('{"c":"p"}', 'q'.repeat(size - 9));
    const decoder = new FrameDecoder();
    const out: string[] = [];
    gc();
    const before = process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers;
    for (let i = 0; i < big.length - 1; i++) decoder.push(big.subarray(i, i + 1), (f) => out.push(text(f)));
    gc();
    const held = process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers - before;
    // It took about 230 bytes for each byte received (a 16 MiB message, 3.7 GB) until the frame was complete.
    expect(held).toBeLessThan(4 * size);
    decoder.push(big.subarray(big.length - 1), (f) => out.push(text(f)));
    expect(out).toEqual([`{"c":"p"}${'q'.repeat(size - 9)}`]);
    expect(decoder.hasPartialFrame).toBe(false);
  });

  it('reads the length as 4 bytes, big-endian and unsigned', () => {
    const big = frame('{"c":"p"}', 'z'.repeat(70_000));
    expect(Array.from(big.subarray(0, 4))).toEqual([0, 1, 0x11, 0x79]);
    const out = framesOf(new FrameDecoder(), big.subarray(0, 3), big.subarray(3, 40_000), big.subarray(40_000));
    expect(out).toEqual([`{"c":"p"}${'z'.repeat(70_000)}`]);
  });

  it('has a maximum frame size of 256 MiB by default', () => {
    expect(DEFAULT_MAX_FRAME_SIZE).toBe(256 * 1024 * 1024);
    const decoder = new FrameDecoder();
    const tooBig = new Uint8Array([0x10, 0, 0, 1]); // 256 MiB + 1
    expect(() => decoder.push(tooBig, () => {})).toThrow(/exceeds the maximum frame size of 268435456/);
  });

  it('rejects a frame over maxFrameSize from its prefix alone, and stays failed', () => {
    const decoder = new FrameDecoder({ maxFrameSize: 16 });
    expect(framesOf(decoder, frame('{"c":"p"}', '1234567'))).toHaveLength(1); // exactly 16
    let first: unknown;
    try {
      decoder.push(new Uint8Array([0, 0, 0, 17]), () => {});
    } catch (error) {
      first = error;
    }
    expect(first).toBeInstanceOf(ProtocolError);
    expect((first as ProtocolError).code).toBe('protocol');
    expect(() => decoder.push(frame('{}'), () => {})).toThrow(first as Error);
  });

  it('rejects a prefix split over chunks that announces too much', () => {
    const decoder = new FrameDecoder({ maxFrameSize: 100 });
    decoder.push(new Uint8Array([0, 0]), () => {});
    expect(() => decoder.push(new Uint8Array([1, 0]), () => {})).toThrow(ProtocolError);
  });

  it('rejects an empty frame', () => {
    expect(() => framesOf(new FrameDecoder(), new Uint8Array(4))).toThrow(/empty frame/);
  });

  it('checks its options', () => {
    for (const maxFrameSize of [0, -1, 1.5, Number.NaN]) {
      expect(() => new FrameDecoder({ maxFrameSize })).toThrow(InvalidOptionsError);
    }
  });

  it('delivers the rest of the chunk when a handler throws, then throws that error, and keeps going', () => {
    const decoder = new FrameDecoder();
    const seen: string[] = [];
    const boom = new Error('handler bug');
    expect(() =>
      decoder.push(stream, (f) => {
        seen.push(text(f));
        if (seen.length === 1) throw boom;
      }),
    ).toThrow(boom);
    expect(seen).toEqual(expected);
    expect(framesOf(decoder, frame('{"c":"p"}'))).toEqual(['{"c":"p"}']);
  });
});

describe('MessageDecoder', () => {
  it('yields the same messages however the stream is cut', () => {
    const whole = decodeAll(stream).map((m) => JSON.stringify({ ...m.toJSON(), body: m.text() }));
    expect(whole).toHaveLength(5); // the sow frame holds two records
    for (let cut = 0; cut <= stream.length; cut++) {
      const got = decodeAll(stream.subarray(0, cut), stream.subarray(cut));
      expect(got.map((m) => JSON.stringify({ ...m.toJSON(), body: m.text() }))).toEqual(whole);
    }
  });

  it('stays failed after a bad header: the stream cannot be trusted', () => {
    const out: Message[] = [];
    const decoder = new MessageDecoder((m) => out.push(m));
    const bad = concat(frame('{"c":"p"}'), frame('{"c":'), frame('{"c":"p"}'));
    expect(() => decoder.push(bad)).toThrow(ProtocolError);
    expect(out).toHaveLength(1);
    expect(() => decoder.push(frame('{"c":"p"}'))).toThrow(ProtocolError);
    expect(out).toHaveLength(1);
  });

  it('takes maxFrameSize', () => {
    const decoder = new MessageDecoder(() => {}, { maxFrameSize: 8 });
    expect(() => decoder.push(frame('{"c":"p"}'))).toThrow(/maximum frame size of 8/);
  });

  it('delivers every record of a batch even when the handler throws on one', () => {
    const seen: string[] = [];
    const decoder = new MessageDecoder((m) => {
      seen.push(m.text());
      throw new Error(`bad ${m.text()}`);
    });
    const chunk = concat(frame('{"c":"sow"}', '{"k":"1","l":1}a{"k":"2","l":1}b'), frame('{"c":"p"}', 'c'));
    expect(() => decoder.push(chunk)).toThrow('bad a');
    expect(seen).toEqual(['a', 'b', 'c']);
    expect(decoder.hasPartialFrame).toBe(false);
  });

  it('decodes what the encoder writes, split at every offset', () => {
    const encoded = concat(
      encodeCommand({ command: 'subscribe', commandId: '1', topic: 'a"b\\c\u00e9', filter: '/x > 1', data: 'hi' }),
      encodeCommand({ command: 'publish', topic: 't', sequence: 9, data: new Uint8Array([0, 255, 7]) }),
    );
    for (let cut = 0; cut <= encoded.length; cut++) {
      const [a, b] = decodeAll(encoded.subarray(0, cut), encoded.subarray(cut));
      expect([a?.command, a?.topic, a?.filter, a?.text()]).toEqual(['subscribe', 'a"b\\c\u00e9', '/x > 1', 'hi']);
      expect([b?.command, b?.sequence, Array.from(b?.data ?? [])]).toEqual(['publish', 9, [0, 255, 7]]);
    }
  });
});
