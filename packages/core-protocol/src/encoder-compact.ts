/*
 * The encoder for browsers (the `browser` condition of the `#encoder` import): the same frames
 * and errors as `encoder-fast.ts`, and the same tests, in a fraction of the code. It refuses a
 * command by `checkEncodable` before encoding it, builds the header as a string and gives each
 * frame its own buffer, where the fast one checks as it writes bytes into shared blocks.
 */
import { checkEncodable } from './encodable.js';
import { headerFields } from './fields.js';
import type { HeaderField } from './header-common.js';
import type { Command } from './message.js';

const utf8 = new TextEncoder();
const empty = new Uint8Array(0);

/** The header fields by property name. `command` is written first, as `c`. */
const fieldByName = new Map<string, HeaderField>(headerFields.map((f) => [f.name, f]));

/** The JSON header: `c` first, then the fields in the command's property order, then `headers`. */
function headerOf(command: Command): string {
  let json = `{"c":${JSON.stringify(command.command === 'publish' ? 'p' : command.command)}`;
  for (const property in command) {
    const value = (command as unknown as Record<string, unknown>)[property];
    // Not a header field (`command` is written already; `data`, `headers`, a Message's `extra`, ...).
    const field = property === 'command' ? undefined : fieldByName.get(property);
    if (field === undefined || value === undefined || value === null) continue;
    json += `,"${field.key}":${field.type === 'number' ? value : JSON.stringify(String(value))}`;
  }
  const headers = command.headers ?? {};
  for (const key in headers) {
    if (headers[key] !== undefined) json += `,${JSON.stringify(key)}:${JSON.stringify(headers[key])}`;
  }
  return `${json}}`;
}

/**
 * Encodes one command as a complete length-prefixed frame: 4-byte big-endian length, the JSON
 * header, then the body.
 */
export function encodeCommand(command: Command): Uint8Array {
  checkEncodable(command);
  const header = utf8.encode(headerOf(command));
  const data = command.data ?? empty;
  const body = typeof data === 'string' ? utf8.encode(data) : data;
  const frame = new Uint8Array(4 + header.length + body.length);
  new DataView(frame.buffer).setUint32(0, header.length + body.length);
  frame.set(header, 4);
  frame.set(body, 4 + header.length);
  return frame;
}

/**
 * Collects length-prefixed AMPS frames for one transport write: `write(command)` for each, then
 * `take()`. A failed write adds nothing.
 */
export class FrameEncoder {
  #frames: Uint8Array[] = [];
  #byteLength = 0;

  /** `initialCapacity` sizes the fast build's buffer; this one keeps each frame until `take()`. */
  // biome-ignore lint/complexity/noUselessConstructor: the same signature as the fast build
  constructor(_initialCapacity?: number) {}

  /** Bytes written since the last `take()`. */
  get byteLength(): number {
    return this.#byteLength;
  }

  /** Appends one frame. */
  write(command: Command): void {
    const frame = encodeCommand(command);
    this.#frames.push(frame);
    this.#byteLength += frame.length;
  }

  /** Returns the frames written since the last call (a copy the caller owns) and empties the encoder. */
  take(): Uint8Array {
    const out = new Uint8Array(this.#byteLength);
    let at = 0;
    for (const frame of this.#frames) {
      out.set(frame, at);
      at += frame.length;
    }
    this.clear();
    return out;
  }

  /** As `take()`: bytes that later writes never touch. */
  takeView(): Uint8Array {
    return this.take();
  }

  /** Drops everything written since the last `take()`. */
  clear(): void {
    this.#frames = [];
    this.#byteLength = 0;
  }
}
