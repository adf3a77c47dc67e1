import { once } from 'node:events';
import * as net from 'node:net';

/**
 * A raw TCP server on 127.0.0.1 playing a broken or hostile broker: `onData` sees every chunk a
 * client sends, with the socket to answer on. Returns its port; the cleanup it adds to `cleanups`
 * destroys its sockets and closes it.
 */
export async function rawServer(
  cleanups: Array<() => unknown>,
  onData: (chunk: Buffer, socket: net.Socket) => void,
): Promise<number> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
    socket.on('data', (chunk) => onData(chunk, socket));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });
  return (server.address() as net.AddressInfo).port;
}

/** A port on 127.0.0.1 that nothing listens on: transport-node's test helper (these tests reach it by path too). */
export { closedPort } from '../../transport-node/test/helpers.js';
