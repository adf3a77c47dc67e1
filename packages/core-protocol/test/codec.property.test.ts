import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as compactHeader from '../src/header-compact.js';
import * as fastHeader from '../src/header-fast.js';
import {
  type Command,
  CommandNames,
  decodeFrame,
  encodeCommand,
  FrameDecoder,
  FrameEncoder,
  type HeaderFieldName,
  headerFields,
  type Message,
  Message as MessageClass,
  MessageDecoder,
  ProtocolError,
} from '../src/index.js';
import { concat, decodeOne } from './helpers.js';

const knownKeys = new Set(
  headerFields.flatMap((f) => [f.key, ...((f as { aliases?: readonly string[] }).aliases ?? []), f.name]),
);
const fieldArbitraries = Object.fromEntries(
  headerFields
    .filter((f) => f.name !== 'command')
    .map((f) => [f.name, f.type === 'number' ? fc.maxSafeNat() : fc.string({ unit: 'binary', maxLength: 40 })]),
) as Record<string, fc.Arbitrary<string | number>>;

const extraHeaders = fc.dictionary(
  fc.string({ unit: 'binary', maxLength: 12 }).filter((k) => !knownKeys.has(k)),
  fc.oneof(fc.string({ unit: 'binary', maxLength: 20 }), fc.integer(), fc.boolean()),
  { maxKeys: 4 },
);

const body = fc.oneof(fc.uint8Array({ maxLength: 300 }), fc.string({ unit: 'binary', maxLength: 100 }));

/** Any command the encoder accepts. A sow body that starts with `{` could read as a batch: left out. */
const command: fc.Arbitrary<Command> = fc
  .record(
    {
      command: fc.constantFrom(...CommandNames),
      ...fieldArbitraries,
      data: body,
      headers: extraHeaders,
    },
    { requiredKeys: ['command'] },
  )
  .map((c) => c as unknown as Command)
  .filter((c) => {
    if (c.command !== 'sow' || c.data === undefined) return true;
    const first = typeof c.data === 'string' ? c.data.charCodeAt(0) : c.data[0];
    return first !== 0x7b;
  });

function bytesOf(data: Command['data']): number[] {
  if (data === undefined) return [];
  return Array.from(typeof data === 'string' ? new TextEncoder().encode(data) : data);
}

function expectDecodedAs(message: Message | undefined, sent: Command): void {
  expect(message).toBeDefined();
  const m = message as Message;
  for (const f of headerFields) {
    const name = f.name as HeaderFieldName;
    expect(m[name], name).toEqual(sent[name]);
  }
  const headers = Object.keys(sent.headers ?? {}).length > 0 ? sent.headers : undefined;
  expect(m.extra).toEqual(headers);
  expect(Array.from(m.data)).toEqual(bytesOf(sent.data));
}

/** Cut points to split `length` bytes into chunks. */
const cuts = (length: number) =>
  fc.uniqueArray(fc.integer({ min: 0, max: length }), { maxLength: 12 }).map((c) => c.sort((a, b) => a - b));

function split(bytes: Uint8Array, at: number[]): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  let from = 0;
  for (const cut of [...at, bytes.length]) {
    chunks.push(bytes.slice(from, cut));
    from = cut;
  }
  return chunks;
}

describe('codec properties', () => {
  it('decodes every command to what was encoded', () => {
    fc.assert(
      fc.property(command, (sent) => {
        const messages: Message[] = [];
        decodeFrame(encodeCommand(sent).subarray(4), (m) => messages.push(m));
        expect(messages).toHaveLength(1);
        expectDecodedAs(messages[0], sent);
      }),
      { numRuns: 2000 },
    );
  });

  it('reads any flat JSON object of unknown keys as JSON.parse does, however it is spaced', () => {
    const value = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 30 }),
      fc.double({ noDefaultInfinity: true, noNaN: true }).filter((n) => !Object.is(n, -0)),
      fc.boolean(),
      fc.constant(null),
    );
    const object = fc.dictionary(
      fc.string({ unit: 'binary', maxLength: 10 }).filter((k) => !knownKeys.has(k)),
      value,
      { minKeys: 1 },
    );
    fc.assert(
      fc.property(object, fc.constantFrom(undefined, 1, '\t', ' \n '), (obj, space) => {
        const json = JSON.stringify(obj, null, space);
        expect(decodeOne(json).extra).toEqual(JSON.parse(json));
      }),
      { numRuns: 1000 },
    );
  });

  it('yields the same frames and messages however a stream of frames is chunked', () => {
    const stream = fc.array(command, { minLength: 1, maxLength: 8 }).chain((commands) => {
      const encoder = new FrameEncoder(256);
      for (const c of commands) encoder.write(c);
      const bytes = encoder.take();
      return fc.tuple(fc.constant(commands), fc.constant(bytes), cuts(bytes.length));
    });
    fc.assert(
      fc.property(stream, ([commands, bytes, at]) => {
        const chunks = split(bytes, at);
        const frames: number[][] = [];
        const frameDecoder = new FrameDecoder();
        for (const chunk of chunks) frameDecoder.push(chunk, (f) => frames.push(Array.from(f)));
        const whole: number[][] = [];
        new FrameDecoder().push(bytes, (f) => whole.push(Array.from(f)));
        expect(frames).toEqual(whole);
        expect(frames).toHaveLength(commands.length);
        expect(frameDecoder.hasPartialFrame).toBe(false);

        const messages: Message[] = [];
        const decoder = new MessageDecoder((m) => messages.push(m));
        for (const chunk of chunks) decoder.push(chunk);
        expect(messages).toHaveLength(commands.length);
        commands.forEach((c, i) => {
          expectDecodedAs(messages[i], c);
        });
      }),
      { numRuns: 500 },
    );
  });

  /** Bytes that look enough like frames to get past the length prefix into the header parser. */
  const frameLike = fc.oneof(
    fc.uint8Array({ maxLength: 200 }),
    // A valid frame with some bytes changed.
    fc
      .tuple(command, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }))
      .map(([c, edits]) => {
        const bytes = encodeCommand(c).slice();
        for (const [at, value] of edits) bytes[at % bytes.length] = value;
        return bytes;
      }),
    // A correct prefix around header-like text.
    fc
      .array(fc.constantFrom(...'{}[]":,\\ \t0123456789-.eEtrufalsnbcpkldxu'.split('')), { maxLength: 60 })
      .map((chars) => {
        const payload = new TextEncoder().encode(chars.join(''));
        const out = new Uint8Array(4 + payload.length);
        new DataView(out.buffer).setUint32(0, payload.length);
        out.set(payload, 4);
        return out;
      }),
  );

  it('parses headers that share leading fields with the one before as each is parsed alone', () => {
    // Fields that repeat (the fast parser reuses them from the header before), with spacing,
    // escapes and duplicates, and fields that end the run of repeating ones.
    const field = fc.constantFrom(
      '"c":"p"',
      '"c":"ack"',
      '"c" : "p" ',
      '"t":"orders"',
      '"t":"or\\"ders"',
      '"topic":"orders"',
      '"sub_id":"1"',
      '"sub_id":"12"',
      '"a":"processed"',
      '"status":"success"',
      '"s":5',
      '"k":"42"',
      '"other":"x"',
      '"t":null',
      '"t":orders',
      '"c":"\\u0070"',
    );
    const header = fc.record({
      fields: fc.array(field, { maxLength: 6 }),
      cut: fc.option(fc.nat(), { nil: undefined }),
      // Bytes before the header in its chunk: the parser compares from any offset.
      pad: fc.nat({ max: 7 }),
    });
    const parse = (parser: typeof fastHeader.parseHeader, bytes: Uint8Array, start: number, end: number) => {
      const message = new MessageClass();
      try {
        const bodyStart = parser(bytes, start, end, message);
        return { bodyStart, fields: Object.entries(message), extra: message.extra };
      } catch (error) {
        if (!(error instanceof ProtocolError)) throw error;
        return { error: error.message };
      }
    };
    fc.assert(
      fc.property(fc.array(header, { minLength: 1, maxLength: 16 }), fc.boolean(), (headers, oneChunk) => {
        // All in one chunk (a view at an offset into a larger buffer), as a socket delivers them,
        // or each in its own.
        const frames = headers.map(({ fields, pad }) =>
          new TextEncoder().encode(`${' '.repeat(pad)}{${fields.join(',')}}body`),
        );
        const chunk = concat(new Uint8Array(1), ...frames).subarray(1);
        let at = 0;
        for (const [i, { cut, pad }] of headers.entries()) {
          const length = (frames[i] as Uint8Array).length;
          const bytes = oneChunk ? chunk : chunk.slice(at, at + length);
          const start = (oneChunk ? at : 0) + pad;
          const frameEnd = start - pad + length;
          const end = cut === undefined ? frameEnd : start + (cut % (frameEnd - start + 1));
          expect(parse(fastHeader.parseHeader, bytes, start, end)).toEqual(
            parse(compactHeader.parseHeader, bytes, start, end),
          );
          at += length;
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('sees a header differ from the remembered one in any byte of its leading fields, at any alignment', () => {
    // The fast parser compares the remembered leading bytes four at a time, then the last one to
    // three: a difference in any byte, wherever the header sits in its chunk, must be seen.
    const encoder = new TextEncoder();
    for (let idLength = 1; idLength <= 8; idLength++) {
      for (let changed = 0; changed < idLength; changed++) {
        for (let offset = 0; offset < 4; offset++) {
          const id = 'a'.repeat(idLength);
          const other = `${id.slice(0, changed)}b${id.slice(changed + 1)}`;
          const first = `{"c":"p","t":"orders","sub_id":"${id}","k":"1"}`;
          const second = `{"c":"p","t":"orders","sub_id":"${other}","k":"2"}`;
          const chunk = encoder.encode(`${' '.repeat(offset)}${first}${second}`);
          const parse = (start: number) => {
            const message = new MessageClass();
            fastHeader.parseHeader(chunk, start, chunk.length, message);
            return message;
          };
          // Parsed a few times, the first header's leading fields are the remembered ones.
          for (let i = 0; i < 5; i++) expect(parse(offset).subId).toBe(id);
          expect(parse(offset + first.length).subId).toBe(other);
        }
      }
    }
  });

  it('parses any header-like bytes as the other build does, errors included', () => {
    // Escapes, non-ASCII and invalid UTF-8 bytes anywhere, also right after a backslash.
    const piece = fc.oneof(
      fc.constantFrom(...'{}":,\\ \tu0123456789abcdeflnprstkx-.'.split('')).map((c) => [c.charCodeAt(0)]),
      fc.constantFrom(
        [0x80],
        [0xff],
        [0x5c, 0xff],
        [0x5c, 0xc3, 0xa9],
        [0xc3, 0xa9],
        [0xef, 0xbb, 0xbf],
        [0xf0, 0x9f, 0x98, 0x80],
        [0xed, 0xa0, 0x80],
        [0x1f],
      ),
      fc
        .constantFrom('"c":"p"', '"t":"a\\"b"', '"s":5', '"bm":"1|2|"', '"\\u0074":"x"')
        .map((t) => [...new TextEncoder().encode(t)]),
    );
    const parse = (parser: typeof fastHeader.parseHeader, bytes: Uint8Array) => {
      const message = new MessageClass();
      try {
        const bodyStart = parser(bytes, 0, bytes.length, message);
        return { bodyStart, fields: Object.entries(message), extra: message.extra };
      } catch (error) {
        if (!(error instanceof ProtocolError)) throw error;
        return { error: error.message };
      }
    };
    fc.assert(
      fc.property(fc.boolean(), fc.array(piece, { maxLength: 30 }), (inKey, pieces) => {
        const bytes = new Uint8Array([0x7b, ...(inKey ? [0x22] : []), ...pieces.flat()]);
        expect(parse(fastHeader.parseHeader, bytes)).toEqual(parse(compactHeader.parseHeader, bytes));
      }),
      { numRuns: 3000 },
    );
  });

  it('turns any garbage into ProtocolErrors only, and finishes', () => {
    const garbage = fc.array(frameLike, { minLength: 1, maxLength: 5 }).chain((parts) => {
      const bytes = concat(...parts);
      return fc.tuple(fc.constant(bytes), cuts(bytes.length));
    });
    fc.assert(
      fc.property(garbage, ([bytes, at]) => {
        const decoder = new MessageDecoder(() => {}, { maxFrameSize: 1024 });
        let failed: unknown;
        for (const chunk of split(bytes, at)) {
          try {
            decoder.push(chunk);
          } catch (error) {
            if (!(error instanceof ProtocolError)) throw error;
            if (failed !== undefined) expect(error).toBe(failed); // it stays failed, with the same error
            failed = error;
          }
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('decodes any single frame into messages or a ProtocolError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 120 }), (payload) => {
        try {
          decodeFrame(payload, () => {});
        } catch (error) {
          if (!(error instanceof ProtocolError)) throw error;
        }
      }),
      { numRuns: 3000 },
    );
  });
});
