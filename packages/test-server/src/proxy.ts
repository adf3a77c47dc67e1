/**
 * A TCP proxy that injects network faults between a client and a broker: resets, a blackhole
 * (connections stay open, nothing gets through, as when packets are dropped), latency, and slicing
 * (bytes delivered in small chunks, so a receiver sees frames split anywhere).
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import { InvalidOptionsError, MAX_TIMEOUT_MS } from '@amps-ts/core-protocol';
import { uriHost } from './util.js';

export interface FaultProxyOptions {
  /** Where to forward: a port on 127.0.0.1, `{ host, port }`, or a `tcp://host:port/...` URI. */
  target: number | string | { host?: string; port: number };
  /** The proxy's own port; 0 picks a free one. @default 0 */
  port?: number;
  /** @default '127.0.0.1' */
  host?: string;
}

export interface FaultProxy {
  readonly port: number;
  readonly host: string;
  /** `tcp://host:port/amps/<messageType>` through the proxy. */
  tcpUri(messageType?: string): string;
  /** Open connection pairs. */
  readonly connections: number;
  /**
   * Bytes the proxy holds, both ways, for every connection: delayed, blackholed or sliced. Past
   * about 1 MiB a direction stops reading its sender, which TCP then slows down.
   */
  readonly heldBytes: number;
  /** Resets every open connection (TCP RST on both sides). New connections still work. */
  reset(): void;
  /** Stops delivering in both directions, closes included; data is held, as TCP retransmits it, and delivered on `heal()`. */
  blackhole(): void;
  /**
   * Delays every chunk by `ms` in both directions; a close comes after the data sent before it.
   * `ms` must be a finite number >= 0 (an `InvalidOptionsError` otherwise): `blackhole()` holds data for good.
   */
  latency(ms: number): void;
  /** Delivers data in chunks of at most `bytes` bytes, one per event-loop turn. */
  slice(bytes: number): void;
  /** Back to a clean pipe: no blackhole, latency or slicing; held data goes through. */
  heal(): void;
  close(): Promise<void>;
}

interface Faults {
  blackhole: boolean;
  latencyMs: number;
  sliceBytes: number;
}

/**
 * Bytes a pipe holds (queued, and written but not yet taken by the kernel) above which it stops
 * reading its sender, as a network pushes back once its buffers are full: a blackholed, slow or
 * sliced pipe then slows the sender down instead of buffering without bound.
 */
const PIPE_HIGH_WATER = 1024 * 1024;
/** Held bytes at or below which a paused sender is read again. */
const PIPE_LOW_WATER = 256 * 1024;

/**
 * One direction of a connection: chunks queued with the time they may go out. The sender's close
 * is queued too (a chunk `undefined`), so it reaches the receiver after the data sent before it.
 */
class Pipe {
  readonly #queue: Array<{ chunk: Uint8Array | undefined; at: number }> = [];
  #queuedBytes = 0;
  #pausedSender = false;
  #timer: NodeJS.Timeout | undefined = undefined;
  #immediate: NodeJS.Immediate | undefined = undefined;

  constructor(
    readonly from: Socket,
    readonly to: Socket,
    readonly faults: Faults,
  ) {
    to.on('drain', () => this.pump());
  }

  /** Bytes held: queued here, and written to `to` but not yet taken by the kernel. */
  get heldBytes(): number {
    return this.#queuedBytes + this.to.writableLength;
  }

  push(chunk: Uint8Array | undefined): void {
    this.#queue.push({ chunk, at: performance.now() + this.faults.latencyMs });
    this.#queuedBytes += chunk?.length ?? 0;
    if (!this.#pausedSender && this.heldBytes > PIPE_HIGH_WATER) {
      this.#pausedSender = true;
      this.from.pause();
    }
    this.pump();
  }

  pump(): void {
    this.#pumpQueue();
    if (this.#pausedSender && this.heldBytes <= PIPE_LOW_WATER) {
      this.#pausedSender = false;
      if (!this.from.destroyed) this.from.resume();
    }
  }

  #pumpQueue(): void {
    if (this.#timer || this.#immediate || this.faults.blackhole || this.to.destroyed) return;
    while (this.#queue.length > 0) {
      // The receiver is slower than the sender: wait for it ('drain').
      if (this.to.writableLength > PIPE_HIGH_WATER) return;
      const head = this.#queue[0] as { chunk: Uint8Array | undefined; at: number };
      const wait = head.at - performance.now();
      if (wait > 0) {
        // In steps past what setTimeout can wait (a latency of weeks): pump() waits again.
        this.#timer = setTimeout(
          () => {
            this.#timer = undefined;
            this.pump();
          },
          Math.min(wait, MAX_TIMEOUT_MS),
        );
        return;
      }
      if (head.chunk === undefined) {
        // What was written goes out first, then the close.
        this.#queue.length = 0;
        this.to.destroySoon();
        return;
      }
      const slice = this.faults.sliceBytes;
      if (slice > 0 && head.chunk.length > slice) {
        this.#write(head.chunk.subarray(0, slice));
        head.chunk = head.chunk.subarray(slice);
        this.#later();
        return;
      }
      this.#write(head.chunk);
      this.#queue.shift();
      if (slice > 0 && this.#queue.length > 0) {
        this.#later();
        return;
      }
    }
  }

  #write(bytes: Uint8Array): void {
    this.#queuedBytes -= bytes.length;
    this.to.write(bytes);
  }

  /** Goes on next turn: one slice per event-loop turn. */
  #later(): void {
    this.#immediate = setImmediate(() => {
      this.#immediate = undefined;
      this.pump();
    });
  }

  /** Releases held chunks at once (heal). */
  release(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const item of this.#queue) item.at = 0;
    this.pump();
  }

  stop(): void {
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#immediate) clearImmediate(this.#immediate);
    this.#timer = undefined;
    this.#immediate = undefined;
    this.#queue.length = 0;
    this.#queuedBytes = 0;
  }
}

function resolveTarget(target: FaultProxyOptions['target']): { host: string; port: number } {
  if (typeof target === 'number') return { host: '127.0.0.1', port: target };
  if (typeof target === 'string') {
    const match = /^[a-z]+:\/\/(?:[^@/]*@)?(\[[^\]]+\]|[^:/]+):(\d+)/i.exec(target);
    if (!match) throw new InvalidOptionsError(`fault proxy target '${target}' is not scheme://host:port/...`);
    return { host: (match[1] as string).replace(/^\[|\]$/g, ''), port: Number(match[2]) };
  }
  return { host: target.host ?? '127.0.0.1', port: target.port };
}

interface Pair {
  client: Socket;
  upstream: Socket;
  pipes: Pipe[];
}

export async function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  const target = resolveTarget(options.target);
  const host = options.host ?? '127.0.0.1';
  const faults: Faults = { blackhole: false, latencyMs: 0, sliceBytes: 0 };
  const pairs = new Set<Pair>();

  const server: Server = createServer((client) => {
    const upstream = connect({ host: target.host, port: target.port });
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    const toUpstream = new Pipe(client, upstream, faults);
    const toClient = new Pipe(upstream, client, faults);
    const pair: Pair = { client, upstream, pipes: [toUpstream, toClient] };
    pairs.add(pair);
    client.on('data', (chunk) => toUpstream.push(chunk));
    upstream.on('data', (chunk) => toClient.push(chunk));
    // A close travels like data: delayed by latency, held by a blackhole until heal().
    const closed = (pipe: Pipe) => () => {
      if (client.destroyed && upstream.destroyed) {
        pairs.delete(pair);
        toUpstream.stop();
        toClient.stop();
      } else {
        pipe.push(undefined);
      }
    };
    client.on('error', () => {});
    upstream.on('error', () => {});
    client.on('close', closed(toUpstream));
    upstream.on('close', closed(toClient));
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port: options.port ?? 0, host }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  const pump = () => {
    for (const pair of pairs) for (const pipe of pair.pipes) pipe.pump();
  };

  return {
    port,
    host,
    tcpUri: (messageType = 'json') => `tcp://${uriHost(host)}:${port}/amps/${messageType}`,
    get connections() {
      return pairs.size;
    },
    get heldBytes() {
      let held = 0;
      for (const pair of pairs) for (const pipe of pair.pipes) held += pipe.heldBytes;
      return held;
    },
    reset() {
      for (const pair of [...pairs]) {
        pairs.delete(pair);
        for (const pipe of pair.pipes) pipe.stop();
        pair.client.resetAndDestroy();
        pair.upstream.resetAndDestroy();
      }
    },
    blackhole() {
      faults.blackhole = true;
    },
    latency(ms: number) {
      // Infinity would have each chunk's timer overflow, and fire every millisecond.
      if (!Number.isFinite(ms) || ms < 0) {
        throw new InvalidOptionsError(
          `latency must be a finite number of ms >= 0 (blackhole() holds data for good), got ${ms}`,
        );
      }
      faults.latencyMs = ms;
    },
    slice(bytes: number) {
      if (!Number.isInteger(bytes) || bytes < 1) throw new InvalidOptionsError(`slice needs a positive byte count`);
      faults.sliceBytes = bytes;
      pump();
    },
    heal() {
      faults.blackhole = false;
      faults.latencyMs = 0;
      faults.sliceBytes = 0;
      for (const pair of pairs) for (const pipe of pair.pipes) pipe.release();
    },
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const pair of [...pairs]) {
        pairs.delete(pair);
        for (const pipe of pair.pipes) pipe.stop();
        pair.client.destroy();
        pair.upstream.destroy();
      }
      await closed;
    },
  };
}
