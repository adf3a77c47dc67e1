import { once } from 'node:events';
import * as net from 'node:net';
import type { ConnectionHandlers } from '@amps-ts/core-protocol';
import { generate } from 'selfsigned';
import { afterEach, beforeEach, expect } from 'vitest';

/** One length-prefixed AMPS frame holding `payload`. */
export function frame(payload: string | Uint8Array): Uint8Array {
  const body = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const out = Buffer.alloc(4 + body.length);
  out.writeUInt32BE(body.length, 0);
  out.set(body, 4);
  return out;
}

export function concat(...parts: Uint8Array[]): Buffer {
  return Buffer.concat(parts);
}

/** The error a promise rejects with; fails the test if it resolves. */
export function failure(promise: Promise<unknown>): Promise<Error> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (error: unknown) => error as Error,
  );
}

/** Records what a connection delivers, with waits on it. */
export class Recorder implements ConnectionHandlers {
  chunks: Buffer[] = [];
  length = 0;
  closes: Array<Error | undefined> = [];
  readonly closed: Promise<Error | undefined>;
  #onClose!: (error: Error | undefined) => void;
  #waiters: Array<() => void> = [];

  constructor() {
    this.closed = new Promise((resolve) => {
      this.#onClose = resolve;
    });
  }

  readonly onData = (chunk: Uint8Array): void => {
    if (this.closes.length > 0) throw new Error('onData after onClose');
    this.chunks.push(Buffer.from(chunk));
    this.length += chunk.length;
    for (const wake of this.#waiters.splice(0)) wake();
  };

  readonly onClose = (error?: Error): void => {
    this.closes.push(error);
    this.#onClose(error);
    for (const wake of this.#waiters.splice(0)) wake();
  };

  get bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }

  /** Resolves once `n` bytes have arrived (or rejects if the connection closes first). */
  async waitForBytes(n: number): Promise<Buffer> {
    while (this.length < n) {
      if (this.closes.length > 0) throw new Error(`closed after ${this.length} of ${n} bytes`);
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
    return this.bytes;
  }
}

/**
 * Takes the process's uncaught exceptions (from the test runner, which would fail the run) until
 * `restore()`; `next` resolves with the first one.
 */
export function catchUncaught(): { next: Promise<unknown>; restore(): void } {
  const runners = process.listeners('uncaughtException');
  process.removeAllListeners('uncaughtException');
  const next = new Promise<unknown>((resolve) => process.once('uncaughtException', resolve));
  return {
    next,
    restore() {
      process.removeAllListeners('uncaughtException');
      for (const listener of runners) process.on('uncaughtException', listener);
    },
  };
}

/** A raw TCP server on 127.0.0.1 port 0 that hands out accepted sockets in order. */
export class TcpServer {
  readonly server: net.Server;
  readonly sockets: net.Socket[] = [];
  #waiters: Array<(socket: net.Socket) => void> = [];

  /** `event`: `secureConnection` for a `tls.Server`. */
  constructor(server: net.Server = net.createServer(), event: 'connection' | 'secureConnection' = 'connection') {
    this.server = server;
    server.on(event, (socket: net.Socket) => this.#accept(socket));
  }

  #accept(socket: net.Socket): void {
    socket.on('error', () => {});
    this.sockets.push(socket);
    const waiter = this.#waiters.shift();
    if (waiter) waiter(socket);
  }

  async listen(host = '127.0.0.1'): Promise<number> {
    this.server.listen(0, host);
    await once(this.server, 'listening');
    return (this.server.address() as net.AddressInfo).port;
  }

  async listenPath(path: string): Promise<void> {
    this.server.listen(path);
    await once(this.server, 'listening');
  }

  /** The next accepted socket (already accepted ones first). */
  accepted(index = 0): Promise<net.Socket> {
    const socket = this.sockets[index];
    if (socket) return Promise.resolve(socket);
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** A port nothing listens on. */
export async function closedPort(): Promise<number> {
  const probe = net.createServer().listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const { port } = probe.address() as net.AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

/** Reads from `socket` until `n` bytes have arrived. */
export async function readBytes(socket: net.Socket, n: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let length = 0;
  while (length < n) {
    const [chunk] = (await once(socket, 'data')) as [Buffer];
    chunks.push(chunk);
    length += chunk.length;
  }
  return Buffer.concat(chunks);
}

// Sockets are counted from Node's active resources. Timers are tracked by wrapping the globals,
// because the test runner's own timers come and go in those counts.
const watched = ['TCPSocketWrap', 'TCPServerWrap', 'PipeWrap', 'PipeServerWrap', 'TLSWrap'];

function resourceCounts(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const name of process.getActiveResourcesInfo()) {
    if (watched.includes(name)) counts[name] = (counts[name] ?? 0) + 1;
  }
  return counts;
}

let timerSerial = 0;
const pendingTimers = new Map<unknown, { serial: number; kind: string; stack: string | undefined }>();

function trackTimers(): void {
  if ((globalThis as { __ampsTimersTracked?: boolean }).__ampsTimersTracked) return;
  (globalThis as { __ampsTimersTracked?: boolean }).__ampsTimersTracked = true;
  const { setTimeout: st, clearTimeout: ct, setImmediate: si, clearImmediate: ci } = globalThis;
  const track = (handle: unknown, kind: string) => {
    pendingTimers.set(handle, { serial: ++timerSerial, kind, stack: new Error().stack });
    return handle;
  };
  globalThis.setTimeout = ((callback: (...args: unknown[]) => void, ms?: number, ...args: unknown[]) => {
    const handle: unknown = st(
      (...a: unknown[]) => {
        pendingTimers.delete(handle);
        callback(...a);
      },
      ms,
      ...args,
    );
    return track(handle, 'setTimeout');
  }) as typeof setTimeout;
  globalThis.clearTimeout = ((handle: Parameters<typeof clearTimeout>[0]) => {
    pendingTimers.delete(handle);
    ct(handle);
  }) as typeof clearTimeout;
  globalThis.setImmediate = ((callback: (...args: unknown[]) => void, ...args: unknown[]) => {
    const handle: unknown = si(
      (...a: unknown[]) => {
        pendingTimers.delete(handle);
        callback(...a);
      },
      ...args,
    );
    return track(handle, 'setImmediate');
  }) as typeof setImmediate;
  globalThis.clearImmediate = ((handle: Parameters<typeof clearImmediate>[0]) => {
    pendingTimers.delete(handle);
    ci(handle);
  }) as typeof clearImmediate;
}

/**
 * Snapshots open sockets and timers; `check()` waits (boundedly, by event-loop turns) for them to
 * be back to the snapshot, then asserts. Start it before the first socket of the test.
 * `timersFrom` counts only the timers armed from source files it matches: with a broker in the
 * same process, whose timers come and go, the client's own.
 */
export function leakCheck(options: { timersFrom?: RegExp } = {}): { check(): Promise<void> } {
  trackTimers();
  const before = resourceCounts();
  const since = timerSerial;
  const newTimers = () =>
    [...pendingTimers.values()]
      .filter((t) => t.serial > since && (!options.timersFrom || options.timersFrom.test(t.stack ?? '')))
      .map((t) => `${t.kind} ${t.stack}`);
  return {
    async check() {
      const deadline = Date.now() + 5000;
      const settled = () =>
        newTimers().length === 0 && watched.every((name) => (resourceCounts()[name] ?? 0) <= (before[name] ?? 0));
      while (!settled() && Date.now() < deadline) await new Promise((resolve) => setImmediate(resolve));
      const after = resourceCounts();
      for (const name of watched) {
        expect(after[name] ?? 0, `open ${name} handles after the test`).toBeLessThanOrEqual(before[name] ?? 0);
      }
      expect(newTimers(), 'timers left pending after the test').toEqual([]);
    },
  };
}

export interface TestCertificates {
  ca: string;
  /** Signed by `ca`, for `localhost`, `127.0.0.1` and `amps.test`. */
  cert: string;
  key: string;
  /** Signed by `ca`, for `amps.test` only. */
  namedCert: string;
  namedKey: string;
  /** A client certificate signed by `ca`. */
  clientCert: string;
  clientKey: string;
}

let certificates: Promise<TestCertificates> | undefined;

/** A CA and server certificates, generated once per test file. */
export function testCertificates(): Promise<TestCertificates> {
  certificates ??= (async () => {
    const ca = await generate([{ name: 'commonName', value: 'amps-ts test CA' }], {
      algorithm: 'sha256',
      keyType: 'ec',
      extensions: [
        { name: 'basicConstraints', cA: true, critical: true },
        { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
      ],
    });
    const leaf = (names: Array<{ type: 2 | 7; value?: string; ip?: string }>, cn: string, client = false) =>
      generate([{ name: 'commonName', value: cn }], {
        algorithm: 'sha256',
        keyType: 'ec',
        ca: { key: ca.private, cert: ca.cert },
        extensions: [
          { name: 'basicConstraints', cA: false },
          { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
          { name: 'extKeyUsage', serverAuth: !client, clientAuth: client },
          { name: 'subjectAltName', altNames: names },
        ],
      });
    const server = await leaf(
      [
        { type: 2, value: 'localhost' },
        { type: 7, ip: '127.0.0.1' },
        { type: 2, value: 'amps.test' },
      ],
      'localhost',
    );
    const named = await leaf([{ type: 2, value: 'amps.test' }], 'amps.test');
    const client = await leaf([{ type: 2, value: 'client.amps.test' }], 'client.amps.test', true);
    return {
      ca: ca.cert,
      cert: server.cert,
      key: server.private,
      namedCert: named.cert,
      namedKey: named.private,
      clientCert: client.cert,
      clientKey: client.private,
    };
  })();
  return certificates;
}

/**
 * Guards every test of the file it is called in: after each test its cleanups run (last added
 * first), then the test fails on an unhandled rejection, or a socket or a timer (from
 * `timersFrom`) left open. `checkLeaks` checks the same in the middle of a test.
 */
export function guardEachTest(options: { timersFrom?: RegExp } = {}): {
  cleanups: Array<() => unknown>;
  checkLeaks(): Promise<void>;
} {
  const cleanups: Array<() => unknown> = [];
  const rejections: unknown[] = [];
  const onRejection = (reason: unknown) => rejections.push(reason);
  let leaks: ReturnType<typeof leakCheck>;
  beforeEach(() => {
    leaks = leakCheck(options);
    rejections.length = 0;
    process.on('unhandledRejection', onRejection);
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    // Rejections are reported a turn after they happen.
    await new Promise((resolve) => setImmediate(resolve));
    process.off('unhandledRejection', onRejection);
    expect(rejections).toEqual([]);
    await leaks.check();
  });
  return { cleanups, checkLeaks: () => leaks.check() };
}
