import { encodeCommand } from '../encoder.js';
import type { Command } from '../message.js';

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder();
/**
 * Frames are written into slabs of this size; each batch taken is a view of one. A slab and its
 * scratch area stay under 128 KiB, glibc's threshold for serving an allocation with a fresh
 * mmap: the page faults of touching a new mapping for every slab made a publish about 10% dearer.
 */
const SLAB_BYTES = 120 * 1024;
/** Topics whose publish header is kept ready; past this the cache starts over. */
const MAX_CACHED_TOPICS = 4096;
/**
 * A publish whose header and string body come to at most this many characters is short. Short
 * frames wait as text and are encoded together (see Outbox). `encodeInto` writes at the start of
 * a view, and a new view at each frame's offset costs half as much again as encoding a
 * 100-character body, so a short body encoded on its own goes into a scratch area after the
 * slab's frames and is moved into place.
 */
const SHORT_CHARS = 1024;
/** UTF-8 takes at most 3 bytes for each UTF-16 code unit. */
const SCRATCH_BYTES = 3 * SHORT_CHARS;
/** Pending text past this many characters is encoded at once, so it stays small. */
const PENDING_MAX_CHARS = 64 * 1024;
/**
 * After pending text that was not ASCII (encoded twice: in full, then each frame again to count
 * its bytes), this many short frames are encoded on their own, once each.
 */
const ON_THEIR_OWN_AFTER_NON_ASCII = 4096;

/** A topic's publish header, as bytes and as text. */
interface PublishHeader {
  readonly command: 'publish' | 'delta_publish';
  readonly topic: string;
  /** `{"c":"p","t":"<topic>"`: without the length and the closing brace. */
  readonly bytes: Uint8Array;
  /** Four characters holding the place of the length, then the header with its closing brace. */
  readonly text: string;
}

/**
 * The frames a client has written and not yet handed to its connection, in order.
 *
 * Plain publishes, the hot path, are written without a Command object: a cached
 * `{"c":"p","t":"<topic>"}` header (made once per topic by `encodeCommand`, so the bytes are the
 * encoder's), then the body. Short frames with a string body join the pending text, which is
 * encoded in one `encodeInto` before anything else is written and when the batch is taken: the
 * call, not the characters, is most of what encoding a short body costs. Every other command is
 * encoded by `encodeCommand` and copied in.
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
  /** Short frames not yet encoded, and where each begins in it. */
  #pending = '';
  readonly #pendingStarts: number[] = [];
  /** Short frames still to encode on their own (see ON_THEIR_OWN_AFTER_NON_ASCII). */
  #onTheirOwn = 0;
  readonly #headers = new Map<string, PublishHeader>();
  #lastHeader: PublishHeader | undefined;

  /** Bytes written and not yet taken, counting a pending character as one byte. */
  get byteLength(): number {
    return this.#pos - this.#start + this.#pending.length;
  }

  /** Appends one command as a frame. */
  write(command: Command): void {
    this.#encodePending();
    const frame = encodeCommand(command);
    this.#ensure(frame.length);
    this.#slab.set(frame, this.#pos);
    this.#pos += frame.length;
  }

  /**
   * Appends a `publish` or `delta_publish` of `data` to `topic` with no other header field. The
   * caller has checked both (`checkPublish`).
   */
  writePublish(command: 'publish' | 'delta_publish', topic: string, data: Uint8Array | string): void {
    const header = this.#header(command, topic);
    const isString = typeof data === 'string';
    const short = isString && header.text.length + data.length <= SHORT_CHARS;
    if (short && this.#onTheirOwn === 0) {
      this.#pendingStarts.push(this.#pending.length);
      this.#pending = this.#pending + header.text + data;
      if (this.#pending.length >= PENDING_MAX_CHARS) this.#encodePending();
      return;
    }
    this.#encodePending();
    if (short) this.#onTheirOwn--;
    // A long string takes at least a byte per character; more only if it is not ASCII (#writeUtf8).
    this.#ensure(4 + header.bytes.length + 1 + (short ? 3 * data.length : data.length));
    const slab = this.#slab;
    let frameStart = this.#pos;
    slab.set(header.bytes, frameStart + 4);
    this.#pos += 4 + header.bytes.length;
    slab[this.#pos++] = 0x7d; // }
    if (short) {
      const { written } = utf8.encodeInto(data as string, this.#scratch);
      const scratchStart = slab.length - SCRATCH_BYTES;
      slab.copyWithin(this.#pos, scratchStart, scratchStart + written);
      this.#pos += written;
    } else if (isString) {
      frameStart -= this.#writeUtf8(data);
    } else {
      slab.set(data, this.#pos);
      this.#pos += data.length;
    }
    this.#writeLength(frameStart, this.#pos);
  }

  /** Hands over everything written as a view (the caller may keep it) and starts empty. */
  take(): Uint8Array {
    this.#encodePending();
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
    this.#pending = '';
    this.#pendingStarts.length = 0;
    this.#pos = this.#start;
  }

  #header(command: 'publish' | 'delta_publish', topic: string): PublishHeader {
    // Runs of publishes to one topic are common: comparing with the last beats a map lookup.
    const last = this.#lastHeader;
    if (last !== undefined && last.topic === topic && last.command === command) return last;
    const key = command === 'publish' ? topic : `\u0000${topic}`;
    let header = this.#headers.get(key);
    if (header === undefined) {
      const frame = encodeCommand({ command, topic });
      const bytes = frame.slice(4, frame.length - 1);
      header = { command, topic, bytes, text: `\u0000\u0000\u0000\u0000${utf8Decoder.decode(frame.subarray(4))}` };
      if (this.#headers.size >= MAX_CACHED_TOPICS) this.#headers.clear();
      this.#headers.set(key, header);
    }
    this.#lastHeader = header;
    return header;
  }

  /**
   * Encodes the pending frames after the bytes written, then fills in their lengths: the number
   * of characters when all are ASCII (a byte each), else each frame's text encoded again, into
   * the scratch area, to count its bytes.
   */
  #encodePending(): void {
    const text = this.#pending;
    if (text === '') return;
    const starts = this.#pendingStarts;
    this.#pending = '';
    let frameStart = this.#pos;
    frameStart -= this.#writeUtf8(text);
    const ascii = this.#pos - frameStart === text.length;
    if (!ascii) this.#onTheirOwn = ON_THEIR_OWN_AFTER_NON_ASCII;
    for (let i = 0; i < starts.length; i++) {
      const from = starts[i] as number;
      const to = i + 1 < starts.length ? (starts[i + 1] as number) : text.length;
      const bytes = ascii ? to - from : utf8.encodeInto(text.slice(from, to), this.#scratch).written;
      this.#writeLength(frameStart, frameStart + bytes);
      frameStart += bytes;
    }
    starts.length = 0;
  }

  /**
   * Writes `text` as UTF-8 after the bytes written, moving them to a new slab if it does not fit;
   * returns how far back they moved.
   */
  #writeUtf8(text: string): number {
    // At least a byte for each character; more only if it is not ASCII (then once more below).
    let moved = this.#ensure(text.length);
    const { read, written } = utf8.encodeInto(text, this.#frameRoom());
    this.#pos += written;
    if (read < text.length) {
      const rest = text.slice(read);
      moved += this.#ensure(3 * rest.length);
      this.#pos += utf8.encodeInto(rest, this.#frameRoom()).written;
    }
    return moved;
  }

  /** The slab from the end of the bytes written to the scratch area. */
  #frameRoom(): Uint8Array {
    return this.#slab.subarray(this.#pos, this.#slab.length - SCRATCH_BYTES);
  }

  /** Fills in the length of the frame from `frameStart` (its 4 length bytes) to `frameEnd`. */
  #writeLength(frameStart: number, frameEnd: number): void {
    const slab = this.#slab;
    const length = frameEnd - frameStart - 4;
    slab[frameStart] = length >>> 24;
    slab[frameStart + 1] = (length >>> 16) & 0xff;
    slab[frameStart + 2] = (length >>> 8) & 0xff;
    slab[frameStart + 3] = length & 0xff;
  }

  /**
   * Makes room for `extra` more bytes, moving what is not yet taken to a new slab if needed;
   * returns how far back it moved.
   */
  #ensure(extra: number): number {
    if (this.#pos + extra <= this.#slab.length - SCRATCH_BYTES) return 0;
    const moved = this.#start;
    const kept = this.#pos - this.#start;
    let capacity = SLAB_BYTES;
    while (capacity < kept + extra) capacity *= 2;
    const previous = this.#slab.subarray(this.#start, this.#pos);
    this.#useSlab(capacity);
    this.#slab.set(previous);
    this.#start = 0;
    this.#pos = kept;
    return moved;
  }

  /** A new slab of `capacity` bytes for frames, and the scratch area after them. */
  #useSlab(capacity: number): void {
    this.#slab = new Uint8Array(capacity + SCRATCH_BYTES);
    this.#scratch = this.#slab.subarray(capacity);
  }
}
