import { parseHeader } from '#header';
import { InvalidOptionsError, ProtocolError } from './errors.js';
import { fail, view } from './header-common.js';
import { Message, setBody } from './message.js';
import { PartialFrame, readLength } from './partial-frame.js';

// The header parser comes in two builds with one behaviour, chosen by package.json `imports`:
// `header-fast.ts` by default, `header-compact.ts` (less code, slower) under the `browser` condition.
// The codec tests run against both.
export { parseHeader };

/** 256 MiB, as the reference Go client. */
export const DEFAULT_MAX_FRAME_SIZE = 256 * 1024 * 1024;

/* ---------- frames to messages ---------- */

/**
 * Decodes one frame (without its length prefix) into messages.
 *
 * A `sow` frame holds a batch of records, each with its own header carrying `l`; each record
 * becomes one message that inherits the batch header.
 */
export function decodeFrame(frame: Uint8Array, onMessage: (message: Message) => void): void {
  decodeFrameAt(frame, 0, frame.length, onMessage);
}

function decodeFrameAt(bytes: Uint8Array, start: number, end: number, onMessage: (message: Message) => void): void {
  const message = new Message();
  const headerEnd = parseHeader(bytes, start, end, message);
  if (message.command === 'sow' && headerEnd < end && bytes[headerEnd] === 0x7b) {
    if (decodeBatch(message, bytes, headerEnd, end, onMessage)) return;
  }
  setBody(message, bytes, headerEnd, end);
  onMessage(message);
}

/**
 * Delivers each record of a SOW batch as a message. Returns false, having delivered nothing,
 * when the body is not a batch: its first "record" is no header with `l`, so it is the body of a
 * single-record message.
 */
function decodeBatch(
  batch: Message,
  bytes: Uint8Array,
  pos: number,
  end: number,
  onMessage: (message: Message) => void,
): boolean {
  for (let first = true; pos < end; first = false) {
    const record = new Message();
    record.inheritHeader(batch);
    record.length = undefined;
    let bodyStart: number;
    try {
      bodyStart = parseHeader(bytes, pos, end, record);
    } catch (error) {
      if (first) return false;
      throw error;
    }
    if (record.length === undefined) {
      if (first) return false;
      fail('SOW batch record has no length (l)');
    }
    const bodyEnd = bodyStart + record.length;
    if (bodyEnd > end) fail('SOW batch record runs past the end of the frame');
    setBody(record, bytes, bodyStart, bodyEnd);
    onMessage(record);
    pos = bodyEnd;
  }
  return true;
}

/* ---------- the byte stream to frames ---------- */

export interface FrameDecoderOptions {
  /** Largest frame accepted, in bytes, not counting the 4-byte prefix. @default 256 MiB */
  maxFrameSize?: number;
}

/**
 * Finds frames in a byte stream and hands out their positions; shared by `FrameDecoder` and
 * `MessageDecoder`. After a `ProtocolError` it stays failed: the stream cannot be resynchronised.
 */
class FrameSplitter {
  readonly #maxFrameSize: number;
  /** A frame cut off at the end of a chunk, copied: the caller may reuse its chunk. */
  readonly #partial = new PartialFrame();
  #error: ProtocolError | undefined = undefined;

  constructor(options: FrameDecoderOptions) {
    const max = options.maxFrameSize ?? DEFAULT_MAX_FRAME_SIZE;
    if (!Number.isSafeInteger(max) || max < 1) {
      throw new InvalidOptionsError(`maxFrameSize must be a positive integer, got ${max}`);
    }
    this.#maxFrameSize = max;
  }

  get hasPartialFrame(): boolean {
    return this.#partial.filled > 0;
  }

  /** Calls `onFrame(bytes, start, end)` for every complete frame in order (without its prefix). */
  push(chunk: Uint8Array, onFrame: (bytes: Uint8Array, start: number, end: number) => void): void {
    if (this.#error) throw this.#error;
    try {
      this.#push(chunk, onFrame);
    } catch (error) {
      if (error instanceof ProtocolError) this.#error = error;
      throw error;
    }
  }

  #push(chunk: Uint8Array, onFrame: (bytes: Uint8Array, start: number, end: number) => void): void {
    let pos = 0;
    const end = chunk.length;
    const whole = (frame: Uint8Array) => onFrame(frame, 4, frame.length);
    if (this.#partial.filled > 0) {
      pos = this.#partial.add(chunk, whole, this.#checkLength);
      if (this.#partial.filled > 0) return;
    }
    while (end - pos >= 4) {
      const length = readLength(chunk, pos);
      this.#checkLength(length);
      if (end - pos - 4 < length) break;
      pos += 4;
      onFrame(chunk, pos, pos + length);
      pos += length;
    }
    if (pos < end) this.#partial.add(chunk.subarray(pos), whole, this.#checkLength);
  }

  readonly #checkLength = (length: number): void => {
    if (length === 0) fail('empty frame (length 0)');
    if (length > this.#maxFrameSize) {
      fail(
        `frame of ${length} bytes exceeds the maximum frame size of ${this.#maxFrameSize} bytes (the maxFrameSize option)`,
      );
    }
  };
}

/**
 * Collects the first error a caller's handler throws, so that the frames after it in the chunk
 * are still delivered (and the stream stays in step); `push` rethrows it at the end.
 */
class HandlerFailure {
  #error: { value: unknown } | undefined = undefined;

  record(error: unknown): void {
    this.#error ??= { value: error };
  }

  rethrow(): void {
    const error = this.#error;
    if (error === undefined) return;
    this.#error = undefined;
    throw error.value;
  }
}

/**
 * Splits a byte stream of 4-byte big-endian length-prefixed frames into frames.
 *
 * Takes chunks of any size. A frame inside one chunk is a view into it (no copy); a frame split
 * over chunks is copied into its own buffer.
 *
 * Errors: a bad frame throws a `ProtocolError` and the decoder stays failed (every later `push`
 * throws it again): the stream cannot be resynchronised. If `onFrame` throws, the frames after
 * it are still delivered and `push` then throws the first such error; the decoder stays usable.
 */
export class FrameDecoder {
  readonly #splitter: FrameSplitter;
  readonly #failure = new HandlerFailure();

  constructor(options: FrameDecoderOptions = {}) {
    this.#splitter = new FrameSplitter(options);
  }

  /** Whether part of a frame is waiting for more bytes. */
  get hasPartialFrame(): boolean {
    return this.#splitter.hasPartialFrame;
  }

  /** Feeds a chunk; calls `onFrame` for every complete frame (without its prefix), in order. */
  push(chunk: Uint8Array, onFrame: (frame: Uint8Array) => void): void {
    this.#splitter.push(chunk, (bytes, start, end) => {
      try {
        onFrame(view(bytes, start, end));
      } catch (error) {
        this.#failure.record(error);
      }
    });
    this.#failure.rethrow();
  }
}

export interface MessageDecoderOptions extends FrameDecoderOptions {}

/**
 * A byte stream in, messages out: frames are split, then decoded as `decodeFrame` does.
 * Errors are handled as in `FrameDecoder`, for `onMessage`.
 */
export class MessageDecoder {
  readonly #splitter: FrameSplitter;
  readonly #failure = new HandlerFailure();
  readonly #onMessage: (message: Message) => void;
  readonly #deliver = (message: Message): void => {
    try {
      this.#onMessage(message);
    } catch (error) {
      this.#failure.record(error);
    }
  };
  readonly #onFrame = (bytes: Uint8Array, start: number, end: number): void =>
    decodeFrameAt(bytes, start, end, this.#deliver);

  constructor(onMessage: (message: Message) => void, options: MessageDecoderOptions = {}) {
    this.#splitter = new FrameSplitter(options);
    this.#onMessage = onMessage;
  }

  /** Feeds a chunk of any size; calls `onMessage` for every message it completes, in order. */
  push(chunk: Uint8Array): void {
    this.#splitter.push(chunk, this.#onFrame);
    this.#failure.rethrow();
  }

  /** Whether part of a frame is waiting for more bytes. */
  get hasPartialFrame(): boolean {
    return this.#splitter.hasPartialFrame;
  }
}
