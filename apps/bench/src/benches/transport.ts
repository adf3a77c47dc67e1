/*
 * Send throughput of transport-node's TCP and WebSocket connections against a raw `net` socket
 * and a raw `ws` client writing the same pre-encoded frames to the same local sink. The client
 * side batches frames per tick (as the Client does); over WebSocket every frame is its own
 * message on both sides. Report only.
 */

import { once } from 'node:events';
import * as net from 'node:net';
import { nodeTransport } from '@amps-ts/transport-node';
import type { BenchGroup, BenchResult } from '../runner.js';
import { type WebSocket, ws } from '../ws.js';

const FRAME_BODY = 200;
const BATCH = 64;
const HIGH_WATER = 1024 * 1024;

/** `batches` buffers of BATCH length-prefixed frames each. */
function encodeBatches(batches: number): Uint8Array[] {
  const frame = Buffer.alloc(4 + FRAME_BODY);
  frame.writeUInt32BE(FRAME_BODY);
  frame.write(`{"c":"p","t":"orders","s":1}{"id":1,"qty":100,"note":"${'x'.repeat(FRAME_BODY - 60)}"}`, 4);
  const batch = Buffer.concat(Array.from({ length: BATCH }, () => frame));
  return Array.from({ length: batches }, () => new Uint8Array(batch));
}

/** Resolves when the sink has counted `total` bytes since `reset(total)`. */
interface Sink {
  port: number;
  expect(total: number): Promise<void>;
  close(): Promise<void>;
}

async function tcpSink(): Promise<Sink> {
  let target = 0;
  let received = 0;
  let done: (() => void) | undefined;
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (received >= target) done?.();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    expect(total) {
      received = 0;
      target = total;
      return new Promise((resolve) => {
        done = resolve;
      });
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

async function wsSink(): Promise<Sink & { sockets: WebSocket[] }> {
  let target = 0;
  let received = 0;
  let done: (() => void) | undefined;
  const sockets: WebSocket[] = [];
  const server = new ws.WebSocketServer({ host: '127.0.0.1', port: 0 });
  server.on('connection', (socket: WebSocket) => {
    sockets.push(socket);
    socket.on('error', () => {});
    socket.on('message', (data: Buffer) => {
      received += data.length;
      if (received >= target) done?.();
    });
  });
  await once(server, 'listening');
  return {
    sockets,
    port: (server.address() as net.AddressInfo).port,
    expect(total) {
      received = 0;
      target = total;
      return new Promise((resolve) => {
        done = resolve;
      });
    },
    close: async () => {
      for (const socket of sockets) socket.terminate();
      await new Promise((resolve) => server.close(() => resolve(undefined)));
    },
  };
}

/** Seconds to push `batches` through `send`, waiting for the sink to have every byte. */
async function timed(sink: Sink, batches: Uint8Array[], send: (batch: Uint8Array) => void | Promise<void>) {
  const total = batches.reduce((n, b) => n + b.length, 0);
  const received = sink.expect(total);
  const start = performance.now();
  for (const batch of batches) {
    const wait = send(batch);
    if (wait) await wait;
    // One batch per tick, as the Client flushes.
    await new Promise((resolve) => setImmediate(resolve));
  }
  await received;
  return (performance.now() - start) / 1000;
}

/**
 * Best (shortest) time of each side over `rounds` runs after a warm-up of both, alternating
 * which goes first: the second of two back-to-back runs is measurably favoured.
 */
async function compare(rounds: number, a: () => Promise<number>, b: () => Promise<number>): Promise<[number, number]> {
  await a();
  await b();
  let bestA = Number.POSITIVE_INFINITY;
  let bestB = Number.POSITIVE_INFINITY;
  for (let r = 0; r < rounds; r++) {
    if (r % 2 === 0) {
      bestA = Math.min(bestA, await a());
      bestB = Math.min(bestB, await b());
    } else {
      bestB = Math.min(bestB, await b());
      bestA = Math.min(bestA, await a());
    }
  }
  return [bestA, bestB];
}

const bench: BenchGroup = {
  name: 'transport',
  description: 'transport-node send throughput vs raw net / ws writing the same frames (report only)',
  async run({ quick, progress }) {
    const batches = encodeBatches(quick ? 300 : 3000);
    const frames = batches.length * BATCH;
    const rounds = quick ? 2 : 6;
    const transport = nodeTransport({ highWaterMark: HIGH_WATER });
    const handlers = { onData() {}, onClose() {} };
    const results: BenchResult[] = [];

    const tcp = await tcpSink();
    const tcpConnection = await transport.connect(`tcp://127.0.0.1:${tcp.port}/amps/json`, handlers);
    const raw = net.connect({ host: '127.0.0.1', port: tcp.port, noDelay: true });
    await once(raw, 'connect');
    progress('tcp');
    const [tcpBest, rawBest] = await compare(
      rounds,
      () =>
        timed(tcp, batches, (batch) => {
          tcpConnection.send(batch);
          if (tcpConnection.bufferedAmount > tcpConnection.highWaterMark) return tcpConnection.whenDrained();
        }),
      () =>
        timed(tcp, batches, (batch) => {
          if (!raw.write(batch) && raw.writableLength > HIGH_WATER) return once(raw, 'drain').then(() => {});
        }),
    );
    tcpConnection.close();
    raw.destroy();
    await tcp.close();
    results.push({
      name: `tcp send, ${FRAME_BODY} B frames, ${BATCH} per tick`,
      value: frames / tcpBest,
      unit: 'frames/s',
      baseline: { name: 'raw net.Socket', value: frames / rawBest },
    });

    const wsSinkServer = await wsSink();
    const wsConnection = await transport.connect(`ws://127.0.0.1:${wsSinkServer.port}/amps/json`, handlers);
    const rawWs = new ws.WebSocket(`ws://127.0.0.1:${wsSinkServer.port}/amps/json`, { perMessageDeflate: false });
    await once(rawWs, 'open');
    const frameLength = 4 + FRAME_BODY;
    progress('ws');
    const [wsBest, rawWsBest] = await compare(
      rounds,
      () =>
        timed(wsSinkServer, batches, (batch) => {
          wsConnection.send(batch);
          if (wsConnection.bufferedAmount > wsConnection.highWaterMark) return wsConnection.whenDrained();
        }),
      () =>
        timed(wsSinkServer, batches, (batch) => {
          let last: Promise<void> | undefined;
          for (let at = 0; at < batch.length; at += frameLength) {
            const frame = batch.subarray(at, at + frameLength);
            if (at + frameLength < batch.length || rawWs.bufferedAmount <= HIGH_WATER) rawWs.send(frame);
            else last = new Promise((resolve) => rawWs.send(frame, () => resolve()));
          }
          return last;
        }),
    );
    wsConnection.close();
    rawWs.terminate();
    await wsSinkServer.close();
    results.push({
      name: `ws send, ${FRAME_BODY} B frames, one per message`,
      value: frames / wsBest,
      unit: 'frames/s',
      baseline: { name: 'raw ws client', value: frames / rawWsBest },
    });
    return results;
  },
};

export default bench;
