import {
  type BookmarkStore,
  Bookmarks,
  InvalidOptionsError,
  timeoutOption,
  timestampBookmark,
} from '@amps-ts/core-protocol';

/** Orders unsigned decimal strings (no leading zeros) without converting them to numbers. */
function compareDecimal(a: string, b: string): number {
  return a.length !== b.length ? a.length - b.length : a < b ? -1 : a > b ? 1 : 0;
}

/** Whether `sorted` holds `sequence` at `from` or after (it is in increasing order). */
function isOutstanding(sorted: string[], from: number, sequence: string): boolean {
  let hi = sorted.length;
  while (from < hi) {
    const mid = (from + hi) >>> 1;
    const order = compareDecimal(sorted[mid] as string, sequence);
    if (order === 0) return true;
    if (order < 0) from = mid + 1;
    else hi = mid;
  }
  return false;
}

/** As core-protocol's parseBookmarkId reads one (trailing bar optional); the sequence without leading zeros. */
const idPattern = /^(\d+)\|0*(\d+)\|?$/;
const sequencePattern = /^0*(\d+)\|?$/;

/** The last bookmark split, and its parts: a message's bookmark is split to log it, then to discard it. */
let lastBookmark = '';
let lastId: [publisher: string, sequence: string] | undefined;
/** The last publisher split, a string of its own: not a view of a bookmark, which compares slowly. */
let lastPublisher = '';

/** `publisher|sequence|` split, or undefined for anything else. */
function split(bookmark: string): [publisher: string, sequence: string] | undefined {
  if (typeof bookmark !== 'string') {
    throw new InvalidOptionsError(`bookmark must be a string, got ${String(bookmark)}`);
  }
  let id: [string, string] | undefined;
  // Most messages come from the publisher of the one before: its name is checked in place, and
  // one string stands for it, whose hash the map keeps (hashing a new string for each message, a
  // view of the bookmark at that, was a third of a message's cost in this store).
  const p = lastPublisher.length;
  if (p > 0 && bookmark.charCodeAt(p) === 124 && bookmark.startsWith(lastPublisher)) {
    const match = sequencePattern.exec(bookmark.slice(p + 1));
    if (match) id = [lastPublisher, match[1] as string];
  } else {
    const match = idPattern.exec(bookmark);
    if (match) {
      lastPublisher = [...(match[1] as string)].join('');
      id = [lastPublisher, match[2] as string];
    }
  }
  lastBookmark = bookmark;
  lastId = id;
  return id;
}

/** `split`, for a bookmark that is likely the last one split (not for `log`: comparing costs too). */
function splitAgain(bookmark: string): [publisher: string, sequence: string] | undefined {
  return bookmark === lastBookmark ? lastId : split(bookmark);
}

interface PublisherProgress {
  /** Highest sequence delivered (logged): anything at or below it again is a duplicate. */
  highest: string;
  /** Delivered sequences, in delivery order (which is sequence order); those before `head` are discarded. */
  outstanding: string[];
  head: number;
  discarded: Set<string>;
  /** Last sequence such that it and everything before it from this publisher is discarded. */
  recovery: string | undefined;
}

interface SubscriptionProgress {
  publishers: Map<string, PublisherProgress>;
  /** A log position before every outstanding message (start bookmark or a persisted ack). */
  base: string | undefined;
  /** When `base` was known to be logged (wall clock, ms; for NOW, when it stood for the end of the log); undefined for EPOCH and a start not placed yet. */
  baseAt: number | undefined;
  /** When the subscription started (NOW or a bookmark: the clock; a time: that time): the timestamp never reaches back before it. */
  startedAt: number | undefined;
  outstanding: number;
  /** A range subscription's start bracket and `:end` with its bracket: the recovery point goes between them. */
  range: { open: string; end: string } | undefined;
}

export interface MemoryBookmarkStoreOptions {
  /**
   * How far behind another a replica may log the same message, in ms. The recovery point adds a
   * timestamp this long before its base, so that on a server which logged a message sooner than
   * the old one (from a publisher this subscription had not seen yet) it is replayed, not
   * skipped. 0 adds no timestamp. @default 2000
   */
  replicationLagMs?: number;
  /** Wall-clock time in ms, as the server stamps its log. @default Date.now */
  clock?: () => number;
}

/** A timestamp bookmark's fields (UTC, whole seconds). */
const timePattern = /^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)(\.\d+)?Z?$/;

/** A range, `[start:end]` with either bracket at either end: the start bracket, the start, and `:end` with its bracket. */
const rangePattern = /^\s*([[(])([^:]*)(:[^:]*[\])])\s*$/;

const isNow = (bookmark: string | undefined) => bookmark === Bookmarks.NOW || bookmark === '0|1';

/** One publisher's position in a recovery point (publisher 0 is NOW's `0|1|`: no publisher). */
const positionPattern = /^[1-9]\d*\|\d+\|?$/;

/**
 * A recovery point an earlier run wrote (`getMostRecent`), split for a durable store to start a
 * subscription there: `start`, where the subscription started (a time, EPOCH, NOW or the first
 * position; a range keeps its brackets), to give `persisted`, and each publisher's `positions`,
 * to `log` and `discard` as processed. Starting from `start` rather than the whole point keeps the
 * positions from appearing twice in the next recovery point. Undefined for an empty point.
 */
export function splitRecoveryPoint(point: string): { start: string; positions: string[] } | undefined {
  const range = rangePattern.exec(point);
  const entries = (range ? (range[2] as string) : point).split(',').map((entry) => entry.trim());
  const positions = entries.filter((entry) => positionPattern.test(entry));
  const rest = entries.filter((entry) => entry !== '' && !positionPattern.test(entry));
  const start = rest.length > 0 ? rest.join(',') : positions[0];
  if (start === undefined) return undefined;
  return { start: range ? `${range[1]}${start}${range[3]}` : start, positions };
}

/**
 * Bookmark-subscription progress in memory: duplicate detection by publisher and sequence, and
 * a recovery point (a per-publisher bookmark list) for resubscribing after a failover.
 *
 * Replicas may interleave publishers differently, so progress is kept per publisher; a
 * publisher's recovery point only moves over messages that are discarded (processed), so a
 * message still being handled when the connection drops is replayed, never skipped.
 */
export class MemoryBookmarkStore implements BookmarkStore {
  readonly #subs = new Map<string, SubscriptionProgress>();
  readonly #lagMs: number;
  readonly #clock: () => number;

  constructor(options: MemoryBookmarkStoreOptions = {}) {
    this.#lagMs = timeoutOption(options.replicationLagMs, 'replicationLagMs') ?? 2000;
    if (options.clock !== undefined && typeof options.clock !== 'function') {
      throw new InvalidOptionsError('clock must be a function returning the time in ms');
    }
    this.#clock = options.clock ?? Date.now;
  }

  #sub(subId: string): SubscriptionProgress {
    let sub = this.#subs.get(subId);
    if (!sub) {
      sub = {
        publishers: new Map(),
        base: undefined,
        baseAt: undefined,
        startedAt: undefined,
        outstanding: 0,
        range: undefined,
      };
      this.#subs.set(subId, sub);
    }
    return sub;
  }

  log(subId: string, bookmark: string): boolean {
    const id = split(bookmark);
    if (!id) return true;
    const sub = this.#sub(subId);
    let progress = sub.publishers.get(id[0]);
    if (!progress) {
      progress = { highest: '0', outstanding: [], head: 0, discarded: new Set(), recovery: undefined };
      sub.publishers.set(id[0], progress);
    } else if (compareDecimal(id[1], progress.highest) <= 0) {
      return false;
    }
    progress.highest = id[1];
    progress.outstanding.push(id[1]);
    sub.outstanding++;
    // NOW is no position in a log: a failover would resume at the end of the next server's log
    // and skip what was published in between. The first message is one (it is here already).
    if (isNow(sub.base)) this.#setBase(sub, bookmark);
    return true;
  }

  isDuplicate(subId: string, bookmark: string): boolean {
    const id = splitAgain(bookmark);
    if (!id) return false;
    const progress = this.#subs.get(subId)?.publishers.get(id[0]);
    return progress !== undefined && compareDecimal(id[1], progress.highest) <= 0;
  }

  discard(subId: string, bookmark: string): void {
    const id = splitAgain(bookmark);
    if (!id) return;
    const sub = this.#subs.get(subId);
    const progress = sub?.publishers.get(id[0]);
    if (!sub || !progress) return;
    // A head index and a binary search, not shift() and includes(): a consumer thousands of
    // messages behind would make each discard copy or scan all of them.
    const outstanding = progress.outstanding;
    let head = progress.head;
    if (outstanding[head] === id[1]) {
      // The usual case: messages are processed in order.
      head++;
      progress.recovery = id[1];
    } else if (!progress.discarded.has(id[1]) && isOutstanding(outstanding, head, id[1])) {
      progress.discarded.add(id[1]);
    } else {
      return;
    }
    sub.outstanding--;
    while (head < outstanding.length && progress.discarded.delete(outstanding[head] as string)) {
      progress.recovery = outstanding[head++];
    }
    // Compacted when empty (the usual case), or once the spent slots outnumber the rest.
    if (head === outstanding.length || (head > 1023 && head * 2 > outstanding.length)) {
      progress.outstanding = outstanding.slice(head);
      head = 0;
    }
    progress.head = head;
  }

  getMostRecent(subId: string): string | undefined {
    const sub = this.#subs.get(subId);
    if (!sub) return undefined;
    const list: string[] = [];
    if (sub.base !== undefined) list.push(sub.base);
    // Replicas log messages in different orders: one this subscription never saw may sit before
    // every listed position on the next server. A time before the base reaches back to it.
    if (this.#lagMs > 0 && sub.baseAt !== undefined) {
      // Not before the subscription started, but for the whole second it started in (timestamp
      // bookmarks are whole seconds): rather a message from just before it than one missed after.
      const at = Math.max(sub.baseAt - this.#lagMs, sub.startedAt ?? Number.NEGATIVE_INFINITY);
      list.push(timestampBookmark(new Date(Math.floor(at / 1000) * 1000)));
    }
    const publishers = [...sub.publishers.keys()].sort();
    for (const publisher of publishers) {
      const recovery = sub.publishers.get(publisher)?.recovery;
      if (recovery !== undefined) list.push(`${publisher}|${recovery}|`);
    }
    if (list.length === 0) return undefined;
    // A range resumes inside itself: the recovery point as its start, its end as given. The
    // start keeps its bracket: `[` replays one more message, dropped as a duplicate.
    return sub.range ? `${sub.range.open}${list.join(',')}${sub.range.end}` : list.join(',');
  }

  /**
   * Records a log position the server reported (a `persisted` or `completed` ack), or the
   * subscription's starting bookmark. It becomes the base of the recovery point only while no
   * message is outstanding, since resuming after it must not skip one.
   */
  persisted(subId: string, bookmark: string, ageMs = 0): void {
    const sub = this.#sub(subId);
    if (sub.base !== undefined) {
      if (sub.outstanding === 0) this.#setBase(sub, bookmark, ageMs);
      return;
    }
    // The starting bookmark goes out as given: a time added to it would replay what was logged
    // before it (and to a server holding none of it, would stand in for bookmark_not_found).
    const range = rangePattern.exec(bookmark);
    const start = range ? (range[2] as string) : bookmark;
    if (range) sub.range = { open: range[1] as string, end: range[3] as string };
    sub.startedAt = this.#startTime(start);
    if (sub.outstanding === 0) sub.base = start;
  }

  /** When a subscription starting at `bookmark` starts (a list: its earliest); undefined from EPOCH. */
  #startTime(bookmark: string): number | undefined {
    let start = Number.POSITIVE_INFINITY;
    for (const text of bookmark.split(',')) {
      if (text.trim() === Bookmarks.EPOCH) return undefined;
      const t = timePattern.exec(text.trim())?.map(Number);
      start = Math.min(start, t ? Date.UTC(t[1]!, t[2]! - 1, t[3], t[4], t[5], t[6]) : this.#clock());
    }
    return start;
  }

  #setBase(sub: SubscriptionProgress, bookmark: string, ageMs = 0): void {
    sub.base = bookmark;
    // NOW reported back (the subscription placed): the end of the log at that time, which the
    // timestamp reaches (EPOCH needs none).
    sub.baseAt = bookmark !== Bookmarks.EPOCH ? this.#clock() - ageMs : undefined;
  }

  /** Messages delivered and not yet discarded. */
  outstandingCount(subId: string): number {
    return this.#subs.get(subId)?.outstanding ?? 0;
  }

  purge(subId?: string): void {
    if (subId === undefined) this.#subs.clear();
    else this.#subs.delete(subId);
  }
}

/**
 * Starts `subId` in `store` at a recovery point an earlier run wrote (`getMostRecent`): each
 * publisher's position in it as processed (a replay drops what is at or before it), the rest (a
 * time, EPOCH, NOW) as where the subscription started. For durable stores built on this one: it
 * calls the memory store's own methods, past a subclass's overrides, so that taking back what
 * the store already holds writes nothing. Returns false for an empty point.
 */
export function resumeRecoveryPoint(store: MemoryBookmarkStore, subId: string, point: string): boolean {
  const parts = splitRecoveryPoint(point);
  if (!parts) return false;
  const memory = MemoryBookmarkStore.prototype;
  memory.persisted.call(store, subId, parts.start);
  for (const position of parts.positions) {
    memory.log.call(store, subId, position);
    memory.discard.call(store, subId, position);
  }
  return true;
}
