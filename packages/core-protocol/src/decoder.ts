import { ProtocolError } from './errors.js';
import { CommandNames, headerFields } from './fields.js';
import { type ExtraHeaderValue, Message } from './message.js';

/** 256 MiB, as the reference Go client. */
export const DEFAULT_MAX_FRAME_SIZE = 256 * 1024 * 1024;

const utf8 = new TextDecoder('utf-8', { fatal: true });

function fail(message: string): never {
  throw new ProtocolError(message);
}

/* ---------- key and value lookup without allocating strings ---------- */

function hashBytes(bytes: Uint8Array, start: number, end: number): number {
  let h = end - start;
  for (let i = start; i < end; i++) h = (Math.imul(h, 31) + (bytes[i] as number)) | 0;
  return h;
}

function hashString(text: string): number {
  let h = text.length;
  for (let i = 0; i < text.length; i++) h = (Math.imul(h, 31) + text.charCodeAt(i)) | 0;
  return h;
}

/** Maps byte strings to values by hash, confirming the bytes on a hit. */
class ByteTable<V> {
  readonly #entries = new Map<number, { text: string; value: V }>();

  add(text: string, value: V): void {
    const h = hashString(text);
    const existing = this.#entries.get(h);
    if (existing && existing.text !== text) throw new Error(`hash collision: ${text} / ${existing.text}`);
    this.#entries.set(h, { text, value });
  }

  get(bytes: Uint8Array, start: number, end: number): V | undefined {
    const entry = this.#entries.get(hashBytes(bytes, start, end));
    if (entry === undefined || entry.text.length !== end - start) return undefined;
    const text = entry.text;
    for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) !== bytes[start + i]) return undefined;
    return entry.value;
  }
}

enum Kind {
  String = 0,
  Number = 1,
}

interface KnownField {
  readonly name: string;
  readonly kind: Kind;
}

const keyTable = new ByteTable<KnownField>();
for (const field of headerFields) {
  const known = { name: field.name, kind: field.type === 'number' ? Kind.Number : Kind.String };
  keyTable.add(field.key, known);
  for (const alias of (field as { aliases?: readonly string[] }).aliases ?? []) keyTable.add(alias, known);
}

/** Frequent values returned as shared constants instead of new strings. */
const internTable = new ByteTable<string>();
for (const name of CommandNames) internTable.add(name, name);
internTable.add('p', 'publish');
for (const v of ['received', 'parsed', 'processed', 'persisted', 'completed', 'stats', 'success', 'failure', 'retry']) {
  internTable.add(v, v);
}

/* ---------- header parsing ---------- */

function isSpace(b: number): boolean {
  return b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d;
}

/** A decoded string from bytes[start, end) that holds no escapes. */
function plainString(bytes: Uint8Array, start: number, end: number): string {
  const length = end - start;
  if (length <= 48) {
    let ascii = true;
    for (let i = start; i < end; i++) {
      if ((bytes[i] as number) >= 0x80) {
        ascii = false;
        break;
      }
    }
    if (ascii) return String.fromCharCode.apply(null, bytes.subarray(start, end) as unknown as number[]);
  }
  try {
    return utf8.decode(bytes.subarray(start, end));
  } catch {
    return fail('header string is not valid UTF-8');
  }
}

/**
 * Parses the JSON header starting at `start` into `message`.
 * Returns the index just after the closing `}`.
 */
export function parseHeader(bytes: Uint8Array, start: number, end: number, message: Message): number {
  let i = start;
  if (bytes[i] !== 0x7b) fail('frame does not start with a JSON header');
  i++;
  const target = message as unknown as Record<string, unknown>;
  let expectKey = true;
  for (;;) {
    while (i < end && isSpace(bytes[i] as number)) i++;
    if (i >= end) fail('header is not terminated');
    let b = bytes[i] as number;
    if (b === 0x7d) return i + 1;
    if (!expectKey) {
      if (b !== 0x2c) fail(`expected ',' or '}' in header at byte ${i - start}`);
      i++;
      while (i < end && isSpace(bytes[i] as number)) i++;
      b = bytes[i] as number;
    }
    expectKey = false;
    if (b !== 0x22) fail(`expected a quoted key in header at byte ${i - start}`);

    // Key.
    const keyStart = ++i;
    let keyEscaped = false;
    while (i < end && bytes[i] !== 0x22) {
      if (bytes[i] === 0x5c) {
        keyEscaped = true;
        i++;
      }
      i++;
    }
    if (i >= end) fail('header key is not terminated');
    const keyEnd = i++;
    const known = keyEscaped ? undefined : keyTable.get(bytes, keyStart, keyEnd);

    while (i < end && isSpace(bytes[i] as number)) i++;
    if (bytes[i] !== 0x3a) fail(`expected ':' after a header key at byte ${i - start}`);
    i++;
    while (i < end && isSpace(bytes[i] as number)) i++;
    if (i >= end) fail('header value is missing');

    // Value.
    b = bytes[i] as number;
    let value: ExtraHeaderValue;
    if (b === 0x22) {
      const valueStart = ++i;
      let escaped = false;
      while (i < end && bytes[i] !== 0x22) {
        const c = bytes[i] as number;
        if (c === 0x5c) {
          escaped = true;
          i++;
        } else if (c < 0x20) {
          fail('control character inside a header string');
        }
        i++;
      }
      if (i >= end) fail('header string is not terminated');
      const valueEnd = i++;
      if (known !== undefined && known.kind === Kind.Number) {
        value = parseNumber(bytes, valueStart, valueEnd, true);
      } else if (escaped) {
        value = unescapeString(bytes, valueStart - 1, valueEnd + 1);
      } else {
        value = internTable.get(bytes, valueStart, valueEnd) ?? plainString(bytes, valueStart, valueEnd);
      }
    } else {
      const valueStart = i;
      while (i < end) {
        const c = bytes[i] as number;
        if (c === 0x2c || c === 0x7d || isSpace(c)) break;
        i++;
      }
      if (b === 0x74 || b === 0x66 || b === 0x6e) {
        const word = plainString(bytes, valueStart, i);
        if (word === 'true') value = true;
        else if (word === 'false') value = false;
        else if (word === 'null') value = null;
        else return fail(`unexpected token '${word.slice(0, 16)}' in header`);
      } else if (b === 0x7b || b === 0x5b) {
        return fail('nested objects and arrays are not allowed in an AMPS header');
      } else {
        value = parseNumber(bytes, valueStart, i, false);
      }
    }

    if (known !== undefined) {
      if (value === null) continue;
      if (known.kind === Kind.Number && typeof value !== 'number') fail(`header field ${known.name} must be a number`);
      target[known.name] = known.kind === Kind.String && typeof value !== 'string' ? String(value) : value;
    } else {
      const key = keyEscaped
        ? (unescapeString(bytes, keyStart - 1, keyEnd + 1) as string)
        : plainString(bytes, keyStart, keyEnd);
      if (message.extra === undefined) message.extra = {};
      message.extra[key] = value;
    }
  }
}

function parseNumber(bytes: Uint8Array, start: number, end: number, quoted: boolean): number {
  if (start === end) fail('empty number in header');
  let n = 0;
  let digits = true;
  for (let i = start; i < end; i++) {
    const d = (bytes[i] as number) - 0x30;
    if (d < 0 || d > 9) {
      digits = false;
      break;
    }
    n = n * 10 + d;
  }
  if (digits) return n;
  const text = plainString(bytes, start, end);
  const parsed = Number(text);
  if (text.trim() === '' || !Number.isFinite(parsed)) {
    fail(`'${text.slice(0, 24)}' is not a number${quoted ? ' (quoted)' : ''}`);
  }
  return parsed;
}

/** Decodes a JSON string with escapes, bytes[start] and bytes[end - 1] being its quotes. */
function unescapeString(bytes: Uint8Array, start: number, end: number): string {
  let text: string;
  try {
    text = utf8.decode(bytes.subarray(start, end));
  } catch {
    return fail('header string is not valid UTF-8');
  }
  try {
    return JSON.parse(text) as string;
  } catch {
    return fail('bad escape sequence in a header string');
  }
}

/* ---------- frames to messages ---------- */

/**
 * Decodes one frame (without its length prefix) into messages.
 *
 * A `sow` frame holds a batch of records, each with its own header carrying `l`; each record
 * becomes one message that inherits the batch header.
 */
export function decodeFrame(frame: Uint8Array, onMessage: (message: Message) => void): void {
  const message = new Message();
  const end = frame.length;
  const headerEnd = parseHeader(frame, 0, end, message);
  if (message.command !== 'sow' || headerEnd === end || frame[headerEnd] !== 0x7b) {
    message.data = frame.subarray(headerEnd, end);
    onMessage(message);
    return;
  }
  let pos = headerEnd;
  let index = 0;
  while (pos < end) {
    const record = new Message();
    record.inheritHeader(message);
    record.length = undefined;
    let bodyStart: number;
    try {
      bodyStart = parseHeader(frame, pos, end, record);
    } catch (error) {
      // A first "record" that is not a header is the body of a single-record sow message.
      if (index === 0) {
        message.data = frame.subarray(headerEnd, end);
        onMessage(message);
        return;
      }
      throw error;
    }
    if (record.length === undefined) {
      if (index === 0) {
        message.data = frame.subarray(headerEnd, end);
        onMessage(message);
        return;
      }
      fail('SOW batch record has no length (l)');
    }
    const bodyEnd = bodyStart + record.length;
    if (bodyEnd > end) fail('SOW batch record runs past the end of the frame');
    record.data = frame.subarray(bodyStart, bodyEnd);
    onMessage(record);
    pos = bodyEnd;
    index++;
  }
}

/* ---------- the byte stream to frames ---------- */

export interface FrameDecoderOptions {
  /** Largest frame accepted, in bytes, not counting the 4-byte prefix. @default 256 MiB */
  maxFrameSize?: number;
}

/**
 * Splits a byte stream of 4-byte big-endian length-prefixed frames into frames.
 *
 * Takes chunks of any size. A frame inside one chunk is a view into it (no copy); a frame split
 * over chunks is copied once into its own buffer. After a `ProtocolError` the decoder stays
 * failed: the stream cannot be resynchronised.
 */
export class FrameDecoder {
  readonly #maxFrameSize: number;
  /** Chunks (or their tails) holding an incomplete frame, carried over to the next push. */
  #pending: Uint8Array[] = [];
  #pendingBytes = 0;
  /** Length of the frame being assembled, or -1 while its prefix is incomplete. */
  #frameLength = -1;
  #error: ProtocolError | undefined = undefined;

  constructor(options: FrameDecoderOptions = {}) {
    this.#maxFrameSize = options.maxFrameSize ?? DEFAULT_MAX_FRAME_SIZE;
  }

  /** Whether part of a frame is waiting for more bytes. */
  get hasPartialFrame(): boolean {
    return this.#pendingBytes > 0;
  }

  /** Feeds a chunk; calls `onFrame` for every complete frame, in order. */
  push(chunk: Uint8Array, onFrame: (frame: Uint8Array) => void): void {
    if (this.#error) throw this.#error;
    try {
      this.#push(chunk, onFrame);
    } catch (error) {
      if (error instanceof ProtocolError) this.#error = error;
      throw error;
    }
  }

  #push(chunk: Uint8Array, onFrame: (frame: Uint8Array) => void): void {
    let pos = 0;
    const end = chunk.length;
    if (this.#pendingBytes > 0) {
      pos = this.#fillPending(chunk, onFrame);
      if (this.#pendingBytes > 0) return;
    }
    while (end - pos >= 4) {
      const length = this.#checkLength(readLength(chunk, pos));
      if (end - pos - 4 < length) break;
      pos += 4;
      onFrame(chunk.subarray(pos, pos + length));
      pos += length;
    }
    if (pos < end) {
      const rest = chunk.slice(pos); // a copy: the caller may reuse its chunk
      this.#frameLength = rest.length >= 4 ? this.#checkLength(readLength(rest, 0)) : -1;
      this.#pending.push(rest);
      this.#pendingBytes = rest.length;
    }
  }

  #checkLength(length: number): number {
    if (length === 0) fail('empty frame (length 0)');
    if (length > this.#maxFrameSize) {
      fail(`frame of ${length} bytes exceeds the maximum frame size of ${this.#maxFrameSize} bytes`);
    }
    return length;
  }

  /** Adds the start of `chunk` to the carried-over frame; returns how much of `chunk` it used. */
  #fillPending(chunk: Uint8Array, onFrame: (frame: Uint8Array) => void): number {
    let pos = 0;
    if (this.#frameLength < 0) {
      const take = Math.min(4 - this.#pendingBytes, chunk.length);
      this.#pending.push(chunk.slice(0, take));
      this.#pendingBytes += take;
      pos = take;
      if (this.#pendingBytes < 4) return pos;
      this.#pending = [concat(this.#pending, 4)];
      this.#frameLength = this.#checkLength(readLength(this.#pending[0] as Uint8Array, 0));
    }
    const total = 4 + this.#frameLength;
    const take = Math.min(total - this.#pendingBytes, chunk.length - pos);
    this.#pending.push(chunk.slice(pos, pos + take));
    this.#pendingBytes += take;
    pos += take;
    if (this.#pendingBytes === total) {
      const frame = concat(this.#pending, total);
      this.#pending = [];
      this.#pendingBytes = 0;
      this.#frameLength = -1;
      onFrame(frame.subarray(4));
    }
    return pos;
  }
}

function readLength(bytes: Uint8Array, at: number): number {
  return (
    (((bytes[at] as number) << 24) >>> 0) +
    ((bytes[at + 1] as number) << 16) +
    ((bytes[at + 2] as number) << 8) +
    (bytes[at + 3] as number)
  );
}

function concat(parts: readonly Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

export interface MessageDecoderOptions extends FrameDecoderOptions {}

/** A byte stream in, messages out: `FrameDecoder` followed by `decodeFrame`. */
export class MessageDecoder {
  readonly #frames: FrameDecoder;
  readonly #onMessage: (message: Message) => void;
  readonly #onFrame = (frame: Uint8Array): void => decodeFrame(frame, this.#onMessage);

  constructor(onMessage: (message: Message) => void, options: MessageDecoderOptions = {}) {
    this.#frames = new FrameDecoder(options);
    this.#onMessage = onMessage;
  }

  push(chunk: Uint8Array): void {
    this.#frames.push(chunk, this.#onFrame);
  }

  get hasPartialFrame(): boolean {
    return this.#frames.hasPartialFrame;
  }
}
