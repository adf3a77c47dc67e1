/**
 * `pnpm demo`: three replicated test brokers, a publisher and a bookmark subscriber on HAClient,
 * and a seeded chaos schedule. Shows what happens as it happens, then a verdict; exits non-zero
 * when anything was lost, duplicated or reordered.
 */
import { type DemoOptions, parseDemoArgs, UsageError, usage } from './args.js';
import { type ChaosEvent, type ChaosReport, runChaos } from './chaos.js';

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

// With --json, stdout carries only the summary.
const out = json ? process.stderr : process.stdout;
const color = out.isTTY && !process.env.NO_COLOR;
const paint = (code: number, text: string) => (color ? `\x1b[${code}m${text}\x1b[0m` : text);
const dim = (t: string) => paint(2, t);
const red = (t: string) => paint(31, t);
const green = (t: string) => paint(32, t);
const yellow = (t: string) => paint(33, t);
const cyan = (t: string) => paint(36, t);
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
const time = (ms: number) => dim(`${(ms / 1000).toFixed(2).padStart(6)}s`);
const line = (text: string) => out.write(`${text}\n`);

let lastProgress = { at: 0, published: 0, received: 0 };

function show(event: ChaosEvent): void {
  switch (event.type) {
    case 'started':
      line(`${time(event.at)}  brokers   ${event.servers.map((s) => `${s.name}=${s.uri}`).join('  ')}`);
      break;
    case 'chaos': {
      const verb = {
        kill: red('kill   '),
        freeze: yellow('freeze '),
        restart: green('restart'),
        thaw: green('thaw   '),
      }[event.action];
      const hits = event.hits.length > 0 ? dim(` (${event.hits.join(' and ')} on it)`) : '';
      line(`${time(event.at)}  chaos     ${verb} ${event.server}${hits}`);
      break;
    }
    case 'state': {
      const state =
        event.state === 'Disconnected'
          ? red(event.state)
          : event.state === 'Resubscribed'
            ? green(event.state)
            : event.state;
      const reason = event.reason ? dim(`  ${event.reason}`) : '';
      line(
        `${time(event.at)}  ${event.client.padEnd(11)}${state.padEnd(color ? 27 : 18)} ${event.server ?? ''}${reason}`,
      );
      break;
    }
    case 'failover':
      line(
        `${time(event.at)}  ${event.client.padEnd(11)}${cyan('failover')} ${event.from ?? '?'} -> ${event.to ?? '?'} in ${cyan(`${Math.round(event.durationMs)} ms`)}`,
      );
      break;
    case 'progress': {
      const seconds = Math.max(0.001, (event.at - lastProgress.at) / 1000);
      const sendRate = (event.published - lastProgress.published) / seconds;
      const recvRate = (event.received - lastProgress.received) / seconds;
      lastProgress = { at: event.at, published: event.published, received: event.received };
      const brokers = Object.entries(event.servers)
        .map(([name, s]) => `${name}:${s === 'up' ? green('up') : s === 'down' ? red('down') : yellow('frozen')}`)
        .join(' ');
      line(
        `${time(event.at)}  ${dim('progress')}  sent ${fmt(event.published)} (${fmt(sendRate)}/s)  received ${fmt(event.received)} (${fmt(recvRate)}/s)  publisher@${event.on.publisher ?? '-'} subscriber@${event.on.subscriber ?? '-'}  ${brokers}`,
      );
      break;
    }
    case 'draining':
      line(`${time(event.at)}  chaos over: healing every broker, waiting for the last messages`);
      break;
  }
}

function verdict(report: ChaosReport): void {
  const rows: Array<[string, string, boolean?]> = [
    ['published', fmt(report.published)],
    ['received', fmt(report.received)],
    ['lost', fmt(report.lost), report.lost === 0],
    ['duplicated', fmt(report.duplicated), report.duplicated === 0],
    ['out of order', fmt(report.outOfOrder), report.outOfOrder === 0],
    ['failovers', fmt(report.failovers)],
    ['failover p50', `${fmt(report.failoverP50Ms)} ms`],
    ['failover max', `${fmt(report.failoverMaxMs)} ms`],
    [
      'chaos actions',
      `${report.actions.kill} kills, ${report.actions.freeze} freezes, ${report.actions.restart} restarts, ${report.actions.thaw} thaws`,
    ],
  ];
  line('');
  for (const [name, value, good] of rows) {
    const mark = good === undefined ? '' : good ? green('  ok') : red('  FAIL');
    line(`  ${name.padEnd(14)} ${value}${mark}`);
  }
  line('');
  line(
    report.ok
      ? green('  PASS: every message arrived exactly once, in order')
      : red('  FAIL: messages were lost, duplicated or reordered'),
  );
}

line(
  `amps-ts failover demo: ${options.servers} replicated brokers, ${fmt(options.rate)} msgs/s, ${options.durationMs / 1000} s of chaos, seed ${options.seed}`,
);
const report = await runChaos({ ...options, onEvent: show });
verdict(report);
if (json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
process.exitCode = report.ok ? 0 : 1;
