import { InvalidBookmarkError } from './errors.js';

/**
 * Bookmarks name a message by its publisher: `<publisher name hash>|<publisher sequence>|`.
 * Because the identity is the publisher's, a bookmark means the same message on every replica.
 */
export const Bookmarks = {
  /** Replay the whole transaction log, then go live. */
  EPOCH: '0',
  /** No replay: start with the next message written to the log. */
  NOW: '0|1|',
  /**
   * Resume from the bookmark store's recovery point (EPOCH when it has none).
   * Resolved by the client; never sent to the server.
   */
  MOST_RECENT: 'recent',
} as const;

/** One message identity. Both parts are decimal unsigned 64-bit integers, kept as strings. */
export interface BookmarkId {
  readonly publisher: string;
  readonly sequence: bigint;
}

export type ParsedBookmark =
  | { readonly kind: 'epoch' }
  | { readonly kind: 'now' }
  | { readonly kind: 'most_recent' }
  | { readonly kind: 'id'; readonly id: BookmarkId }
  | { readonly kind: 'timestamp'; readonly timestamp: string; readonly date: Date };

export interface BookmarkRange {
  /** `[` includes the start, `(` starts just after it. */
  readonly startInclusive: boolean;
  readonly start: readonly ParsedBookmark[];
  /** `]` includes the end, `)` stops just before it. */
  readonly endInclusive: boolean;
  readonly end: readonly ParsedBookmark[];
}

const idPattern = /^(\d{1,20})\|(\d{1,20})\|?$/;
const timestampPattern = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(\.\d{1,6})?Z?$/;

function invalid(text: string, why: string): never {
  throw new InvalidBookmarkError(`invalid bookmark '${text.slice(0, 80)}': ${why}`);
}

/** Formats a message identity as it travels: `publisher|sequence|`. */
export function formatBookmark(id: BookmarkId): string {
  return `${id.publisher}|${id.sequence}|`;
}

/** Parses the `publisher|sequence|` form only; `undefined` for anything else. */
export function parseBookmarkId(text: string): BookmarkId | undefined {
  const match = idPattern.exec(text);
  if (!match) return undefined;
  return { publisher: match[1] as string, sequence: BigInt(match[2] as string) };
}

/** Parses one bookmark (no lists, no ranges). */
export function parseBookmark(text: string): ParsedBookmark {
  const t = text.trim();
  if (t === Bookmarks.EPOCH) return { kind: 'epoch' };
  if (t === Bookmarks.NOW || t === '0|1') return { kind: 'now' };
  if (t === Bookmarks.MOST_RECENT) return { kind: 'most_recent' };
  const id = parseBookmarkId(t);
  if (id) return { kind: 'id', id };
  const ts = timestampPattern.exec(t);
  if (ts) {
    const [, y, mo, d, h, mi, s, frac] = ts;
    const ms = frac ? Math.floor(Number(`0${frac}`) * 1000) : 0;
    const date = new Date(Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s), ms));
    // Date.UTC rolls 24:00 or June 31 over into the next unit: a valid time reads back unchanged.
    const readsBack =
      date.getUTCFullYear() === Number(y) &&
      date.getUTCMonth() === Number(mo) - 1 &&
      date.getUTCDate() === Number(d) &&
      date.getUTCHours() === Number(h) &&
      date.getUTCMinutes() === Number(mi) &&
      date.getUTCSeconds() === Number(s);
    if (!readsBack) invalid(text, 'not a valid UTC date and time');
    return { kind: 'timestamp', timestamp: t, date };
  }
  return invalid(text, 'expected publisher|sequence|, 0 (EPOCH), 0|1| (NOW), recent or YYYYMMDDTHHMMSS[Z]');
}

/** Splits and parses a comma-separated bookmark list. */
export function parseBookmarkList(text: string): ParsedBookmark[] {
  if (text.trim() === '') invalid(text, 'empty');
  return text.split(',').map(parseBookmark);
}

/** Formats a timestamp bookmark (`YYYYMMDDTHHMMSSZ`, UTC) for a `Date`. */
export function timestampBookmark(date: Date): string {
  const iso = date.toISOString(); // 2020-06-04T00:00:00.000Z
  return `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}T${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}Z`;
}

/** Parses range syntax: `[start:end]`, `(start:end)`, mixed brackets; each end a bookmark or list. */
export function parseBookmarkRange(text: string): BookmarkRange {
  const t = text.trim();
  const open = t[0];
  const close = t[t.length - 1];
  if ((open !== '[' && open !== '(') || (close !== ']' && close !== ')')) {
    invalid(text, 'a range is [start:end], (start:end), [start:end) or (start:end]');
  }
  const inner = t.slice(1, -1);
  const colon = inner.indexOf(':');
  if (colon < 0) invalid(text, 'a range needs start:end');
  return {
    startInclusive: open === '[',
    start: parseBookmarkList(inner.slice(0, colon)),
    endInclusive: close === ']',
    end: parseBookmarkList(inner.slice(colon + 1)),
  };
}

/** Whether `text` is a bookmark range (`[start:end]`, either bracket): the server ends such a subscription at its end. */
export function isBookmarkRange(text: string | undefined): boolean {
  return text !== undefined && /^\s*[[(]/.test(text);
}

/** Formats a range from its parts. */
export function formatBookmarkRange(
  start: string,
  end: string,
  opts: { startInclusive?: boolean; endInclusive?: boolean } = {},
): string {
  return `${opts.startInclusive ? '[' : '('}${start}:${end}${opts.endInclusive ? ']' : ')'}`;
}

/**
 * Orders two bookmarks of the same publisher by sequence: negative, zero or positive.
 * Bookmarks of different publishers are not ordered: that throws.
 */
export function compareBookmarks(a: string | BookmarkId, b: string | BookmarkId): number {
  const x = typeof a === 'string' ? parseBookmarkId(a) : a;
  const y = typeof b === 'string' ? parseBookmarkId(b) : b;
  if (!x || !y) invalid(String(x ? b : a), 'only publisher|sequence| bookmarks can be compared');
  if (x.publisher !== y.publisher) {
    invalid(
      formatBookmark(y),
      `different publisher than ${formatBookmark(x)}: bookmarks are ordered per publisher only`,
    );
  }
  return x.sequence < y.sequence ? -1 : x.sequence > y.sequence ? 1 : 0;
}

/**
 * Reduces bookmarks to the latest per publisher: the recovery-point list a resubscription sends.
 * Ids only; special values are dropped. Sorted by publisher so equal sets format equally.
 */
export function latestPerPublisher(bookmarks: Iterable<string | BookmarkId>): BookmarkId[] {
  const latest = new Map<string, BookmarkId>();
  for (const b of bookmarks) {
    const id = typeof b === 'string' ? parseBookmarkId(b) : b;
    // NOW (`0|1|`) has the id shape but names no message.
    if (!id || (id.publisher === '0' && id.sequence === 1n)) continue;
    const seen = latest.get(id.publisher);
    if (!seen || seen.sequence < id.sequence) latest.set(id.publisher, id);
  }
  return [...latest.values()].sort((p, q) => (p.publisher < q.publisher ? -1 : p.publisher > q.publisher ? 1 : 0));
}

/** Formats a bookmark list. */
export function formatBookmarkList(ids: Iterable<BookmarkId>): string {
  return [...ids].map(formatBookmark).join(',');
}
