/**
 * The encoder comes in two builds with one behaviour, chosen by package.json `imports`:
 * `encoder-fast.ts` by default, `encoder-compact.ts` (less code, slower) under the `browser`
 * condition. The codec tests run against both.
 */
export { encodeCommand, FrameEncoder } from '#encoder';
