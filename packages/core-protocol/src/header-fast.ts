/*
 * The header parser for Node.js and servers (the `default` of the `#header` import; browsers get
 * `header-compact.ts`, with the same behaviour in less code).
 */
import { CommandNames, type HeaderFieldName, headerFields } from './fields.js';
import {
  badNumber,
  commandName,
  decodeUtf8,
  fail,
  failControlCharacter,
  failNested,
  fieldByKey,
  isNull,
  parseToken,
  parseUnsigned,
  setExtra,
  unescapeJson,
} from './header-common.js';
import type { Message } from './message.js';

const utf8Encoder = new TextEncoder();

/*
 * How the header parser stays fast: it reads the bytes once, computing each string's hash as it
 * goes. Keys, command names and recently seen values (topics, subscription ids) are found by
 * hash and compared byte by byte, so they cost no new string; numbers are read from the bytes;
 * the remaining strings are made straight from the bytes (see `asciiString`).
 */

function hashBytes(bytes: Uint8Array, start: number, end: number): number {
  let h = 0;
  for (let i = start; i < end; i++) h = (Math.imul(h, 31) + (bytes[i] as number)) | 0;
  return h;
}

/**
 * Byte strings kept in slots of one flat buffer, compared against a range of the input. One flat
 * buffer and plain length arrays keep the comparison cheap (it runs for every key and value).
 */
class Slots {
  readonly #bytes: Uint8Array;
  readonly #lengths: Int32Array;
  readonly #width: number;

  constructor(count: number, width: number) {
    this.#bytes = new Uint8Array(count * width);
    this.#lengths = new Int32Array(count).fill(-1);
    this.#width = width;
  }

  set(slot: number, bytes: Uint8Array, start: number, end: number): void {
    this.#bytes.set(bytes.subarray(start, end), slot * this.#width);
    this.#lengths[slot] = end - start;
  }

  /** Whether `slot` holds exactly `bytes[start, end)`. */
  matches(slot: number, bytes: Uint8Array, start: number, end: number): boolean {
    const length = end - start;
    if (this.#lengths[slot] !== length) return false;
    const held = this.#bytes;
    const at = slot * this.#width - start;
    for (let i = start; i < end; i++) if (held[at + i] !== bytes[i]) return false;
    return true;
  }
}

/**
 * Fixed strings (keys, command names) found by their bytes' hash: a direct-mapped table sized so
 * that no two of its strings share a slot, so a lookup is one comparison.
 */
class ByteTable<V> {
  readonly #mask: number;
  readonly #keys: Slots;
  readonly #values: Array<V | undefined>;

  constructor(entries: ReadonlyArray<readonly [string, V]>) {
    const encoded = entries.map(([text, value]) => [utf8Encoder.encode(text), value] as const);
    const width = Math.max(...encoded.map(([bytes]) => bytes.length));
    let size = 64;
    const slotOf = (bytes: Uint8Array) => hashBytes(bytes, 0, bytes.length) & (size - 1);
    while (new Set(encoded.map(([bytes]) => slotOf(bytes))).size < encoded.length) size *= 2;
    this.#mask = size - 1;
    this.#keys = new Slots(size, width);
    this.#values = new Array(size).fill(undefined);
    for (const [bytes, value] of encoded) {
      this.#keys.set(slotOf(bytes), bytes, 0, bytes.length);
      this.#values[slotOf(bytes)] = value;
    }
  }

  /** The value for `bytes[start, end)`, whose hash is `hash`. */
  get(bytes: Uint8Array, start: number, end: number, hash: number): V | undefined {
    const slot = hash & this.#mask;
    return this.#keys.matches(slot, bytes, start, end) ? this.#values[slot] : undefined;
  }
}

/**
 * Recent values of the fields that repeat (topics, subscription ids, ...): a delivery's `subId`
 * is the same string as last time, with no decoding, and its hash is already computed for the
 * `Map` lookups that route it. Direct-mapped and bounded: a collision replaces the slot.
 */
class RepeatCache {
  static readonly #size = 1024;
  /** Longer values rarely repeat. */
  static readonly #maxLength = 64;
  readonly #keys = new Slots(RepeatCache.#size, RepeatCache.#maxLength);
  readonly #values: string[] = new Array(RepeatCache.#size).fill('');

  /** The cached string for `bytes[start, end)` (an unescaped JSON string's content), or undefined. */
  get(bytes: Uint8Array, start: number, end: number, hash: number): string | undefined {
    const slot = hash & (RepeatCache.#size - 1);
    return this.#keys.matches(slot, bytes, start, end) ? this.#values[slot] : undefined;
  }

  /** Makes the string for `bytes[start, end)` and caches it. */
  add(bytes: Uint8Array, start: number, end: number, hash: number, ascii: boolean): string {
    const value = ascii ? asciiString(bytes, start, end) : decodeUtf8(bytes, start, end);
    if (end - start <= RepeatCache.#maxLength) {
      const slot = hash & (RepeatCache.#size - 1);
      this.#keys.set(slot, bytes, start, end);
      this.#values[slot] = value;
    }
    return value;
  }
}

/**
 * The leading fields of a recent header whose values repeat (command, topic, subscription id,
 * ...), with their bytes. A subscription's deliveries differ only after them: a header that
 * starts with the same bytes gets the same values without parsing them again. The parser is
 * deterministic and each field ends with its `,`, so the result is the same as parsing.
 */
class LeadingFields {
  static readonly #maxBytes = 256;
  /**
   * Headers in a row that do not start with all the remembered fields before those are replaced:
   * deliveries for several subscriptions, interleaved, then cost a compare, not a copy each.
   */
  static readonly #missesBeforeReplacing = 4;
  /** Chunks up to this size keep their view from header to header (see `#words`). */
  static readonly #maxKeptInput = 1024 * 1024;
  /** From the header's `{` to the `,` after the last field. */
  readonly #bytes = new Uint8Array(LeadingFields.#maxBytes);
  /**
   * The remembered bytes and the input, compared four at a time: the compare runs for every
   * header, and byte by byte it was a quarter of a delivery's cost. The input's view is made once
   * per chunk, and kept only for chunks of ordinary size (it keeps the chunk's memory alive).
   */
  readonly #words = new DataView(this.#bytes.buffer);
  #input: Uint8Array | undefined;
  #inputWords: DataView | undefined;
  /** Per field: where its `,` ends (from the `{`), the field, its value. */
  readonly #ends: number[] = [];
  readonly #fields: KnownField[] = [];
  readonly #values: string[] = [];
  #count = 0;
  #misses = 0;
  #recording = true;

  /** Whether the header `resume` started is to have its next repeating fields remembered (`add`). */
  get recording(): boolean {
    return this.#recording;
  }

  /**
   * Stores into `message` the remembered fields the header at `bytes[start]` starts with. Returns
   * the index just after the last one's `,`, or -1 for none.
   */
  resume(bytes: Uint8Array, start: number, end: number, message: Message): number {
    const count = this.#count;
    const held = this.#bytes;
    const ends = this.#ends;
    const limit = count === 0 ? 0 : Math.min(ends[count - 1] as number, end - start);
    let same = 0;
    if (limit >= 4) {
      const words = this.#words;
      const input = this.#wordsOf(bytes);
      while (same + 4 <= limit && words.getInt32(same) === input.getInt32(start + same)) same += 4;
      // The last 1-3 bytes at once: the word that ends at `limit`, overlapping the one before.
      const last = limit - 4;
      if (same < limit && same > last && words.getInt32(last) === input.getInt32(start + last)) same = limit;
    }
    while (same < limit && held[same] === bytes[start + same]) same++;
    let matched = 0;
    while (matched < count && (ends[matched] as number) <= same) {
      store(message, (this.#fields[matched] as KnownField).field, this.#values[matched] as string);
      matched++;
    }
    if (matched === count) {
      this.#misses = 0;
      this.#recording = true;
    } else if (++this.#misses === LeadingFields.#missesBeforeReplacing) {
      this.#count = matched;
      this.#misses = 0;
      this.#recording = true;
    } else {
      this.#recording = false;
    }
    return matched === 0 ? -1 : start + (ends[matched - 1] as number);
  }

  /** `bytes` as a `DataView`: the one made for the chunk before when it is the same chunk. */
  #wordsOf(bytes: Uint8Array): DataView {
    if (bytes === this.#input && this.#inputWords) return this.#inputWords;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (bytes.buffer.byteLength <= LeadingFields.#maxKeptInput) {
      this.#input = bytes;
      this.#inputWords = view;
    }
    return view;
  }

  /**
   * Adds the field that ends at `comma` (the index after its `,`), following those remembered.
   * Returns false when it cannot be added: then no later field of this header can either.
   */
  add(bytes: Uint8Array, start: number, comma: number, field: KnownField, value: string): boolean {
    const count = this.#count;
    const from = count === 0 ? 0 : (this.#ends[count - 1] as number);
    const to = comma - start;
    if (to > LeadingFields.#maxBytes) return false;
    // Copied byte by byte: a few bytes, where `subarray` would make a view.
    const held = this.#bytes;
    for (let k = from; k < to; k++) held[k] = bytes[start + k] as number;
    this.#ends[count] = to;
    this.#fields[count] = field;
    this.#values[count] = value;
    this.#count = count + 1;
    return true;
  }
}

enum Kind {
  String = 0,
  Number = 1,
  Command = 2,
}

/** The header fields, numbered for `store`. */
enum Field {
  command,
  commandId,
  topic,
  ackType,
  status,
  reason,
  subId,
  subIds,
  queryId,
  sequence,
  bookmark,
  batchSize,
  correlationId,
  expiration,
  sowKey,
  sowKeys,
  filter,
  options,
  topN,
  orderBy,
  clientName,
  userId,
  password,
  version,
  messageType,
  timestamp,
  leasePeriod,
  length,
  groupSequence,
  matches,
  topicMatches,
  recordsReturned,
  recordsInserted,
  recordsUpdated,
  recordsDeleted,
}

/**
 * Stores a field's value: one direct store per field, in a `switch` V8 makes a jump table:
 * cheaper than `message[name] = value` with varying names, or a call through a table of one
 * function per field (a call site that sees them all inlines none).
 */
function store(message: Message, field: Field, value: string | number): void {
  const fields = message as unknown as Record<HeaderFieldName, string | number>;
  // biome-ignore format: one line per field
  switch (field) {
    case Field.command: fields.command = value; return;
    case Field.commandId: fields.commandId = value; return;
    case Field.topic: fields.topic = value; return;
    case Field.ackType: fields.ackType = value; return;
    case Field.status: fields.status = value; return;
    case Field.reason: fields.reason = value; return;
    case Field.subId: fields.subId = value; return;
    case Field.subIds: fields.subIds = value; return;
    case Field.queryId: fields.queryId = value; return;
    case Field.sequence: fields.sequence = value; return;
    case Field.bookmark: fields.bookmark = value; return;
    case Field.batchSize: fields.batchSize = value; return;
    case Field.correlationId: fields.correlationId = value; return;
    case Field.expiration: fields.expiration = value; return;
    case Field.sowKey: fields.sowKey = value; return;
    case Field.sowKeys: fields.sowKeys = value; return;
    case Field.filter: fields.filter = value; return;
    case Field.options: fields.options = value; return;
    case Field.topN: fields.topN = value; return;
    case Field.orderBy: fields.orderBy = value; return;
    case Field.clientName: fields.clientName = value; return;
    case Field.userId: fields.userId = value; return;
    case Field.password: fields.password = value; return;
    case Field.version: fields.version = value; return;
    case Field.messageType: fields.messageType = value; return;
    case Field.timestamp: fields.timestamp = value; return;
    case Field.leasePeriod: fields.leasePeriod = value; return;
    case Field.length: fields.length = value; return;
    case Field.groupSequence: fields.groupSequence = value; return;
    case Field.matches: fields.matches = value; return;
    case Field.topicMatches: fields.topicMatches = value; return;
    case Field.recordsReturned: fields.recordsReturned = value; return;
    case Field.recordsInserted: fields.recordsInserted = value; return;
    case Field.recordsUpdated: fields.recordsUpdated = value; return;
    case Field.recordsDeleted: fields.recordsDeleted = value; return;
  }
}

interface KnownField {
  readonly name: HeaderFieldName;
  readonly kind: Kind;
  /** Whether its values repeat from message to message (the command does too). */
  readonly repeats: boolean;
  readonly field: Field;
}

/** Every key and alias to its field. */
const knownByName = new Map<string, KnownField>();
for (const spec of headerFields) {
  knownByName.set(spec.name, {
    name: spec.name,
    kind: spec.name === 'command' ? Kind.Command : spec.type === 'number' ? Kind.Number : Kind.String,
    repeats: spec.name === 'command' || (spec as { repeats?: boolean }).repeats === true,
    field: Field[spec.name],
  });
}
const knownByKey = new Map([...fieldByKey].map(([key, spec]) => [key, knownByName.get(spec.name) as KnownField]));
const keyTable = new ByteTable([...knownByKey]);

/**
 * Most keys are one or two ASCII letters (`c`, `t`, `s`, `bm`): found with one array read, by
 * `shortKeyIndex`. Holds 1 + the index in `shortKeyFields`; 0 for no such key.
 */
const shortKeys = new Uint8Array(128 + 128 * 128);
const shortKeyFields: KnownField[] = [];
function shortKeyIndex(b0: number, b1: number | undefined): number {
  return b1 === undefined ? b0 : 128 + b0 * 128 + b1;
}
for (const [key, known] of knownByKey) {
  if (key.length > 2) continue;
  shortKeyFields.push(known);
  shortKeys[shortKeyIndex(key.charCodeAt(0), key.length === 2 ? key.charCodeAt(1) : undefined)] = shortKeyFields.length;
}
const commandTable = new ByteTable<string>([...CommandNames.map((name) => [name, name] as const), ['p', 'publish']]);

const repeatCache = new RepeatCache();
const leadingFields = new LeadingFields();

/* ---------- header parsing ---------- */

// Local copies of the whitespace rules in `header-common.ts`: they run for every byte, and V8
// does not inline a function imported from another module.

function isSpace(b: number): boolean {
  return b <= 0x20 && (b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d);
}

function skipSpace(bytes: Uint8Array, i: number, end: number): number {
  while (i < end && isSpace(bytes[i] as number)) i++;
  return i;
}

/** Whether a bare value ends at `i`. */
function endsToken(bytes: Uint8Array, i: number, end: number): boolean {
  if (i >= end) return true;
  const b = bytes[i] as number;
  return b === 0x2c || b === 0x7d || isSpace(b);
}

/** What `scanString` found besides the closing quote's index. */
const scanned = { hash: 0, escaped: false, ascii: true };

/** Scans a JSON string whose content starts at `i`; returns the index of its closing quote. */
function scanString(bytes: Uint8Array, i: number, end: number): number {
  let hash = 0;
  let escaped = false;
  let high = 0;
  for (; i < end; i++) {
    const b = bytes[i] as number;
    if (b === 0x22) {
      scanned.hash = hash;
      scanned.escaped = escaped;
      scanned.ascii = high < 0x80;
      return i;
    }
    if (b === 0x5c) {
      escaped = true;
      // The escaped byte counts for `ascii` too: a non-ASCII one must be decoded as UTF-8.
      high |= bytes[++i] as number;
    } else if (b < 0x20) {
      failControlCharacter();
    }
    high |= b;
    hash = (Math.imul(hash, 31) + b) | 0;
  }
  return fail('header is not terminated');
}

/**
 * Parses the JSON header that starts at `bytes[start]` into `message`; `end` is the frame's end.
 * Returns the index just after the header's closing `}`: where the body starts.
 */
export function parseHeader(bytes: Uint8Array, start: number, end: number, message: Message): number {
  if (start >= end || bytes[start] !== 0x7b) fail('frame does not start with a JSON header');
  let i = leadingFields.resume(bytes, start, end, message);
  if (i < 0) {
    i = skipSpace(bytes, start + 1, end);
    if (i < end && bytes[i] === 0x7d) return i + 1;
  } else {
    i = skipSpace(bytes, i, end);
  }
  // Whether every field so far is a repeating one, remembered in `leadingFields`.
  let leading = leadingFields.recording;
  for (;;) {
    // Key.
    if (i >= end) fail('header is not terminated');
    if (bytes[i] !== 0x22) fail(`expected a quoted key in header at byte ${i - start}`);
    const keyStart = i + 1;
    let keyEnd: number;
    let key: string | undefined;
    let known = shortKey(bytes, keyStart, end);
    if (known !== undefined) {
      keyEnd = bytes[keyStart + 1] === 0x22 ? keyStart + 1 : keyStart + 2;
    } else {
      keyEnd = scanString(bytes, keyStart, end);
      if (scanned.escaped) {
        key = stringAt(bytes, keyStart, keyEnd, true, scanned.ascii);
        known = knownByKey.get(key);
      } else {
        known = keyTable.get(bytes, keyStart, keyEnd, scanned.hash);
        if (known === undefined) key = stringAt(bytes, keyStart, keyEnd, false, scanned.ascii);
      }
    }
    // Whitespace between tokens is rare: a look at one byte saves a call per token (parseHeader is
    // too big for V8 to inline `skipSpace`). A byte read past `end` changes nothing: `skipSpace`
    // stops at `end`.
    i = keyEnd + 1;
    if ((bytes[i] as number) <= 0x20) i = skipSpace(bytes, i, end);
    if (i >= end || bytes[i] !== 0x3a) fail(`expected ':' after a header key at byte ${i - start}`);
    i++;
    if ((bytes[i] as number) <= 0x20) i = skipSpace(bytes, i, end);
    if (i >= end) fail('header value is missing');

    // Value.
    let repeated: string | undefined;
    if (bytes[i] === 0x22) {
      const valueStart = i + 1;
      const valueEnd = scanString(bytes, valueStart, end);
      i = valueEnd + 1;
      if (known === undefined) {
        setExtra(message, key as string, stringAt(bytes, valueStart, valueEnd, scanned.escaped, scanned.ascii));
      } else if (known.kind === Kind.Number) {
        store(message, known.field, parseUnsigned(bytes, valueStart, valueEnd, known.name));
      } else {
        const value = knownString(bytes, valueStart, valueEnd, known);
        store(message, known.field, value);
        if (known.repeats) repeated = value;
      }
    } else if (known !== undefined && known.kind === Kind.Number) {
      // The usual case for numbers (`"s":42`): read the digits as they are scanned.
      const valueStart = i;
      let n = 0;
      for (; i < end; i++) {
        const d = (bytes[i] as number) - 0x30;
        if (d < 0 || d > 9) break;
        n = n * 10 + d;
      }
      if (i > valueStart && i - valueStart <= 16 && n <= Number.MAX_SAFE_INTEGER && endsToken(bytes, i, end)) {
        store(message, known.field, n);
      } else {
        i = tokenEnd(bytes, valueStart, end);
        // A field sent as null is absent.
        if (!isNull(bytes, valueStart, i)) badNumber(bytes, valueStart, i, known.name);
      }
    } else {
      const valueStart = i;
      i = tokenEnd(bytes, i, end);
      const token = stringAt(bytes, valueStart, i, false, scanned.ascii);
      const value = parseToken(token);
      if (known === undefined) setExtra(message, key as string, value);
      // A known field sent as null is absent; a string field written bare keeps its text.
      else if (value !== null) store(message, known.field, token);
    }

    if ((bytes[i] as number) <= 0x20) i = skipSpace(bytes, i, end);
    if (i >= end) fail('header is not terminated');
    const b = bytes[i];
    if (b === 0x7d) return i + 1;
    if (b !== 0x2c) fail(`expected ',' or '}' in header at byte ${i - start}`);
    if (leading) {
      leading = repeated !== undefined && leadingFields.add(bytes, start, i + 1, known as KnownField, repeated);
    }
    i++;
    if ((bytes[i] as number) <= 0x20) i = skipSpace(bytes, i, end);
  }
}

/** The value of a known string field (quoted, scanned by `scanString`). */
function knownString(bytes: Uint8Array, start: number, end: number, known: KnownField): string {
  if (scanned.escaped) {
    const value = stringAt(bytes, start, end, true, scanned.ascii);
    return known.kind === Kind.Command ? commandName(value) : value;
  }
  if (known.kind === Kind.Command) {
    return commandTable.get(bytes, start, end, scanned.hash) ?? stringAt(bytes, start, end, false, scanned.ascii);
  }
  if (known.repeats) {
    const hash = scanned.hash;
    return repeatCache.get(bytes, start, end, hash) ?? repeatCache.add(bytes, start, end, hash, scanned.ascii);
  }
  return stringAt(bytes, start, end, false, scanned.ascii);
}

/** The known field of a one- or two-letter key starting at `i`, if it is one. */
function shortKey(bytes: Uint8Array, i: number, end: number): KnownField | undefined {
  if (i + 2 >= end) return undefined;
  const b0 = bytes[i] as number;
  const b1 = bytes[i + 1] as number;
  if (b0 >= 0x80) return undefined;
  if (b1 === 0x22) return b0 === 0x5c ? undefined : shortKeyFields[(shortKeys[b0] as number) - 1];
  if (b1 >= 0x80 || bytes[i + 2] !== 0x22) return undefined;
  return shortKeyFields[(shortKeys[128 + b0 * 128 + b1] as number) - 1];
}

/** Where the bare value (`true`, `42`, ...) starting at `i` ends; `scanned.ascii` says whether it is ASCII. */
function tokenEnd(bytes: Uint8Array, i: number, end: number): number {
  const first = bytes[i];
  if (first === 0x7b || first === 0x5b) failNested();
  let high = 0;
  while (!endsToken(bytes, i, end)) high |= bytes[i++] as number;
  scanned.ascii = high < 0x80;
  return i;
}

/** The JSON string content at `bytes[start, end)` as a string, its escapes decoded. */
function stringAt(bytes: Uint8Array, start: number, end: number, escaped: boolean, ascii: boolean): string {
  if (escaped) {
    const quoted = ascii ? asciiString(bytes, start - 1, end + 1) : decodeUtf8(bytes, start - 1, end + 1);
    return unescapeJson(quoted);
  }
  return ascii ? asciiString(bytes, start, end) : decodeUtf8(bytes, start, end);
}

/** `String.fromCharCode`, typed to take `Uint8Array` reads (`number | undefined` here). */
const chars = String.fromCharCode as (...codes: Array<number | undefined>) => string;

/**
 * ASCII bytes as a string. `String.fromCharCode` with a fixed argument list is several times
 * cheaper than a `TextDecoder` call for the short values headers carry. One argument per byte, up
 * to 32: a longer string cut down to length (`slice`) is a view of it, on which every later read
 * (a bookmark store parsing and comparing each message's bookmark) was slower.
 */
function asciiString(b: Uint8Array, start: number, end: number): string {
  const n = end - start;
  const s = start;
  // biome-ignore format: one line per length
  switch (n) {
    case 0: return '';
    case 1: return chars(b[s]);
    case 2: return chars(b[s], b[s + 1]);
    case 3: return chars(b[s], b[s + 1], b[s + 2]);
    case 4: return chars(b[s], b[s + 1], b[s + 2], b[s + 3]);
    case 5: return chars(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4]);
    case 6: return chars(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5]);
    case 7: return chars(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6]);
    case 8: return chars(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6], b[s + 7]);
    case 9: return chars(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6], b[s + 7], b[s + 8]);
    case 10: return chars(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6], b[s + 7], b[s + 8], b[s + 9]);
    case 11: return chars(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6], b[s + 7], b[s + 8], b[s + 9], b[s + 10]);
    case 12: return chars(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6], b[s + 7], b[s + 8], b[s + 9], b[s + 10], b[s + 11]);
    case 13: return chars(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6], b[s + 7], b[s + 8], b[s + 9], b[s + 10], b[s + 11], b[s + 12]);
    case 14: return chars(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6], b[s + 7], b[s + 8], b[s + 9], b[s + 10], b[s + 11], b[s + 12], b[s + 13]);
    case 15: return chars(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6], b[s + 7], b[s + 8], b[s + 9], b[s + 10], b[s + 11], b[s + 12], b[s + 13], b[s + 14]);
    case 16: return chars(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6], b[s + 7], b[s + 8], b[s + 9], b[s + 10], b[s + 11], b[s + 12], b[s + 13], b[s + 14], b[s + 15]);
    case 17: return chars(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6], b[s + 7], b[s + 8], b[s + 9], b[s + 10], b[s + 11], b[s + 12], b[s + 13], b[s + 14], b[s + 15], b[s + 16]);
    case 18: return chars(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6], b[s + 7], b[s + 8], b[s + 9], b[s + 10], b[s + 11], b[s + 12], b[s + 13], b[s + 14], b[s + 15], b[s + 16], b[s + 17]);
    case 19: return chars(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6], b[s + 7], b[s + 8], b[s + 9], b[s + 10], b[s + 11], b[s + 12], b[s + 13], b[s + 14], b[s + 15], b[s + 16], b[s + 17], b[s + 18]);
    case 20: return chars(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6], b[s + 7], b[s + 8], b[s + 9], b[s + 10], b[s + 11], b[s + 12], b[s + 13], b[s + 14], b[s + 15], b[s + 16], b[s + 17], b[s + 18], b[s + 19]);
    case 21: return chars(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6], b[s + 7], b[s + 8], b[s + 9], b[s + 10], b[s + 11], b[s + 12], b[s + 13], b[s + 14], b[s + 15], b[s + 16], b[s + 17], b[s + 18], b[s + 19], b[s + 20]);
    case 22: return chars(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6], b[s + 7], b[s + 8], b[s + 9], b[s + 10], b[s + 11], b[s + 12], b[s + 13], b[s + 14], b[s + 15], b[s + 16], b[s + 17], b[s + 18], b[s + 19], b[s + 20], b[s + 21]);
    case 23: return chars(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6], b[s + 7], b[s + 8], b[s + 9], b[s + 10], b[s + 11], b[s + 12], b[s + 13], b[s + 14], b[s + 15], b[s + 16], b[s + 17], b[s + 18], b[s + 19], b[s + 20], b[s + 21], b[s + 22]);
    case 24: return chars(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6], b[s + 7], b[s + 8], b[s + 9], b[s + 10], b[s + 11], b[s + 12], b[s + 13], b[s + 14], b[s + 15], b[s + 16], b[s + 17], b[s + 18], b[s + 19], b[s + 20], b[s + 21], b[s + 22], b[s + 23]);
    case 25: return chars(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6], b[s + 7], b[s + 8], b[s + 9], b[s + 10], b[s + 11], b[s + 12], b[s + 13], b[s + 14], b[s + 15], b[s + 16], b[s + 17], b[s + 18], b[s + 19], b[s + 20], b[s + 21], b[s + 22], b[s + 23], b[s + 24]);
    case 26: return chars(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6], b[s + 7], b[s + 8], b[s + 9], b[s + 10], b[s + 11], b[s + 12], b[s + 13], b[s + 14], b[s + 15], b[s + 16], b[s + 17], b[s + 18], b[s + 19], b[s + 20], b[s + 21], b[s + 22], b[s + 23], b[s + 24], b[s + 25]);
    case 27: return chars(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6], b[s + 7], b[s + 8], b[s + 9], b[s + 10], b[s + 11], b[s + 12], b[s + 13], b[s + 14], b[s + 15], b[s + 16], b[s + 17], b[s + 18], b[s + 19], b[s + 20], b[s + 21], b[s + 22], b[s + 23], b[s + 24], b[s + 25], b[s + 26]);
    case 28: return chars(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6], b[s + 7], b[s + 8], b[s + 9], b[s + 10], b[s + 11], b[s + 12], b[s + 13], b[s + 14], b[s + 15], b[s + 16], b[s + 17], b[s + 18], b[s + 19], b[s + 20], b[s + 21], b[s + 22], b[s + 23], b[s + 24], b[s + 25], b[s + 26], b[s + 27]);
    case 29: return chars(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6], b[s + 7], b[s + 8], b[s + 9], b[s + 10], b[s + 11], b[s + 12], b[s + 13], b[s + 14], b[s + 15], b[s + 16], b[s + 17], b[s + 18], b[s + 19], b[s + 20], b[s + 21], b[s + 22], b[s + 23], b[s + 24], b[s + 25], b[s + 26], b[s + 27], b[s + 28]);
    case 30: return chars(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6], b[s + 7], b[s + 8], b[s + 9], b[s + 10], b[s + 11], b[s + 12], b[s + 13], b[s + 14], b[s + 15], b[s + 16], b[s + 17], b[s + 18], b[s + 19], b[s + 20], b[s + 21], b[s + 22], b[s + 23], b[s + 24], b[s + 25], b[s + 26], b[s + 27], b[s + 28], b[s + 29]);
    case 31: return chars(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6], b[s + 7], b[s + 8], b[s + 9], b[s + 10], b[s + 11], b[s + 12], b[s + 13], b[s + 14], b[s + 15], b[s + 16], b[s + 17], b[s + 18], b[s + 19], b[s + 20], b[s + 21], b[s + 22], b[s + 23], b[s + 24], b[s + 25], b[s + 26], b[s + 27], b[s + 28], b[s + 29], b[s + 30]);
    case 32: return chars(b[s], b[s + 1], b[s + 2], b[s + 3], b[s + 4], b[s + 5], b[s + 6], b[s + 7], b[s + 8], b[s + 9], b[s + 10], b[s + 11], b[s + 12], b[s + 13], b[s + 14], b[s + 15], b[s + 16], b[s + 17], b[s + 18], b[s + 19], b[s + 20], b[s + 21], b[s + 22], b[s + 23], b[s + 24], b[s + 25], b[s + 26], b[s + 27], b[s + 28], b[s + 29], b[s + 30], b[s + 31]);
  }
  return decodeUtf8(b, start, end);
}
