/*
 * What the two header parsers share (`header-fast.ts` for Node.js and servers, `header-compact.ts`
 * for browsers; see `decoder.ts`): the key table, the rules for values and their error messages, so
 * the two differ only in how fast they are.
 */
import { ProtocolError } from './errors.js';
import { headerFields } from './fields.js';
import type { ExtraHeaderValue, Message } from './message.js';

export type HeaderField = (typeof headerFields)[number];

/** Every wire key and alias, to the field it fills. */
export const fieldByKey = new Map<string, HeaderField>();
for (const field of headerFields) {
  for (const key of [field.key, ...((field as { aliases?: readonly string[] }).aliases ?? [])]) {
    fieldByKey.set(key, field);
  }
}

// ignoreBOM: a header string that starts with U+FEFF keeps it.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export function fail(message: string): never {
  throw new ProtocolError(message);
}

/** `bytes.subarray(start, end)`, at half the cost. */
export function view(bytes: Uint8Array, start: number, end: number): Uint8Array {
  return new Uint8Array(bytes.buffer, bytes.byteOffset + start, end - start);
}

/** Header bytes as a string; a `ProtocolError` if they are not UTF-8. */
export function decodeUtf8(bytes: Uint8Array, start: number, end: number): string {
  try {
    return utf8.decode(view(bytes, start, end));
  } catch {
    return fail('header is not valid UTF-8');
  }
}

/** A quoted JSON string with escapes, unescaped. */
export function unescapeJson(quoted: string): string {
  try {
    return JSON.parse(quoted) as string;
  } catch {
    return fail('bad escape sequence in a header string');
  }
}

export function isSpace(b: number): boolean {
  return b <= 0x20 && (b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d);
}

export function skipSpace(bytes: Uint8Array, i: number, end: number): number {
  while (i < end && isSpace(bytes[i] as number)) i++;
  return i;
}

/** Whether a bare value ends at `i`. */
export function endsToken(bytes: Uint8Array, i: number, end: number): boolean {
  if (i >= end) return true;
  const b = bytes[i] as number;
  return b === 0x2c || b === 0x7d || isSpace(b);
}

export function failNested(): never {
  return fail('nested objects and arrays are not allowed in an AMPS header');
}

export function failControlCharacter(): never {
  return fail('control character inside a header string');
}

export function isNull(bytes: Uint8Array, start: number, end: number): boolean {
  return (
    end - start === 4 &&
    bytes[start] === 0x6e &&
    bytes[start + 1] === 0x75 &&
    bytes[start + 2] === 0x6c &&
    bytes[start + 3] === 0x6c
  );
}

/** An unsigned integer: header numbers are counts and sequences, nothing else is accepted. */
export function parseUnsigned(bytes: Uint8Array, start: number, end: number, name: string): number {
  if (end - start > 16) badNumber(bytes, start, end, name);
  let n = 0;
  for (let i = start; i < end; i++) {
    const d = (bytes[i] as number) - 0x30;
    if (d < 0 || d > 9) return badNumber(bytes, start, end, name);
    n = n * 10 + d;
  }
  if (start === end || n > Number.MAX_SAFE_INTEGER) return badNumber(bytes, start, end, name);
  return n;
}

export function badNumber(bytes: Uint8Array, start: number, end: number, name: string): never {
  let text: string;
  try {
    text = utf8.decode(bytes.subarray(start, Math.min(end, start + 24)));
  } catch {
    text = '(not UTF-8)';
  }
  return fail(`header field ${name} must be an unsigned integer up to 2^53-1, got '${text}'`);
}

const jsonNumber = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$/;

/** A value without quotes: `true`, `false`, `null` or a JSON number. */
export function parseToken(token: string): ExtraHeaderValue {
  if (token === 'true') return true;
  if (token === 'false') return false;
  if (token === 'null') return null;
  if (jsonNumber.test(token)) return Number(token);
  return fail(`unexpected token '${token.slice(0, 24)}' in header`);
}

export function setExtra(message: Message, key: string, value: ExtraHeaderValue): void {
  if (message.extra === undefined) message.extra = {};
  if (key === '__proto__') {
    // Data like any other key, not the object's prototype.
    Object.defineProperty(message.extra, key, { value, enumerable: true, writable: true, configurable: true });
  } else {
    message.extra[key] = value;
  }
}

/** `publish` travels as `p`. */
export function commandName(wire: string): string {
  return wire === 'p' ? 'publish' : wire;
}
