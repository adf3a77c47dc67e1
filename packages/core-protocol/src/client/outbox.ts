import { encodeCommand } from '../encoder.js';
import { InvalidOptionsError } from '../errors.js';
import type { Command } from '../message.js';

const utf8 = new TextEncoder();
/** Frames are written into slabs of this size; each batch taken is a view of one. */
const SLAB_BYTES = 256 * 1024;
/** Topics whose publish header is kept ready; past this the cache starts over. */
const MAX_CACHED_TOPICS = 4096;
/**
 * String bodies up to this many characters are encoded into a scratch area after the slab's
 * frames, then moved into place: `encodeInto` writes at the start of a view, and a new view at
 * each frame's offset costs half as much again as encoding a 100-character body.
 */
const SCRATCH_CHARS = 1024;
/** UTF-8 takes at most 3 bytes for each UTF-16 code unit. */
const SCRATCH_BYTES = 3 * SCRATCH_CHARS;

/**
 * The frames a client has written and not yet handed to its connection, in order.
 *
 * Plain publishes, the hot path, are written straight in: a cached `{"c":"p","t":"<topic>"`
 * header (made once per topic by `encodeCommand`, so the bytes are the encoder's), then the
 * body. Every other command is encoded by `encodeCommand` and copied in.
 *
 * Batches are handed over as views of a shared slab, without a copy; later frames go after them,
 * or into a new slab once this one is full (the old one lives as long as a view of it does).
 */
export class Outbox {
  #slab = new Uint8Array(SLAB_BYTES + SCRATCH_BYTES);
  #scratch = this.#slab.subarray(SLAB_BYTES);
  /** Where the bytes not yet taken begin. */
  #start = 0;
  #pos = 0;
  readonly #headers = new Map<string, Uint8Array>();

  get byteLength(): number {
    return this.#pos - this.#start;
  }

  /** Appends one command as a frame. */
  write(command: Command): void {
    const frame = encodeCommand(command);
    this.#ensure(frame.length);
    this.#slab.set(frame, this.#pos);
    this.#pos += frame.length;
  }

  /** Appends a `publish` or `delta_publish` of `data` to `topic` with no other header field. */
  writePublish(command: 'publish' | 'delta_publish', topic: string, data: Uint8Array | string): void {
    const key = command === 'publish' ? topic : `\u0000${topic}`;
    let header = this.#headers.get(key);
    if (header === undefined) {
      const frame = encodeCommand({ command, topic });
      header = frame.slice(4, frame.length - 1); // without the length and the closing brace
      if (this.#headers.size >= MAX_CACHED_TOPICS) this.#headers.clear();
      this.#headers.set(key, header);
    }
    const isString = typeof data === 'string';
    if (!isString && !(data instanceof Uint8Array)) {
      throw new InvalidOptionsError('command data must be a Uint8Array or a string');
    }
    const scratched = isString && data.length <= SCRATCH_CHARS;
    // A longer string takes at least a byte per character; more only if it is not ASCII (below).
    this.#ensure(4 + header.length + 1 + (scratched ? 3 * data.length : data.length));
    let slab = this.#slab;
    let frameStart = this.#pos;
    let pos = frameStart + 4;
    slab.set(header, pos);
    pos += header.length;
    slab[pos++] = 0x7d; // }
    if (scratched) {
      const { written } = utf8.encodeInto(data, this.#scratch);
      const scratchStart = slab.length - SCRATCH_BYTES;
      slab.copyWithin(pos, scratchStart, scratchStart + written);
      pos += written;
    } else if (isString) {
      const { read, written } = utf8.encodeInto(data, slab.subarray(pos, slab.length - SCRATCH_BYTES));
      pos += written;
      if (read < data.length) {
        const rest = data.slice(read);
        this.#pos = pos;
        const start = this.#start;
        this.#ensure(rest.length * 3);
        if (this.#slab !== slab) {
          // Moved to a new slab with the other bytes not yet taken.
          slab = this.#slab;
          frameStart -= start;
          pos = this.#pos;
        }
        pos += utf8.encodeInto(rest, slab.subarray(pos, slab.length - SCRATCH_BYTES)).written;
      }
    } else {
      slab.set(data, pos);
      pos += data.length;
    }
    const length = pos - frameStart - 4;
    slab[frameStart] = length >>> 24;
    slab[frameStart + 1] = (length >>> 16) & 0xff;
    slab[frameStart + 2] = (length >>> 8) & 0xff;
    slab[frameStart + 3] = length & 0xff;
    this.#pos = pos;
  }

  /** Hands over everything written as a view (the caller may keep it) and starts empty. */
  take(): Uint8Array {
    const out = this.#slab.subarray(this.#start, this.#pos);
    this.#start = this.#pos;
    if (this.#slab.length > SLAB_BYTES + SCRATCH_BYTES) {
      // A slab grown for a huge frame is not kept for the small ones that follow.
      this.#useSlab(SLAB_BYTES);
      this.#start = this.#pos = 0;
    }
    return out;
  }

  /** Drops everything written since the last `take()`. */
  clear(): void {
    this.#pos = this.#start;
  }

  /** Makes room for `extra` more bytes, moving what is not yet taken to a new slab if needed. */
  #ensure(extra: number): void {
    const needed = this.#pos + extra;
    if (needed <= this.#slab.length - SCRATCH_BYTES) return;
    const kept = this.#pos - this.#start;
    let capacity = SLAB_BYTES;
    while (capacity < kept + extra) capacity *= 2;
    const previous = this.#slab.subarray(this.#start, this.#pos);
    this.#useSlab(capacity);
    this.#slab.set(previous);
    this.#start = 0;
    this.#pos = kept;
  }

  /** A new slab of `capacity` bytes for frames, and the scratch area after them. */
  #useSlab(capacity: number): void {
    this.#slab = new Uint8Array(capacity + SCRATCH_BYTES);
    this.#scratch = this.#slab.subarray(capacity);
  }
}
