import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvalidUriError, parseUri, redactUri } from '../src/index.js';

function uriError(uri: string): InvalidUriError {
  try {
    parseUri(uri);
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidUriError);
    expect((error as InvalidUriError).code).toBe('invalid_uri');
    return error as InvalidUriError;
  }
  throw new Error(`expected ${uri} to be rejected`);
}

describe('parseUri', () => {
  it.each([
    ['tcp://localhost:9007/amps/json', 'tcp', 'localhost', 9007, 'json'],
    ['tcps://amps.example.com:443/amps/json', 'tcps', 'amps.example.com', 443, 'json'],
    ['ws://127.0.0.1:9100/amps/json', 'ws', '127.0.0.1', 9100, 'json'],
    ['wss://h:1/amps/nvfix', 'wss', 'h', 1, 'nvfix'],
    ['TCP://h:65535/amps', 'tcp', 'h', 65535, undefined],
    ['tcp://h:9007', 'tcp', 'h', 9007, undefined],
    ['tcp://h:9007/', 'tcp', 'h', 9007, undefined],
    ['tcp://h:9007/amps/json/more', 'tcp', 'h', 9007, 'json'],
    ['tcp://[::1]:9007/amps/json', 'tcp', '::1', 9007, 'json'],
  ])('parses %s', (uri, scheme, host, port, messageType) => {
    const parsed = parseUri(uri);
    expect(parsed).toMatchObject({ scheme, host, port, messageType, protocol: 'amps', href: uri });
    expect(parsed.user).toBeUndefined();
    expect(parsed.password).toBeUndefined();
    expect(parsed.redacted).toBe(uri);
  });

  it('keeps the path as given, for the WebSocket request', () => {
    expect(parseUri('ws://h:1/amps/json').path).toBe('/amps/json');
    expect(parseUri('ws://h:1').path).toBe('/');
  });

  it.each([
    ['unix:///tmp/amps.sock/amps/json', '/tmp/amps.sock', 'json'],
    ['unix://localhost/amps/json?path=/tmp/a.sock', '/tmp/a.sock', 'json'],
    ['unix://localhost:0/amps?path=/tmp/a.sock', '/tmp/a.sock', undefined],
    ['unix:///var/run/amps/amps.sock/amps/json', '/var/run/amps/amps.sock', 'json'],
    ['unix:///tmp/amps/sock/amps', '/tmp/amps/sock', undefined],
  ])('parses the unix socket URI %s', (uri, path, messageType) => {
    const parsed = parseUri(uri);
    expect(parsed).toMatchObject({ scheme: 'unix', host: 'localhost', port: 0, messageType });
    expect(parsed.options.path).toBe(path);
  });

  it('reads the user and password, percent-decoded, and never shows the password', () => {
    const parsed = parseUri('tcp://us%40er:p%40ss%3Aw%2Frd%20x@host:9007/amps/json');
    expect(parsed.user).toBe('us@er');
    expect(parsed.password).toBe('p@ss:w/rd x');
    expect(parsed.redacted).toBe('tcp://us%40er:***@host:9007/amps/json');
    expect(parsed.href).toContain('p%40ss');
  });

  it('takes the last @ as the end of the userinfo, as URL parsers do', () => {
    const parsed = parseUri('tcp://user:p@ss@host:9007/amps/json');
    expect([parsed.user, parsed.password, parsed.host]).toEqual(['user', 'p@ss', 'host']);
    expect(parsed.redacted).toBe('tcp://user:***@host:9007/amps/json');
  });

  it('reads a user name holding @ (an e-mail address), and hides the password after it', () => {
    const parsed = parseUri('tcp://alice@example.com:s3cret@host:9007/amps/json');
    expect([parsed.user, parsed.password, parsed.host]).toEqual(['alice@example.com', 's3cret', 'host']);
    expect(parsed.redacted).toBe('tcp://alice@example.com:***@host:9007/amps/json');
  });

  it.each([
    'tcp://corp/alice:hunter2@h:1/amps/json',
    'tcp://alice:1234/hunter2@h:1/amps/json',
    'tcp://alice:12?tcp_nodelay=hunter2@h:1/amps/json',
    'tcp://alice:12?hunter2@h:1/amps/json',
    'tcp://alice:hun#ter2@h:1/amps/json',
    'tcp://h:1/amps/json?logon_options=a@b',
  ])('rejects an @ after the host, asking to percent-encode: %s', (uri) => {
    const error = uriError(uri);
    expect(error.message).toMatch(/'@' after the host: percent-encode @ \/ \? # in a user name or password/);
    expect(error.message).not.toContain('ter2');
  });

  it('reads a user without a password', () => {
    expect(parseUri('tcp://alice@h:1/amps').user).toBe('alice');
    expect(parseUri('tcp://alice:@h:1/amps').password).toBeUndefined();
  });

  it('returns frozen objects', () => {
    const parsed = parseUri('tcp://h:1/amps/json?tcp_nodelay=true');
    expect(Object.isFrozen(parsed)).toBe(true);
    expect(Object.isFrozen(parsed.options)).toBe(true);
  });

  it.each([
    ['tcp_nodelay=true', { tcp_nodelay: true }],
    [
      'tcp_nodelay=1&tcp_keepalive=yes&http_preflight=T',
      { tcp_nodelay: true, tcp_keepalive: true, http_preflight: true },
    ],
    [
      'tcp_nodelay=false&tcp_keepalive=0&http_preflight=No',
      { tcp_nodelay: false, tcp_keepalive: false, http_preflight: false },
    ],
    ['tcp_sndbuf=100000&tcp_rcvbuf=0&tcp_linger=5', { tcp_sndbuf: 100000, tcp_rcvbuf: 0, tcp_linger: 5 }],
    ['bind=10.0.0.1', { bind: '10.0.0.1' }],
    ['bind=10.0.0.1:5000', { bind: '10.0.0.1:5000' }],
    ['bind=::1', { bind: '::1' }],
    ['bind=[fe80::1]:5000', { bind: '[fe80::1]:5000' }],
    ['ip_protocol_prefer=IPv6', { ip_protocol_prefer: 'ipv6' }],
    ['ip_protocol_prefer=ipv4', { ip_protocol_prefer: 'ipv4' }],
    ['compression=zlib', { compression: 'zlib' }],
    ['logon_options=pretty', { logon_options: 'pretty' }],
  ])('reads the options %s', (query, options) => {
    expect(parseUri(`tcp://h:1/amps/json?${query}`).options).toEqual(options);
  });

  it('accepts compression on tcps too', () => {
    expect(parseUri('tcps://h:1/amps/json?compression=zlib').options.compression).toBe('zlib');
  });

  it.each([
    ['tcp://h:1/amps?tcp_nodelay=maybe', /tcp_nodelay must be a boolean/],
    ['tcp://h:1/amps?tcp_sndbuf=-1', /tcp_sndbuf must be a non-negative integer/],
    ['tcp://h:1/amps?tcp_rcvbuf=1.5', /tcp_rcvbuf must be a non-negative integer/],
    ['tcp://h:1/amps?tcp_linger=x', /tcp_linger must be a non-negative integer/],
    ['tcp://h:1/amps?tcp_keepalive=', /tcp_keepalive must be a boolean/],
    ['tcp://h:1/amps?bind=example.com', /bind must be an IP address/],
    ['tcp://h:1/amps?ip_protocol_prefer=ipv5', /ip_protocol_prefer must be ipv4 or ipv6/],
    ['tcp://h:1/amps?http_preflight=sure', /http_preflight must be a boolean/],
    ['tcp://h:1/amps?compression=gzip', /compression must be zlib/],
    ['ws://h:1/amps?compression=zlib', /tcp and tcps only/],
    ['tcp://h:1/amps?path=/tmp/x', /unix:\/\/ only/],
    ['tcp://h:1/amps?frobnicate=1', /unknown option 'frobnicate' \(known: tcp_nodelay, /],
    ['tcp://h:1/amps?tcp_nodelay=true&tcp_nodelay=false', /option 'tcp_nodelay' is given more than once$/],
    ['tcp://h:1/amps?bind=10.0.0.1&tcp_nodelay=1&bind=10.0.0.2', /option 'bind' is given more than once$/],
  ])('rejects %s', (uri, pattern) => {
    expect(uriError(uri).message).toMatch(pattern);
  });

  it.each([
    ['', /non-empty string/],
    ['localhost:9007', /expected scheme/],
    ['http://h:1/amps', /unsupported scheme 'http'/],
    ['tcp://:9007/amps', /malformed/],
    ['tcp:///amps/json', /missing host/],
    ['tcp://h/amps', /missing port/],
    ['tcp://h:0/amps', /port must be 1-65535/],
    ['tcp://h:65536/amps', /malformed/],
    ['tcp://h:abc/amps', /malformed/],
    ['tcp://h:1/other', /path must be \/amps/],
    ['tcp://h:1/ampsx/json', /path must be \/amps/],
    ['tcp://h:1/x/amps/json', /path must be \/amps/],
    ['tcp://h:1/amps/%E0%A4%A', /bad percent-encoding in the path/],
    ['tcp://u%ZZ:p@h:1/amps', /malformed|bad percent-encoding/],
    ['unix:///tmp/amps.sock', /after the socket path/],
    ['unix://localhost/amps/json', /needs a socket path/],
  ])('rejects %j', (uri, pattern) => {
    expect(uriError(uri).message).toMatch(pattern);
  });

  it('rejects what is not a string, whatever it is', () => {
    for (const value of [undefined, null, 42, {}, Object.create(null), Symbol('uri')]) {
      expect(() => parseUri(value as unknown as string)).toThrow(
        /expected a non-empty string, got (undefined|object|number|symbol)$/,
      );
      expect(() => parseUri(value as unknown as string)).toThrow(InvalidUriError);
    }
  });

  it('says what is wrong with a host or port the URL parser refuses', () => {
    for (const uri of [
      'tcp://h:65536/amps',
      'tcp://h:-1/amps',
      'tcp://h:abc/amps',
      'tcp://:1/amps',
      'tcp://h x:1/amps',
    ]) {
      expect(uriError(uri).message, uri).toMatch(/malformed host:port \(port must be 1-65535\)/);
    }
  });

  it('never puts the password in an error message', () => {
    const bad = [
      'tcp://user:hunter2@h:1/amps?tcp_nodelay=maybe',
      'tcp://user:hunter2@h:1/amps?unknown=1',
      'tcp://user:hunter2@h/amps',
      'tcp://user:hunter2@h:99999/amps',
      'tcp://user:hunter2@h:1/nope',
      'http://user:hunter2@h:1/amps',
      'tcp://user:hun/ter2@h:1/amps',
      'tcp://user:hun?ter2@h:1/amps',
      'tcp://user:hunter2@h:1/amps/%E0%A4%A',
      'tcp://user:hunter2%ZZ@h:1/amps',
      'tcp://user:1234hunter2@:1/amps',
      'tcp://h:1/amps?password=hunter2',
      'tcp://h:1/amps?auth=hunter2',
      'tcp://h:1/amps?credential=hunter2',
    ];
    for (const uri of bad) {
      const error = uriError(uri);
      expect(error.message, uri).not.toContain('hunter2');
      expect(error.message, uri).not.toContain('ter2');
    }
  });
});

describe('redactUri', () => {
  it.each([
    ['tcp://user:secret@h:1/amps', 'tcp://user:***@h:1/amps'],
    ['tcp://:secret@h:1', 'tcp://:***@h:1'],
    ['tcp://u:p@ss@host:9007/amps/json', 'tcp://u:***@host:9007/amps/json'],
    ['tcp://u:1234@h:9/amps/json', 'tcp://u:***@h:9/amps/json'],
    ['tcp://u:pa/ss@host:9007', 'tcp://u:***@host:9007'],
    ['tcp://u:p?w@host:9007', 'tcp://u:***@host:9007'],
    ['tcp://u:p#w@h:1', 'tcp://u:***@h:1'],
    ['tcp://u@h:1/amps', 'tcp://u@h:1/amps'],
    ['tcp://me@corp.com:secret@h:1/amps', 'tcp://me@corp.com:***@h:1/amps'],
    ['tcp://me@corp.com@h:1/amps', 'tcp://me@corp.com@h:1/amps'],
    ['tcp://corp/me:secret@h:1/amps', 'tcp://corp/me:***@h:1/amps'],
    ['tcp://u:secret@[::1]:9007/amps', 'tcp://u:***@[::1]:9007/amps'],
    ['tcp://[::1]:9007/amps', 'tcp://[::1]:9007/amps'],
    ['u:secret@h:1/amps', 'u:***@h:1/amps'],
    ['tcp:/u:secret@h:1/amps', 'tcp:***@h:1/amps'],
    ['tcp:u:secret@h:1/amps', 'tcp:***@h:1/amps'],
    // `tcp:/` + `:` + a password starting `//`: the `://` ends no scheme (found by the property below).
    ['tcp:/://secret@h:1/amps', 'tcp:***@h:1/amps'],
    ['u:secret@h:1/amps?x=tcp://y', 'u:***@h:1/amps?x=tcp://y'],
    ['tcp://h:9007/amps/json', 'tcp://h:9007/amps/json'],
    ['tcp://h:1/amps?tcp_nodelay=true&password=abc&pw=z', 'tcp://h:1/amps?tcp_nodelay=true&password=***&pw=***'],
    // Keys as the query parser reads them: `p%77` is `pw`.
    ['tcp://h:1/amps?p%77=abc', 'tcp://h:1/amps?p%77=***'],
    ['tcp://h:1/amps?%70assword=abc&%50%57=z', 'tcp://h:1/amps?%70assword=***&%50%57=***'],
    ['tcp://h:1/amps?p%7=abc&%zzpw=z', 'tcp://h:1/amps?p%7=abc&%zzpw=***'],
    ['tcp://h:1/amps?auth=abc&Credentials=z&oauth_code=y', 'tcp://h:1/amps?auth=***&Credentials=***&oauth_code=***'],
    ['not a uri', 'not a uri'],
    ['', ''],
  ])('redacts %s', (uri, redacted) => {
    expect(redactUri(uri)).toBe(redacted);
  });

  it('never leaves a password in the text, whatever the user name, the password and the scheme', () => {
    // The password ends with a marker: a leak of any part of it after a delimiter shows it.
    const password = fc
      .tuple(fc.stringMatching(/^\d{0,5}$/), fc.string({ unit: 'binary-ascii', maxLength: 12 }))
      .map(([digits, p]) => `${digits}${p}QXZ`)
      .filter((p) => !/\s/.test(p));
    const user = fc.string({ unit: 'binary-ascii', maxLength: 10 }).filter((u) => !/[\s:]|QXZ/.test(u));
    const prefix = fc.constantFrom('tcp://', 'TCP://', 'ws://', 'unix://', 'tcp:/', 'tcp:', '');
    fc.assert(
      fc.property(prefix, user, password, (scheme, u, p) => {
        const uri = `${scheme}${u}:${p}@host:9007/amps/json?tcp_nodelay=true`;
        expect(redactUri(uri)).not.toContain('QXZ');
        try {
          expect(parseUri(uri).redacted).not.toContain('QXZ');
        } catch (error) {
          expect(error).toBeInstanceOf(InvalidUriError);
          expect((error as Error).message).not.toContain('QXZ');
        }
      }),
      { numRuns: 3000 },
    );
  });

  it.each(['p%77', '%70assword', '%50%57'])('leaves no password in the error for an unknown option named %s', (key) => {
    expect(() => parseUri(`tcp://h:9007/amps/json?${key}=QXZ`)).toThrow(InvalidUriError);
    expect(() => parseUri(`tcp://h:9007/amps/json?${key}=QXZ`)).not.toThrow(/QXZ/);
  });

  it('never leaves a password in the text, whatever it contains', () => {
    const password = fc
      .string({ unit: 'binary-ascii', minLength: 4, maxLength: 20 })
      .map((p) => `Pw${p}`)
      .filter((p) => !/\s/.test(p));
    const user = fc.stringMatching(/^[a-z0-9._-]{0,8}$/);
    fc.assert(
      fc.property(user, password, fc.boolean(), (u, p, encode) => {
        const secret = encode ? encodeURIComponent(p) : p;
        const uri = `tcp://${u}:${secret}@host:9007/amps/json?tcp_nodelay=true`;
        expect(redactUri(uri)).not.toContain(secret);
        try {
          parseUri(uri);
        } catch (error) {
          expect(error).toBeInstanceOf(InvalidUriError);
          expect((error as Error).message).not.toContain(secret);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
