import {
  type AmpsUri,
  type ConnectionHandlers,
  type ConnectOptions,
  InvalidOptionsError,
  InvalidUriError,
  parseUri,
  type Transport,
  timeoutOption,
  type UriScheme,
} from '@amps-ts/core-protocol';
import type { NodeConnection } from './connection.js';
import { type NodeTransportOptions, resolveOptions } from './options.js';
import { warnUnsupported } from './socket-options.js';
import { connectStream } from './stream.js';
import { connectWebSocket } from './websocket.js';

/** The Node.js transport: `connect` hands back a {@link NodeConnection}. */
export interface NodeTransport extends Transport {
  /** Opens a connection. Also takes the URI as a string. */
  connect(uri: AmpsUri | string, handlers: ConnectionHandlers, options?: ConnectOptions): Promise<NodeConnection>;
}

const schemes: readonly UriScheme[] = ['tcp', 'tcps', 'ws', 'wss', 'unix'];

/**
 * The Node.js transport for `tcp://`, `tcps://`, `ws://`, `wss://` and `unix://`. Options are
 * checked here: mistakes throw an `InvalidOptionsError` at once.
 */
export function nodeTransport(options?: NodeTransportOptions): NodeTransport {
  const resolved = resolveOptions(options);

  async function connect(
    target: AmpsUri | string,
    handlers: ConnectionHandlers,
    connectOptions: ConnectOptions = {},
  ): Promise<NodeConnection> {
    const uri = typeof target === 'string' ? parseUri(target) : target;
    if (typeof handlers?.onData !== 'function' || typeof handlers.onClose !== 'function') {
      throw new InvalidOptionsError('connect: handlers must have onData and onClose functions');
    }
    const timeoutMs = connectOptions.timeoutMs ?? resolved.connectTimeoutMs;
    timeoutOption(timeoutMs, 'connect: timeoutMs', 1);
    if (!schemes.includes(uri.scheme)) {
      throw new InvalidUriError(`cannot connect to ${uri.redacted}: unsupported scheme '${uri.scheme}'`);
    }
    if (uri.options.compression !== undefined) {
      throw new InvalidUriError(
        `cannot connect to ${uri.redacted}: compression=${uri.options.compression} is not supported by @amps-ts/transport-node`,
      );
    }
    warnUnsupported(uri, resolved.logger);
    const dial = uri.scheme === 'ws' || uri.scheme === 'wss' ? connectWebSocket : connectStream;
    const connection = await dial(uri, handlers, resolved, timeoutMs, connectOptions.signal);
    resolved.logger?.debug?.('connected', { uri: uri.redacted, connection: connection.description });
    return connection;
  }

  return { schemes, connect };
}
