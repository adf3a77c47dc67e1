/**
 * Cuts an outgoing byte stream of length-prefixed AMPS frames (4-byte big-endian length, then
 * that many bytes) into whole frames, because over WebSocket each message carries exactly one
 * frame. Whole frames are views of the input (no copy); a frame split across `split` calls is
 * held until it is complete.
 */
export class WebSocketFrameSplitter {
  #partial: Uint8Array | undefined;

  /** Bytes held back because their frame is not complete yet. */
  get pendingBytes(): number {
    return this.#partial?.length ?? 0;
  }

  /** Calls `emit` with each complete frame (prefix included), in order. */
  split(bytes: Uint8Array, emit: (frame: Uint8Array) => void): void {
    let input = bytes;
    if (this.#partial) {
      // Rare: the sender split a frame across sends. Join and start over.
      input = new Uint8Array(this.#partial.length + bytes.length);
      input.set(this.#partial);
      input.set(bytes, this.#partial.length);
      this.#partial = undefined;
    }
    let offset = 0;
    while (input.length - offset >= 4) {
      const length =
        (input[offset] as number) * 0x1000000 +
        (((input[offset + 1] as number) << 16) | ((input[offset + 2] as number) << 8) | (input[offset + 3] as number));
      const end = offset + 4 + length;
      if (end > input.length) break;
      emit(input.subarray(offset, end));
      offset = end;
    }
    if (offset < input.length) this.#partial = input.slice(offset);
  }

  /** Forgets a held partial frame. */
  reset(): void {
    this.#partial = undefined;
  }
}
