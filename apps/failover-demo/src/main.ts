/**
 * `pnpm demo`: three replicated test brokers, a publisher and a bookmark subscriber on HAClient,
 * and a seeded chaos schedule. Shows what happens as it happens, then a verdict; exits non-zero
 * when anything was lost, duplicated or reordered.
 */
import { type DemoOptions, parseDemoArgs, UsageError, usage } from './args.js';
import { runChaos } from './chaos.js';
import { fmt, liveView } from './view.js';

function parseOrExit(): DemoOptions {
  try {
    const args = parseDemoArgs(process.argv.slice(2));
    if (!args.help) return args.options;
    console.log(usage);
    process.exit(0);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`failover demo: ${error.message} (see --help)`);
    process.exit(2);
  }
}

const { json, ...options } = parseOrExit();

// A reader that goes away (`pnpm demo | head`) ends the output, not the run: the exit code still tells.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
  });
}

// With --json, stdout carries only the summary.
const out = json ? process.stderr : process.stdout;
const color = out.isTTY && !process.env.NO_COLOR;
const line = (text: string) => out.write(`${text}\n`);
const view = liveView(color);

line(
  `amps-ts failover demo: ${options.servers} replicated brokers, ${fmt(options.rate)} msgs/s${options.topics > 1 ? ` over ${fmt(options.topics)} topics` : ''}${options.publishers > 1 ? ` from ${options.publishers} publishers` : ''}${options.pausing ? ', the subscriber pausing' : ''}${options.slowConsumer ? ', a slow consumer' : ''}, ${options.durationMs / 1000} s of chaos, seed ${options.seed}`,
);
const report = await runChaos({ ...options, onEvent: (event) => line(view.event(event)) });
line(view.verdict(report));
if (json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
process.exitCode = report.ok ? 0 : 1;
