import { InvalidOptionsError } from './errors.js';
import type { Command } from './message.js';

/** The `opts` tokens AMPS documents, as a typed object. Unknown tokens go in `extra`. */
export interface CommandOptions {
  replace?: boolean;
  oof?: boolean;
  noEmpties?: boolean;
  sendKeys?: boolean;
  noSowKey?: boolean;
  timestamp?: boolean;
  /** Put bookmarks on deliveries of a non-bookmark subscription. */
  bookmark?: boolean;
  live?: boolean;
  fullyDurable?: boolean;
  bookmarkNotFound?: 'epoch' | 'now' | 'fail';
  /** Replay rate: messages/s (`1000`), bytes/s (`500KB`) or a multiple (`2X`). */
  rate?: string;
  rateMaxGap?: string;
  pause?: boolean;
  resume?: boolean;
  /** `100ms`, `1s`, `auto` or `none`. */
  conflation?: string;
  conflationKey?: readonly string[];
  maxBacklog?: number;
  nonRegexTopic?: boolean;
  topN?: number;
  skipN?: number;
  select?: readonly string[];
  grouping?: readonly string[];
  projection?: readonly string[];
  /** Queue acknowledgement: return the message to the queue. */
  cancel?: boolean;
  /** Queue acknowledgement: expire the message now. */
  expire?: boolean;
  leaseExtension?: string;
  /** Logon: persisted-ack conflation interval, e.g. `100ms`. */
  ackConflation?: string;
  pretty?: boolean;
  /** Tokens written as they are, after the known ones. */
  extra?: readonly string[];
}

const flags: ReadonlyArray<readonly [keyof CommandOptions, string]> = [
  ['replace', 'replace'],
  ['oof', 'oof'],
  ['noEmpties', 'no_empties'],
  ['sendKeys', 'send_keys'],
  ['noSowKey', 'no_sowkey'],
  ['timestamp', 'timestamp'],
  ['bookmark', 'bookmark'],
  ['live', 'live'],
  ['fullyDurable', 'fully_durable'],
  ['pause', 'pause'],
  ['resume', 'resume'],
  ['nonRegexTopic', 'non_regex_topic'],
  ['cancel', 'cancel'],
  ['expire', 'expire'],
  ['pretty', 'pretty'],
];

const values: ReadonlyArray<readonly [keyof CommandOptions, string]> = [
  ['bookmarkNotFound', 'bookmark_not_found'],
  ['rate', 'rate'],
  ['rateMaxGap', 'rate_max_gap'],
  ['conflation', 'conflation'],
  ['maxBacklog', 'max_backlog'],
  ['topN', 'top_n'],
  ['skipN', 'skip_n'],
  ['leaseExtension', 'lease_extension'],
  ['ackConflation', 'ack_conflation'],
];

const lists: ReadonlyArray<readonly [keyof CommandOptions, string]> = [
  ['conflationKey', 'conflation_key'],
  ['select', 'select'],
  ['grouping', 'grouping'],
  ['projection', 'projection'],
];

/** Builds an `opts` header value from a typed options object. */
export function formatOptions(options: CommandOptions): string {
  const tokens: string[] = [];
  for (const [name, token] of flags) if (options[name] === true) tokens.push(token);
  for (const [name, token] of values) {
    const value = options[name];
    if (value === undefined) continue;
    if (typeof value === 'number') {
      if (!Number.isSafeInteger(value) || value < 0) {
        throw new InvalidOptionsError(`option ${name} must be a non-negative integer, got ${value}`);
      }
    } else {
      checkText(name, value);
    }
    tokens.push(`${token}=${value}`);
  }
  for (const [name, token] of lists) {
    const value = options[name] as readonly string[] | undefined;
    if (value === undefined) continue;
    for (const item of value) checkText(name, item);
    tokens.push(`${token}=[${value.join(',')}]`);
  }
  for (const token of options.extra ?? []) {
    if (typeof token !== 'string' || token.trim() === '' || splitOptions(token).length !== 1) {
      throw new InvalidOptionsError(`extra option tokens must be single non-empty tokens, got '${String(token)}'`);
    }
    tokens.push(token);
  }
  return tokens.join(',');
}

/** A value written inside `opts`: a comma or bracket in it would change how the server splits the list. */
function checkText(name: string, value: unknown): void {
  if (typeof value !== 'string' || value === '' || /[,[\]]/.test(value)) {
    throw new InvalidOptionsError(
      `option ${name} must be a non-empty string without ',', '[' or ']', got '${String(value)}'`,
    );
  }
}

/** Splits an `opts` value on commas outside brackets (`select=[/a,/b]` stays whole). */
export function splitOptions(opts: string | undefined): string[] {
  if (!opts) return [];
  const out: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < opts.length; i++) {
    const c = opts[i];
    if (c === '[') depth++;
    else if (c === ']') depth = Math.max(0, depth - 1);
    else if (c === ',' && depth === 0) {
      out.push(opts.slice(start, i).trim());
      start = i + 1;
    }
  }
  out.push(opts.slice(start).trim());
  return out.filter((t) => t !== '');
}

/** Parses an `opts` value into `token -> value` (`true` for a bare flag). */
export function parseOptions(opts: string | undefined): Map<string, string | true> {
  const map = new Map<string, string | true>();
  for (const token of splitOptions(opts)) {
    const eq = token.indexOf('=');
    if (eq < 0) map.set(token, true);
    else map.set(token.slice(0, eq), token.slice(eq + 1));
  }
  return map;
}

/** Whether AMPS can pause a subscription made by `command`: a bookmark `subscribe`, not `live`. */
export function canPause(command: Command | undefined): boolean {
  return (
    command?.command === 'subscribe' && command.bookmark !== undefined && !parseOptions(command.options).has('live')
  );
}

/**
 * Adds tokens to an existing `opts` value. A later `key=value` replaces an earlier token with the
 * same key in place (merging `max_backlog=5` into `max_backlog=3` means 5, and AMPS must not get
 * both); repeated flags are kept once. Each argument may itself be a list (`'pretty,ack_conflation=100ms'`).
 */
export function mergeOptions(opts: string | undefined, ...more: string[]): string {
  const tokens: string[] = [];
  for (const token of [opts ?? '', ...more].flatMap((m) => splitOptions(m))) {
    const key = optionKey(token);
    const at = tokens.findIndex((t) => optionKey(t) === key);
    if (at < 0) tokens.push(token);
    else tokens[at] = token;
  }
  return tokens.join(',');
}

/** The name of an `opts` token: the text before `=`, or the whole flag. */
function optionKey(token: string): string {
  const eq = token.indexOf('=');
  return eq < 0 ? token : token.slice(0, eq);
}
