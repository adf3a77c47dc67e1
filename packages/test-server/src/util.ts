const FNV_OFFSET = 0xcbf29ce484222325n;
const FNV_PRIME = 0x100000001b3n;
const MASK = 0xffffffffffffffffn;
const utf8 = new TextEncoder();

/**
 * FNV-1a 64 of a string's UTF-8 bytes, in decimal: the publisher id of a client name. Stable across
 * instances and restarts, so a bookmark names the same message on every replica.
 */
export function nameHash(text: string): string {
  let hash = FNV_OFFSET;
  for (const byte of utf8.encode(text)) hash = ((hash ^ BigInt(byte)) * FNV_PRIME) & MASK;
  return hash.toString();
}

/** `publisher|sequence|`. */
export function bookmarkOf(publisher: string, sequence: number): string {
  return `${publisher}|${sequence}|`;
}

/** AMPS timestamp format, `YYYYMMDDTHHMMSS.ffffffZ`, for epoch milliseconds. */
export function ampsTimestamp(ms: number): string {
  const iso = new Date(ms).toISOString(); // 2024-03-21T22:09:52.535Z
  return `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}T${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}.${iso.slice(20, 23)}000Z`;
}

const decoder = new TextDecoder();

/** Parses a body as JSON; `undefined` when it is not JSON. */
export function parseJson(data: Uint8Array): unknown {
  if (data.length === 0) return undefined;
  try {
    return JSON.parse(decoder.decode(data));
  } catch {
    return undefined;
  }
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The value at a path such as `/a/b` (already split into segments). */
export function valueAt(root: unknown, segments: readonly string[]): unknown {
  let value = root;
  for (const segment of segments) {
    if (!isObject(value)) return undefined;
    value = value[segment];
  }
  return value;
}

export function splitPath(path: string): string[] {
  return path.split('/').filter((s) => s !== '');
}

/** Splits a comma list, dropping empty items. */
export function splitList(text: string | undefined): string[] {
  if (!text) return [];
  return text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

/** Appends `value` to the list `map` holds for `key`, starting one if there is none. */
export function pushTo<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

/** A host as a URI holds it: an IPv6 literal in brackets (RFC 3986), `[::1]`. */
export function uriHost(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}
