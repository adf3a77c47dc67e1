/**
 * HAClient's lifecycle: connectAndLogon() and disconnect() racing each other, the states()
 * iterator, commands and pause() waiting through a reconnect (bounded by their timeout and signal),
 * and a retry loop whose attempts fail at once. Real brokers; a manual clock where time matters.
 */
import {
  AbortError,
  Bookmarks,
  ConnectionError,
  DisconnectedError,
  type Environment,
  InvalidOptionsError,
  InvalidUriError,
  type Message,
  RetryExhaustedError,
  type ServerChooser,
  type SubscriptionManager,
  TimedOutError,
  type TimerHandle,
  type Transport,
} from '@amps-ts/core-protocol';
import { healthWeighted } from '@amps-ts/server-chooser-health-weighted';
import type { TestServer } from '@amps-ts/test-server';
import { nodeTransport } from '@amps-ts/transport-node';
import { describe, expect, it } from 'vitest';
import { HAClient, type HAClientOptions, MemorySubscriptionManager } from '../src/index.js';
import { client, server, stateWhere } from './helpers.js';

/** A clock and timers that move only when the test says (`advanceTo` runs the timers due by then, in order). */
function manualClock() {
  let now = 0;
  let next = 0;
  const timers = new Map<TimerHandle, { fn: () => void; due: number }>();
  const environment: Environment = {
    now: () => now,
    random: () => 0.5,
    setTimeout: (fn, ms) => {
      const handle = ++next as unknown as TimerHandle;
      timers.set(handle, { fn, due: now + ms });
      return handle;
    },
    clearTimeout: (handle) => {
      timers.delete(handle);
    },
  };
  const advanceTo = async (t: number) => {
    for (;;) {
      const due = [...timers].filter(([, timer]) => timer.due <= t).sort((a, b) => a[1].due - b[1].due)[0];
      if (!due) break;
      timers.delete(due[0]);
      now = Math.max(now, due[1].due);
      due[1].fn();
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    now = t;
  };
  return { environment, advanceTo, pending: () => timers.size };
}

/** nodeTransport whose connects wait until `letConnect()`. */
function gatedTransport() {
  const base = nodeTransport();
  let letConnect!: () => void;
  const gate = new Promise<void>((resolve) => {
    letConnect = resolve;
  });
  let started!: () => void;
  const connectStarted = new Promise<void>((resolve) => {
    started = resolve;
  });
  const transport: Transport = {
    schemes: base.schemes,
    connect: async (uri, handlers, options) => {
      started();
      await gate;
      return base.connect(uri, handlers, options);
    },
  };
  return { transport, letConnect, connectStarted };
}

describe('HAClient lifecycle', () => {
  it('connectAndLogon() called while disconnect() is still closing: ends connected, and not in Shutdown', async () => {
    const s = await server();
    const ha = client('reconnect-during-disconnect', s.tcpUri('json'));
    await ha.connectAndLogon();
    const stopping = ha.disconnect();
    const again = ha.connectAndLogon();
    await stopping;
    await again;
    expect(ha.isReady).toBe(true);
    expect(ha.client.isConnected).toBe(true);
    expect(ha.state).not.toBe('Shutdown');
  });

  it('disconnect(), connectAndLogon(), disconnect() called at once: ends disconnected, in Shutdown, as the last call says', async () => {
    const s = await server();
    const ha = client('disconnect-connect-disconnect', s.tcpUri('json'));
    await ha.connectAndLogon();
    const first = ha.disconnect();
    const again = ha.connectAndLogon().then(
      () => 'connected',
      (error: Error) => error.name,
    );
    const last = ha.disconnect();
    await Promise.all([first, last]);
    expect(await again).not.toBe('connected');
    expect(ha.client.isConnected).toBe(false);
    expect(ha.state).toBe('Shutdown');
  });

  it('ends every next() of a states() iterator asked before the events came: none is left hanging after disconnect()', async () => {
    const s = await server();
    const ha = client('states-next-twice', s.tcpUri('json'));
    const iterator = ha.states()[Symbol.asyncIterator]();
    const first = iterator.next();
    const second = iterator.next();
    await ha.connectAndLogon();
    await ha.disconnect();
    const outcome = await Promise.race([
      Promise.all([first, second]).then((results) => results.map((r) => r.value?.state)),
      new Promise((r) => setImmediate(() => r('left hanging'))),
    ]);
    expect(outcome).toEqual(['Connected', 'LoggedOn']);
  });

  it("a states() iterator asked for after Shutdown yields nothing until the next run, then that run's events, and ends at its Shutdown", async () => {
    const s = await server();
    const ha = client('states-after-shutdown', s.tcpUri('json'));
    await ha.connectAndLogon();
    await ha.disconnect();
    const iterator = ha.states()[Symbol.asyncIterator]();
    const first = iterator.next();
    const outcome = await Promise.race([first, new Promise((r) => setImmediate(() => r('waiting')))]);
    expect(outcome).toBe('waiting'); // not the last run's Shutdown, nor ended
    await ha.connectAndLogon();
    await ha.disconnect();
    const seen = [(await first).value?.state];
    for (let r = await iterator.next(); !r.done; r = await iterator.next()) seen.push(r.value.state);
    expect(seen).toEqual(['Connected', 'LoggedOn', 'PublishReplayed', 'Resubscribed', 'Shutdown']);
  });

  it('tells listeners and states() iterators the events a listener causes after the event it heard, in the order they happened', async () => {
    const s = await server();
    const ha = client('states-nested', s.tcpUri('json'));
    let dropped = false;
    ha.onStateChange((e) => {
      // Drops the connection just recovered, once: Disconnected is emitted from within this call.
      if (e.state === 'Resubscribed' && !dropped) {
        dropped = true;
        ha.client.abort(new DisconnectedError('dropped by a listener'));
      }
    });
    const heard: string[] = [];
    ha.onStateChange((e) => heard.push(e.state));
    const iterated: string[] = [];
    const iterating = (async () => {
      for await (const e of ha.states()) {
        iterated.push(e.state);
        if (e.state === 'Resubscribed' && iterated.length > 4) break;
      }
    })();
    await ha.connectAndLogon();
    await iterating;
    const run = ['Connected', 'LoggedOn', 'PublishReplayed', 'Resubscribed'];
    expect(iterated).toEqual([...run, 'Disconnected', ...run]);
    expect(heard.slice(0, 5)).toEqual([...run, 'Disconnected']);
  });

  it('connectAndLogon() called by a listener of the give-up waits for the run it starts, not for the one given up', async () => {
    const s = await server();
    const base = nodeTransport();
    let connects = 0;
    const transport: Transport = {
      schemes: base.schemes,
      // The first attempt fails, the next ones connect.
      connect: (uri, handlers, options) =>
        connects++ === 0 ? Promise.reject(new Error('refused')) : base.connect(uri, handlers, options),
    };
    let waits = 0;
    const delay = {
      // Gives up after the first failure; a new run starts over.
      getConnectWaitDuration: () => {
        if (waits++ === 1) throw new RetryExhaustedError('no more', { elapsedMs: 0, attempts: 1, servers: [] });
        return 0;
      },
      reset: () => {},
    };
    const ha = client('give-up-listener', s.tcpUri('json'), { transport, delay });
    let again: Promise<unknown> | undefined;
    ha.onStateChange((e) => {
      if (e.state === 'Disconnected' && e.reason?.startsWith('gave up') && !again) {
        again = ha.connectAndLogon().then(
          () => 'connected',
          (error: unknown) => error,
        );
      }
    });
    await expect(ha.connectAndLogon()).rejects.toSatisfy(RetryExhaustedError.isInstance);
    expect(await again).toBe('connected');
    expect(ha.isReady).toBe(true);
  });

  it('disconnect() called twice at once: one Shutdown, both resolve', async () => {
    const s = await server();
    const ha = client('disconnect-twice', s.tcpUri('json'));
    await ha.connectAndLogon();
    const states: string[] = [];
    ha.onStateChange((e) => states.push(e.state));
    await Promise.all([ha.disconnect(), ha.disconnect()]);
    expect(states.filter((x) => x === 'Shutdown')).toHaveLength(1);
  });
});

describe('HAClient unsubscribe() given an aborted signal', () => {
  it('does nothing, as the Client: the subscription still delivers, and its id is not left held on the server', async () => {
    const s = await server();
    const ha = client('unsubscribe-aborted', s.tcpUri('json'));
    await ha.connectAndLogon();
    const got: Message[] = [];
    const sub = ha.subscribe('ticks', {
      subId: 'x',
      onMessage: (m) => {
        got.push(m);
      },
    });
    await sub.ready;
    await expect(ha.unsubscribe('x', { signal: AbortSignal.abort() })).rejects.toSatisfy(AbortError.isInstance);
    ha.client.publish('ticks', JSON.stringify({ n: 1 }));
    await ha.client.flush(); // the delivery, published before, has arrived
    expect(got.map((m) => m.json())).toEqual([{ n: 1 }]);
    // Taken back for real now: the id is free for a new subscription.
    await ha.unsubscribe('x');
    await ha.subscribe('ticks', { subId: 'x', onMessage: () => {} }).ready;
  });
});

describe('HAClient commands while reconnecting', () => {
  it('refuses a timeoutMs it cannot wait at once while disconnected, as when connected, instead of waiting without bound', async () => {
    const s = await server();
    const gated = gatedTransport();
    const ha = client('bad-timeout-waiting', s.tcpUri('json'), { transport: gated.transport });
    const outcomes = [Number.NaN, -5].map((timeoutMs) => ha.flush('processed', { timeoutMs }).catch((e: unknown) => e));
    const settled = await Promise.race([
      Promise.all(outcomes),
      new Promise((r) => setImmediate(() => setImmediate(() => r('pending')))),
    ]);
    gated.letConnect();
    expect(settled).not.toBe('pending');
    for (const outcome of await Promise.all(outcomes)) expect(InvalidOptionsError.isInstance(outcome)).toBe(true);
  });

  it('bounds a command by its timeoutMs in all, the wait for a reconnect included (not the wait, then its whole timeout again)', async () => {
    const s = await server();
    const clock = manualClock();
    const gated = gatedTransport();
    // The server never sees the flush: only its timeout can end it.
    const transportFilter = (bytes: Uint8Array, direction: 'in' | 'out') =>
      direction === 'out' && Buffer.from(bytes).includes('"c":"flush"') ? new Uint8Array(0) : bytes;
    const ha = client('total-timeout', s.tcpUri('json'), {
      transport: gated.transport,
      environment: clock.environment,
      client: { transportFilter },
    });
    const flushed = ha.flush('processed', { timeoutMs: 1000 }).catch((e: unknown) => e);
    await gated.connectStarted;
    await clock.advanceTo(900); // the reconnect takes 900 ms of the command's 1000
    const ready = new Promise<void>((resolve) => ha.onStateChange((e) => e.state === 'Resubscribed' && resolve()));
    gated.letConnect();
    await ready;
    await new Promise<void>((resolve) => setImmediate(resolve));
    await clock.advanceTo(1000);
    const outcome = await Promise.race([
      flushed,
      new Promise((r) => setImmediate(() => r('still waiting at 1000 ms'))),
    ]);
    await clock.advanceTo(5000);
    expect(outcome).not.toBe('still waiting at 1000 ms');
    expect(TimedOutError.isInstance(outcome)).toBe(true);
  });
});

describe('HAClient pause() while reconnecting', () => {
  /** A bookmark subscriber (id `s`) and a publisher; `oneMore()` publishes one message and returns all the subscriber got. */
  async function subscriber(s: TestServer, name: string, extra: Partial<HAClientOptions> = {}) {
    const ha = client(name, s.tcpUri('json'), extra);
    const publisher = client(`${name}-pub`, s.tcpUri('json'));
    await Promise.all([ha.connectAndLogon(), publisher.connectAndLogon()]);
    const got: number[] = [];
    const onMessage = (m: Message) => {
      got.push(m.json<{ n: number }>().n);
    };
    await ha.subscribe('prices', { subId: 's', bookmark: Bookmarks.EPOCH, onMessage }).ready;
    const oneMore = async () => {
      publisher.publish('prices', JSON.stringify({ n: got.length + 1 }));
      await publisher.publishFlush(5000);
      await ha.flush();
      await ha.flush();
      return got;
    };
    return { ha, oneMore };
  }

  it('does not pause a subscription on the next server when the pause() waiting for it was aborted', async () => {
    const s = await server();
    const { ha, oneMore } = await subscriber(s, 'pause-aborted');
    const down = stateWhere(ha, (e) => e.state === 'Disconnected');
    await s.kill();
    await down;
    const controller = new AbortController();
    const paused = ha.pause('s', { signal: controller.signal }).catch((e: unknown) => e);
    controller.abort();
    expect(AbortError.isInstance(await paused)).toBe(true); // the caller is told it did not happen
    const recovered = stateWhere(ha, (e) => e.state === 'Resubscribed');
    await s.restart();
    await recovered;
    expect(await oneMore()).toEqual([1]);
  });

  it('does not pause a subscription on the next server when pause() was given an already-aborted signal while connected', async () => {
    const s = await server();
    const { ha, oneMore } = await subscriber(s, 'pause-pre-aborted');
    const outcome = await ha.pause('s', { signal: AbortSignal.abort() }).catch((e: unknown) => e);
    expect(AbortError.isInstance(outcome)).toBe(true); // the caller is told it did not happen
    expect(await oneMore()).toEqual([1]); // and on this server it did not
    const down = stateWhere(ha, (e) => e.state === 'Disconnected');
    await s.kill();
    await down;
    const recovered = stateWhere(ha, (e) => e.state === 'Resubscribed');
    await s.restart();
    await recovered;
    expect(await oneMore()).toEqual([1, 2]);
  });

  it('resumes a subscription the recovery entered paused when the pause() waiting for it is aborted before it is sent', async () => {
    const s = await server();
    // Holds the recovery after the resubscribe, once `gate` is set.
    let gate: Promise<void> | undefined;
    let letResubscribe!: () => void;
    let resubscribing!: () => void;
    const inResubscribe = new Promise<void>((resolve) => {
      resubscribing = resolve;
    });
    const memory = new MemorySubscriptionManager();
    const subscriptionManager: SubscriptionManager = {
      add: (entry) => memory.add(entry),
      remove: (subId) => memory.remove(subId),
      clear: () => memory.clear(),
      list: () => memory.list(),
      resubscribe: async (enter, options) => {
        await memory.resubscribe(enter, options);
        if (gate) {
          resubscribing();
          await gate;
        }
      },
    };
    const { ha, oneMore } = await subscriber(s, 'pause-aborted-mid-recovery', { subscriptionManager });
    gate = new Promise<void>((resolve) => {
      letResubscribe = resolve;
    });
    const down = stateWhere(ha, (e) => e.state === 'Disconnected');
    await s.kill();
    await down;
    const controller = new AbortController();
    const paused = ha.pause('s', { signal: controller.signal }).catch((e: unknown) => e);
    const recovered = stateWhere(ha, (e) => e.state === 'Resubscribed');
    await s.restart();
    await inResubscribe; // entered paused, as marked
    controller.abort();
    expect(AbortError.isInstance(await paused)).toBe(true);
    letResubscribe();
    await recovered;
    expect(await oneMore()).toEqual([1]);
  });
});

/** A chooser over `uris` that moves on to the next one at each reported failure. */
function listChooser(uris: readonly string[]) {
  let at = 0;
  const given: string[] = [];
  const chooser: ServerChooser = {
    getCurrentURI: () => {
      const uri = uris[at % uris.length] as string;
      given.push(uri);
      return uri;
    },
    getCurrentAuthenticator: () => undefined,
    reportFailure: () => {
      at++;
    },
    reportSuccess: () => {},
    getError: () => '',
  };
  return { chooser, given };
}

describe('HAClient plugins', () => {
  it('yields to the event loop between attempts that fail at once with a zero wait (a transport that throws): disconnect() from a timer stops it', async () => {
    let asked = 0;
    const delay = {
      // A bound so that the test ends even when the loop never yields.
      getConnectWaitDuration: () => {
        if (++asked > 20_000)
          throw new RetryExhaustedError('bound reached', { elapsedMs: 0, attempts: asked, servers: [] });
        return 0; // retry at once, as fixedDelay({ delayMs: 0 }) does
      },
      reset: () => {},
    };
    const ha = new HAClient('hot-loop', {
      // Fails without I/O, and not as a bad URI (a whole pass of those gives up).
      transport: {
        schemes: ['tcp'],
        connect: () => {
          throw new ConnectionError('the transport failed at once');
        },
      },
      chooser: {
        getCurrentURI: () => 'tcp://127.0.0.1:1/amps/json',
        getCurrentAuthenticator: () => undefined,
        reportFailure: () => {},
        reportSuccess: () => {},
        getError: () => '',
      },
      delay,
      heartbeat: false,
    });
    const connecting = ha.connectAndLogon().catch((e: unknown) => e);
    await new Promise<void>((resolve) => setImmediate(resolve));
    const askedWhenTheEventLoopRan = asked;
    await ha.disconnect();
    await connecting;
    expect(askedWhenTheEventLoopRan).toBeLessThan(100);
  });

  it('a chooser whose every URI is invalid: each goes to onException once, and connectAndLogon() fails with an InvalidUriError after one pass', async () => {
    const clock = manualClock();
    const bad = ['http://127.0.0.1:1/amps/json', 'tcp://user:secret@127.0.0.1:1/amps/json?no_such_option=1'];
    const { chooser, given } = listChooser(bad);
    const ha = new HAClient('all-invalid', {
      transport: nodeTransport(),
      chooser,
      heartbeat: false,
      environment: clock.environment,
    });
    const reported: unknown[] = [];
    ha.onException((e) => reported.push(e));
    let outcome: unknown = 'still retrying';
    const connecting = ha.connectAndLogon().then(
      () => 'connected',
      (e: unknown) => e,
    );
    void connecting.then((o) => {
      outcome = o;
    });
    // A minute of the default backoff, a second at a time: retried for ever, it never settles.
    for (let t = 1000; t <= 60_000 && outcome === 'still retrying'; t += 1000) await clock.advanceTo(t);
    await ha.disconnect();
    expect(InvalidUriError.isInstance(outcome)).toBe(true);
    expect((outcome as Error).message).toMatch(/every URI the chooser gave is invalid/);
    expect((outcome as Error).message).not.toMatch(/secret/);
    expect(given).toEqual([...bad, bad[0]]); // one pass, then back at the first: given up
    expect(reported.map((e) => InvalidUriError.isInstance(e))).toEqual([true, true]);
  });

  it('a chooser that gives an invalid URI again before going on (a circuit breaker): the client goes on to the valid URI after it', async () => {
    const s = await server();
    // Invalid for this transport (no compression); with no failure penalty it stays the chooser's
    // first choice until its circuit opens (3 failures in a row).
    const invalid = 'tcp://127.0.0.1:1/amps/json?compression=zlib';
    const chooser = healthWeighted([invalid, s.tcpUri('json')], { failurePenaltyMs: 0 });
    const ha = client('invalid-retried', s.tcpUri('json'), {
      chooser,
      delay: { getConnectWaitDuration: () => 0, reset: () => {} },
    });
    const reported: unknown[] = [];
    ha.onException((e) => reported.push(e));
    await ha.connectAndLogon();
    expect(reported).toHaveLength(1);
    expect(InvalidUriError.isInstance(reported[0])).toBe(true);
  });

  it('a chooser of one invalid URI, given again and again: connectAndLogon() still fails with an InvalidUriError', async () => {
    const ha = client('only-invalid', 'tcp://127.0.0.1:1/amps/json?compression=zlib', {
      delay: { getConnectWaitDuration: () => 0, reset: () => {} },
    });
    ha.onException(() => {});
    await expect(ha.connectAndLogon()).rejects.toThrow(/every URI the chooser gave is invalid/);
  });

  it('a chooser with one invalid URI among good ones: reported to onException once, and the client connects (and reconnects) to the others', async () => {
    const s = await server();
    const { chooser } = listChooser(['http://127.0.0.1:1/amps/json', s.tcpUri('json')]);
    const ha = client('one-invalid', s.tcpUri('json'), {
      chooser,
      delay: { getConnectWaitDuration: () => 0, reset: () => {} },
    });
    const reported: unknown[] = [];
    ha.onException((e) => reported.push(e));
    await ha.connectAndLogon();
    // Dropped at once: the chooser goes past the invalid URI again, back to the server.
    const back = stateWhere(ha, (e) => e.state === 'Resubscribed');
    s.dropConnections();
    await back;
    expect(reported).toHaveLength(1);
    expect(InvalidUriError.isInstance(reported[0])).toBe(true);
  });
});
