/**
 * The Client's throughput against raw sockets doing the least possible with the same bytes.
 *
 * - publish: `client.publish()` of a 100-byte JSON body, fire-and-forget (awaiting the
 *   backpressure promise when one is returned), into a sink that answers the logon and then only
 *   counts frames. Baseline: a raw socket writing the same pre-encoded frames. Two ways of
 *   writing, the same on both sides: 64 messages per event-loop turn (a service publishing what
 *   its events bring; the target row), and a tight loop (the raw side then writes 64 KiB
 *   batches and does no per-message work at all: reported for scale).
 * - delivery: a source sends pre-encoded delivery frames for the client's subscription as fast as
 *   the connection takes them; the Client decodes, routes and calls the subscribe callback. (To a
 *   subscribe with a bookmark, the source sends a replay instead: each delivery with its own
 *   bookmark. The `ha` group uses that.)
 *   Baseline: a raw reader that only splits the same bytes into frames (`FrameDecoder`). A naive
 *   reader (TextDecoder + JSON.parse of each header) is reported for scale.
 *
 * The sink and the source run in a child process, so they do not share a core with the side
 * being measured. The sides run alternately, best run kept: load from other processes only ever
 * slows a run down. Over WebSocket the publish baseline sends one frame per message (as every
 * sender must); the source sends its deliveries in 64 KiB messages (receivers treat messages as
 * a byte stream). The WebSocket rows are reported beside TCP, without targets.
 * `BENCH_DEBUG=1` prints every run.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { once } from 'node:events';
import * as net from 'node:net';
import { fileURLToPath } from 'node:url';
import { Client, encodeCommand, FrameDecoder, type Message, MessageDecoder } from '@amps-ts/core-protocol';
import { nodeTransport } from '@amps-ts/transport-node';
import { FrameCounter } from '../frame-counter.js';
import { type BenchContext, type BenchGroup, type BenchResult, unlessStalled } from '../runner.js';
import { type WebSocket, ws } from '../ws.js';

const ROLE = 'AMPS_TS_BENCH_CLIENT_PEER';
export const TOPIC = 'orders';
const BATCH_BYTES = 64 * 1024;
const HIGH_WATER = 1024 * 1024;
/** The publisher named in the bookmarks of a replay. */
const PUBLISHER = '12884443219563409361';

/**
 * A 100-byte JSON body, as a string and as the same bytes (a body serialized once and published
 * as is). Made by JSON.stringify, as an application's would be: a string built by concatenation
 * (a template literal) is a rope in V8, and each encode of it would walk the rope again.
 */
const BODY = JSON.stringify({ id: 12345, sym: 'IBM', qty: 500, px: 101.25, side: 'buy', note: 'x'.repeat(31) });
const BODY_BYTES = new TextEncoder().encode(BODY);

/** `frame` repeated to fill about 64 KiB. */
function batchOf(frame: Uint8Array): { bytes: Uint8Array; frames: number } {
  const frames = Math.max(1, Math.floor(BATCH_BYTES / frame.length));
  const bytes = new Uint8Array(frames * frame.length);
  for (let i = 0; i < frames; i++) bytes.set(frame, i * frame.length);
  return { bytes, frames };
}

/* ================= the child process: sink and source, over TCP and WebSocket ================= */

interface PeerPorts {
  tcp: number;
  ws: number;
}

type ToPeer = { type: 'expect'; frames: number } | { type: 'count' } | { type: 'close' };
type FromPeer =
  | { type: 'ports'; ports: PeerPorts }
  | { type: 'ready' }
  | { type: 'done'; frames: number }
  | { type: 'counted'; frames: number };

if (process.env[ROLE] === '1' && process.send) {
  const send = (message: FromPeer) => process.send?.(message);
  // The parent went away (it crashed or was interrupted): do not outlive it, listening.
  process.on('disconnect', () => process.exit(0));
  // What the next run expects: the sink counts this many frames, the source sends this many.
  let expected = 0;
  let counted = 0;
  let sinkTarget = Number.POSITIVE_INFINITY;

  interface Wire {
    /** Returns a promise to await when the outgoing buffer is full. */
    write(bytes: Uint8Array): Promise<void> | undefined;
    readonly closed: boolean;
  }

  /**
   * One client connection. Commands are decoded until the logon is answered; a `sink-*` client
   * is then only counted, a `source-*` client gets `expected` deliveries after its subscribe.
   */
  const serve = (wire: Wire) => {
    let mode: 'commands' | 'sink' = 'commands';
    let role = '';
    const counter = new FrameCounter();
    const decoder = new MessageDecoder((m: Message) => {
      if (m.command === 'logon') role = m.clientName ?? '';
      if (m.ackType?.includes('processed') && m.commandId !== undefined) {
        wire.write(encodeCommand({ command: 'ack', ackType: 'processed', status: 'success', commandId: m.commandId }));
      }
      if (m.command === 'logon' && role.startsWith('sink')) mode = 'sink';
      if (m.command === 'subscribe' && role.startsWith('source')) {
        const subId = m.subId ?? m.commandId ?? '';
        void (m.bookmark === undefined ? blast(wire, subId) : replay(wire, subId));
      }
    });
    return (chunk: Uint8Array) => {
      if (mode === 'commands') {
        decoder.push(chunk);
        return;
      }
      const before = counter.frames;
      counter.push(chunk);
      counted += counter.frames - before;
      if (counted >= sinkTarget) {
        sinkTarget = Number.POSITIVE_INFINITY;
        send({ type: 'done', frames: counted });
      }
    };
  };

  /** Sends `expected` delivery frames for `subId`, in 64 KiB writes, as fast as the connection takes them. */
  const blast = async (wire: Wire, subId: string) => {
    // What a subscription to a SOW topic gets: topic, sub_id, the record's key, the body.
    const frames: Uint8Array[] = [];
    for (let i = 0; i < 64; i++) {
      frames.push(
        encodeCommand({ command: 'publish', topic: TOPIC, subId, sowKey: String(8_000_000_000 + i), data: BODY }),
      );
    }
    const frameLength = (frames[0] as Uint8Array).length; // every frame has the same length
    const { bytes: batch, frames: perBatch } = batchOf(Buffer.concat(frames));
    const framesPerBatch = perBatch * frames.length;
    let left = expected;
    while (left > 0 && !wire.closed) {
      const n = Math.min(left, framesPerBatch);
      left -= n;
      const wait = wire.write(n === framesPerBatch ? batch : batch.subarray(0, n * frameLength));
      if (wait) await wait;
    }
  };

  /** A bookmark subscription's replay, encoded once: `expected` deliveries, each its own position in the log. */
  let log: { key: string; batches: Uint8Array[] } | undefined;
  const replay = async (wire: Wire, subId: string) => {
    const key = `${subId} ${expected}`;
    if (log?.key !== key) {
      const batches: Uint8Array[] = [];
      let frames: Uint8Array[] = [];
      let bytes = 0;
      for (let i = 1; i <= expected; i++) {
        const frame = encodeCommand({
          command: 'publish',
          topic: TOPIC,
          subId,
          bookmark: `${PUBLISHER}|${i}|`,
          data: BODY,
        });
        frames.push(frame);
        bytes += frame.length;
        if (bytes >= BATCH_BYTES || i === expected) {
          batches.push(Buffer.concat(frames));
          frames = [];
          bytes = 0;
        }
      }
      log = { key, batches };
    }
    for (const batch of log.batches) {
      if (wire.closed) return;
      const wait = wire.write(batch);
      if (wait) await wait;
    }
  };

  const tcp = net.createServer((socket) => {
    socket.setNoDelay(true);
    socket.on('error', () => {});
    const wire: Wire = {
      write: (bytes) => {
        if (!socket.write(bytes) && socket.writableLength > HIGH_WATER) return once(socket, 'drain').then(() => {});
      },
      get closed() {
        return socket.destroyed;
      },
    };
    const onData = serve(wire);
    socket.on('data', onData);
  });
  tcp.listen(0, '127.0.0.1');
  await once(tcp, 'listening');

  const wss = new ws.WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  wss.on('connection', (socket: WebSocket) => {
    socket.binaryType = 'nodebuffer';
    socket.on('error', () => {});
    let closed = false;
    socket.on('close', () => {
      closed = true;
    });
    const wire: Wire = {
      write: (bytes) => {
        if (socket.bufferedAmount <= HIGH_WATER) socket.send(bytes);
        else return new Promise((resolve) => socket.send(bytes, () => resolve()));
      },
      get closed() {
        return closed;
      },
    };
    const onData = serve(wire);
    socket.on('message', (data: Buffer) => onData(data));
  });
  await once(wss, 'listening');

  process.on('message', async (message: ToPeer) => {
    if (message.type === 'expect') {
      expected = message.frames;
      counted = 0;
      sinkTarget = message.frames;
      send({ type: 'ready' });
    } else if (message.type === 'count') {
      send({ type: 'counted', frames: counted });
    } else if (message.type === 'close') {
      await new Promise((resolve) => wss.close(() => resolve(undefined)));
      tcp.close();
      process.disconnect();
    }
  });
  send({
    type: 'ports',
    ports: { tcp: (tcp.address() as net.AddressInfo).port, ws: (wss.address() as net.AddressInfo).port },
  });
}

/* ================= the measuring side ================= */

export class Peer {
  constructor(
    readonly ports: PeerPorts,
    readonly child: ChildProcess,
  ) {}

  static async start(): Promise<Peer> {
    const child = fork(fileURLToPath(import.meta.url), [], {
      env: { ...process.env, [ROLE]: '1' },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const [message] = (await once(child, 'message')) as [FromPeer];
    if (message.type !== 'ports') throw new Error('the bench peer did not start');
    return new Peer(message.ports, child);
  }

  uri(scheme: 'tcp' | 'ws'): string {
    return `${scheme}://127.0.0.1:${scheme === 'tcp' ? this.ports.tcp : this.ports.ws}/amps/json`;
  }

  /** Tells the peer how many frames the next run sends (source) or counts (sink). */
  async expect(frames: number): Promise<void> {
    this.child.send({ type: 'expect', frames } satisfies ToPeer);
    await this.#next('ready');
  }

  /** Like `expect`, for the sink: `done` resolves once it has counted them. */
  async expectSunk(frames: number): Promise<{ done: Promise<void> }> {
    const done = this.#next('done').then(() => undefined);
    await this.expect(frames);
    return { done };
  }

  /** How many frames the sink has counted in this run. */
  async counted(): Promise<number> {
    const reply = this.#next('counted');
    this.child.send({ type: 'count' } satisfies ToPeer);
    const message = await reply;
    return message.type === 'counted' ? message.frames : 0;
  }

  #next(type: FromPeer['type']): Promise<FromPeer> {
    return new Promise((resolve) => {
      const on = (message: FromPeer) => {
        if (message.type !== type) return;
        this.child.off('message', on);
        resolve(message);
      };
      this.child.on('message', on);
    });
  }

  async close(): Promise<void> {
    const exited = once(this.child, 'exit');
    this.child.send({ type: 'close' } satisfies ToPeer);
    await exited;
  }
}

/** A raw byte pipe to the peer: TCP socket or `ws` client, with the logon done. */
interface RawConnection {
  write(bytes: Uint8Array): void | Promise<void>;
  onData(handler: (chunk: Uint8Array) => void): void;
  close(): void;
}

async function rawConnect(uri: string, name: string): Promise<RawConnection> {
  const url = new URL(uri);
  let handler: (chunk: Uint8Array) => void = () => {};
  let connection: RawConnection;
  if (url.protocol === 'tcp:') {
    const socket = net.connect({ host: url.hostname, port: Number(url.port), noDelay: true });
    await once(socket, 'connect');
    socket.on('data', (chunk: Buffer) => handler(chunk));
    connection = {
      write: (bytes) => {
        if (!socket.write(bytes) && socket.writableLength > HIGH_WATER) return once(socket, 'drain').then(() => {});
      },
      onData: (h) => {
        handler = h;
      },
      close: () => socket.destroy(),
    };
  } else {
    const socket = new ws.WebSocket(uri, { perMessageDeflate: false });
    socket.binaryType = 'nodebuffer';
    await once(socket, 'open');
    socket.on('message', (data: Buffer) => handler(data));
    connection = {
      write: (bytes) => {
        if (socket.bufferedAmount <= HIGH_WATER) socket.send(bytes);
        else return new Promise((resolve) => socket.send(bytes, () => resolve()));
      },
      onData: (h) => {
        handler = h;
      },
      close: () => socket.terminate(),
    };
  }
  // Log on like a client would, and wait for the ack.
  const acked = new Promise<void>((resolve) => {
    const decoder = new MessageDecoder(() => resolve());
    connection.onData((chunk) => decoder.push(chunk));
  });
  await connection.write(encodeCommand({ command: 'logon', commandId: 'l', clientName: name, ackType: 'processed' }));
  await acked;
  return connection;
}

const publishFrame = encodeCommand({ command: 'publish', topic: TOPIC, data: BODY });

/**
 * How a publisher writes: `turn` publishes PER_TURN messages per event-loop turn (as a service
 * publishing what its events bring: one socket write per turn on both sides); `loop` publishes
 * as fast as it can, the raw side writing 64 KiB batches (then only the kernel copy limits it).
 */
type PublishMode = 'turn' | 'loop';
const PER_TURN = 64;
const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

/** Seconds for the Client to publish `count` messages into the sink. */
async function clientPublish(
  peer: Peer,
  scheme: 'tcp' | 'ws',
  mode: PublishMode,
  body: string | Uint8Array,
  count: number,
): Promise<number> {
  const client = new Client(`sink-client-${scheme}`, { transport: nodeTransport(), sendHighWaterMark: HIGH_WATER });
  await client.connectAndLogon(peer.uri(scheme));
  const { done } = await peer.expectSunk(count);
  const start = performance.now();
  for (let i = 0; i < count; i++) {
    const wait = client.publish(TOPIC, body);
    if (wait) await wait;
    if (mode === 'turn' && i % PER_TURN === PER_TURN - 1) await nextTurn();
  }
  await unlessStalled(done, `${scheme} publish into the sink (Client)`, count, () => peer.counted());
  const seconds = (performance.now() - start) / 1000;
  await client.disconnect();
  return seconds;
}

/** Seconds for a raw socket to write `count` pre-encoded publish frames into the sink. */
async function rawPublish(peer: Peer, scheme: 'tcp' | 'ws', mode: PublishMode, count: number): Promise<number> {
  const connection = await rawConnect(peer.uri(scheme), `sink-raw-${scheme}`);
  const { done } = await peer.expectSunk(count);
  const start = performance.now();
  if (scheme === 'tcp') {
    const batch = mode === 'loop' ? batchOf(publishFrame) : { bytes: repeat(publishFrame, PER_TURN), frames: PER_TURN };
    let left = count;
    while (left > 0) {
      const n = Math.min(batch.frames, left);
      const wait = connection.write(
        n === batch.frames ? batch.bytes : batch.bytes.subarray(0, n * publishFrame.length),
      );
      left -= n;
      if (wait) await wait;
      if (mode === 'turn') await nextTurn();
    }
  } else {
    // One frame per WebSocket message, as every sender must.
    for (let i = 0; i < count; i++) {
      const wait = connection.write(publishFrame);
      if (wait) await wait;
      if (mode === 'turn' && i % PER_TURN === PER_TURN - 1) await nextTurn();
    }
  }
  await unlessStalled(done, `${scheme} publish into the sink (raw socket)`, count, () => peer.counted());
  const seconds = (performance.now() - start) / 1000;
  connection.close();
  return seconds;
}

function repeat(frame: Uint8Array, times: number): Uint8Array {
  const out = new Uint8Array(frame.length * times);
  for (let i = 0; i < times; i++) out.set(frame, i * frame.length);
  return out;
}

/** Seconds from subscribe until the Client's callback has seen `count` deliveries. */
async function clientDelivery(peer: Peer, scheme: 'tcp' | 'ws', count: number): Promise<number> {
  const client = new Client(`source-client-${scheme}`, { transport: nodeTransport() });
  await client.connectAndLogon(peer.uri(scheme));
  await peer.expect(count);
  let seen = 0;
  let finish!: () => void;
  const finished = new Promise<void>((resolve) => {
    finish = resolve;
  });
  const start = performance.now();
  const sub = client.subscribe(TOPIC, {
    onMessage: () => {
      if (++seen === count) finish();
    },
  });
  await sub.ready;
  await unlessStalled(finished, `${scheme} delivery to the Client`, count, () => seen);
  const seconds = (performance.now() - start) / 1000;
  await client.disconnect();
  return seconds;
}

/** Seconds from subscribe until a raw reader has split `count` delivery frames (and the ack). */
async function rawDelivery(
  peer: Peer,
  scheme: 'tcp' | 'ws',
  count: number,
  reader: 'split' | 'naive',
): Promise<number> {
  const connection = await rawConnect(peer.uri(scheme), `source-raw-${scheme}`);
  await peer.expect(count);
  let finish!: () => void;
  const finished = new Promise<void>((resolve) => {
    finish = resolve;
  });
  const target = count + 1; // the subscribe's processed ack, then the deliveries
  let arrived: () => number;
  if (reader === 'split') {
    const frames = new FrameDecoder();
    let seen = 0;
    const onFrame = () => {
      if (++seen === target) finish();
    };
    connection.onData((chunk) => frames.push(chunk, onFrame));
    arrived = () => seen;
  } else {
    const naive = new NaiveReader();
    connection.onData((chunk) => {
      naive.push(chunk);
      if (naive.frames >= target) finish();
    });
    arrived = () => naive.frames;
  }
  const start = performance.now();
  await connection.write(
    encodeCommand({ command: 'subscribe', commandId: 's', subId: 's', topic: TOPIC, ackType: 'processed' }),
  );
  await unlessStalled(finished, `${scheme} delivery to a raw ${reader} reader`, target, arrived);
  const seconds = (performance.now() - start) / 1000;
  connection.close();
  return seconds;
}

/** The obvious reader: split frames, TextDecoder + JSON.parse each header, slice the body. */
class NaiveReader {
  frames = 0;
  #pending: Uint8Array = new Uint8Array(0);
  readonly #text = new TextDecoder();

  push(chunk: Uint8Array): void {
    let bytes = chunk;
    if (this.#pending.length > 0) {
      bytes = new Uint8Array(this.#pending.length + chunk.length);
      bytes.set(this.#pending);
      bytes.set(chunk, this.#pending.length);
    }
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let at = 0;
    while (at + 4 <= bytes.length) {
      const end = at + 4 + view.getUint32(at);
      if (end > bytes.length) break;
      const headerEnd = bytes.indexOf(0x7d, at + 4) + 1;
      const header = JSON.parse(this.#text.decode(bytes.subarray(at + 4, headerEnd))) as { c?: string };
      if (header.c !== undefined) this.frames++;
      at = end;
    }
    this.#pending = bytes.slice(at);
  }
}

/** Best time of each side over `rounds` alternating runs, after one warm-up run of each. */
export async function compare(rounds: number, sides: Array<() => Promise<number>>): Promise<number[]> {
  for (const side of sides) await side();
  const best = sides.map(() => Number.POSITIVE_INFINITY);
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? sides.map((_, i) => i) : sides.map((_, i) => sides.length - 1 - i);
    for (const i of order) {
      const t = await (sides[i] as () => Promise<number>)();
      if (process.env.BENCH_DEBUG) console.error(`    side ${i}: ${t.toFixed(3)} s`);
      best[i] = Math.min(best[i] as number, t);
    }
  }
  return best;
}

const group: BenchGroup = {
  name: 'client',
  description: 'Client publish and delivery vs raw sockets with the same bytes (peer in a child process)',
  async run(context: BenchContext): Promise<BenchResult[]> {
    const rounds = context.quick ? 1 : 4;
    const publishes = context.quick ? 300_000 : 2_000_000;
    const deliveries = context.quick ? 300_000 : 2_000_000;
    const peer = await Peer.start();
    const results: BenchResult[] = [];
    try {
      for (const scheme of ['tcp', 'ws'] as const) {
        const variants: Array<{ mode: PublishMode; body: 'string' | 'bytes' }> =
          scheme === 'tcp'
            ? [
                { mode: 'turn', body: 'string' },
                { mode: 'turn', body: 'bytes' },
                { mode: 'loop', body: 'string' },
              ]
            : [{ mode: 'turn', body: 'string' }];
        for (const { mode, body } of variants) {
          const n = scheme === 'tcp' ? publishes : publishes / 8;
          context.progress(`${scheme} publish (${mode}, ${body} body): ${n.toLocaleString('en-US')} messages per run`);
          const [client, raw] = await compare(rounds, [
            () => clientPublish(peer, scheme, mode, body === 'string' ? BODY : BODY_BYTES, n),
            () => rawPublish(peer, scheme, mode, n),
          ]);
          const how = mode === 'turn' ? `${PER_TURN} per event-loop turn` : 'tight loop';
          results.push({
            name: `${scheme} publish, fire-and-forget, 100 B JSON ${body} body, ${how}`,
            value: n / (client as number),
            unit: 'msgs/s',
            baseline: {
              name:
                scheme === 'ws'
                  ? 'raw ws, pre-encoded, frame per message'
                  : mode === 'turn'
                    ? `raw net.Socket, ${PER_TURN} pre-encoded frames per turn`
                    : 'raw net.Socket, pre-encoded 64 KiB batches',
              value: n / (raw as number),
            },
            // The target applies to the common case (a string body, a batch per turn). The tight
            // loop against 64 KiB memcpy batches is for scale: there the raw side does no
            // per-message work at all.
            ...(scheme === 'tcp' && mode === 'turn' && body === 'string' ? { target: { minRatio: 0.5 } } : {}),
            details: { messages: n, frameBytes: publishFrame.length },
          });
        }

        const d = scheme === 'tcp' ? deliveries : deliveries / 2;
        context.progress(`${scheme} delivery: ${d.toLocaleString('en-US')} messages per run`);
        const [clientD, split, naive] = await compare(rounds, [
          () => clientDelivery(peer, scheme, d),
          () => rawDelivery(peer, scheme, d, 'split'),
          ...(scheme === 'tcp' ? [() => rawDelivery(peer, scheme, d, 'naive')] : []),
        ]);
        const baseline = {
          name: `raw ${scheme === 'tcp' ? 'net.Socket' : 'ws'} reader, FrameDecoder split only`,
          value: d / (split as number),
        };
        results.push({
          name: `${scheme} delivery to a subscribe callback`,
          value: d / (clientD as number),
          unit: 'msgs/s',
          baseline,
          ...(scheme === 'tcp' ? { target: { minRatio: 0.5 } } : {}),
          details: { messages: d },
        });
        if (naive !== undefined) {
          results.push({
            name: `${scheme} delivery, naive reader (TextDecoder + JSON.parse)`,
            value: d / naive,
            unit: 'msgs/s',
            baseline,
          });
        }
      }
    } finally {
      await peer.close();
    }
    return results;
  },
};

export default group;
