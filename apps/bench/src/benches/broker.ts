/**
 * The test broker's own throughput, so it is never the bottleneck of the client benchmarks.
 * The broker runs in a child process (its own core; worker threads cannot load TypeScript under
 * tsx on Node 20); this process drives it with raw sockets writing pre-encoded frames and counts
 * received frames by their length prefixes (no decoding).
 */
import { type ChildProcess, fork } from 'node:child_process';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { type Command, encodeCommand } from '@amps-ts/core-protocol';
import { startTestServer } from '@amps-ts/test-server';
import { FrameCounter } from '../frame-counter.js';
import type { BenchContext, BenchGroup, BenchResult } from '../runner.js';

const BROKER_ROLE = 'AMPS_TS_BENCH_BROKER';

/* ---------- the child process: one broker ---------- */

if (process.env[BROKER_ROLE] === '1' && process.send) {
  // The parent went away (it crashed or was interrupted): do not outlive it, listening.
  process.on('disconnect', () => process.exit(0));
  const server = await startTestServer({ name: 'bench-broker', wsPort: false });
  process.send({ tcpPort: server.tcpPort });
  process.on('message', async (message) => {
    if (message === 'close') {
      await server.close();
      process.disconnect();
    }
  });
}

/* ---------- the driving side ---------- */

class BrokerProcess {
  constructor(
    readonly tcpPort: number,
    readonly child: ChildProcess,
  ) {}

  static async start(): Promise<BrokerProcess> {
    const child = fork(fileURLToPath(import.meta.url), [], {
      env: { ...process.env, [BROKER_ROLE]: '1' },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const [ready] = (await once(child, 'message')) as [{ tcpPort: number }];
    return new BrokerProcess(ready.tcpPort, child);
  }

  async close(): Promise<void> {
    const exited = once(this.child, 'exit');
    this.child.send('close');
    await exited;
  }
}

interface Peer {
  socket: Socket;
  counter: FrameCounter;
  /** Resolves when `counter.frames` reaches a value. */
  until(frames: number): Promise<void>;
}

async function peer(port: number, name: string, first: Command[]): Promise<Peer> {
  const socket = connect({ host: '127.0.0.1', port });
  socket.setNoDelay(true);
  await once(socket, 'connect');
  const counter = new FrameCounter();
  let waiter: { frames: number; resolve: () => void } | undefined;
  socket.on('data', (chunk) => {
    counter.push(chunk);
    if (waiter && counter.frames >= waiter.frames) {
      const w = waiter;
      waiter = undefined;
      w.resolve();
    }
  });
  const until = (frames: number) =>
    counter.frames >= frames
      ? Promise.resolve()
      : new Promise<void>((resolve) => {
          waiter = { frames, resolve };
        });
  const p: Peer = { socket, counter, until };
  socket.write(encodeCommand({ command: 'logon', commandId: 'l', clientName: name, ackType: 'processed' }));
  await until(1);
  let expected = 1;
  for (const command of first) {
    socket.write(encodeCommand(command));
    expected++;
    await until(expected);
  }
  return p;
}

function publishBatch(topic: string, count: number, bodyBytes: number): Buffer {
  const body = JSON.stringify({ id: 1, sym: 'ABC', pad: 'x'.repeat(Math.max(0, bodyBytes - 30)) });
  const one = encodeCommand({ command: 'publish', topic, data: body });
  return Buffer.concat(Array.from({ length: count }, () => one));
}

async function write(socket: Socket, bytes: Uint8Array): Promise<void> {
  if (!socket.write(bytes)) await once(socket, 'drain');
}

/** Publishes as fast as the broker takes them; the rate is measured up to a flush's processed ack. */
async function ingest(port: number, seconds: number): Promise<{ rate: number; sent: number }> {
  const pub = await peer(port, 'bench-ingest', []);
  const batchSize = 20_000;
  const batch = publishBatch('ingest', batchSize, 100);
  // Warm up.
  for (let i = 0; i < 5; i++) await write(pub.socket, batch);
  await flush(pub);
  let sent = 0;
  const start = performance.now();
  while (performance.now() - start < seconds * 1000) {
    await write(pub.socket, batch);
    sent += batchSize;
  }
  await flush(pub);
  const elapsed = (performance.now() - start) / 1000;
  pub.socket.destroy();
  return { rate: sent / elapsed, sent };
}

async function flush(p: Peer): Promise<void> {
  const target = p.counter.frames + 1;
  p.socket.write(encodeCommand({ command: 'flush', commandId: 'f', ackType: 'processed' }));
  await p.until(target);
}

/** One publisher, `fanOut` subscribers; the publisher keeps a bounded window ahead of the slowest reader. */
async function fanOut(port: number, seconds: number, fanOut: number): Promise<{ rate: number; delivered: number }> {
  const subs: Peer[] = [];
  for (let i = 0; i < fanOut; i++) {
    subs.push(
      await peer(port, `bench-sub-${i}`, [
        { command: 'subscribe', commandId: `s${i}`, topic: 'fan', ackType: 'processed' },
      ]),
    );
  }
  const pub = await peer(port, 'bench-fan-pub', []);
  const batchSize = 2_000;
  const batch = publishBatch('fan', batchSize, 100);
  const base = subs.map((s) => s.counter.frames);
  const slowest = async (published: number) => {
    await Promise.all(subs.map((s, i) => s.until((base[i] as number) + published)));
  };
  let published = 0;
  const run = async (ms: number) => {
    const start = performance.now();
    while (performance.now() - start < ms) {
      await write(pub.socket, batch);
      published += batchSize;
      // At most four batches in flight.
      await slowest(published - 4 * batchSize);
    }
    await slowest(published);
  };
  await run(300); // warm-up
  const before = published;
  const start = performance.now();
  await run(seconds * 1000);
  const elapsed = (performance.now() - start) / 1000;
  const delivered = (published - before) * fanOut;
  for (const s of [...subs, pub]) s.socket.destroy();
  return { rate: delivered / elapsed, delivered };
}

const group: BenchGroup = {
  name: 'broker',
  description: 'test broker throughput (broker in a child process, raw sockets with pre-encoded frames)',
  async run(context: BenchContext): Promise<BenchResult[]> {
    const seconds = context.quick ? 0.5 : 2;
    const broker = await BrokerProcess.start();
    try {
      context.progress('ingest: one publisher, no subscribers, 100-byte bodies');
      const a = await ingest(broker.tcpPort, seconds);
      context.progress('fan-out: one publisher, 10 subscribers');
      const b = await fanOut(broker.tcpPort, seconds, 10);
      return [
        {
          name: 'ingest (no subscribers)',
          value: a.rate,
          unit: 'publishes/s',
          target: { min: 300_000 },
          details: { published: a.sent, bodyBytes: 100 },
        },
        {
          name: 'fan-out to 10 subscribers',
          value: b.rate,
          unit: 'deliveries/s',
          target: { min: 500_000 },
          details: { delivered: b.delivered, subscribers: 10, bodyBytes: 100 },
        },
      ];
    } finally {
      await broker.close();
    }
  },
};

export default group;
