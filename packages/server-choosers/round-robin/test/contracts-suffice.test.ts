/**
 * The contracts in core-protocol are enough to write a chooser and a delay strategy in a few
 * lines: these two, written the way an application would, pass the same conformance suites as the
 * packaged ones.
 */
import {
  type Authenticator,
  type Environment,
  type ReconnectDelayStrategy,
  RetryExhaustedError,
  redactUri,
  type ServerChooser,
} from '@amps-ts/core-protocol';
import { describeDelayStrategyConformance } from '../../../delay-strategies/exponential/test/conformance/delay-strategy.js';
import { describeServerChooserConformance } from './conformance/server-chooser.js';

/** Sticks to the first server that works; on failure, picks another one at random. */
function stickyRandom(servers: ReadonlyArray<{ uri: string; authenticator?: Authenticator }>, env: Environment) {
  let current = 0;
  const errors = new Map<string, string>();
  const chooser: ServerChooser = {
    getCurrentURI: () => servers[current]?.uri,
    getCurrentAuthenticator: () => servers[current]?.authenticator,
    reportFailure(error, info) {
      errors.set(info.uri, error.message.replace(/[a-z]+:\/\/[^\s/@]*@/gi, redactUri));
      if (servers.length > 1)
        current = (current + 1 + Math.floor(env.random() * (servers.length - 1))) % servers.length;
    },
    reportSuccess: (info) => errors.delete(info.uri),
    getError: () => (servers.length === 0 ? 'no servers' : [...errors].map(([uri, e]) => `${uri}: ${e}`).join('; ')),
  };
  return chooser;
}

/** Waits 1 s between attempts, gives up after `budgetMs`. */
function oneSecond(env: Environment, budgetMs = 0): ReconnectDelayStrategy {
  let startedAt: number | undefined;
  let attempts = 0;
  return {
    getConnectWaitDuration() {
      startedAt ??= env.now();
      const elapsedMs = env.now() - startedAt;
      if (budgetMs > 0 && elapsedMs >= budgetMs) {
        throw new RetryExhaustedError(`gave up after ${elapsedMs} ms and ${attempts} attempts`, {
          elapsedMs,
          attempts,
        });
      }
      attempts++;
      return 1_000;
    },
    reset() {
      startedAt = undefined;
      attempts = 0;
    },
  };
}

describeServerChooserConformance({ name: 'a custom chooser', create: stickyRandom });
describeDelayStrategyConformance({
  name: 'a custom delay strategy',
  create: (env) => oneSecond(env),
  createWithRetryTime: (env, budgetMs) => oneSecond(env, budgetMs),
});
