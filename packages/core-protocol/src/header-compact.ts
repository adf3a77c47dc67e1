/*
 * The header parser for browsers (the `browser` condition of the `#header` import): the same
 * behaviour as `header-fast.ts`, and the same tests, in a fraction of the code. It makes a new
 * string for every key and value where the fast one looks them up by hash, which matters only
 * at server-side message rates.
 */
import {
  commandName,
  decodeUtf8,
  endsToken,
  fail,
  failControlCharacter,
  failNested,
  fieldByKey,
  isNull,
  parseToken,
  parseUnsigned,
  setExtra,
  skipSpace,
  unescapeJson,
} from './header-common.js';
import type { Message } from './message.js';

/** Whether the string `closingQuote` last scanned holds escapes. */
let escaped = false;

/** The index of the closing quote of the JSON string whose content starts at `i`. */
function closingQuote(bytes: Uint8Array, i: number, end: number): number {
  escaped = false;
  for (; i < end; i++) {
    const b = bytes[i] as number;
    if (b === 0x22) return i;
    if (b === 0x5c) {
      escaped = true;
      i++;
    } else if (b < 0x20) {
      failControlCharacter();
    }
  }
  return fail('header is not terminated');
}

/** The text of the string `closingQuote` just scanned, its escapes decoded. */
function stringAt(bytes: Uint8Array, start: number, end: number): string {
  return escaped ? unescapeJson(decodeUtf8(bytes, start - 1, end + 1)) : decodeUtf8(bytes, start, end);
}

/**
 * Parses the JSON header that starts at `bytes[start]` into `message`; `end` is the frame's end.
 * Returns the index just after the header's closing `}`: where the body starts.
 */
export function parseHeader(bytes: Uint8Array, start: number, end: number, message: Message): number {
  if (start >= end || bytes[start] !== 0x7b) fail('frame does not start with a JSON header');
  const fields = message as unknown as Record<string, unknown>;
  let i = skipSpace(bytes, start + 1, end);
  if (i < end && bytes[i] === 0x7d) return i + 1;
  for (;;) {
    if (i >= end) fail('header is not terminated');
    if (bytes[i] !== 0x22) fail(`expected a quoted key in header at byte ${i - start}`);
    const keyEnd = closingQuote(bytes, i + 1, end);
    const key = stringAt(bytes, i + 1, keyEnd);
    const field = fieldByKey.get(key);
    i = skipSpace(bytes, keyEnd + 1, end);
    if (i >= end || bytes[i] !== 0x3a) fail(`expected ':' after a header key at byte ${i - start}`);
    i = skipSpace(bytes, i + 1, end);
    if (i >= end) fail('header value is missing');

    if (bytes[i] === 0x22) {
      const valueStart = i + 1;
      i = closingQuote(bytes, valueStart, end);
      // Numbers may be quoted, but only digits count: checked on the bytes, before any unescaping.
      if (field?.type === 'number') fields[field.name] = parseUnsigned(bytes, valueStart, i, field.name);
      else if (field === undefined) setExtra(message, key, stringAt(bytes, valueStart, i));
      else if (field.name === 'command') fields.command = commandName(stringAt(bytes, valueStart, i));
      else fields[field.name] = stringAt(bytes, valueStart, i);
      i++;
    } else {
      const valueStart = i;
      if (bytes[i] === 0x7b || bytes[i] === 0x5b) failNested();
      while (!endsToken(bytes, i, end)) i++;
      if (field?.type === 'number') {
        // A field sent as null is absent.
        if (!isNull(bytes, valueStart, i)) fields[field.name] = parseUnsigned(bytes, valueStart, i, field.name);
      } else {
        const token = decodeUtf8(bytes, valueStart, i);
        const value = parseToken(token);
        if (field === undefined) setExtra(message, key, value);
        // A known field sent as null is absent; a string field written bare keeps its text.
        else if (value !== null) fields[field.name] = token;
      }
    }

    i = skipSpace(bytes, i, end);
    if (i >= end) fail('header is not terminated');
    if (bytes[i] === 0x7d) return i + 1;
    if (bytes[i] !== 0x2c) fail(`expected ',' or '}' in header at byte ${i - start}`);
    i = skipSpace(bytes, i + 1, end);
  }
}
