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

export interface HealthWeightedOptions {
  /**
   * Consecutive failures that open a server's circuit, keeping it out of the choice for `coolDownMs`.
   * @default 3
   */
  failureThreshold?: number;
  /**
   * How long an open circuit keeps its server out. Afterwards the circuit is half-open: the server
   * may be chosen for one probe attempt, which closes the circuit on success and reopens it on failure.
   * @default 30000
   */
  coolDownMs?: number;
  /**
   * Weight of the newest connect-plus-logon latency in the server's moving average, in (0, 1].
   * @default 0.3
   */
  latencyAlpha?: number;
  /**
   * Added to a server's score for each consecutive failure, in milliseconds of latency: how many
   * milliseconds slower a server that works may be before one that just failed is preferred to it.
   * @default 1000
   */
  failurePenaltyMs?: number;
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
  /** Told when a circuit opens or closes. */
  logger?: Logger;
}

export type CircuitState = 'closed' | 'open' | 'half-open';

/** What the chooser knows about one server; a snapshot, safe to log (the URI is redacted). */
export interface ServerHealth {
  readonly uri: string;
  readonly circuit: CircuitState;
  readonly consecutiveFailures: number;
  readonly failures: number;
  readonly successes: number;
  /** Moving average of connect-plus-logon latency, once a success has reported one. */
  readonly latencyMs: number | undefined;
  /** When an open circuit turns half-open, on the injected clock. */
  readonly openUntil: number | undefined;
  /** Lower is healthier: average latency plus `failurePenaltyMs` per consecutive failure. */
  readonly score: number;
}

interface Server extends ServerRecord {
  consecutiveFailures: number;
  failures: number;
  successes: number;
  latencyMs: number | undefined;
  openUntil: number | undefined;
}

/**
 * Chooses the healthiest server: tracks failures and connect-plus-logon latency (a moving average)
 * per server, and keeps a server that keeps failing out of the choice with a circuit breaker
 * (cool-down, then one half-open probe). Stays on a server that works; chooses again after a failure.
 */
export class HealthWeightedChooser implements ServerChooser {
  /** The resolved options, defaults filled in. */
  readonly options: Readonly<{
    failureThreshold: number;
    coolDownMs: number;
    latencyAlpha: number;
    failurePenaltyMs: number;
  }>;
  readonly #servers: Server[] = [];
  readonly #defaultAuthenticator: Authenticator | undefined;
  readonly #environment: Pick<Environment, 'now'>;
  readonly #logger: Logger | undefined;
  /** The server chosen, kept until an attempt on it fails (the choice must not change mid-attempt). */
  #current: Server | undefined;

  constructor(servers: Iterable<string | ServerEntry> = [], options: HealthWeightedOptions = {}) {
    const resolved = {
      failureThreshold: options.failureThreshold ?? 3,
      coolDownMs: options.coolDownMs ?? 30_000,
      latencyAlpha: options.latencyAlpha ?? 0.3,
      failurePenaltyMs: options.failurePenaltyMs ?? 1_000,
    };
    if (!(Number.isInteger(resolved.failureThreshold) && resolved.failureThreshold >= 1)) {
      invalid('failureThreshold', 'an integer >= 1', resolved.failureThreshold);
    }
    for (const key of ['coolDownMs', 'failurePenaltyMs'] as const) {
      if (!(Number.isFinite(resolved[key]) && resolved[key] >= 0)) invalid(key, 'a finite number >= 0', resolved[key]);
    }
    if (!(resolved.latencyAlpha > 0 && resolved.latencyAlpha <= 1)) {
      invalid('latencyAlpha', 'a number in (0, 1]', resolved.latencyAlpha);
    }
    this.options = Object.freeze(resolved);
    this.#defaultAuthenticator = authenticatorOption(options.authenticator, 'healthWeighted: the authenticator option');
    this.#environment = environmentOption(options.environment, ['now'], 'healthWeighted: environment');
    this.#logger = options.logger;
    this.addAll(...serverListOption('healthWeighted', servers));
  }

  /** Adds a server; among equally healthy servers, the earlier one is chosen. */
  add(uri: string, authenticator?: Authenticator): this {
    this.#servers.push(this.#server(uri, authenticator));
    return this;
  }

  /** Adds servers, each as `add()` does. */
  addAll(...servers: Array<string | ServerEntry>): this {
    for (const server of servers) this.#servers.push(this.#server(server));
    return this;
  }

  getCurrentURI(): string | undefined {
    return this.#choose()?.uri;
  }

  getCurrentAuthenticator(): Authenticator | undefined {
    const server = this.#choose();
    return server && (server.authenticator ?? this.#defaultAuthenticator);
  }

  reportFailure(error: Error, info: ConnectionInfo): void {
    const server = serverFor(this.#servers, info, this.#current);
    if (!server) return;
    const now = this.#environment.now();
    const before = this.#circuit(server, now);
    server.lastError = describeError(error, this.#servers);
    server.failures++;
    server.consecutiveFailures++;
    if (server.consecutiveFailures >= this.options.failureThreshold) {
      server.openUntil = now + this.options.coolDownMs;
      if (before !== 'open') {
        this.#logger?.warn?.(before === 'half-open' ? 'probe failed: circuit reopened' : 'circuit opened', {
          uri: server.redacted,
          consecutiveFailures: server.consecutiveFailures,
          coolDownMs: this.options.coolDownMs,
        });
      }
    }
    if (server === this.#current) this.#current = undefined;
  }

  reportSuccess(info: ConnectionInfo): void {
    const server = serverFor(this.#servers, info, this.#current);
    if (!server) return;
    if (server.openUntil !== undefined) this.#logger?.info?.('circuit closed', { uri: server.redacted });
    server.lastError = undefined;
    server.successes++;
    server.consecutiveFailures = 0;
    server.openUntil = undefined;
    const sample = info.latencyMs;
    if (sample !== undefined && Number.isFinite(sample) && sample >= 0) {
      const alpha = this.options.latencyAlpha;
      server.latencyMs = server.latencyMs === undefined ? sample : alpha * sample + (1 - alpha) * server.latencyMs;
    }
    this.#current = server;
  }

  getError(): string {
    return describeFailures(this.#servers);
  }

  /** What the chooser knows about each server, in the order added. */
  health(): ServerHealth[] {
    const now = this.#environment.now();
    return this.#servers.map((s) =>
      Object.freeze({
        uri: s.redacted,
        circuit: this.#circuit(s, now),
        consecutiveFailures: s.consecutiveFailures,
        failures: s.failures,
        successes: s.successes,
        latencyMs: s.latencyMs,
        openUntil: s.openUntil,
        score: this.#score(s),
      }),
    );
  }

  #choose(): Server | undefined {
    if (this.#current || this.#servers.length === 0) return this.#current;
    const now = this.#environment.now();
    let best: Server | undefined;
    for (const server of this.#servers) {
      if (this.#circuit(server, now) === 'open') continue;
      if (!best || this.#score(server) < this.#score(best)) best = server;
    }
    // Every circuit open: never leave the client with nothing; take the one that reopens first
    // (the delay strategy paces the attempts).
    best ??= this.#servers.reduce((a, b) => ((b.openUntil as number) < (a.openUntil as number) ? b : a));
    this.#current = best;
    return best;
  }

  #circuit(server: Server, now: number): CircuitState {
    if (server.openUntil === undefined) return 'closed';
    return now < server.openUntil ? 'open' : 'half-open';
  }

  #score(server: Server): number {
    return (server.latencyMs ?? 0) + this.options.failurePenaltyMs * server.consecutiveFailures;
  }

  #server(item: string | ServerEntry, authenticator?: Authenticator): Server {
    return {
      ...newServer('healthWeighted', this.#servers, item, authenticator),
      consecutiveFailures: 0,
      failures: 0,
      successes: 0,
      latencyMs: undefined,
      openUntil: undefined,
    };
  }
}

function invalid(option: string, expected: string, got: unknown): never {
  throw new InvalidOptionsError(`healthWeighted: ${option} must be ${expected}, got ${String(got)}`);
}

/** A chooser that prefers the healthiest of `servers`, with a circuit breaker per server. */
export function healthWeighted(
  servers?: Iterable<string | ServerEntry>,
  options?: HealthWeightedOptions,
): HealthWeightedChooser {
  return new HealthWeightedChooser(servers, options);
}
