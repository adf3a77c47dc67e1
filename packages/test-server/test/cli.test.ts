import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { InvalidOptionsError } from '@amps-ts/core-protocol';
import { describe, expect, it } from 'vitest';
import { parseCliOptions } from '../src/cli-options.js';
import { TestClient } from './helpers.js';

describe('CLI flags', () => {
  it('map to server options', () => {
    const cli = parseCliOptions([
      '--name=a',
      '--tcp-port=9007',
      '--ws-port=off',
      '--data-dir=/tmp/x',
      '--sow=orders:/id,/region',
      '--sow=free',
      '--queue=jobs:5000:4',
      '--user=alice:s3:cret',
      '--challenge',
      '--peer=async:10.0.0.1:9008',
      '--peer=9009',
      '--ack-conflation=100',
      '--persisted-ack-interval=50',
      '--heartbeat-min=0.5',
      '--max-frame-bytes=1024',
      '--sync-downgrade=200',
      '--close-timeout=500',
      '--ws-frames=batch',
      '--log-level=debug',
    ]);
    expect(cli).toMatchObject({ cluster: undefined, logLevel: 'debug', help: false });
    expect(cli.server).toEqual({
      name: 'a',
      tcpPort: 9007,
      wsPort: false,
      dataDir: '/tmp/x',
      sowTopics: [{ topic: 'orders', key: ['/id', '/region'] }, { topic: 'free' }],
      queues: [{ topic: 'jobs', leaseMs: 5000, maxBacklog: 4 }],
      auth: { users: { alice: 's3:cret' }, challenge: true },
      peers: [
        { mode: 'async', host: '10.0.0.1', port: 9008 },
        { mode: 'sync', port: 9009 },
      ],
      ackConflationMs: 100,
      persistedAckIntervalMs: 50,
      heartbeat: { minIntervalS: 0.5 },
      maxFrameBytes: 1024,
      syncDowngradeMs: 200,
      closeTimeoutMs: 500,
      wsFrames: 'batch',
    });
  });

  it.each([
    [['--tcp-port=x']],
    [['--peer=sync:']],
    [['--challenge']],
    [['--cluster=2', '--tcp-port=9000']],
    [['--log-level=loud']],
    [['--close-timeout=0']],
    [['--max-frame-bytes=1.5']],
    // Values the server would refuse: before, they passed the parser and the server threw at start,
    // so the CLI exited with 1 and no usage instead of 2 (README: "a bad value ... exits with code 2").
    [['--sow=orders:id']],
    [['--queue=jobs:100:1.5']],
    [['--queue=:100']],
    [['--peer=70000']],
    [['--tcp-port=70000']],
    [['--ws-port=1.5']],
    [['--cluster=1.5']],
  ])('rejects %j', (argv) => {
    expect(() => parseCliOptions(argv)).toThrow(InvalidOptionsError);
  });

  it('refuses a stray argument without repeating it: `--user alice s3cret` would print the password', () => {
    const refusal = (() => {
      try {
        parseCliOptions(['--user', 'alice', 's3cret']);
      } catch (error) {
        return error;
      }
    })();
    expect(InvalidOptionsError.isInstance(refusal)).toBe(true);
    expect(String((refusal as Error).message)).not.toContain('s3cret');
  });
});

it('starts a cluster, prints its URIs, and stops on SIGTERM', async () => {
  const tsx = fileURLToPath(new URL('../../../node_modules/.bin/tsx', import.meta.url));
  const cli = fileURLToPath(new URL('../src/cli.ts', import.meta.url));
  const child = spawn(tsx, ['--conditions=@amps-ts/source', cli, '--cluster=2', '--log-level=silent'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  try {
    const lines: string[] = [];
    const reader = createInterface({ input: child.stdout });
    for await (const line of reader) {
      lines.push(line);
      if (lines.length === 2) break;
    }
    expect(lines[0]).toMatch(/^amps-1 tcp:\/\/127\.0\.0\.1:\d+\/amps\/json ws:\/\/127\.0\.0\.1:\d+\/amps\/json$/);
    const uri = (lines[1] as string).split(' ')[2] as string;
    const client = await TestClient.connect(uri);
    expect((await client.logon('cli-client')).status).toBe('success');
    child.kill('SIGTERM');
    await client.closed;
    expect(await exited).toBe(0);
  } finally {
    child.kill('SIGKILL');
  }
}, 20_000);
