/** The 4-byte big-endian unsigned length at `at`. */
export function readLength(bytes: Uint8Array, at: number): number {
  return (
    (bytes[at] as number) * 0x1000000 +
    (((bytes[at + 1] as number) << 16) | ((bytes[at + 2] as number) << 8) | (bytes[at + 3] as number))
  );
}

/**
 * A length-prefixed frame (4-byte big-endian length, then that many bytes) arriving in pieces:
 * each piece is copied into one buffer that doubles as they come, up to the frame's size. Keeping
 * the pieces, or joining them again at each one, cost memory or time per piece: some 200 bytes
 * of memory per byte for a frame that came a byte at a time, 13 s to join a 4 MiB frame sent in
 * 1 KiB pieces.
 */
export class PartialFrame {
  #bytes = new Uint8Array(4);
  /** Bytes received, prefix included; 0 when there is no frame. */
  #filled = 0;
  /** Prefix plus length, or -1 while the prefix is incomplete. */
  #total = -1;

  /** Bytes held, prefix included. */
  get filled(): number {
    return this.#filled;
  }

  /**
   * Copies the start of `chunk` that belongs to the frame and returns how much of it that was.
   * `checkLength` sees the length once the prefix is whole (it may throw). When the frame is
   * complete, `onFrame` gets it (prefix included) and this starts over, empty.
   */
  add(chunk: Uint8Array, onFrame: (frame: Uint8Array) => void, checkLength?: (length: number) => void): number {
    let used = 0;
    if (this.#total < 0) {
      used = Math.min(4 - this.#filled, chunk.length);
      this.#bytes.set(chunk.subarray(0, used), this.#filled);
      this.#filled += used;
      if (this.#filled < 4) return used;
      const length = readLength(this.#bytes, 0);
      checkLength?.(length);
      this.#total = 4 + length;
    }
    const take = Math.min(this.#total - this.#filled, chunk.length - used);
    const needed = this.#filled + take;
    if (needed > this.#bytes.length) {
      const grown = new Uint8Array(Math.min(this.#total, Math.max(needed, 2 * this.#bytes.length)));
      grown.set(this.#bytes.subarray(0, this.#filled));
      this.#bytes = grown;
    }
    this.#bytes.set(chunk.subarray(used, used + take), this.#filled);
    this.#filled = needed;
    if (this.#filled === this.#total) {
      const frame = this.#bytes;
      this.reset();
      onFrame(frame);
    }
    return used + take;
  }

  /** Forgets the frame. */
  reset(): void {
    this.#bytes = new Uint8Array(4);
    this.#filled = 0;
    this.#total = -1;
  }
}
