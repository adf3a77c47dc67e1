/** Command-line flags of `amps-test-server`, parsed into server options. */
import { parseArgs } from 'node:util';
import { InvalidOptionsError } from '@amps-ts/core-protocol';
import {
  type PeerOptions,
  type QueueOptions,
  resolvePeer,
  resolveQueue,
  resolveSowTopic,
  type SowTopicOptions,
  type TestServerOptions,
} from './options.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';

export interface CliOptions {
  server: TestServerOptions;
  /** Start this many replicated instances instead of one. */
  cluster: number | undefined;
  replication: 'sync' | 'async';
  logLevel: LogLevel;
  help: boolean;
}

export const usage = `Usage: amps-test-server [options]

An AMPS-protocol test broker. Prints its URIs, runs until interrupted.

  --name <name>                 instance name
  --host <address>              listen address (default 127.0.0.1)
  --tcp-port <port>             TCP port, 0 = any (default 0)
  --ws-port <port|off>          WebSocket port, 0 = any, off = none (default 0)
  --data-dir <dir>              keep the transaction log in <dir> (default: memory)
  --sow <topic[:/key,/key2]>    a SOW topic and its key fields (repeatable)
  --queue <topic[:leaseMs[:maxBacklog]]>  a queue topic (repeatable)
  --user <name:password>        accept this user (repeatable; enables auth)
  --challenge                   challenge auth: answer "retry" with a token first
  --peer <[sync|async:]host:port>  replicate to a peer (repeatable; default sync)
  --cluster <n>                 start n instances replicating to each other
  --replication <sync|async>    replication mode for --cluster (default sync)
  --ack-conflation <ms>         conflate persisted acks (default 1000, as AMPS; 0: one per publish)
  --persisted-ack-interval <ms> bookmark-subscription persisted acks (default 1000)
  --heartbeat-min <s>           smallest heartbeat interval accepted (default 0.01)
  --heartbeat-max <s>           largest heartbeat interval accepted (default 3600)
  --max-frame-bytes <n>         largest frame accepted (default 16 MiB)
  --sync-downgrade <ms>         downgrade a sync peer down for this long (default 0: never)
  --close-timeout <ms>          destroy a refused connection the client keeps open after this (default 2000)
  --ws-frames <one|batch>       frames per WebSocket message sent (default one)
  --log-level <level>           debug, info, warn, error or silent (default info)
  -h, --help                    this text
`;

function number(flag: string, text: string | undefined, min = 0): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value) || value < min) {
    throw new InvalidOptionsError(`--${flag} needs a number >= ${min}, got '${text}'`);
  }
  return value;
}

function integer(flag: string, text: string, min: number): number {
  const value = number(flag, text, min) as number;
  if (!Number.isSafeInteger(value)) throw new InvalidOptionsError(`--${flag} needs a whole number, got '${text}'`);
  return value;
}

function port(flag: string, text: string): number {
  const value = integer(flag, text, 0);
  if (value > 65535) throw new InvalidOptionsError(`--${flag} needs a port 0..65535, got '${text}'`);
  return value;
}

// Each parsed value is checked as the server will check it, so that a bad value is a usage error
// (exit 2) here, not an error from a server that has started to come up.
function sow(text: string): SowTopicOptions {
  const colon = text.indexOf(':');
  const options = colon < 0 ? { topic: text } : { topic: text.slice(0, colon), key: text.slice(colon + 1).split(',') };
  resolveSowTopic(options);
  return options;
}

function queue(text: string): QueueOptions {
  const [topic, lease, backlog] = text.split(':');
  const options = {
    topic: topic ?? '',
    ...(lease ? { leaseMs: number('queue', lease, 1) } : {}),
    ...(backlog ? { maxBacklog: number('queue', backlog, 1) } : {}),
  };
  resolveQueue(options);
  return options;
}

function peer(text: string): PeerOptions {
  const match = /^(?:(sync|async):)?(?:(.+):)?(\d+)$/.exec(text);
  if (!match) throw new InvalidOptionsError(`--peer needs [sync|async:]host:port, got '${text}'`);
  const options: PeerOptions = {
    mode: (match[1] as 'sync' | 'async' | undefined) ?? 'sync',
    ...(match[2] ? { host: match[2] } : {}),
    port: Number(match[3]),
  };
  resolvePeer(options);
  return options;
}

const FLAGS = {
  name: { type: 'string' },
  host: { type: 'string' },
  'tcp-port': { type: 'string' },
  'ws-port': { type: 'string' },
  'data-dir': { type: 'string' },
  sow: { type: 'string', multiple: true },
  queue: { type: 'string', multiple: true },
  user: { type: 'string', multiple: true },
  challenge: { type: 'boolean' },
  peer: { type: 'string', multiple: true },
  cluster: { type: 'string' },
  replication: { type: 'string' },
  'ack-conflation': { type: 'string' },
  'persisted-ack-interval': { type: 'string' },
  'heartbeat-min': { type: 'string' },
  'heartbeat-max': { type: 'string' },
  'max-frame-bytes': { type: 'string' },
  'sync-downgrade': { type: 'string' },
  'close-timeout': { type: 'string' },
  'ws-frames': { type: 'string' },
  'log-level': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/**
 * The flags, parsed. A stray argument is refused without being repeated: it may be a password
 * (`--user alice s3cret`, for `--user alice:s3cret`), and the error is printed.
 */
function parseFlags(argv: readonly string[]) {
  try {
    return parseArgs({ args: [...argv], strict: true, allowPositionals: false, options: FLAGS });
  } catch (error) {
    if ((error as { code?: string }).code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
      throw new InvalidOptionsError(
        'an argument without a flag is not taken (each flag takes one value: --user name:password)',
      );
    }
    throw error;
  }
}

export function parseCliOptions(argv: readonly string[]): CliOptions {
  const { values } = parseFlags(argv);
  const users: Record<string, string> = {};
  for (const entry of values.user ?? []) {
    const colon = entry.indexOf(':');
    if (colon <= 0) throw new InvalidOptionsError(`--user needs name:password`);
    users[entry.slice(0, colon)] = entry.slice(colon + 1);
  }
  const wsPortText = values['ws-port'];
  const wsFrames = values['ws-frames'];
  if (wsFrames !== undefined && wsFrames !== 'one' && wsFrames !== 'batch') {
    throw new InvalidOptionsError(`--ws-frames is one or batch, got '${wsFrames}'`);
  }
  const replication = values.replication ?? 'sync';
  if (replication !== 'sync' && replication !== 'async') {
    throw new InvalidOptionsError(`--replication is sync or async, got '${replication}'`);
  }
  const logLevel = (values['log-level'] ?? 'info') as LogLevel;
  if (!['debug', 'info', 'warn', 'error', 'silent'].includes(logLevel)) {
    throw new InvalidOptionsError(`--log-level is debug, info, warn, error or silent, got '${logLevel}'`);
  }
  const heartbeat = {
    ...(values['heartbeat-min'] ? { minIntervalS: number('heartbeat-min', values['heartbeat-min']) } : {}),
    ...(values['heartbeat-max'] ? { maxIntervalS: number('heartbeat-max', values['heartbeat-max']) } : {}),
  };
  const server: TestServerOptions = {
    ...(values.name ? { name: values.name } : {}),
    ...(values.host ? { host: values.host } : {}),
    ...(values['tcp-port'] ? { tcpPort: port('tcp-port', values['tcp-port']) } : {}),
    ...(wsPortText === undefined ? {} : { wsPort: wsPortText === 'off' ? false : port('ws-port', wsPortText) }),
    ...(values['data-dir'] ? { dataDir: values['data-dir'] } : {}),
    ...(values.sow ? { sowTopics: values.sow.map(sow) } : {}),
    ...(values.queue ? { queues: values.queue.map(queue) } : {}),
    ...(Object.keys(users).length > 0 ? { auth: { users, challenge: values.challenge ?? false } } : {}),
    ...(values.peer ? { peers: values.peer.map(peer) } : {}),
    ...(values['ack-conflation'] ? { ackConflationMs: number('ack-conflation', values['ack-conflation']) } : {}),
    ...(values['persisted-ack-interval']
      ? { persistedAckIntervalMs: number('persisted-ack-interval', values['persisted-ack-interval'], 1) }
      : {}),
    ...(Object.keys(heartbeat).length > 0 ? { heartbeat } : {}),
    ...(values['max-frame-bytes'] ? { maxFrameBytes: integer('max-frame-bytes', values['max-frame-bytes'], 1) } : {}),
    ...(values['sync-downgrade'] ? { syncDowngradeMs: number('sync-downgrade', values['sync-downgrade']) } : {}),
    ...(values['close-timeout'] ? { closeTimeoutMs: number('close-timeout', values['close-timeout'], 1) } : {}),
    ...(wsFrames ? { wsFrames } : {}),
  };
  if (values.challenge && !server.auth) throw new InvalidOptionsError('--challenge needs at least one --user');
  const cluster = values.cluster === undefined ? undefined : integer('cluster', values.cluster, 1);
  if (cluster !== undefined && (server.peers || server.tcpPort || server.wsPort)) {
    throw new InvalidOptionsError('--cluster picks its own ports and peers: drop --tcp-port, --ws-port and --peer');
  }
  return { server, cluster, replication, logLevel, help: values.help ?? false };
}
