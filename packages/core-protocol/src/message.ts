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
 * A frame (or one record of a SOW batch) received from the server.
 *
 * Every known header field is a property (`undefined` when absent); header keys this library
 * does not know are in `extra`. `data` is a view into the received bytes, not a copy: copy it
 * before keeping it past the handler if you need it to survive buffer reuse by your own code.
 */
export class Message {
  command: CommandName | undefined = undefined;
  commandId: string | undefined = undefined;
  topic: string | undefined = undefined;
  ackType: string | undefined = undefined;
  status: AckStatus | undefined = undefined;
  reason: string | undefined = undefined;
  subId: string | undefined = undefined;
  subIds: string | undefined = undefined;
  queryId: string | undefined = undefined;
  sequence: number | undefined = undefined;
  bookmark: string | undefined = undefined;
  batchSize: number | undefined = undefined;
  correlationId: string | undefined = undefined;
  expiration: number | undefined = undefined;
  sowKey: string | undefined = undefined;
  sowKeys: string | undefined = undefined;
  filter: string | undefined = undefined;
  options: string | undefined = undefined;
  topN: number | undefined = undefined;
  orderBy: string | undefined = undefined;
  clientName: string | undefined = undefined;
  userId: string | undefined = undefined;
  password: string | undefined = undefined;
  version: string | undefined = undefined;
  messageType: string | undefined = undefined;
  timestamp: string | undefined = undefined;
  leasePeriod: string | undefined = undefined;
  length: number | undefined = undefined;
  groupSequence: number | undefined = undefined;
  matches: number | undefined = undefined;
  topicMatches: number | undefined = undefined;
  recordsReturned: number | undefined = undefined;
  recordsInserted: number | undefined = undefined;
  recordsUpdated: number | undefined = undefined;
  recordsDeleted: number | undefined = undefined;
  /** Header keys the decoder does not model, with their values. */
  extra: Record<string, ExtraHeaderValue> | undefined = undefined;
  /** The body, as a view into the received bytes. */
  data: Uint8Array = empty;

  #text: string | undefined = undefined;
  #json: unknown = undefined;
  #parsed = false;

  /** The body decoded as UTF-8 (decoded once, then cached). */
  text(): string {
    if (this.#text === undefined) this.#text = utf8.decode(this.data);
    return this.#text;
  }

  /** The body parsed as JSON (parsed once, then cached). Throws `SyntaxError` for a body that is not JSON. */
  json<T = unknown>(): T {
    if (!this.#parsed) {
      this.#json = JSON.parse(this.text());
      this.#parsed = true;
    }
    return this.#json as T;
  }

  /** The subscription ids this delivery is for: `sids` split, or `sub_id`. */
  get subscriptionIds(): string[] {
    if (this.subIds !== undefined) return this.subIds.split(',');
    return this.subId === undefined ? [] : [this.subId];
  }

  /** Copies every header field (not the body) from another message: how SOW records inherit their batch header. */
  inheritHeader(from: Message): void {
    for (const name of fieldNames) (this as HeaderValues)[name] = from[name] as never;
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
}
