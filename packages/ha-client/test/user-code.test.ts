/**
 * Application code that throws or misbehaves inside HAClient: loggers, choosers, delay strategies,
 * authenticators, listeners and stores. None of it may stop the reconnect loop, leave a promise
 * waiting for ever, reject where nobody listens, or keep other listeners from being called.
 */
import {
  type Authenticator,
  Bookmarks,
  type Command,
  type Logger,
  type ManagedSubscription,
  type ReconnectDelayStrategy,
  RetryExhaustedError,
  type ServerChooser,
  type SubscriptionManager,
} from '@amps-ts/core-protocol';
import { roundRobin } from '@amps-ts/server-chooser-round-robin';
import { startTestServer } from '@amps-ts/test-server';
import { describe, expect, it } from 'vitest';
import { type HAClient, MemoryBookmarkStore, MemoryPublishStore, MemorySubscriptionManager } from '../src/index.js';
import { cleanups, client, server, stateWhere } from './helpers.js';

/** A logger each of whose methods throws, recording what it was asked to log. */
function throwingLogger(logged: string[] = []): Logger {
  const fail = (message: string) => {
    logged.push(message);
    throw new Error('logger bug');
  };
  return { debug: fail, info: fail, warn: fail, error: fail };
}

/** A URI nothing listens on (a broker started and closed). */
async function deadUri(): Promise<string> {
  const s = await startTestServer({ sowTopics: [] });
  const uri = s.tcpUri('json');
  await s.close();
  return uri;
}

/** No wait between attempts; gives up (RetryExhaustedError) after `budget` attempts in a sweep. */
function attempts(
  budget = Number.POSITIVE_INFINITY,
  extra: Partial<ReconnectDelayStrategy> = {},
): ReconnectDelayStrategy {
  let count = 0;
  return {
    getConnectWaitDuration: () => {
      if (++count > budget) throw new RetryExhaustedError('out of attempts', { elapsedMs: 0, attempts: count - 1 });
      return 0;
    },
    reset: () => {
      count = 0;
    },
    ...extra,
  };
}

/** A round-robin chooser over `servers` with some methods replaced. */
function chooser(servers: string[], override: Partial<ServerChooser> = {}): ServerChooser {
  const inner = roundRobin(servers);
  return {
    getCurrentURI: () => inner.getCurrentURI(),
    getCurrentAuthenticator: () => inner.getCurrentAuthenticator(),
    reportFailure: (error, info) => inner.reportFailure(error, info),
    reportSuccess: (info) => inner.reportSuccess(info),
    getError: () => inner.getError(),
    ...override,
  };
}

/** Collects what reaches `onException`, resolving `next()` with the first one matching. */
function exceptions(ha: HAClient) {
  const seen: unknown[] = [];
  const waiters: Array<{ match: (e: unknown) => boolean; resolve: (e: unknown) => void }> = [];
  ha.onException((error) => {
    seen.push(error);
    for (const w of waiters.filter((w) => w.match(error))) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve(error);
    }
  });
  const message = (e: unknown) => (e instanceof Error ? e.message : String(e));
  return {
    seen,
    messages: () => seen.map(message),
    next: (text: string) =>
      new Promise<unknown>((resolve) => {
        const found = seen.find((e) => message(e).includes(text));
        if (found) resolve(found);
        else waiters.push({ match: (e) => message(e).includes(text), resolve });
      }),
  };
}

describe('a logger that throws', () => {
  it('does not stop a failover from a dead server to a live one', async () => {
    const s = await server();
    const logged: string[] = [];
    const ha = client('logger-failover', s.tcpUri('json'), {
      servers: [await deadUri(), s.tcpUri('json')],
      delay: attempts(),
      logger: throwingLogger(logged),
    });
    await ha.connectAndLogon({ signal: AbortSignal.timeout(5000) });
    expect(ha.isReady).toBe(true);
    expect(logged).toContain('connection attempt failed');
  });

  it('does not keep a give-up from rejecting connectAndLogon()', async () => {
    const logged: string[] = [];
    const ha = client('logger-give-up', await deadUri(), { delay: attempts(2), logger: throwingLogger(logged) });
    await expect(ha.connectAndLogon({ signal: AbortSignal.timeout(5000) })).rejects.toMatchObject({
      code: 'retry_exhausted',
    });
    expect(logged).toContain('giving up reconnecting');
  });

  it('does not replace the reason of an aborted connectAndLogon(), which still stops reconnecting', async () => {
    const ha = client('logger-abort', await deadUri(), {
      delay: { getConnectWaitDuration: () => 5, reset: () => {} },
      logger: throwingLogger(),
    });
    const abort = new AbortController();
    const reason = new Error('the application gave up');
    void stateWhere(ha, (e) => e.state === 'Disconnected').then(() => abort.abort(reason));
    const stopped = stateWhere(ha, (e) => e.reason === 'the application gave up');
    await expect(ha.connectAndLogon({ signal: abort.signal })).rejects.toBe(reason);
    await stopped; // the loop was stopped with the abort's reason
    expect(ha.state).toBe('Disconnected');
  });

  it('with a state listener that throws: the error goes to onException, and other listeners still hear', async () => {
    const s = await server();
    const ha = client('logger-listener', s.tcpUri('json'), { logger: throwingLogger() });
    const errors = exceptions(ha);
    ha.onStateChange(() => {
      throw new Error('listener bug');
    });
    const states: string[] = [];
    ha.onStateChange((e) => states.push(e.state));
    await ha.connectAndLogon({ signal: AbortSignal.timeout(5000) });
    expect(states).toContain('Resubscribed');
    expect(errors.messages()).toContain('listener bug');
  });

  it('does not crash a fail-back check', async () => {
    const s = await server();
    let checks = 0;
    const ha = client('logger-failback', s.tcpUri('json'), {
      chooser: chooser([s.tcpUri('json')], { shouldSwitch: () => checks++ === 0 }),
      failbackCheckMs: 1,
      logger: throwingLogger(),
    });
    await ha.connectAndLogon();
    // The move: the connection closes, and the client logs on again.
    await stateWhere(ha, (e) => e.state === 'Resubscribed');
    expect(ha.isReady).toBe(true);
  });
});

describe('a server chooser that misbehaves', () => {
  it('getCurrentURI() throwing: connectAndLogon() rejects, saying so', async () => {
    const ha = client('chooser-uri-throws', 'tcp://unused:1/amps/json', {
      chooser: chooser(['tcp://unused:1/amps/json'], {
        getCurrentURI: () => {
          throw new Error('chooser bug');
        },
      }),
    });
    await expect(ha.connectAndLogon({ signal: AbortSignal.timeout(5000) })).rejects.toThrow(/chooser bug/);
    expect(ha.state).toBe('Disconnected');
  });

  it.each([
    ['a number', 42],
    ['an object', {}],
    ['a bad URI', 'not a uri'],
  ])(
    'getCurrentURI() returning %s: the attempt fails, and given again, the client gives up with an InvalidUriError',
    async (_, uri) => {
      const ha = client('chooser-uri-bad', 'tcp://unused:1/amps/json', {
        chooser: chooser(['tcp://unused:1/amps/json'], { getCurrentURI: () => uri as string }),
        delay: attempts(), // no budget to run out: retrying a configuration error cannot help
      });
      const errors = exceptions(ha);
      await expect(ha.connectAndLogon({ signal: AbortSignal.timeout(5000) })).rejects.toMatchObject({
        code: 'invalid_uri',
      });
      expect(errors.seen).toHaveLength(1);
    },
  );

  it('getCurrentURI() returning an empty string: no server to connect to', async () => {
    const ha = client('chooser-uri-empty', 'tcp://unused:1/amps/json', {
      chooser: chooser(['tcp://unused:1/amps/json'], { getCurrentURI: () => '' }),
    });
    await expect(ha.connectAndLogon({ signal: AbortSignal.timeout(5000) })).rejects.toThrow(/no server/);
  });

  it('getError() throwing when there is no server: connectAndLogon() still rejects', async () => {
    const ha = client('chooser-get-error', 'tcp://unused:1/amps/json', {
      chooser: chooser(['tcp://unused:1/amps/json'], {
        getCurrentURI: () => undefined,
        getError: () => {
          throw new Error('getError bug');
        },
      }),
    });
    await expect(ha.connectAndLogon({ signal: AbortSignal.timeout(5000) })).rejects.toMatchObject({
      code: 'connection',
    });
  });

  it('reportFailure() throwing on a failed attempt: the loop goes on to the next server', async () => {
    const s = await server();
    const servers = [await deadUri(), s.tcpUri('json')];
    const inner = roundRobin(servers);
    const ha = client('chooser-report-failure', s.tcpUri('json'), {
      chooser: chooser(servers, {
        getCurrentURI: () => inner.getCurrentURI(),
        reportFailure: (error, info) => {
          inner.reportFailure(error, info);
          throw new Error('reportFailure bug');
        },
      }),
      delay: attempts(),
    });
    const errors = exceptions(ha);
    await ha.connectAndLogon({ signal: AbortSignal.timeout(5000) });
    expect(ha.isReady).toBe(true);
    expect(errors.messages()).toContain('reportFailure bug');
  });

  it('reportFailure() throwing on a dropped connection: the client reconnects', async () => {
    const s = await server();
    const ha = client('chooser-report-failure-drop', s.tcpUri('json'), {
      chooser: chooser([s.tcpUri('json')], {
        reportFailure: () => {
          throw new Error('reportFailure bug');
        },
      }),
      delay: attempts(),
    });
    const errors = exceptions(ha);
    await ha.connectAndLogon();
    const back = stateWhere(ha, (e) => e.state === 'Resubscribed');
    s.dropConnections();
    await back;
    await errors.next('reportFailure bug');
  });

  it('reportSuccess() throwing: the connection is kept, and the error goes to onException', async () => {
    const s = await server();
    const ha = client('chooser-report-success', s.tcpUri('json'), {
      chooser: chooser([s.tcpUri('json')], {
        reportSuccess: () => {
          throw new Error('reportSuccess bug');
        },
      }),
      delay: attempts(2),
    });
    const errors = exceptions(ha);
    const failures: string[] = [];
    ha.onStateChange((e) => e.state === 'Disconnected' && failures.push(e.reason ?? ''));
    await ha.connectAndLogon({ signal: AbortSignal.timeout(5000) });
    expect(ha.isReady).toBe(true);
    expect(failures).toEqual([]);
    expect(errors.messages()).toContain('reportSuccess bug');
  });

  it('shouldSwitch() throwing: reported, the connection is kept, and it is asked again', async () => {
    const s = await server();
    let asked = 0;
    const ha = client('chooser-should-switch', s.tcpUri('json'), {
      chooser: chooser([s.tcpUri('json')], {
        shouldSwitch: () => {
          asked++;
          throw new Error(`shouldSwitch bug ${asked}`);
        },
      }),
      failbackCheckMs: 1,
    });
    const errors = exceptions(ha);
    await ha.connectAndLogon();
    await errors.next('shouldSwitch bug 2');
    expect(ha.isReady).toBe(true);
  });

  it('getCurrentAuthenticator() throwing: that attempt fails, the next one goes on', async () => {
    const s = await server();
    let calls = 0;
    const ha = client('chooser-authenticator', s.tcpUri('json'), {
      chooser: chooser([s.tcpUri('json')], {
        getCurrentAuthenticator: () => {
          if (calls++ === 0) throw new Error('authenticator lookup bug');
          return undefined;
        },
      }),
      delay: attempts(),
    });
    const failed = stateWhere(ha, (e) => e.state === 'Disconnected');
    await ha.connectAndLogon({ signal: AbortSignal.timeout(5000) });
    expect((await failed).reason).toMatch(/authenticator lookup bug/);
  });
});

describe('a delay strategy that misbehaves', () => {
  it('getConnectWaitDuration() throwing another error gives up with a RetryExhaustedError caused by it', async () => {
    const bug = new Error('delay bug');
    const ha = client('delay-throws', await deadUri(), {
      delay: {
        getConnectWaitDuration: () => {
          throw bug;
        },
        reset: () => {},
      },
    });
    await expect(ha.connectAndLogon({ signal: AbortSignal.timeout(5000) })).rejects.toMatchObject({
      code: 'retry_exhausted',
      cause: bug,
    });
  });

  it('reset() throwing on a dropped connection that held: the client reconnects, the error to onException', async () => {
    const s = await server();
    let skew = 0;
    const ha = client('delay-reset-drop', s.tcpUri('json'), {
      environment: {
        now: () => performance.now() + skew,
        setTimeout: (callback, ms) => setTimeout(callback, ms),
        clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
        random: Math.random,
      },
      delay: attempts(Number.POSITIVE_INFINITY, {
        reset: () => {
          throw new Error('reset bug');
        },
      }),
    });
    const errors = exceptions(ha);
    await ha.connectAndLogon();
    skew += 1000; // the connection held (HELD_CONNECTION_MS): the drop starts a new sweep
    const back = stateWhere(ha, (e) => e.state === 'Resubscribed');
    s.dropConnections();
    await back;
    await errors.next('reset bug');
  });

  it('reset() throwing at a give-up: connectAndLogon() still rejects', async () => {
    const ha = client('delay-reset-give-up', await deadUri(), {
      delay: attempts(1, {
        reset: () => {
          throw new Error('reset bug');
        },
      }),
    });
    await expect(ha.connectAndLogon({ signal: AbortSignal.timeout(5000) })).rejects.toMatchObject({
      code: 'retry_exhausted',
    });
  });
});

describe('an authenticator that misbehaves', () => {
  it.each([
    [
      'authenticate throws',
      {
        authenticate: () => {
          throw new Error('token bug');
        },
      },
    ],
    ['authenticate rejects', { authenticate: () => Promise.reject(new Error('token bug')) }],
    [
      'completed throws',
      {
        completed: () => {
          throw new Error('token bug');
        },
      },
    ],
    ['authenticate never answers', { authenticate: () => new Promise<string>(() => {}) }],
  ] as Array<[string, Partial<Authenticator>]>)('%s: that attempt fails, the next one logs on', async (_, broken) => {
    const s = await server();
    let calls = 0;
    const good: Authenticator = { authenticate: (_u, p) => p ?? '', retry: (_u, p) => p ?? '', completed: () => {} };
    const ha = client('authenticator-broken', s.tcpUri('json'), {
      chooser: chooser([s.tcpUri('json')], {
        getCurrentAuthenticator: () => (calls++ === 0 ? { ...good, ...broken } : good),
      }),
      connectTimeoutMs: 200,
      delay: attempts(),
    });
    const failed = stateWhere(ha, (e) => e.state === 'Disconnected');
    await ha.connectAndLogon({ signal: AbortSignal.timeout(5000) });
    expect((await failed).reason).toMatch(/token bug|authenticator/);
  });

  it('authenticate throwing an error that quotes the password: the state event does not', async () => {
    const s = await server();
    const uri = s.tcpUri('json').replace('tcp://', 'tcp://alice:s3cret@');
    let calls = 0;
    const ha = client('authenticator-secret', uri, {
      chooser: chooser([uri], {
        getCurrentAuthenticator: () =>
          calls++ === 0
            ? {
                authenticate: (_u, password) => {
                  throw new Error(`the token service refused ${password}`);
                },
                retry: (_u, password) => password ?? '',
                completed: () => {},
              }
            : undefined,
      }),
      delay: attempts(),
    });
    const failed = stateWhere(ha, (e) => e.state === 'Disconnected');
    await ha.connectAndLogon({ signal: AbortSignal.timeout(5000) });
    const { reason } = await failed;
    expect(reason).toMatch(/the token service refused \*\*\*/);
    expect(reason).not.toContain('s3cret');
  });
});

describe('listeners that throw', () => {
  it('an onFailedWrite listener that throws: the others still hear, the error goes to onException', async () => {
    const s = await server();
    const ha = client('failed-write-listener', s.tcpUri('json'));
    const errors = exceptions(ha);
    ha.onFailedWrite(() => {
      throw new Error('failed-write listener bug');
    });
    const refused = new Promise((resolve) => ha.onFailedWrite(resolve));
    await ha.connectAndLogon();
    ha.publish('/AMPS/bad', '{}');
    await refused;
    await errors.next('failed-write listener bug');
  });

  it('a publish store whose discard() throws: onFailedWrite still hears of the refusal', async () => {
    const s = await server();
    const store = new MemoryPublishStore();
    store.discard = () => {
      throw new Error('discard bug');
    };
    const ha = client('failed-write-discard', s.tcpUri('json'), { publishStore: store });
    const errors = exceptions(ha);
    const refused = new Promise((resolve) => ha.onFailedWrite(resolve));
    await ha.connectAndLogon();
    ha.publish('/AMPS/bad', '{}');
    await refused;
    await errors.next('discard bug');
  });

  it('an onDuplicate that throws: reported, later messages still delivered', async () => {
    const s = await server();
    const ha = client('duplicate-hook', s.tcpUri('json'), {
      onDuplicate: () => {
        throw new Error('onDuplicate bug');
      },
    });
    const errors = exceptions(ha);
    await ha.connectAndLogon();
    ha.publish('dup', '1');
    await ha.publishFlush(5000);
    const seen: string[] = [];
    let wake: () => void = () => {};
    const two = new Promise<void>((resolve) => {
      wake = resolve;
    });
    const sub = ha.subscribe('dup', {
      bookmark: 'recent',
      onMessage: (m) => {
        seen.push(m.text());
        if (seen.length === 2) wake();
      },
    });
    await sub.ready;
    // The failover replays the first message, a duplicate for the hook; the second comes after it.
    const back = stateWhere(ha, (e) => e.state === 'Resubscribed');
    s.dropConnections();
    await back;
    ha.publish('dup', '2');
    await two;
    expect(seen).toEqual(['1', '2']);
    await errors.next('onDuplicate bug');
  });
});

describe('stores and subscription managers that throw', () => {
  it('a publish store whose cancelWaits() throws: disconnect() still closes and ends in Shutdown', async () => {
    const s = await server();
    const store = new MemoryPublishStore();
    store.cancelWaits = () => {
      throw new Error('cancelWaits bug');
    };
    const ha = client('store-cancel-waits', s.tcpUri('json'), { publishStore: store });
    const errors = exceptions(ha);
    await ha.connectAndLogon();
    await ha.disconnect();
    expect(ha.state).toBe('Shutdown');
    expect(ha.client.isConnected).toBe(false);
    expect(errors.messages()).toContain('cancelWaits bug');
  });

  it('a publish store whose lastPersisted() throws when a connection that replayed drops: the client reconnects', async () => {
    const s = await server();
    let failing = false;
    const store = new MemoryPublishStore();
    const lastPersisted = store.lastPersisted.bind(store);
    store.lastPersisted = () => {
      if (failing) throw new Error('lastPersisted bug');
      return lastPersisted();
    };
    const ha = client('store-last-persisted', s.tcpUri('json'), { publishStore: store, delay: attempts() });
    const errors = exceptions(ha);
    ha.publish('orders', '{}'); // stored while disconnected: the logon replays it
    await ha.connectAndLogon();
    failing = true;
    const back = stateWhere(ha, (e) => e.state === 'Resubscribed');
    s.dropConnections();
    await back;
    await errors.next('lastPersisted bug');
  });

  it('a publish store whose cancelWaits() throws at a give-up: connectAndLogon() still rejects', async () => {
    const store = new MemoryPublishStore();
    store.cancelWaits = () => {
      throw new Error('cancelWaits bug');
    };
    const ha = client('store-cancel-waits-give-up', await deadUri(), { publishStore: store, delay: attempts(1) });
    await expect(ha.connectAndLogon({ signal: AbortSignal.timeout(5000) })).rejects.toMatchObject({
      code: 'retry_exhausted',
    });
  });

  /** A memory subscription manager whose `method` throws. */
  function brokenManager(method: 'remove' | 'clear'): SubscriptionManager {
    const inner = new MemorySubscriptionManager();
    return {
      add: (m: ManagedSubscription) => inner.add(m),
      remove: (id: string) => (method === 'remove' ? fail() : inner.remove(id)),
      clear: () => (method === 'clear' ? fail() : inner.clear()),
      list: () => inner.list(),
      resubscribe: (execute: (command: Command) => Promise<void>, options?: { signal?: AbortSignal }) =>
        inner.resubscribe(execute, options),
    };
    function fail(): never {
      throw new Error(`manager ${method} bug`);
    }
  }

  it('an onFailedResubscribe that throws: reported to onException, taken as false (the recovery fails with the refusal and is retried)', async () => {
    const first = await server();
    const other = await server();
    const ha = client('failed-resubscribe-throws', first.tcpUri('json'), {
      servers: [first.tcpUri('json'), other.tcpUri('json')],
      delay: attempts(),
      bookmarkStore: false, // resubscribed from the bookmark it was given, as it was given
      subscriptionManager: new MemorySubscriptionManager({
        onFailedResubscribe: () => {
          throw new Error('hook bug');
        },
      }),
    });
    const errors = exceptions(ha);
    await ha.connectAndLogon();
    const publisher = client('failed-resubscribe-publisher', first.tcpUri('json'));
    await publisher.connectAndLogon();
    publisher.publish('frs', 'x');
    const { value: published } = await ha
      .subscribe('frs', { bookmark: Bookmarks.EPOCH })
      [Symbol.asyncIterator]()
      .next();
    // From a bookmark only the first server's log holds: the other one refuses it.
    const bookmark = published?.bookmark as string;
    await ha.subscribe('frs', { subId: 'kept', bookmark, options: 'bookmark_not_found=fail' }).ready;
    const refused = stateWhere(ha, (e) => e.state === 'Disconnected' && e.uri === other.tcpUri('json'));
    first.dropConnections(); // the chooser moves on to the other server
    const disconnected = await refused;
    await stateWhere(ha, (e) => e.state === 'Resubscribed'); // on the first one again: nothing dropped
    expect(errors.messages()).toContain('hook bug');
    expect(disconnected.reason).toMatch(/bookmark not found/);
    expect(disconnected.reason).not.toMatch(/hook bug/);
  });

  it("a bookmark store whose persisted() throws on an ack: reported, the application's onAck still called, a range still ended", async () => {
    const s = await server();
    const publisher = client('persisted-throws-pub', s.tcpUri('json'));
    await publisher.connectAndLogon();
    for (const n of [1, 2]) publisher.publish('pt', String(n));
    await publisher.publishFlush(5000);
    const last = await new Promise<string>((resolve) => {
      publisher.subscribe('pt', {
        bookmark: Bookmarks.EPOCH,
        onMessage: (m) => {
          if (m.text() === '2') resolve(m.bookmark as string);
        },
      });
    });
    let broken = false;
    class BrokenStore extends MemoryBookmarkStore {
      override persisted(subId: string, bookmark: string, ageMs?: number): void {
        if (broken) throw new Error('persisted bug');
        super.persisted(subId, bookmark, ageMs);
      }
    }
    const ha = client('persisted-throws', s.tcpUri('json'), { bookmarkStore: new BrokenStore() });
    const errors = exceptions(ha);
    await ha.connectAndLogon();
    const acks: string[] = [];
    const seen: string[] = [];
    const range = ha.subscribe('pt', {
      bookmark: `[${Bookmarks.EPOCH}:${last}]`,
      onMessage: (m) => {
        seen.push(m.text());
      },
      onAck: (ack) => acks.push(ack.ackType as string),
    });
    broken = true;
    expect(await range.closed).toBeUndefined(); // ended at the range's end
    expect(seen).toEqual(['1', '2']);
    expect(acks).toContain('completed');
    await errors.next('persisted bug');
  });

  it('a subscription manager whose add() throws: subscribe() throws, and leaves nothing registered', async () => {
    const s = await server();
    let broken = true;
    const inner = new MemorySubscriptionManager();
    const manager: SubscriptionManager = {
      add: (subscription) => {
        if (broken) throw new Error('add bug');
        inner.add(subscription);
      },
      remove: (subId) => inner.remove(subId),
      clear: () => inner.clear(),
      list: () => inner.list(),
      resubscribe: (execute, options) => inner.resubscribe(execute, options),
    };
    const ha = client('add-throws', s.tcpUri('json'), { subscriptionManager: manager });
    await ha.connectAndLogon();
    expect(() => ha.subscribe('at', { subId: 'x', onMessage: () => {} })).toThrow('add bug');
    broken = false;
    const again = ha.subscribe('at', { subId: 'x', onMessage: () => {} }); // the id is free
    await again.ready;
  });

  describe('a subscription manager whose add() throws on a replace, nothing rejected unhandled', () => {
    /** A memory manager whose `nth` add from `failAdd(nth)` on throws, once. */
    function failingAdds() {
      const inner = new MemorySubscriptionManager();
      let addsToFail = 0;
      const manager: SubscriptionManager = {
        add: (subscription) => {
          if (addsToFail > 0 && --addsToFail === 0) throw new Error('add bug');
          inner.add(subscription);
        },
        remove: (subId) => inner.remove(subId),
        clear: () => inner.clear(),
        list: () => inner.list(),
        resubscribe: (execute, options) => inner.resubscribe(execute, options),
      };
      return { inner, manager, failAdd: (nth: number) => (addsToFail = nth) };
    }

    /** Resolves at the first unhandled rejection; `seen` lists them. */
    function unhandledRejections() {
      const seen: unknown[] = [];
      let first!: () => void;
      const any = new Promise<void>((resolve) => {
        first = resolve;
      });
      const listener = (reason: unknown) => {
        seen.push(reason);
        first();
      };
      process.on('unhandledRejection', listener);
      cleanups.push(async () => process.off('unhandledRejection', listener));
      return { seen, any };
    }

    it('the replace ends with its error, and the subscription it was to replace goes on', async () => {
      const s = await server();
      const { inner, manager, failAdd } = failingAdds();
      const unhandled = unhandledRejections();
      const ha = client('add-throws-replace', s.tcpUri('json'), { subscriptionManager: manager });
      await ha.connectAndLogon();
      const old = ha.subscribe('at', { subId: 'x', onMessage: () => {} });
      await old.ready;
      failAdd(1);
      const replace = ha.subscribe('at', { subId: 'x', options: { replace: true }, onMessage: () => {} });
      await Promise.race([replace.ready.catch(() => {}), unhandled.any]);
      expect(unhandled.seen).toEqual([]);
      await expect(replace.ready).rejects.toThrow('add bug');
      expect(await replace.closed).toMatchObject({ message: 'add bug' });
      // Rejections are reported a turn after they happen.
      await new Promise((resolve) => setImmediate(resolve));
      expect(unhandled.seen).toEqual([]);
      expect(inner.list().map((m) => m.subId)).toEqual(['x']);
      await ha.unsubscribe('x');
      expect(await old.closed).toBeUndefined();
    });

    it('as the subscription it was to replace is put back after the server refused it: reported to onException', async () => {
      const s = await server();
      const { manager, failAdd } = failingAdds();
      const unhandled = unhandledRejections();
      const ha = client('add-throws-kept', s.tcpUri('json'), { subscriptionManager: manager });
      const errors = exceptions(ha);
      await ha.connectAndLogon();
      const old = ha.subscribe('at', { subId: 'x', onMessage: () => {} });
      await old.ready;
      failAdd(2); // the replace's add goes, the one putting the old subscription back throws
      const bad = ha.subscribe('at', { subId: 'x', filter: '/sym = = x', options: { replace: true } });
      await expect(bad.ready).rejects.toMatchObject({ code: 'bad_filter' });
      await Promise.race([errors.next('add bug'), unhandled.any]);
      await new Promise((resolve) => setImmediate(resolve));
      expect(unhandled.seen).toEqual([]);
      await ha.unsubscribe('x');
      expect(await old.closed).toBeUndefined();
    });

    it('waiting for a connection when connectAndLogon() is aborted: reported to onException', async () => {
      const { manager, failAdd } = failingAdds();
      const unhandled = unhandledRejections();
      const ha = client('add-throws-given-up', await deadUri(), { subscriptionManager: manager });
      const errors = exceptions(ha);
      ha.subscribe('at', { subId: 'x', onMessage: () => {} });
      failAdd(1);
      ha.subscribe('at', { subId: 'x', options: { replace: true }, onMessage: () => {} });
      const abort = new AbortController();
      const connecting = ha.connectAndLogon({ signal: abort.signal }).catch(() => {});
      abort.abort();
      await connecting;
      await Promise.race([errors.next('add bug'), unhandled.any]);
      await new Promise((resolve) => setImmediate(resolve));
      expect(unhandled.seen).toEqual([]);
    });
  });

  it('a subscription manager whose remove() throws: unsubscribe() still ends the subscription', async () => {
    const s = await server();
    const ha = client('manager-remove', s.tcpUri('json'), { subscriptionManager: brokenManager('remove') });
    const errors = exceptions(ha);
    await ha.connectAndLogon();
    const sub = ha.subscribe('orders');
    await sub.ready;
    await ha.unsubscribe(sub.subId).catch(() => {});
    await expect(sub.closed).resolves.toBeUndefined();
    expect(errors.messages()).toContain('manager remove bug');
  });

  it('a subscription manager whose clear() throws: disconnect() still ends in Shutdown', async () => {
    const s = await server();
    const ha = client('manager-clear', s.tcpUri('json'), { subscriptionManager: brokenManager('clear') });
    const errors = exceptions(ha);
    await ha.connectAndLogon();
    const sub = ha.subscribe('orders');
    await sub.ready;
    await ha.disconnect();
    expect(ha.state).toBe('Shutdown');
    await expect(sub.closed).resolves.toBeUndefined();
    expect(errors.messages()).toContain('manager clear bug');
  });
});
