#!/usr/bin/env node
// Release check for one published package, run from its folder: packs it with pnpm (as it would
// be published) and runs publint and are-the-types-wrong on that tarball, then checks what those
// two do not: the tarball carries its README and LICENSE (the MIT terms require the notice with
// every copy; pnpm copies the repository's LICENSE into a package that has none), and everything
// its built code imports is a dependency or peer dependency of the packed package.json (a
// devDependency, or a package only hoisted in the workspace, is missing for a user).
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const dir = mkdtempSync(join(tmpdir(), 'amps-ts-pack-'));
const run = (cmd, args) => execFileSync(cmd, args, { stdio: 'inherit' });
const problems = [];
try {
  execFileSync('pnpm', ['pack', '--pack-destination', dir], { stdio: ['ignore', 'ignore', 'inherit'] });
  const tarball = join(
    dir,
    readdirSync(dir).find((f) => f.endsWith('.tgz')),
  );
  run('publint', ['run', tarball, '--strict']);
  run('attw', [tarball, '--profile', 'node16', '--format', 'table-flipped']);

  const unpacked = join(dir, 'unpacked');
  mkdirSync(unpacked);
  execFileSync('tar', ['xzf', tarball, '-C', unpacked]);
  const root = join(unpacked, 'package');
  const files = readdirSync(root, { recursive: true });
  for (const required of ['README.md', 'LICENSE']) {
    if (!files.includes(required)) problems.push(`${required} is not in the tarball`);
  }

  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  const declared = { ...pkg.dependencies, ...pkg.peerDependencies };
  for (const [name, range] of Object.entries(declared)) {
    if (range.startsWith('workspace:')) problems.push(`${name}: "${range}" left in the packed package.json`);
  }
  const builtins = new Set(builtinModules);
  const imported = new Set();
  for (const file of files.filter((f) => /^dist\/.*\.(js|cjs|mjs)$/.test(f))) {
    const code = readFileSync(join(root, file), 'utf8');
    for (const [, specifier] of code.matchAll(
      /(?:\bfrom\s*|\bimport\s*\(?\s*|\brequire\s*\(\s*)['"]([^'"./][^'"]*)['"]/g,
    )) {
      const name = specifier.startsWith('@') ? specifier.split('/').slice(0, 2).join('/') : specifier.split('/')[0];
      if (!builtins.has(name) && !name.startsWith('node:') && name !== pkg.name) imported.add(name);
    }
  }
  for (const name of imported) {
    if (!(name in declared)) problems.push(`dist imports ${name}, which is neither a dependency nor a peer dependency`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
if (problems.length > 0) {
  for (const problem of problems) console.error(`FAIL: ${problem}`);
  process.exit(1);
}
