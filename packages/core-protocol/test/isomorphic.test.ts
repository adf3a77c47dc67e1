import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

describe('core-protocol stays isomorphic', () => {
  it('has no runtime dependencies', () => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
    expect(pkg.dependencies ?? {}).toEqual({});
    expect(pkg.peerDependencies ?? {}).toEqual({});
  });

  it('imports no node: built-in, no bare module, and touches no DOM global', () => {
    // Its own `#` imports (package.json `imports`) name files in src, chosen by condition.
    const { imports } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
    const offenders: string[] = [];
    for (const [spec, targets] of Object.entries<Record<string, string>>(imports ?? {})) {
      for (const target of Object.values(targets)) {
        if (!target.startsWith('./src/')) offenders.push(`package.json: ${spec} maps to ${target}`);
      }
    }
    for (const file of sourceFiles(join(root, 'src'))) {
      const text = readFileSync(file, 'utf8');
      for (const match of text.matchAll(/(?:from|import)\s*\(?\s*['"]([^'"]+)['"]/g)) {
        const spec = match[1] as string;
        const local = spec.startsWith('./') || spec.startsWith('../') || spec in (imports ?? {});
        if (!local) offenders.push(`${file}: imports ${spec}`);
      }
      for (const global of ['window', 'document', 'process', 'Buffer', 'require(']) {
        const re = new RegExp(`(?<![\\w.'"])${global.replace('(', '\\(')}(?![\\w'"])`);
        if (re.test(text.replace(/\/\/.*$|\/\*[\s\S]*?\*\//gm, ''))) offenders.push(`${file}: uses ${global}`);
      }
    }
    expect(offenders).toEqual([]);
  });
});
