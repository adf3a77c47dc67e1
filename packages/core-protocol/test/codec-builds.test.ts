import { describe, expect, it } from 'vitest';
import * as compactEncoder from '../src/encoder-compact.js';
import * as fastEncoder from '../src/encoder-fast.js';
import * as compactHeader from '../src/header-compact.js';
import * as fastHeader from '../src/header-fast.js';
import { encodeCommand, FrameEncoder, parseHeader } from '../src/index.js';

/** The public members of an instance type (`#private` ones differ by design). */
type Members<T> = { [K in keyof T]: T[K] };

// The compact build offers exactly the fast build's API, with the same types.
const sameHeaderApi: typeof fastHeader = compactHeader;
const sameEncoderApi: {
  encodeCommand: typeof fastEncoder.encodeCommand;
  FrameEncoder: new (initialCapacity?: number) => Members<fastEncoder.FrameEncoder>;
} = compactEncoder;

describe('codec builds', () => {
  const compact = process.env.AMPS_TS_CODEC === 'compact';

  it(`uses the ${compact ? 'compact' : 'fast'} codec in this test project`, () => {
    const header = compact ? sameHeaderApi : fastHeader;
    const encoder = compact ? sameEncoderApi : fastEncoder;
    expect(parseHeader).toBe(header.parseHeader);
    expect(encodeCommand).toBe(encoder.encodeCommand);
    expect(FrameEncoder).toBe(encoder.FrameEncoder);
  });
});
