/**
 * The conformance suite every `ServerChooser` runs: the contract's shape, failure moves on and
 * success stays, per-server authenticators, no password in what it produces, injected time and
 * randomness only, nothing done at import.
 */
import { type Authenticator, type ConnectionInfo, redactUri, type ServerChooser } from '@amps-ts/core-protocol';
import { describe, expect, it, vi } from 'vitest';
import {
  type FakeEnvironment,
  fakeEnvironment,
  watchGlobals,
} from '../../../../delay-strategies/exponential/test/conformance/environment.js';

export interface ServerChooserConformance {
  name: string;
  /** A chooser over `servers`, in this order of preference where the chooser has one. */
  create(
    servers: ReadonlyArray<{ uri: string; authenticator?: Authenticator }>,
    environment: FakeEnvironment,
  ): ServerChooser;
  /** Imports the package afresh, to prove it draws no randomness and reads no clock at import. */
  load?(): Promise<unknown>;
}

const password = 's3cret-pw';
const servers = [
  `tcp://alice:${password}@a:9007/amps/json`,
  'tcp://b:9007/amps/json',
  `wss://bob:${password}@c:9443/amps/json`,
];

function authenticator(name: string): Authenticator {
  return { authenticate: () => name, retry: () => name, completed: () => {} };
}

function info(uri: string, environment: FakeEnvironment, latencyMs?: number): ConnectionInfo {
  return { uri: redactUri(uri), attempt: 1, at: environment.now(), ...(latencyMs === undefined ? {} : { latencyMs }) };
}

/** Fails every attempt `count` times; returns the URIs tried, in order. */
function failRepeatedly(chooser: ServerChooser, environment: FakeEnvironment, count: number): string[] {
  const tried: string[] = [];
  for (let i = 0; i < count; i++) {
    const uri = chooser.getCurrentURI() as string;
    tried.push(uri);
    environment.advance(250);
    chooser.reportFailure(new Error(`connect to ${uri} refused`), info(uri, environment));
  }
  return tried;
}

export function describeServerChooserConformance(suite: ServerChooserConformance): void {
  const create = (environment = fakeEnvironment(), entries = servers.map((uri) => ({ uri }))) =>
    suite.create(entries, environment);

  describe(`${suite.name} satisfies the ServerChooser contract`, () => {
    it('has the contract methods', () => {
      const chooser = create();
      for (const method of ['getCurrentURI', 'getCurrentAuthenticator', 'reportFailure', 'reportSuccess', 'getError']) {
        expect(typeof (chooser as unknown as Record<string, unknown>)[method], method).toBe('function');
      }
      if (chooser.shouldSwitch !== undefined) expect(typeof chooser.shouldSwitch).toBe('function');
    });

    it('draws no randomness and reads no clock when created', () => {
      const environment = fakeEnvironment();
      create(environment);
      expect(environment.calls).toEqual({ now: 0, random: 0, setTimeout: 0 });
    });

    it('returns one of its servers, with its password, and the same one until told how it went', () => {
      const chooser = create();
      const uri = chooser.getCurrentURI();
      expect(servers).toContain(uri);
      expect(chooser.getCurrentURI()).toBe(uri);
      expect(chooser.getCurrentURI()).toBe(uri);
    });

    it('returns undefined when it has no servers, and getError says so', () => {
      const chooser = suite.create([], fakeEnvironment());
      expect(chooser.getCurrentURI()).toBeUndefined();
      expect(chooser.getError()).not.toBe('');
    });

    it('moves to another server after a failure, and reaches every server', () => {
      const environment = fakeEnvironment();
      const chooser = create(environment);
      const first = chooser.getCurrentURI() as string;
      chooser.reportFailure(new Error('refused'), info(first, environment));
      expect(chooser.getCurrentURI()).not.toBe(first);
      expect(new Set(failRepeatedly(create(environment), environment, servers.length * 2))).toEqual(new Set(servers));
    });

    it('stays on a server that succeeded', () => {
      const environment = fakeEnvironment();
      const chooser = create(environment);
      failRepeatedly(chooser, environment, 2);
      const uri = chooser.getCurrentURI() as string;
      chooser.reportSuccess(info(uri, environment, 12));
      expect(chooser.getCurrentURI()).toBe(uri);
      environment.advance(1_000);
      expect(chooser.getCurrentURI()).toBe(uri);
      if (chooser.shouldSwitch) expect(typeof chooser.shouldSwitch(uri)).toBe('boolean');
    });

    it("returns each server's own authenticator", () => {
      const environment = fakeEnvironment();
      const chooser = create(
        environment,
        servers.map((uri, i) => ({ uri, authenticator: authenticator(`token-${i}`) })),
      );
      for (let i = 0; i < servers.length * 2; i++) {
        const uri = chooser.getCurrentURI() as string;
        expect(chooser.getCurrentAuthenticator()?.authenticate(undefined, undefined)).toBe(
          `token-${servers.indexOf(uri)}`,
        );
        chooser.reportFailure(new Error('refused'), info(uri, environment));
      }
    });

    it('never reveals a password in getError(), even when the errors quote the URI', () => {
      const environment = fakeEnvironment();
      const chooser = create(environment);
      const tried = failRepeatedly(chooser, environment, servers.length * 2);
      const text = chooser.getError();
      expect(text).not.toContain(password);
      for (const uri of new Set(tried)) expect(text).toContain(redactUri(uri));
    });

    it('uses only the injected clock and randomness, and starts no timer', () => {
      const environment = fakeEnvironment(4);
      const chooser = create(environment);
      const globalCalls = watchGlobals(() => {
        const tried = failRepeatedly(chooser, environment, 10);
        chooser.reportSuccess(info(tried.at(-1) as string, environment, 5));
        chooser.shouldSwitch?.(chooser.getCurrentURI() as string);
        chooser.getError();
      });
      expect(globalCalls).toEqual({ 'Math.random': 0, 'Date.now': 0, 'performance.now': 0, setTimeout: 0 });
      expect(environment.calls.setTimeout).toBe(0);
    });

    it('chooses the same servers for the same seed', () => {
      const run = () => {
        const environment = fakeEnvironment(42);
        return failRepeatedly(create(environment), environment, 12);
      };
      expect(run()).toEqual(run());
    });

    const load = suite.load;
    if (load) {
      it('draws no randomness and reads no clock at import', async () => {
        vi.resetModules();
        const globalCalls = await watchGlobals(load);
        // Not performance.now or setTimeout: the test runner's own module loading may use them.
        expect([globalCalls['Math.random'], globalCalls['Date.now']]).toEqual([0, 0]);
      });
    }
  });
}
