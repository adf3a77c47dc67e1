import { InvalidOptionsError, redactUri } from '@amps-ts/core-protocol';
import { describe, expect, it } from 'vitest';
import { fakeEnvironment } from '../../../delay-strategies/exponential/test/conformance/environment.js';
import { describeServerChooserConformance } from '../../round-robin/test/conformance/server-chooser.js';
import { shuffled } from '../src/index.js';

const servers = ['tcp://a:9007/amps/json', 'tcp://b:9007/amps/json', 'tcp://c:9007/amps/json'];
const info = (uri: string) => ({ uri: redactUri(uri), attempt: 1, at: 0 });

describeServerChooserConformance({
  name: 'shuffled',
  create: (list, environment) => shuffled(list, { environment }),
  load: () => import('../src/index.js'),
});

/** The order a chooser goes through its servers when every attempt fails. */
function order(chooser: ReturnType<typeof shuffled>, count = servers.length): string[] {
  return Array.from({ length: count }, () => {
    const uri = chooser.getCurrentURI() as string;
    chooser.reportFailure(new Error('refused'), info(uri));
    return uri;
  });
}

describe('shuffled', () => {
  it('draws an order per chooser, then goes round-robin through it, always the same order', () => {
    const seen = new Set<string>();
    for (let seed = 1; seed <= 40; seed++) {
      const tried = order(shuffled(servers, { environment: fakeEnvironment(seed) }), 9);
      expect([...tried.slice(0, 3)].sort()).toEqual(servers);
      expect(tried.slice(3, 6)).toEqual(tried.slice(0, 3));
      expect(tried.slice(6, 9)).toEqual(tried.slice(0, 3));
      seen.add(tried.slice(0, 3).join(' '));
    }
    expect(seen.size).toBe(6); // every order of three servers turns up
  });

  it('stays on a server that worked', () => {
    const chooser = shuffled(servers, { environment: fakeEnvironment(3) });
    order(chooser, 1);
    const second = chooser.getCurrentURI() as string;
    chooser.reportSuccess(info(second));
    expect(chooser.getCurrentURI()).toBe(second);
  });

  it('spreads 10,000 clients evenly over 3 servers, and spreads the clients of a lost server over the rest', () => {
    const environment = fakeEnvironment(2024);
    const clients = Array.from({ length: 10_000 }, () => shuffled(servers, { environment }));
    const first = new Map<string, number>();
    for (const client of clients) {
      const uri = client.getCurrentURI() as string;
      first.set(uri, (first.get(uri) ?? 0) + 1);
    }
    const shares = servers.map((uri) => (first.get(uri) ?? 0) / clients.length);
    expect(Math.max(...shares) / Math.min(...shares)).toBeLessThan(1.1);

    // Server a goes down: its clients move on, half to b and half to c.
    const movedTo = new Map<string, number>();
    for (const client of clients) {
      if (client.getCurrentURI() !== servers[0]) continue;
      client.reportFailure(new Error('down'), info(servers[0] as string));
      const uri = client.getCurrentURI() as string;
      movedTo.set(uri, (movedTo.get(uri) ?? 0) + 1);
    }
    const b = movedTo.get(servers[1] as string) ?? 0;
    const c = movedTo.get(servers[2] as string) ?? 0;
    expect(Math.max(b, c) / Math.min(b, c)).toBeLessThan(1.15);
  });

  it('adds a server at a random place once the order is drawn, without moving the current one', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const chooser = shuffled(servers, { environment: fakeEnvironment(seed) });
      order(chooser, 1 + (seed % 3));
      const current = chooser.getCurrentURI();
      chooser.add('tcp://d:9007/amps/json');
      expect(chooser.getCurrentURI()).toBe(current);
      expect(new Set(order(chooser, 4))).toEqual(new Set([...servers, 'tcp://d:9007/amps/json']));
    }
  });

  it('draws nothing until the first server is asked for', () => {
    const environment = fakeEnvironment();
    const chooser = shuffled(servers, { environment }).add('tcp://d:9007/amps/json');
    expect(environment.calls.random).toBe(0);
    chooser.getCurrentURI();
    expect(environment.calls.random).toBe(3);
    chooser.getCurrentURI();
    expect(environment.calls.random).toBe(3);
  });
  it('refuses an environment without random() (a TypeError on the first getCurrentURI() otherwise)', () => {
    expect(() => shuffled([servers[1] as string], { environment: {} as never })).toThrow(
      'shuffled: environment needs random()',
    );
  });

  it('refuses a default authenticator without its three methods, instead of failing every logon', () => {
    const getToken = () => 'token';
    expect(() => shuffled([servers[1] as string], { authenticator: getToken as never })).toThrow(
      'shuffled: the authenticator option must have authenticate(), retry() and completed() methods',
    );
    expect(() => shuffled([], { authenticator: {} as never })).toThrow(InvalidOptionsError);
    // authenticate() alone: a server answering `retry` or accepting the logon would find the rest missing.
    const partial = { authenticate: () => 'token' } as never;
    expect(() => shuffled([], { authenticator: partial })).toThrow(InvalidOptionsError);
    expect(() => shuffled([{ uri: 'tcp://a:9007/amps/json', authenticator: partial }])).toThrow(
      'the authenticator for tcp://a:9007/amps/json must have authenticate(), retry() and completed() methods',
    );
  });

  it('refuses one URI string given for the list of servers (a string is iterable, one character per server)', () => {
    expect(() => shuffled('tcp://svc:hunter2@a:9007/amps/json')).toThrow(
      "shuffled: servers must be a list; got the string 'tcp://svc:***@a:9007/amps/json' (wrap it in [ ])",
    );
    expect(() => shuffled('tcp://a:9007/amps/json')).toThrow(InvalidOptionsError);
  });
});
