/** A raw AMPS client for tests: real sockets, frames in and out, waits by event with a timeout. */
import { connect, type Socket } from 'node:net';
import { type Command, type Environment, encodeCommand, type Message, MessageDecoder } from '@amps-ts/core-protocol';
import { WebSocket } from 'ws';
import type { TestServer } from '../src/index.js';

export type Transport = 'tcp' | 'ws';
export const transports: Transport[] = ['tcp', 'ws'];

let cids = 0;

export class TestClient {
  readonly received: Message[] = [];
  #queue: Message[] = [];
  #waiters: Array<() => void> = [];
  #closed = false;
  readonly closed: Promise<void>;
  #onClosed!: () => void;
  readonly #write: (bytes: Uint8Array) => void;
  readonly #end: () => void;

  private constructor(write: (bytes: Uint8Array) => void, end: () => void) {
    this.#write = write;
    this.#end = end;
    this.closed = new Promise((resolve) => {
      this.#onClosed = resolve;
    });
  }

  /** Connects to `server` over `transport`. */
  static connectTo(server: TestServer, transport: Transport): Promise<TestClient> {
    return TestClient.connect(transport === 'tcp' ? server.tcpUri() : server.wsUri());
  }

  static async connect(uri: string): Promise<TestClient> {
    const url = new URL(uri);
    if (url.protocol === 'ws:') {
      const ws = new WebSocket(uri);
      ws.binaryType = 'nodebuffer';
      const client = new TestClient(
        (bytes) => ws.send(bytes),
        () => ws.terminate(),
      );
      const decoder = new MessageDecoder((m) => client.#push(m));
      ws.on('message', (data) => decoder.push(data as Buffer));
      ws.on('error', () => {});
      ws.on('close', () => client.#close());
      await new Promise<void>((resolve, reject) => {
        ws.once('open', () => resolve());
        ws.once('error', reject);
      });
      return client;
    }
    // An IPv6 literal comes bracketed in a URI (`tcp://[::1]:9007/...`), not in a host to connect to.
    const socket: Socket = connect({ host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port) });
    const client = new TestClient(
      (bytes) => socket.write(bytes),
      () => socket.destroy(),
    );
    const decoder = new MessageDecoder((m) => client.#push(m));
    socket.on('data', (chunk) => decoder.push(chunk));
    socket.on('error', () => {});
    socket.on('close', () => client.#close());
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('error', reject);
    });
    return client;
  }

  get isClosed(): boolean {
    return this.#closed;
  }

  #push(message: Message): void {
    this.received.push(message);
    this.#queue.push(message);
    for (const wake of this.#waiters.splice(0)) wake();
  }

  #close(): void {
    this.#closed = true;
    this.#onClosed();
    for (const wake of this.#waiters.splice(0)) wake();
  }

  send(command: Command): void {
    this.#write(encodeCommand(command));
  }

  writeRaw(bytes: Uint8Array): void {
    this.#write(bytes);
  }

  /** Sends a command with a fresh `cid` (unless given) and returns it. */
  command(command: Command): string {
    const cid = command.commandId ?? String(++cids);
    this.send({ ...command, commandId: cid });
    return cid;
  }

  /** Takes the first unread message matching `predicate`, waiting for it. */
  async take(predicate: (m: Message) => boolean, what = 'message', timeoutMs = 5000): Promise<Message> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.#queue.findIndex(predicate);
      if (i >= 0) return this.#queue.splice(i, 1)[0] as Message;
      if (this.#closed) throw new Error(`connection closed while waiting for ${what}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Takes `n` messages matching `predicate`, in order. */
  async takeN(n: number, predicate: (m: Message) => boolean, what = 'messages', timeoutMs = 5000): Promise<Message[]> {
    const out: Message[] = [];
    for (let i = 0; i < n; i++) out.push(await this.take(predicate, `${what} #${i + 1}/${n}`, timeoutMs));
    return out;
  }

  ack(cid: string, type = 'processed'): Promise<Message> {
    return this.take((m) => m.command === 'ack' && m.commandId === cid && m.ackType === type, `${type} ack ${cid}`);
  }

  /** Takes every unread message matching `predicate`, without waiting. */
  takeAll(predicate: (m: Message) => boolean): Message[] {
    const taken = this.#queue.filter(predicate);
    this.#queue = this.#queue.filter((m) => !predicate(m));
    return taken;
  }

  /** Unread messages (not taken yet). */
  get unread(): readonly Message[] {
    return this.#queue;
  }

  async logon(clientName: string, fields: Partial<Command> = {}): Promise<Message> {
    const cid = this.command({ command: 'logon', clientName, ackType: 'processed', version: 'test', ...fields });
    return this.ack(cid);
  }

  /** Subscribes (processed ack awaited and checked). */
  async subscribe(topic: string, fields: Partial<Command> = {}): Promise<string> {
    const cid = this.command({ command: 'subscribe', topic, ackType: 'processed', ...fields });
    const ack = await this.ack(cid);
    if (ack.status !== 'success') throw new Error(`subscribe failed: ${ack.reason}`);
    return fields.subId ?? cid;
  }

  publish(topic: string, body: unknown, fields: Partial<Command> = {}): string {
    return this.command({ command: 'publish', topic, data: JSON.stringify(body), ...fields });
  }

  /** Resolves when every command sent so far has been processed (a flush round trip). */
  async sync(): Promise<void> {
    const cid = this.command({ command: 'flush', ackType: 'processed' });
    await this.ack(cid);
  }

  close(): Promise<void> {
    this.#end();
    return this.closed;
  }
}

/** A delivery for `subId` (by `sub_id`, or listed in `sids`), or any delivery. */
export function isDelivery(subId?: string) {
  return (m: Message) => m.command === 'publish' && (subId === undefined || m.subscriptionIds.includes(subId));
}

/** Polls a condition (server-side state) until it holds; fails after the timeout. */
export async function until(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** A manual clock: timers fire only when the test advances time. */
export class ManualEnvironment implements Environment {
  #now = 1_700_000_000_000;
  #timers: Array<{ at: number; callback: () => void; id: number }> = [];
  #ids = 0;
  /** The longest delay asked for: `setTimeout` cannot wait beyond 2^31-1 ms. */
  longestDelayMs = 0;

  now(): number {
    return this.#now;
  }

  setTimeout(callback: () => void, ms: number): unknown {
    this.longestDelayMs = Math.max(this.longestDelayMs, ms);
    const id = ++this.#ids;
    this.#timers.push({ at: this.#now + ms, callback, id });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.#timers = this.#timers.filter((t) => t.id !== handle);
  }

  random(): number {
    return 0.5;
  }

  get pending(): number {
    return this.#timers.length;
  }

  advance(ms: number): void {
    const target = this.#now + ms;
    for (;;) {
      this.#timers.sort((a, b) => a.at - b.at || a.id - b.id);
      const next = this.#timers[0];
      if (!next || next.at > target) break;
      this.#timers.shift();
      // Overdue after a stall(), a timer runs late, as a real one does.
      this.#now = Math.max(this.#now, next.at);
      next.callback();
    }
    this.#now = target;
  }

  /** Moves the clock on without running timers: an event loop blocked for `ms`. */
  stall(ms: number): void {
    this.#now += ms;
  }
}
