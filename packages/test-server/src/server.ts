/** A broker instance with its listeners and fault controls. */
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer, type IncomingMessage } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import { InvalidOptionsError } from '@amps-ts/core-protocol';
import { WebSocketServer } from 'ws';
import { Broker, type BrokerStats } from './broker.js';
import { type PeerOptions, resolvePeer, type TestServerOptions } from './options.js';
import { uriHost } from './util.js';
import { tcpWire, webSocketMaxPayload, wsWire } from './wire.js';

export interface TestServerStats extends BrokerStats {
  name: string;
  state: 'running' | 'killed' | 'closed';
  frozen: boolean;
  tcpPort: number;
  wsPort: number | undefined;
}

let instances = 0;

export class TestServer {
  readonly name: string;
  readonly host: string;
  readonly #broker: Broker;
  readonly #options: TestServerOptions;
  #tcpPort: number;
  #wsPort: number | undefined;
  #tcp: Server | undefined = undefined;
  #ws: Server | undefined = undefined;
  #http: HttpServer | undefined = undefined;
  #wss: WebSocketServer | undefined = undefined;
  /** Every accepted socket, on both ports, so `kill()` can destroy them. */
  readonly #sockets = new Set<Socket>();
  /** WebSocket-port sockets accepted while frozen: handed to the HTTP server on `thaw()`. */
  readonly #parked = new Set<Socket>();
  /** WebSocket upgrade requests that arrived while frozen (on sockets accepted before): answered on `thaw()`. */
  readonly #parkedUpgrades = new Map<Socket, { request: IncomingMessage; head: Buffer }>();
  #state: 'new' | 'running' | 'killed' | 'closed' = 'new';
  #lifecycle: Promise<void> = Promise.resolve();

  constructor(options: TestServerOptions = {}) {
    checkPort('tcpPort', options.tcpPort ?? 0);
    if (options.wsPort !== false) checkPort('wsPort', options.wsPort ?? 0);
    this.#options = options;
    this.name = options.name ?? `amps-test-server-${process.pid}-${++instances}`;
    this.host = options.host ?? '127.0.0.1';
    this.#tcpPort = options.tcpPort ?? 0;
    this.#wsPort = options.wsPort === false ? undefined : (options.wsPort ?? 0);
    this.#broker = new Broker(options, this.name);
  }

  /** The TCP port (fixed once started, kept across `restart()`). */
  get tcpPort(): number {
    return this.#tcpPort;
  }

  /** The WebSocket port, or undefined when WebSocket is disabled. */
  get wsPort(): number | undefined {
    return this.#wsPort;
  }

  /** `tcp://host:port/amps/<messageType>`. */
  tcpUri(messageType = 'json'): string {
    return `tcp://${uriHost(this.host)}:${this.#tcpPort}/amps/${messageType}`;
  }

  /** `ws://host:port/amps/<messageType>`. */
  wsUri(messageType = 'json'): string {
    if (this.#wsPort === undefined) throw new InvalidOptionsError(`${this.name}: WebSocket is disabled`);
    return `ws://${uriHost(this.host)}:${this.#wsPort}/amps/${messageType}`;
  }

  /** Starts listening. `startTestServer()` calls it. */
  start(): Promise<void> {
    return this.#serially(() => this.#start());
  }

  /** Like a crashed process: every socket destroyed, listeners closed. Data (memory and files) stays for `restart()`. */
  kill(): Promise<void> {
    return this.#serially(() => this.#kill());
  }

  /** Comes back on the same ports with the same data; replication links reconnect and catch up. */
  restart(): Promise<void> {
    return this.#serially(async () => {
      await this.#kill();
      await this.#start();
    });
  }

  /** Half-open: sockets stay open (new ones are accepted) but nothing is read or written until `thaw()`. */
  freeze(): void {
    if (this.#state !== 'running') return;
    this.#broker.freeze();
  }

  thaw(): void {
    if (this.#state !== 'running') return;
    this.#broker.thaw();
    for (const socket of this.#parked) this.#handToHttp(socket);
    this.#parked.clear();
    const upgrades = [...this.#parkedUpgrades];
    this.#parkedUpgrades.clear();
    for (const [socket, { request, head }] of upgrades) this.#upgrade(request, socket, head);
  }

  /** Destroys every client connection; listeners and replication stay up. */
  dropConnections(): void {
    this.#broker.dropClients();
  }

  /**
   * Adds a replication destination (a peer's TCP port), e.g. once its port is known. An
   * `InvalidOptionsError` for one this server replicates to already (the same host and port).
   */
  addPeer(peer: PeerOptions): void {
    this.#broker.addPeer(resolvePeer(peer));
  }

  stats(): TestServerStats {
    return {
      name: this.name,
      state: this.#state === 'new' ? 'killed' : this.#state,
      frozen: this.#broker.frozen,
      tcpPort: this.#tcpPort,
      wsPort: this.#wsPort,
      ...this.#broker.stats(),
    };
  }

  /** Shuts down for good: every socket, timer and file handle released. */
  close(): Promise<void> {
    return this.#serially(async () => {
      if (this.#state === 'closed') return;
      await this.#kill();
      this.#broker.shutdown();
      this.#state = 'closed';
    });
  }

  /** Runs lifecycle changes one at a time, in call order (a chaos test may overlap them). */
  #serially(operation: () => Promise<void>): Promise<void> {
    const next = this.#lifecycle.then(operation);
    this.#lifecycle = next.catch(() => {});
    return next;
  }

  async #start(): Promise<void> {
    if (this.#state === 'closed') throw new InvalidOptionsError(`${this.name} is closed`);
    if (this.#state === 'running') return;
    await this.#listen();
    this.#state = 'running';
    this.#broker.start();
  }

  async #kill(): Promise<void> {
    if (this.#state !== 'running') return;
    this.#state = 'killed';
    this.#broker.stop();
    await this.#unlisten();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #listen(): Promise<void> {
    const tcp = createServer({ pauseOnConnect: true }, (socket) => this.#onTcp(socket));
    this.#tcp = tcp;
    this.#tcpPort = await listen(tcp, this.#tcpPort, this.host);
    if (this.#wsPort === undefined) return;
    const wss = new WebSocketServer({
      noServer: true,
      perMessageDeflate: false,
      maxPayload: webSocketMaxPayload(this.#options.maxFrameBytes ?? 16 * 1024 * 1024),
    });
    const http = createHttpServer((_request, response) => {
      response.writeHead(426, { 'content-type': 'text/plain' });
      response.end('AMPS over WebSocket: connect with a WebSocket client\n');
    });
    http.on('upgrade', (request: IncomingMessage, socket: Socket, head: Buffer) => {
      // A socket accepted before freeze() can finish its request after: a frozen server answers nothing.
      // Node leaves an upgraded socket unread until a 'data' listener comes, so nothing is lost meanwhile.
      if (this.#broker.frozen) this.#parkedUpgrades.set(socket, { request, head });
      else this.#upgrade(request, socket, head);
    });
    http.on('clientError', (_error, socket) => socket.destroy());
    this.#http = http;
    this.#wss = wss;
    // A plain TCP listener feeds the HTTP server, so a frozen server can hold sockets before any HTTP.
    const ws = createServer({ pauseOnConnect: true }, (socket) => {
      this.#track(socket);
      if (this.#broker.frozen) this.#parked.add(socket);
      else this.#handToHttp(socket);
    });
    this.#ws = ws;
    try {
      this.#wsPort = await listen(ws, this.#wsPort, this.host);
    } catch (error) {
      await this.#unlisten();
      throw error;
    }
  }

  #upgrade(request: IncomingMessage, socket: Socket, head: Buffer): void {
    const wss = this.#wss;
    if (socket.destroyed || !wss) return;
    wss.handleUpgrade(request, socket, head, (ws) => {
      if (this.#state !== 'running') {
        ws.terminate();
        return;
      }
      const remote = `${socket.remoteAddress}:${socket.remotePort}`;
      this.#broker.accept((events) => wsWire(ws, remote, this.#options.wsFrames === 'batch', events));
    });
  }

  #handToHttp(socket: Socket): void {
    if (socket.destroyed || !this.#http) return;
    this.#http.emit('connection', socket);
    socket.resume();
  }

  #onTcp(socket: Socket): void {
    this.#track(socket);
    this.#broker.accept((events) => tcpWire(socket, events));
    if (!this.#broker.frozen) socket.resume();
  }

  #track(socket: Socket): void {
    this.#sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => {
      this.#sockets.delete(socket);
      this.#parked.delete(socket);
      this.#parkedUpgrades.delete(socket);
    });
  }

  async #unlisten(): Promise<void> {
    const servers = [this.#tcp, this.#ws].filter((s): s is Server => s !== undefined);
    this.#tcp = undefined;
    this.#ws = undefined;
    const closed = servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve())));
    for (const socket of this.#sockets) socket.destroy();
    this.#sockets.clear();
    this.#parked.clear();
    this.#parkedUpgrades.clear();
    for (const client of this.#wss?.clients ?? []) client.terminate();
    this.#wss?.close();
    this.#wss = undefined;
    this.#http?.close();
    this.#http = undefined;
    await Promise.all(closed);
  }
}

function checkPort(name: string, port: number): void {
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new InvalidOptionsError(`${name} must be 0..65535, got ${port}`);
  }
}

/**
 * Where a port asked for as 0 is chosen: below the range the OS takes the local ports of outgoing
 * connections from (Linux says which; elsewhere it is IANA's, from 49152). A port from that range,
 * as the OS would give for 0, can be taken while the broker is down by a client's connection to
 * another broker (its local port), and a `restart()` on it then fails with EADDRINUSE.
 */
const listenPortRange: readonly [from: number, to: number] | undefined = (() => {
  let ephemeralFrom = 49152;
  try {
    ephemeralFrom = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
  } catch {
    // Not Linux: IANA's range.
  }
  const from = Math.max(1024, ephemeralFrom - 16384);
  // Too few ports below it (a system that takes almost every port for outgoing connections): the OS's choice.
  return ephemeralFrom - from >= 1024 ? [from, ephemeralFrom - 1] : undefined;
})();

/**
 * Listens on `port`; for 0, on a free port from `listenPortRange`. A restart that finds its port
 * still taken tries again briefly.
 */
async function listen(server: Server, port: number, host: string): Promise<number> {
  if (port === 0 && listenPortRange) {
    const [from, to] = listenPortRange;
    for (let attempt = 0; attempt < 50; attempt++) {
      try {
        return await listenOnce(server, from + Math.floor(Math.random() * (to - from + 1)), host);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw error;
      }
    }
  }
  for (let attempt = 0; ; attempt++) {
    try {
      return await listenOnce(server, port, host);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'EADDRINUSE' || port === 0 || attempt >= 20) throw error;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }
}

/** One `listen`, its listeners removed whichever way it goes. */
function listenOnce(server: Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error) => {
      server.off('listening', onListening);
      reject(error);
    };
    const onListening = () => {
      server.off('error', onError);
      const address = server.address();
      if (address === null || typeof address === 'string') reject(new Error('no TCP address'));
      else resolve(address.port);
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen({ port, host, exclusive: true });
  });
}

/** Starts a broker and resolves once it listens. */
export async function startTestServer(options: TestServerOptions = {}): Promise<TestServer> {
  const server = new TestServer(options);
  try {
    await server.start();
  } catch (error) {
    await server.close();
    throw error;
  }
  return server;
}
