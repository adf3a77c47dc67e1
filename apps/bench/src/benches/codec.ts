import { encodeCommand, type Message, MessageDecoder } from '@amps-ts/core-protocol';
import { type BenchGroup, type BenchResult, measureRate } from '../runner.js';

/*
 * The header codec against the obvious way to do the same job in the same process:
 * decoding with TextDecoder + JSON.parse of the header, encoding with JSON.stringify +
 * Buffer.concat. Both sides see the same bytes and the same inputs.
 */

const FRAMES = 1024;
const BODY_SIZE = 100;
const TOPIC = 'orders';
const utf8 = new TextEncoder();

/** A 100-byte JSON body that differs per message. */
function body(i: number): Uint8Array {
  const json = `{"id":${i},"sym":"IBM","qty":${(i * 37) % 1000},"px":${(100 + (i % 50)).toFixed(2)},"side":"buy","note":"`;
  return utf8.encode(`${json}${'x'.repeat(BODY_SIZE - json.length - 2)}"}`);
}

/** A delivery as AMPS sends it on a bookmark subscription: every `s` and `bm` different. */
function deliveryFrames(): Uint8Array {
  const frames: Uint8Array[] = [];
  for (let i = 0; i < FRAMES; i++) {
    const seq = 1_000_000 + i;
    const header = `{"c":"p","t":"${TOPIC}","sub_id":"sub-1","s":${seq},"bm":"13579246801357924680|${seq}|","k":"${8_000_000_000 + i}","mt":"json"}`;
    const payload = Buffer.concat([Buffer.from(header), body(i)]);
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32BE(payload.length);
    frames.push(prefix, payload);
  }
  return new Uint8Array(Buffer.concat(frames));
}

/** The naive decoder: the header ends at the first `}`, TextDecoder + JSON.parse it, slice the body. */
function naiveDecode(stream: Uint8Array, onMessage: (header: Record<string, unknown>, data: Uint8Array) => void): void {
  const decoder = new TextDecoder();
  const view = new DataView(stream.buffer, stream.byteOffset, stream.byteLength);
  let pos = 0;
  while (pos + 4 <= stream.length) {
    const start = pos + 4;
    const end = start + view.getUint32(pos);
    const headerEnd = stream.indexOf(0x7d, start) + 1; // wrong for a `}` inside a header string: naive
    const header = JSON.parse(decoder.decode(stream.subarray(start, headerEnd))) as Record<string, unknown>;
    onMessage(header, stream.subarray(headerEnd, end));
    pos = end;
  }
}

function naiveEncode(topic: string, sequence: number, data: Uint8Array): Uint8Array {
  const header = Buffer.from(JSON.stringify({ c: 'p', t: topic, s: sequence }));
  const prefix = Buffer.allocUnsafe(4);
  prefix.writeUInt32BE(header.length + data.length);
  return Buffer.concat([prefix, header, data]);
}

/**
 * Measures `a` and `b` alternately `rounds` times and keeps each one's best: load from other
 * processes only ever slows a run down, and alternating exposes both sides to the same load.
 */
function bestOfAlternating(rounds: number, ms: number, a: () => number, b: () => number): [number, number] {
  let bestA = 0;
  let bestB = 0;
  for (let r = 0; r < rounds; r++) {
    bestA = Math.max(bestA, measureRate(a, ms));
    bestB = Math.max(bestB, measureRate(b, ms));
  }
  return [bestA, bestB];
}

const codec: BenchGroup = {
  name: 'codec',
  description: 'header codec: decode a delivery frame and encode a publish frame (100 B bodies) against the naive way',
  async run({ progress, quick }) {
    const ms = quick ? 200 : 250;
    const rounds = quick ? 1 : 15;

    const stream = deliveryFrames();
    let checksum = 0;
    const decoder = new MessageDecoder((m: Message) => {
      checksum += (m.sequence as number) + m.data.length + (m.subId as string).length;
    });
    const naiveChecksum = { value: 0 };
    const onNaive = (h: Record<string, unknown>, data: Uint8Array) => {
      naiveChecksum.value += (h.s as number) + data.length + (h.sub_id as string).length;
    };
    decoder.push(stream);
    naiveDecode(stream, onNaive);
    if (checksum !== naiveChecksum.value) throw new Error('decoders disagree on the benchmark frames');

    progress('decode: naive (TextDecoder + JSON.parse) and MessageDecoder');
    const [naiveDecodeRate, decodeRate] = bestOfAlternating(
      rounds,
      ms,
      () => {
        naiveDecode(stream, onNaive);
        return FRAMES;
      },
      () => {
        decoder.push(stream);
        return FRAMES;
      },
    );

    const bodies = Array.from({ length: FRAMES }, (_, i) => body(i));
    const ours = encodeCommand({ command: 'publish', topic: TOPIC, sequence: 7, data: bodies[7] });
    const theirs = naiveEncode(TOPIC, 7, bodies[7] as Uint8Array);
    if (Buffer.compare(ours, theirs) !== 0) throw new Error('encoders disagree on the benchmark frame');

    progress('encode: naive (JSON.stringify + Buffer.concat) and encodeCommand');
    let sink = 0;
    const [naiveEncodeRate, encodeRate] = bestOfAlternating(
      rounds,
      ms,
      () => {
        for (let i = 0; i < FRAMES; i++) sink += naiveEncode(TOPIC, i, bodies[i] as Uint8Array).length;
        return FRAMES;
      },
      () => {
        for (let i = 0; i < FRAMES; i++) {
          sink += encodeCommand({ command: 'publish', topic: TOPIC, sequence: i, data: bodies[i] }).length;
        }
        return FRAMES;
      },
    );
    if (sink === 0 || checksum === 0) throw new Error('nothing measured');

    const results: BenchResult[] = [
      {
        name: 'decode delivery frame (100 B body)',
        value: decodeRate,
        unit: 'frames/s',
        baseline: { name: 'TextDecoder + JSON.parse', value: naiveDecodeRate },
        target: { minRatio: 2, min: 1_500_000 },
        details: { frameBytes: stream.length / FRAMES, framesPerPush: FRAMES },
      },
      {
        name: 'encode publish frame (100 B body)',
        value: encodeRate,
        unit: 'frames/s',
        baseline: { name: 'JSON.stringify + Buffer.concat', value: naiveEncodeRate },
        target: { minRatio: 2, min: 2_500_000 },
        details: { frameBytes: ours.length },
      },
    ];
    return results;
  },
};

export default codec;
