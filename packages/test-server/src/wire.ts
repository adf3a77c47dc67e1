/** The byte pipe under a client connection: a TCP socket or a WebSocket. */
import type { Socket } from 'node:net';
import type { WebSocket } from 'ws';

export interface WireEvents {
  onData(chunk: Uint8Array): void;
  onClose(): void;
  onDrain(): void;
  /** The WebSocket library refused a message above its payload limit (and closed with 1009). */
  onMessageTooLarge(error: string): void;
}

/**
 * The largest WebSocket message the broker takes. A message may hold a frame and part of the next,
 * so twice `maxFrameBytes`; and at least 64 MiB, so that a frame above `maxFrameBytes` reaches the
 * broker, which closes with a reason naming the limit (the WebSocket library's own refusal, for a
 * message above this, closes with code 1009 and no reason).
 */
export function webSocketMaxPayload(maxFrameBytes: number): number {
  return Math.max(maxFrameBytes * 2 + 1024, 64 * 1024 * 1024);
}

/** How the broker ends a connection it refuses: a WebSocket close code and reason (TCP has neither). */
export interface CloseReason {
  readonly code: number;
  /** At most 123 bytes of UTF-8, as a WebSocket close frame allows. */
  readonly reason: string;
}

export interface Wire {
  readonly kind: 'tcp' | 'ws';
  readonly remote: string;
  /** Bytes accepted but not yet handed to the OS. */
  readonly buffered: number;
  /** Whether a 'drain' (`onDrain`) is coming: a write found the socket's buffer full. */
  readonly awaitingDrain: boolean;
  /** Writes one or more whole frames. */
  write(frames: Uint8Array): void;
  pause(): void;
  resume(): void;
  /**
   * Closes after the bytes already written have gone out: a TCP FIN, or a WebSocket close frame
   * (with `close`'s code and reason). Input is still read, and dropped, until the client closes,
   * so that unread bytes do not turn the close into a reset.
   */
  end(close?: CloseReason): void;
  destroy(): void;
}

export function tcpWire(socket: Socket, events: WireEvents): Wire {
  socket.setNoDelay(true);
  socket.on('data', (chunk) => events.onData(chunk));
  socket.on('drain', () => events.onDrain());
  socket.on('error', () => {}); // resets and the like: 'close' follows
  socket.on('close', () => events.onClose());
  return {
    kind: 'tcp',
    remote: `${socket.remoteAddress}:${socket.remotePort}`,
    get buffered() {
      return socket.writableLength;
    },
    get awaitingDrain() {
      return socket.writableNeedDrain;
    },
    write: (frames) => {
      socket.write(frames);
    },
    pause: () => socket.pause(),
    resume: () => socket.resume(),
    end: () => socket.end(),
    destroy: () => socket.destroy(),
  };
}

/**
 * A WebSocket: received binary (or text) messages are one byte stream of frames. Output is one frame
 * per message, or (`batch`) every frame of a tick in one message.
 */
export function wsWire(ws: WebSocket, remote: string, batch: boolean, events: WireEvents): Wire {
  ws.binaryType = 'nodebuffer';
  ws.on('message', (data) => {
    if (Array.isArray(data)) for (const part of data) events.onData(part);
    else events.onData(data instanceof ArrayBuffer ? new Uint8Array(data) : data);
  });
  ws.on('error', (error: Error & { code?: string }) => {
    if (error.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') events.onMessageTooLarge(error.message);
  });
  ws.on('close', () => events.onClose());
  const socket = (ws as unknown as { _socket?: Socket })._socket;
  socket?.on('drain', () => events.onDrain());
  return {
    kind: 'ws',
    remote,
    get buffered() {
      return ws.bufferedAmount;
    },
    get awaitingDrain() {
      return socket?.writableNeedDrain ?? false;
    },
    write: (frames) => {
      if (ws.readyState !== ws.OPEN) return;
      if (batch) {
        ws.send(frames, { binary: true });
        return;
      }
      let at = 0;
      while (at + 4 <= frames.length) {
        const length =
          (((frames[at] as number) << 24) >>> 0) +
          ((frames[at + 1] as number) << 16) +
          ((frames[at + 2] as number) << 8) +
          (frames[at + 3] as number);
        ws.send(frames.subarray(at, at + 4 + length), { binary: true });
        at += 4 + length;
      }
    },
    pause: () => ws.pause(),
    resume: () => ws.resume(),
    end: (close) => (close ? ws.close(close.code, close.reason) : ws.close()),
    destroy: () => ws.terminate(),
  };
}
