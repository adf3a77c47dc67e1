import { once } from 'node:events';
import * as https from 'node:https';
import type * as net from 'node:net';
import * as tls from 'node:tls';
import { AbortError, CertificateError, TimedOutError } from '@amps-ts/core-protocol';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { nodeTransport } from '../src/index.js';
import {
  concat,
  failure,
  frame,
  leakCheck,
  Recorder,
  readBytes,
  TcpServer,
  type TestCertificates,
  testCertificates,
} from './helpers.js';

let certs: TestCertificates;
let leaks: ReturnType<typeof leakCheck>;
let cleanups: Array<() => unknown>;
beforeEach(async () => {
  certs = await testCertificates();
  leaks = leakCheck();
  cleanups = [];
});
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  await leaks.check();
});

async function tlsServer(options: tls.TlsOptions = {}): Promise<{ server: TcpServer; port: number }> {
  const server = new TcpServer(tls.createServer({ cert: certs.cert, key: certs.key, ...options }), 'secureConnection');
  server.server.on('tlsClientError', () => {});
  const port = await server.listen();
  cleanups.push(() => server.close());
  return { server, port };
}

async function wssServer(options: https.ServerOptions = {}) {
  const httpsServer = https.createServer({ cert: certs.cert, key: certs.key, ...options });
  httpsServer.on('tlsClientError', () => {});
  const wss = new WebSocketServer({ server: httpsServer });
  httpsServer.listen(0, '127.0.0.1');
  await once(httpsServer, 'listening');
  const connections: Array<import('ws').WebSocket> = [];
  wss.on('connection', (ws) => connections.push(ws));
  cleanups.push(async () => {
    for (const ws of connections) ws.terminate();
    wss.close();
    httpsServer.closeAllConnections();
    await new Promise((resolve) => httpsServer.close(resolve));
  });
  const next = () => once(wss, 'connection') as Promise<[import('ws').WebSocket, import('node:http').IncomingMessage]>;
  return { port: (httpsServer.address() as net.AddressInfo).port, next };
}

/** Collects the process warnings emitted until the test ends. */
function recordWarnings(): Error[] {
  const warnings: Error[] = [];
  const onWarning = (warning: Error) => warnings.push(warning);
  process.on('warning', onWarning);
  cleanups.push(() => process.off('warning', onWarning));
  return warnings;
}

/** Lets a warning emitted on the next tick arrive. */
const warningsFlushed = () => new Promise((resolve) => setImmediate(resolve));

describe('tcps://', () => {
  it('connects with the CA given, verifies the certificate and carries bytes both ways', async () => {
    const { server, port } = await tlsServer();
    const recorder = new Recorder();
    const connection = await nodeTransport({ tls: { ca: certs.ca } }).connect(
      `tcps://127.0.0.1:${port}/amps/json`,
      recorder,
    );
    expect(connection.description).toMatch(new RegExp(`^tcps 127\\.0\\.0\\.1:\\d+ -> 127\\.0\\.0\\.1:${port}$`));
    const peer = await server.accepted();
    const out = concat(frame('{"c":"logon"}'), frame('{"c":"p"}x'));
    connection.send(out);
    expect(await readBytes(peer, out.length)).toEqual(out);
    peer.write(frame('{"c":"ack"}'));
    expect(await recorder.waitForBytes(15)).toEqual(frame('{"c":"ack"}'));
    connection.close();
    expect(await recorder.closed).toBeUndefined();
  });

  it('refuses a certificate no trusted CA signed, saying so', async () => {
    const { port } = await tlsServer();
    const error = await failure(
      nodeTransport().connect(`tcps://alice:s3cret@127.0.0.1:${port}/amps/json`, new Recorder()),
    );
    expect(CertificateError.isInstance(error) && { code: error.code, retryable: error.isRetryable }).toEqual({
      code: 'certificate',
      retryable: true,
    });
    expect(error.message).toContain(`cannot connect to tcps://alice:***@127.0.0.1:${port}/amps/json`);
    expect(error.message).toContain("the server's TLS certificate is not trusted");
    expect(error.message).not.toContain('s3cret');
    expect((error.cause as { code?: string }).code).toBe('UNABLE_TO_VERIFY_LEAF_SIGNATURE');
  });

  it('honours servername for SNI and verification', async () => {
    const { server, port } = await tlsServer({ cert: certs.namedCert, key: certs.namedKey });
    const recorder = new Recorder();
    const connection = await nodeTransport({ tls: { ca: certs.ca, servername: 'amps.test' } }).connect(
      `tcps://127.0.0.1:${port}/amps/json`,
      recorder,
    );
    expect(((await server.accepted()) as tls.TLSSocket).servername).toBe('amps.test');
    connection.close();
    await recorder.closed;

    const error = await failure(
      nodeTransport({ tls: { ca: certs.ca } }).connect(`tcps://127.0.0.1:${port}/amps/json`, new Recorder()),
    );
    expect(CertificateError.isInstance(error)).toBe(true);
    expect(error.message).toContain("the server's TLS certificate does not match the host name");
  });

  it('an IP address as servername is not sent as SNI (RFC 6066) but is what the certificate is checked against', async () => {
    const warnings = recordWarnings();
    const { server, port } = await tlsServer();
    const recorder = new Recorder();
    const connection = await nodeTransport({ tls: { ca: certs.ca, servername: '127.0.0.1' } }).connect(
      `tcps://localhost:${port}/amps/json`,
      recorder,
    );
    expect(((await server.accepted()) as tls.TLSSocket).servername).toBe(false);
    connection.close();
    await recorder.closed;
    // The same for a URI whose host is an IP address.
    const byAddress = new Recorder();
    const second = await nodeTransport({ tls: { ca: certs.ca } }).connect(`tcps://127.0.0.1:${port}/amps`, byAddress);
    expect(((await server.accepted(1)) as tls.TLSSocket).servername).toBe(false);
    second.close();
    await byAddress.closed;

    const named = await tlsServer({ cert: certs.namedCert, key: certs.namedKey });
    const error = await failure(
      nodeTransport({ tls: { ca: certs.ca, servername: '127.0.0.1' } }).connect(
        `tcps://localhost:${named.port}/amps/json`,
        new Recorder(),
      ),
    );
    expect(CertificateError.isInstance(error)).toBe(true);
    expect(error.message).toContain('IP: 127.0.0.1 is not in the cert');
    await warningsFlushed();
    expect(warnings).toEqual([]);
  });

  it('presents a client certificate to a server that requires one', async () => {
    const { server, port } = await tlsServer({ ca: certs.ca, requestCert: true, rejectUnauthorized: true });
    const recorder = new Recorder();
    const connection = await nodeTransport({
      tls: { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey },
    }).connect(`tcps://localhost:${port}/amps/json`, recorder);
    const peer = (await server.accepted()) as tls.TLSSocket;
    expect(peer.authorized).toBe(true);
    expect(peer.getPeerCertificate().subject.CN).toBe('client.amps.test');
    connection.close();
    await recorder.closed;
  });

  it('times out with TimedOutError when the TLS handshake never completes, leaving no socket', async () => {
    const { tcp, port } = await (async () => {
      const tcp = new TcpServer();
      const port = await tcp.listen();
      cleanups.push(() => tcp.close());
      return { tcp, port };
    })();
    const error = await failure(
      nodeTransport({ tls: { ca: certs.ca } }).connect(`tcps://127.0.0.1:${port}/amps/json`, new Recorder(), {
        timeoutMs: 100,
      }),
    );
    expect(TimedOutError.isInstance(error)).toBe(true);
    const peer = await tcp.accepted();
    peer.resume();
    await once(peer, 'close');
  });

  it('aborts a TLS handshake in progress with AbortError', async () => {
    const tcp = new TcpServer();
    const port = await tcp.listen();
    cleanups.push(() => tcp.close());
    const controller = new AbortController();
    const pending = nodeTransport().connect(`tcps://127.0.0.1:${port}/amps/json`, new Recorder(), {
      signal: controller.signal,
    });
    const peer = await tcp.accepted();
    await readBytes(peer, 1); // the ClientHello
    controller.abort();
    expect(AbortError.isInstance(await failure(pending))).toBe(true);
    await once(peer, 'close');
  });
});

describe('wss://', () => {
  it('connects with the CA given and exchanges frames', async () => {
    const { port, next } = await wssServer();
    const accepted = next();
    const recorder = new Recorder();
    const connection = await nodeTransport({ tls: { ca: certs.ca } }).connect(
      `wss://127.0.0.1:${port}/amps/json`,
      recorder,
    );
    const [ws, request] = await accepted;
    expect(request.url).toBe('/amps/json');
    expect(connection.description).toMatch(
      new RegExp(`^wss 127\\.0\\.0\\.1:\\d+ -> 127\\.0\\.0\\.1:${port}/amps/json$`),
    );
    const message = once(ws, 'message');
    connection.send(frame('{"c":"logon"}'));
    expect(Buffer.from((await message)[0] as Buffer)).toEqual(Buffer.from(frame('{"c":"logon"}')));
    ws.send(frame('{"c":"ack"}'));
    expect(await recorder.waitForBytes(15)).toEqual(frame('{"c":"ack"}'));
    connection.close();
    expect(await recorder.closed).toBeUndefined();
  });

  it('refuses an untrusted certificate, saying so', async () => {
    const { port } = await wssServer();
    const error = await failure(nodeTransport().connect(`wss://127.0.0.1:${port}/amps/json`, new Recorder()));
    expect(CertificateError.isInstance(error)).toBe(true);
    expect(error.message).toContain("the server's TLS certificate is not trusted");
  });

  it('honours servername', async () => {
    const { port, next } = await wssServer({ cert: certs.namedCert, key: certs.namedKey });
    const accepted = next();
    const recorder = new Recorder();
    const connection = await nodeTransport({ tls: { ca: certs.ca, servername: 'amps.test' } }).connect(
      `wss://127.0.0.1:${port}/amps/json`,
      recorder,
    );
    const [, request] = await accepted;
    expect((request.socket as tls.TLSSocket).servername).toBe('amps.test');
    connection.close();
    await recorder.closed;
  });

  it('an IP address as servername is not sent as SNI (RFC 6066) but is what the certificate is checked against', async () => {
    const warnings = recordWarnings();
    const { port, next } = await wssServer();
    const accepted = next();
    const recorder = new Recorder();
    const connection = await nodeTransport({ tls: { ca: certs.ca, servername: '127.0.0.1' } }).connect(
      `wss://localhost:${port}/amps/json`,
      recorder,
    );
    const [, request] = await accepted;
    expect((request.socket as tls.TLSSocket).servername).toBe(false);
    connection.close();
    await recorder.closed;

    const named = await wssServer({ cert: certs.namedCert, key: certs.namedKey });
    const error = await failure(
      nodeTransport({ tls: { ca: certs.ca, servername: '127.0.0.1' } }).connect(
        `wss://localhost:${named.port}/amps/json`,
        new Recorder(),
      ),
    );
    expect(CertificateError.isInstance(error)).toBe(true);
    expect(error.message).toContain('IP: 127.0.0.1 is not in the cert');
    await warningsFlushed();
    expect(warnings).toEqual([]);
  });

  it("an IP address as servername keeps the application's own webSocket.checkServerIdentity, given that address", async () => {
    const { port, next } = await wssServer({ cert: certs.namedCert, key: certs.namedKey });
    const accepted = next();
    const checked: string[] = [];
    const recorder = new Recorder();
    const connection = await nodeTransport({
      tls: { ca: certs.ca, servername: '127.0.0.1' },
      // Pinning, say: the application's check decides, not the default one.
      webSocket: {
        checkServerIdentity: (host: string) => {
          checked.push(host);
          return false; // no error: accepted
        },
      },
    }).connect(`wss://localhost:${port}/amps/json`, recorder);
    await accepted;
    expect(checked).toEqual(['127.0.0.1']);
    connection.close();
    await recorder.closed;
  });
});
