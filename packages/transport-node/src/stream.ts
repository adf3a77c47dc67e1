import * as net from 'node:net';
import * as tls from 'node:tls';
import { type AmpsUri, ConnectionError, type ConnectionHandlers } from '@amps-ts/core-protocol';
import { type Attempt, runAttempt } from './attempt.js';
import { BaseConnection, type ConnectionSettings, type NodeConnection } from './connection.js';
import { cannotConnect } from './errors.js';
import type { ResolvedOptions } from './options.js';
import { applyTcpOptions, describeSocket, dialOptions, endpoint, serverNameOptions } from './socket-options.js';

/** A TCP, TLS or Unix socket carrying the AMPS byte stream. */
export class StreamConnection extends BaseConnection {
  readonly #socket: net.Socket;
  #inTick = false;
  #corked = false;
  #error: Error | undefined;
  #peerEnded = false;
  #pendingData: ReturnType<typeof setImmediate> | undefined;
  #paused = false;

  /** `leftover`: AMPS bytes that arrived with the HTTP preflight response. */
  constructor(socket: net.Socket, handlers: ConnectionHandlers, settings: ConnectionSettings, leftover?: Uint8Array) {
    super(handlers, settings);
    this.#socket = socket;
    socket.on('data', (chunk: Buffer) => this.received(chunk));
    socket.on('error', (error) => {
      // After the server's end, a failed write (EPIPE) or the reset answering it is only the
      // consequence: the reason for the close is still that the server closed the connection.
      if (!this.#peerEnded) this.#error ??= error;
    });
    // The server has finished sending, and Node ends our side once what is buffered is written:
    // a server that never reads it must not hold the socket open.
    socket.on('end', () => {
      this.#peerEnded = true;
      this.closeStarted();
    });
    socket.on('close', () => {
      clearImmediate(this.#pendingData);
      this.finished(this.#error && this.lost(this.#error));
    });
    if (leftover && leftover.length > 0) {
      // Deliver after connect() has returned the connection, and before anything newer.
      this.#pendingData = setImmediate(() => {
        this.received(leftover);
        if (!this.#paused) socket.resume();
      });
    } else {
      socket.resume();
    }
  }

  /** Stops reading: TCP flow control then pushes back on the server. */
  pause(): void {
    this.#paused = true;
    this.#socket.pause();
  }

  resume(): void {
    this.#paused = false;
    this.#socket.resume();
  }

  get bufferedAmount(): number {
    return this.#socket.writableLength;
  }

  protected write(bytes: Uint8Array): void {
    const socket = this.#socket;
    // The first send of a tick goes straight out; the rest of the tick's sends are corked and
    // leave together in one writev when the tick ends.
    if (!this.#inTick) {
      this.#inTick = true;
      queueMicrotask(this.#endTick);
    } else if (!this.#corked) {
      this.#corked = true;
      socket.cork();
    }
    // Only a write that may leave more than the low-water mark buffered needs to report its
    // completion: whenever whenDrained() waits, the latest write is such a write.
    if (socket.writableLength + bytes.length > this.lowWaterMark) socket.write(bytes, this.#onWritten);
    else socket.write(bytes);
  }

  protected end(): void {
    this.#endTick();
    this.#socket.end();
  }

  protected destroy(): void {
    this.#socket.destroy();
  }

  readonly #endTick = (): void => {
    this.#inTick = false;
    if (!this.#corked) return;
    this.#corked = false;
    this.#socket.uncork();
  };

  readonly #onWritten = (error?: Error | null): void => {
    // A failed write also emits 'error' then 'close' on the socket.
    if (!error) this.flushed();
  };
}

/** Opens the socket for `tcp://`, `tcps://` or `unix://`. */
function openSocket(uri: AmpsUri, options: ResolvedOptions): net.Socket {
  if (uri.scheme === 'unix') {
    return (options.netConnect ?? net.connect)({ path: uri.options.path as string, allowHalfOpen: false });
  }
  const target = { host: uri.host, port: uri.port, ...dialOptions(uri) };
  if (uri.scheme === 'tcps') {
    const t = options.tls;
    const secure: tls.ConnectionOptions = {
      ...target,
      minVersion: t.minVersion ?? 'TLSv1.2',
      rejectUnauthorized: t.rejectUnauthorized ?? true,
    };
    if (t.ca !== undefined) secure.ca = t.ca;
    if (t.cert !== undefined) secure.cert = t.cert;
    if (t.key !== undefined) secure.key = t.key;
    if (t.passphrase !== undefined) secure.passphrase = t.passphrase;
    Object.assign(secure, serverNameOptions(t.servername ?? uri.host));
    return (options.tlsConnect ?? tls.connect)(secure);
  }
  return (options.netConnect ?? net.connect)(target);
}

/** Connects `tcp://`, `tcps://` or `unix://`, with the HTTP preflight when the URI asks for it. */
export function connectStream(
  uri: AmpsUri,
  handlers: ConnectionHandlers,
  options: ResolvedOptions,
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<NodeConnection> {
  return runAttempt<NodeConnection>(uri, timeoutMs, signal, (attempt) => {
    const socket = openSocket(uri, options);
    const onError = (error: Error) => attempt.reject(cannotConnect(uri, error));
    const onClose = () =>
      attempt.reject(cannotConnect(uri, new Error('the server closed the connection while connecting')));
    socket.on('error', onError);
    socket.on('close', onClose);
    socket.once(uri.scheme === 'tcps' ? 'secureConnect' : 'connect', () => {
      if (uri.scheme !== 'unix') applyTcpOptions(socket, uri);
      if (uri.options.http_preflight) preflight(socket, uri, options, attempt, ready);
      else ready();
    });
    function ready(leftover?: Uint8Array) {
      if (attempt.settled) return;
      socket.pause();
      const connection = new StreamConnection(
        socket,
        handlers,
        {
          uri,
          description: describeSocket(uri.scheme, socket, uri),
          highWaterMark: options.highWaterMark,
          lowWaterMark: options.lowWaterMark,
          closeTimeoutMs: options.closeTimeoutMs,
        },
        leftover,
      );
      socket.off('error', onError);
      socket.off('close', onClose);
      attempt.resolve(connection);
    }
    return () => socket.destroy();
  });
}

/** Bounds the preflight response we are willing to buffer. */
const MAX_PREFLIGHT_RESPONSE = 16 * 1024;
const headerEnd = Buffer.from('\r\n\r\n');

/**
 * AMPS HTTP preflight: `GET /amps HTTP/1.1`, `Host`, the configured headers, then any `HTTP/1.x`
 * response below 400 lets the AMPS byte stream begin. Bytes after the response are AMPS bytes.
 */
function preflight(
  socket: net.Socket,
  uri: AmpsUri,
  options: ResolvedOptions,
  attempt: Attempt<NodeConnection>,
  ready: (leftover: Uint8Array) => void,
): void {
  const host = uri.scheme === 'unix' ? 'localhost' : endpoint(uri.host, uri.port);
  const lines = ['GET /amps HTTP/1.1', `Host: ${host}`];
  for (const [name, value] of Object.entries(options.preflightHeaders)) lines.push(`${name}: ${value}`);
  socket.write(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');

  let received: Buffer = Buffer.alloc(0);
  const fail = (why: string) => attempt.reject(new ConnectionError(`cannot connect to ${uri.redacted}: ${why}`));
  const onData = (chunk: Buffer) => {
    received = received.length === 0 ? chunk : Buffer.concat([received, chunk]);
    const end = received.indexOf(headerEnd);
    if (end < 0) {
      if (received.length > MAX_PREFLIGHT_RESPONSE) fail('the HTTP preflight response is too large');
      return;
    }
    socket.off('data', onData);
    socket.pause();
    const lineEnd = received.indexOf('\r\n');
    const statusLine = received.subarray(0, lineEnd).toString('latin1');
    const status = /^HTTP\/1\.\d (\d{3})/.exec(statusLine)?.[1];
    if (status === undefined) {
      fail(`expected an HTTP/1.x response to the HTTP preflight, got '${statusLine.slice(0, 80)}'`);
    } else if (Number(status) >= 400) {
      fail(`the HTTP preflight was refused: '${statusLine.slice(0, 200)}'`);
    } else {
      ready(received.subarray(end + headerEnd.length));
    }
  };
  socket.on('data', onData);
}
