import { InvalidOptionsError } from './errors.js';
import { headerFields } from './fields.js';
import type { Command } from './message.js';

const utf8 = new TextEncoder();

interface EncodedField {
  readonly name: string;
  readonly type: 'string' | 'number';
  /** `,"key":` as bytes (the leading comma is skipped for the first field written). */
  readonly prefix: Uint8Array;
}

const encodedFields: readonly EncodedField[] = headerFields.map((f) => ({
  name: f.name,
  type: f.type,
  prefix: utf8.encode(`,"${f.key}":`),
}));

const wireCommand: Record<string, string> = { publish: 'p' };

/**
 * Writes length-prefixed AMPS frames into one growing buffer.
 *
 * Used to batch every frame written in one tick into a single transport write.
 * `take()` hands the bytes over and starts a new batch.
 */
export class FrameEncoder {
  #buf: Uint8Array;
  #pos = 0;

  constructor(initialCapacity = 64 * 1024) {
    this.#buf = new Uint8Array(initialCapacity);
  }

  /** Bytes written since the last `take()`. */
  get byteLength(): number {
    return this.#pos;
  }

  /** Appends one frame: 4-byte big-endian length, the JSON header, then the body. */
  write(command: Command): void {
    const start = this.#pos;
    try {
      this.#pos = start + 4;
      this.#writeHeader(command);
      const data = command.data;
      if (data !== undefined) {
        if (typeof data === 'string') this.#writeUtf8(data);
        else this.#writeBytes(data);
      }
    } catch (error) {
      this.#pos = start;
      throw error;
    }
    const length = this.#pos - start - 4;
    const buf = this.#buf;
    buf[start] = length >>> 24;
    buf[start + 1] = (length >>> 16) & 0xff;
    buf[start + 2] = (length >>> 8) & 0xff;
    buf[start + 3] = length & 0xff;
  }

  /** Returns the frames written since the last call (a copy the caller owns) and empties the encoder. */
  take(): Uint8Array {
    const out = this.#buf.slice(0, this.#pos);
    this.#pos = 0;
    return out;
  }

  /** Drops everything written since the last `take()`. */
  clear(): void {
    this.#pos = 0;
  }

  #writeHeader(command: Command): void {
    this.#ensure(2);
    const record = command as unknown as Record<string, unknown>;
    let first = true;
    this.#buf[this.#pos++] = 0x7b; // {
    for (const field of encodedFields) {
      let value = record[field.name];
      if (value === undefined || value === null) continue;
      if (field.name === 'command') value = wireCommand[value as string] ?? value;
      this.#writePrefix(field.prefix, first);
      first = false;
      if (field.type === 'number') this.#writeNumber(value, field.name);
      else this.#writeString(String(value));
    }
    if (command.headers) {
      for (const key of Object.keys(command.headers)) {
        const value = command.headers[key];
        if (value === undefined) continue;
        this.#ensure(1);
        if (!first) this.#buf[this.#pos++] = 0x2c; // ,
        first = false;
        this.#writeString(key);
        this.#ensure(1);
        this.#buf[this.#pos++] = 0x3a; // :
        if (typeof value === 'string') this.#writeString(value);
        else this.#writeAscii(String(value));
      }
    }
    this.#ensure(1);
    this.#buf[this.#pos++] = 0x7d; // }
  }

  #writePrefix(prefix: Uint8Array, first: boolean): void {
    const from = first ? 1 : 0;
    this.#ensure(prefix.length);
    const buf = this.#buf;
    let pos = this.#pos;
    for (let i = from; i < prefix.length; i++) buf[pos++] = prefix[i] as number;
    this.#pos = pos;
  }

  #writeNumber(value: unknown, name: string): void {
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
      throw new InvalidOptionsError(`header field ${name} must be a non-negative safe integer, got ${String(value)}`);
    }
    this.#writeAscii(String(value));
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
    const needed = this.#pos + extra;
    if (needed <= this.#buf.length) return;
    let capacity = this.#buf.length * 2;
    while (capacity < needed) capacity *= 2;
    const next = new Uint8Array(capacity);
    next.set(this.#buf.subarray(0, this.#pos));
    this.#buf = next;
  }
}

const shared = new FrameEncoder(4096);

/** Encodes one command as a complete length-prefixed frame. */
export function encodeCommand(command: Command): Uint8Array {
  shared.write(command);
  return shared.take();
}
