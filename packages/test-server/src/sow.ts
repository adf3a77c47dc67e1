/** State of the World: the latest message per key of each SOW topic. */
import type { ResolvedSowTopic } from './options.js';
import type { LogEntry } from './txlog.js';
import { isObject, nameHash, splitPath, valueAt } from './util.js';

export class SowRecord {
  constructor(
    readonly key: string,
    /** The log entry whose body is this record (for a delta publish, the merged body). */
    readonly entry: LogEntry,
    /** The body parsed as JSON (undefined when it is not JSON). */
    readonly json: unknown,
    /** Epoch ms after which the record expires, if the publish carried `e`. */
    readonly expiresAt: number | undefined,
  ) {}
}

export class SowTopic {
  readonly records = new Map<string, SowRecord>();
  readonly #keyPaths: readonly string[][];

  constructor(readonly config: ResolvedSowTopic) {
    this.#keyPaths = config.keyPaths.map(splitPath);
  }

  get topic(): string {
    return this.config.topic;
  }

  get hasKeyFields(): boolean {
    return this.#keyPaths.length > 0;
  }

  /**
   * The SOW key of a message: a hash of its key field values (digits, like AMPS-generated keys), or
   * the publisher's `k` when the topic has no key fields. Undefined when a key field is missing.
   */
  keyOf(json: unknown, explicitKey: string | undefined): string | undefined {
    if (this.#keyPaths.length === 0) return explicitKey || undefined;
    const values: unknown[] = [];
    for (const path of this.#keyPaths) {
      const value = valueAt(json, path);
      if (value === undefined || value === null || typeof value === 'object') return undefined;
      values.push(value);
    }
    return nameHash(JSON.stringify(values));
  }

  /** The key fields of a record, nested as in the record (for delta deliveries). */
  keyFields(json: unknown): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const path of this.#keyPaths) {
      let from: unknown = json;
      let to = out;
      path.forEach((segment, i) => {
        if (!isObject(from)) return;
        const value = from[segment];
        if (i === path.length - 1) {
          to[segment] = value;
        } else {
          if (!isObject(to[segment])) to[segment] = {};
          to = to[segment] as Record<string, unknown>;
          from = value;
        }
      });
    }
    return out;
  }
}

/**
 * Merges a delta into a record: fields present and not null overwrite (nested objects and arrays
 * as a whole), everything else stays. A delta cannot remove a field.
 */
export function mergeDelta(record: Record<string, unknown>, delta: Record<string, unknown>): Record<string, unknown> {
  const merged: Record<string, unknown> = { ...record };
  for (const [field, value] of Object.entries(delta)) if (value !== null && value !== undefined) merged[field] = value;
  return merged;
}

/**
 * What a delta subscriber gets for an update: the key fields plus the top-level fields whose value
 * changed. Undefined when the update cannot be expressed as a delta (a field was removed, or a body
 * is not a JSON object): the subscriber then gets the full message.
 */
export function deltaOf(
  sow: SowTopic,
  previous: unknown,
  next: unknown,
): { delta: Record<string, unknown>; changed: number } | undefined {
  if (!isObject(previous) || !isObject(next)) return undefined;
  for (const field of Object.keys(previous)) if (!(field in next)) return undefined;
  const delta = sow.keyFields(next);
  let changed = 0;
  for (const [field, value] of Object.entries(next)) {
    if (JSON.stringify(previous[field]) !== JSON.stringify(value)) {
      delta[field] = value;
      changed++;
    }
  }
  return { delta, changed };
}

/** Parses `orderby` (`/a DESC, /b`) into a comparator of records; throws on bad syntax. */
export function orderComparator(orderBy: string): (a: SowRecord, b: SowRecord) => number {
  const keys = orderBy.split(',').map((part) => {
    const match = /^\s*(\/\S+)(?:\s+(ASC|DESC))?\s*$/i.exec(part);
    if (!match) throw new Error(`bad orderby '${orderBy}'`);
    return { path: splitPath(match[1] as string), desc: (match[2] ?? '').toUpperCase() === 'DESC' };
  });
  return (a, b) => {
    for (const key of keys) {
      const c = compareValues(valueAt(a.json, key.path), valueAt(b.json, key.path));
      if (c !== 0) return key.desc ? -c : c;
    }
    return 0;
  };
}

/** Missing values sort first; numbers before strings; otherwise natural order. */
function compareValues(x: unknown, y: unknown): number {
  const missingX = x === undefined || x === null;
  const missingY = y === undefined || y === null;
  if (missingX || missingY) return missingX === missingY ? 0 : missingX ? -1 : 1;
  if (typeof x === 'number' && typeof y === 'number') return x - y;
  if (typeof x === 'number') return -1;
  if (typeof y === 'number') return 1;
  const sx = String(x);
  const sy = String(y);
  return sx < sy ? -1 : sx > sy ? 1 : 0;
}

/**
 * SowKey order, what AMPS pages by without `orderby` (amps-protocol.md §10.3): broker-made keys
 * (decimal digits) by their numeric value, before any other key; other keys by their characters.
 */
export function compareSowKeys(a: SowRecord, b: SowRecord): number {
  const x = a.key;
  const y = b.key;
  const digitsX = /^\d+$/.test(x);
  const digitsY = /^\d+$/.test(y);
  if (digitsX !== digitsY) return digitsX ? -1 : 1;
  if (digitsX && x.length !== y.length) return x.length - y.length;
  return x < y ? -1 : x > y ? 1 : 0;
}
