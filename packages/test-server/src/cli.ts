/** `amps-test-server`: runs a broker (or a replicated cluster) until interrupted. */
import type { Logger } from '@amps-ts/core-protocol';
import { type LogLevel, parseCliOptions, usage } from './cli-options.js';
import { startTestCluster } from './cluster.js';
import { startTestServer, type TestServer } from './server.js';

const levels: LogLevel[] = ['debug', 'info', 'warn', 'error', 'silent'];

function consoleLogger(level: LogLevel): Logger {
  const min = levels.indexOf(level);
  const line = (at: LogLevel) => (message: string, fields?: Record<string, unknown>) => {
    if (levels.indexOf(at) < min) return;
    console.error(
      `${new Date().toISOString()} ${at.padEnd(5)} ${message}${fields ? ` ${JSON.stringify(fields)}` : ''}`,
    );
  };
  return { debug: line('debug'), info: line('info'), warn: line('warn'), error: line('error') };
}

async function main(): Promise<void> {
  let cli: ReturnType<typeof parseCliOptions>;
  try {
    cli = parseCliOptions(process.argv.slice(2));
  } catch (error) {
    console.error(`amps-test-server: ${error instanceof Error ? error.message : String(error)}\n\n${usage}`);
    process.exitCode = 2;
    return;
  }
  if (cli.help) {
    console.log(usage);
    return;
  }
  const logger = consoleLogger(cli.logLevel);
  let servers: readonly TestServer[];
  let close: () => Promise<void>;
  if (cli.cluster !== undefined) {
    const { name, wsPort, ...shared } = cli.server;
    const cluster = await startTestCluster({
      ...shared,
      ...(name ? { name } : {}),
      count: cli.cluster,
      replication: cli.replication,
      noWebSocket: wsPort === false,
      logger,
    });
    servers = cluster.servers;
    close = () => cluster.close();
  } else {
    const server = await startTestServer({ ...cli.server, logger });
    servers = [server];
    close = () => server.close();
  }
  for (const server of servers) {
    console.log(`${server.name} ${server.tcpUri()}${server.wsPort === undefined ? '' : ` ${server.wsUri()}`}`);
  }
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

main().catch((error) => {
  console.error(`amps-test-server: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
