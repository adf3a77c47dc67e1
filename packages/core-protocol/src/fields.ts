/**
 * The AMPS header fields: one table drives both the encoder and the decoder.
 *
 * `key` is what we write (the short form AMPS servers and the official clients use on the wire);
 * `aliases` are the other spellings the decoder accepts (the long names of the protocol reference).
 */

export const CommandNames = [
  'ack',
  'delta_publish',
  'delta_subscribe',
  'flush',
  'group_begin',
  'group_end',
  'heartbeat',
  'logon',
  'oof',
  'publish',
  'sow',
  'sow_and_delta_subscribe',
  'sow_and_subscribe',
  'sow_delete',
  'start_timer',
  'stop_timer',
  'subscribe',
  'unsubscribe',
] as const;

/** A command name. `publish` travels as `p` on the wire; the decoder maps `p` back to `publish`. */
export type CommandName = (typeof CommandNames)[number];

export const AckTypes = ['received', 'parsed', 'processed', 'persisted', 'completed', 'stats'] as const;
export type AckType = (typeof AckTypes)[number];

export type AckStatus = 'success' | 'failure' | 'retry';

interface FieldSpec {
  /** The property on `Command` and `Message`. */
  readonly name: string;
  readonly key: string;
  readonly aliases?: readonly string[];
  readonly type: 'string' | 'number';
  /**
   * Values that repeat from message to message (topics, subscription ids): the decoder keeps
   * recent ones in a small cache and hands out the same string instead of a new copy.
   */
  readonly repeats?: boolean;
}

/** The header fields. The encoder writes `c` first, then the fields a command has, in its property order. */
export const headerFields = [
  { name: 'command', key: 'c', aliases: ['cmd'], type: 'string' },
  { name: 'commandId', key: 'cid', aliases: ['cmd_id'], type: 'string' },
  { name: 'topic', key: 't', aliases: ['topic'], type: 'string', repeats: true },
  { name: 'ackType', key: 'a', aliases: ['ack_type'], type: 'string', repeats: true },
  { name: 'status', key: 'status', type: 'string', repeats: true },
  { name: 'reason', key: 'reason', type: 'string', repeats: true },
  { name: 'subId', key: 'sub_id', type: 'string', repeats: true },
  { name: 'subIds', key: 'sids', type: 'string', repeats: true },
  { name: 'queryId', key: 'query_id', type: 'string', repeats: true },
  { name: 'sequence', key: 's', aliases: ['seq'], type: 'number' },
  { name: 'bookmark', key: 'bm', aliases: ['bookmark'], type: 'string' },
  { name: 'batchSize', key: 'bs', aliases: ['batch_size'], type: 'number' },
  { name: 'correlationId', key: 'x', aliases: ['correlation_id'], type: 'string' },
  { name: 'expiration', key: 'e', aliases: ['expiration'], type: 'number' },
  { name: 'sowKey', key: 'k', aliases: ['sow_key'], type: 'string' },
  { name: 'sowKeys', key: 'sow_keys', type: 'string' },
  { name: 'filter', key: 'filter', aliases: ['f'], type: 'string', repeats: true },
  { name: 'options', key: 'opts', aliases: ['o'], type: 'string', repeats: true },
  { name: 'topN', key: 'top_n', type: 'number' },
  { name: 'orderBy', key: 'orderby', aliases: ['order_by'], type: 'string', repeats: true },
  { name: 'clientName', key: 'client_name', type: 'string', repeats: true },
  { name: 'userId', key: 'user_id', type: 'string', repeats: true },
  { name: 'password', key: 'pw', aliases: ['password'], type: 'string' },
  { name: 'version', key: 'version', aliases: ['v'], type: 'string', repeats: true },
  { name: 'messageType', key: 'mt', aliases: ['message_type'], type: 'string', repeats: true },
  { name: 'timestamp', key: 'ts', aliases: ['timestamp'], type: 'string' },
  { name: 'leasePeriod', key: 'lp', aliases: ['lease_period', 'leaseperiod'], type: 'string' },
  { name: 'length', key: 'l', aliases: ['msg_len'], type: 'number' },
  { name: 'groupSequence', key: 'gseq', aliases: ['group_sequence_number'], type: 'number' },
  { name: 'matches', key: 'matches', type: 'number' },
  { name: 'topicMatches', key: 'topic_matches', type: 'number' },
  { name: 'recordsReturned', key: 'records_returned', type: 'number' },
  { name: 'recordsInserted', key: 'records_inserted', type: 'number' },
  { name: 'recordsUpdated', key: 'records_updated', type: 'number' },
  { name: 'recordsDeleted', key: 'records_deleted', type: 'number' },
] as const satisfies readonly FieldSpec[];

type Fields = (typeof headerFields)[number];
type TypeOf<F extends Fields> = F['type'] extends 'number' ? number : string;

/** Every header field as an optional property: the shape shared by `Command` and `Message`. */
export type HeaderValues = {
  [F in Fields as F['name']]?: F['name'] extends 'command'
    ? CommandName
    : F['name'] extends 'status'
      ? AckStatus
      : TypeOf<F>;
};

export type HeaderFieldName = keyof HeaderValues;
