import {
  type Authenticator,
  authenticatorOption,
  type ConnectionInfo,
  describeError,
  describeFailures,
  type Environment,
  environmentOption,
  InvalidOptionsError,
  type Logger,
  newServer,
  type ServerChooser,
  type ServerEntry,
  type ServerRecord,
  serverFor,
  serverListOption,
} from '@amps-ts/core-protocol';

export interface PriorityFailbackOptions {
  /**
   * How long a more-preferred server must go without a reported failure before the client fails
   * back to it. The chooser cannot see a server it is not connected to, so "healthy" means "not
   * known to have failed for this long".
   * @default 30000
   */
  failbackAfterMs?: number;
  /**
   * Each failed fail-back to a server (an attempt that fails, or one that drops before it has held
   * for `failbackAfterMs`) doubles that server's wait, up to this much, so a server that stays down
   * or keeps dropping is not retried (and the working connection dropped) every `failbackAfterMs`.
   * @default 300000, or `failbackAfterMs` if that is larger
   */
  maximumFailbackAfterMs?: number;
  /**
   * The authenticator for servers added without their own.
   * @default undefined (the HAClient sends the URI's password)
   */
  authenticator?: Authenticator;
  /**
   * Clock, injectable for tests.
   * @default defaultEnvironment (performance.now)
   */
  environment?: Pick<Environment, 'now'>;
  /** Told when the chooser decides to fail back. */
  logger?: Logger;
}

interface Server extends ServerRecord {
  /** When a failure was last reported, on the injected clock. */
  lastFailureAt: number | undefined;
  /** Failed fail-backs in a row (attempts that failed, or dropped before holding); doubles the wait each time. */
  failedFailbacks: number;
  /** When a fail-back to it last succeeded: until it has held for failbackAfterMs, a drop counts as a failed fail-back. */
  failedBackAt: number | undefined;
}

/**
 * An ordered preference: the first server is the primary. A failure moves to the most-preferred
 * server not known to be down (else the next in order); once connected elsewhere, `shouldSwitch`
 * returns the client to a more-preferred server after it has gone `failbackAfterMs` without a
 * failure.
 */
export class PriorityFailbackChooser implements ServerChooser {
  /** The resolved options, defaults filled in. */
  readonly options: Readonly<{ failbackAfterMs: number; maximumFailbackAfterMs: number }>;
  readonly #servers: Server[] = [];
  readonly #defaultAuthenticator: Authenticator | undefined;
  readonly #environment: Pick<Environment, 'now'>;
  readonly #logger: Logger | undefined;
  #index = 0;
  /** The server `shouldSwitch` sent the client to, until the attempt is reported. */
  #failingBackTo: Server | undefined;
  /** Servers that failed since the last success: skipped on failover until each server has had its turn. */
  readonly #failedSinceSuccess = new Set<Server>();

  constructor(servers: Iterable<string | ServerEntry> = [], options: PriorityFailbackOptions = {}) {
    const failbackAfterMs = options.failbackAfterMs ?? 30_000;
    const maximumFailbackAfterMs = options.maximumFailbackAfterMs ?? Math.max(300_000, failbackAfterMs);
    if (!(Number.isFinite(failbackAfterMs) && failbackAfterMs >= 0)) {
      invalid('failbackAfterMs', 'a finite number >= 0', failbackAfterMs);
    }
    if (!(Number.isFinite(maximumFailbackAfterMs) && maximumFailbackAfterMs >= failbackAfterMs)) {
      invalid(
        'maximumFailbackAfterMs',
        `a finite number >= failbackAfterMs (${failbackAfterMs})`,
        maximumFailbackAfterMs,
      );
    }
    this.options = Object.freeze({ failbackAfterMs, maximumFailbackAfterMs });
    this.#defaultAuthenticator = authenticatorOption(
      options.authenticator,
      'priorityFailback: the authenticator option',
    );
    this.#environment = environmentOption(options.environment, ['now'], 'priorityFailback: environment');
    this.#logger = options.logger;
    this.addAll(...serverListOption('priorityFailback', servers));
  }

  /** Adds a server at the end of the list: the least preferred. */
  add(uri: string, authenticator?: Authenticator): this {
    this.#servers.push(this.#server(uri, authenticator));
    return this;
  }

  /** Adds servers at the end of the list, most preferred first. */
  addAll(...servers: Array<string | ServerEntry>): this {
    for (const server of servers) this.#servers.push(this.#server(server));
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
    const now = this.#environment.now();
    server.lastError = describeError(error, this.#servers);
    server.lastFailureAt = now;
    // A primary that accepts the fail-back and drops at once has not recovered: without this it
    // would be failed back to every failbackAfterMs.
    const heldSince = server.failedBackAt;
    if (server === this.#failingBackTo || (heldSince !== undefined && now - heldSince < this.options.failbackAfterMs)) {
      server.failedFailbacks++;
    } else if (heldSince !== undefined) {
      server.failedFailbacks = 0;
    }
    server.failedBackAt = undefined;
    this.#failingBackTo = undefined;
    this.#failedSinceSuccess.add(server);
    if (server !== current) return;
    const failed = this.#index;
    // A server that failed in this outage is not offered again before the others have been tried,
    // however long ago it failed: else two dead servers could take turns and a live one never come up.
    const preferred = this.#servers.findIndex((s) => !this.#failedSinceSuccess.has(s) && this.#isEligible(s, now));
    if (preferred < 0) this.#failedSinceSuccess.clear();
    this.#index = preferred >= 0 ? preferred : (failed + 1) % this.#servers.length;
  }

  reportSuccess(info: ConnectionInfo): void {
    const server = serverFor(this.#servers, info, this.#servers[this.#index]);
    if (!server) return;
    server.lastError = undefined;
    if (server === this.#failingBackTo) server.failedBackAt = this.#environment.now();
    else server.failedFailbacks = 0;
    this.#failingBackTo = undefined;
    this.#failedSinceSuccess.clear();
    this.#index = this.#servers.indexOf(server);
  }

  /**
   * Polled while connected: true when a more-preferred server has gone long enough without a
   * failure; `getCurrentURI()` then returns it.
   */
  shouldSwitch(connectedUri: string): boolean {
    const connected = this.#servers.findIndex((s) => s.uri === connectedUri || s.redacted === connectedUri);
    if (connected <= 0) return false;
    const now = this.#environment.now();
    const target = this.#servers.findIndex((s, i) => i < connected && this.#isEligible(s, now));
    if (target < 0) return false;
    const server = this.#servers[target] as Server;
    this.#logger?.info?.('failing back to a preferred server', {
      from: this.#servers[connected]?.redacted,
      to: server.redacted,
      quietForMs: server.lastFailureAt === undefined ? undefined : now - server.lastFailureAt,
    });
    this.#index = target;
    this.#failingBackTo = server;
    return true;
  }

  /**
   * The fail-back `shouldSwitch` asked for was called off before its attempt (the application
   * disconnected): the next attempt there is an ordinary one, and does not count as a fail-back.
   */
  reportSwitchCancelled(): void {
    this.#failingBackTo = undefined;
  }

  getError(): string {
    return describeFailures(this.#servers);
  }

  /** Not known to be down: no failure within its fail-back wait. */
  #isEligible(server: Server, now: number): boolean {
    if (server.lastFailureAt === undefined) return true;
    const { failbackAfterMs, maximumFailbackAfterMs } = this.options;
    // After about 1000 failed fail-backs the doubling is Infinity, and 0 × Infinity is NaN: 0 stays 0.
    const waitMs =
      failbackAfterMs === 0 ? 0 : Math.min(maximumFailbackAfterMs, failbackAfterMs * 2 ** server.failedFailbacks);
    return now - server.lastFailureAt >= waitMs;
  }

  #server(item: string | ServerEntry, authenticator?: Authenticator): Server {
    return {
      ...newServer('priorityFailback', this.#servers, item, authenticator),
      lastFailureAt: undefined,
      failedFailbacks: 0,
      failedBackAt: undefined,
    };
  }
}

function invalid(option: string, expected: string, got: unknown): never {
  throw new InvalidOptionsError(`priorityFailback: ${option} must be ${expected}, got ${String(got)}`);
}

/** A chooser that prefers `servers` in the order given and fails back to a preferred server once it is healthy. */
export function priorityFailback(
  servers?: Iterable<string | ServerEntry>,
  options?: PriorityFailbackOptions,
): PriorityFailbackChooser {
  return new PriorityFailbackChooser(servers, options);
}
