import {
  type Authenticator,
  authenticatorOption,
  type ConnectionInfo,
  describeError,
  describeFailures,
  type Environment,
  environmentOption,
  newServer,
  type ServerChooser,
  type ServerEntry,
  type ServerRecord,
  serverFor,
  serverListOption,
} from '@amps-ts/core-protocol';

export interface ShuffledOptions {
  /**
   * The authenticator for servers added without their own.
   * @default undefined (the HAClient sends the URI's password)
   */
  authenticator?: Authenticator;
  /**
   * Randomness, injectable for tests.
   * @default defaultEnvironment (Math.random)
   */
  environment?: Pick<Environment, 'random'>;
}

/**
 * Round-robin over the servers in an order drawn at random for each chooser, so a fleet of
 * clients spreads over the servers (and, when one server goes, spreads its clients over the rest)
 * instead of all piling onto the first. A failure moves to the next server, a success stays.
 */
export class ShuffledChooser implements ServerChooser {
  readonly #servers: ServerRecord[] = [];
  readonly #defaultAuthenticator: Authenticator | undefined;
  readonly #environment: Pick<Environment, 'random'>;
  #index = 0;
  /** The order is drawn when first needed, so creating a chooser draws nothing. */
  #shuffled = false;

  constructor(servers: Iterable<string | ServerEntry> = [], options: ShuffledOptions = {}) {
    this.#defaultAuthenticator = authenticatorOption(options.authenticator, 'shuffled: the authenticator option');
    this.#environment = environmentOption(options.environment, ['random'], 'shuffled: environment');
    this.addAll(...serverListOption('shuffled', servers));
  }

  /** Adds a server; once the order is drawn, at a random place in it (never moving the current server). */
  add(uri: string, authenticator?: Authenticator): this {
    this.#insert(newServer('shuffled', this.#servers, uri, authenticator));
    return this;
  }

  /** Adds servers, each as `add()` does. */
  addAll(...servers: Array<string | ServerEntry>): this {
    for (const server of servers) this.#insert(newServer('shuffled', this.#servers, server));
    return this;
  }

  getCurrentURI(): string | undefined {
    return this.#current()?.uri;
  }

  getCurrentAuthenticator(): Authenticator | undefined {
    const server = this.#current();
    return server && (server.authenticator ?? this.#defaultAuthenticator);
  }

  reportFailure(error: Error, info: ConnectionInfo): void {
    const current = this.#current();
    const server = serverFor(this.#servers, info, current);
    if (!server) return;
    server.lastError = describeError(error, this.#servers);
    if (server === current) this.#index = (this.#index + 1) % this.#servers.length;
  }

  reportSuccess(info: ConnectionInfo): void {
    const server = serverFor(this.#servers, info, this.#current());
    if (!server) return;
    server.lastError = undefined;
    this.#index = this.#servers.indexOf(server);
  }

  getError(): string {
    return describeFailures(this.#servers);
  }

  #current(): ServerRecord | undefined {
    if (!this.#shuffled && this.#servers.length > 0) {
      this.#shuffled = true;
      // Fisher-Yates: every order equally likely.
      for (let i = this.#servers.length - 1; i > 0; i--) {
        const j = Math.floor(this.#environment.random() * (i + 1));
        [this.#servers[i], this.#servers[j]] = [this.#servers[j] as ServerRecord, this.#servers[i] as ServerRecord];
      }
    }
    return this.#servers[this.#index];
  }

  #insert(server: ServerRecord): void {
    if (!this.#shuffled) {
      this.#servers.push(server);
      return;
    }
    const at = Math.floor(this.#environment.random() * (this.#servers.length + 1));
    this.#servers.splice(at, 0, server);
    if (at <= this.#index) this.#index++;
  }
}

/** A chooser that tries `servers` round-robin, starting from an order drawn at random for this client. */
export function shuffled(servers?: Iterable<string | ServerEntry>, options?: ShuffledOptions): ShuffledChooser {
  return new ShuffledChooser(servers, options);
}
