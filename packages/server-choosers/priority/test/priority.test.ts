import { ConnectionError, InvalidOptionsError, redactUri } from '@amps-ts/core-protocol';
import { describe, expect, it } from 'vitest';
import { fakeEnvironment } from '../../../delay-strategies/exponential/test/conformance/environment.js';
import { describeServerChooserConformance } from '../../round-robin/test/conformance/server-chooser.js';
import { priorityFailback } from '../src/index.js';

const a = 'tcp://svc:primary-pw@a:9007/amps/json';
const b = 'tcp://b:9007/amps/json';
const c = 'tcp://c:9007/amps/json';

describeServerChooserConformance({
  name: 'priorityFailback',
  create: (servers, environment) => priorityFailback(servers, { environment }),
  load: () => import('../src/index.js'),
});

function setup(options: { failbackAfterMs?: number; maximumFailbackAfterMs?: number } = {}) {
  const environment = fakeEnvironment();
  const logged: Array<{ message: string; fields?: Record<string, unknown> }> = [];
  const chooser = priorityFailback([a, b, c], {
    ...options,
    environment,
    logger: { info: (message, fields) => logged.push({ message, fields }) },
  });
  const info = (uri: string) => ({ uri: redactUri(uri), attempt: 1, at: environment.now() });
  const fail = (uri = chooser.getCurrentURI() as string) =>
    chooser.reportFailure(new ConnectionError('refused'), info(uri));
  const succeed = (uri = chooser.getCurrentURI() as string) => chooser.reportSuccess({ ...info(uri), latencyMs: 4 });
  /** Advances the clock in 100 ms steps until the chooser asks to leave `from`; returns how long that took. */
  const untilFailback = (from: string) => {
    let waited = 0;
    while (!chooser.shouldSwitch(from)) {
      environment.advance(100);
      waited += 100;
    }
    return waited;
  };
  return { chooser, environment, logged, fail, succeed, untilFailback };
}

describe('priorityFailback', () => {
  it('starts on the first server and fails over in order of preference', () => {
    const { chooser, fail } = setup();
    const tried: unknown[] = [];
    for (let i = 0; i < 5; i++) {
      tried.push(chooser.getCurrentURI());
      fail();
    }
    expect(tried).toEqual([a, b, c, a, b]);
  });

  it('fails back once the preferred server has gone failbackAfterMs without a failure, not before', () => {
    const { chooser, environment, fail, succeed, logged } = setup({ failbackAfterMs: 10_000 });
    fail(); // a
    succeed(); // b
    expect(chooser.getCurrentURI()).toBe(b);
    environment.advance(9_999);
    expect(chooser.shouldSwitch(b)).toBe(false);
    expect(chooser.getCurrentURI()).toBe(b);
    environment.advance(1);
    expect(chooser.shouldSwitch(b)).toBe(true);
    expect(chooser.getCurrentURI()).toBe(a);
    succeed();
    expect(chooser.shouldSwitch(a)).toBe(false);
    expect(logged).toEqual([
      {
        message: 'failing back to a preferred server',
        fields: { from: b, to: 'tcp://svc:***@a:9007/amps/json', quietForMs: 10_000 },
      },
    ]);
  });

  it('does not flap: each failed fail-back doubles the wait for that server, up to the maximum', () => {
    const { chooser, environment, fail, succeed, untilFailback } = setup({
      failbackAfterMs: 1_000,
      maximumFailbackAfterMs: 3_000,
    });
    fail(); // a
    succeed(); // b
    const waits: number[] = [];
    for (let round = 0; round < 4; round++) {
      waits.push(untilFailback(b));
      expect(chooser.getCurrentURI()).toBe(a);
      fail(); // a is still down: straight back to b
      expect(chooser.getCurrentURI()).toBe(b);
      succeed();
    }
    expect(waits).toEqual([1_000, 2_000, 3_000, 3_000]);

    // Once it works again (it holds for failbackAfterMs), the wait is back to failbackAfterMs.
    untilFailback(b);
    succeed(); // a
    environment.advance(1_000);
    fail(); // a goes down
    succeed(); // b
    environment.advance(1_000);
    expect(chooser.shouldSwitch(b)).toBe(true);
  });

  it('counts a fail-back that is accepted and then drops at once as failed (a flapping primary is not retried every wait)', () => {
    const { chooser, environment, fail, succeed, untilFailback } = setup({
      failbackAfterMs: 1_000,
      maximumFailbackAfterMs: 8_000,
    });
    fail(); // a
    succeed(); // b
    const waits: number[] = [];
    for (let round = 0; round < 4; round++) {
      waits.push(untilFailback(b));
      succeed(); // a accepts the logon...
      environment.advance(200);
      fail(); // ...and drops the client 200 ms later
      expect(chooser.getCurrentURI()).toBe(b);
      succeed();
    }
    expect(waits).toEqual([1_000, 2_000, 4_000, 8_000]);
  });

  it('forgets a fail-back called off before its attempt (disconnect()): a later success there is an ordinary one', () => {
    const { chooser, environment, fail, succeed, untilFailback } = setup({ failbackAfterMs: 10_000 });
    fail(); // a
    succeed(); // b
    untilFailback(b);
    chooser.reportSwitchCancelled();
    succeed(a); // a connectAndLogon() after the disconnect()
    environment.advance(1_000);
    fail(a); // an ordinary drop, not a failed fail-back: the wait is not doubled
    succeed(b);
    expect(untilFailback(b)).toBe(10_000);
  });

  it('with failbackAfterMs 0, still fails back after a thousand failed fail-backs (0 x Infinity is NaN)', () => {
    const { chooser, environment, fail, succeed } = setup({ failbackAfterMs: 0 });
    fail(); // a
    succeed(); // b
    for (let round = 0; round < 1_100; round++) {
      environment.advance(1_000);
      expect(chooser.shouldSwitch(b), `round ${round}`).toBe(true);
      fail(); // a is still down: straight back to b
      succeed();
    }
    environment.advance(1_000);
    expect(chooser.shouldSwitch(b)).toBe(true);
  });

  it('after losing a server, goes straight to the most preferred one not known to be down', () => {
    const { chooser, environment, fail, succeed } = setup({ failbackAfterMs: 5_000 });
    fail(); // a
    fail(); // b
    succeed(); // c
    environment.advance(5_000);
    // c drops before any shouldSwitch poll; a and b have been quiet long enough.
    fail(c);
    expect(chooser.getCurrentURI()).toBe(a);
  });

  it('reaches every server when each attempt takes failbackAfterMs or longer (never bounces between two dead ones)', () => {
    // a and b are black-holed: each attempt ends in a 5 s connect timeout; c is up.
    for (const failbackAfterMs of [5_000, 0]) {
      const { chooser, environment, fail } = setup({ failbackAfterMs });
      const tried: unknown[] = [];
      for (let i = 0; i < 3; i++) {
        tried.push(chooser.getCurrentURI());
        environment.advance(5_000);
        fail();
      }
      expect(tried, `failbackAfterMs ${failbackAfterMs}`).toEqual([a, b, c]);
    }
  });

  it('only ever switches to a more-preferred server, and ignores servers it does not know', () => {
    const { chooser, environment, fail, succeed } = setup({ failbackAfterMs: 0 });
    expect(chooser.shouldSwitch(a)).toBe(false);
    fail(); // a
    succeed(); // b
    expect(chooser.shouldSwitch('tcp://elsewhere:9007/amps/json')).toBe(false);
    environment.advance(1);
    expect(chooser.shouldSwitch(redactUri(b))).toBe(true);
    expect(chooser.getCurrentURI()).toBe(a);
  });

  it('defaults: 30 s before failing back, at most 5 min after failed fail-backs', () => {
    expect(priorityFailback([a]).options).toEqual({ failbackAfterMs: 30_000, maximumFailbackAfterMs: 300_000 });
    expect(priorityFailback([a], { failbackAfterMs: 600_000 }).options.maximumFailbackAfterMs).toBe(600_000);
  });

  it('refuses an environment without now() (a TypeError on the first failure in the reconnect loop otherwise)', () => {
    expect(() => priorityFailback([a], { environment: {} as never })).toThrow(
      'priorityFailback: environment needs now()',
    );
  });

  it('rejects bad options with an InvalidOptionsError', () => {
    for (const options of [
      { failbackAfterMs: -1 },
      { failbackAfterMs: Number.NaN },
      { failbackAfterMs: 10_000, maximumFailbackAfterMs: 5_000 },
    ]) {
      expect(() => priorityFailback([a], options), JSON.stringify(options)).toThrow(InvalidOptionsError);
    }
  });
  it('refuses a default authenticator without its three methods, instead of failing every logon', () => {
    const getToken = () => 'token';
    expect(() => priorityFailback([b], { authenticator: getToken as never })).toThrow(
      'priorityFailback: the authenticator option must have authenticate(), retry() and completed() methods',
    );
    expect(() => priorityFailback([], { authenticator: {} as never })).toThrow(InvalidOptionsError);
    // authenticate() alone: a server answering `retry` or accepting the logon would find the rest missing.
    const partial = { authenticate: () => 'token' } as never;
    expect(() => priorityFailback([], { authenticator: partial })).toThrow(InvalidOptionsError);
    expect(() => priorityFailback([{ uri: 'tcp://a:9007/amps/json', authenticator: partial }])).toThrow(
      'the authenticator for tcp://a:9007/amps/json must have authenticate(), retry() and completed() methods',
    );
  });

  it('refuses one URI string given for the list of servers (a string is iterable, one character per server)', () => {
    expect(() => priorityFailback('tcp://svc:hunter2@a:9007/amps/json')).toThrow(
      "priorityFailback: servers must be a list; got the string 'tcp://svc:***@a:9007/amps/json' (wrap it in [ ])",
    );
    expect(() => priorityFailback('tcp://a:9007/amps/json')).toThrow(InvalidOptionsError);
  });
});
