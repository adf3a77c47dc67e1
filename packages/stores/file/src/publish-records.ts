/** The publish store's records: the payloads of its journal's frames. */
import type { Command } from '@amps-ts/core-protocol';

export const PUBLISH_MAGIC = 'AMPSPS01';

/** What a record says. */
export type PublishRecord =
  /** A command was stored, with its sequence. */
  | { kind: 'stored'; command: Command }
  /** The server persisted everything up to `sequence`. */
  | { kind: 'persisted'; sequence: number }
  /** The server refused the command with this sequence: never to be replayed. */
  | { kind: 'refused'; sequence: number }
  /** The highest sequence given so far (written by a rewrite, which may drop that command). */
  | { kind: 'lastSequence'; sequence: number }
  /**
   * No logon has numbered this file's commands against a server's yet (written at the start of a
   * new file, dropped by the rewrite at the first logon): nothing in it was sent, and a restart
   * may renumber it.
   */
  | { kind: 'unsynced' };

const KIND_STORED = 0x53; // S
const KIND_PERSISTED = 0x50; // P
const KIND_REFUSED = 0x58; // X
const KIND_LAST_SEQUENCE = 0x4c; // L
const KIND_UNSYNCED = 0x4e; // N
const BODY_NONE = 0;
const BODY_STRING = 1;
const BODY_BYTES = 2;

export function encodePublishRecord(record: PublishRecord): Buffer {
  if (record.kind === 'unsynced') return Buffer.of(KIND_UNSYNCED);
  if (record.kind !== 'stored') {
    const payload = Buffer.allocUnsafe(9);
    payload[0] =
      record.kind === 'persisted' ? KIND_PERSISTED : record.kind === 'refused' ? KIND_REFUSED : KIND_LAST_SEQUENCE;
    payload.writeDoubleBE(record.sequence, 1);
    return payload;
  }
  // The header as JSON; `commandId` is this connection's, and means nothing to the next run.
  const { data, commandId: _, ...header } = record.command;
  const json = JSON.stringify(header);
  const jsonBytes = Buffer.byteLength(json);
  const bodyKind = data === undefined ? BODY_NONE : typeof data === 'string' ? BODY_STRING : BODY_BYTES;
  const bodyBytes = data === undefined ? 0 : typeof data === 'string' ? Buffer.byteLength(data) : data.length;
  const payload = Buffer.allocUnsafe(6 + jsonBytes + bodyBytes);
  payload[0] = KIND_STORED;
  payload[1] = bodyKind;
  payload.writeUInt32BE(jsonBytes, 2);
  const at = 6 + payload.write(json, 6);
  if (typeof data === 'string') payload.write(data, at);
  else if (data !== undefined) payload.set(data, at);
  return payload;
}

/** The record, or what is wrong with it. */
export function decodePublishRecord(payload: Buffer): PublishRecord | string {
  const kind = payload[0];
  if (kind === KIND_UNSYNCED && payload.length === 1) return { kind: 'unsynced' };
  if (kind === KIND_PERSISTED || kind === KIND_REFUSED || kind === KIND_LAST_SEQUENCE) {
    if (payload.length !== 9) return 'a sequence record of the wrong length';
    const sequence = payload.readDoubleBE(1);
    if (!Number.isSafeInteger(sequence) || sequence < 0) return 'a record with a bad sequence';
    return {
      kind: kind === KIND_PERSISTED ? 'persisted' : kind === KIND_REFUSED ? 'refused' : 'lastSequence',
      sequence,
    };
  }
  if (kind !== KIND_STORED || payload.length < 6) return 'a record of an unknown kind';
  const bodyKind = payload[1];
  const jsonEnd = 6 + payload.readUInt32BE(2);
  if (jsonEnd > payload.length || (bodyKind !== BODY_NONE && bodyKind !== BODY_STRING && bodyKind !== BODY_BYTES)) {
    return 'a malformed command record';
  }
  let command: Command;
  try {
    command = JSON.parse(payload.toString('utf8', 6, jsonEnd)) as Command;
  } catch {
    return 'a command record whose header is not JSON';
  }
  if (typeof command !== 'object' || command === null || !Number.isSafeInteger(command.sequence)) {
    return 'a command record without a sequence';
  }
  if (bodyKind === BODY_STRING) command.data = payload.toString('utf8', jsonEnd);
  else if (bodyKind === BODY_BYTES) command.data = new Uint8Array(payload.subarray(jsonEnd));
  return { kind: 'stored', command };
}
