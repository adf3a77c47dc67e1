/**
 * The subset of the AMPS filter language the test broker understands:
 * `/a/b` paths, `= <> != < > <= >=`, `AND OR NOT`, `[NOT] IN (...)`, `[NOT] BETWEEN x AND y`,
 * `[NOT] LIKE 'regex'`, `IS [NOT] NULL`, numbers, strings ('single' or "double" quoted), `TRUE`,
 * `FALSE`, `NULL`, parentheses. Keywords are case-insensitive.
 *
 * Evaluation uses SQL's three-valued logic: a comparison with a missing field is unknown, and a
 * message matches only when the whole expression is true. A path that reaches an array matches when
 * any element does.
 */
import { BadFilterError } from '@amps-ts/core-protocol';
import { isObject } from './util.js';

/** A compiled filter: true when the (parsed JSON) message matches. */
export type Filter = (message: unknown) => boolean;

type Tri = boolean | null;
type Eval = (message: unknown) => Tri;
type Operand = (message: unknown) => unknown;

type Token =
  | { kind: 'path'; segments: string[]; text: string }
  | { kind: 'number'; value: number }
  | { kind: 'string'; value: string }
  | { kind: 'word'; value: string }
  | { kind: 'op'; value: string }
  | { kind: 'punct'; value: '(' | ')' | ',' };

const MISSING = Symbol('missing');

function bad(filter: string, why: string): never {
  throw new BadFilterError(`bad filter '${filter.slice(0, 200)}': ${why}`, { reason: 'bad filter' });
}

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i] as string;
    if (/\s/.test(c)) {
      i++;
    } else if (c === '/') {
      const segments: string[] = [];
      const start = i;
      while (text[i] === '/') {
        i++;
        const from = i;
        while (i < text.length && /[^\s/()=<>!,'"]/.test(text[i] as string)) i++;
        if (i === from) bad(text, `empty path segment at ${from}`);
        segments.push(text.slice(from, i));
      }
      tokens.push({ kind: 'path', segments, text: text.slice(start, i) });
    } else if (c === "'" || c === '"') {
      let value = '';
      i++;
      for (;;) {
        if (i >= text.length) bad(text, 'unterminated string');
        const d = text[i] as string;
        if (d === c) {
          if (text[i + 1] === c) {
            value += c;
            i += 2;
            continue;
          }
          i++;
          break;
        }
        if (d === '\\' && i + 1 < text.length) {
          value += text[i + 1];
          i += 2;
          continue;
        }
        value += d;
        i++;
      }
      tokens.push({ kind: 'string', value });
    } else if (/[0-9]/.test(c) || ((c === '-' || c === '.') && /[0-9.]/.test(text[i + 1] ?? ''))) {
      const match = /^-?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?/.exec(text.slice(i));
      if (!match) bad(text, `bad number at ${i}`);
      tokens.push({ kind: 'number', value: Number(match[0]) });
      i += match[0].length;
    } else if (c === '(' || c === ')' || c === ',') {
      tokens.push({ kind: 'punct', value: c });
      i++;
    } else if ('=<>!'.includes(c)) {
      const two = text.slice(i, i + 2);
      if (two === '<>' || two === '!=' || two === '<=' || two === '>=' || two === '==') {
        tokens.push({ kind: 'op', value: two === '!=' ? '<>' : two === '==' ? '=' : two });
        i += 2;
      } else if (c === '!') {
        bad(text, `unexpected '!' at ${i}`);
      } else {
        tokens.push({ kind: 'op', value: c });
        i++;
      }
    } else if (/[A-Za-z_]/.test(c)) {
      const match = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(i)) as RegExpExecArray;
      tokens.push({ kind: 'word', value: match[0].toUpperCase() });
      i += match[0].length;
    } else {
      bad(text, `unexpected '${c}' at ${i}`);
    }
  }
  return tokens;
}

/** Values at a path; arrays along the way fan out. MISSING when nothing is there. */
function resolvePath(segments: readonly string[]): Operand {
  return (message) => {
    let values: unknown[] = [message];
    for (const segment of segments) {
      const next: unknown[] = [];
      for (const v of values) {
        if (Array.isArray(v)) {
          for (const item of v) if (isObject(item) && segment in item) next.push(item[segment]);
        } else if (isObject(v) && segment in v) {
          next.push(v[segment]);
        }
      }
      if (next.length === 0) return MISSING;
      values = next;
    }
    if (values.length === 1) return values[0];
    return new AnyOf(values.flatMap((v) => (Array.isArray(v) ? v : [v])));
  };
}

/** Several values reached through arrays on a path: a comparison holds if it holds for any. */
class AnyOf {
  constructor(readonly values: unknown[]) {}
}

/** Expands a value into the candidates a comparison tries (arrays: each element). */
function candidates(value: unknown): unknown[] {
  if (value instanceof AnyOf) return value.values;
  if (Array.isArray(value)) return value;
  return [value];
}

function isNullish(value: unknown): boolean {
  return value === MISSING || value === null || value === undefined;
}

/** Compares two scalars: negative, zero, positive, or null when they cannot be compared. */
function compare(a: unknown, b: unknown): number | null {
  if (isNullish(a) || isNullish(b)) return null;
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  if (typeof a === 'number' || typeof b === 'number') {
    const x = Number(a);
    const y = Number(b);
    if (typeof a === 'string' && a.trim() === '') return null;
    if (typeof b === 'string' && b.trim() === '') return null;
    if (Number.isNaN(x) || Number.isNaN(y)) return null;
    return x - y;
  }
  if (typeof a === 'boolean' || typeof b === 'boolean') {
    return String(a) === String(b) ? 0 : String(a) < String(b) ? -1 : 1;
  }
  if (typeof a === 'string' && typeof b === 'string') return a === b ? 0 : a < b ? -1 : 1;
  return null;
}

/** Applies `test` to every candidate pair: true if any is true, null if none is and some is unknown. */
function anyPair(a: unknown, b: unknown, test: (x: unknown, y: unknown) => Tri): Tri {
  let unknown = false;
  for (const x of candidates(a)) {
    for (const y of candidates(b)) {
      const r = test(x, y);
      if (r === true) return true;
      if (r === null) unknown = true;
    }
  }
  return unknown ? null : false;
}

const comparators: Record<string, (n: number) => boolean> = {
  '=': (n) => n === 0,
  '<>': (n) => n !== 0,
  '<': (n) => n < 0,
  '>': (n) => n > 0,
  '<=': (n) => n <= 0,
  '>=': (n) => n >= 0,
};

function not(e: Eval): Eval {
  return (m) => {
    const r = e(m);
    return r === null ? null : !r;
  };
}

class Parser {
  #pos = 0;
  constructor(
    readonly text: string,
    readonly tokens: Token[],
  ) {}

  parse(): Eval {
    if (this.tokens.length === 0) bad(this.text, 'empty');
    const e = this.or();
    if (this.#pos < this.tokens.length) bad(this.text, `unexpected ${this.describe(this.peek())}`);
    return e;
  }

  peek(): Token | undefined {
    return this.tokens[this.#pos];
  }

  next(): Token {
    const t = this.tokens[this.#pos++];
    if (!t) bad(this.text, 'unexpected end');
    return t;
  }

  describe(t: Token | undefined): string {
    if (!t) return 'end';
    if (t.kind === 'path') return t.text;
    return `'${String(t.value)}'`;
  }

  isWord(value: string, offset = 0): boolean {
    const t = this.tokens[this.#pos + offset];
    return t?.kind === 'word' && t.value === value;
  }

  expectWord(value: string): void {
    if (!this.isWord(value)) bad(this.text, `expected ${value}, found ${this.describe(this.peek())}`);
    this.#pos++;
  }

  expectPunct(value: string): void {
    const t = this.next();
    if (t.kind !== 'punct' || t.value !== value) bad(this.text, `expected '${value}', found ${this.describe(t)}`);
  }

  /*
   * A chain of ORs (or ANDs) is evaluated in a loop, not as nested closures: a filter of many terms
   * (`/n = 1 OR /n = 2 OR ...`) parses without recursion, and would otherwise overflow the stack when
   * evaluated, in a delivery, a replay or a timer, where nothing catches it.
   */
  or(): Eval {
    return this.#chain('OR', () => this.and(), true);
  }

  and(): Eval {
    return this.#chain('AND', () => this.not(), false);
  }

  /**
   * Terms joined by `word`, evaluated in order: the first that is `decisive` (true for OR, false
   * for AND) decides; otherwise unknown if any was, else the other value.
   */
  #chain(word: string, term: () => Eval, decisive: boolean): Eval {
    const terms = [term()];
    while (this.isWord(word)) {
      this.#pos++;
      terms.push(term());
    }
    if (terms.length === 1) return terms[0] as Eval;
    return (m) => {
      let unknown = false;
      for (const t of terms) {
        const r = t(m);
        if (r === decisive) return decisive;
        if (r === null) unknown = true;
      }
      return unknown ? null : !decisive;
    };
  }

  not(): Eval {
    // `NOT NOT ... x`, read in a loop for the same reason: only whether the count is odd matters.
    let negations = 0;
    while (this.isWord('NOT')) {
      this.#pos++;
      negations++;
    }
    const e = this.predicate();
    return negations % 2 === 1 ? not(e) : e;
  }

  predicate(): Eval {
    const t = this.peek();
    if (t?.kind === 'punct' && t.value === '(') {
      this.#pos++;
      const inner = this.or();
      this.expectPunct(')');
      return inner;
    }
    const left = this.operand();
    const after = this.peek();
    if (after?.kind === 'op') {
      this.#pos++;
      const right = this.operand();
      const test = comparators[after.value] as (n: number) => boolean;
      return (m) =>
        anyPair(left(m), right(m), (x, y) => {
          const c = compare(x, y);
          return c === null ? null : test(c);
        });
    }
    if (this.isWord('IS')) {
      this.#pos++;
      const negate = this.isWord('NOT');
      if (negate) this.#pos++;
      this.expectWord('NULL');
      return (m) => isNullish(left(m)) !== negate;
    }
    const negate = this.isWord('NOT') && (this.isWord('IN', 1) || this.isWord('BETWEEN', 1) || this.isWord('LIKE', 1));
    if (negate) this.#pos++;
    let e: Eval | undefined;
    if (this.isWord('IN')) {
      this.#pos++;
      this.expectPunct('(');
      const items: Operand[] = [this.operand()];
      while (this.peek()?.kind === 'punct' && (this.peek() as { value: string }).value === ',') {
        this.#pos++;
        items.push(this.operand());
      }
      this.expectPunct(')');
      e = (m) => {
        const value = left(m);
        let unknown = false;
        for (const item of items) {
          const r = anyPair(value, item(m), (x, y) => {
            const c = compare(x, y);
            return c === null ? null : c === 0;
          });
          if (r === true) return true;
          if (r === null) unknown = true;
        }
        return unknown ? null : false;
      };
    } else if (this.isWord('BETWEEN')) {
      this.#pos++;
      const low = this.operand();
      this.expectWord('AND');
      const high = this.operand();
      e = (m) =>
        anyPair(left(m), null, (x) => {
          const a = compare(x, low(m));
          const b = compare(x, high(m));
          return a === null || b === null ? null : a >= 0 && b <= 0;
        });
    } else if (this.isWord('LIKE')) {
      this.#pos++;
      const pattern = this.next();
      if (pattern.kind !== 'string') bad(this.text, 'LIKE needs a quoted regular expression');
      let regex: RegExp;
      try {
        regex = new RegExp(pattern.value);
      } catch {
        return bad(this.text, `bad regular expression '${pattern.value}'`);
      }
      e = (m) =>
        anyPair(left(m), null, (x) => {
          if (isNullish(x)) return null;
          return typeof x === 'string' || typeof x === 'number' ? regex.test(String(x)) : null;
        });
    } else if (negate) {
      bad(this.text, 'expected IN, BETWEEN or LIKE after NOT');
    }
    if (e) return negate ? not(e) : e;
    // A bare operand: true when it is true (e.g. `/active`).
    return (m) => {
      const value = left(m);
      if (isNullish(value)) return null;
      return candidates(value).some((v) => v === true);
    };
  }

  operand(): Operand {
    const t = this.next();
    switch (t.kind) {
      case 'path':
        return resolvePath(t.segments);
      case 'number':
      case 'string': {
        const value = t.value;
        return () => value;
      }
      case 'word':
        if (t.value === 'TRUE') return () => true;
        if (t.value === 'FALSE') return () => false;
        if (t.value === 'NULL') return () => null;
        return bad(this.text, `unexpected word ${t.value}`);
      default:
        return bad(this.text, `expected a value, found ${this.describe(t)}`);
    }
  }
}

/** Compiles a filter; throws `BadFilterError` (reason `bad filter`) for text it cannot parse. */
export function compileFilter(text: string): Filter {
  const evaluate = new Parser(text, tokenize(text)).parse();
  return (message) => evaluate(message) === true;
}
