import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

describe('transport-browser runs in browsers', () => {
  it('depends on core-protocol only', () => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
    expect(Object.keys(pkg.dependencies ?? {})).toEqual(['@amps-ts/core-protocol']);
    expect(pkg.peerDependencies ?? {}).toEqual({});
  });

  it('imports no node: built-in or other package, and uses no Node global', () => {
    const files = sourceFiles(join(root, 'src'));
    expect(files.length).toBeGreaterThan(0);
    const offenders: string[] = [];
    for (const file of files) {
      const text = readFileSync(file, 'utf8');
      for (const match of text.matchAll(/(?:from|import)\s*\(?\s*['"]([^'"]+)['"]/g)) {
        const spec = match[1] as string;
        if (!spec.startsWith('./') && !spec.startsWith('../') && spec !== '@amps-ts/core-protocol') {
          offenders.push(`${file}: imports ${spec}`);
        }
      }
      const code = text.replace(/\/\/.*$|\/\*[\s\S]*?\*\//gm, '');
      for (const global of ['process', 'Buffer', 'require(', 'global', '__dirname', 'setImmediate']) {
        const re = new RegExp(`(?<![\\w.'"])${global.replace('(', '\\(')}(?![\\w'"])`);
        if (re.test(code)) offenders.push(`${file}: uses ${global}`);
      }
    }
    expect(offenders).toEqual([]);
  });
});
