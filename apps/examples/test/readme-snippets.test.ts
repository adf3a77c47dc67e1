/**
 * Type-checks every ```ts / ```typescript block in the root README and the packages' READMEs
 * against the packages' real types (from source, through the `@amps-ts/source` condition), with one
 * `tsc` run over all of them. A failure names the README, the line and the compiler's message.
 *
 * Convention: each block is its own ES module (top-level `await` works) and compiles alone, so a
 * reader can copy it: it imports what it uses. A block that uses something the reader brings (their
 * authenticator, bytes from a socket) gets it from an HTML comment right before it, which GitHub
 * and npm do not render; the comment's TypeScript goes before the block's:
 *
 *     <!-- snippet-prelude: declare const tokenAuthenticator: import('@amps-ts/core-protocol').Authenticator; -->
 *     ```ts
 *
 * Code that is not meant to compile (shell, output, diagrams) takes another tag: ```sh, ```text.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, relative } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

const repo = join(import.meta.dirname, '..', '..', '..');
const outDir = join(import.meta.dirname, '..', '.tmp', 'readme-snippets'); // .tmp/ is gitignored

interface Snippet {
  readme: string; // relative to the repo root
  line: number; // README line of the block's first code line
  prelude: string[];
  preludeLine: number; // README line of the prelude comment
  code: string[];
  file: string; // generated file name in outDir
}

const PRELUDE = /^<!--\s*snippet-prelude:([\s\S]*)-->$/;

function findReadmes(dir: string): string[] {
  const found: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name === 'node_modules' || entry.name.startsWith('.')) continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) found.push(...findReadmes(path));
    else if (entry.name === 'README.md') found.push(path);
  }
  return found.sort();
}

function extractSnippets(readmePath: string): Snippet[] {
  const readme = relative(repo, readmePath);
  const lines = readFileSync(readmePath, 'utf8').split('\n');
  const snippets: Snippet[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)(`{3,})\s*([\w-]*)/.exec(lines[i] ?? '');
    if (!open) continue;
    const [, indent = '', fence = '', lang = ''] = open;
    const start = i;
    while (++i < lines.length && !(lines[i] ?? '').trimStart().startsWith(fence));
    if (i >= lines.length) throw new Error(`${readme}:${start + 1}: code block never closed`);
    if (lang !== 'ts' && lang !== 'typescript') continue;
    const code = lines.slice(start + 1, i).map((line) => (line.startsWith(indent) ? line.slice(indent.length) : line));
    const before = lines.slice(0, start).join('\n').trimEnd();
    const comment = before.endsWith('-->') ? before.slice(before.lastIndexOf('<!--')) : '';
    const prelude = PRELUDE.exec(comment)?.[1]?.trim();
    snippets.push({
      readme,
      line: start + 2,
      prelude: prelude ? prelude.split('\n') : [],
      preludeLine: prelude ? before.slice(0, before.length - comment.length).split('\n').length : 0,
      code,
      file: `${readme.replace(/[/\\.]/g, '_')}_L${start + 2}.ts`,
    });
  }
  return snippets;
}

/** `@amps-ts/<name>[/subpath]` -> the workspace package's source entry, as its exports map says. */
function sourcePaths(): Record<string, string[]> {
  const paths: Record<string, string[]> = {};
  const visit = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (!entry.isDirectory() || entry.name === 'node_modules' || entry.name.startsWith('.')) continue;
      const pkgDir = join(dir, entry.name);
      let pkg: { name?: string; exports?: Record<string, unknown> };
      try {
        pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'));
      } catch {
        visit(pkgDir);
        continue;
      }
      for (const [subpath, target] of Object.entries(pkg.exports ?? {})) {
        const source = (target as Record<string, unknown> | string)?.['@amps-ts/source' as never];
        if (typeof source === 'string' && pkg.name) {
          paths[pkg.name + subpath.slice(1)] = [join(pkgDir, source)];
        }
      }
    }
  };
  visit(join(repo, 'packages'));
  return paths;
}

const readmes = [join(repo, 'README.md'), ...findReadmes(join(repo, 'packages'))];
const snippets = readmes.flatMap(extractSnippets);

interface Diagnostic {
  file: string;
  line: number;
  message: string;
}

let diagnostics: Diagnostic[] = [];

function runTsc(): Promise<string> {
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [tsc, '-p', outDir, '--pretty', 'false'], { cwd: outDir }, (error, stdout, stderr) => {
      // tsc exits 2 when it found errors (and printed them); anything else without output is a real failure.
      if (error && !stdout) reject(new Error(`tsc failed: ${stderr || error.message}`));
      else resolve(stdout);
    });
  });
}

function parseTscOutput(output: string): Diagnostic[] {
  const found: Diagnostic[] = [];
  for (const line of output.split('\n')) {
    const match = /^(.+?)\((\d+),\d+\): (error .*)$/.exec(line);
    if (match) found.push({ file: match[1] ?? '', line: Number(match[2]), message: match[3] ?? '' });
    else if (line.startsWith('  ') && found.length > 0) found[found.length - 1]!.message += `\n${line}`;
    else if (line.trim()) found.push({ file: '', line: 0, message: line }); // a config error, say
  }
  return found;
}

/** Where a line of a generated file came from in its README. */
function readmeLocation(snippet: Snippet, generatedLine: number): string {
  const inCode = generatedLine - snippet.prelude.length;
  const line = inCode >= 1 ? snippet.line + inCode - 1 : snippet.preludeLine;
  return `${snippet.readme}:${line}`;
}

describe('README TypeScript snippets', () => {
  beforeAll(async () => {
    rmSync(outDir, { recursive: true, force: true });
    mkdirSync(outDir, { recursive: true });
    for (const snippet of snippets) {
      // `export {}` makes each snippet a module of its own, whatever it imports.
      writeFileSync(join(outDir, snippet.file), [...snippet.prelude, ...snippet.code, 'export {};', ''].join('\n'));
    }
    const tsconfig = {
      extends: relative(outDir, join(repo, 'tooling', 'config', 'tsconfig.node.json')),
      compilerOptions: {
        lib: ['ES2022', 'DOM', 'DOM.Iterable'], // transport-browser's snippets run in a page
        paths: sourcePaths(),
        noEmit: true,
      },
      files: snippets.map((snippet) => snippet.file),
    };
    writeFileSync(join(outDir, 'tsconfig.json'), JSON.stringify(tsconfig, null, 2));
    diagnostics = parseTscOutput(await runTsc());
  }, 120_000);

  it('finds the snippets', () => {
    expect(snippets.length).toBeGreaterThanOrEqual(15);
    expect(new Set(snippets.map((snippet) => snippet.readme))).toContain('README.md');
  });

  it('has no compiler error outside the snippets (the setup itself is sound)', () => {
    const own = new Set(snippets.map((snippet) => snippet.file));
    const elsewhere = diagnostics.filter((d) => !own.has(d.file)); // tsc names files relative to outDir
    expect(elsewhere.map((d) => `${d.file}:${d.line}: ${d.message}`)).toEqual([]);
  });

  it.each(snippets.map((snippet) => [`${snippet.readme}:${snippet.line}`, snippet] as const))(
    '%s type-checks',
    (_, snippet) => {
      const errors = diagnostics
        .filter((d) => d.file === snippet.file)
        .map((d) => `${readmeLocation(snippet, d.line)}: ${d.message}`);
      expect(errors).toEqual([]);
    },
  );
});

/** The `@amps-ts/*` packages a README's install commands (`npm install ...`, before any `#`) install. */
function installedBy(readmePath: string): Set<string> {
  const commands = readFileSync(readmePath, 'utf8').matchAll(/^npm install ([^#\n]*)/gm);
  return new Set([...commands].flatMap(([, args = '']) => args.split(/\s+/).filter((a) => a.startsWith('@amps-ts/'))));
}

// A reader who runs a package's install command and then its example must not meet a missing
// package: under pnpm, a package that is only a dependency of the one installed cannot be imported.
describe('README install commands', () => {
  it.each(findReadmes(join(repo, 'packages')).map((path) => [relative(repo, path), path] as const))(
    '%s installs every package its examples import',
    (readme, path) => {
      const imported = new Set(
        extractSnippets(path).flatMap((snippet) =>
          [...snippet.code.join('\n').matchAll(/^import (?!type )[^;]*?from '(@amps-ts\/[\w-]+)'/gm)].map(
            ([, name]) => name,
          ),
        ),
      );
      const installed = installedBy(path);
      expect(
        [...imported].filter((name) => !installed.has(name as string)),
        readme,
      ).toEqual([]);
    },
  );
});
