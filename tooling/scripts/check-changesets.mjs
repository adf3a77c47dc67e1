#!/usr/bin/env node
// Release check for the pending changesets, run from the repository root (`pnpm lint`): reads every
// one and plans the release as `changeset version` will, so a changeset it cannot parse (front
// matter mangled by an editor, say) or that names no package of the workspace fails here rather
// than at release time, where it stops every package from being versioned.
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

// @changesets/cli's own dependencies: the code `changeset version` runs.
const require = createRequire(createRequire(import.meta.url).resolve('@changesets/cli'));
const parse = require('@changesets/parse').default;
const getReleasePlan = require('@changesets/get-release-plan').default;

// Parsed one by one first: the release plan's error does not say which file it could not read.
let unreadable = 0;
for (const file of readdirSync('.changeset').filter((f) => f.endsWith('.md') && f !== 'README.md')) {
  try {
    parse(readFileSync(`.changeset/${file}`, 'utf8'));
  } catch (error) {
    unreadable++;
    console.error(`FAIL: .changeset/${file}: ${error.message.split('\n')[0]}`);
  }
}
if (unreadable > 0) process.exit(1);

const plan = await getReleasePlan(process.cwd());
console.log(`changesets: ${plan.changesets.length} read, ${plan.releases.length} packages to release`);
