/**
 * How HAClient follows the transport's page hints (`online`, `offline`, `visible`, ...), driven by
 * hand on a Node transport given an `onHint`, with a clock and timers that only the test moves.
 */
import {
  ConnectionError,
  type Environment,
  type ReconnectDelayStrategy,
  type TimerHandle,
  type Transport,
  type TransportHint,
} from '@amps-ts/core-protocol';
import { startTestServer, type TestServer } from '@amps-ts/test-server';
import { nodeTransport } from '@amps-ts/transport-node';
import { beforeEach, describe, expect, it } from 'vitest';
import { HAClient } from '../src/index.js';
import { cleanups } from './helpers.js';

/** Timers that fire only when the test says; `armed(predicate)` resolves when one is set. */
function fakeClock() {
  let now = 0;
  const timers = new Map<TimerHandle, { fn: () => void; ms: number }>();
  const watchers: Array<{ test: (ms: number) => boolean; resolve: (ms: number) => void }> = [];
  let next = 0;
  const environment: Environment = {
    now: () => now,
    random: () => 0.5,
    setTimeout: (fn, ms) => {
      const handle = ++next as unknown as TimerHandle;
      timers.set(handle, { fn, ms });
      for (const w of watchers.filter((w) => w.test(ms))) {
        watchers.splice(watchers.indexOf(w), 1);
        w.resolve(ms);
      }
      return handle;
    },
    clearTimeout: (handle) => {
      timers.delete(handle);
    },
  };
  return {
    environment,
    advance: (ms: number) => {
      now += ms;
    },
    armed: (test: (ms: number) => boolean) => new Promise<number>((resolve) => watchers.push({ test, resolve })),
    /** Runs (and removes) the pending timers of `ms`. */
    fire: (ms: number) => {
      for (const [handle, timer] of [...timers]) {
        if (timer.ms !== ms) continue;
        timers.delete(handle);
        timer.fn();
      }
    },
  };
}

/** nodeTransport with an `onHint` the test drives, and a switch that makes every connect fail. */
function hintedTransport() {
  const base = nodeTransport();
  const listeners = new Set<(hint: TransportHint) => void>();
  const state = { refuse: false, connects: 0, listeners: () => listeners.size };
  const transport: Transport = {
    schemes: base.schemes,
    connect: async (uri, handlers, options) => {
      state.connects++;
      if (state.refuse) throw new ConnectionError('net::ERR_INTERNET_DISCONNECTED');
      return base.connect(uri, handlers, options);
    },
    onHint: (listener) => {
      const entry = (hint: TransportHint) => listener(hint);
      listeners.add(entry);
      return () => listeners.delete(entry);
    },
  };
  const hint = (h: TransportHint) => {
    for (const listener of [...listeners]) listener(h);
  };
  return { transport, hint, state };
}

/** A delay strategy that gives up after `budget` waits, as one with maximumAttempts does. */
function budgetedDelay(budget: number, waitMs: number) {
  const counts = { waits: 0, resets: 0 };
  const delay: ReconnectDelayStrategy = {
    getConnectWaitDuration: () => {
      if (++counts.waits > budget) throw new Error(`gave up after ${budget} attempts`);
      return counts.waits === 1 ? 0 : waitMs;
    },
    reset: () => {
      counts.waits = 0;
      counts.resets++;
    },
  };
  return { delay, counts };
}

describe('HAClient and page hints', () => {
  let server: TestServer;
  beforeEach(async () => {
    server = await startTestServer({});
    cleanups.push(() => server.close());
  });

  function client(name: string, transport: Transport, delay: ReconnectDelayStrategy, environment: Environment) {
    const ha = new HAClient(name, {
      transport,
      servers: [server.tcpUri('json')],
      delay,
      environment,
      heartbeat: false,
    });
    cleanups.push(() => ha.disconnect());
    return ha;
  }

  /**
   * A client on a budget of 2 waits of 60 s whose first attempt was refused: the loop waits a
   * minute before the next.
   */
  async function failedFirstAttempt(name: string) {
    const clock = fakeClock();
    const { transport, hint, state } = hintedTransport();
    const { delay, counts } = budgetedDelay(2, 60_000);
    const ha = client(name, transport, delay, clock.environment);
    state.refuse = true;
    const connecting = ha.connectAndLogon();
    connecting.catch(() => {});
    await clock.armed((ms) => ms === 60_000);
    return { clock, hint, state, counts, connecting };
  }

  it('while offline makes no attempt (its budget stays whole), and on online connects at once with a new budget', async () => {
    const { clock, hint, state, counts, connecting } = await failedFirstAttempt('hints-offline');
    hint('offline');
    // The minute passes: the attempt due fails, and the next would use up the budget and give up.
    const armed = clock.armed(() => true);
    clock.advance(60_000);
    clock.fire(60_000);
    const outcome = await Promise.race([
      armed.then(() => 'waiting'),
      connecting.then(
        () => 'connected',
        (error: Error) => `gave up: ${error.message}`,
      ),
    ]);
    expect(outcome).toBe('waiting');
    expect(state.connects).toBe(2);
    expect(counts.waits).toBe(2);

    state.refuse = false;
    hint('online'); // no timer fires: the hint alone starts the next attempt
    await connecting;
    expect(state.connects).toBe(3);
    expect(counts.resets).toBe(1);
    expect(counts.waits).toBe(1); // a new budget: the first wait of a sweep
  });

  it('while offline with no online to come, tries again every 10 s on a fresh budget, and never gives up', async () => {
    const { clock, hint, state, counts, connecting } = await failedFirstAttempt('hints-offline-probe');
    hint('offline'); // and the browser never says online again (a VPN it misreads, say)
    let probe = clock.armed((ms) => ms === 10_000);
    clock.fire(60_000); // the attempt due fails: offline, the client waits to probe
    for (let round = 1; round <= 3; round++) {
      await probe; // waiting to probe
      const attempts = state.connects;
      probe = clock.armed((ms) => ms === 10_000);
      clock.fire(10_000); // a probe: a new sweep, its first attempt at once; it fails
      await probe;
      expect(state.connects).toBe(attempts + 1);
      expect(counts.waits).toBe(1); // each probe on a fresh budget: it never runs out
    }
    state.refuse = false;
    clock.fire(10_000); // the next probe finds the network there
    await connecting;
  });

  it('wakes a backoff wait on online and on visible', async () => {
    const clock = fakeClock();
    const { transport, hint, state } = hintedTransport();
    const { delay } = budgetedDelay(10, 60_000);
    const ha = client('hints-wake', transport, delay, clock.environment);
    state.refuse = true;
    const connecting = ha.connectAndLogon();
    connecting.catch(() => {});
    let waiting = clock.armed((ms) => ms === 60_000);
    for (const wake of ['online', 'visible'] as const) {
      await waiting;
      const attempts = state.connects;
      if (wake === 'visible') state.refuse = false;
      waiting = clock.armed((ms) => ms === 60_000);
      hint(wake);
      if (wake === 'online')
        await waiting; // the attempt ran and failed; the next wait is armed
      else await connecting;
      expect(state.connects).toBe(attempts + 1);
    }
  });

  // A page restored from the back/forward cache says pageshow, and may not say visible.
  it.each(['visible', 'pageshow'] as const)(
    'on pagehide closes the connection (so the page can enter the back/forward cache) and reconnects on %s',
    async (shown) => {
      const clock = fakeClock();
      const { transport, hint, state } = hintedTransport();
      const { delay } = budgetedDelay(10, 60_000);
      const ha = client('hints-pagehide', transport, delay, clock.environment);
      await ha.connectAndLogon();
      const reasons: Array<string | undefined> = [];
      ha.onStateChange((e) => e.state === 'Disconnected' && reasons.push(e.reason));
      const waiting = clock.armed((ms) => ms === 10_000);
      hint('hidden'); // a tab switched away from: nothing changes
      expect(ha.client.isConnected).toBe(true);
      ha.publish('t', '{"n":1}'); // by an earlier pagehide listener, say: it goes out before the close
      hint('pagehide');
      await waiting; // no attempt: one would open a WebSocket as the page is cached
      expect(ha.client.isConnected).toBe(false);
      expect(reasons).toEqual(['the page was left (pagehide)']);
      expect(state.connects).toBe(1);
      await expect.poll(() => server.stats().published).toBe(1);
      const recovered = new Promise<void>((resolve) =>
        ha.onStateChange((e) => e.state === 'Resubscribed' && resolve()),
      );
      hint(shown); // restored from the cache: no timer fires, the hint alone reconnects
      await recovered;
      expect(state.connects).toBe(2);
    },
  );

  it('on pagehide while a connection is being opened does not stay connected: it waits until visible', async () => {
    const clock = fakeClock();
    const { transport, hint, state } = hintedTransport();
    // The first connect waits until the test lets it go on.
    let opening: () => void = () => {};
    const opened = new Promise<void>((resolve) => {
      opening = resolve;
    });
    let go: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      go = resolve;
    });
    const connect = transport.connect;
    transport.connect = async (uri, handlers, options) => {
      opening();
      await gate;
      return connect(uri, handlers, options);
    };
    const ha = client('hints-pagehide-connecting', transport, budgetedDelay(10, 60_000).delay, clock.environment);
    const connecting = ha.connectAndLogon();
    connecting.catch(() => {});
    await opened;
    hint('pagehide'); // left while the WebSocket is opening
    const probing = clock.armed((ms) => ms === 10_000);
    go();
    const outcome = await Promise.race([probing.then(() => 'waiting'), connecting.then(() => 'connected')]);
    expect(outcome).toBe('waiting');
    expect(ha.client.isConnected).toBe(false);
    expect(state.connects).toBe(1);
    hint('visible');
    await connecting;
    expect(state.connects).toBe(2);
  });

  it('listens from the first attempt, also when a subscribe (not connectAndLogon) starts connecting', async () => {
    const clock = fakeClock();
    const { transport, hint, state } = hintedTransport();
    const ha = client('hints-subscribe-first', transport, budgetedDelay(10, 60_000).delay, clock.environment);
    state.refuse = true;
    const waiting = clock.armed((ms) => ms === 60_000);
    const subscription = ha.subscribe('ticks', { onMessage: () => {} });
    await waiting; // the first attempt failed; the loop waits a minute
    expect(state.listeners()).toBe(1);
    state.refuse = false;
    hint('visible');
    await subscription.ready;
    expect(state.connects).toBe(2);
  });

  it('stops listening on disconnect(), whatever state it is in, and ignores hints afterwards', async () => {
    const clock = fakeClock();
    const { transport, hint, state } = hintedTransport();
    for (let i = 0; i < 20; i++) {
      const ha = client(`hints-leak-${i}`, transport, budgetedDelay(10, 60_000).delay, clock.environment);
      state.refuse = i % 2 === 1; // half of them still reconnecting, half connected
      const connecting = ha.connectAndLogon();
      connecting.catch(() => {});
      if (state.refuse) await clock.armed((ms) => ms === 60_000);
      else await connecting;
      hint(i % 4 < 2 ? 'offline' : 'hidden');
      await ha.disconnect();
    }
    expect(state.listeners()).toBe(0);
    const connects = state.connects;
    hint('online');
    expect(state.connects).toBe(connects);
  });

  it('stops listening when it gives up, and listens again from the next connectAndLogon()', async () => {
    const clock = fakeClock();
    const { transport, hint, state } = hintedTransport();
    // One attempt per sweep: the first is refused, and the delay strategy gives up.
    const ha = client('hints-give-up', transport, budgetedDelay(1, 60_000).delay, clock.environment);
    state.refuse = true;
    for (let round = 1; round <= 3; round++) {
      await expect(ha.connectAndLogon()).rejects.toThrow('gave up');
      expect(state.listeners()).toBe(0);
    }
    hint('offline'); // unheard: the next start does not wait for an online
    state.refuse = false;
    await ha.connectAndLogon();
    expect(state.listeners()).toBe(1);
    expect(state.connects).toBe(4);
    await ha.disconnect();
    expect(state.listeners()).toBe(0);
  });

  it('after disconnect() while offline, connects again at once: it does not wait for an online it stopped listening for', async () => {
    const clock = fakeClock();
    const { transport, hint, state } = hintedTransport();
    const ha = client('hints-offline-reconnect', transport, budgetedDelay(10, 0).delay, clock.environment);
    await ha.connectAndLogon();
    hint('offline');
    await ha.disconnect();
    await ha.connectAndLogon(); // the network came back unheard; the attempt shows whether it is
    expect(state.connects).toBe(2);
    expect(ha.isReady).toBe(true);
  });
});
