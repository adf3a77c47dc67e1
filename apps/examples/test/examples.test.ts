/**
 * Runs every example the way a user does (`pnpm --filter @amps-ts/examples start <name>`), each
 * in its own process: it passes if it exits 0 on its own, which also means it left no socket or
 * timer behind.
 */
import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..');
const examples = readdirSync(join(root, 'src'))
  .filter((file) => file.endsWith('.ts') && file !== 'main.ts')
  .map((file) => file.slice(0, -'.ts'.length));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--conditions=@amps-ts/source', '--import', 'tsx', 'src/main.ts', ...args],
      { cwd: root, timeout: 25_000 },
      (error, stdout, stderr) => resolve({ code: error ? (error.code as number | null) : 0, stdout, stderr }),
    );
  });
}

describe('examples', () => {
  it('finds the examples', () => {
    expect(examples.sort()).toEqual([
      'custom-delay-strategy',
      'custom-server-chooser',
      'ha-publisher',
      'paused-replay',
      'publish-subscribe',
      'queue-consumer',
      'resuming-subscriber',
      'sow-and-subscribe',
    ]);
  });

  it.concurrent.each(examples)('%s runs, passes its assertions and exits on its own', async (name) => {
    const result = await run(name);
    expect(result, `${name} failed:\n${result.stderr}\n${result.stdout}`).toMatchObject({ code: 0, stderr: '' });
    expect(result.stdout).not.toBe('');
  });

  it('lists the examples without a name, and refuses an unknown one', async () => {
    const list = await run();
    expect(list.code).toBe(0);
    for (const name of examples) expect(list.stdout).toContain(name);
    const unknown = await run('no-such-example');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("no example named 'no-such-example'");
    const two = await run('publish-subscribe', 'queue-consumer');
    expect(two.code).toBe(2);
    expect(two.stderr).toContain('one example at a time');
  });

  it('takes the `--` pnpm passes on (`start -- <name>`)', async () => {
    const result = await run('--', 'sow-and-subscribe');
    expect(result, result.stderr).toMatchObject({ code: 0, stderr: '' });
  });
});
