/**
 * The ticker publisher behind the dashboard: an `HAClient` over TCP publishing `{ symbol, price,
 * seq }` at a steady rate, `seq` counting every tick across symbols, so a subscriber can tell
 * whether it missed one.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { HAClient } from '@amps-ts/ha-client';
import { nodeTransport } from '@amps-ts/transport-node';

export interface TickerOptions {
  /** Broker URIs (`tcp://...`), for the publisher's round-robin failover. */
  servers: string[];
  /** @default 'ticker' */
  topic?: string;
  /** Ticks per second, across every symbol. @default 50 */
  rate?: number;
  /** @default ['ACME', 'GLOBEX', 'INITECH', 'UMBRELLA', 'WAYNE'] */
  symbols?: string[];
  /** The publisher's client name. @default 'dashboard-ticker' */
  name?: string;
}

export interface Ticker {
  readonly client: HAClient;
  /** The last `seq` published. */
  readonly published: number;
  /**
   * Stops publishing and disconnects, without waiting for the last ticks to be persisted (with a
   * sync replica down, the brokers persist nothing until it is back).
   */
  stop(): Promise<void>;
}

export async function startTicker(options: TickerOptions): Promise<Ticker> {
  const {
    servers,
    topic = 'ticker',
    rate = 50,
    symbols = ['ACME', 'GLOBEX', 'INITECH', 'UMBRELLA', 'WAYNE'],
    name = 'dashboard-ticker',
  } = options;
  const client = new HAClient(name, { transport: nodeTransport(), servers, heartbeat: { intervalS: 1 } });
  await client.connectAndLogon();

  const prices = new Map(symbols.map((symbol, i) => [symbol, 100 + 25 * i]));
  const stopping = new AbortController();
  let seq = 0;
  const publishing = (async () => {
    const started = performance.now();
    while (!stopping.signal.aborted) {
      // Catch up with the clock, so the rate holds whatever the timer's precision.
      const due = Math.floor(((performance.now() - started) / 1000) * rate);
      while (seq < due) {
        seq++;
        const symbol = symbols[seq % symbols.length] as string;
        const price = Math.max(1, (prices.get(symbol) ?? 100) * (1 + (Math.random() - 0.5) / 100));
        prices.set(symbol, price);
        // While the publisher fails over, ticks wait in its publish store; a promise means it is full.
        await client.publish(topic, JSON.stringify({ symbol, price: Math.round(price * 100) / 100, seq }));
      }
      await sleep(1000 / rate, undefined, { signal: stopping.signal }).catch(() => {});
    }
  })();

  return {
    client,
    get published() {
      return seq;
    },
    async stop() {
      stopping.abort();
      await publishing;
      await client.disconnect();
    },
  };
}
