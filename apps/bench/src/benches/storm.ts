/**
 * Reconnect storm on a virtual clock: N clients lose their only server at the same instant; it
 * comes back after an outage (attempts before that fail at once). For each delay strategy it
 * reports the herd that hits the recovering server, how long clients take to return, and how
 * often they knock on the dead server. The real strategy and chooser packages run unmodified; only
 * time is simulated, so the whole run takes a few seconds.
 */
import type { Environment, ReconnectDelayStrategy } from '@amps-ts/core-protocol';
import { ConnectionError, seededRandom } from '@amps-ts/core-protocol';
import { decorrelatedJitter } from '@amps-ts/delay-decorrelated-jitter';
import { exponentialBackoff, recommendedBackoff } from '@amps-ts/delay-exponential';
import { fixedDelay } from '@amps-ts/delay-fixed';
import { shuffled } from '@amps-ts/server-chooser-shuffled';
import type { BenchGroup, BenchResult } from '../runner.js';

const server = 'tcp://storm:9007/amps/json';
const outagesMs = [1_000, 5_000, 30_000];
const windowMs = 100;

/** The HAClient default's goal, for 5 s and 30 s outages. */
const target = { peakPercent: 10, p99Ms: 3_000 };

interface Preset {
  name: string;
  create(environment: VirtualEnvironment): ReconnectDelayStrategy;
  /** Rows for this preset carry the HAClient-default target. */
  isDefault?: boolean;
}

const presets: Preset[] = [
  { name: 'fixed 200 ms', create: (environment) => fixedDelay({ environment }) },
  { name: 'exponential, AMPS defaults', create: (environment) => exponentialBackoff({ environment }) },
  {
    name: 'exponential, full jitter, 20 s cap',
    create: (environment) => exponentialBackoff({ environment, jitterMode: 'full' }),
  },
  {
    name: 'exponential, proportional 0.5, 20 s cap',
    create: (environment) => exponentialBackoff({ environment, jitterMode: 'proportional', jitter: 0.5 }),
  },
  {
    name: 'exponential, proportional 0.5, 2 s cap',
    create: (environment) =>
      exponentialBackoff({ environment, jitterMode: 'proportional', jitter: 0.5, maximumDelayMs: 2_000 }),
  },
  { name: 'recommendedBackoff()', create: (environment) => recommendedBackoff({ environment }), isDefault: true },
  { name: 'decorrelated jitter 100 ms / 10 s', create: (environment) => decorrelatedJitter({ environment }) },
  {
    name: 'decorrelated jitter 100 ms / 3 s',
    create: (environment) => decorrelatedJitter({ environment, capMs: 3_000 }),
  },
];

interface VirtualEnvironment extends Environment {
  time: number;
}

function virtualEnvironment(seed: number): VirtualEnvironment {
  const random = seededRandom(seed);
  const environment: VirtualEnvironment = {
    time: 0,
    now: () => environment.time,
    random,
    setTimeout: () => {
      throw new Error('a strategy scheduled a timer: strategies compute waits, the client sleeps');
    },
    clearTimeout: () => {},
  };
  return environment;
}

/** Pending attempts by time: a binary min-heap over parallel arrays (one entry per client). */
class AttemptQueue {
  readonly #times: Float64Array;
  readonly #clients: Int32Array;
  size = 0;

  constructor(capacity: number) {
    this.#times = new Float64Array(capacity);
    this.#clients = new Int32Array(capacity);
  }

  push(time: number, client: number): void {
    let i = this.size++;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if ((this.#times[parent] as number) <= time) break;
      this.#times[i] = this.#times[parent] as number;
      this.#clients[i] = this.#clients[parent] as number;
      i = parent;
    }
    this.#times[i] = time;
    this.#clients[i] = client;
  }

  /** Removes the earliest attempt; returns its client, with its time in `lastTime`. */
  pop(): number {
    const client = this.#clients[0] as number;
    this.lastTime = this.#times[0] as number;
    const size = --this.size;
    const time = this.#times[size] as number;
    const moving = this.#clients[size] as number;
    let i = 0;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= size) break;
      if (child + 1 < size && (this.#times[child + 1] as number) < (this.#times[child] as number)) child++;
      if ((this.#times[child] as number) >= time) break;
      this.#times[i] = this.#times[child] as number;
      this.#clients[i] = this.#clients[child] as number;
      i = child;
    }
    this.#times[i] = time;
    this.#clients[i] = moving;
    return client;
  }

  lastTime = 0;
}

interface StormResult {
  /** Largest share of clients attempting within any 100 ms once the server is back, in %. */
  peakPercent: number;
  p50Ms: number;
  p99Ms: number;
  /** Mean attempts per client while the server was down (the first, immediate one included). */
  attemptsPerClient: number;
}

function storm(preset: Preset, outageMs: number, clientCount: number, seed: number): StormResult {
  const environment = virtualEnvironment(seed);
  const strategies = Array.from({ length: clientCount }, () => preset.create(environment));
  let attemptsWhileDown = 0;
  const back: number[] = [];
  const queue = new AttemptQueue(clientCount);

  // At time 0 every client loses its connection and asks how long to wait before its first attempt.
  // (One server, so no chooser: the shuffled rows below measure the chooser that spreads a fleet.)
  for (let client = 0; client < clientCount; client++) {
    queue.push((strategies[client] as ReconnectDelayStrategy).getConnectWaitDuration(server), client);
  }
  while (queue.size > 0) {
    const client = queue.pop();
    const now = queue.lastTime;
    const strategy = strategies[client] as ReconnectDelayStrategy;
    environment.time = now;
    if (now < outageMs) {
      // Refused at once: ask for the next wait.
      attemptsWhileDown++;
      queue.push(now + strategy.getConnectWaitDuration(server), client);
    } else {
      strategy.reset();
      back.push(now);
    }
  }

  back.sort((a, b) => a - b);
  let peak = 0;
  for (let first = 0, last = 0; last < back.length; last++) {
    while ((back[last] as number) - (back[first] as number) >= windowMs) first++;
    peak = Math.max(peak, last - first + 1);
  }
  const quantile = (q: number) =>
    (back[Math.min(back.length - 1, Math.ceil(q * back.length) - 1)] as number) - outageMs;
  return {
    peakPercent: (100 * peak) / clientCount,
    p50Ms: quantile(0.5),
    p99Ms: quantile(0.99),
    attemptsPerClient: attemptsWhileDown / clientCount,
  };
}

/** How evenly `shuffled` spreads clients over 3 servers, and the clients of a lost server over the other 2. */
function spread(clientCount: number, seed: number): BenchResult[] {
  const servers = ['tcp://s1:9007/amps/json', 'tcp://s2:9007/amps/json', 'tcp://s3:9007/amps/json'];
  const environment = virtualEnvironment(seed);
  const clients = Array.from({ length: clientCount }, () => shuffled(servers, { environment }));
  const count = (uris: string[]) => servers.map((s) => uris.filter((u) => u === s).length);
  const first = count(clients.map((c) => c.getCurrentURI() as string));
  const lost = servers[0] as string;
  const moved = count(
    clients
      .filter((c) => c.getCurrentURI() === lost)
      .map((c) => {
        c.reportFailure(new ConnectionError('down'), { uri: lost, attempt: 1, at: 0 });
        return c.getCurrentURI() as string;
      }),
  ).slice(1);
  const ratio = (counts: number[]) => Math.max(...counts) / Math.min(...counts);
  return [
    {
      name: `shuffled: ${clientCount.toLocaleString('en-US')} clients over 3 servers, max/min share`,
      value: ratio(first),
      unit: 'x',
      details: { clientsPerServer: first },
    },
    {
      name: "shuffled: a lost server's clients over the other 2, max/min share",
      value: ratio(moved),
      unit: 'x',
      details: { clientsPerServer: moved },
    },
  ];
}

const group: BenchGroup = {
  name: 'storm',
  description: 'reconnect storm on a virtual clock: clients lose their only server at once; it returns after an outage',
  async run(context) {
    const clientCount = context.quick ? 1_000 : 10_000;
    const results: BenchResult[] = [];
    for (const preset of presets) {
      for (const outageMs of outagesMs) {
        const r = storm(preset, outageMs, clientCount, 7);
        const label = `${preset.name}, ${outageMs / 1000} s outage`;
        const targeted = preset.isDefault && outageMs >= 5_000;
        context.progress(
          `${label}: peak ${r.peakPercent.toFixed(1)}%, p50 ${r.p50Ms} ms, p99 ${r.p99Ms} ms, ` +
            `${r.attemptsPerClient.toFixed(1)} attempts/client`,
        );
        results.push(
          {
            name: `${label}: peak share in ${windowMs} ms`,
            value: r.peakPercent,
            unit: '%',
            ...(targeted ? { target: { max: target.peakPercent } } : {}),
            details: { clients: clientCount },
          },
          { name: `${label}: p50 back after return`, value: r.p50Ms, unit: 'ms' },
          {
            name: `${label}: p99 back after return`,
            value: r.p99Ms,
            unit: 'ms',
            ...(targeted ? { target: { max: target.p99Ms } } : {}),
          },
          { name: `${label}: attempts per client while down`, value: r.attemptsPerClient, unit: 'attempts' },
        );
      }
    }
    results.push(...spread(clientCount, 11));
    return results;
  },
};

export default group;
