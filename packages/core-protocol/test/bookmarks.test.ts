import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  Bookmarks,
  compareBookmarks,
  formatBookmark,
  formatBookmarkList,
  formatBookmarkRange,
  InvalidBookmarkError,
  latestPerPublisher,
  parseBookmark,
  parseBookmarkId,
  parseBookmarkList,
  parseBookmarkRange,
  timestampBookmark,
} from '../src/index.js';

function bookmarkError(fn: () => unknown): InvalidBookmarkError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidBookmarkError);
    expect((error as InvalidBookmarkError).code).toBe('invalid_bookmark');
    return error as InvalidBookmarkError;
  }
  throw new Error('expected an InvalidBookmarkError');
}

describe('bookmarks', () => {
  it('has the special values AMPS uses', () => {
    expect(Bookmarks).toEqual({ EPOCH: '0', NOW: '0|1|', MOST_RECENT: 'recent' });
  });

  it.each([
    ['0', { kind: 'epoch' }],
    ['0|1|', { kind: 'now' }],
    ['0|1', { kind: 'now' }],
    ['recent', { kind: 'most_recent' }],
    [' 0 ', { kind: 'epoch' }],
    ['934814|44321|', { kind: 'id', id: { publisher: '934814', sequence: 44321n } }],
    ['7094790850998930143|0|', { kind: 'id', id: { publisher: '7094790850998930143', sequence: 0n } }],
    ['1234567|123583190', { kind: 'id', id: { publisher: '1234567', sequence: 123583190n } }],
  ])('parses %j', (text, parsed) => {
    expect(parseBookmark(text)).toEqual(parsed);
  });

  it('keeps 64-bit sequences exact', () => {
    expect(parseBookmarkId('12290412031115262887|1484244707000000008|')).toEqual({
      publisher: '12290412031115262887',
      sequence: 1484244707000000008n,
    });
    expect(formatBookmark({ publisher: '12290412031115262887', sequence: 1484244707000000008n })).toBe(
      '12290412031115262887|1484244707000000008|',
    );
  });

  it.each([
    ['20150102T123500Z', Date.UTC(2015, 0, 2, 12, 35, 0)],
    ['20150102T123500', Date.UTC(2015, 0, 2, 12, 35, 0)],
    ['20240321T220952.535075Z', Date.UTC(2024, 2, 21, 22, 9, 52, 535)],
    ['20240229T235959Z', Date.UTC(2024, 1, 29, 23, 59, 59)],
  ])('parses the timestamp %s', (text, ms) => {
    const parsed = parseBookmark(text);
    expect(parsed.kind).toBe('timestamp');
    if (parsed.kind === 'timestamp') {
      expect(parsed.timestamp).toBe(text);
      expect(parsed.date.getTime()).toBe(ms);
    }
  });

  it.each([
    '',
    'abc',
    'RECENT',
    '1|',
    '|1|',
    '1|2|3|',
    '-1|2|',
    '1|a|',
    '1||',
    '123456789012345678901|1|',
    '20150230T000000Z',
    '20230229T000000Z',
    '20150102T240000Z',
    '20151302T000000',
    '20150102T126000Z',
    '20150102T123500+01',
    '2015-01-02T12:35:00Z',
    '[0:0|1|]',
  ])('rejects %j with an InvalidBookmarkError', (text) => {
    expect(bookmarkError(() => parseBookmark(text)).message).toContain('invalid bookmark');
  });

  it('formats timestamps as AMPS reads them, and back', () => {
    expect(timestampBookmark(new Date(Date.UTC(2020, 5, 4, 1, 2, 3, 456)))).toBe('20200604T010203Z');
    fc.assert(
      fc.property(fc.date({ min: new Date(0), max: new Date(Date.UTC(9999, 11, 31)), noInvalidDate: true }), (date) => {
        const parsed = parseBookmark(timestampBookmark(date));
        expect(parsed.kind === 'timestamp' && parsed.date.getTime()).toBe(Math.floor(date.getTime() / 1000) * 1000);
      }),
    );
  });

  it('parses and formats lists', () => {
    expect(parseBookmarkList('1|5|,2|7|,0')).toEqual([
      { kind: 'id', id: { publisher: '1', sequence: 5n } },
      { kind: 'id', id: { publisher: '2', sequence: 7n } },
      { kind: 'epoch' },
    ]);
    expect(
      formatBookmarkList([
        { publisher: '1', sequence: 5n },
        { publisher: '2', sequence: 7n },
      ]),
    ).toBe('1|5|,2|7|');
    bookmarkError(() => parseBookmarkList(''));
    bookmarkError(() => parseBookmarkList('1|5|,'));
    bookmarkError(() => parseBookmarkList('1|5|,x'));
  });

  it('parses every kind of range', () => {
    expect(parseBookmarkRange('[20200604T000000:20200605T000000)')).toMatchObject({
      startInclusive: true,
      start: [{ kind: 'timestamp', timestamp: '20200604T000000' }],
      endInclusive: false,
      end: [{ kind: 'timestamp', timestamp: '20200605T000000' }],
    });
    expect(parseBookmarkRange('(1|5|,2|7|:1|9|]')).toMatchObject({
      startInclusive: false,
      start: [{ kind: 'id' }, { kind: 'id' }],
      endInclusive: true,
      end: [{ kind: 'id', id: { publisher: '1', sequence: 9n } }],
    });
    expect(parseBookmarkRange(' [0|1:0] ')).toMatchObject({ start: [{ kind: 'now' }], end: [{ kind: 'epoch' }] });
    expect(parseBookmarkRange('(0:0|1|)')).toMatchObject({ startInclusive: false, endInclusive: false });
  });

  it.each(['0:1|2|', '[0:1|2|', '0:1|2|]', '[01|2|]', '[:1|2|]', '[0:]', '{0:1|2|}', '[0:x]'])(
    'rejects the range %j',
    (text) => {
      bookmarkError(() => parseBookmarkRange(text));
    },
  );

  it('formats ranges, exclusive unless asked', () => {
    expect(formatBookmarkRange('1|2|', '1|9|')).toBe('(1|2|:1|9|)');
    expect(formatBookmarkRange('1|2|', '1|9|', { startInclusive: true, endInclusive: true })).toBe('[1|2|:1|9|]');
    const text = formatBookmarkRange('20200604T000000Z', '1|9|,2|3|', { startInclusive: true });
    expect(parseBookmarkRange(text)).toMatchObject({ startInclusive: true, endInclusive: false });
  });

  it('orders bookmarks of one publisher by sequence, exactly beyond 2^53', () => {
    expect(compareBookmarks('1|5|', '1|7|')).toBeLessThan(0);
    expect(compareBookmarks('1|7|', '1|5|')).toBeGreaterThan(0);
    expect(compareBookmarks('1|7|', { publisher: '1', sequence: 7n })).toBe(0);
    expect(compareBookmarks('9|9007199254740993|', '9|9007199254740992|')).toBe(1);
  });

  it('refuses to order bookmarks of different publishers, or special values', () => {
    expect(bookmarkError(() => compareBookmarks('1|5|', '2|5|')).message).toMatch(/ordered per publisher/);
    bookmarkError(() => compareBookmarks('0', '1|5|'));
    bookmarkError(() => compareBookmarks('1|5|', 'recent'));
  });

  it('keeps the latest bookmark per publisher, sorted, ignoring the rest', () => {
    expect(
      latestPerPublisher(['2|5|', '1|9|', '1|3|', '0', 'recent', 'junk', '2|6|', { publisher: '3', sequence: 1n }]),
    ).toEqual([
      { publisher: '1', sequence: 9n },
      { publisher: '2', sequence: 6n },
      { publisher: '3', sequence: 1n },
    ]);
    expect(latestPerPublisher([])).toEqual([]);
  });

  it('drops NOW (0|1| and 0|1) like the other special values', () => {
    // NOW has the id shape, but it names no message: it is no recovery point.
    expect(latestPerPublisher(['0|1|', '0|1', '5|3|', { publisher: '0', sequence: 1n }])).toEqual([
      { publisher: '5', sequence: 3n },
    ]);
  });

  it('finds the maximum of each publisher, whatever the order', () => {
    const id = fc.record({
      publisher: fc.constantFrom('1', '2', '30'),
      sequence: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
    });
    fc.assert(
      fc.property(fc.array(id, { maxLength: 30, size: 'max' }), (ids) => {
        const latest = latestPerPublisher(ids.map(formatBookmark));
        for (const { publisher, sequence } of latest) {
          expect(ids.filter((i) => i.publisher === publisher).every((i) => i.sequence <= sequence)).toBe(true);
        }
        expect(latest.map((l) => l.publisher)).toEqual([...new Set(ids.map((i) => i.publisher))].sort());
      }),
    );
  });
});
