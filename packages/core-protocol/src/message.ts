import { type AckStatus, type CommandName, type HeaderFieldName, type HeaderValues, headerFields } from './fields.js';

/** A header value the decoder did not map to a known field. */
export type ExtraHeaderValue = string | number | boolean | null;

/** What a client sends: header fields plus an optional body. */
export interface Command extends HeaderValues {
  command: CommandName;
  /** The body: bytes as they are, or a string encoded as UTF-8. */
  data?: Uint8Array | string;
  /** Header keys this library does not model, written verbatim after the known ones. */
  headers?: Readonly<Record<string, string | number | boolean>>;
}

const utf8 = new TextDecoder();
const empty = new Uint8Array(0);
const fieldNames: readonly HeaderFieldName[] = headerFields.map((f) => f.name);

/**
 * Points a message's `data` at `bytes[start, end)`: for the decoder, which so makes no view for a
 * body nobody reads (a typed array costs more to create than the rest of a small message).
 */
export let setBody: (message: Message, bytes: Uint8Array, start: number, end: number) => void;

/**
 * A copy of a delivery for one of the subscriptions in its `sids`, with that one's `subId`: as
 * AMPS's clients do, each handler gets its own id, and its own object. The body is shared.
 */
export let forSubscription: (message: Message, subId: string) => Message;

/**
 * A frame (or one record of a SOW batch) received from the server.
 *
 * Every known header field is a property (`undefined` when absent); header keys this library
 * does not know are in `extra`. `data` is a view into the received bytes, not a copy: copy it
 * before keeping it past the handler if you need it to survive buffer reuse by your own code.
 * It is made on first read, by an accessor: spreading a message or `Object.entries` does not
 * copy the body.
 */
export class Message {
  declare command: CommandName | undefined;
  declare commandId: string | undefined;
  declare topic: string | undefined;
  declare ackType: string | undefined;
  declare status: AckStatus | undefined;
  declare reason: string | undefined;
  declare subId: string | undefined;
  declare subIds: string | undefined;
  declare queryId: string | undefined;
  declare sequence: number | undefined;
  declare bookmark: string | undefined;
  declare batchSize: number | undefined;
  declare correlationId: string | undefined;
  declare expiration: number | undefined;
  declare sowKey: string | undefined;
  declare sowKeys: string | undefined;
  declare filter: string | undefined;
  declare options: string | undefined;
  declare topN: number | undefined;
  declare orderBy: string | undefined;
  declare clientName: string | undefined;
  declare userId: string | undefined;
  declare password: string | undefined;
  declare version: string | undefined;
  declare messageType: string | undefined;
  declare timestamp: string | undefined;
  declare leasePeriod: string | undefined;
  declare length: number | undefined;
  declare groupSequence: number | undefined;
  declare matches: number | undefined;
  declare topicMatches: number | undefined;
  declare recordsReturned: number | undefined;
  declare recordsInserted: number | undefined;
  declare recordsUpdated: number | undefined;
  declare recordsDeleted: number | undefined;
  /** Header keys the decoder does not model, with their values. */
  declare extra: Record<string, ExtraHeaderValue> | undefined;

  /** Where the body is, until `data` is first read. */
  #source: Uint8Array = empty;
  #start = 0;
  #end = 0;
  #data: Uint8Array | undefined = undefined;

  static {
    setBody = (message, bytes, start, end) => {
      message.#source = bytes;
      message.#start = start;
      message.#end = end;
    };
    forSubscription = (message, subId) => {
      const copy = new Message();
      copy.inheritHeader(message);
      copy.subId = subId;
      copy.#source = message.#source;
      copy.#start = message.#start;
      copy.#end = message.#end;
      copy.#data = message.#data;
      return copy;
    };
  }

  /** The body, as a view into the received bytes (made on first read). */
  get data(): Uint8Array {
    this.#data ??= new Uint8Array(this.#source.buffer, this.#source.byteOffset + this.#start, this.#end - this.#start);
    return this.#data;
  }

  set data(value: Uint8Array) {
    this.#data = value;
  }

  /** The decoded body, once asked for: kept off the hot path of constructing a message. */
  #body: { text: string; json?: unknown; parsed: boolean } | undefined;

  /** The body decoded as UTF-8 (decoded once, then cached). */
  text(): string {
    this.#body ??= { text: utf8.decode(this.data), parsed: false };
    return this.#body.text;
  }

  /** The body parsed as JSON (parsed once, then cached). Throws `SyntaxError` for a body that is not JSON. */
  json<T = unknown>(): T {
    const body = this.#body ?? { text: this.text(), parsed: false };
    this.#body = body;
    if (!body.parsed) {
      body.json = JSON.parse(body.text);
      body.parsed = true;
    }
    return body.json as T;
  }

  /** The subscription ids this delivery is for: `sids` split, or `sub_id`. */
  get subscriptionIds(): string[] {
    if (this.subIds !== undefined) return this.subIds.split(',');
    return this.subId === undefined ? [] : [this.subId];
  }

  /** Copies every header field (not the body) from another message: how SOW records inherit their batch header. */
  inheritHeader(from: Message): void {
    for (const name of fieldNames) if (from[name] !== undefined) (this as HeaderValues)[name] = from[name] as never;
    if (from.extra) this.extra = { ...from.extra };
  }

  /** A JSON-friendly view for logs: the header without the password, and the body length. */
  toJSON(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(this)) {
      if (value !== undefined && key !== 'data' && key !== 'password') out[key] = value;
    }
    out.dataLength = this.data.length;
    return out;
  }

  /**
   * What `console.log` and `util.inspect` show in Node.js: the `toJSON()` view, so the password
   * of an echoed logon stays hidden. Keyed by the symbol Node.js looks up, so nothing is imported.
   */
  [Symbol.for('nodejs.util.inspect.custom')](
    _depth: number,
    options: unknown,
    inspect: (value: unknown, options: unknown) => string,
  ): string {
    return `Message ${inspect(this.toJSON(), options)}`;
  }
}

// Absent header fields read as `undefined` from the prototype: a message is built with only the
// fields its header carries, which keeps decoding cheap.
for (const name of [...fieldNames, 'extra'] as const) {
  (Message.prototype as unknown as Record<string, unknown>)[name] = undefined;
}
