import {
  type Authenticator,
  ConnectionError,
  InvalidOptionsError,
  InvalidUriError,
  redactUri,
} from '@amps-ts/core-protocol';
import { describe, expect, it } from 'vitest';
import { roundRobin } from '../src/index.js';
import { describeServerChooserConformance } from './conformance/server-chooser.js';

const a = 'tcp://a:9007/amps/json';
const b = 'tcp://user:pw-b@b:9007/amps/json';
const c = 'ws://c:9008/amps/json';
const at = (uri: string) => ({ uri: redactUri(uri), attempt: 1, at: 0 });
const token = (value: string): Authenticator => ({
  authenticate: () => value,
  retry: () => value,
  completed: () => {},
});

describeServerChooserConformance({
  name: 'roundRobin',
  create: (servers) => roundRobin(servers),
  load: () => import('../src/index.js'),
});

describe('roundRobin (AMPS DefaultServerChooser parity)', () => {
  it('tries the servers in order, wrapping around, one step per failure', () => {
    const chooser = roundRobin([a, b, c]);
    const tried: unknown[] = [];
    for (let i = 0; i < 5; i++) {
      tried.push(chooser.getCurrentURI());
      chooser.reportFailure(new ConnectionError('refused'), at(chooser.getCurrentURI() as string));
    }
    expect(tried).toEqual([a, b, c, a, b]);
  });

  it('stays on the server that worked, and moves on from there when it fails', () => {
    const chooser = roundRobin([a, b, c]);
    chooser.reportFailure(new ConnectionError('refused'), at(a));
    chooser.reportSuccess({ ...at(b), latencyMs: 3 });
    expect(chooser.getCurrentURI()).toBe(b);
    chooser.reportFailure(new ConnectionError('refused'), at(b));
    expect(chooser.getCurrentURI()).toBe(c);
  });

  it('add() and addAll() append, and chain', () => {
    const chooser = roundRobin().add(a).addAll(b, { uri: c });
    expect(
      [0, 1, 2].map(() => {
        const uri = chooser.getCurrentURI();
        chooser.reportFailure(new Error('x'), at(uri as string));
        return uri;
      }),
    ).toEqual([a, b, c]);
  });

  it('returns the authenticator given for each server, else the default one', () => {
    const fallback = token('default');
    const chooser = roundRobin([{ uri: a, authenticator: token('for-a') }], { authenticator: fallback })
      .add(b, token('for-b'))
      .add(c);
    const seen: unknown[] = [];
    for (let i = 0; i < 3; i++) {
      seen.push(chooser.getCurrentAuthenticator()?.authenticate(undefined, undefined));
      chooser.reportFailure(new Error('x'), at(chooser.getCurrentURI() as string));
    }
    expect(seen).toEqual(['for-a', 'for-b', 'default']);
    expect(roundRobin([a]).getCurrentAuthenticator()).toBeUndefined();
    expect(roundRobin().getCurrentAuthenticator()).toBeUndefined();
  });

  it("getError() lists each failed server's last error, passwords hidden, and forgets a server that then worked", () => {
    const chooser = roundRobin([a, b]);
    chooser.reportFailure(new ConnectionError('connect ECONNREFUSED 10.0.0.1:9007'), at(a));
    chooser.reportFailure(new ConnectionError(`cannot reach ${b}`), at(b));
    expect(chooser.getError()).toBe(
      'tcp://a:9007/amps/json (ConnectionError: connect ECONNREFUSED 10.0.0.1:9007); ' +
        'tcp://user:***@b:9007/amps/json (ConnectionError: cannot reach tcp://user:***@b:9007/amps/json)',
    );
    chooser.reportSuccess(at(a));
    expect(chooser.getError()).toBe(
      'tcp://user:***@b:9007/amps/json (ConnectionError: cannot reach tcp://user:***@b:9007/amps/json)',
    );
    chooser.reportSuccess(at(b));
    expect(chooser.getError()).toBe('');
  });

  it('hides passwords of URIs it does not know, too', () => {
    const chooser = roundRobin([a]);
    chooser.reportFailure(new Error('proxy wss://px:hunter2@proxy:443 refused'), at(a));
    expect(chooser.getError()).toBe('tcp://a:9007/amps/json (Error: proxy wss://px:***@proxy:443 refused)');
    chooser.reportFailure(new Error('proxy wss://px:p@ss/w?rd@proxy:443 refused'), at(a));
    expect(chooser.getError()).not.toMatch(/ss\/w|rd@/);
  });

  it('records a report about another server without moving', () => {
    const chooser = roundRobin([a, b, c]);
    chooser.reportFailure(new Error('late'), at(c));
    expect(chooser.getCurrentURI()).toBe(a);
    expect(chooser.getError()).toBe('ws://c:9008/amps/json (Error: late)');
  });

  it('rejects a malformed URI with an InvalidUriError that hides the password, and a server listed twice', () => {
    expect(() => roundRobin(['http://u:secret@x:1/amps'])).toThrow(InvalidUriError);
    expect(() => roundRobin(['tcp://u:secret@x/amps'])).toThrow("invalid AMPS URI 'tcp://u:***@x/amps': missing port");
    expect(() => roundRobin([a, a])).toThrow(InvalidOptionsError);
    expect(() => roundRobin([b]).add('tcp://user:other@b:9007/amps/json')).toThrow(
      'roundRobin: tcp://user:***@b:9007/amps/json is already in the list',
    );
    expect(() => roundRobin([42 as never])).toThrow(InvalidOptionsError);
    expect(() => roundRobin([{ uri: a, authenticator: {} as never }])).toThrow(InvalidOptionsError);
  });
  it('refuses a server listed twice however its host name is capitalised, as host names are case-insensitive', () => {
    expect(() =>
      roundRobin(['tcp://amps-a.example.com:9007/amps/json', 'tcp://AMPS-A.example.com:9007/amps/json']),
    ).toThrow('roundRobin: tcp://AMPS-A.example.com:9007/amps/json is already in the list');
  });
  it('takes servers whose URIs differ in the case of what is not a host name (a socket path, a user name) as two', () => {
    expect(roundRobin(['unix:///tmp/AMPS.sock/amps/json', 'unix:///tmp/amps.sock/amps/json']).getCurrentURI()).toBe(
      'unix:///tmp/AMPS.sock/amps/json',
    );
    expect(() =>
      roundRobin(['tcp://Reader@amps-a:9007/amps/json', 'tcp://reader@amps-a:9007/amps/json']),
    ).not.toThrow();
  });
  it('refuses a default authenticator without its three methods, instead of failing every logon', () => {
    const getToken = () => 'token';
    expect(() => roundRobin([a], { authenticator: getToken as never })).toThrow(
      'roundRobin: the authenticator option must have authenticate(), retry() and completed() methods',
    );
    expect(() => roundRobin([], { authenticator: {} as never })).toThrow(InvalidOptionsError);
    // authenticate() alone: a server answering `retry` or accepting the logon would find the rest missing.
    const partial = { authenticate: () => 'token' } as never;
    expect(() => roundRobin([], { authenticator: partial })).toThrow(InvalidOptionsError);
    expect(() => roundRobin([{ uri: 'tcp://a:9007/amps/json', authenticator: partial }])).toThrow(
      'the authenticator for tcp://a:9007/amps/json must have authenticate(), retry() and completed() methods',
    );
  });

  it('refuses one URI string given for the list of servers (a string is iterable, one character per server)', () => {
    expect(() => roundRobin('tcp://svc:hunter2@a:9007/amps/json')).toThrow(
      "roundRobin: servers must be a list; got the string 'tcp://svc:***@a:9007/amps/json' (wrap it in [ ])",
    );
    expect(() => roundRobin('tcp://a:9007/amps/json')).toThrow(InvalidOptionsError);
  });
});
