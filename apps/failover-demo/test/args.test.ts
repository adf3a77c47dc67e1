import { describe, expect, it } from 'vitest';
import { parseDemoArgs, UsageError } from '../src/args.js';

const options = (argv: string[]) => {
  const args = parseDemoArgs(argv);
  if (args.help) throw new Error('expected options, got help');
  return args.options;
};

describe('demo arguments', () => {
  it('has defaults, and takes the `--` pnpm passes on', () => {
    expect(options([])).toEqual({
      json: false,
      durationMs: 20_000,
      rate: 2500,
      seed: 1,
      servers: 3,
      topics: 1,
      publishers: 1,
      pausing: false,
      slowConsumer: false,
    });
    expect(options(['--slow-consumer'])).toMatchObject({ slowConsumer: true });
    expect(options(['--publishers', '3'])).toMatchObject({ publishers: 3 });
    expect(options(['--pausing'])).toMatchObject({ pausing: true });
    expect(options(['--topics', '500'])).toMatchObject({ topics: 500 });
    expect(options(['--', '--duration', '10', '--json'])).toMatchObject({ durationMs: 10_000, json: true });
    expect(parseDemoArgs(['-h'])).toEqual({ help: true });
  });

  it.each([
    [['--duration', 'abc'], "--duration must be a number from 1 to 3600, got 'abc'"],
    [['--duration', ''], "--duration must be a number from 1 to 3600, got ''"],
    [['--duration=-5'], "--duration must be a number from 1 to 3600, got '-5'"],
    [['--duration', '0'], "--duration must be a number from 1 to 3600, got '0'"],
    [['--duration', '1e12'], "--duration must be a number from 1 to 3600, got '1e12'"],
    [['--duration', 'Infinity'], "--duration must be a number from 1 to 3600, got 'Infinity'"],
    [['--rate', '0x10'], "--rate must be a number from 1 to 100000, got '0x10'"],
    [['--rate', '1e9'], "--rate must be a number from 1 to 100000, got '1e9'"],
    [['--seed', '1.5'], "--seed must be an integer from 0 to 4294967295, got '1.5'"],
    [['--servers', '1'], "--servers must be an integer from 2 to 10, got '1'"],
    [['--servers', '100'], "--servers must be an integer from 2 to 10, got '100'"],
    [['--servers', '2.5'], "--servers must be an integer from 2 to 10, got '2.5'"],
    [['--publishers', '0'], "--publishers must be an integer from 1 to 10, got '0'"],
    [['--publishers', '11'], "--publishers must be an integer from 1 to 10, got '11'"],
    [['--topics', '0'], "--topics must be an integer from 1 to 10000, got '0'"],
    [['--topics', '20000'], "--topics must be an integer from 1 to 10000, got '20000'"],
    [['--bogus'], "Unknown option '--bogus'"],
    [['extra'], "Unexpected argument 'extra'"],
    [['--duration'], "Option '--duration <value>' argument missing"],
    [['--seed', '-1'], "Option '--seed' argument is ambiguous"],
    [['--seed', '7', '--duration', '10', '--seed', '8'], '--seed is given twice; give each option once'],
    [['--rate=100', '--rate', '200'], '--rate is given twice; give each option once'],
    [['--json', '--json'], '--json is given twice; give each option once'],
  ])('refuses %j in one line', (argv, message) => {
    const refuse = () => parseDemoArgs(argv);
    expect(refuse).toThrow(UsageError);
    expect(refuse).toThrow(message);
    try {
      refuse();
    } catch (error) {
      expect((error as Error).message).not.toContain('\n');
    }
  });

  // The brokers keep every message in memory: a run that would fill the heap died of it half an hour in.
  it('refuses a run whose messages would not fit in the heap, naming the longest that does', () => {
    const heap = 4096 * 2 ** 20; // 4 GiB
    expect(() => parseDemoArgs(['--duration', '3600'], heap)).toThrow(
      '--duration 3600 at --rate 2500 on 3 brokers needs more memory than this process has',
    );
    expect(() => parseDemoArgs(['--duration', '3600'], heap)).toThrow('at most --duration 715 here');
    expect(parseDemoArgs(['--duration', '715'], heap)).toMatchObject({ help: false });
    expect(parseDemoArgs(['--duration', '3600', '--rate', '400'], heap)).toMatchObject({ help: false });
    expect(() => parseDemoArgs(['--servers', '10', '--rate', '100000'], heap)).toThrow(UsageError);
  });
});
