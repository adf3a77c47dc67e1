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
