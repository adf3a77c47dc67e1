#!/usr/bin/env node
// Release check for one published package, run from its folder: packs it with pnpm (as it would
// be published) and runs publint and are-the-types-wrong on that tarball.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const dir = mkdtempSync(join(tmpdir(), 'amps-ts-pack-'));
const run = (cmd, args) => execFileSync(cmd, args, { stdio: 'inherit' });
try {
  execFileSync('pnpm', ['pack', '--pack-destination', dir], { stdio: ['ignore', 'ignore', 'inherit'] });
  const tarball = join(
    dir,
    readdirSync(dir).find((f) => f.endsWith('.tgz')),
  );
  run('publint', ['run', tarball, '--strict']);
  run('attw', [tarball, '--profile', 'node16', '--format', 'table-flipped']);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
