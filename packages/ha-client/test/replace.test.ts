/**
 * Replacing a live subscription (AMPS `replace`: the same `sub_id` with the `replace` option)
 * through HAClient: the switch, a refusal, and what a failover re-enters afterwards.
 */
import { Bookmarks, type Command, type Message } from '@amps-ts/core-protocol';
import { startFaultProxy, startTestCluster, type TestCluster, type TestServer } from '@amps-ts/test-server';
import { describe, expect, it } from 'vitest';
import { type HAClient, type HAClientOptions, MemorySubscriptionManager } from '../src/index.js';
import { cleanups, client, stateWhere } from './helpers.js';

async function cluster(): Promise<TestCluster> {
  const c = await startTestCluster({ count: 2, replication: 'sync', persistedAckIntervalMs: 20 });
  cleanups.push(() => c.close());
  return c;
}

/** Records what each handler gets as `sym:n`, and resolves `until(text)` once some handler got it. */
function recorder() {
  const got: Record<string, string[]> = {};
  const waiters = new Map<string, () => void>();
  return {
    got,
    handler: (name: string) => {
      got[name] = [];
      return (m: Message) => {
        const { sym, n } = m.json<{ sym: string; n: number }>();
        got[name]?.push(`${sym}:${n}`);
        waiters.get(`${sym}:${n}`)?.();
      };
    },
    until: (text: string) => new Promise<void>((resolve) => waiters.set(text, resolve)),
  };
}

/**
 * A cluster, an HAClient and a publisher on it, and the HAClient's subscription `grid` to IBM:
 * accepted, or, with `connect: false`, made before either client connects.
 */
async function subscribedToIbm(name: string, extra: Partial<HAClientOptions> = {}, connect = true) {
  const c = await cluster();
  const uris = c.tcpUris('json');
  const ha = client(name, uris[0] as string, { servers: uris, ...extra });
  const publisher = client(`${name}-pub`, uris[0] as string, { servers: uris });
  const r = recorder();
  const old = ha.subscribe('px', { subId: 'grid', filter: "/sym = 'IBM'", onMessage: r.handler('old') });
  if (connect) {
    await Promise.all([ha.connectAndLogon(), publisher.connectAndLogon()]);
    await old.ready;
  }
  return { c, uris, ha, publisher, r, old };
}

/** A cluster, and a publisher on it that has published IBM 1 to 3 to `topic`, persisted. */
async function publishedIbm(name: string, topic: string) {
  const c = await cluster();
  const uris = c.tcpUris('json');
  const publisher = client(`${name}-pub`, uris[0] as string, { servers: uris });
  await publisher.connectAndLogon();
  for (let n = 1; n <= 3; n++) publisher.publish(topic, JSON.stringify({ sym: 'IBM', n }));
  await publisher.publishFlush(5000);
  return { uris, publisher };
}

/** Replaces `grid` with a subscription to `sym`. */
function replaceWith(ha: HAClient, sym: string, onMessage: (m: Message) => void) {
  return ha.subscribe('px', { subId: 'grid', filter: `/sym = '${sym}'`, options: { replace: true }, onMessage });
}

/** The bookmark of the first message on `topic`, read through a client of its own. */
function firstBookmark(name: string, uri: string, topic: string): Promise<string> {
  return new Promise<string>((resolve) => {
    const watch = client(name, uri);
    watch.subscribe(topic, { bookmark: Bookmarks.EPOCH, onMessage: (m: Message) => resolve(m.bookmark as string) });
    void watch.connectAndLogon();
  });
}

/** A subscription manager that keeps every command it was given. */
class RecordingManager extends MemorySubscriptionManager {
  readonly added: Command[] = [];
  override add(subscription: { subId: string; command: Command }): void {
    this.added.push(subscription.command);
    super.add(subscription);
  }
}

/** The server the client is on, killed; resolves with it once the client has recovered on the other. */
async function failOver(c: TestCluster, ha: HAClient): Promise<TestServer> {
  const active = c.servers.find((s) => s.tcpUri('json') === ha.uri);
  if (!active) throw new Error(`${ha.uri} is not in the cluster`);
  const recovered = stateWhere(ha, (e) => e.state === 'Resubscribed');
  await active.kill();
  await recovered;
  return active;
}

describe('HAClient: replacing a live subscription', () => {
  it('switches to the new filter once the server accepts, ends the old one, and re-enters the new one after a failover', async () => {
    const manager = new RecordingManager();
    const { c, ha, publisher, r, old } = await subscribedToIbm('replace-live', { subscriptionManager: manager });
    const ibm1 = r.until('IBM:1');
    publisher.publish('px', JSON.stringify({ sym: 'IBM', n: 1 }));
    await ibm1;

    const fresh = replaceWith(ha, 'MSFT', r.handler('new'));
    await fresh.ready;
    await expect(old.closed).resolves.toBeUndefined();
    const msft2 = r.until('MSFT:2');
    publisher.publish('px', JSON.stringify({ sym: 'IBM', n: 2 }));
    publisher.publish('px', JSON.stringify({ sym: 'MSFT', n: 2 }));
    await msft2;
    // The new subscription is what a reconnect sends, without `replace` (the new server has nothing to replace).
    expect(manager.list().map((m) => m.command.options)).toEqual([undefined]);
    expect(manager.list()[0]?.command.filter).toBe("/sym = 'MSFT'");

    await failOver(c, ha);
    const msft3 = r.until('MSFT:3');
    publisher.publish('px', JSON.stringify({ sym: 'IBM', n: 3 }));
    publisher.publish('px', JSON.stringify({ sym: 'MSFT', n: 3 }));
    await msft3;
    expect(r.got).toEqual({ old: ['IBM:1'], new: ['MSFT:2', 'MSFT:3'] });

    // The old one's unsubscribe() leaves the id's new holder alone.
    await old.unsubscribe();
    const msft4 = r.until('MSFT:4');
    publisher.publish('px', JSON.stringify({ sym: 'MSFT', n: 4 }));
    await msft4;
    expect(r.got.new).toEqual(['MSFT:2', 'MSFT:3', 'MSFT:4']);
  });

  it('keeps the old subscription, here and after a failover, when the server refuses the replace', async () => {
    const { c, ha, publisher, r, old } = await subscribedToIbm('replace-refused');

    const bad = ha.subscribe('px', {
      subId: 'grid',
      filter: '/sym = = nonsense',
      options: { replace: true },
      onMessage: r.handler('bad'),
    });
    await expect(bad.ready).rejects.toMatchObject({ code: 'bad_filter' });
    await expect(bad.closed).resolves.toMatchObject({ code: 'bad_filter' });

    await failOver(c, ha);
    const ibm1 = r.until('IBM:1');
    publisher.publish('px', JSON.stringify({ sym: 'IBM', n: 1 }));
    await ibm1;
    expect(r.got).toEqual({ old: ['IBM:1'], bad: [] });
    // And it still holds the id: unsubscribing it stops it.
    await old.unsubscribe();
    await expect(old.closed).resolves.toBeUndefined();
  });

  it('replaces a subscription made before the client was ready, once it is', async () => {
    const { ha, publisher, r, old } = await subscribedToIbm('replace-early', {}, false);
    const fresh = ha.subscribe('px', {
      subId: 'grid',
      filter: "/sym = 'MSFT'",
      options: 'replace',
      onMessage: r.handler('new'),
    });
    await Promise.all([ha.connectAndLogon(), publisher.connectAndLogon()]);
    await fresh.ready;
    await expect(old.closed).resolves.toBeUndefined();
    const msft1 = r.until('MSFT:1');
    publisher.publish('px', JSON.stringify({ sym: 'IBM', n: 1 }));
    publisher.publish('px', JSON.stringify({ sym: 'MSFT', n: 1 }));
    await msft1;
    expect(r.got).toEqual({ old: [], new: ['MSFT:1'] });
  });

  it('two replaces in a row: the last one gets the deliveries, the two before it end', async () => {
    const { ha, publisher, r, old } = await subscribedToIbm('replace-twice');
    // Both sent before the server answers the first.
    const one = replaceWith(ha, 'MSFT', r.handler('one'));
    const two = replaceWith(ha, 'ORCL', r.handler('two'));
    await Promise.all([one.ready, two.ready]);
    await expect(old.closed).resolves.toBeUndefined();
    await expect(one.closed).resolves.toBeUndefined();
    publisher.publish('px', JSON.stringify({ sym: 'MSFT', n: 1 }));
    publisher.publish('px', JSON.stringify({ sym: 'ORCL', n: 1 }));
    // Delivered (or not) before the server answers a flush sent after the publishes were persisted.
    await publisher.publishFlush(5000);
    await ha.flush();
    expect(r.got).toEqual({ old: [], one: [], two: ['ORCL:1'] });
  });

  it('two refused replaces in a row keep the old subscription', async () => {
    const c = await cluster();
    const uris = c.tcpUris('json');
    // Sliced, the two refusals arrive apart: the first is handled before the second is read.
    const proxy = await startFaultProxy({ target: c.servers[0]?.tcpPort as number });
    cleanups.push(() => proxy.close());
    const ha = client('replace-refused-twice', proxy.tcpUri('json'), { servers: [proxy.tcpUri('json')] });
    const publisher = client('replace-refused-twice-pub', uris[0] as string, { servers: uris });
    const r = recorder();
    const old = ha.subscribe('px', { subId: 'grid', filter: "/sym = 'IBM'", onMessage: r.handler('old') });
    await Promise.all([ha.connectAndLogon(), publisher.connectAndLogon()]);
    await old.ready;
    proxy.slice(16);
    const bad = [1, 2].map((n) =>
      ha.subscribe('px', { subId: 'grid', filter: `/sym = = ${n}`, options: { replace: true }, onMessage: () => {} }),
    );
    for (const b of bad) await expect(b.ready).rejects.toMatchObject({ code: 'bad_filter' });
    proxy.heal();
    publisher.publish('px', JSON.stringify({ sym: 'IBM', n: 1 }));
    await publisher.publishFlush(5000);
    await ha.flush();
    expect(r.got.old).toEqual(['IBM:1']);
    // And it still holds the id.
    await old.unsubscribe();
    await expect(old.closed).resolves.toBeUndefined();
  });

  it('an old subscription unsubscribed while a replace the server refuses is under way ends, here and on the server', async () => {
    const c = await cluster();
    const uris = c.tcpUris('json');
    let replaceSent: (() => void) | undefined;
    let unsubscribeSent: (() => void) | undefined;
    const ha = client('replace-called-off', uris[0] as string, {
      servers: uris,
      client: {
        transportFilter: (bytes, direction) => {
          const text = direction === 'out' ? new TextDecoder().decode(bytes) : '';
          if (text.includes('replace')) replaceSent?.();
          if (text.includes('"unsubscribe"')) unsubscribeSent?.();
          return undefined;
        },
      },
    });
    const r = recorder();
    const old = ha.subscribe('px', { subId: 'grid', filter: "/sym = 'IBM'", onMessage: r.handler('old') });
    await ha.connectAndLogon();
    await old.ready;
    const server = c.servers.find((s) => s.tcpUri('json') === ha.uri);
    // The server holds the replace until the old one is unsubscribed here.
    server?.freeze();
    const sent = new Promise<void>((resolve) => {
      replaceSent = resolve;
    });
    const bad = ha.subscribe('px', { subId: 'grid', filter: '/sym = = x', options: { replace: true } });
    await sent;
    const unsubscribed = new Promise<void>((resolve) => {
      unsubscribeSent = resolve;
    });
    const stopped = old.unsubscribe();
    server?.thaw();
    await expect(bad.ready).rejects.toMatchObject({ code: 'bad_filter' });
    await stopped;
    await expect(old.closed).resolves.toBeUndefined();
    // The server still had the old one: it is taken back there.
    await unsubscribed;
    await ha.flush();
    // Nothing holds the id any more: a new subscription may take it, and gets what it matches.
    const fresh = ha.subscribe('px', { subId: 'grid', filter: "/sym = 'IBM'", onMessage: r.handler('fresh') });
    await fresh.ready;
    const publisher = client('replace-called-off-pub', uris[0] as string, { servers: uris });
    await publisher.connectAndLogon();
    const ibm1 = r.until('IBM:1');
    publisher.publish('px', JSON.stringify({ sym: 'IBM', n: 1 }));
    await ibm1;
    expect(r.got).toEqual({ old: [], fresh: ['IBM:1'] });
  });

  it('an old subscription that falls behind while the replace is under way ends alone: the new one takes over', async () => {
    const c = await cluster();
    const uris = c.tcpUris('json');
    const proxy = await startFaultProxy({ target: c.servers[0]?.tcpPort as number });
    cleanups.push(() => proxy.close());
    let replaceSent: (() => void) | undefined;
    const ha = client('replace-slow-old', proxy.tcpUri('json'), {
      servers: [proxy.tcpUri('json')],
      client: {
        transportFilter: (bytes, direction) => {
          if (direction === 'out' && new TextDecoder().decode(bytes).includes('replace')) replaceSent?.();
          return undefined;
        },
      },
    });
    const publisher = client('replace-slow-old-pub', uris[0] as string, { servers: uris });
    const r = recorder();
    // Iterated by nobody: its third message overflows it.
    const old = ha.subscribe('px', { subId: 'grid', filter: "/sym = 'IBM'", maxQueue: 2 });
    await Promise.all([ha.connectAndLogon(), publisher.connectAndLogon()]);
    await old.ready;
    // Its messages wait in the proxy, and reach it after the replace has gone out.
    proxy.blackhole();
    for (let n = 1; n <= 3; n++) publisher.publish('px', JSON.stringify({ sym: 'IBM', n }));
    await publisher.publishFlush(5000);
    const sent = new Promise<void>((resolve) => {
      replaceSent = resolve;
    });
    const fresh = replaceWith(ha, 'MSFT', r.handler('new'));
    proxy.heal();
    await sent;
    await fresh.ready;
    await expect(old.closed).resolves.toMatchObject({ code: 'slow_consumer' });
    publisher.publish('px', JSON.stringify({ sym: 'MSFT', n: 1 }));
    await publisher.publishFlush(5000);
    await ha.flush();
    expect(r.got.new).toEqual(['MSFT:1']);
    let freshClosed = false;
    void fresh.closed.then(() => {
      freshClosed = true;
    });
    await ha.flush();
    expect(freshClosed).toBe(false);
  });

  it('a replace whose subscription falls behind in the read that brings its acceptance is accepted: the old one ends', async () => {
    // From the replace on, what the server sends is held, then read at once: its processed ack and
    // the new subscription's first three messages.
    let held: { chunks: Uint8Array[]; text: string } | undefined;
    let answered!: () => void;
    const accepted = new Promise<void>((resolve) => {
      answered = resolve;
    });
    const transportFilter = (bytes: Uint8Array, direction: 'in' | 'out') => {
      const text = new TextDecoder().decode(bytes);
      if (direction === 'out') {
        if (/"opts":"[^"]*replace/.test(text)) held = { chunks: [], text: '' };
        return undefined;
      }
      if (!held) return undefined;
      held.chunks.push(bytes);
      held.text += text;
      if (held.text.includes('processed')) answered();
      if (!held.text.includes('"sym":"MSFT","n":3')) return new Uint8Array(0);
      const all = new Uint8Array(held.chunks.reduce((size, chunk) => size + chunk.length, 0));
      let at = 0;
      for (const chunk of held.chunks) {
        all.set(chunk, at);
        at += chunk.length;
      }
      held = undefined;
      return all;
    };
    const manager = new RecordingManager();
    const { ha, publisher, old } = await subscribedToIbm('replace-slow-new', {
      subscriptionManager: manager,
      client: { transportFilter },
    });
    // Iterated by nobody: its third message overflows it.
    const fresh = ha.subscribe('px', {
      subId: 'grid',
      filter: "/sym = 'MSFT'",
      options: { replace: true },
      maxQueue: 2,
    });
    await accepted;
    for (let n = 1; n <= 3; n++) publisher.publish('px', JSON.stringify({ sym: 'MSFT', n }));
    await expect(fresh.closed).resolves.toMatchObject({ code: 'slow_consumer' });
    await expect(fresh.ready).resolves.toBeUndefined();
    await ha.flush();
    // Not taken for a refusal: the old one is not put back, here or for the next failover.
    let oldClosed = false;
    void old.closed.then(() => {
      oldClosed = true;
    });
    await ha.flush();
    expect(oldClosed).toBe(true);
    expect(manager.list()).toEqual([]);
  });

  it('unsubscribe(subId) also calls off a replace of it still waiting for the client to be ready', async () => {
    const { ha, publisher, r, old } = await subscribedToIbm('replace-waiting-unsub', {}, false);
    const fresh = replaceWith(ha, 'MSFT', r.handler('new'));
    await ha.unsubscribe('grid');
    await expect(old.closed).resolves.toBeUndefined();
    await expect(fresh.closed).resolves.toBeUndefined();
    await expect(fresh.ready).rejects.toMatchObject({ code: 'aborted' });
    await Promise.all([ha.connectAndLogon(), publisher.connectAndLogon()]);
    publisher.publish('px', JSON.stringify({ sym: 'IBM', n: 1 }));
    publisher.publish('px', JSON.stringify({ sym: 'MSFT', n: 1 }));
    await publisher.publishFlush(5000);
    await ha.flush();
    expect(r.got).toEqual({ old: [], new: [] });
  });

  it('an old bookmark subscription that falls behind while a replace of it waits for the client to be ready ends alone: the replace goes out as a subscribe, from its place in the log', async () => {
    const { uris, publisher } = await publishedIbm('replace-waiting-slow-old', 'px');
    // From the old one's subscribe (the recovery entering it) on, what the server sends is held,
    // then read at once: its processed ack and the replay of its three messages, the second of
    // which overflows it before the recovery is over, so while the replace still waits.
    let held: Uint8Array[] | undefined;
    let text = '';
    const transportFilter = (bytes: Uint8Array, direction: 'in' | 'out') => {
      if (direction === 'out') {
        if (!text && new TextDecoder().decode(bytes).includes('"sub_id":"grid"')) held = [];
        return undefined;
      }
      if (!held) return undefined;
      held.push(bytes);
      text += new TextDecoder().decode(bytes);
      if (!text.includes('processed') || !text.includes('{"sym":"IBM","n":3}')) return new Uint8Array(0);
      const all = Buffer.concat(held);
      held = undefined;
      return all;
    };
    const ha = client('replace-waiting-slow-old', uris[0] as string, { servers: uris, client: { transportFilter } });
    const r = recorder();
    // Iterated by nobody: its second message overflows it (`live`: AMPS cannot pause such a
    // bookmark subscription, so it is not paused for its consumer, and ends).
    const old = ha.subscribe('px', { subId: 'grid', bookmark: Bookmarks.EPOCH, maxQueue: 2, options: { live: true } });
    const fresh = replaceWith(ha, 'IBM', r.handler('new'));
    await ha.connectAndLogon();
    await expect(old.closed).resolves.toMatchObject({ code: 'slow_consumer' });
    await fresh.ready;
    // From the old one's place in the log: what it was delivered (1, 2) is dropped as a duplicate,
    // and what came after (3, which reached it only after it had ended) is not lost.
    const ibm4 = r.until('IBM:4');
    publisher.publish('px', JSON.stringify({ sym: 'IBM', n: 4 }));
    await ibm4;
    expect(r.got.new).toEqual(['IBM:3', 'IBM:4']);
  });

  it('two replaces cut off by a lost connection: the last is entered, the one before it never claims success', async () => {
    const c = await cluster();
    const server = c.servers[0] as TestServer;
    const proxy = await startFaultProxy({ target: server.tcpPort });
    cleanups.push(() => proxy.close());
    // Resolves once both replaces have been written (into the blackhole).
    let replacesSent!: () => void;
    const sent = new Promise<void>((resolve) => {
      replacesSent = resolve;
    });
    let replaces = 0;
    const ha = client('replace-cut-off', proxy.tcpUri('json'), {
      client: {
        transportFilter: (bytes, direction) => {
          if (direction === 'out') replaces += new TextDecoder().decode(bytes).split('"replace"').length - 1;
          if (replaces === 2) replacesSent();
          return bytes;
        },
      },
    });
    const publisher = client('replace-cut-off-pub', server.tcpUri('json'));
    const r = recorder();
    const old = ha.subscribe('px', { subId: 'grid', filter: "/sym = 'IBM'", onMessage: r.handler('old') });
    await Promise.all([ha.connectAndLogon(), publisher.connectAndLogon()]);
    await old.ready;
    proxy.blackhole(); // both replaces go out, and no answer comes back
    const first = replaceWith(ha, 'A', r.handler('first'));
    const second = replaceWith(ha, 'MSFT', r.handler('second'));
    await sent;
    const recovered = stateWhere(ha, (e) => e.state === 'Resubscribed');
    proxy.heal();
    proxy.reset();
    await recovered;
    await second.ready;
    await expect(first.ready).rejects.toMatchObject({
      code: 'aborted',
      message: expect.stringMatching(/replaced before/),
    });
    await expect(old.closed).resolves.toBeUndefined();
    const msft = r.until('MSFT:1');
    publisher.publish('px', JSON.stringify({ sym: 'IBM', n: 1 }));
    publisher.publish('px', JSON.stringify({ sym: 'MSFT', n: 1 }));
    await msft;
    expect(r.got).toEqual({ old: [], first: [], second: ['MSFT:1'] });
  });

  it('a replace still waiting when the client stops reconnecting takes the id: the next connectAndLogon() enters it', async () => {
    const { c, ha, publisher, r, old } = await subscribedToIbm('replace-stopped', {}, false);
    const server = c.servers[0] as TestServer;
    await server.kill();
    const fresh = replaceWith(ha, 'MSFT', r.handler('new'));
    const attempt = new AbortController();
    const connecting = ha.connectAndLogon({ signal: attempt.signal });
    attempt.abort(); // the client stops reconnecting; nothing is on a server
    await expect(connecting).rejects.toMatchObject({ code: 'aborted' });
    await expect(old.closed).resolves.toBeUndefined();
    await server.restart();
    await Promise.all([ha.connectAndLogon(), publisher.connectAndLogon()]);
    await fresh.ready;
    const msft1 = r.until('MSFT:1');
    publisher.publish('px', JSON.stringify({ sym: 'IBM', n: 1 }));
    publisher.publish('px', JSON.stringify({ sym: 'MSFT', n: 1 }));
    await msft1;
    expect(r.got).toEqual({ old: [], new: ['MSFT:1'] });
  });

  it('disconnect() ends a replace still waiting as it ends every subscription: closed with undefined, ready rejected', async () => {
    const c = await cluster();
    const ha = client('replace-waiting-disconnect', c.tcpUris('json')[0] as string);
    const old = ha.subscribe('px', { subId: 'grid', onMessage: () => {} });
    const fresh = ha.subscribe('px', { subId: 'grid', options: { replace: true }, onMessage: () => {} });
    await ha.disconnect();
    await expect(old.closed).resolves.toBeUndefined();
    await expect(fresh.closed).resolves.toBeUndefined();
    await expect(fresh.ready).rejects.toMatchObject({ code: 'disconnected' });
  });

  it('without a bookmark store, a replaced range subscription is entered after a failover from its range, and ends at its end', async () => {
    const c = await cluster();
    const uris = c.tcpUris('json');
    const publisher = client('replace-range-nostore-pub', uris[0] as string, { servers: uris });
    await publisher.connectAndLogon();
    const publish = async (from: number, to: number) => {
      for (let n = from; n <= to; n++) publisher.publish('rg', JSON.stringify({ sym: 'IBM', n }));
      await publisher.publishFlush(5000);
    };
    await publish(1, 3);
    const first = await firstBookmark('replace-range-nostore-watch', uris[0] as string, 'rg');
    const sixth = first.replace(/\|1\|$/, '|6|');
    const ha = client('replace-range-nostore', uris[0] as string, { servers: uris, bookmarkStore: false });
    const r = recorder();
    ha.subscribe('rg', { subId: 'range', bookmark: `[${first}:${sixth}]`, onMessage: r.handler('old') });
    const third = r.until('IBM:3');
    await ha.connectAndLogon();
    await third;
    const fresh = ha.subscribe('rg', { subId: 'range', filter: '/n > 0', options: { replace: true } });
    await fresh.ready;
    const killed = await failOver(c, ha);
    await killed.restart(); // sync replication holds persisted acks until every peer has the message
    await publish(4, 8);
    const seen: number[] = [];
    for await (const m of fresh) seen.push(m.json<{ n: number }>().n);
    // Replayed from the range's start (no store: no de-duplication), up to its end.
    expect(seen).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it.each([
    ['with', undefined],
    ['without', false],
  ] as const)(
    'a replace answered after the range it replaces has ended (%s a bookmark store) goes on from the range, and ends at its end',
    async (what, bookmarkStore) => {
      const c = await cluster();
      const uris = c.tcpUris('json');
      const name = `replace-range-ended-${what}`;
      const publisher = client(`${name}-pub`, uris[0] as string, { servers: uris });
      await publisher.connectAndLogon();
      for (let n = 1; n <= 3; n++) publisher.publish('rg', JSON.stringify({ sym: 'IBM', n }));
      await publisher.publishFlush(5000);
      const first = await firstBookmark(`${name}-watch`, uris[0] as string, 'rg');
      const third = first.replace(/\|1\|$/, '|3|');
      const ha = client(name, uris[0] as string, { servers: uris, bookmarkStore });
      await ha.connectAndLogon();
      const unhandled = new Promise<string>((resolve) => ha.client.onUnhandledMessage(() => resolve('unhandled')));
      const r = recorder();
      // Sent together: the server replays the range and ends it (its completed ack) before it reads the replace.
      const old = ha.subscribe('rg', { subId: 'range', bookmark: `[${first}:${third}]`, onMessage: r.handler('old') });
      const fresh = ha.subscribe('rg', {
        subId: 'range',
        filter: '/n > 0',
        options: { replace: true },
        onMessage: r.handler('new'),
      });
      await fresh.ready;
      const wentOn = r.until('IBM:4');
      publisher.publish('rg', JSON.stringify({ sym: 'IBM', n: 4 })); // past the range's end
      const outcome = await Promise.race([fresh.closed.then(() => 'ended'), wentOn.then(() => 'went on'), unhandled]);
      expect(outcome).toBe('ended');
      await expect(old.closed).resolves.toBeUndefined();
      // The server started the replace from the range's start (a store drops what the old one had).
      expect(r.got).toEqual({
        old: ['IBM:1', 'IBM:2', 'IBM:3'],
        new: what === 'with' ? [] : ['IBM:1', 'IBM:2', 'IBM:3'],
      });
    },
  );

  it('a range that ends while a replace of it waits for the server ends: refused, the replace leaves the id free', async () => {
    const { uris } = await publishedIbm('replace-range-refused', 'rg');
    const first = await firstBookmark('replace-range-refused-watch', uris[0] as string, 'rg');
    const third = first.replace(/\|1\|$/, '|3|');
    const ha = client('replace-range-refused', uris[0] as string, { servers: uris });
    await ha.connectAndLogon();
    const r = recorder();
    // Sent together: the server replays the range and ends it (its completed ack) before it reads the replace.
    const old = ha.subscribe('rg', { subId: 'range', bookmark: `[${first}:${third}]`, onMessage: r.handler('old') });
    const refused = ha.subscribe('rg', { subId: 'range', filter: '/n >', options: { replace: true } });
    await expect(refused.ready).rejects.toMatchObject({ code: 'bad_filter' });
    expect(await Promise.race([old.closed, 'open'])).toBeUndefined();
    expect(r.got).toEqual({ old: ['IBM:1', 'IBM:2', 'IBM:3'] });
    // Nothing holds the id: a new subscription may take it.
    await ha.subscribe('rg', { subId: 'range' }).ready;
  });

  it("keeps moving a bookmark subscription's recovery point with persisted acks after a replace", async () => {
    const c = await cluster();
    const uris = c.tcpUris('json');
    const ha = client('replace-persisted', uris[0] as string, { servers: uris });
    const publisher = client('replace-persisted-pub', uris[0] as string, { servers: uris });
    const old = ha.subscribe('px', { subId: 'grid', bookmark: Bookmarks.EPOCH, onMessage: () => {} });
    await Promise.all([ha.connectAndLogon(), publisher.connectAndLogon()]);
    await old.ready;
    const last = new Promise<string>((resolve) => {
      let persistedAt: string | undefined;
      let delivered: string | undefined;
      const settle = () => persistedAt !== undefined && persistedAt === delivered && resolve(delivered);
      ha.subscribe('px', {
        subId: 'grid',
        filter: "/sym = 'MSFT'",
        options: { replace: true },
        onMessage: (m: Message) => {
          delivered = m.bookmark;
          settle();
        },
        onAck: (ack) => {
          if (ack.ackType !== 'persisted') return;
          persistedAt = ack.bookmark;
          settle();
        },
      }).ready.then(() => publisher.publish('px', JSON.stringify({ sym: 'MSFT', n: 1 })));
    });
    // The server reported the message persisted, with nothing outstanding: the recovery point is there.
    const bookmark = await last;
    expect(ha.bookmarkStore?.getMostRecent('grid')?.split(',')[0]).toBe(bookmark);
  });

  it('keeps a bookmark subscription where it was: nothing lost or twice across the replace and a failover', async () => {
    const c = await cluster();
    const uris = c.tcpUris('json');
    const ha = client('replace-bm', uris[0] as string, { servers: uris });
    const publisher = client('replace-bm-pub', uris[0] as string, { servers: uris });
    const r = recorder();
    const old = ha.subscribe('px', {
      subId: 'grid',
      bookmark: Bookmarks.EPOCH,
      filter: "/sym = 'IBM' OR /sym = 'MSFT'",
      onMessage: r.handler('old'),
    });
    await Promise.all([ha.connectAndLogon(), publisher.connectAndLogon()]);
    await old.ready;
    for (let n = 1; n <= 3; n++) publisher.publish('px', JSON.stringify({ sym: 'MSFT', n }));
    await r.until('MSFT:3');

    // A different bookmark would move it in the log: refused at once.
    expect(() =>
      ha.subscribe('px', { subId: 'grid', bookmark: Bookmarks.NOW, options: { replace: true }, onMessage: () => {} }),
    ).toThrow(/leave bookmark out/);
    const fresh = replaceWith(ha, 'MSFT', r.handler('new'));
    await fresh.ready;
    for (let n = 4; n <= 5; n++) publisher.publish('px', JSON.stringify({ sym: 'MSFT', n }));
    await r.until('MSFT:5');
    // The failover replays from the recovery point: what was delivered is dropped as a duplicate.
    await failOver(c, ha);
    publisher.publish('px', JSON.stringify({ sym: 'IBM', n: 6 }));
    const msft6 = r.until('MSFT:6');
    publisher.publish('px', JSON.stringify({ sym: 'MSFT', n: 6 }));
    await msft6;
    expect([...(r.got.old ?? []), ...(r.got.new ?? [])]).toEqual([1, 2, 3, 4, 5, 6].map((n) => `MSFT:${n}`));
    expect(r.got.new).toContain('MSFT:6');
  });

  it('keeps the old subscription when a replace cut off by a failover is refused by the next server (the first never answered it)', async () => {
    const c = await cluster();
    const uris = c.tcpUris('json');
    let cutReplace = false;
    let swallowed!: () => void;
    const replaceSwallowed = new Promise<void>((resolve) => {
      swallowed = resolve;
    });
    const ha = client('replace-cut', uris[0] as string, {
      servers: uris,
      client: {
        // The replace never reaches the first server: it goes down with it unanswered.
        transportFilter: (bytes, direction) => {
          if (cutReplace && direction === 'out' && Buffer.from(bytes).includes('replace')) {
            cutReplace = false;
            swallowed();
            return new Uint8Array(0);
          }
          return bytes;
        },
      },
    });
    const publisher = client('replace-cut-pub', uris[0] as string, { servers: uris });
    const got: string[] = [];
    const old = ha.subscribe('px', {
      subId: 'grid',
      filter: "/sym = 'IBM'",
      onMessage: (m: Message) => {
        got.push(`old:${m.json<{ n: number }>().n}`);
      },
    });
    await Promise.all([ha.connectAndLogon(), publisher.connectAndLogon()]);
    await old.ready;
    const first = c.servers.find((s) => s.tcpUri('json') === ha.uri);

    cutReplace = true;
    const bad = ha.subscribe('px', {
      subId: 'grid',
      filter: '/sym = = nonsense',
      options: { replace: true },
      onMessage: () => {
        got.push('bad');
      },
    });
    await replaceSwallowed;
    const recovered = stateWhere(ha, (e) => e.state === 'Resubscribed');
    await first?.kill();
    await recovered;
    // The server refused it: the old subscription goes on, as when the first server refuses it.
    await expect(bad.ready).rejects.toMatchObject({ code: 'bad_filter' });

    let delivered!: () => void;
    const ibm = new Promise<void>((resolve) => {
      delivered = resolve;
    });
    const sub2 = ha.subscribe('px', { filter: "/sym = 'IBM'", onMessage: () => delivered() });
    await sub2.ready;
    publisher.publish('px', JSON.stringify({ sym: 'IBM', n: 1 }));
    await ibm; // a control subscription got it: so must the old one, had it still been there
    await ha.flush();
    expect(got).toEqual(['old:1']);
  });
});
