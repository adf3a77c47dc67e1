/**
 * The dashboard: an `HAClient` on the browser's WebSocket, failing over between the brokers it is
 * given, with a bookmark subscription to a ticker topic. It shows live prices, the sequence
 * numbers received (a gap would show), and a timeline of connection states.
 *
 * Query string: `servers` (comma-separated `ws://` or `wss://` URIs, required), `topic` (default
 * `ticker`), `name` (the client name, unique per page; default `dashboard-<random>`).
 *
 * State is also kept in data attributes, for tests and tools: `#connection[data-state][data-broker]`,
 * `#sequence[data-received][data-ranges][data-duplicates][data-last-seq]`, one
 * `#timeline li[data-state][data-broker]` per state change (`data-failover-ms` on the recovery
 * after a failover), one `#prices tr[data-symbol][data-price][data-seq]` per symbol, and
 * `#pause[data-paused]` (set once the server has paused or resumed the subscription).
 *
 * The Pause button pauses the bookmark subscription (no ticks come); Resume replays what was
 * published meanwhile, then goes live: the sequence stays one unbroken run, failovers included.
 */
import { Bookmarks, type Message, redactUri } from '@amps-ts/core-protocol';
import { HAClient, type HAStateEvent } from '@amps-ts/ha-client';
import { browserTransport } from '@amps-ts/transport-browser';
import { SequenceTracker } from './sequence.js';

interface Tick {
  symbol: string;
  price: number;
  seq: number;
}

const params = new URLSearchParams(location.search);
const servers = (params.get('servers') ?? '')
  .split(',')
  .map((uri) => uri.trim())
  .filter((uri) => uri !== '');
const topic = params.get('topic') ?? 'ticker';
const name = params.get('name') ?? `dashboard-${Math.random().toString(36).slice(2, 10)}`;

const byId = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const connection = byId<HTMLParagraphElement>('connection');
const prices = byId<HTMLTableElement>('prices').tBodies[0] as HTMLTableSectionElement;
const sequence = byId<HTMLParagraphElement>('sequence');
const brokers = byId<HTMLUListElement>('brokers');
const timeline = byId<HTMLOListElement>('timeline');
const pauseButton = byId<HTMLButtonElement>('pause');

/** Brokers are shown as A, B, ... in the order given. State events carry redacted URIs. */
const shown = servers.map((uri) => redactUri(uri));
const label = (uri: string | undefined) => {
  const index = uri === undefined ? -1 : shown.indexOf(uri);
  return index < 0 ? '?' : String.fromCharCode(65 + index);
};

function element<K extends keyof HTMLElementTagNameMap>(tag: K, text: string, className?: string) {
  const el = document.createElement(tag);
  el.textContent = text;
  if (className) el.className = className;
  return el;
}

function showError(message: string): void {
  connection.dataset.state = 'error';
  connection.className = 'error';
  connection.textContent = message;
}

/* ---------------------------------------------------------------- connection */

for (const uri of shown) {
  const item = element('li', '');
  item.dataset.broker = uri;
  item.append(element('b', label(uri)), ` ${uri}`);
  brokers.append(item);
}

let lostAt: number | undefined;
let lostFrom: string | undefined;

function onState(event: HAStateEvent): void {
  const broker = event.uri ?? '';
  connection.dataset.state = event.state;
  connection.dataset.broker = broker;
  connection.className = event.state === 'Resubscribed' ? 'up' : event.state === 'Disconnected' ? 'down' : 'busy';
  connection.textContent = `${event.state} · broker ${label(event.uri)} ${broker}`;
  for (const item of brokers.children) {
    item.classList.toggle('current', (item as HTMLElement).dataset.broker === broker && event.state === 'Resubscribed');
  }

  const at = new Date(event.timestamp);
  const time = `${at.toLocaleTimeString('en-GB')}.${String(at.getMilliseconds()).padStart(3, '0')}`;
  const entry = element('li', '', event.state);
  entry.dataset.state = event.state;
  entry.dataset.broker = broker;
  entry.append(element('time', time), element('b', event.state), ` ${label(event.uri)}`);
  if (event.reason) entry.append(element('span', event.reason, 'reason'));
  // A failover: from the first Disconnected to the next Resubscribed.
  if (event.state === 'Disconnected' && lostAt === undefined) {
    lostAt = event.at;
    lostFrom = broker;
  }
  if (event.state === 'Resubscribed' && lostAt !== undefined) {
    const ms = Math.round(event.at - lostAt);
    entry.dataset.failoverMs = String(ms);
    entry.append(element('span', `failover ${label(lostFrom)} → ${label(event.uri)} in ${ms} ms`, 'failover'));
    lostAt = undefined;
  }
  timeline.append(entry);
  while (timeline.children.length > 200) timeline.firstElementChild?.remove();
}

/* -------------------------------------------------------------------- prices */

const seqs = new SequenceTracker();

interface Row {
  row: HTMLTableRowElement;
  price: HTMLTableCellElement;
  change: HTMLTableCellElement;
  seq: HTMLTableCellElement;
  last: number;
}
const rows = new Map<string, Row>();

function rowFor(tick: Tick): Row {
  let entry = rows.get(tick.symbol);
  if (!entry) {
    const row = document.createElement('tr');
    row.dataset.symbol = tick.symbol;
    entry = { row, price: element('td', ''), change: element('td', ''), seq: element('td', ''), last: tick.price };
    row.append(element('th', tick.symbol), entry.price, entry.change, entry.seq);
    rows.set(tick.symbol, entry);
    prices.replaceChildren(...[...rows.keys()].sort().map((symbol) => (rows.get(symbol) as Row).row));
  }
  return entry;
}

function onTick(message: Message): void {
  const tick = message.json<Tick>();
  seqs.add(tick.seq);
  const row = rowFor(tick);
  const delta = tick.price - row.last;
  row.last = tick.price;
  row.row.dataset.price = String(tick.price);
  row.row.dataset.seq = String(tick.seq);
  row.price.textContent = tick.price.toFixed(2);
  row.change.textContent = `${delta > 0 ? '▲' : delta < 0 ? '▼' : '•'} ${Math.abs(delta).toFixed(2)}`;
  row.change.className = delta > 0 ? 'up' : delta < 0 ? 'down' : '';
  row.seq.textContent = `#${tick.seq}`;

  sequence.dataset.received = String(seqs.received);
  sequence.dataset.ranges = seqs.toString();
  sequence.dataset.duplicates = String(seqs.duplicates);
  sequence.dataset.lastSeq = String(seqs.last);
  const gaps = seqs.ranges.length - 1;
  sequence.className = gaps > 0 || seqs.duplicates > 0 ? 'bad' : 'good';
  sequence.textContent =
    `${seqs.received} ticks · seq ${seqs.toString().replaceAll('-', '–')} · ` +
    `${gaps === 0 ? 'no gaps' : `${gaps} gap${gaps > 1 ? 's' : ''}`} · ${seqs.duplicates} duplicates`;
}

/* ---------------------------------------------------------------------- main */

if (servers.length === 0) {
  showError('no brokers: open this page with ?servers=ws://host:port/amps/json,ws://host:port/amps/json');
} else {
  const client = new HAClient(name, { transport: browserTransport(), servers });
  client.onStateChange(onState);
  // A bookmark subscription: after a failover it resumes from the last tick seen, on the other broker.
  const subId = 'ticks';
  const subscription = client.subscribe(topic, {
    subId,
    bookmark: Bookmarks.NOW,
    onMessage: (message) => {
      try {
        onTick(message);
      } catch (error) {
        console.warn('not a tick', message.text(), error);
      }
    },
  });
  subscription.closed.then((error) => error && showError(`subscription ended: ${error.message}`));
  subscription.ready.then(
    () => {
      pauseButton.disabled = false;
    },
    () => {},
  );
  // Paused, the client keeps the subscription paused through failovers until it is resumed.
  pauseButton.addEventListener('click', async () => {
    const pausing = pauseButton.dataset.paused !== 'true';
    pauseButton.disabled = true;
    try {
      await (pausing ? client.pause(subId) : client.resume(subId));
      pauseButton.dataset.paused = String(pausing);
      pauseButton.textContent = pausing ? 'Resume' : 'Pause';
      byId('prices').classList.toggle('paused', pausing);
    } catch (error) {
      showError(`${pausing ? 'pause' : 'resume'} failed: ${(error as Error).message}`);
    } finally {
      pauseButton.disabled = false;
    }
  });
  client.connectAndLogon().catch((error: Error) => showError(`cannot connect: ${error.message}`));
  // Only when the page is going for good: one kept in the back/forward cache (persisted) comes
  // back later, and HAClient reconnects it then (it closes its connection on pagehide meanwhile).
  addEventListener('pagehide', (event) => event.persisted || void client.disconnect());
}
