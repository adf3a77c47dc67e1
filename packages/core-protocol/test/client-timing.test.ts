import { describe, expect, it } from 'vitest';
import { Client, ConnectionState, type Message, SlowConsumerError, TimedOutError } from '../src/index.js';
import { ManualEnvironment, ScriptedServer } from './client-fakes.js';

describe('Client heartbeat watchdog (manual clock)', () => {
  it('closes a connection silent past the timeout, reporting why', async () => {
    const env = new ManualEnvironment();
    const server = ScriptedServer.acking();
    const client = new Client('hb-1', { transport: server.transport, environment: env });
    const states: string[] = [];
    client.onStateChange((e) => states.push(e.state));
    const disconnected = new Promise<Error | undefined>((resolve) => client.onDisconnect(resolve));
    await client.connectAndLogon('tcp://127.0.0.1:9007/amps/json');
    await client.heartbeat(1, 3);
    expect(server.received.map((m) => m.options).filter(Boolean)).toContain('start,1');

    env.advance(2000);
    server.reply({ command: 'heartbeat' }); // traffic resets the watchdog
    await Promise.resolve(); // writes are flushed at the end of the tick
    expect(server.received.filter((m) => m.options === 'beat')).toHaveLength(1);
    env.advance(2999);
    expect(client.isConnected).toBe(true);
    env.advance(1);
    const error = await disconnected;
    expect(TimedOutError.isInstance(error)).toBe(true);
    expect(error?.message).toMatch(/heartbeat timeout/);
    expect(states).toEqual([
      ConnectionState.Connected,
      ConnectionState.LoggedOn,
      ConnectionState.HeartbeatInitiated,
      ConnectionState.Disconnected,
    ]);
    expect(env.pendingTimers).toBe(0);
  });

  it('takes a null timeout as the default, twice the interval (as HAClient does), not as 0 s', async () => {
    const env = new ManualEnvironment();
    const server = ScriptedServer.acking();
    const client = new Client('hb-null', { transport: server.transport, environment: env });
    const disconnected = new Promise<Error | undefined>((resolve) => client.onDisconnect(resolve));
    await client.connectAndLogon('tcp://127.0.0.1:9007/amps/json');
    await client.heartbeat(1, null as unknown as number);
    env.advance(1999);
    expect(client.isConnected).toBe(true);
    env.advance(1);
    expect(TimedOutError.isInstance(await disconnected)).toBe(true);
  });

  it('times out a command whose ack never comes, and clears its timer', async () => {
    const env = new ManualEnvironment();
    const server = ScriptedServer.acking();
    const client = new Client('to-1', { transport: server.transport, environment: env, commandTimeoutMs: 500 });
    await client.connectAndLogon('tcp://127.0.0.1:9007/amps/json');
    const flushed = client.flush();
    env.advance(499);
    env.advance(1);
    await expect(flushed).rejects.toThrow(/flush \(cid \d+\) timed out after 500 ms/);
    expect(env.pendingTimers).toBe(0);
    await client.disconnect();
    expect(client.state).toBe(ConnectionState.Shutdown);
  });

  it('sends unsubscribe when a subscribe times out', async () => {
    const env = new ManualEnvironment();
    const server = ScriptedServer.acking();
    const client = new Client('to-2', { transport: server.transport, environment: env, commandTimeoutMs: 100 });
    await client.connectAndLogon('tcp://127.0.0.1:9007/amps/json');
    const sub = client.subscribe('orders', { subId: 's1' });
    env.advance(100);
    await expect(sub.ready).rejects.toThrow(/timed out/);
    await new Promise((r) => setImmediate(r));
    const unsub = server.received.find((m) => m.command === 'unsubscribe');
    expect(unsub?.subId).toBe('s1');
    expect(await sub.closed).toBeInstanceOf(Error);
  });

  it('aborts a command with an AbortSignal', async () => {
    const env = new ManualEnvironment();
    const server = ScriptedServer.acking();
    const client = new Client('ab-1', { transport: server.transport, environment: env });
    await client.connectAndLogon('tcp://127.0.0.1:9007/amps/json');
    const controller = new AbortController();
    const flushed = client.flush('processed', { signal: controller.signal });
    controller.abort();
    await expect(flushed).rejects.toMatchObject({ code: 'aborted' });
    expect(env.pendingTimers).toBe(0);
  });
});

describe('Client slow consumer (scripted server; the transport cannot pause)', () => {
  it('sends the batched autoAck acks before it unsubscribes a consumer that overflowed', async () => {
    const env = new ManualEnvironment();
    const server = ScriptedServer.acking();
    const answer = server.onCommand;
    server.onCommand = (m, s) => {
      answer(m, s);
      if (m.command === 'subscribe') {
        queueMicrotask(() =>
          s.reply({ command: 'ack', commandId: m.commandId, ackType: 'processed', status: 'success' }),
        );
      }
    };
    const client = new Client('slow-1', {
      transport: server.transport,
      environment: env,
      maxQueue: 2,
      ackBatchSize: 10,
    });
    await client.connectAndLogon('tcp://127.0.0.1:9007/amps/json');
    const sub = client.subscribe('jobs', { autoAck: true });
    await sub.ready;
    const job = (n: number) =>
      server.reply({ command: 'publish', topic: 'jobs', subId: sub.subId, bookmark: `1|${n}|`, leasePeriod: '60000' });
    const iterator = sub[Symbol.asyncIterator]();
    job(1);
    expect((await iterator.next()).value?.bookmark).toBe('1|1|');
    const second = iterator.next(); // job 1 is handled: its ack waits in the batch
    job(2);
    await second;
    for (let n = 3; n <= 5; n++) job(n); // one read, more than maxQueue: the subscription ends
    expect(SlowConsumerError.isInstance(await sub.closed)).toBe(true);
    await Promise.resolve(); // writes are flushed at the end of the tick
    const sent = server.received.map((m) => `${m.command} ${m.bookmark ?? m.subId ?? ''}`);
    // An ack sent after the unsubscribe would come too late: the lease is given back, the job redone.
    expect(sent.slice(sent.indexOf('sow_delete 1|1|'))).toEqual(['sow_delete 1|1|', `unsubscribe ${sub.subId}`]);
  });
});

describe('Client replace of a subscription that falls behind (scripted server; the transport cannot pause)', () => {
  /** A subscription iterated by nobody, a replace of it sent, and the server's answer to the replace held. */
  async function fallingBehindDuringReplace() {
    const server = ScriptedServer.acking();
    const answer = server.onCommand;
    const subscribes: Message[] = [];
    server.onCommand = (m, s) => {
      answer(m, s);
      if (m.command === 'subscribe') subscribes.push(m);
      if (m.command === 'subscribe' && subscribes.length === 1) {
        queueMicrotask(() =>
          s.reply({ command: 'ack', commandId: m.commandId, ackType: 'processed', status: 'success' }),
        );
      }
    };
    const client = new Client('slow-replace', { transport: server.transport, maxQueue: 2 });
    await client.connectAndLogon('tcp://127.0.0.1:9007/amps/json');
    const old = client.subscribe('t', { subId: 's' });
    await old.ready;
    const fresh = client.subscribe('t', { subId: 's', options: { replace: true } });
    await Promise.resolve(); // the replace is written at the end of the tick
    const replace = subscribes[1] as Message;
    // One read, more than maxQueue, before the server answers the replace: the old one ends.
    for (let n = 1; n <= 3; n++) server.reply({ command: 'publish', topic: 't', subId: 's', data: `old ${n}` });
    expect(SlowConsumerError.isInstance(await old.closed)).toBe(true);
    const unsubscribed = () => server.received.filter((m) => m.command === 'unsubscribe').map((m) => m.subId);
    const refuse = (command: Message) =>
      server.reply({
        command: 'ack',
        commandId: command.commandId,
        ackType: 'processed',
        status: 'failure',
        reason: 'bad filter',
      });
    return { server, client, fresh, replace, unsubscribed, refuse };
  }

  it('does not unsubscribe the id while the replace waits: accepted, the replace receives what follows', async () => {
    const { server, client, fresh, replace, unsubscribed } = await fallingBehindDuringReplace();
    await Promise.resolve(); // writes are flushed at the end of the tick
    expect(unsubscribed()).toEqual([]);
    server.reply({ command: 'ack', commandId: replace.commandId, ackType: 'processed', status: 'success' });
    await fresh.ready;
    server.reply({ command: 'publish', topic: 't', subId: 's', data: 'new 1' });
    const iterator = fresh[Symbol.asyncIterator]();
    expect((await iterator.next()).value?.text()).toBe('new 1');
    await Promise.resolve();
    expect(unsubscribed()).toEqual([]);
    await client.disconnect();
  });

  it('refused, the replace takes the one that fell behind back from the server', async () => {
    const { fresh, replace, unsubscribed, refuse } = await fallingBehindDuringReplace();
    await Promise.resolve();
    expect(unsubscribed()).toEqual([]);
    refuse(replace);
    await expect(fresh.ready).rejects.toThrow();
    await Promise.resolve();
    expect(unsubscribed()).toEqual(['s']);
  });

  it('two replaces sent while it falls behind, both refused: the one that fell behind is taken back', async () => {
    const { server, client, replace, unsubscribed, refuse } = await fallingBehindDuringReplace();
    const second = client.subscribe('t', { subId: 's', options: { replace: true } });
    await Promise.resolve();
    refuse(replace);
    refuse(server.received.filter((m) => m.command === 'subscribe')[2] as Message);
    await expect(second.ready).rejects.toThrow();
    await Promise.resolve();
    expect(unsubscribed()).toEqual(['s']);
  });
});
