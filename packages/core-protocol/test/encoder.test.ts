import { describe, expect, it } from 'vitest';
import { type Command, checkEncodable, encodeCommand, FrameEncoder, InvalidOptionsError } from '../src/index.js';
import { decodeAll, decodeOne, headerOf, text } from './helpers.js';

describe('encodeCommand', () => {
  it('writes c first, then the fields in the command object order', () => {
    expect(headerOf(encodeCommand({ topic: 't', sequence: 1, command: 'publish', commandId: '5' }))).toBe(
      '{"c":"p","t":"t","s":1,"cid":"5"}',
    );
  });

  it('skips undefined and null fields, and properties that are not header fields', () => {
    const message = decodeOne('{"c":"p","t":"orders","uri":"x"}', 'body');
    // A received message spread into a command: extra, data and methods are not header fields.
    const command = { ...message, command: 'publish', sequence: undefined, commandId: null } as unknown as Command;
    expect(headerOf(encodeCommand(command))).toBe('{"c":"p","t":"orders"}');
  });

  it('escapes what JSON needs and writes UTF-8', () => {
    const topic = 'q"uo\\te\n\t\u0001é😀\u2028';
    const encoded = encodeCommand({ command: 'publish', topic, filter: 'ascii only' });
    expect(JSON.parse(headerOf(encoded))).toEqual({ c: 'p', t: topic, filter: 'ascii only' });
    expect(decodeAll(encoded)[0]?.topic).toBe(topic);
  });

  it('writes lone surrogates as escapes, not broken UTF-8', () => {
    const topic = 'a\ud800b';
    const encoded = encodeCommand({ command: 'publish', topic });
    expect(headerOf(encoded)).toBe('{"c":"p","t":"a\\ud800b"}');
    expect(decodeAll(encoded)[0]?.topic).toBe(topic);
  });

  it('writes a string body as UTF-8 and a byte body as it is', () => {
    const s = decodeAll(encodeCommand({ command: 'publish', topic: 't', data: '{"v":"é"}' }))[0];
    expect(s?.json()).toEqual({ v: 'é' });
    const bytes = new Uint8Array([0, 1, 254, 255]);
    const b = decodeAll(encodeCommand({ command: 'publish', topic: 't', data: bytes }))[0];
    expect(Array.from(b?.data ?? [])).toEqual([0, 1, 254, 255]);
  });

  it('writes numbers as bare integers', () => {
    for (const n of [0, 1, 9, 10, 99, 100, 2 ** 31 - 1, 2 ** 31, 2 ** 32 + 5, Number.MAX_SAFE_INTEGER]) {
      const encoded = encodeCommand({ command: 'publish', sequence: n });
      expect(headerOf(encoded)).toBe(`{"c":"p","s":${n}}`);
      expect(decodeAll(encoded)[0]?.sequence).toBe(n);
    }
  });

  it.each([-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, Number.MAX_SAFE_INTEGER + 1, '5'])(
    'rejects the number %s with an InvalidOptionsError',
    (value) => {
      expect(() => encodeCommand({ command: 'publish', sequence: value as number })).toThrow(InvalidOptionsError);
    },
  );

  it('writes a command name it does not know, and rejects an empty one', () => {
    expect(headerOf(encodeCommand({ command: 'pause' as Command['command'] }))).toBe('{"c":"pause"}');
    expect(() => encodeCommand({ command: '' as Command['command'] })).toThrow(InvalidOptionsError);
    expect(() => encodeCommand({} as Command)).toThrow(InvalidOptionsError);
  });

  it('writes extra headers after the fields', () => {
    const encoded = encodeCommand({
      command: 'sow_delete',
      topic: 't',
      headers: { send_keys: true, max_msgs: 5, note: 'a"b', skip: undefined as unknown as string },
    });
    expect(headerOf(encoded)).toBe('{"c":"sow_delete","t":"t","send_keys":true,"max_msgs":5,"note":"a\\"b"}');
    expect(decodeAll(encoded)[0]?.extra).toEqual({ send_keys: true, max_msgs: 5, note: 'a"b' });
  });

  it('rejects extra headers that repeat a field or are not JSON values', () => {
    expect(() => encodeCommand({ command: 'publish', headers: { topic: 'x' } })).toThrow(/known field/);
    for (const key of ['c', 'cmd', 't', 'sub_id', 's', 'seq', 'bm', 'pw', 'password', 'msg_len']) {
      expect(() => encodeCommand({ command: 'publish', headers: { [key]: 'x' } }), key).toThrow(/known field/);
    }
    expect(() => encodeCommand({ command: 'publish', headers: { n: Number.NaN } })).toThrow(InvalidOptionsError);
    expect(() => encodeCommand({ command: 'publish', headers: { o: {} as unknown as string } })).toThrow(
      InvalidOptionsError,
    );
  });

  it('rejects a body that is neither bytes nor a string', () => {
    expect(() => encodeCommand({ command: 'publish', data: 5 as unknown as string })).toThrow(InvalidOptionsError);
    expect(() => encodeCommand({ command: 'publish', data: null as unknown as string })).toThrow(InvalidOptionsError);
  });

  it('checkEncodable refuses what encodeCommand refuses, with the same error, and nothing else', () => {
    const commands: Command[] = [
      { command: 'publish', topic: 't', data: 'x', sequence: 3, expiration: 60, headers: { n: 1, b: true } },
      { command: 'sow_delete', topic: 't', data: new Uint8Array([1]) },
      { command: '' as Command['command'] },
      {} as Command,
      { command: 'publish', expiration: 1.5 },
      { command: 'publish', sequence: -1 },
      { command: 'sow', topN: '5' as unknown as number },
      { command: 'publish', headers: { sub_id: 'x' } },
      { command: 'publish', headers: { n: Number.POSITIVE_INFINITY } },
      { command: 'publish', data: 5 as unknown as string },
      { command: 'publish', data: null as unknown as string },
    ];
    const outcome = (f: () => unknown) => {
      try {
        f();
        return 'ok';
      } catch (error) {
        expect(error).toBeInstanceOf(InvalidOptionsError);
        return (error as Error).message;
      }
    };
    for (const command of commands) {
      const expected = outcome(() => encodeCommand(command));
      expect(
        outcome(() => checkEncodable(command)),
        JSON.stringify(command),
      ).toBe(expected);
    }
    expect(commands.map((c) => outcome(() => checkEncodable(c))).filter((o) => o === 'ok')).toHaveLength(2);
  });

  it('returns frames that later frames never overwrite', () => {
    const frames = Array.from({ length: 2000 }, (_, i) =>
      encodeCommand({ command: 'publish', topic: `t${i}`, sequence: i, data: 'x'.repeat(i % 300) }),
    );
    frames.forEach((f, i) => {
      const m = decodeAll(f)[0];
      expect([m?.topic, m?.sequence, m?.data.length]).toEqual([`t${i}`, i, i % 300]);
    });
  });

  it('encodes a frame far larger than its block', () => {
    const data = new Uint8Array(1_000_000).fill(7);
    const big = encodeCommand({ command: 'publish', topic: 't', data });
    const small = encodeCommand({ command: 'publish', topic: 'u' });
    expect(decodeAll(big)[0]?.data).toEqual(data);
    expect(decodeAll(small)[0]?.topic).toBe('u');
    expect(small.buffer).not.toBe(big.buffer); // a small frame does not keep the big block alive
  });
});

describe('FrameEncoder', () => {
  it('batches frames into one buffer and starts over after take()', () => {
    const encoder = new FrameEncoder(64);
    encoder.write({ command: 'publish', topic: 'a', data: 'x'.repeat(100) });
    encoder.write({ command: 'publish', topic: 'b' });
    expect(encoder.byteLength).toBeGreaterThan(100);
    const batch = encoder.take();
    expect(encoder.byteLength).toBe(0);
    expect(decodeAll(batch).map((m) => m.topic)).toEqual(['a', 'b']);
    encoder.write({ command: 'publish', topic: 'c' });
    expect(decodeAll(encoder.take()).map((m) => m.topic)).toEqual(['c']);
    expect(decodeAll(batch).map((m) => m.topic)).toEqual(['a', 'b']); // take() returned a copy
  });

  it('leaves nothing behind when a write fails', () => {
    const encoder = new FrameEncoder();
    encoder.write({ command: 'publish', topic: 'a' });
    const before = encoder.byteLength;
    expect(() => encoder.write({ command: 'publish', topic: 'b', sequence: -1 })).toThrow(InvalidOptionsError);
    expect(encoder.byteLength).toBe(before);
    expect(decodeAll(encoder.take()).map((m) => m.topic)).toEqual(['a']);
  });

  it('clear() drops what was written since the last take', () => {
    const encoder = new FrameEncoder();
    encoder.write({ command: 'publish', topic: 'a' });
    encoder.clear();
    expect(encoder.byteLength).toBe(0);
    encoder.write({ command: 'publish', topic: 'b' });
    expect(decodeAll(encoder.take()).map((m) => m.topic)).toEqual(['b']);
  });

  it('takeView() hands out views that later writes, growth and take() never touch', () => {
    const encoder = new FrameEncoder(64);
    const views: Uint8Array[] = [];
    for (let i = 0; i < 50; i++) {
      encoder.write({ command: 'publish', topic: `t${i}`, data: 'y'.repeat(i * 3) });
      if (i % 3 === 0) views.push(encoder.takeView());
    }
    const rest = encoder.take();
    encoder.write({ command: 'publish', topic: 'after' });
    encoder.take();
    const topics = [...views, rest].flatMap((v) => decodeAll(v).map((m) => m.topic));
    expect(topics).toEqual(Array.from({ length: 50 }, (_, i) => `t${i}`));
  });

  it('writes a length prefix that counts header and body', () => {
    const encoder = new FrameEncoder();
    encoder.write({ command: 'publish', topic: 't', data: 'body' });
    const bytes = encoder.take();
    expect(new DataView(bytes.buffer).getUint32(0)).toBe(bytes.length - 4);
    expect(text(bytes.subarray(4))).toBe('{"c":"p","t":"t"}body');
  });
});
