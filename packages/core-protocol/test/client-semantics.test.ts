/**
 * Command semantics of the Client against the real test broker: what happens to routes, acks and
 * deliveries around unsubscribe, replace, queries run through `execute`, and queue acks. Decided by
 * events (acks, deliveries, flush round trips), never by sleeping.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../../test-server/src/index.js';
import { nodeTransport } from '../../transport-node/src/index.js';
import {
  AbortError,
  Bookmarks,
  Client,
  type ClientOptions,
  type Command,
  type Message,
  type Transport,
} from '../src/index.js';
import { Collector, leakCheck, outgoing } from './client-fakes.js';

/** transport-node whose incoming bytes can be held back, to choose when the client reads them. */
function gatedTransport(): Transport & { hold(): void; release(): void; held: Collector<Uint8Array> } {
  const inner = nodeTransport();
  let holding = false;
  let deliver: ((chunk: Uint8Array) => void) | undefined;
  const held = new Collector<Uint8Array>();
  return {
    schemes: inner.schemes,
    held,
    hold: () => {
      holding = true;
    },
    release: () => {
      holding = false;
      for (const chunk of held.items.splice(0)) deliver?.(chunk);
    },
    connect: (uri, handlers, options) => {
      deliver = handlers.onData;
      return inner.connect(
        uri,
        {
          onData: (chunk) => (holding ? held.push(chunk.slice()) : handlers.onData(chunk)),
          onClose: handlers.onClose,
        },
        options,
      );
    },
  };
}

describe('Client command semantics against the test broker', () => {
  let server: TestServer;
  let clients: Client[];
  let leaks: ReturnType<typeof leakCheck>;
  let n = 0;

  beforeEach(async () => {
    clients = [];
    leaks = leakCheck();
    server = await startTestServer({
      sowTopics: [{ topic: 'orders', key: '/id' }],
      queues: [{ topic: 'jobs', maxBacklog: 10, leaseMs: 60_000 }],
    });
  });
  afterEach(async () => {
    for (const c of clients) await c.disconnect();
    await server.close();
    await leaks.check();
  });

  async function loggedOn(options: Partial<ClientOptions> = {}): Promise<Client> {
    const c = new Client(`semantics-${++n}`, { transport: nodeTransport(), ...options });
    clients.push(c);
    await c.connectAndLogon(server.tcpUri());
    return c;
  }
  /** Whether `promise` has settled, after the microtasks already queued have run. */
  async function settled(promise: Promise<unknown>): Promise<boolean> {
    let done = false;
    void promise.then(
      () => {
        done = true;
      },
      () => {
        done = true;
      },
    );
    await new Promise((resolve) => setImmediate(resolve));
    return done;
  }

  it('unsubscribe sends the queue acks still batched first, so the server does not redeliver those messages', async () => {
    const producer = await loggedOn();
    for (let i = 0; i < 3; i++) producer.publish('jobs', String(i));
    await producer.flush();
    const c = await loggedOn({ ackBatchSize: 10 });
    const got = new Collector<Message>();
    const sub = c.subscribe('jobs', { maxBacklog: 3, onMessage: got.push });
    await sub.ready;
    await got.atLeast(3);
    for (const m of got.items) c.ack(m);
    await sub.unsubscribe();
    // Sent after the unsubscribe, the acks would find the leases already returned to the queue.
    expect(server.stats().queues.jobs).toMatchObject({ depth: 0, leased: 0 });
  });

  it('unsubscribe of a comma-separated list of ids ends each of those subscriptions', async () => {
    const c = await loggedOn();
    const a = c.subscribe('list', { subId: 'a' });
    const b = c.subscribe('list', { subId: 'b' });
    const other = c.subscribe('list', { subId: 'c' });
    await Promise.all([a.ready, b.ready, other.ready]);
    await c.unsubscribe('a,b');
    expect(await settled(a.closed)).toBe(true);
    expect(await settled(b.closed)).toBe(true);
    expect(await settled(other.closed)).toBe(false);
    // The ids are free again.
    await c.subscribe('list', { subId: 'a' }).ready;
  });

  it('unsubscribe all also releases the subscriptions made through execute', async () => {
    const c = await loggedOn();
    await c.execute({ command: 'subscribe', topic: 'ex', subId: 'e' }, { onMessage: () => {} });
    await c.unsubscribe();
    const got = new Collector<Message>();
    await c.subscribe('ex', { subId: 'e', onMessage: got.push }).ready;
    c.publish('ex', 'x');
    await got.atLeast(1);
  });

  it.each([
    ['was processed', false],
    ['was given up on (aborted; until its late ack)', true],
  ])(
    'a subscription that takes an unsubscribed id gets none of the deliveries sent before the unsubscribe %s',
    async (_, abort) => {
      const gate = gatedTransport();
      const c = await loggedOn({ transport: gate });
      const producer = await loggedOn();
      const unhandled = new Collector<Message>();
      c.onUnhandledMessage(unhandled.push);
      await c.subscribe('old', { subId: 'x', onMessage: () => {} }).ready;
      gate.hold();
      for (let n = 1; n <= 5; n++) producer.publish('old', JSON.stringify({ n }));
      await producer.flush();
      await gate.held.atLeast(1); // on their way to the client, for the subscription about to end
      const controller = new AbortController();
      const unsubscribed = c.unsubscribe('x', { signal: controller.signal });
      if (abort) {
        controller.abort();
        await expect(unsubscribed).rejects.toSatisfy(AbortError.isInstance);
      }
      const got = new Collector<Message>();
      const again = c.subscribe('new', { subId: 'x', onMessage: got.push });
      gate.release();
      await Promise.all([abort || unsubscribed, again.ready]);
      producer.publish('new', JSON.stringify({ n: 6 }));
      await got.atLeast(1);
      await c.flush();
      expect(got.items.map((m) => [m.topic, m.json()])).toEqual([['new', { n: 6 }]]);
      expect(unhandled.items).toEqual([]); // dropped, not reported: the application ended that subscription
    },
  );

  it('a delivery for several subscriptions (sids) reaches each handler as its own message with its own subId', async () => {
    const c = await loggedOn();
    const got = new Collector<Message>();
    await c.subscribe('multi', { subId: 'a', onMessage: got.push }).ready;
    await c.subscribe('^mul', { subId: 'b', onMessage: got.push }).ready; // a regex topic
    c.publish('multi', JSON.stringify({ n: 1 }));
    const [first, second] = await got.atLeast(2);
    expect(first?.subIds).toBe('a,b'); // one frame for both, as AMPS sends it
    expect([first?.subId, second?.subId]).toEqual(['a', 'b']);
    expect(first).not.toBe(second);
    expect([first?.json(), second?.json(), second?.topic]).toEqual([{ n: 1 }, { n: 1 }, 'multi']);
  });

  it('a query run through execute releases its id when it completes (or at group_end, without completed)', async () => {
    const c = await loggedOn();
    c.publish('orders', JSON.stringify({ id: 1 }));
    await c.flush();
    const unhandled = new Collector<Message>();
    c.onUnhandledMessage(unhandled.push);
    for (const waitFor of ['completed', 'processed', 'completed'] as const) {
      const got = new Collector<Message>();
      await c.execute({ command: 'sow', topic: 'orders', queryId: 'q' }, { onMessage: got.push, waitFor });
      await got.atLeast(3);
      expect(got.items.map((m) => m.command)).toEqual(['group_begin', 'sow', 'group_end']);
    }
    expect((await c.sow('orders', { queryId: 'q' }).toArray()).records).toHaveLength(1);
    await c.flush();
    expect(unhandled.items).toEqual([]);
  });

  it('a replace takes the id once the server accepts it: a delivery before its ack stays with the subscription it replaces', async () => {
    const gate = gatedTransport();
    const c = await loggedOn({ transport: gate });
    const producer = await loggedOn();
    const before = new Collector<Message>();
    const first = c.subscribe('repl', { subId: 'r', onMessage: before.push });
    await first.ready;
    gate.hold();
    producer.publish('repl', JSON.stringify({ n: 1 }));
    await producer.flush();
    await gate.held.atLeast(1); // the delivery, matched by the first subscription
    const refused = c.subscribe('repl', { subId: 'r', filter: '/n >', options: 'replace', onMessage: () => {} });
    gate.release();
    await expect(refused.ready).rejects.toMatchObject({ code: 'bad_filter' });
    expect(before.items.map((m) => m.json())).toEqual([{ n: 1 }]);

    gate.hold();
    producer.publish('repl', JSON.stringify({ n: 2 }));
    await producer.flush();
    await gate.held.atLeast(1);
    const after = new Collector<Message>();
    const second = c.subscribe('repl', { subId: 'r', filter: '/n > 2', options: 'replace', onMessage: after.push });
    gate.release();
    await second.ready;
    producer.publish('repl', JSON.stringify({ n: 3 }));
    await after.atLeast(1);
    expect(before.items.map((m) => m.json())).toEqual([{ n: 1 }, { n: 2 }]);
    expect(after.items.map((m) => m.json())).toEqual([{ n: 3 }]);
  });

  it('a sow that timed out drops the records and acks that come after, instead of reporting them unhandled', async () => {
    const gate = gatedTransport();
    const unhandled = new Collector<Message>();
    const c = await loggedOn({ transport: gate, lastChanceMessageHandler: unhandled.push });
    c.onUnhandledMessage(unhandled.push);
    const producer = await loggedOn();
    for (let id = 1; id <= 3; id++) producer.publish('orders', JSON.stringify({ id }));
    await producer.flush();
    gate.hold(); // the answer is held back: the query times out, then all of it arrives
    const query = c.sow('orders', { timeoutMs: 50 });
    await expect(query.stats).rejects.toMatchObject({ code: 'timed_out' });
    gate.release();
    await c.flush(); // answered after everything the query sent
    expect(unhandled.items.map((m) => `${m.command} ${m.ackType ?? ''}`.trim())).toEqual([]);
    // Its last ack ended it: the id is free again.
    await expect(c.sow('orders', { queryId: query.queryId }).stats).resolves.toMatchObject({ recordsReturned: 3 });

    // The same through execute: the caller's handlers hear nothing more after its TimedOutError.
    const late = new Collector<Message>();
    gate.hold();
    const executed = c.execute(
      { command: 'sow', topic: 'orders', queryId: 'q-late', ackType: 'completed' },
      { onMessage: late.push, onAck: late.push, waitFor: 'completed', timeoutMs: 50 },
    );
    await expect(executed).rejects.toMatchObject({ code: 'timed_out' });
    gate.release();
    await c.flush();
    expect(late.items).toEqual([]);
    expect(unhandled.items).toEqual([]);
    await c.execute(
      { command: 'sow', topic: 'orders', queryId: 'q-late' },
      { onMessage: () => {}, waitFor: 'completed' },
    );
  });

  // Commands given up on (an aborted signal, a timeout), refused by the server, or replaced while an
  // unsubscribe comes: what is sent, which ids are freed, and where deliveries go.
  describe('given up on or refused, and replaces in flight', () => {
    it('a command given an already-aborted signal is not sent: sowDelete deletes nothing, execute publishes nothing', async () => {
      const { sent, filter } = outgoing();
      const c = await loggedOn({ transportFilter: filter });
      for (let id = 1; id <= 3; id++) c.publish('orders', JSON.stringify({ id }));
      const journal = new Collector<Message>();
      const live = c.subscribe('journal', { subId: 'j', bookmark: Bookmarks.NOW, onMessage: journal.push });
      await live.ready;
      await c.flush();
      const before = sent.items.length;
      const signal = AbortSignal.abort();
      await expect(c.pause('j', { signal })).rejects.toSatisfy(AbortError.isInstance);
      // Not ended here either: it still delivers below.
      await expect(c.unsubscribe('j', { signal })).rejects.toSatisfy(AbortError.isInstance);
      await expect(c.sowDelete('orders', { filter: '/id = 1' }, { signal })).rejects.toSatisfy(AbortError.isInstance);
      await expect(
        c.execute({ command: 'publish', topic: 'orders', data: JSON.stringify({ id: 4 }) }, { signal }),
      ).rejects.toSatisfy(AbortError.isInstance);
      const sub = c.subscribe('orders', { signal });
      await expect(sub.ready).rejects.toSatisfy(AbortError.isInstance);
      await c.flush();
      expect(sent.items.slice(before).map((m) => m.command)).toEqual(['flush']);
      const { records } = await c.sow('orders').toArray();
      expect(records.map((m) => m.json<{ id: number }>().id).sort()).toEqual([1, 2, 3]);
      // Not paused, on the server or here.
      c.publish('journal', 'x');
      await journal.atLeast(1);
      await live.unsubscribe();
    });

    /** Runs `command` through execute and gives up on it (an abort) before its answer is read. */
    async function givenUp(command: Command) {
      const gate = gatedTransport();
      const c = await loggedOn({ transport: gate });
      const unhandled = new Collector<Message>();
      c.onUnhandledMessage(unhandled.push);
      gate.hold();
      const controller = new AbortController();
      const executed = c.execute(command, { onMessage: () => {}, signal: controller.signal });
      controller.abort();
      await expect(executed).rejects.toSatisfy(AbortError.isInstance);
      return { c, gate, unhandled };
    }

    it('a query through execute that was aborted, then refused by the server, frees its id', async () => {
      const { c, gate } = await givenUp({
        command: 'sow',
        topic: 'orders',
        queryId: 'q-bad',
        filter: '/id >',
      });
      gate.release();
      await c.flush(); // the refusal has arrived
      // Nothing more comes for it: the id is free again.
      await c.execute(
        { command: 'sow', topic: 'orders', queryId: 'q-bad' },
        { onMessage: () => {}, waitFor: 'completed' },
      );
    });

    it('a subscribe aborted after the server took it, retried with its id, gets none of the deliveries of the aborted one', async () => {
      const gate = gatedTransport();
      const c = await loggedOn({ transport: gate });
      const producer = await loggedOn();
      const unhandled = new Collector<Message>();
      c.onUnhandledMessage(unhandled.push);
      gate.hold();
      const controller = new AbortController();
      const first = c.subscribe('old', { subId: 'x', signal: controller.signal, onMessage: () => {} });
      await gate.held.atLeast(1); // its processed ack, held back: the server has it
      producer.publish('old', JSON.stringify({ n: 1 }));
      await producer.flush();
      await gate.held.atLeast(2); // a delivery for it, on its way
      controller.abort();
      await expect(first.ready).rejects.toSatisfy(AbortError.isInstance);
      const got = new Collector<Message>();
      const again = c.subscribe('new', { subId: 'x', onMessage: got.push });
      gate.release();
      await again.ready;
      producer.publish('new', JSON.stringify({ n: 2 }));
      await got.atLeast(1);
      await c.flush();
      expect(got.items.map((m) => [m.topic, m.json()])).toEqual([['new', { n: 2 }]]);
      expect(unhandled.items.filter((m) => m.command !== 'ack')).toEqual([]);
    });

    it.each(['r', 'all'])(
      'unsubscribe(%s) while a replace is in flight ends the replaced subscription too, whether the replace is refused or accepted',
      async (id) => {
        const c = await loggedOn();
        for (const filter of ['/n >', '/n > 1']) {
          const first = c.subscribe('repl', { subId: 'r' });
          await first.ready;
          const replace = c.subscribe('repl', { subId: 'r', filter, options: 'replace' });
          const unsubscribed = c.unsubscribe(id);
          await replace.ready.catch(() => {});
          await unsubscribed;
          await c.flush();
          expect(await settled(first.closed), filter).toBe(true);
          expect(await settled(replace.closed), filter).toBe(true);
          // The iterator of the replaced one finishes too.
          const it = first[Symbol.asyncIterator]();
          expect(await settled(it.next()), filter).toBe(true);
        }
      },
    );

    it('a subscription unsubscribed through its handle while a replace of it is in flight, then refused, gets nothing more', async () => {
      const c = await loggedOn();
      const got = new Collector<Message>();
      const first = c.subscribe('repl', { subId: 'r', onMessage: got.push });
      await first.ready;
      const replace = c.subscribe('repl', { subId: 'r', filter: '/n >', options: 'replace' });
      await first.unsubscribe();
      await expect(replace.ready).rejects.toMatchObject({ code: 'bad_filter' });
      c.publish('repl', JSON.stringify({ n: 1 }));
      await c.flush();
      expect(got.items).toEqual([]);
      expect(await settled(first.closed)).toBe(true);
    });

    it('a command id the caller chose that is in use by a command in flight is refused, not taken from it', async () => {
      const { sent, filter } = outgoing();
      const c = await loggedOn({ transportFilter: filter });
      const sub = c.subscribe('cids', {});
      await sent.atLeast(2);
      const cid = sent.items[1]?.commandId as string; // the subscribe's
      expect(sent.items[1]?.command).toBe('subscribe');
      const flushed = c.execute({ command: 'flush', commandId: cid });
      await expect(flushed).rejects.toMatchObject({ code: 'invalid_options' });
      await sub.ready;
      // Ids the client makes up skip one the caller has in flight.
      const mine = c.execute({ command: 'flush', commandId: String(Number(cid) + 1) });
      await c.flush();
      await mine;
    });

    it('a subscribe or query through execute with waitFor none that the server refuses frees its id', async () => {
      const c = await loggedOn();
      const failures = new Collector<Message>();
      for (const command of ['subscribe', 'sow'] as const) {
        const id = `${command}-refused`;
        await c.execute(
          {
            command,
            topic: 'orders',
            subId: id,
            queryId: command === 'sow' ? id : undefined,
            filter: '/id >',
            ackType: 'processed',
          },
          { onMessage: () => {}, onAck: failures.push, waitFor: 'none' },
        );
        await c.flush(); // the refusal has arrived
        expect(failures.items.at(-1)?.status).toBe('failure');
        await c.execute(
          { command, topic: 'orders', subId: id, queryId: command === 'sow' ? id : undefined },
          { onMessage: () => {} },
        );
      }
    });

    it('a subscribe refused for its options before anything is sent ends its subscription: closed settles, iteration ends', async () => {
      const c = await loggedOn();
      for (const [topic, options] of [
        ['', {}],
        ['t', { maxBacklog: 0 }],
        ['t', { bookmark: '' }],
      ] as const) {
        const sub = c.subscribe(topic, options);
        await expect(sub.ready).rejects.toMatchObject({ code: 'invalid_options' });
        expect(await settled(sub.closed), JSON.stringify([topic, options])).toBe(true);
        expect(await settled(sub[Symbol.asyncIterator]().next())).toBe(true);
      }
    });

    it('a subscribe through execute retried with its id after an aborted one keeps its route when the aborted one is refused late', async () => {
      const { c, gate, unhandled } = await givenUp({ command: 'subscribe', topic: 'late', subId: 'x', filter: '/n >' });
      const producer = await loggedOn();
      const got = new Collector<Message>();
      const again = c.execute({ command: 'subscribe', topic: 'late', subId: 'x' }, { onMessage: got.push });
      gate.release(); // the first one's refusal (sub_id x), then the retry's processed ack
      await again;
      producer.publish('late', JSON.stringify({ n: 1 }));
      await producer.flush();
      await c.flush(); // the delivery, published before, has arrived
      expect(unhandled.items).toEqual([]);
      expect(got.items.map((m) => m.json())).toEqual([{ n: 1 }]);
    });

    it('a subscription unsubscribed through its handle while a subscribe refused for its id is settling frees the id', async () => {
      const c = await loggedOn();
      const live = c.subscribe('dup', { subId: 'd' });
      await live.ready;
      const dup = c.subscribe('dup', { subId: 'd' }); // refused: the id is in use
      void live.unsubscribe();
      await expect(dup.ready).rejects.toMatchObject({ code: 'subscription_already_exists' });
      await c.flush();
      expect(await settled(live.closed)).toBe(true);
      await c.subscribe('dup', { subId: 'd' }).ready;
    });

    /** Neither the subscription `r` of `topic` nor its replace goes on, and the id is free on the server too. */
    async function expectNeitherGoesOn(
      c: Client,
      producer: Client,
      topic: string,
      before: Collector<Message>,
      unhandled: Collector<Message>,
    ): Promise<void> {
      producer.publish(topic, JSON.stringify({ n: 2 }));
      await producer.flush();
      await c.flush();
      expect(before.items).toEqual([]);
      expect(unhandled.items).toEqual([]);
      const got = new Collector<Message>();
      await c.subscribe(topic, { subId: 'r', onMessage: got.push }).ready;
      producer.publish(topic, JSON.stringify({ n: 3 }));
      await got.atLeast(1);
      await c.flush();
      expect(got.items.map((m) => m.json())).toEqual([{ n: 3 }]);
    }

    it('a replace aborted before its answer, then accepted, ends the subscription it was to replace and frees the id on the server', async () => {
      const gate = gatedTransport();
      const c = await loggedOn({ transport: gate });
      const producer = await loggedOn();
      const unhandled = new Collector<Message>();
      c.onUnhandledMessage(unhandled.push);
      const before = new Collector<Message>();
      const first = c.subscribe('repl', { subId: 'r', onMessage: before.push });
      await first.ready;
      gate.hold(); // the server takes the replace; its answer is held back
      const controller = new AbortController();
      const replace = c.subscribe('repl', {
        subId: 'r',
        filter: '/n > 1',
        options: 'replace',
        signal: controller.signal,
        onMessage: () => {},
      });
      controller.abort();
      await expect(replace.ready).rejects.toSatisfy(AbortError.isInstance);
      // Which one the server holds is not known: neither goes on, and the old one says why.
      expect(await settled(first.closed)).toBe(true);
      await expect(first.closed).resolves.toSatisfy(AbortError.isInstance);
      gate.release();
      await expectNeitherGoesOn(c, producer, 'repl', before, unhandled);
    });

    /**
     * A subscription `r` of `topic`, and a replace of it in flight, with the `controller` to abort it
     * (in the caller's turn: what the caller does next in that turn is what is tested).
     */
    async function replaceInFlight(topic: string, onMessage: (m: Message) => void = () => {}) {
      const c = await loggedOn();
      const producer = await loggedOn();
      const unhandled = new Collector<Message>();
      c.onUnhandledMessage(unhandled.push);
      const first = c.subscribe(topic, { subId: 'r', onMessage });
      await first.ready;
      const controller = new AbortController();
      const aborted = c.subscribe(topic, {
        subId: 'r',
        filter: '/n > 1',
        options: 'replace',
        signal: controller.signal,
      });
      return { c, producer, unhandled, first, aborted, controller };
    }

    it('a replace aborted as the next replace of its id is made (a filter changed twice) leaves that next one to decide', async () => {
      const { c, producer, unhandled, first, aborted, controller } = await replaceInFlight('repl2');
      // The application calls off the last change and makes the next, in the same turn.
      controller.abort();
      const got = new Collector<Message>();
      const latest = c.subscribe('repl2', { subId: 'r', filter: '/n > 2', options: 'replace', onMessage: got.push });
      await expect(aborted.ready).rejects.toSatisfy(AbortError.isInstance);
      await latest.ready;
      producer.publish('repl2', JSON.stringify({ n: 3 }));
      await producer.flush();
      await c.flush();
      expect(got.items.map((m) => m.json())).toEqual([{ n: 3 }]);
      expect(await settled(latest.closed)).toBe(false);
      expect(await settled(first.closed)).toBe(true); // replaced
      expect(unhandled.items).toEqual([]);
    });

    it('a replace aborted as the next replace of its id is made, that one refused: neither goes on, and the id is freed on the server', async () => {
      const before = new Collector<Message>();
      const { c, producer, unhandled, first, aborted, controller } = await replaceInFlight('repl3', before.push);
      controller.abort();
      const refused = c.subscribe('repl3', { subId: 'r', filter: '/n >', options: 'replace' });
      await expect(aborted.ready).rejects.toSatisfy(AbortError.isInstance);
      await expect(refused.ready).rejects.toMatchObject({ code: expect.not.stringMatching(/aborted/) });
      // The server holds the first or the aborted one, which is not known: neither goes on.
      expect(await settled(first.closed)).toBe(true);
      await expectNeitherGoesOn(c, producer, 'repl3', before, unhandled);
    });

    it('a publish with a command id of its own neither takes one in flight nor one the client makes up later', async () => {
      const { sent, filter } = outgoing();
      const c = await loggedOn({ transportFilter: filter });
      const sub = c.subscribe('cids', {});
      await sent.atLeast(2);
      const inFlight = sent.items[1]?.commandId as string; // the subscribe's
      expect(() => c.publish('cids', 'x', { ackType: 'processed', commandId: inFlight })).toThrow(
        /command id '\d+' is in use/,
      );
      await sub.ready;
      const ahead = String(Number(inFlight) + 1);
      const failed = new Collector<unknown>();
      c.onFailedWrite(failed.push);
      c.publish('cids', 'x', { ackType: 'processed', commandId: ahead });
      await c.flush();
      const flushes = sent.items.filter((m) => m.command === 'flush');
      expect(flushes.map((m) => m.commandId)).not.toContain(ahead);
      expect(failed.items).toEqual([]);
    });

    it("a command id of the caller's at the largest safe integer does not take the client's own ids past it", async () => {
      const { sent, filter } = outgoing();
      const c = await loggedOn({ transportFilter: filter });
      c.publish('cids', 'x', { ackType: 'processed', commandId: String(Number.MAX_SAFE_INTEGER) });
      // Past it, adding one gives the same number: each id made would be the one in flight, for ever.
      await c.subscribe('cids', {}).ready;
      const subscribe = sent.items.find((m) => m.command === 'subscribe');
      expect([subscribe?.subId, subscribe?.commandId].every((id) => Number.isSafeInteger(Number(id)))).toBe(true);
    });

    it('a subscribe aborted before its answer, retried with its id, does not pass the acks of the aborted one to the retry', async () => {
      const gate = gatedTransport();
      const c = await loggedOn({ transport: gate });
      const unhandled = new Collector<Message>();
      c.onUnhandledMessage(unhandled.push);
      gate.hold();
      const controller = new AbortController();
      const first = c.subscribe('acks', { subId: 'x', signal: controller.signal });
      await gate.held.atLeast(1); // its processed ack, held back: the server has it
      controller.abort();
      await expect(first.ready).rejects.toSatisfy(AbortError.isInstance);
      const acks = new Collector<Message>();
      const again = c.subscribe('acks', { subId: 'x', onAck: acks.push });
      gate.release();
      await again.ready;
      await c.flush();
      expect(acks.items).toEqual([]);
      expect(unhandled.items).toEqual([]);
    });

    it('a subscribe refused for an id held by a query given up on says it is that query', async () => {
      const gate = gatedTransport();
      const c = await loggedOn({ transport: gate });
      gate.hold();
      const controller = new AbortController();
      const query = c.sow('orders', { queryId: 'q', signal: controller.signal });
      controller.abort();
      await expect(query.stats).rejects.toSatisfy(AbortError.isInstance);
      const sub = c.subscribe('orders', { subId: 'q' });
      await expect(sub.ready).rejects.toMatchObject({
        code: 'subscription_already_exists',
        message: expect.stringMatching(/in use by a query .*timed out or was aborted/),
      });
      await expect(sub.ready).rejects.not.toMatchObject({ message: expect.stringMatching(/subscription|replace/) });
      gate.release();
    });
  });
});
