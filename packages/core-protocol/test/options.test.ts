import { describe, expect, it } from 'vitest';
import {
  type CommandOptions,
  formatOptions,
  InvalidOptionsError,
  mergeOptions,
  parseOptions,
  splitOptions,
} from '../src/index.js';

describe('formatOptions', () => {
  it.each<[CommandOptions, string]>([
    [{}, ''],
    [{ replace: true }, 'replace'],
    [{ oof: true }, 'oof'],
    [{ noEmpties: true }, 'no_empties'],
    [{ sendKeys: true }, 'send_keys'],
    [{ noSowKey: true }, 'no_sowkey'],
    [{ timestamp: true }, 'timestamp'],
    [{ bookmark: true }, 'bookmark'],
    [{ live: true }, 'live'],
    [{ fullyDurable: true }, 'fully_durable'],
    [{ pause: true }, 'pause'],
    [{ resume: true }, 'resume'],
    [{ nonRegexTopic: true }, 'non_regex_topic'],
    [{ cancel: true }, 'cancel'],
    [{ expire: true }, 'expire'],
    [{ pretty: true }, 'pretty'],
    [{ bookmarkNotFound: 'fail' }, 'bookmark_not_found=fail'],
    [{ rate: '2X' }, 'rate=2X'],
    [{ rateMaxGap: '10s' }, 'rate_max_gap=10s'],
    [{ conflation: '100ms' }, 'conflation=100ms'],
    [{ maxBacklog: 10 }, 'max_backlog=10'],
    [{ topN: 5 }, 'top_n=5'],
    [{ skipN: 0 }, 'skip_n=0'],
    [{ leaseExtension: '30s' }, 'lease_extension=30s'],
    [{ ackConflation: '100ms' }, 'ack_conflation=100ms'],
    [{ conflationKey: ['/a', '/b'] }, 'conflation_key=[/a,/b]'],
    [{ select: ['/x', '-/y'] }, 'select=[/x,-/y]'],
    [{ grouping: ['/g'] }, 'grouping=[/g]'],
    [{ projection: ['/a', 'SUM(/q) AS /q'] }, 'projection=[/a,SUM(/q) AS /q]'],
    [{ extra: ['pull', 'x=1'] }, 'pull,x=1'],
  ])('writes %j as %j', (options, opts) => {
    expect(formatOptions(options)).toBe(opts);
  });

  it('writes flags, then values, then lists, then extra tokens; false flags not at all', () => {
    expect(formatOptions({ select: ['/a'], rate: '1000', live: true, replace: false, extra: ['z'], oof: true })).toBe(
      'oof,live,rate=1000,select=[/a],z',
    );
  });

  it.each<[CommandOptions, RegExp]>([
    [{ topN: -1 }, /topN must be a non-negative integer/],
    [{ maxBacklog: 1.5 }, /maxBacklog must be a non-negative integer/],
    [{ skipN: Number.NaN }, /skipN/],
    [{ rate: '' }, /rate must be a non-empty string/],
    [{ conflation: '1s,replace' }, /without ','/],
    [{ select: ['/a', '/b]'] }, /select/],
    [{ conflationKey: ['/a,/b'] }, /conflationKey/],
    [{ extra: ['a,b'] }, /single non-empty tokens/],
    [{ extra: [' '] }, /single non-empty tokens/],
  ])('rejects %j with an InvalidOptionsError', (options, pattern) => {
    expect(() => formatOptions(options)).toThrow(InvalidOptionsError);
    expect(() => formatOptions(options)).toThrow(pattern);
  });
});

describe('splitOptions and parseOptions', () => {
  it('splits on commas outside brackets', () => {
    expect(splitOptions('select=[/a,/b],replace, conflation_key=[/x,/y] ,,top_n=5')).toEqual([
      'select=[/a,/b]',
      'replace',
      'conflation_key=[/x,/y]',
      'top_n=5',
    ]);
    expect(splitOptions('projection=[/a,[b,c]],x')).toEqual(['projection=[/a,[b,c]]', 'x']);
    expect(splitOptions('a],b')).toEqual(['a]', 'b']);
    expect(splitOptions('select=[/a,/b')).toEqual(['select=[/a,/b']);
    expect(splitOptions(undefined)).toEqual([]);
    expect(splitOptions('')).toEqual([]);
  });

  it('maps tokens to values, true for flags', () => {
    expect(parseOptions('replace,rate=2X,select=[/a,/b],max_backlog=10')).toEqual(
      new Map<string, string | true>([
        ['replace', true],
        ['rate', '2X'],
        ['select', '[/a,/b]'],
        ['max_backlog', '10'],
      ]),
    );
    expect(parseOptions('start,5')).toEqual(
      new Map([
        ['start', true],
        ['5', true],
      ]),
    );
  });

  it('reads back what formatOptions writes', () => {
    const options: CommandOptions = {
      replace: true,
      bookmarkNotFound: 'now',
      maxBacklog: 3,
      select: ['/a', '/b'],
      projection: ['/c'],
    };
    expect(parseOptions(formatOptions(options))).toEqual(
      new Map<string, string | true>([
        ['replace', true],
        ['bookmark_not_found', 'now'],
        ['max_backlog', '3'],
        ['select', '[/a,/b]'],
        ['projection', '[/c]'],
      ]),
    );
  });
});

describe('mergeOptions', () => {
  it('adds tokens, keeps what is there and skips exact duplicates', () => {
    expect(mergeOptions('replace,oof', 'oof', 'live')).toBe('replace,oof,live');
    expect(mergeOptions(undefined, 'processed')).toBe('processed');
    expect(mergeOptions('processed', 'processed', 'completed')).toBe('processed,completed');
    expect(mergeOptions('', '')).toBe('');
  });

  it('lets a later key=value replace an earlier one with the same key, in place', () => {
    expect(mergeOptions('max_backlog=3', 'max_backlog=5')).toBe('max_backlog=5');
    expect(mergeOptions('replace,rate=2X,oof', 'rate=1000,live', 'select=[/a]', 'select=[/b,/c]')).toBe(
      'replace,rate=1000,oof,live,select=[/b,/c]',
    );
    expect(parseOptions(mergeOptions('top_n=1,top_n=2', 'top_n=9')).get('top_n')).toBe('9');
  });

  it('splits arguments that are lists themselves', () => {
    expect(mergeOptions('pretty', 'pretty,ack_conflation=100ms', 'select=[/a,/b]')).toBe(
      'pretty,ack_conflation=100ms,select=[/a,/b]',
    );
  });
});
