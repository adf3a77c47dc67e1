/** The `ws` package for the benchmarks, typed by hand: apps/bench has `ws` but not `@types/ws`. */
import type { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';

export interface WebSocket extends EventEmitter {
  readonly bufferedAmount: number;
  binaryType: string;
  send(data: Uint8Array, callback?: (error?: Error) => void): void;
  close(): void;
  terminate(): void;
}

export interface WebSocketServer extends EventEmitter {
  address(): AddressInfo | string | null;
  close(callback?: () => void): void;
}

export const ws = createRequire(import.meta.url)('ws') as {
  WebSocket: new (url: string, options?: { perMessageDeflate?: boolean }) => WebSocket;
  WebSocketServer: new (options: { host: string; port: number; perMessageDeflate?: boolean }) => WebSocketServer;
};
