import { ConnectionError, InvalidOptionsError, redactUri } from '@amps-ts/core-protocol';
import { describe, expect, it } from 'vitest';
import { fakeEnvironment } from '../../../delay-strategies/exponential/test/conformance/environment.js';
import { describeServerChooserConformance } from '../../round-robin/test/conformance/server-chooser.js';
import { type HealthWeightedOptions, healthWeighted } from '../src/index.js';

const a = 'tcp://svc:pw-a@a:9007/amps/json';
const b = 'tcp://b:9007/amps/json';
const c = 'tcp://c:9007/amps/json';

describeServerChooserConformance({
  name: 'healthWeighted',
  create: (servers, environment) => healthWeighted(servers, { environment }),
  load: () => import('../src/index.js'),
});

function setup(options: HealthWeightedOptions = {}) {
  const environment = fakeEnvironment();
  const logged: string[] = [];
  const log = (level: string) => (message: string, fields?: Record<string, unknown>) =>
    logged.push(`${level} ${message} ${JSON.stringify(fields)}`);
  const chooser = healthWeighted([a, b, c], {
    environment,
    logger: { info: log('info'), warn: log('warn') },
    ...options,
  });
  const info = (uri: string, latencyMs?: number) => ({ uri: redactUri(uri), attempt: 1, at: 0, latencyMs });
  const fail = (uri = chooser.getCurrentURI() as string) =>
    chooser.reportFailure(new ConnectionError('refused'), info(uri));
  const succeed = (uri: string, latencyMs?: number) => chooser.reportSuccess(info(uri, latencyMs));
  const circuits = () => chooser.health().map((h) => h.circuit);
  return { chooser, environment, logged, fail, succeed, circuits };
}

describe('healthWeighted', () => {
  it('refuses an environment without the functions it uses (a TypeError on a later reconnect otherwise)', () => {
    expect(() => healthWeighted([], { environment: { random: () => 0 } as never })).toThrow(
      'healthWeighted: environment needs now()',
    );
  });

  it('after a failure, prefers the server with the lowest average connect-plus-logon latency', () => {
    const { chooser, fail, succeed } = setup();
    succeed(b, 50);
    succeed(c, 10);
    succeed(a, 5);
    expect(chooser.getCurrentURI()).toBe(a);
    fail(); // a: 5 + 1000 penalty; b: 50; c: 10
    expect(chooser.getCurrentURI()).toBe(c);
  });

  it('keeps a moving average of latency', () => {
    const { chooser, succeed } = setup({ latencyAlpha: 0.25 });
    succeed(a, 100);
    succeed(a, 200);
    succeed(a);
    succeed(a, 300);
    expect(chooser.health()[0]).toMatchObject({
      uri: 'tcp://svc:***@a:9007/amps/json',
      latencyMs: 168.75,
      successes: 4,
    });
  });

  it('opens the circuit after failureThreshold failures, half-opens after the cool-down for one probe', () => {
    // No failure penalty: only the circuit keeps the fast server a out.
    const { chooser, environment, logged, fail, succeed, circuits } = setup({
      failureThreshold: 3,
      coolDownMs: 10_000,
      failurePenaltyMs: 0,
    });
    succeed(b, 100);
    succeed(c, 200);
    succeed(a, 1);
    fail();
    fail();
    expect(chooser.getCurrentURI()).toBe(a); // two failures: still closed, still fastest
    fail();
    expect(circuits()).toEqual(['open', 'closed', 'closed']);
    expect(chooser.getCurrentURI()).toBe(b);
    fail(b);
    expect(chooser.getCurrentURI()).toBe(b); // a is open; b is still the best of the rest

    environment.advance(10_000);
    expect(circuits()).toEqual(['half-open', 'closed', 'closed']);
    fail(b);
    expect(chooser.getCurrentURI()).toBe(a); // the probe
    fail(a);
    expect(circuits()).toEqual(['open', 'closed', 'closed']);
    expect(chooser.getCurrentURI()).toBe(b);

    environment.advance(10_000);
    fail(b); // b's third failure in a row: its circuit opens too
    expect(chooser.getCurrentURI()).toBe(a);
    succeed(a, 1);
    expect(circuits()).toEqual(['closed', 'open', 'closed']);
    expect(chooser.health()[0]?.consecutiveFailures).toBe(0);
    expect(logged).toEqual([
      'warn circuit opened {"uri":"tcp://svc:***@a:9007/amps/json","consecutiveFailures":3,"coolDownMs":10000}',
      'warn probe failed: circuit reopened {"uri":"tcp://svc:***@a:9007/amps/json","consecutiveFailures":4,"coolDownMs":10000}',
      'warn circuit opened {"uri":"tcp://b:9007/amps/json","consecutiveFailures":3,"coolDownMs":10000}',
      'info circuit closed {"uri":"tcp://svc:***@a:9007/amps/json"}',
    ]);
  });

  it('with every circuit open, offers the server whose cool-down ends first', () => {
    const { chooser, environment, fail, succeed, circuits } = setup({ failureThreshold: 1, coolDownMs: 1_000 });
    fail(a);
    environment.advance(10);
    fail(c);
    environment.advance(10);
    fail(b);
    expect(circuits()).toEqual(['open', 'open', 'open']);
    expect(chooser.getCurrentURI()).toBe(a);
    fail(a); // a reopens for another cool-down: c is next to reopen
    expect(chooser.getCurrentURI()).toBe(c);
    // A total outage, attempts faster than the cool-down: each server in turn, its circuit open
    // all along (each failed attempt restarts it); the first to accept closes its circuit.
    const tried: unknown[] = [];
    for (let i = 0; i < 4; i++) {
      environment.advance(10);
      tried.push(chooser.getCurrentURI());
      fail();
    }
    expect(tried).toEqual([c, a, b, c]);
    expect(circuits()).toEqual(['open', 'open', 'open']);
    succeed(chooser.getCurrentURI() as string);
    expect(circuits()).toEqual(['closed', 'open', 'open']);
  });

  it('keeps its choice until the attempt is reported, even if a cool-down ends meanwhile', () => {
    const { chooser, environment, fail } = setup({ failureThreshold: 1, coolDownMs: 1_000, failurePenaltyMs: 0 });
    fail(a);
    expect(chooser.getCurrentURI()).toBe(b);
    environment.advance(5_000); // a is half-open now, and first in the list
    expect(chooser.getCurrentURI()).toBe(b);
    fail(b);
    expect(chooser.getCurrentURI()).toBe(a);
  });

  it('defaults: 3 failures open a circuit for 30 s; alpha 0.3; 1 s of penalty per failure', () => {
    expect(healthWeighted([a]).options).toEqual({
      failureThreshold: 3,
      coolDownMs: 30_000,
      latencyAlpha: 0.3,
      failurePenaltyMs: 1_000,
    });
  });

  it('rejects bad options with an InvalidOptionsError', () => {
    for (const options of [
      { failureThreshold: 0 },
      { failureThreshold: 1.5 },
      { coolDownMs: -1 },
      { latencyAlpha: 0 },
      { latencyAlpha: 1.5 },
      { failurePenaltyMs: Number.NaN },
    ]) {
      expect(() => healthWeighted([a], options), JSON.stringify(options)).toThrow(InvalidOptionsError);
    }
  });
  it('refuses a default authenticator without its three methods, instead of failing every logon', () => {
    const getToken = () => 'token';
    expect(() => healthWeighted([b], { authenticator: getToken as never })).toThrow(
      'healthWeighted: the authenticator option must have authenticate(), retry() and completed() methods',
    );
    expect(() => healthWeighted([], { authenticator: {} as never })).toThrow(InvalidOptionsError);
    // authenticate() alone: a server answering `retry` or accepting the logon would find the rest missing.
    const partial = { authenticate: () => 'token' } as never;
    expect(() => healthWeighted([], { authenticator: partial })).toThrow(InvalidOptionsError);
    expect(() => healthWeighted([{ uri: 'tcp://a:9007/amps/json', authenticator: partial }])).toThrow(
      'the authenticator for tcp://a:9007/amps/json must have authenticate(), retry() and completed() methods',
    );
  });

  it('refuses one URI string given for the list of servers (a string is iterable, one character per server)', () => {
    expect(() => healthWeighted('tcp://svc:hunter2@a:9007/amps/json')).toThrow(
      "healthWeighted: servers must be a list; got the string 'tcp://svc:***@a:9007/amps/json' (wrap it in [ ])",
    );
    expect(() => healthWeighted('tcp://a:9007/amps/json')).toThrow(InvalidOptionsError);
  });
});
