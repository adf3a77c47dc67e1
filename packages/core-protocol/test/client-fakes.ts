import { nodeTransport } from '../../transport-node/src/index.js';
import {
  guardEachTest as guardTransportTest,
  leakCheck as transportLeakCheck,
} from '../../transport-node/test/helpers.js';
import {
  Client,
  type ClientOptions,
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

/**
 * transport-node's leak check (open sockets, and timers armed and never cleared), counting only
 * the client's and the transports' timers: the in-process broker has timers of its own.
 */
const CLIENT_TIMERS = /packages\/(core-protocol|transport-node|transport-browser)\/src\//;
export const leakCheck = (): { check(): Promise<void> } => transportLeakCheck({ timersFrom: CLIENT_TIMERS });

/**
 * Guards every test of the file it is called in: after each test its cleanups run (last added
 * first), then the test fails on an unhandled rejection, or a socket or client timer left open.
 * `newClient` makes a transport-node Client that is disconnected after the test.
 */
export function guardEachTest(): {
  cleanups: Array<() => unknown>;
  newClient(name: string, options?: Partial<ClientOptions>): Client;
} {
  const { cleanups } = guardTransportTest({ timersFrom: CLIENT_TIMERS });
  return {
    cleanups,
    newClient(name, options = {}) {
      const client = new Client(name, { transport: nodeTransport(), ...options });
      cleanups.push(() => client.disconnect());
      return client;
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
