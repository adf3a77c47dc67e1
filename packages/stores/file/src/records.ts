/**
 * The publish store's file: a magic header, then records appended one after another, each
 * `[u32 payload length][u32 CRC-32 of the payload][payload]` (big-endian). A crash can leave
 * the last record half written; the CRC tells a torn tail (dropped) from damage (an error).
 */
import type { Command } from '@amps-ts/core-protocol';

export const MAGIC = 'AMPSPS01';
export const MAGIC_BYTES = Buffer.from(MAGIC, 'latin1');
const FRAME_BYTES = 8;

/** What a record says. */
export type StoreRecord =
  /** A command was stored, with its sequence. */
  | { kind: 'stored'; command: Command }
  /** The server persisted everything up to `sequence`. */
  | { kind: 'persisted'; sequence: number }
  /** The server refused the command with this sequence: never to be replayed. */
  | { kind: 'refused'; sequence: number }
  /** The highest sequence given so far (written by a compaction, which may drop that command). */
  | { kind: 'lastSequence'; sequence: number };

const KIND_STORED = 0x53; // S
const KIND_PERSISTED = 0x50; // P
const KIND_REFUSED = 0x58; // X
const KIND_LAST_SEQUENCE = 0x4c; // L
const BODY_NONE = 0;
const BODY_STRING = 1;
const BODY_BYTES = 2;

const crcTable = (() => {
  const table = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c;
  }
  return table;
})();

/** CRC-32 (IEEE), as zlib computes it. */
export function crc32(bytes: Uint8Array, start = 0, end = bytes.length): number {
  let crc = -1;
  for (let i = start; i < end; i++) crc = (crc >>> 8) ^ (crcTable[(crc ^ (bytes[i] as number)) & 0xff] as number);
  return (crc ^ -1) >>> 0;
}

/** One record, framed and ready to append. */
export function encodeRecord(record: StoreRecord): Buffer {
  if (record.kind !== 'stored') {
    const frame = Buffer.allocUnsafe(FRAME_BYTES + 9);
    frame[FRAME_BYTES] =
      record.kind === 'persisted' ? KIND_PERSISTED : record.kind === 'refused' ? KIND_REFUSED : KIND_LAST_SEQUENCE;
    frame.writeDoubleBE(record.sequence, FRAME_BYTES + 1);
    return seal(frame);
  }
  // The header as JSON; `commandId` is this connection's, and means nothing to the next run.
  const { data, commandId: _, ...header } = record.command;
  const json = JSON.stringify(header);
  const jsonBytes = Buffer.byteLength(json);
  const bodyKind = data === undefined ? BODY_NONE : typeof data === 'string' ? BODY_STRING : BODY_BYTES;
  const bodyBytes = data === undefined ? 0 : typeof data === 'string' ? Buffer.byteLength(data) : data.length;
  const frame = Buffer.allocUnsafe(FRAME_BYTES + 6 + jsonBytes + bodyBytes);
  let at = FRAME_BYTES;
  frame[at++] = KIND_STORED;
  frame[at++] = bodyKind;
  frame.writeUInt32BE(jsonBytes, at);
  at += 4;
  at += frame.write(json, at);
  if (typeof data === 'string') frame.write(data, at);
  else if (data !== undefined) frame.set(data, at);
  return seal(frame);
}

function seal(frame: Buffer): Buffer {
  frame.writeUInt32BE(frame.length - FRAME_BYTES, 0);
  frame.writeUInt32BE(crc32(frame, FRAME_BYTES), 4);
  return frame;
}

/** Why a file could not be read: `torn` is a half-written last record, anything else is damage. */
export type ReadOutcome = { records: StoreRecord[]; validBytes: number; damage?: string };

/** Reads the records after the header, stopping at a torn tail or at damage. */
export function decodeRecords(file: Buffer): ReadOutcome {
  const records: StoreRecord[] = [];
  let at = MAGIC_BYTES.length;
  while (at < file.length) {
    if (at + FRAME_BYTES > file.length) break; // torn: the frame itself is cut
    const length = file.readUInt32BE(at);
    const end = at + FRAME_BYTES + length;
    if (end > file.length) break; // torn: the payload is cut
    if (crc32(file, at + FRAME_BYTES, end) !== file.readUInt32BE(at + 4)) {
      // A crash can only tear the last record; a bad one with more after it is damage.
      if (end === file.length) break;
      return { records, validBytes: at, damage: `a record fails its checksum at byte ${at}` };
    }
    const record = decodePayload(file, at + FRAME_BYTES, end);
    if (typeof record === 'string') return { records, validBytes: at, damage: `${record} at byte ${at}` };
    records.push(record);
    at = end;
  }
  return { records, validBytes: at };
}

function decodePayload(file: Buffer, start: number, end: number): StoreRecord | string {
  const kind = file[start];
  if (kind === KIND_PERSISTED || kind === KIND_REFUSED || kind === KIND_LAST_SEQUENCE) {
    if (end - start !== 9) return 'a sequence record of the wrong length';
    const sequence = file.readDoubleBE(start + 1);
    if (!Number.isSafeInteger(sequence) || sequence < 0) return 'a record with a bad sequence';
    return {
      kind: kind === KIND_PERSISTED ? 'persisted' : kind === KIND_REFUSED ? 'refused' : 'lastSequence',
      sequence,
    };
  }
  if (kind !== KIND_STORED || end - start < 6) return 'a record of an unknown kind';
  const bodyKind = file[start + 1];
  const jsonEnd = start + 6 + file.readUInt32BE(start + 2);
  if (jsonEnd > end || (bodyKind !== BODY_NONE && bodyKind !== BODY_STRING && bodyKind !== BODY_BYTES)) {
    return 'a malformed command record';
  }
  let command: Command;
  try {
    command = JSON.parse(file.toString('utf8', start + 6, jsonEnd)) as Command;
  } catch {
    return 'a command record whose header is not JSON';
  }
  if (typeof command !== 'object' || command === null || !Number.isSafeInteger(command.sequence)) {
    return 'a command record without a sequence';
  }
  if (bodyKind === BODY_STRING) command.data = file.toString('utf8', jsonEnd, end);
  else if (bodyKind === BODY_BYTES) command.data = new Uint8Array(file.subarray(jsonEnd, end));
  return { kind: 'stored', command };
}
