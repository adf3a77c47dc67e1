import type { IncomingMessage } from 'node:http';
import type * as net from 'node:net';
import type * as tls from 'node:tls';
import {
  type AmpsUri,
  ConnectionError,
  type ConnectionHandlers,
  DEFAULT_MAX_FRAME_SIZE,
  DisconnectedError,
  WebSocketFrameSplitter,
} from '@amps-ts/core-protocol';
import { type ClientOptions, WebSocket } from 'ws';
import { runAttempt } from './attempt.js';
import { BaseConnection, type ConnectionSettings, type NodeConnection } from './connection.js';
import { cannotConnect } from './errors.js';
import type { ResolvedOptions } from './options.js';
import { applyTcpOptions, describeSocket, dialOptions, endpoint, serverNameOptions } from './socket-options.js';

const binary = { binary: true };
/** The most a client frame adds to its payload: 2 bytes, an 8-byte length and a 4-byte mask. */
const MAX_FRAME_OVERHEAD = 14;

/** A WebSocket carrying AMPS frames: one frame per binary message out; messages joined into one stream in. */
export class WebSocketConnection extends BaseConnection {
  readonly #ws: WebSocket;
  readonly #splitter = new WebSocketFrameSplitter();
  readonly #compressed: boolean;
  #error: Error | undefined;

  /** `socket`: the WebSocket's own socket, when known. */
  constructor(
    ws: WebSocket,
    socket: net.Socket | undefined,
    handlers: ConnectionHandlers,
    settings: ConnectionSettings,
  ) {
    super(handlers, settings);
    this.#ws = ws;
    this.#compressed = ws.extensions?.includes('permessage-deflate') === true;
    // ws ends its socket when the server closes the WebSocket or breaks the protocol, then waits
    // 30 s for the server to close TCP: a server that never does gets closeTimeoutMs, as for close().
    socket?.once('finish', () => this.closeStarted());
    // ws hands over a message only once it is whole: a large one on a slow link may take longer
    // than a heartbeat timeout, while bytes keep coming.
    socket?.on('data', () => this.active());
    ws.binaryType = 'nodebuffer';
    ws.on('message', (data: Buffer | ArrayBuffer | Buffer[]) => {
      if (Array.isArray(data)) for (const part of data) this.received(part);
      else this.received(data instanceof ArrayBuffer ? new Uint8Array(data) : data);
    });
    ws.on('error', (error) => {
      this.#error ??= error;
    });
    ws.on('close', (code, reason) => this.finished(this.#closeError(code, reason.toString())));
  }

  get bufferedAmount(): number {
    return this.#ws.bufferedAmount + this.#splitter.pendingBytes;
  }

  // A frame held back leaves only once the caller sends the rest of it: waiting for it would never end.
  protected override get drainingAmount(): number {
    return this.#ws.bufferedAmount;
  }

  /** Stops reading: TCP flow control then pushes back on the server. */
  pause(): void {
    this.#ws.pause();
  }

  resume(): void {
    this.#ws.resume();
  }

  protected write(bytes: Uint8Array): void {
    this.#splitter.split(bytes, this.#sendFrame);
  }

  protected end(): void {
    this.#ws.close(1000);
  }

  protected destroy(): void {
    this.#ws.terminate();
  }

  readonly #sendFrame = (frame: Uint8Array): void => {
    // As for TCP: only a send that may leave more than the low-water mark buffered reports back.
    // ws buffers its frame header and mask too: a send that fits only without them must report.
    // A compressed frame may come out larger than it went in: each of those reports.
    if (this.#compressed || this.#ws.bufferedAmount + frame.length + MAX_FRAME_OVERHEAD > this.lowWaterMark) {
      this.#ws.send(frame, binary, this.#onWritten);
    } else {
      this.#ws.send(frame, binary);
    }
  };

  readonly #onWritten = (error?: Error | null): void => {
    if (!error) this.flushed();
  };

  #closeError(code: number, reason: string): Error {
    if (this.#error) return this.lost(this.#error);
    const why = `code ${code}${reason ? `, ${reason}` : ''}`;
    // 1006: no close frame, the socket just went away (reset, network loss).
    if (code === 1006) return new ConnectionError(`connection to ${this.redactedUri} lost (WebSocket ${why})`);
    return new DisconnectedError(`${this.redactedUri} closed the connection (WebSocket ${why})`);
  }
}

/** The URL the WebSocket dials: never the userinfo (the password goes in the logon), nor the client-side query options. */
export function webSocketUrl(uri: AmpsUri): string {
  return `${uri.scheme}://${endpoint(uri.host, uri.port)}${uri.path}`;
}

/** Connects `ws://` or `wss://`. */
export function connectWebSocket(
  uri: AmpsUri,
  handlers: ConnectionHandlers,
  options: ResolvedOptions,
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<NodeConnection> {
  const wsOptions: ClientOptions & { servername?: string } = {
    // The frame decoder's own limit; ws's default (100 MiB) is below what AMPS may send.
    maxPayload: DEFAULT_MAX_FRAME_SIZE + 4,
    // Compression costs CPU and latency on every message; opt in with webSocket.perMessageDeflate.
    perMessageDeflate: false,
    ...options.webSocket,
    ...dialOptions(uri),
    headers: { ...options.webSocket.headers, ...options.preflightHeaders },
    // Our attempt timer covers the handshake.
    handshakeTimeout: undefined,
  };
  if (uri.scheme === 'wss') {
    const t = options.tls;
    wsOptions.rejectUnauthorized = t.rejectUnauthorized ?? true;
    wsOptions.minVersion = t.minVersion ?? 'TLSv1.2';
    if (t.ca !== undefined) wsOptions.ca = t.ca;
    if (t.cert !== undefined) wsOptions.cert = t.cert;
    if (t.key !== undefined) wsOptions.key = t.key;
    if (t.passphrase !== undefined) wsOptions.passphrase = t.passphrase;
    // ws passes its checkServerIdentity to tls.connect, which calls it as Node documents (ws types it loosely).
    const check = options.webSocket.checkServerIdentity as tls.ConnectionOptions['checkServerIdentity'];
    if (t.servername !== undefined) Object.assign(wsOptions, serverNameOptions(t.servername, check));
  }
  const WebSocketClass = options.WebSocket ?? WebSocket;

  return runAttempt<NodeConnection>(uri, timeoutMs, signal, (attempt) => {
    const ws = new WebSocketClass(webSocketUrl(uri), wsOptions);
    let socket: net.Socket | undefined;
    const onUpgrade = (response: IncomingMessage) => {
      socket = response.socket;
    };
    const onError = (error: Error) => attempt.reject(cannotConnect(uri, error));
    const onClose = (code: number) =>
      attempt.reject(cannotConnect(uri, new Error(`the WebSocket closed while connecting (code ${code})`)));
    ws.on('upgrade', onUpgrade);
    ws.on('error', onError);
    ws.on('close', onClose);
    ws.once('open', () => {
      if (attempt.settled) return;
      // After ws's own setNoDelay(), so the URI's choice wins.
      if (socket) applyTcpOptions(socket, uri);
      const connection = new WebSocketConnection(ws, socket, handlers, {
        uri,
        description: socket ? describeSocket(uri.scheme, socket, uri, uri.path) : `${uri.scheme} ${webSocketUrl(uri)}`,
        highWaterMark: options.highWaterMark,
        lowWaterMark: options.lowWaterMark,
        closeTimeoutMs: options.closeTimeoutMs,
      });
      ws.off('upgrade', onUpgrade);
      ws.off('error', onError);
      ws.off('close', onClose);
      attempt.resolve(connection);
    });
    // Keeps an 'error' listener until ws has closed: ws emits one when an unfinished handshake is aborted.
    return () => ws.terminate();
  });
}
