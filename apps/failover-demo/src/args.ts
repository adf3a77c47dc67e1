/** The demo's command line: flags, their limits, and the usage text. */
import { parseArgs } from 'node:util';
import { getHeapStatistics } from 'node:v8';

export const usage = `usage: pnpm demo [--duration <s>] [--rate <msgs/s>] [--seed <n>] [--servers <n>] [--topics <n>] [--publishers <n>] [--pausing] [--slow-consumer] [--json]

  --duration    seconds of chaos, 1 to 3600, as far as memory allows (default 20)
  --rate        messages published per second, 1 to 100000 (default 2500)
  --seed        seeds the chaos schedule, an integer 0 to 4294967295 (default 1)
  --servers     replicated brokers, 2 to 10 (default 3)
  --topics      topics the messages are spread over, one bookmark subscription each, 1 to 10000 (default 1)
  --publishers  publishers taking turns, each starting on another broker, 1 to 10 (default 1)
  --pausing     the subscriber pauses and resumes its subscriptions on a seeded schedule too
  --slow-consumer  the subscriber's handler takes 1 ms a message, so it falls behind
  --json        print a machine-readable summary on stdout (the live view goes to stderr)`;

export type DemoArgs = { help: true } | { help: false; options: DemoOptions };

export interface DemoOptions {
  json: boolean;
  durationMs: number;
  rate: number;
  seed: number;
  servers: number;
  topics: number;
  publishers: number;
  pausing: boolean;
  slowConsumer: boolean;
}

/** A command line the demo cannot run: the message is one line, for the operator. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/**
 * The limits keep a typo from starting something that never ends: every broker replicates to
 * every other one synchronously, so 26 brokers already take half a minute to drain.
 */
const limits = {
  duration: { min: 1, max: 3600, integer: false },
  rate: { min: 1, max: 100_000, integer: false },
  seed: { min: 0, max: 2 ** 32 - 1, integer: true },
  servers: { min: 2, max: 10, integer: true },
  topics: { min: 1, max: 10_000, integer: true },
  publishers: { min: 1, max: 10, integer: true },
} as const;

/**
 * Every broker keeps every message in memory (its transaction log, which the subscriber's replays
 * read from), about 350 bytes each (measured): at the defaults, a 3600 s run ran out of a 4 GB heap
 * after 28 minutes. A run whose logs would take more than half the heap is refused.
 */
const LOGGED_BYTES_PER_MESSAGE = 400;

function number(name: keyof typeof limits, text: string): number {
  const { min, max, integer } = limits[name];
  // Number('') is 0 and Number('0x10') is 16: only plain decimals are accepted.
  const n = /^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i.test(text) ? Number(text) : Number.NaN;
  if (Number.isNaN(n) || n < min || n > max || (integer && !Number.isInteger(n))) {
    throw new UsageError(
      `--${name} must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max}, got '${text}'`,
    );
  }
  return n;
}

/**
 * Parses the demo's arguments (without node and the script); throws a `UsageError`. `heapBytes`
 * is the heap the run will have: this process's.
 */
export function parseDemoArgs(argv: readonly string[], heapBytes = getHeapStatistics().heap_size_limit): DemoArgs {
  // `pnpm demo -- --duration 10` passes the `--` on to the script.
  const args = argv[0] === '--' ? argv.slice(1) : [...argv];
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(args);
  } catch (error) {
    // parseArgs's messages are right but span lines, and its errors print a stack trace.
    throw new UsageError((error as Error).message.replace(/\s*\n\s*/g, ' '));
  }
  // parseArgs keeps the last of a repeated flag: `--seed 7 ... --seed 8` would run a schedule
  // other than the one the operator read first.
  const given = new Set<string>();
  for (const token of parsed.tokens) {
    if (token.kind !== 'option') continue;
    if (given.has(token.name)) throw new UsageError(`--${token.name} is given twice; give each option once`);
    given.add(token.name);
  }
  const { values } = parsed;
  if (values.help) return { help: true };
  const options: DemoOptions = {
    json: values.json,
    durationMs: number('duration', values.duration) * 1000,
    rate: number('rate', values.rate),
    seed: number('seed', values.seed),
    servers: number('servers', values.servers),
    topics: number('topics', values.topics),
    publishers: number('publishers', values.publishers),
    pausing: values.pausing,
    slowConsumer: values['slow-consumer'],
  };
  const { durationMs, rate, servers } = options;
  const maxSeconds = Math.floor(heapBytes / 2 / LOGGED_BYTES_PER_MESSAGE / servers / rate);
  if (durationMs / 1000 > maxSeconds) {
    throw new UsageError(
      `--duration ${durationMs / 1000} at --rate ${rate} on ${servers} brokers needs more memory than this process has (the brokers keep every message, about ${LOGGED_BYTES_PER_MESSAGE} bytes a broker): at most --duration ${maxSeconds} here, or a larger heap (NODE_OPTIONS=--max-old-space-size=<MB>)`,
    );
  }
  return { help: false, options };
}

function parse(args: string[]) {
  return parseArgs({
    args,
    tokens: true,
    options: {
      duration: { type: 'string', default: '20' },
      rate: { type: 'string', default: '2500' },
      seed: { type: 'string', default: '1' },
      servers: { type: 'string', default: '3' },
      topics: { type: 'string', default: '1' },
      publishers: { type: 'string', default: '1' },
      pausing: { type: 'boolean', default: false },
      'slow-consumer': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
}
