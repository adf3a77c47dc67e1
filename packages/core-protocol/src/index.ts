export * from './bookmarks.js';
export {
  bookmarkOption,
  checkFrameSize,
  checkPublish,
  countOption,
  environmentOption,
  flushAckTypeOption,
  heartbeatOption,
  MAX_TIMEOUT_MS,
  signalOption,
  timeoutOption,
  waitForOption,
} from './client/checks.js';
export type {
  AckOptions,
  ClientOptions,
  CommandWaitOptions,
  ConnectOptions as ClientConnectOptions,
  ExecuteOptions,
  FailedWrite,
  LogonOptions,
  LogonResult,
  PublishOptions,
  SowDeleteTarget,
  SowOptions,
  StateEvent,
  SubscribeOptions,
} from './client/client.js';
export { CLIENT_VERSION, Client, sowDeleteCommand } from './client/client.js';
export type { MessageHandler, StreamOptions } from './client/stream.js';
export { MessageStream } from './client/stream.js';
export type { QueryStats, SubscriptionOwner } from './client/subscription.js';
export { SowQuery, Subscription, statsOf } from './client/subscription.js';
export type { Deadline, Deferred } from './client/waiters.js';
export { deadline, deferred, throwIfAborted } from './client/waiters.js';
export * from './contracts.js';
export type { FrameDecoderOptions, MessageDecoderOptions } from './decoder.js';
export { DEFAULT_MAX_FRAME_SIZE, decodeFrame, FrameDecoder, MessageDecoder, parseHeader } from './decoder.js';
export { checkEncodable } from './encodable.js';
export { encodeCommand, FrameEncoder } from './encoder.js';
export * from './errors.js';
export type { AckStatus, AckType, CommandName, HeaderFieldName, HeaderValues } from './fields.js';
export { AckTypes, CommandNames, headerFields } from './fields.js';
export type { Command, ExtraHeaderValue } from './message.js';
export { Message } from './message.js';
export * from './options.js';
export type { RetryLimits } from './retry-sweeps.js';
export { RetrySweeps } from './retry-sweeps.js';
export type { ServerEntry, ServerRecord } from './server-list.js';
export {
  authenticatorOption,
  describeError,
  describeFailures,
  newServer,
  serverFor,
  serverListOption,
} from './server-list.js';
export type { AmpsUri, UriOptions, UriScheme } from './uri.js';
export { parseUri, redactUri } from './uri.js';
export { WebSocketFrameSplitter } from './websocket-frames.js';
