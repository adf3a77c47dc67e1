/** The demo's live view and verdict, as lines of text: plain, or with ANSI colours for a terminal. */
import type { ChaosEvent, ChaosReport } from './chaos.js';

export const fmt = (n: number) => Math.round(n).toLocaleString('en-US');

export interface LiveView {
  /** The line for one event. */
  event(event: ChaosEvent): string;
  /** The verdict table and the PASS or FAIL line. */
  verdict(report: ChaosReport): string;
}

export function liveView(color: boolean): LiveView {
  const paint = (code: number, text: string) => (color ? `\x1b[${code}m${text}\x1b[0m` : text);
  const dim = (t: string) => paint(2, t);
  const red = (t: string) => paint(31, t);
  const green = (t: string) => paint(32, t);
  const yellow = (t: string) => paint(33, t);
  const cyan = (t: string) => paint(36, t);
  const time = (ms: number) => dim(`${(ms / 1000).toFixed(2).padStart(6)}s`);

  let lastProgress = { at: 0, published: 0, received: 0 };

  function event(event: ChaosEvent): string {
    switch (event.type) {
      case 'started':
        return `${time(event.at)}  brokers   ${event.servers.map((s) => `${s.name}=${s.uri}`).join('  ')}`;
      case 'chaos': {
        const verb = {
          kill: red('kill   '),
          freeze: yellow('freeze '),
          restart: green('restart'),
          thaw: green('thaw   '),
        }[event.action];
        const hits = event.hits.length > 0 ? dim(` (${event.hits.join(' and ')} on it)`) : '';
        return `${time(event.at)}  chaos     ${verb} ${event.server}${hits}`;
      }
      case 'state': {
        // Padded before it is painted: colour codes take no room on screen.
        const padded = event.state.padEnd(18);
        const state =
          event.state === 'Disconnected' ? red(padded) : event.state === 'Resubscribed' ? green(padded) : padded;
        const reason = event.reason ? dim(`  ${event.reason}`) : '';
        return `${time(event.at)}  ${event.client.padEnd(13)}${state} ${event.server ?? ''}${reason}`;
      }
      case 'failover':
        return `${time(event.at)}  ${event.client.padEnd(13)}${cyan('failover')} ${event.from ?? '?'} -> ${event.to ?? '?'} in ${cyan(`${Math.round(event.durationMs)} ms`)}`;
      case 'progress': {
        const seconds = Math.max(0.001, (event.at - lastProgress.at) / 1000);
        const sendRate = (event.published - lastProgress.published) / seconds;
        const recvRate = (event.received - lastProgress.received) / seconds;
        lastProgress = { at: event.at, published: event.published, received: event.received };
        const brokers = Object.entries(event.servers)
          .map(([name, s]) => `${name}:${s === 'up' ? green('up') : s === 'down' ? red('down') : yellow('frozen')}`)
          .join(' ');
        const where = Object.entries(event.on)
          .map(([client, server]) => `${client}@${server ?? '-'}`)
          .join(' ');
        return `${time(event.at)}  ${dim('progress')}  sent ${fmt(event.published)} (${fmt(sendRate)}/s)  received ${fmt(event.received)} (${fmt(recvRate)}/s)  ${where}  ${brokers}`;
      }
      case 'draining':
        return `${time(event.at)}  chaos over: healing every broker, waiting for the last messages`;
    }
  }

  function verdict(report: ChaosReport): string {
    const rows: Array<[string, string, boolean?]> = [
      ['published', fmt(report.published)],
      ['received', fmt(report.received)],
      ['lost', fmt(report.lost), report.lost === 0],
      ['duplicated', fmt(report.duplicated), report.duplicated === 0],
      ['out of order', fmt(report.outOfOrder), report.outOfOrder === 0],
      ['wrong topic', fmt(report.misrouted), report.misrouted === 0],
      ['failovers', fmt(report.failovers)],
      ['failover p50', `${fmt(report.failoverP50Ms)} ms`],
      ['failover max', `${fmt(report.failoverMaxMs)} ms`],
      [
        'chaos actions',
        `${report.actions.kill} kills, ${report.actions.freeze} freezes, ${report.actions.restart} restarts, ${report.actions.thaw} thaws`,
      ],
    ];
    if (report.maxBehind > 0) rows.push(['behind (max)', `${fmt(report.maxBehind)} messages`]);
    const { pause, resume, failed, deliveredWhilePaused } = report.pauses;
    if (pause + resume + failed > 0) {
      rows.push(
        ['pauses', `${pause} pauses, ${resume} resumes${failed > 0 ? `, ${failed} timed out or refused` : ''}`],
        ['while paused', `${fmt(deliveredWhilePaused)} delivered`, deliveredWhilePaused === 0],
      );
    }
    const table = rows.map(([name, value, good]) => {
      const mark = good === undefined ? '' : good ? green('  ok') : red('  FAIL');
      return `  ${name.padEnd(14)} ${value}${mark}`;
    });
    const outcome = report.ok
      ? green('  PASS: every message arrived exactly once, in order')
      : report.published === 0
        ? red('  FAIL: nothing was published, so nothing was checked')
        : red(
            '  FAIL: messages were lost, duplicated, reordered or delivered to the wrong topic, or delivered while paused',
          );
    return ['', ...table, '', outcome].join('\n');
  }

  return { event, verdict };
}
