/*
 * The encoder for Node.js and servers (the `default` of the `#encoder` import; browsers get
 * `encoder-compact.ts`, with the same behaviour in less code).
 */
import { isHeaderNumber, refusals } from './encodable.js';
import { CommandNames, headerFields } from './fields.js';
import { fieldByKey } from './header-common.js';
import type { Command } from './message.js';

const utf8 = new TextEncoder();

interface EncodedField {
  readonly name: string;
  readonly number: boolean;
  /** `,"key":` as bytes. */
  readonly prefix: Uint8Array;
}

/** The header fields by property name. `command` is written first, from `commandPrefixes`. */
const fieldsByName = new Map<string, EncodedField>();
for (const f of headerFields) {
  if (f.name !== 'command') {
    fieldsByName.set(f.name, { name: f.name, number: f.type === 'number', prefix: utf8.encode(`,"${f.key}":`) });
  }
}

/** `{"c":"<name>"` for each command; publish travels as `p`. */
const commandPrefixes = new Map<string, Uint8Array>();
for (const name of CommandNames) commandPrefixes.set(name, utf8.encode(`{"c":${JSON.stringify(wireName(name))}`));

function wireName(command: string): string {
  return command === 'publish' ? 'p' : command;
}

/** Property names of `Command` that are not header fields written from `fieldsByName`. */
const notFields = new Set(['command', 'data', 'headers']);

/**
 * Writes length-prefixed AMPS frames into one growing buffer.
 *
 * Used to batch every frame written in one tick into a single transport write.
 * `take()` hands the bytes over and starts a new batch.
 *
 * The header starts with `c`; the other fields follow in the command object's property order,
 * then `headers`.
 */
export class FrameEncoder {
  #buf: Uint8Array;
  /** Where the bytes not yet taken begin: bytes before it were handed out by `takeView()`. */
  #start = 0;
  #pos = 0;
  /** Where the frame being written begins (moves when the buffer is replaced). */
  #frameStart = 0;
  readonly #initialCapacity: number;

  constructor(initialCapacity = 64 * 1024) {
    this.#initialCapacity = Math.max(64, initialCapacity);
    this.#buf = new Uint8Array(this.#initialCapacity);
  }

  /** Bytes written since the last `take()`. */
  get byteLength(): number {
    return this.#pos - this.#start;
  }

  /** Appends one frame: 4-byte big-endian length, the JSON header, then the body. */
  write(command: Command): void {
    this.#frameStart = this.#pos;
    try {
      this.#ensure(4);
      this.#pos += 4;
      this.#writeHeader(command);
      const data = command.data;
      if (data !== undefined) {
        if (typeof data === 'string') this.#writeUtf8(data);
        else if (data instanceof Uint8Array) this.#writeBytes(data);
        else throw refusals.data();
      }
    } catch (error) {
      this.#pos = this.#frameStart;
      throw error;
    }
    const start = this.#frameStart;
    const length = this.#pos - start - 4;
    const buf = this.#buf;
    buf[start] = length >>> 24;
    buf[start + 1] = (length >>> 16) & 0xff;
    buf[start + 2] = (length >>> 8) & 0xff;
    buf[start + 3] = length & 0xff;
  }

  /** Returns the frames written since the last call (a copy the caller owns) and empties the encoder. */
  take(): Uint8Array {
    const out = this.#buf.slice(this.#start, this.#pos);
    this.#pos = this.#start;
    return out;
  }

  /**
   * Like `take()` but without a copy: returns a view of the encoder's buffer. Later writes never
   * touch those bytes; they go after them, or to a new buffer once this one is full. The view's
   * `buffer` is shared with other frames.
   */
  takeView(): Uint8Array {
    const out = new Uint8Array(this.#buf.buffer, this.#start, this.#pos - this.#start);
    this.#start = this.#pos = Math.min((this.#pos + 7) & ~7, this.#buf.length); // 8-byte aligned
    return out;
  }

  /** Drops everything written since the last `take()`. */
  clear(): void {
    this.#pos = this.#start;
  }

  #writeHeader(command: Command): void {
    const prefix = commandPrefixes.get(command.command);
    if (prefix !== undefined) {
      this.#writeRaw(prefix);
    } else {
      if (typeof command.command !== 'string' || (command.command as string) === '') {
        throw refusals.commandName(command.command);
      }
      this.#writeAscii('{"c":');
      this.#writeString(command.command);
    }
    for (const name in command) {
      if (notFields.has(name)) continue;
      const value = (command as unknown as Record<string, unknown>)[name];
      if (value === undefined || value === null) continue;
      const field = fieldsByName.get(name);
      if (field === undefined) continue; // not a header field (for example a Message's `extra`)
      this.#writeRaw(field.prefix);
      if (field.number) this.#writeNumber(value, name);
      else this.#writeString(typeof value === 'string' ? value : String(value));
    }
    const headers = command.headers;
    if (headers !== undefined) {
      for (const key in headers) {
        const value = headers[key];
        if (value === undefined) continue;
        if (fieldByKey.has(key)) throw refusals.knownHeader(key);
        this.#writeAscii(',');
        this.#writeString(key);
        this.#writeAscii(':');
        if (typeof value === 'string') this.#writeString(value);
        else if (typeof value === 'boolean' || (typeof value === 'number' && Number.isFinite(value))) {
          this.#writeAscii(String(value));
        } else {
          throw refusals.headerValue(key);
        }
      }
    }
    this.#ensure(1);
    this.#buf[this.#pos++] = 0x7d; // }
  }

  #writeRaw(bytes: Uint8Array): void {
    this.#ensure(bytes.length);
    const buf = this.#buf;
    let pos = this.#pos;
    for (let i = 0; i < bytes.length; i++) buf[pos++] = bytes[i] as number;
    this.#pos = pos;
  }

  #writeNumber(value: unknown, name: string): void {
    if (!isHeaderNumber(value)) throw refusals.number(name, value);
    if (value > 0x7fffffff) {
      this.#writeAscii(String(value));
      return;
    }
    // Small integers written digit by digit, without making a string.
    let digits = 1;
    for (let n = value; n >= 10; n = (n / 10) | 0) digits++;
    this.#ensure(digits);
    const buf = this.#buf;
    let n = value;
    for (let at = this.#pos + digits - 1; at >= this.#pos; at--) {
      const q = (n / 10) | 0;
      buf[at] = 0x30 + n - q * 10;
      n = q;
    }
    this.#pos += digits;
  }

  #writeAscii(text: string): void {
    this.#ensure(text.length);
    const buf = this.#buf;
    let pos = this.#pos;
    for (let i = 0; i < text.length; i++) buf[pos++] = text.charCodeAt(i);
    this.#pos = pos;
  }

  /** A JSON string: quotes, escapes for `"`, `\` and control characters, UTF-8 for the rest. */
  #writeString(text: string): void {
    this.#ensure(text.length + 2);
    const buf = this.#buf;
    let pos = this.#pos;
    buf[pos++] = 0x22;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c < 0x80 && c >= 0x20 && c !== 0x22 && c !== 0x5c) {
        buf[pos++] = c;
        continue;
      }
      // Rare: escape or encode the rest of the string the slow way.
      this.#pos = pos;
      this.#writeEscapedTail(text.slice(i));
      return;
    }
    buf[pos++] = 0x22;
    this.#pos = pos;
  }

  #writeEscapedTail(tail: string): void {
    const escaped = JSON.stringify(tail).slice(1); // keeps the closing quote
    this.#ensure(escaped.length * 3);
    const { written } = utf8.encodeInto(escaped, this.#buf.subarray(this.#pos));
    this.#pos += written;
  }

  #writeUtf8(text: string): void {
    this.#ensure(text.length * 3);
    const { written } = utf8.encodeInto(text, this.#buf.subarray(this.#pos));
    this.#pos += written;
  }

  #writeBytes(bytes: Uint8Array): void {
    this.#ensure(bytes.length);
    this.#buf.set(bytes, this.#pos);
    this.#pos += bytes.length;
  }

  #ensure(extra: number): void {
    if (this.#pos + extra <= this.#buf.length) return;
    // Move the bytes not yet taken to the start of a new buffer: taken views keep the old one.
    const kept = this.#pos - this.#start;
    let capacity = this.#initialCapacity;
    while (capacity < kept + extra) capacity *= 2;
    const next = new Uint8Array(capacity);
    next.set(this.#buf.subarray(this.#start, this.#pos));
    this.#buf = next;
    this.#frameStart -= this.#start;
    this.#pos = kept;
    this.#start = 0;
  }
}

/**
 * `encodeCommand`'s frames are views into shared 64 KiB blocks, as Node.js does for small
 * `Buffer`s: giving each small frame its own allocation costs more than encoding it.
 */
const BLOCK_SIZE = 64 * 1024;
let pool = new FrameEncoder(BLOCK_SIZE);

/**
 * Encodes one command as a complete length-prefixed frame. The frame is a view into a block
 * shared with other frames (its `buffer` is larger than the frame); nothing else writes to it.
 */
export function encodeCommand(command: Command): Uint8Array {
  pool.write(command);
  const large = pool.byteLength > BLOCK_SIZE / 4;
  const frame = pool.takeView();
  // A large frame grew the block: start a normal one, so small frames do not keep it alive.
  if (large) pool = new FrameEncoder(BLOCK_SIZE);
  return frame;
}
