import { expect } from 'vitest';
import {
  type Command,
  type Connection,
  type ConnectionHandlers,
  type Environment,
  encodeCommand,
  type Message,
  MessageDecoder,
  type Transport,
} from '../src/index.js';

/** A manual clock: timers fire only when the test advances time. */
export class ManualEnvironment implements Environment {
  time = 0;
  #next = 1;
  readonly #timers = new Map<number, { at: number; callback: () => void }>();

  now(): number {
    return this.time;
  }
  setTimeout(callback: () => void, ms: number): number {
    const id = this.#next++;
    this.#timers.set(id, { at: this.time + ms, callback });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.#timers.delete(handle as number);
  }
  random(): number {
    return 0.5;
  }
  get pendingTimers(): number {
    return this.#timers.size;
  }
  /** Moves time forward, firing due timers in order. */
  advance(ms: number): void {
    const end = this.time + ms;
    for (;;) {
      let due: [number, { at: number; callback: () => void }] | undefined;
      for (const entry of this.#timers) if (entry[1].at <= end && (!due || entry[1].at < due[1].at)) due = entry;
      if (!due) break;
      this.#timers.delete(due[0]);
      this.time = due[1].at;
      due[1].callback();
    }
    this.time = end;
  }
}

/**
 * An in-memory server end for a `Transport`: the test scripts what the "server" answers.
 * For unit tests of client timing logic only; protocol behaviour is tested against the real broker.
 */
export class ScriptedServer {
  received: Message[] = [];
  handlers: ConnectionHandlers | undefined;
  closedWith: Error | undefined | null = null;
  onCommand: (message: Message, server: ScriptedServer) => void = () => {};
  readonly #decoder = new MessageDecoder((m) => {
    this.received.push(m);
    this.onCommand(m, this);
  });

  readonly transport: Transport = {
    schemes: ['tcp', 'ws'],
    connect: async (_uri, handlers) => {
      this.handlers = handlers;
      this.closedWith = null;
      const connection: Connection = {
        description: 'memory',
        bufferedAmount: 0,
        send: (bytes) => this.#decoder.push(bytes),
        whenDrained: async () => {},
        close: (error) => {
          if (this.closedWith !== null) return;
          this.closedWith = error;
          queueMicrotask(() => handlers.onClose(error));
        },
      };
      return connection;
    },
  };

  reply(command: Command): void {
    this.handlers?.onData(encodeCommand(command));
  }

  /** Answers logon and heartbeat-start with success acks. */
  static acking(): ScriptedServer {
    const server = new ScriptedServer();
    server.onCommand = (m, s) => {
      if ((m.command === 'logon' || m.command === 'heartbeat') && m.ackType?.includes('processed')) {
        queueMicrotask(() =>
          s.reply({
            command: 'ack',
            commandId: m.commandId,
            ackType: 'processed',
            status: 'success',
            ...(m.command === 'logon' ? { sequence: 0, bookmark: '123|0|', version: 'scripted' } : {}),
          }),
        );
      }
    };
    return server;
  }
}

/* ---------------- integration helpers: real sockets, real broker ---------------- */

// Sockets are counted from Node's active resources. Timers are tracked by wrapping the globals,
// keeping only those armed from the client's or the transport's source (the broker and the test
// runner have timers of their own that come and go).
const watchedResources = ['TCPSocketWrap', 'TCPServerWrap', 'TLSWrap'];
const clientSources = /packages\/(core-protocol|transport-node|transport-browser)\/src\//;

function resourceCounts(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const name of process.getActiveResourcesInfo()) {
    if (watchedResources.includes(name)) counts[name] = (counts[name] ?? 0) + 1;
  }
  return counts;
}

let timerSerial = 0;
const liveTimers = new Map<unknown, { serial: number; stack: string }>();

function trackTimers(): void {
  const g = globalThis as { __ampsClientTimersTracked?: boolean };
  if (g.__ampsClientTimersTracked) return;
  g.__ampsClientTimersTracked = true;
  const { setTimeout: st, clearTimeout: ct } = globalThis;
  globalThis.setTimeout = ((callback: (...args: unknown[]) => void, ms?: number, ...args: unknown[]) => {
    const handle: unknown = st(
      (...a: unknown[]) => {
        liveTimers.delete(handle);
        callback(...a);
      },
      ms,
      ...args,
    );
    const stack = new Error().stack ?? '';
    if (clientSources.test(stack)) liveTimers.set(handle, { serial: ++timerSerial, stack });
    return handle;
  }) as typeof setTimeout;
  globalThis.clearTimeout = ((handle: Parameters<typeof clearTimeout>[0]) => {
    liveTimers.delete(handle);
    ct(handle);
  }) as typeof clearTimeout;
}

/**
 * Snapshots open sockets and the client's timers; `check()` waits (boundedly, by event-loop turns)
 * for them to be back to the snapshot, then asserts. Start it before the first socket of the test.
 */
export function leakCheck(): { check(): Promise<void> } {
  trackTimers();
  const before = resourceCounts();
  const since = timerSerial;
  const newTimers = () => [...liveTimers.values()].filter((t) => t.serial > since).map((t) => t.stack);
  return {
    async check() {
      const deadline = Date.now() + 5000;
      const settled = () =>
        newTimers().length === 0 &&
        watchedResources.every((name) => (resourceCounts()[name] ?? 0) <= (before[name] ?? 0));
      while (!settled() && Date.now() < deadline) await new Promise((resolve) => setImmediate(resolve));
      const after = resourceCounts();
      for (const name of watchedResources) {
        expect(after[name] ?? 0, `open ${name} handles after the test`).toBeLessThanOrEqual(before[name] ?? 0);
      }
      expect(newTimers(), 'client timers left pending after the test').toEqual([]);
    },
  };
}

/** Collects values pushed by a callback and lets a test wait for the n-th one. */
export class Collector<T> {
  readonly items: T[] = [];
  #waiters: Array<{ n: number; resolve: () => void }> = [];
  readonly push = (item: T): void => {
    this.items.push(item);
    this.#waiters = this.#waiters.filter((w) => {
      if (this.items.length < w.n) return true;
      w.resolve();
      return false;
    });
  };
  /** Resolves with the items once there are at least `n`; rejects after `timeoutMs`. */
  async atLeast(n: number, timeoutMs = 10_000): Promise<T[]> {
    if (this.items.length < n) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        new Promise<void>((resolve) => this.#waiters.push({ n, resolve })),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`waited ${timeoutMs} ms for ${n} items, got ${this.items.length}`)),
            timeoutMs,
          );
        }),
      ]).finally(() => clearTimeout(timer));
    }
    return this.items;
  }
}

/** The decoded commands a client wrote, seen through its `transportFilter`. */
export function outgoing(): {
  filter: (bytes: Uint8Array, direction: 'in' | 'out') => undefined;
  sent: Collector<Message>;
  received: Collector<Message>;
} {
  const sent = new Collector<Message>();
  const received = new Collector<Message>();
  const out = new MessageDecoder(sent.push);
  const into = new MessageDecoder(received.push);
  return {
    sent,
    received,
    filter: (bytes, direction) => {
      (direction === 'out' ? out : into).push(bytes.slice());
      return undefined;
    },
  };
}
