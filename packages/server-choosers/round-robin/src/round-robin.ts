import type { Authenticator, ConnectionInfo, ServerChooser } from '@amps-ts/core-protocol';
import {
  authenticatorOption,
  describeError,
  describeFailures,
  newServer,
  type ServerEntry,
  type ServerRecord,
  serverFor,
  serverListOption,
} from '@amps-ts/core-protocol';

export interface RoundRobinOptions {
  /**
   * The authenticator for servers added without their own.
   * @default undefined (the HAClient sends the URI's password)
   */
  authenticator?: Authenticator;
}

/**
 * Tries the servers in the order given, AMPS's DefaultServerChooser: a failure moves to the next
 * server (wrapping around), a success stays on the server that worked.
 */
export class RoundRobinChooser implements ServerChooser {
  readonly #servers: ServerRecord[] = [];
  readonly #defaultAuthenticator: Authenticator | undefined;
  #index = 0;

  constructor(servers: Iterable<string | ServerEntry> = [], options: RoundRobinOptions = {}) {
    this.#defaultAuthenticator = authenticatorOption(options.authenticator, 'roundRobin: the authenticator option');
    this.addAll(...serverListOption('roundRobin', servers));
  }

  /** Adds a server at the end of the list. Throws an `InvalidUriError` for a malformed URI. */
  add(uri: string, authenticator?: Authenticator): this {
    this.#servers.push(newServer('roundRobin', this.#servers, uri, authenticator));
    return this;
  }

  /** Adds servers at the end of the list, in order. */
  addAll(...servers: Array<string | ServerEntry>): this {
    for (const server of servers) this.#servers.push(newServer('roundRobin', this.#servers, server));
    return this;
  }

  getCurrentURI(): string | undefined {
    return this.#servers[this.#index]?.uri;
  }

  getCurrentAuthenticator(): Authenticator | undefined {
    const server = this.#servers[this.#index];
    return server && (server.authenticator ?? this.#defaultAuthenticator);
  }

  reportFailure(error: Error, info: ConnectionInfo): void {
    const current = this.#servers[this.#index];
    const server = serverFor(this.#servers, info, current);
    if (!server) return;
    server.lastError = describeError(error, this.#servers);
    if (server === current) this.#index = (this.#index + 1) % this.#servers.length;
  }

  reportSuccess(info: ConnectionInfo): void {
    const server = serverFor(this.#servers, info, this.#servers[this.#index]);
    if (!server) return;
    server.lastError = undefined;
    this.#index = this.#servers.indexOf(server);
  }

  getError(): string {
    return describeFailures(this.#servers);
  }
}

/** A chooser that tries `servers` in order, moving on after a failure and staying after a success. */
export function roundRobin(servers?: Iterable<string | ServerEntry>, options?: RoundRobinOptions): RoundRobinChooser {
  return new RoundRobinChooser(servers, options);
}
