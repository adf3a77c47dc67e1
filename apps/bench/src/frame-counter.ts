/** Counts length-prefixed frames in a byte stream without looking inside them. */
export class FrameCounter {
  frames = 0;
  #need = 0;
  #prefix = 0;
  #prefixBytes = 0;

  push(chunk: Uint8Array): void {
    let i = 0;
    const end = chunk.length;
    while (i < end) {
      if (this.#need > 0) {
        const take = Math.min(this.#need, end - i);
        this.#need -= take;
        i += take;
        if (this.#need === 0) this.frames++;
        continue;
      }
      if (this.#prefixBytes === 0 && end - i >= 4) {
        // The common case: the whole prefix is in this chunk.
        this.#need =
          (chunk[i] as number) * 0x1000000 +
          ((chunk[i + 1] as number) << 16) +
          ((chunk[i + 2] as number) << 8) +
          (chunk[i + 3] as number);
        i += 4;
        if (this.#need === 0) this.frames++;
        continue;
      }
      this.#prefix = this.#prefix * 256 + (chunk[i++] as number);
      if (++this.#prefixBytes === 4) {
        this.#need = this.#prefix;
        this.#prefix = 0;
        this.#prefixBytes = 0;
        if (this.#need === 0) this.frames++;
      }
    }
  }
}
