import { describe, expect, it } from 'vitest';
import { encodeCommand, type Message, MessageDecoder } from '../src/index.js';

function decodeAll(...chunks: Uint8Array[]): Message[] {
  const out: Message[] = [];
  const decoder = new MessageDecoder((m) => out.push(m));
  for (const chunk of chunks) decoder.push(chunk);
  return out;
}

describe('codec', () => {
  it('writes the short keys and p for publish', () => {
    const frame = encodeCommand({
      command: 'publish',
      commandId: '2',
      topic: 'orders',
      sequence: 42,
      ackType: 'persisted',
      data: '{"id":7}',
    });
    const text = new TextDecoder().decode(frame.subarray(4));
    expect(text).toBe('{"c":"p","cid":"2","t":"orders","s":42,"a":"persisted"}{"id":7}');
    expect(new DataView(frame.buffer).getUint32(0)).toBe(frame.length - 4);
  });

  it('decodes what it encodes, split at every offset', () => {
    const frame = encodeCommand({
      command: 'subscribe',
      commandId: '1',
      topic: 'a"b\\c\u00e9',
      filter: '/x > 1',
      data: 'hi',
    });
    for (let cut = 0; cut <= frame.length; cut++) {
      const [m] = decodeAll(frame.subarray(0, cut), frame.subarray(cut));
      expect(m?.command).toBe('subscribe');
      expect(m?.topic).toBe('a"b\\c\u00e9');
      expect(m?.filter).toBe('/x > 1');
      expect(m?.text()).toBe('hi');
    }
  });
});
