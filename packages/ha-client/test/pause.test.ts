/**
 * Pausing and resuming bookmark subscriptions through HAClient: the state is kept, so a failover
 * re-enters each subscription as the application last left it, from its recovery point.
 */
import { Bookmarks, InvalidOptionsError, type Message } from '@amps-ts/core-protocol';
import { startTestCluster, type TestCluster } from '@amps-ts/test-server';
import { nodeTransport } from '@amps-ts/transport-node';
import { describe, expect, it } from 'vitest';
import { HAClient, type HAClientOptions } from '../src/index.js';
import { cleanups, stateWhere } from './helpers.js';

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

/**
 * A transport filter that sends the first pause as an unknown option (same length): the server
 * takes it for a second subscribe with the id, and refuses it.
 */
function spoilFirstPause() {
  let spoiled = false;
  return (bytes: Uint8Array, direction: 'in' | 'out') => {
    const text = Buffer.from(bytes);
    const at = text.indexOf('"opts":"pause"');
    if (direction !== 'out' || spoiled || at < 0) return bytes;
    spoiled = true;
    text.write('"opts":"pauze"', at);
    return new Uint8Array(text);
  };
}

/** The `n` of each message as it comes; `until(k)` resolves once k have come. */
function received() {
  const got: number[] = [];
  const waiters: Array<{ count: number; resolve: () => void }> = [];
  return {
    got,
    add(m: Message) {
      got.push(m.json<{ n: number }>().n);
      for (const w of waiters.filter((w) => got.length >= w.count)) w.resolve();
    },
    until: (count: number) =>
      new Promise<void>((resolve) => (got.length >= count ? resolve() : waiters.push({ count, resolve }))),
  };
}

/** Two brokers replicating synchronously, a subscriber and a publisher on the first. */
async function setUp(name: string, extra: Partial<HAClientOptions> = {}) {
  const cluster: TestCluster = await startTestCluster({
    count: 2,
    replication: 'sync',
    persistedAckIntervalMs: 20,
    ackConflationMs: 10,
  });
  cleanups.push(() => cluster.close());
  const servers = cluster.tcpUris('json');
  const make = (clientName: string, options: Partial<HAClientOptions>) => {
    const ha = new HAClient(clientName, { transport: nodeTransport(), servers, heartbeat: false, ...options });
    cleanups.push(() => ha.disconnect());
    return ha;
  };
  const ha = make(name, extra);
  const publisher = make(`${name}-pub`, {});
  await Promise.all([ha.connectAndLogon(), publisher.connectAndLogon()]);
  let next = 1;
  return {
    cluster,
    ha,
    /** Publishes `count` more messages ({ n }), persisted on both brokers when it resolves. */
    async publish(count: number) {
      for (let i = 0; i < count; i++) publisher.publish('prices', JSON.stringify({ n: next++ }));
      await publisher.publishFlush(5000);
    },
    /** Kills the subscriber's broker and brings it back once the subscriber has recovered on the other. */
    async failOver() {
      const server = cluster.servers.find((s) => s.tcpUri('json') === ha.uri);
      const recovered = stateWhere(ha, (e) => e.state === 'Resubscribed');
      await server?.kill();
      await recovered;
      // Sync replication holds persisted acks until both brokers have a message.
      await server?.restart();
    },
  };
}

/** A bookmark subscription `s` from EPOCH, recording each `n`; `until(k)` resolves once k have come. */
function subscribe(ha: HAClient, options: { paused?: boolean } = {}) {
  const messages = received();
  const subscription = ha.subscribe('prices', {
    subId: 's',
    bookmark: Bookmarks.EPOCH,
    options: { pause: options.paused },
    onMessage: messages.add,
  });
  return {
    got: messages.got,
    subscription,
    until: messages.until,
    /** What has come, after a round trip to the subscriber's server. */
    async now() {
      await ha.flush();
      return [...messages.got];
    },
  };
}

describe('HAClient pause and resume', () => {
  it('keeps a paused subscription paused through a failover; resumed, it gets what it missed once and in order', async () => {
    const t = await setUp('pause-failover');
    const s = subscribe(t.ha);
    await s.subscription.ready;
    await t.publish(5);
    await s.until(5);
    await t.ha.pause('s');
    await t.publish(5);
    expect(await s.now()).toEqual(range(1, 5));
    await t.failOver();
    // Resubscribed paused, from its recovery point: nothing comes from the new server either.
    await t.publish(5);
    expect(await s.now()).toEqual(range(1, 5));
    await t.ha.resume(['s']);
    await s.until(15);
    await t.publish(1);
    await s.until(16);
    expect(await s.now()).toEqual(range(1, 16));
  });

  it("pauses and resumes through the subscription's handle, kept through a failover, refused once it has ended", async () => {
    const t = await setUp('handle-failover');
    const s = subscribe(t.ha);
    await s.subscription.ready;
    await t.publish(2);
    await s.until(2);
    await s.subscription.pause();
    await t.failOver();
    await t.publish(2);
    expect(await s.now()).toEqual(range(1, 2));
    await s.subscription.resume();
    await s.until(4);
    expect(await s.now()).toEqual(range(1, 4));
    await s.subscription.unsubscribe();
    const error = await s.subscription.pause().catch((e: unknown) => e);
    expect(InvalidOptionsError.isInstance(error)).toBe(true);
    expect((error as Error).message).toBe('pause: subscription s has ended');
  });

  it('re-enters a subscription that started paused and was resumed as running after a failover', async () => {
    const t = await setUp('resumed-failover');
    await t.publish(3);
    const s = subscribe(t.ha, { paused: true });
    await s.subscription.ready;
    expect(await s.now()).toEqual([]);
    await t.ha.resume('s');
    await s.until(3);
    await t.failOver();
    await t.publish(3);
    await s.until(6);
    expect(await s.now()).toEqual(range(1, 6));
  });

  // Called at the disconnect, the recovery's resubscribe carries the pause; called once the
  // resubscribe has gone out, the pause must follow it.
  it.each(['at the disconnect', 'once the resubscribe has gone out'])(
    'applies a pause called while reconnecting, %s, once the client has recovered',
    async (moment) => {
      let armed = false;
      let paused: Promise<void> | undefined;
      const transportFilter = (bytes: Uint8Array, direction: 'in' | 'out') => {
        if (armed && direction === 'out' && Buffer.from(bytes).includes('"sub_id":"s"')) {
          paused ??= t.ha.pause('s');
        }
        return bytes;
      };
      const t = await setUp('pause-reconnecting', { client: { transportFilter } });
      const s = subscribe(t.ha);
      await s.subscription.ready;
      await t.publish(2);
      await s.until(2);
      const stop = t.ha.onStateChange((e) => {
        if (e.state !== 'Disconnected') return;
        if (moment === 'at the disconnect') paused ??= t.ha.pause('s');
        else armed = true;
      });
      await t.failOver();
      stop();
      expect(paused).toBeDefined();
      await paused;
      await t.publish(2);
      expect(await s.now()).toEqual([1, 2]);
      await t.ha.resume('s');
      await s.until(4);
      expect(await s.now()).toEqual(range(1, 4));
    },
  );

  it('keeps a paused subscription paused through a replace (the server does), and after a failover', async () => {
    const t = await setUp('pause-replace');
    const s = subscribe(t.ha);
    await s.subscription.ready;
    await t.publish(2);
    await s.until(2);
    await t.ha.pause('s');
    const later = received();
    const replaced = t.ha.subscribe('prices', {
      subId: 's',
      filter: '/n >= 4',
      options: { replace: true },
      onMessage: later.add,
    });
    await replaced.ready;
    await t.publish(4);
    await t.ha.flush();
    expect(later.got).toEqual([]);
    await t.failOver();
    await t.publish(2);
    await t.ha.flush();
    expect(later.got).toEqual([]);
    await t.ha.resume('s');
    await t.publish(1);
    await later.until(6);
    await t.ha.flush();
    expect(later.got).toEqual(range(4, 9));
    expect(s.got).toEqual([1, 2]);
  });

  it('keeps the pause of an id whose replace was waiting for the recovery, through the next failover', async () => {
    const t = await setUp('pause-replace-waiting');
    const s = subscribe(t.ha);
    await s.subscription.ready;
    await t.publish(2);
    await s.until(2);
    const later = received();
    let replaced: ReturnType<HAClient['subscribe']> | undefined;
    let paused: Promise<void> | undefined;
    const stop = t.ha.onStateChange((e) => {
      if (e.state !== 'Disconnected' || replaced) return;
      // While reconnecting: the replace waits for the recovery, and the pause is of the id.
      replaced = t.ha.subscribe('prices', {
        subId: 's',
        filter: '/n >= 4',
        options: { replace: true },
        onMessage: later.add,
      });
      paused = t.ha.pause('s');
    });
    await t.failOver();
    stop();
    await replaced?.ready;
    await paused;
    await t.publish(2);
    await t.failOver();
    await t.publish(2);
    await t.ha.flush();
    expect(later.got).toEqual([]);
    await t.ha.resume('s');
    await t.publish(1);
    await later.until(4);
    await t.ha.flush();
    expect(later.got).toEqual(range(4, 7));
  });

  it('refuses ids it holds no bookmark subscription for, before sending anything', async () => {
    const t = await setUp('pause-refused');
    const plain = received();
    await t.ha.subscribe('prices', { subId: 'plain', onMessage: plain.add }).ready;
    const s = subscribe(t.ha);
    await s.subscription.ready;
    for (const [ids, message] of [
      ['plain', 'pause: no bookmark subscription ["plain"] on this client'],
      [['s', 'nope', ''], 'pause: no bookmark subscription ["nope",""] on this client'],
      [[], 'pause: no bookmark subscription [] on this client'],
    ] as const) {
      const error = await t.ha.pause(ids).catch((e: unknown) => e);
      expect(InvalidOptionsError.isInstance(error)).toBe(true);
      expect((error as Error).message).toBe(message);
    }
    await t.publish(2);
    await s.until(2);
    expect(await s.now()).toEqual([1, 2]);
    expect(plain.got).toEqual([1, 2]);
  });

  it('leaves a subscription running when the server refuses to pause it, also after a failover', async () => {
    // The first pause reaches the server as an unknown option: it refuses a second subscribe with the id.
    const transportFilter = spoilFirstPause();
    const t = await setUp('pause-server-refused', { client: { transportFilter } });
    const s = subscribe(t.ha);
    await s.subscription.ready;
    await expect(t.ha.pause('s')).rejects.toThrow('pause failed');
    await t.failOver();
    await t.publish(2);
    await s.until(2);
    expect(await s.now()).toEqual([1, 2]);
  });
});

/**
 * A transport filter counting what the client sends: pauses (commands, and subscribes entered
 * paused), resumes, subscribes, subscribes entered paused and unsubscribes; and the deliveries it
 * receives. `pausesReach(n)` resolves at the n-th pause.
 */
function pauseCommands() {
  const sent = { pause: 0, resume: 0, subscribes: 0, pausedSubscribes: 0, unsubscribes: 0, deliveries: 0 };
  /** Called with each batch the client writes. */
  const onOut: Array<(text: string) => void> = [];
  const waiters: Array<{ ok: () => boolean; resolve: () => void }> = [];
  const transportFilter = (bytes: Uint8Array, direction: 'in' | 'out') => {
    const text = Buffer.from(bytes).toString();
    if (direction === 'out') {
      sent.pause += text.split('"opts":"pause"').length - 1;
      sent.resume += text.split('"opts":"resume"').length - 1;
      sent.subscribes += text.split('"t":"prices"').length - 1;
      // A subscribe entered paused carries its topic too.
      sent.pausedSubscribes += text.split(/"t":"prices"[^}]*"opts":"pause"|"opts":"pause"[^}]*"t":"prices"/).length - 1;
      sent.unsubscribes += text.split('"c":"unsubscribe"').length - 1;
      for (const f of onOut) f(text);
    } else {
      sent.deliveries += text.split('"c":"p"').length - 1;
    }
    for (const w of waiters.filter((w) => w.ok())) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve();
    }
    return bytes;
  };
  /** Resolves once `ok()` holds, checked as the client writes and reads. */
  const when = (ok: () => boolean) =>
    new Promise<void>((resolve) => (ok() ? resolve() : waiters.push({ ok, resolve })));
  return {
    sent,
    transportFilter,
    onOut,
    when,
    pausesReach: (pauses: number) => when(() => sent.pause >= pauses),
  };
}

/**
 * An async `onMessage` for `s` whose promises settle only once released: a consumer that holds
 * everything until it works through it all, and then through each message at once.
 */
function heldHandler() {
  const messages = received();
  const held: Array<() => void> = [];
  let holding = true;
  return {
    got: messages.got,
    until: messages.until,
    onMessage: (m: Message) => {
      messages.add(m);
      return holding ? new Promise<void>((resolve) => held.push(resolve)) : undefined;
    },
    release() {
      holding = false;
      for (const resolve of held.splice(0)) resolve();
    },
  };
}

/**
 * A subscriber with a held handler (`maxQueue` 50) on 3,000 logged messages, once the server has
 * taken its pause and what was in flight has come: more than it holds, so it is shedding.
 */
async function shedding(name: string) {
  const commands = pauseCommands();
  const t = await setUp(name, { commandTimeoutMs: 1000, client: { transportFilter: commands.transportFilter } });
  await t.publish(3000);
  const consumer = heldHandler();
  const subscription = t.ha.subscribe('prices', {
    subId: 's',
    bookmark: Bookmarks.EPOCH,
    maxQueue: 50,
    onMessage: consumer.onMessage,
  });
  await subscription.ready;
  await commands.pausesReach(1);
  await t.ha.flush();
  expect(commands.sent.deliveries).toBeGreaterThan(100);
  expect(consumer.got.length).toBeLessThanOrEqual(100);
  return { t, commands, consumer, subscription };
}

/** Iterates `s` from `bookmark` (EPOCH), one event-loop turn per message (a consumer that awaits its work). */
function slowReader(
  ha: HAClient,
  maxQueue: number,
  options: { holdAfter?: number } = {},
  bookmark: string = Bookmarks.EPOCH,
) {
  const messages = received();
  const subscription = ha.subscribe('prices', { subId: 's', bookmark, maxQueue });
  let release!: () => void;
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  const reading = (async () => {
    for await (const m of subscription) {
      await new Promise((resolve) => setImmediate(resolve));
      messages.add(m);
      if (messages.got.length === options.holdAfter) await released;
    }
  })();
  /** With `holdAfter`: reading stops after that many, until `release()`. */
  return { got: messages.got, subscription, reading, until: messages.until, release };
}

describe('HAClient flow control: a bookmark subscription whose consumer falls behind', () => {
  it('is paused on the server rather than ended: a replay far longer than maxQueue reaches a slow iterator whole', async () => {
    const commands = pauseCommands();
    const t = await setUp('flow-replay', { client: { transportFilter: commands.transportFilter } });
    await t.publish(3000);
    const reader = slowReader(t.ha, 50);
    await reader.until(3000);
    expect(reader.got).toEqual(range(1, 3000));
    expect(commands.sent.pause).toBeGreaterThan(0);
    // Still subscribed, and live.
    await t.publish(1);
    await reader.until(3001);
    expect(reader.got.at(-1)).toBe(3001);
  });

  it('holds at most twice maxQueue for a consumer slower than the publisher: the rest comes again from the recovery point', async () => {
    const commands = pauseCommands();
    const t = await setUp('flow-shedding', { client: { transportFilter: commands.transportFilter } });
    const messages = received();
    let unsettled = 0;
    let most = 0;
    // A handler that takes a turn of the event loop per message, one message after the other.
    let work = Promise.resolve();
    const subscription = t.ha.subscribe('prices', {
      subId: 's',
      bookmark: Bookmarks.EPOCH,
      maxQueue: 50,
      onMessage: (m) => {
        most = Math.max(most, ++unsettled);
        work = work.then(
          () =>
            new Promise<void>((resolve) =>
              setImmediate(() => {
                unsettled--;
                messages.add(m);
                resolve();
              }),
            ),
        );
        return work;
      },
    });
    await subscription.ready;
    for (let i = 0; i < 5; i++) await t.publish(1000);
    await messages.until(5000);
    expect(messages.got).toEqual(range(1, 5000));
    expect(most).toBeLessThanOrEqual(100);
    // Entered anew at least once: a subscribe beyond the first.
    expect(commands.sent.subscribes).toBeGreaterThan(1);
  });

  it('is re-entered paused by a failover while its consumer catches up, and misses nothing', async () => {
    const commands = pauseCommands();
    const t = await setUp('flow-failover', { client: { transportFilter: commands.transportFilter } });
    await t.publish(3000);
    const reader = slowReader(t.ha, 50, { holdAfter: 100 });
    // Held after 100: its queue fills, and the subscription is paused for it.
    await commands.pausesReach(1);
    const before = commands.sent.pausedSubscribes;
    await t.failOver();
    // The consumer still holds its full queue: the new server starts it paused.
    expect(commands.sent.pausedSubscribes).toBeGreaterThan(before);
    reader.release();
    await t.publish(5);
    await reader.until(3005);
    expect(reader.got).toEqual(range(1, 3005));
  });

  it('stays paused once the consumer catches up when the application paused it too', async () => {
    const commands = pauseCommands();
    const t = await setUp('flow-and-pause', { client: { transportFilter: commands.transportFilter } });
    await t.publish(3000);
    const reader = slowReader(t.ha, 50, { holdAfter: 60 });
    // Held after 60: its queue fills, and the subscription is paused for it.
    await commands.pausesReach(1);
    await t.ha.pause('s');
    reader.release();
    const { pause: pauses, resume: resumes } = commands.sent;
    // Caught up with half of what it held: the state goes out again (or the subscription is
    // entered anew, from its recovery point), paused, and nothing is resumed.
    await commands.pausesReach(pauses + 1);
    await t.ha.flush();
    expect(commands.sent.resume).toBe(resumes);
    await t.publish(5);
    await t.ha.resume('s');
    await reader.until(3005);
    expect(reader.got).toEqual(range(1, 3005));
  });

  it('has a replace of one paused for its consumer resumed for the new consumer', async () => {
    const t = await setUp('flow-replace');
    await t.publish(3000);
    const reader = slowReader(t.ha, 50);
    // Paused for the slow reader by now: it holds the rest of the replay.
    await reader.until(60);
    const got: number[] = [];
    let last!: () => void;
    const lastOne = new Promise<void>((resolve) => {
      last = resolve;
    });
    const replaced = t.ha.subscribe('prices', {
      subId: 's',
      options: { replace: true },
      onMessage: (m) => {
        const { n } = m.json<{ n: number }>();
        got.push(n);
        if (n === 3005) last();
      },
    });
    await replaced.ready;
    await t.publish(5);
    await lastOne;
    // From where the server had got to for the old one, to the end, in order.
    expect(got).toEqual(range(got[0] as number, 3005));
  });

  it('ends with a SlowConsumerError when the server will not pause it', async () => {
    const transportFilter = spoilFirstPause();
    const t = await setUp('flow-refused', { client: { transportFilter } });
    await t.publish(500);
    const reader = slowReader(t.ha, 20);
    const closed = await reader.subscription.closed;
    expect(closed).toMatchObject({ code: 'slow_consumer' });
    expect((closed as Error).message).toMatch(
      /^subscription s: the server would not pause or resume it for its consumer: /,
    );
    await expect(reader.reading).rejects.toMatchObject({ code: 'slow_consumer' });
  });
});

/** The bookmarks of the first `count` messages on `prices`. */
async function bookmarksOf(ha: HAClient, count: number): Promise<string[]> {
  const messages = received();
  const bookmarks: string[] = [];
  const probe = ha.subscribe('prices', {
    subId: 'probe',
    bookmark: Bookmarks.EPOCH,
    onMessage: (m) => {
      bookmarks.push(m.bookmark as string);
      messages.add(m);
    },
  });
  await messages.until(count);
  await probe.unsubscribe();
  return bookmarks;
}

describe('HAClient flow control: what a subscription dropped past twice maxQueue comes again', () => {
  it('for a bookmark range: the whole range, not just what the consumer held', async () => {
    const t = await setUp('shed-range');
    await t.publish(3000);
    const bookmarks = await bookmarksOf(t.ha, 3000);
    const reader = slowReader(t.ha, 50, {}, `[${bookmarks[0]}:${bookmarks[2999]}]`);
    await reader.reading;
    expect(reader.got).toEqual(range(1, 3000));
  });

  it('for a bookmark range whose consumer catches up before the refusal of a pause sent to the ended range', async () => {
    const t = await setUp('shed-range-refused');
    await t.publish(3000);
    const bookmarks = await bookmarksOf(t.ha, 3000);
    const consumer = heldHandler();
    // Released as the range's end is read: re-entered before the server's answer to the pause,
    // which the range had ended before (a refusal about the old entry, not the new one).
    const subscription = t.ha.subscribe('prices', {
      subId: 's',
      bookmark: `[${bookmarks[0]}:${bookmarks[2999]}]`,
      maxQueue: 50,
      onMessage: consumer.onMessage,
      onAck: (ack) => {
        if (ack.ackType === 'completed') consumer.release();
      },
    });
    await consumer.until(3000);
    expect(consumer.got).toEqual(range(1, 3000));
    expect(await subscription.closed).toBeUndefined();
  });

  it('for a replace of one that dropped some: its consumer and the new one together get every message', async () => {
    const { t, consumer } = await shedding('shed-replace');
    const fresh = received();
    const replacing = t.ha.subscribe('prices', { subId: 's', options: { replace: true }, onMessage: fresh.add });
    await replacing.ready;
    consumer.release();
    await t.publish(5);
    await fresh.until(3005 - consumer.got.length);
    expect([...consumer.got, ...fresh.got]).toEqual(range(1, 3005));
  });

  it('when the consumer catches up while a replace of it is refused: resumed, it gets everything', async () => {
    const { t, commands, consumer } = await shedding('shed-refused-replace');
    commands.onOut.push((text) => {
      if (text.includes('replace')) consumer.release();
    });
    const refused = t.ha.subscribe('prices', { subId: 's', filter: '/n >', options: { replace: true } });
    await expect(refused.ready).rejects.toMatchObject({ code: 'bad_filter' });
    await t.publish(5);
    await consumer.until(3005);
    expect(consumer.got).toEqual(range(1, 3005));
  });

  it('when the unsubscribe that re-enters it is not answered: after a failover', async () => {
    const { t, commands, consumer } = await shedding('shed-unanswered');
    const server = t.cluster.servers.find((x) => x.tcpUri('json') === t.ha.uri);
    commands.onOut.push((text) => {
      if (text.includes('"c":"unsubscribe"')) server?.freeze();
    });
    const failedOver = stateWhere(t.ha, (e) => e.state === 'Resubscribed');
    consumer.release();
    await failedOver;
    server?.thaw();
    await t.publish(5);
    await consumer.until(3005);
    expect(consumer.got).toEqual(range(1, 3005));
  });

  it('paused by the application while it is re-entered: not refused, and resumed, it gets everything', async () => {
    const { t, commands, consumer } = await shedding('shed-pause');
    let paused: Promise<void> | undefined;
    commands.onOut.push((text) => {
      if (text.includes('"c":"unsubscribe"')) paused ??= t.ha.pause('s');
    });
    consumer.release();
    await commands.when(() => paused !== undefined);
    await paused;
    const held = consumer.got.length;
    await t.publish(5);
    await t.ha.flush();
    expect(consumer.got.length).toBe(held);
    await t.ha.resume('s');
    await consumer.until(3005);
    expect(consumer.got).toEqual(range(1, 3005));
  });
});
