import { BadFilterError } from '@amps-ts/core-protocol';
import { describe, expect, it } from 'vitest';
import { compileFilter } from '../src/index.js';

const order = {
  id: 7,
  qty: 150,
  px: 10.5,
  sym: 'IBM',
  side: 'buy',
  tags: ['a', 'b'],
  venue: { code: 'X' },
  flag: true,
};

function matches(filter: string, message: unknown = order): boolean {
  return compileFilter(filter)(message);
}

describe('filters', () => {
  it.each([
    ['/qty > 100', true],
    ['/qty >= 150', true],
    ['/qty < 150', false],
    ['/qty <= 150', true],
    ['/qty = 150', true],
    ['/qty <> 150', false],
    ['/qty != 151', true],
    ["/sym = 'IBM'", true],
    ['/sym = "IBM"', true],
    ["/sym > 'HAL'", true],
    ["/venue/code = 'X'", true],
    ["/qty > 100 AND /sym = 'IBM'", true],
    ["/qty > 200 OR /sym = 'IBM'", true],
    ["NOT /sym = 'IBM'", false],
    ["not (/qty > 200 or /sym = 'MSFT')", true],
    ["/sym IN ('MSFT', 'IBM')", true],
    ["/sym NOT IN ('MSFT', 'IBM')", false],
    ['/id IN (1, 2, 3)', false],
    ['/qty BETWEEN 100 AND 200', true],
    ['/qty NOT BETWEEN 100 AND 200', false],
    ["/sym LIKE '^I.M$'", true],
    ["/sym NOT LIKE 'Z'", true],
    ["/sym NOT LIKE 'B'", false],
    ['/missing IS NULL', true],
    ['/sym IS NOT NULL', true],
    ['/missing = 1', false],
    ['NOT /missing = 1', false],
    ["/tags = 'b'", true],
    ["/tags = 'z'", false],
    ['/flag', true],
    ['/flag = true', true],
    ["/qty = '150'", true],
    ['/px > 10.25', true],
    ['/qty > -1', true],
    ['(/qty > 1)', true],
  ])('%s -> %s', (filter, expected) => {
    expect(matches(filter)).toBe(expected);
  });

  it('a body that is not an object matches nothing that reads a field', () => {
    expect(matches('/qty > 1', null)).toBe(false);
    expect(matches('/qty IS NULL', 'text')).toBe(true);
  });

  it.each([
    ['/qty >', 'end'],
    ['/qty = = 1', 'value'],
    ['(/qty > 1', 'unexpected end'],
    ["/sym LIKE '('", 'regular expression'],
    ["/sym = 'open", 'unterminated'],
    ['', 'empty'],
    ['/qty > 1 /sym', 'unexpected'],
    ['/a ! 1', "'!'"],
    ['/qty NOT 5', "unexpected 'NOT'"],
  ])('rejects %j with a BadFilterError', (filter, why) => {
    let error: unknown;
    try {
      compileFilter(filter);
    } catch (e) {
      error = e;
    }
    expect(BadFilterError.isInstance(error)).toBe(true);
    expect((error as Error).message).toContain(why);
    expect((error as BadFilterError).reason).toBe('bad filter');
  });
});

describe('filters of many terms', () => {
  it('evaluate long AND and OR chains and repeated NOTs without deep recursion', () => {
    const terms = Array.from({ length: 100_000 }, (_, i) => i);
    expect(matches(terms.map((i) => `/id = ${i}`).join(' OR '))).toBe(true);
    expect(matches(terms.map((i) => `/id <> ${i + 8}`).join(' AND '))).toBe(true);
    expect(matches(terms.map((i) => `/id <> ${i}`).join(' AND '))).toBe(false);
    expect(matches(`${'NOT '.repeat(100_000)}/id = 7`)).toBe(true);
    expect(matches(`${'NOT '.repeat(100_001)}/id = 7`)).toBe(false);
    // Three-valued logic is kept: unknown OR false is unknown, and NOT unknown still matches nothing.
    expect(matches('NOT (/missing = 1 OR /id = 8)')).toBe(false);
    expect(matches('NOT (/missing = 1 AND /id = 7)')).toBe(false);
  });
});
