/**
 * Replacing a live subscription (AMPS `replace`: the same `sub_id` with the `replace` option)
 * through HAClient: the switch, a refusal, and what a failover re-enters afterwards.
 */
import { Bookmarks, type Command, type Message } from '@amps-ts/core-protocol';
import { startTestCluster, type TestCluster } from '@amps-ts/test-server';
import { describe, expect, it } from 'vitest';
import { type HAClient, MemorySubscriptionManager } from '../src/index.js';
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

/** A subscription manager that keeps every command it was given. */
class RecordingManager extends MemorySubscriptionManager {
  readonly added: Command[] = [];
  override add(subscription: { subId: string; command: Command }): void {
    this.added.push(subscription.command);
    super.add(subscription);
  }
}

/** The server the client is on, killed; resolves once the client has recovered on the other. */
async function failOver(c: TestCluster, ha: HAClient): Promise<void> {
  const active = c.servers.find((s) => s.tcpUri('json') === ha.uri);
  if (!active) throw new Error(`${ha.uri} is not in the cluster`);
  const recovered = stateWhere(ha, (e) => e.state === 'Resubscribed');
  await active.kill();
  await recovered;
}

describe('HAClient: replacing a live subscription', () => {
  it('switches to the new filter once the server accepts, ends the old one, and re-enters the new one after a failover', async () => {
    const c = await cluster();
    const uris = c.tcpUris('json');
    const manager = new RecordingManager();
    const ha = client('replace-live', uris[0] as string, { servers: uris, subscriptionManager: manager });
    const publisher = client('replace-live-pub', uris[0] as string, { servers: uris });
    const r = recorder();
    const old = ha.subscribe('px', { subId: 'grid', filter: "/sym = 'IBM'", onMessage: r.handler('old') });
    await Promise.all([ha.connectAndLogon(), publisher.connectAndLogon()]);
    await old.ready;
    const ibm1 = r.until('IBM:1');
    publisher.publish('px', JSON.stringify({ sym: 'IBM', n: 1 }));
    await ibm1;

    const fresh = ha.subscribe('px', {
      subId: 'grid',
      filter: "/sym = 'MSFT'",
      options: { replace: true },
      onMessage: r.handler('new'),
    });
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
    const c = await cluster();
    const uris = c.tcpUris('json');
    const ha = client('replace-refused', uris[0] as string, { servers: uris });
    const publisher = client('replace-refused-pub', uris[0] as string, { servers: uris });
    const r = recorder();
    const old = ha.subscribe('px', { subId: 'grid', filter: "/sym = 'IBM'", onMessage: r.handler('old') });
    await Promise.all([ha.connectAndLogon(), publisher.connectAndLogon()]);
    await old.ready;

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
    const c = await cluster();
    const uris = c.tcpUris('json');
    const ha = client('replace-early', uris[0] as string, { servers: uris });
    const publisher = client('replace-early-pub', uris[0] as string, { servers: uris });
    const r = recorder();
    const old = ha.subscribe('px', { subId: 'grid', filter: "/sym = 'IBM'", onMessage: r.handler('old') });
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
    const fresh = ha.subscribe('px', {
      subId: 'grid',
      filter: "/sym = 'MSFT'",
      options: { replace: true },
      onMessage: r.handler('new'),
    });
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
});
