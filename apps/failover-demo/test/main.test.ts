/** `pnpm demo` as a process: what an operator or a CI job sees. */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the demo; `onStdout` may close the pipe, as `| head` does. */
function demo(args: string[], onStdout?: (chunk: string, stdout: NodeJS.ReadableStream & { destroy(): void }) => void) {
  return new Promise<Run>((resolve) => {
    const child = spawn(process.execPath, ['--conditions=@amps-ts/source', '--import', 'tsx', 'src/main.ts', ...args], {
      cwd: join(import.meta.dirname, '..'),
      timeout: 20_000,
    });
    const run: Run = { code: null, stdout: '', stderr: '' };
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      run.stdout += chunk;
      onStdout?.(chunk, child.stdout);
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      run.stderr += chunk;
    });
    child.on('close', (code) => resolve({ ...run, code }));
  });
}

describe('the demo process', () => {
  it('refuses a bad flag with one line on stderr and exit code 2, before starting anything', async () => {
    expect(await demo(['--', '--servers', '100'])).toEqual({
      code: 2,
      stdout: '',
      stderr: "failover demo: --servers must be an integer from 2 to 10, got '100' (see --help)\n",
    });
  });

  // The brokers keep every message in memory: at the defaults, an hour's run ran out of heap after 28 minutes.
  it('refuses a run that would not fit in its heap, with exit code 2, before starting anything', async () => {
    const run = await demo(['--duration', '3600']);
    expect(run).toMatchObject({ code: 2, stdout: '' });
    expect(run.stderr).toMatch(
      /^failover demo: --duration 3600 at --rate 2500 on 3 brokers needs more memory than this process has .*at most --duration \d+ here.*\(see --help\)\n$/,
    );
  });

  // Seed 4 takes no chaos action in its first second: a short, quiet run.
  it('runs on when its reader goes away (`| head`), and its exit code still gives the verdict', async () => {
    const run = await demo(['--duration', '1', '--seed', '4'], (_chunk, stdout) => stdout.destroy());
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
  });

  it('with --json, stdout holds the summary and nothing else; the live view goes to stderr', async () => {
    const run = await demo(['--duration', '1', '--seed', '4', '--json']);
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ seed: 4, durationMs: 1000, servers: 3, lost: 0, ok: true });
    expect(run.stderr).toContain('PASS: every message arrived exactly once, in order');
  });
});
