/**
 * A custom `ReconnectDelayStrategy`: waits taken from a schedule, and a limit on attempts after
 * which it gives up with a `RetryExhaustedError`. The client then fails `connectAndLogon()` and
 * every command waiting for a connection with that error.
 *
 *   pnpm --filter @amps-ts/examples start custom-delay-strategy
 */
import assert from 'node:assert/strict';
import { type ReconnectDelayStrategy, RetryExhaustedError } from '@amps-ts/core-protocol';
import { HAClient, type HAStateEvent } from '@amps-ts/ha-client';
import { startTestServer } from '@amps-ts/test-server';
import { nodeTransport } from '@amps-ts/transport-node';

class ScheduledDelay implements ReconnectDelayStrategy {
  #attempts = 0;
  #since: number | undefined;

  /** `schedule[i]` ms before attempt i + 1 (the last one repeats); give up after `maxAttempts`. */
  constructor(
    readonly schedule: readonly number[],
    readonly maxAttempts: number,
  ) {}

  getConnectWaitDuration(_uri: string): number {
    this.#since ??= performance.now(); // monotonic: the wall clock can step back
    if (this.#attempts >= this.maxAttempts) {
      const elapsedMs = Math.round(performance.now() - this.#since);
      throw new RetryExhaustedError(`gave up after ${this.#attempts} attempts in ${elapsedMs} ms`, {
        elapsedMs,
        attempts: this.#attempts,
      });
    }
    const wait = this.schedule[Math.min(this.#attempts, this.schedule.length - 1)] ?? 0;
    this.#attempts++;
    return wait;
  }

  reset(): void {
    // HAClient calls this when a connection that held (100 ms) drops, and after giving up: the
    // next outage starts from the top of the schedule. A connection dropped at once does not reset it.
    this.#attempts = 0;
    this.#since = undefined;
  }
}

/** Resolves with the client's first state event that matches. */
function nextState(client: HAClient, matches: (e: HAStateEvent) => boolean): Promise<HAStateEvent> {
  return new Promise((resolve) => {
    const stop = client.onStateChange((e) => {
      if (matches(e)) {
        stop();
        resolve(e);
      }
    });
  });
}

const server = await startTestServer();
const client = new HAClient('example-delay', {
  transport: nodeTransport(),
  servers: [server.tcpUri()],
  delay: new ScheduledDelay([0, 100, 200, 400], 6),
});
client.onStateChange((e) => console.log(`${e.state.padEnd(18)} attempt ${e.attempt} ${e.reason ?? ''}`));

try {
  await client.connectAndLogon();

  // An outage the schedule rides out: the broker crashes, and is back after the second failed attempt.
  const recovered = nextState(client, (e) => e.state === 'Resubscribed');
  await server.kill();
  await nextState(client, (e) => e.state === 'Disconnected' && e.attempt === 2);
  await server.restart();
  await recovered;

  // An outage it does not ride out: the broker is gone for good, and commands fail once it gives up.
  const lost = nextState(client, (e) => e.state === 'Disconnected');
  await server.close();
  await lost;
  const error = await client.flush().catch((e: unknown) => e);
  assert.ok(RetryExhaustedError.isInstance(error), `expected a RetryExhaustedError, got ${error}`);
  assert.equal(error.attempts, 6);
  console.log(`flush failed: ${error.message}`);
} finally {
  await client.disconnect();
  await server.close();
}
