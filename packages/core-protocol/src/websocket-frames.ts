import { PartialFrame, readLength } from './partial-frame.js';

/**
 * Cuts an outgoing byte stream of length-prefixed AMPS frames (4-byte big-endian length, then
 * that many bytes) into whole frames, because over WebSocket each message carries exactly one
 * frame. Whole frames are views of the input (no copy); a frame split across `split` calls is
 * copied and held until it is complete.
 */
export class WebSocketFrameSplitter {
  readonly #partial = new PartialFrame();

  /** Bytes held back because their frame is not complete yet. */
  get pendingBytes(): number {
    return this.#partial.filled;
  }

  /** Calls `emit` with each complete frame (prefix included), in order. */
  split(bytes: Uint8Array, emit: (frame: Uint8Array) => void): void {
    let offset = 0;
    if (this.#partial.filled > 0) {
      // Rare: the sender split a frame across sends.
      offset = this.#partial.add(bytes, emit);
      if (this.#partial.filled > 0) return;
    }
    while (bytes.length - offset >= 4) {
      const end = offset + 4 + readLength(bytes, offset);
      if (end > bytes.length) break;
      emit(bytes.subarray(offset, end));
      offset = end;
    }
    if (offset < bytes.length) this.#partial.add(bytes.subarray(offset), emit);
  }

  /** Forgets a held partial frame. */
  reset(): void {
    this.#partial.reset();
  }
}
