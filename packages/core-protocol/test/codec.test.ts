import { format, inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import {
  AckTypes,
  CommandNames,
  decodeFrame,
  encodeCommand,
  type HeaderFieldName,
  headerFields,
  Message,
  ProtocolError,
  parseHeader,
} from '../src/index.js';
import { concat, decodeAll, decodeOne, frame, headerOf, text } from './helpers.js';

const utf8 = new TextEncoder();

/** Every wire key and alias, with the property it fills and its type. */
const keys = headerFields.flatMap((f) =>
  [f.key, ...((f as { aliases?: readonly string[] }).aliases ?? [])].map((key) => ({
    key,
    name: f.name as HeaderFieldName,
    type: f.type,
  })),
);

function expectProtocolError(header: string, pattern?: RegExp): void {
  let caught: unknown;
  try {
    decodeOne(header);
  } catch (error) {
    caught = error;
  }
  expect(caught, header).toBeInstanceOf(ProtocolError);
  expect((caught as ProtocolError).code).toBe('protocol');
  if (pattern) expect((caught as Error).message).toMatch(pattern);
}

describe('header fields', () => {
  it('has one property per field, and the table matches Message', () => {
    const message = new Message();
    for (const f of headerFields) {
      expect(f.name in message, f.name).toBe(true);
      expect(message[f.name as HeaderFieldName]).toBeUndefined();
    }
    expect(new Set(keys.map((k) => k.key)).size).toBe(keys.length); // no key means two fields
  });

  it.each(keys)('decodes $key into $name', ({ key, name, type }) => {
    if (name === 'command') {
      expect(decodeOne(`{"${key}":"sow"}`).command).toBe('sow');
    } else if (type === 'number') {
      expect(decodeOne(`{"${key}":42}`)[name]).toBe(42);
      expect(decodeOne(`{"${key}":"42"}`)[name]).toBe(42);
    } else {
      expect(decodeOne(`{"${key}":"some value"}`)[name]).toBe('some value');
    }
  });

  it.each(headerFields.map((f) => ({ name: f.name as HeaderFieldName, key: f.key, type: f.type })))(
    'encodes $name as $key and decodes it back',
    ({ name, key, type }) => {
      if (name === 'command') return; // covered by the command name tests
      const value = type === 'number' ? 42 : 'some value';
      const encoded = encodeCommand({ command: 'sow', [name]: value });
      expect(headerOf(encoded)).toBe(`{"c":"sow","${key}":${JSON.stringify(value)}}`);
      expect(decodeAll(encoded)[0]?.[name]).toBe(value);
    },
  );

  it('writes the keys DESIGN.md lists, cid as a string, s as a number, p for publish', () => {
    const encoded = encodeCommand({
      command: 'publish',
      commandId: '2',
      topic: 'orders',
      sequence: 42,
      ackType: 'persisted',
      data: '{"id":7}',
    });
    expect(text(encoded.subarray(4))).toBe('{"c":"p","cid":"2","t":"orders","s":42,"a":"persisted"}{"id":7}');
    expect(new DataView(encoded.buffer, encoded.byteOffset).getUint32(0)).toBe(encoded.length - 4);
    const logon = encodeCommand({
      command: 'logon',
      commandId: '1',
      clientName: 'pub-1',
      userId: 'alice',
      password: 'secret',
      version: '0.1.0:ts',
      messageType: 'json',
      ackType: 'processed',
    });
    expect(headerOf(logon)).toBe(
      '{"c":"logon","cid":"1","client_name":"pub-1","user_id":"alice","pw":"secret","version":"0.1.0:ts","mt":"json","a":"processed"}',
    );
  });

  it.each([...CommandNames])('round-trips the command %s', (name) => {
    const encoded = encodeCommand({ command: name });
    expect(headerOf(encoded)).toBe(`{"c":"${name === 'publish' ? 'p' : name}"}`);
    expect(decodeAll(encoded)[0]?.command).toBe(name);
  });

  it('keeps a leading U+FEFF in header strings (the decoder must not strip it as a BOM)', () => {
    const [m] = decodeAll(encodeCommand({ command: 'sow', queryId: '\ufeff', topic: '\ufeffx' }));
    expect(m?.queryId).toBe('\ufeff');
    expect(m?.topic).toBe('\ufeffx');
  });

  it('reads publish in both spellings, and p only in the command field', () => {
    expect(decodeOne('{"c":"p"}').command).toBe('publish');
    expect(decodeOne('{"c":"publish"}').command).toBe('publish');
    expect(decodeOne(String.raw`{"c":"\u0070"}`).command).toBe('publish'); // escaped, still p
    const m = decodeOne('{"c":"sow","t":"p","sub_id":"p","cid":"p"}');
    expect([m.topic, m.subId, m.commandId]).toEqual(['p', 'p', 'p']);
  });

  it('keeps a command name it does not know', () => {
    expect(decodeOne('{"c":"redirect","uri":"tcp://h:1"}').command).toBe('redirect');
  });

  it.each([...AckTypes])('round-trips the ack type %s', (ackType) => {
    const m = decodeAll(encodeCommand({ command: 'ack', ackType, status: 'success' }))[0];
    expect(m?.ackType).toBe(ackType);
    expect(m?.status).toBe('success');
  });

  it('decodes the acks of the protocol reference', () => {
    const logon = decodeOne(
      '{"c":"ack","cid":"1","a":"processed","status":"success","client_name":"ts-pub-1","s":41,"bm":"13579246801357924680|41|","version":"5.3.5.0"}',
    );
    expect(logon).toMatchObject({
      command: 'ack',
      commandId: '1',
      ackType: 'processed',
      status: 'success',
      clientName: 'ts-pub-1',
      sequence: 41,
      bookmark: '13579246801357924680|41|',
      version: '5.3.5.0',
    });
    const stats = decodeOne(
      '{"c":"ack","a":"stats","status":"success","query_id":"q1","matches":3,"topic_matches":1,"records_returned":3,"records_inserted":0,"records_updated":2,"records_deleted":1}',
    );
    expect(stats).toMatchObject({
      queryId: 'q1',
      matches: 3,
      topicMatches: 1,
      recordsReturned: 3,
      recordsInserted: 0,
      recordsUpdated: 2,
      recordsDeleted: 1,
    });
    const failed = decodeOne('{"c":"ack","a":"processed","status":"failure","reason":"bad filter"}');
    expect([failed.status, failed.reason]).toEqual(['failure', 'bad filter']);
    const conflated = decodeOne('{"c":"ack","a":"persisted","status":"success","s":500}');
    expect(conflated.commandId).toBeUndefined();
    expect(conflated.sequence).toBe(500);
  });
});

describe('header values', () => {
  it('reads numbers bare or quoted, with leading zeros, up to 2^53-1', () => {
    expect(decodeOne('{"s":0}').sequence).toBe(0);
    expect(decodeOne('{"s":"007"}').sequence).toBe(7);
    expect(decodeOne(`{"s":${Number.MAX_SAFE_INTEGER}}`).sequence).toBe(Number.MAX_SAFE_INTEGER);
    expect(decodeOne(`{"s":"${Number.MAX_SAFE_INTEGER}"}`).sequence).toBe(Number.MAX_SAFE_INTEGER);
  });

  it.each([
    '{"s":-1}',
    '{"s":1.5}',
    '{"s":1e3}',
    '{"s":""}',
    '{"s":" 1"}',
    '{"s":"0x10"}',
    '{"s":true}',
    `{"s":${Number.MAX_SAFE_INTEGER + 1}}`,
    '{"s":12345678901234567890}',
    '{"bs":"1\\u0030"}',
  ])('rejects the number in %s with a ProtocolError', (header) => {
    expectProtocolError(header, /unsigned integer/);
  });

  it('treats null as absent for known fields and keeps it for unknown ones', () => {
    const m = decodeOne('{"c":"p","t":null,"s":null,"other":null}');
    expect(m.topic).toBeUndefined();
    expect(m.sequence).toBeUndefined();
    expect(m.extra).toEqual({ other: null });
  });

  it('keeps the exact text of a string field written bare', () => {
    const m = decodeOne('{"cid":12345678901234567890,"x":true,"t":-1.5e3}');
    expect([m.commandId, m.correlationId, m.topic]).toEqual(['12345678901234567890', 'true', '-1.5e3']);
  });

  it('decodes escapes: \\" \\\\ \\/ \\n \\t \\uXXXX and surrogate pairs', () => {
    const m = decodeOne(String.raw`{"t":"a\"b\\c\/d\ne\tf\u00e9\ud83d\ude00","filter":"/x = '\u007d'"}`);
    expect(m.topic).toBe('a"b\\c/d\ne\tf\u00e9\u{1F600}');
    expect(m.filter).toBe("/x = '}'");
  });

  it('decodes UTF-8 values, short and long', () => {
    const long = `${'é'.repeat(40)}😀`;
    const m = decodeOne(`{"t":"é","filter":"${long}","sub_id":"日本"}`);
    expect([m.topic, m.filter, m.subId]).toEqual(['é', long, '日本']);
  });

  it('decodes ASCII values of every length', () => {
    for (let n = 0; n <= 100; n++) {
      const value = Array.from({ length: n }, (_, i) => String.fromCharCode(0x21 + ((i * 7) % 90))).join('');
      const safe = value.replace(/["\\]/g, '_');
      const m = decodeOne(`{"bm":"${safe}","t":"${safe}","extra":"${safe}"}`);
      expect([m.bookmark, m.topic, m.extra?.extra]).toEqual([safe, safe, safe]);
    }
  });

  it('finds the end of the header when a string holds a }', () => {
    const m = decodeOne('{"c":"p","filter":"/a = \'}\'","t":"x}y"}', 'body}');
    expect(m.filter).toBe("/a = '}'");
    expect(m.topic).toBe('x}y');
    expect(m.text()).toBe('body}');
  });

  it('tolerates whitespace between tokens', () => {
    const m = decodeOne('{ \t\n"c" : "p" ,\r\n "s" : 5 , "t":"x" , "u" : true }', 'b');
    expect([m.command, m.sequence, m.topic, m.extra?.u, m.text()]).toEqual(['publish', 5, 'x', true, 'b']);
  });

  it('keeps unknown keys with their JSON values in extra', () => {
    const unknown = String.raw`"uri":"tcp://h:1","n":-2.5e-3,"yes":true,"no":false,"nil":null,"k\u00e9y":"v\"","日本":"x","__proto__":"p"`;
    const m = decodeOne(`{"c":"p",${unknown}}`);
    expect(m.extra).toEqual(JSON.parse(`{${unknown}}`));
    expect(m.extra?.kéy).toBe('v"');
    expect(Object.getOwnPropertyDescriptor(m.extra, '__proto__')?.value).toBe('p');
    expect(Object.getPrototypeOf(m.extra)).toBe(Object.prototype);
  });

  it('reads an escaped key that spells a known one as that field', () => {
    expect(decodeOne(String.raw`{"\u0074":"orders"}`).topic).toBe('orders');
  });

  it('lets the last of duplicate keys win', () => {
    expect(decodeOne('{"t":"a","topic":"b"}').topic).toBe('b');
  });

  it('decodes ASCII values of every length, also where the frame ends right after them', () => {
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
    for (let n = 0; n <= 40; n++) {
      const value = alphabet.slice(0, n);
      expect(decodeOne(`{"k":"${value}","bm":"${value}"}`, 'body')).toMatchObject({ sowKey: value, bookmark: value });
      expect(decodeOne(`{"k":"${value}"}`).sowKey).toBe(value);
    }
  });

  it('returns the same string for a value that repeats, and the right one after many others', () => {
    const a = decodeOne('{"t":"orders","sub_id":"s1"}');
    const b = decodeOne('{"t":"orders","sub_id":"s1"}');
    expect(b.topic).toBe(a.topic);
    for (let i = 0; i < 3000; i++) {
      const m = decodeOne(`{"t":"topic-${i}","sub_id":"${i % 7}"}`);
      expect(m.topic).toBe(`topic-${i}`);
      expect(m.subId).toBe(String(i % 7));
    }
  });

  it.each([
    ['', /empty frame/],
    ['x', /JSON header/],
    ['{', /not terminated/],
    ['{"a"', /not terminated|expected ':'/],
    ['{"a":', /value is missing/],
    ['{"a":}', /unexpected token/],
    ['{"a":1,}', /quoted key/],
    ['{,}', /quoted key/],
    ['{"a" 1}', /expected ':'/],
    ['{"a":1 "b":2}', /expected ','/],
    ['{"a":{}}', /nested/],
    ['{"a":[1]}', /nested/],
    ['{"a":tru}', /unexpected token/],
    ['{"a":"\\x"}', /bad escape/],
    ['{"a":"\u0001"}', /control character/],
    ['{a:1}', /quoted key/],
    ['{"t":"abc}', /not terminated/],
  ])('rejects the header %j with a ProtocolError', (header, pattern) => {
    expectProtocolError(header, pattern);
  });

  it('rejects a header string that is not valid UTF-8', () => {
    const bad = concat(utf8.encode('{"t":"a'), new Uint8Array([0xc3, 0x28]), utf8.encode('"}'));
    expect(() => decodeAll(frame(bad))).toThrow(ProtocolError);
    const badKey = concat(utf8.encode('{"'), new Uint8Array([0xff]), utf8.encode('":1}'));
    expect(() => decodeAll(frame(badKey))).toThrow(ProtocolError);
  });

  it('reports a non-UTF-8 byte right after a backslash as not UTF-8, in both builds', () => {
    // Both builds must give the same error; the fast one skipped that byte in its ASCII check.
    const value = concat(utf8.encode('{"t":"\\'), new Uint8Array([0xff]), utf8.encode('"}'));
    expect(() => decodeAll(frame(value))).toThrow('header is not valid UTF-8');
    const key = concat(utf8.encode('{"\\'), new Uint8Array([0x80]), utf8.encode('":1}'));
    expect(() => decodeAll(frame(key))).toThrow('header is not valid UTF-8');
  });

  it('never reads past the end it is given', () => {
    const bytes = utf8.encode('{"c":"p"}');
    const message = new Message();
    // The frame ends before the }, though the buffer goes on.
    expect(() => parseHeader(bytes, 0, bytes.length - 1, message)).toThrow(ProtocolError);
    expect(() => parseHeader(utf8.encode('{"s":12}'), 0, 6, new Message())).toThrow(ProtocolError);
    expect(() => parseHeader(utf8.encode('{"c":"p"'), 0, 8, new Message())).toThrow(ProtocolError);
    expect(parseHeader(utf8.encode('xx{"s":12}yy'), 2, 10, message)).toBe(10);
    expect(message.sequence).toBe(12);
  });
});

describe('Message', () => {
  it('has a body that is a view into the received bytes, not a copy', () => {
    const chunk = concat(frame('{"c":"p","t":"a"}', 'first'), frame('{"c":"p","t":"b"}', 'second'));
    const [a, b] = decodeAll(chunk);
    expect(a?.data.buffer).toBe(chunk.buffer);
    expect(b?.data.buffer).toBe(chunk.buffer);
    expect(b?.text()).toBe('second');
    chunk[chunk.length - 1] = 'D'.charCodeAt(0);
    expect(text(b?.data as Uint8Array)).toBe('seconD');
  });

  it('makes its body view once, on first read, and takes a body assigned to it', () => {
    const m = decodeOne('{"c":"p","t":"a"}', 'body');
    expect(m.data).toBe(m.data);
    expect('data' in m).toBe(true);
    m.data = utf8.encode('other');
    expect(m.text()).toBe('other');
    expect(m.toJSON()).toEqual({ command: 'publish', topic: 'a', dataLength: 5 });
  });

  it('parses the body as JSON only when asked, once', () => {
    const m = decodeOne('{"c":"p"}', '{"id":7,"tags":["a"]}');
    const first = m.json<{ id: number; tags: string[] }>();
    expect(first).toEqual({ id: 7, tags: ['a'] });
    expect(m.json()).toBe(first);
    expect(m.text()).toBe('{"id":7,"tags":["a"]}');
    const bad = decodeOne('{"c":"p"}', 'not json');
    expect(() => bad.json()).toThrow(SyntaxError);
    expect(decodeOne('{"c":"p"}').data.length).toBe(0);
  });

  it('lists its subscription ids from sids or sub_id', () => {
    expect(decodeOne('{"c":"p","sids":"1,2,3"}').subscriptionIds).toEqual(['1', '2', '3']);
    expect(decodeOne('{"c":"p","sub_id":"9"}').subscriptionIds).toEqual(['9']);
    expect(decodeOne('{"c":"p"}').subscriptionIds).toEqual([]);
  });

  it('never shows the password in toJSON', () => {
    const m = decodeOne('{"c":"ack","a":"processed","status":"retry","user_id":"u","pw":"hunter2"}', 'xyz');
    expect(m.password).toBe('hunter2');
    const json = JSON.stringify(m);
    expect(json).not.toContain('hunter2');
    expect(JSON.parse(json)).toEqual({
      command: 'ack',
      ackType: 'processed',
      status: 'retry',
      userId: 'u',
      dataLength: 3,
    });
  });

  it('never shows the password when inspected (console.log), also inside other values', () => {
    const m = decodeOne('{"c":"logon","cid":"1","client_name":"c","user_id":"u","pw":"hunter2"}');
    const views = [
      inspect(m),
      inspect({ nested: [m] }, { depth: 5, showHidden: true, getters: true }),
      format('%o %O %s %j', m, m, m, m),
    ];
    for (const view of views) expect(view).not.toContain('hunter2');
    expect(inspect(m, { breakLength: Number.POSITIVE_INFINITY })).toBe(
      "Message { command: 'logon', commandId: '1', clientName: 'c', userId: 'u', dataLength: 0 }",
    );
  });

  it('inherits every header field and a copy of extra, but not the body', () => {
    const from = decodeOne('{"c":"sow","t":"q","query_id":"1","bs":2,"other":1}', 'body');
    const to = new Message();
    to.inheritHeader(from);
    expect(to).toMatchObject({ command: 'sow', topic: 'q', queryId: '1', batchSize: 2, extra: { other: 1 } });
    expect(to.extra).not.toBe(from.extra);
    expect(to.data.length).toBe(0);
  });
});

describe('SOW batches', () => {
  it('delivers one message per record, each with its own header over the batch header', () => {
    const body = '{"k":"101","l":16,"x":"c1"}{"id":1,"px":10}{"k":"102","l":16,"bm":"1|2|"}{"id":2,"px":11}';
    const messages = decodeAll(frame('{"c":"sow","t":"quotes","query_id":"5","bs":2,"l":27}', body));
    expect(messages).toHaveLength(2);
    expect(messages.map((m) => [m.command, m.topic, m.queryId, m.batchSize, m.sowKey, m.length, m.text()])).toEqual([
      ['sow', 'quotes', '5', 2, '101', 16, '{"id":1,"px":10}'],
      ['sow', 'quotes', '5', 2, '102', 16, '{"id":2,"px":11}'],
    ]);
    expect(messages[0]?.correlationId).toBe('c1');
    expect(messages[1]?.correlationId).toBeUndefined();
    expect(messages[1]?.bookmark).toBe('1|2|');
  });

  it('decodes the batch example of the protocol reference', () => {
    const messages = decodeAll(
      frame(
        '{"c":"sow","t":"quotes","query_id":"5","bs":2}',
        '{"k":"101","l":16}{"id":1,"px":10}{"k":"102","l":16}{"id":2,"px":11}',
      ),
    );
    expect(messages.map((m) => [m.sowKey, m.json()])).toEqual([
      ['101', { id: 1, px: 10 }],
      ['102', { id: 2, px: 11 }],
    ]);
  });

  it('accepts records with empty bodies', () => {
    const messages = decodeAll(frame('{"c":"sow","t":"q"}', '{"k":"1","l":0}{"k":"2","l":2}{}'));
    expect(messages.map((m) => [m.sowKey, m.text()])).toEqual([
      ['1', ''],
      ['2', '{}'],
    ]);
  });

  it('treats a body that is not a batch as the body of one message', () => {
    expect(decodeAll(frame('{"c":"sow","t":"q"}', '{"id":1}')).map((m) => m.text())).toEqual(['{"id":1}']);
    expect(decodeAll(frame('{"c":"sow","t":"q"}', '{"a":{"b":1}}')).map((m) => m.text())).toEqual(['{"a":{"b":1}}']);
    expect(decodeAll(frame('{"c":"sow","t":"q"}', 'plain')).map((m) => m.text())).toEqual(['plain']);
    expect(decodeAll(frame('{"c":"sow","t":"q"}')).map((m) => m.data.length)).toEqual([0]);
    // Not a sow: `l` in a body header means nothing.
    expect(decodeAll(frame('{"c":"p","t":"q"}', '{"k":"1","l":1}x')).map((m) => m.text())).toEqual([
      '{"k":"1","l":1}x',
    ]);
  });

  it('rejects a batch whose record runs past the frame or has no length', () => {
    expect(() => decodeAll(frame('{"c":"sow"}', '{"k":"1","l":50}short'))).toThrow(/past the end/);
    expect(() => decodeAll(frame('{"c":"sow"}', '{"k":"1","l":1}x{"k":"2"}y'))).toThrow(/no length/);
    expect(() => decodeAll(frame('{"c":"sow"}', '{"k":"1","l":1}xgarbage'))).toThrow(ProtocolError);
  });

  it('decodes a frame passed on its own with decodeFrame', () => {
    const out: Message[] = [];
    decodeFrame(frame('{"c":"sow","t":"q"}', '{"k":"1","l":1}a{"k":"2","l":1}b').subarray(4), (m) => out.push(m));
    expect(out.map((m) => m.text())).toEqual(['a', 'b']);
  });
});
