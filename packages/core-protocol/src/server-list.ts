/*
 * Server-list bookkeeping for ServerChooser plugins: plugins never import each other, so what
 * they share lives here, beside the contract.
 */
import type { Authenticator, ConnectionInfo } from './contracts.js';
import { InvalidOptionsError } from './errors.js';
import { type AmpsUri, parseUri, redactUri } from './uri.js';

/** A server and, optionally, the authenticator to log on to it with. */
export interface ServerEntry {
  /** `scheme://[user[:password]@]host:port/amps/<message type>` */
  uri: string;
  /** Supplies the logon password for this server; without one, the chooser's default is used. */
  authenticator?: Authenticator;
}

/** What a chooser knows about one server. `uri` holds the password: show `redacted` instead. */
export interface ServerRecord {
  readonly uri: string;
  readonly redacted: string;
  readonly authenticator: Authenticator | undefined;
  /** The last failure's text, password redacted; cleared by a success. */
  lastError: string | undefined;
}

/**
 * A chooser's server list, refused when it is one URI string: a string is iterable too, and each
 * character would be taken for a server.
 */
export function serverListOption<T>(chooser: string, servers: Iterable<T>): Iterable<T> {
  if (typeof servers === 'string') {
    throw new InvalidOptionsError(
      `${chooser}: servers must be a list; got the string '${redactUri(servers)}' (wrap it in [ ])`,
    );
  }
  return servers;
}

/**
 * An authenticator, refused unless it has the three methods a logon may call: one without them
 * (a bare token function, say) would fail every logon, and a reconnect loop would retry forever.
 */
export function authenticatorOption(value: Authenticator | undefined, what: string): Authenticator | undefined {
  const methods = ['authenticate', 'retry', 'completed'] as const;
  if (
    value !== undefined &&
    !methods.every((m) => typeof (value as Partial<Authenticator> | null)?.[m] === 'function')
  ) {
    throw new InvalidOptionsError(`${what} must have authenticate(), retry() and completed() methods`);
  }
  return value;
}

/** Validates a new server for `servers`: a well-formed AMPS URI (`InvalidUriError`), not listed twice. */
export function newServer(
  chooser: string,
  servers: readonly ServerRecord[],
  item: string | ServerEntry,
  authenticator?: Authenticator,
): ServerRecord {
  const entry = typeof item === 'string' ? { uri: item, authenticator } : item;
  if (typeof entry !== 'object' || entry === null || typeof entry.uri !== 'string') {
    throw new InvalidOptionsError(
      `${chooser}: a server is a URI string or { uri, authenticator? }, got ${typeof item}`,
    );
  }
  const parsed = parseUri(entry.uri);
  const auth = authenticatorOption(entry.authenticator, `${chooser}: the authenticator for ${parsed.redacted}`);
  const key = serverKey(parsed);
  if (servers.some((s) => serverKey(parseUri(s.uri)) === key)) {
    throw new InvalidOptionsError(`${chooser}: ${parsed.redacted} is already in the list`);
  }
  return { uri: entry.uri, redacted: parsed.redacted, authenticator: auth, lastError: undefined };
}

/**
 * Which server a URI names. Its host name is case-insensitive, as host names are (`A:9007` and
 * `a:9007` are one server, tried twice a round); the rest is not (a user name, a socket path).
 */
function serverKey(uri: AmpsUri): string {
  return JSON.stringify([uri.scheme, uri.user, uri.host.toLowerCase(), uri.port, uri.path, uri.options]);
}

/** The server an attempt report is about: the one tried (`current`) unless `info.uri` names another. */
export function serverFor<S extends ServerRecord>(
  servers: readonly S[],
  info: ConnectionInfo,
  current: S | undefined,
): S | undefined {
  if (current && (current.redacted === info?.uri || current.uri === info?.uri)) return current;
  return servers.find((s) => s.redacted === info?.uri || s.uri === info?.uri) ?? current;
}

/** An error's text with every password hidden: errors may quote the URI they failed on. */
export function describeError(error: unknown, servers: readonly ServerRecord[]): string {
  let text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  for (const s of servers) if (s.uri !== s.redacted) text = text.split(s.uri).join(s.redacted);
  return text.replace(/\b[a-z][a-z0-9+.-]*:\/\/\S*/gi, (uri) => redactUri(uri));
}

/** `getError()`'s text: each server that failed and its last error, passwords hidden. */
export function describeFailures(servers: readonly ServerRecord[]): string {
  if (servers.length === 0) return 'no servers to choose from: add one with add() or addAll()';
  return servers
    .filter((s) => s.lastError !== undefined)
    .map((s) => `${s.redacted} (${s.lastError})`)
    .join('; ');
}
