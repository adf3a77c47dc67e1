/** `pnpm bench` as a process: its command line, and what an interrupted run leaves behind. */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromiumStatus } from '@amps-ts/config/chromium';
import { describe, expect, it, onTestFinished } from 'vitest';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Starts the bench in a process group of its own (as a shell does), so that a test can Ctrl-C it;
 * whatever is still running in that group when the test ends (failed or timed out) is killed.
 */
function start(args: string[], env: NodeJS.ProcessEnv = process.env): ChildProcessWithoutNullStreams {
  const child = spawn(process.execPath, ['--conditions=@amps-ts/source', '--import', 'tsx', 'src/main.ts', ...args], {
    cwd: join(import.meta.dirname, '..'),
    env,
    detached: true,
  });
  onTestFinished(() => {
    try {
      process.kill(-(child.pid as number), 'SIGKILL');
    } catch {
      // Gone already.
    }
  });
  return child;
}

/**
 * Resolves once every process holding the bench's output has exited: the bench, and the broker
 * processes and browsers it started (they inherit its stdout and stderr).
 */
function finished(child: ChildProcessWithoutNullStreams): Promise<Run> {
  const run: Run = { code: null, stdout: '', stderr: '' };
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    run.stdout += chunk;
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    run.stderr += chunk;
  });
  return once(child, 'close').then(([code]) => ({ ...run, code: code as number | null }));
}

/** Resolves once the bench has printed `text` on stderr (its progress lines). */
function printed(child: ChildProcessWithoutNullStreams, text: string): Promise<void> {
  return new Promise((resolve) => {
    let seen = '';
    child.stderr.on('data', (chunk: Buffer | string) => {
      seen += chunk;
      if (seen.includes(text)) resolve();
    });
  });
}

describe('the bench command line', () => {
  it('prints its usage and the groups for --help, with exit code 0', async () => {
    const run = await finished(start(['--help']));
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('usage: pnpm bench [--quick] [group ...]');
    expect(run.stdout).toContain('broker, browser, client, codec');
  });

  it('takes the `--` pnpm passes on (`pnpm bench -- --quick`)', async () => {
    const run = await finished(start(['--', '--quick', 'nosuch']));
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('no benchmark named nosuch; known: broker, browser, client, codec');
  });

  it('refuses a mistyped group next to a known one, before running anything', async () => {
    const run = await finished(start(['--quick', 'codec', 'clinet']));
    expect(run).toMatchObject({ code: 2, stdout: '' });
    expect(run.stderr).toContain('no benchmark named clinet; known: broker, browser, client, codec');
  });
});

describe('an interrupted bench', () => {
  // Each group's broker (or raw-socket peer) runs in a child process: stopped by SIGTERM alone (a
  // CI job's timeout, `kill <pid>`), the bench must not leave it behind, listening.
  it.each([
    ['broker', 'ingest:'],
    ['client', 'tcp publish'],
  ])('stopped by SIGTERM in the %s group, exits 143 and takes its child process with it', async (group, started) => {
    const child = start(['--quick', group]);
    const run = finished(child);
    await printed(child, started);
    child.kill('SIGTERM');
    expect((await run).code).toBe(143);
  });

  const chromium = chromiumStatus('bench');
  // Chromium's profile and the file stores' directories are made in the temp folder.
  it.skipIf(!chromium.run).each([
    ['Ctrl-C', 'SIGINT', 130],
    ['SIGTERM', 'SIGTERM', 143],
  ] as const)(
    chromium.title('stopped by %s in the browser group, leaves nothing in the temp folder'),
    async (_, signal, status) => {
      const temp = mkdtempSync(join(tmpdir(), 'amps-ts-bench-test-'));
      onTestFinished(() => rmSync(temp, { recursive: true, force: true }));
      const child = start(['--quick', 'browser'], { ...process.env, TMPDIR: temp });
      const run = finished(child);
      await printed(child, 'publishing'); // Chromium is up
      // Ctrl-C reaches the whole foreground process group; a SIGTERM only the one process.
      if (signal === 'SIGINT') process.kill(-(child.pid as number), signal);
      else child.kill(signal);
      const { code, stderr } = await run;
      expect(code).toBe(status);
      expect(stderr).not.toContain('Error');
      // tsx keeps its compile cache there (tsx-<uid>), made before the bench starts: not the bench's.
      expect(readdirSync(temp).filter((name) => !name.startsWith('tsx-'))).toEqual([]);
    },
  );
});
