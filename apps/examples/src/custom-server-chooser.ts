/**
 * A custom `ServerChooser`: this one reads its server list from a discovery service (here, a
 * function) and reads it again once every server it knows has failed, so a client follows a
 * cluster that moves to new hosts.
 *
 *   pnpm --filter @amps-ts/examples start custom-server-chooser
 */
import assert from 'node:assert/strict';
import type { Authenticator, ConnectionInfo, ServerChooser } from '@amps-ts/core-protocol';
import { fixedDelay } from '@amps-ts/delay-fixed';
import { HAClient } from '@amps-ts/ha-client';
import { startTestServer } from '@amps-ts/test-server';
import { nodeTransport } from '@amps-ts/transport-node';

class DiscoveryChooser implements ServerChooser {
  readonly #discover: () => string[];
  #servers: string[];
  #index = 0;
  readonly #errors = new Map<string, string>();

  constructor(discover: () => string[]) {
    this.#discover = discover;
    this.#servers = discover();
  }

  getCurrentURI(): string | undefined {
    return this.#servers[this.#index];
  }

  getCurrentAuthenticator(): Authenticator | undefined {
    return undefined; // the default: send the password in the URI, if any
  }

  reportFailure(error: Error, info: ConnectionInfo): void {
    this.#errors.set(info.uri, error.message);
    this.#index++;
    if (this.#index >= this.#servers.length) {
      this.#servers = this.#discover();
      this.#index = 0;
    }
  }

  reportSuccess(info: ConnectionInfo): void {
    this.#errors.delete(info.uri); // and stay on this server
  }

  getError(): string {
    return [...this.#errors].map(([uri, error]) => `${uri} (${error})`).join('; ');
  }
}

const first = await startTestServer({ name: 'first' });
const second = await startTestServer({ name: 'second' });
const registry = { servers: [first.tcpUri()] }; // stands in for DNS, Consul, a config service...

const client = new HAClient('example-discovery', {
  transport: nodeTransport(),
  chooser: new DiscoveryChooser(() => registry.servers),
  delay: fixedDelay({ delayMs: 100 }),
});
client.onStateChange((e) => console.log(`${e.state.padEnd(18)} ${e.uri ?? ''} ${e.reason ?? ''}`));

try {
  await client.connectAndLogon();
  assert.equal(client.uri, first.tcpUri());

  // The cluster moves: the registry now lists the second server, and the first one goes away.
  const movedOver = new Promise<void>((resolve) => {
    const stop = client.onStateChange((e) => {
      if (e.state === 'Resubscribed') {
        stop();
        resolve();
      }
    });
  });
  registry.servers = [second.tcpUri()];
  await first.close();
  await movedOver;
  assert.equal(client.uri, second.tcpUri());
} finally {
  await client.disconnect();
  await Promise.all([first.close(), second.close()]);
}
