import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type BenchGroup, type BenchResult, passes } from './runner.js';

const here = dirname(fileURLToPath(import.meta.url));
const files = readdirSync(join(here, 'benches')).filter((f) => f.endsWith('.ts'));
const known = files.map((f) => f.replace(/\.ts$/, ''));
const usage = `usage: pnpm bench [--quick] [group ...]\n\ngroups: ${known.join(', ')} (default: all)`;

// `pnpm bench -- --quick` passes the `--` on to the script.
const args = process.argv[2] === '--' ? process.argv.slice(3) : process.argv.slice(2);
if (args.includes('--help') || args.includes('-h')) {
  console.log(usage);
  process.exit(0);
}
const quick = args.includes('--quick');
const only = args.filter((a) => !a.startsWith('--'));
// A mistyped flag (`--quikc`) would otherwise run the full benchmarks.
const unknown = args.filter((a) => a.startsWith('--') && a !== '--quick');
if (unknown.length > 0) {
  console.error(`unknown option ${unknown.join(', ')}; ${usage}`);
  process.exit(2);
}
// A mistyped group (`pnpm bench codec clinet`) would otherwise be skipped without a word.
const unnamed = only.filter((name) => !known.includes(name));
if (unnamed.length > 0) {
  console.error(`no benchmark named ${unnamed.join(', ')}; known: ${known.join(', ')}`);
  process.exit(2);
}

/**
 * The run's scratch directory: what the groups write to the temp folder (the file stores'
 * directories, Chromium's profile) goes in it, through `os.tmpdir()` (which reads TMPDIR, also in
 * the child processes and Chromium), and it is removed however the run ends.
 */
const scratch = mkdtempSync(join(tmpdir(), 'amps-ts-bench-'));
process.env.TMPDIR = scratch;
const removeScratch = () => rmSync(scratch, { recursive: true, force: true, maxRetries: 3 });
process.on('exit', removeScratch);
// Ctrl-C, or a SIGTERM from a CI job's timeout, stops the run at once, with the status a shell
// gives a process the signal ended. The groups' own cleanup does not run: their broker processes
// exit with this one (they watch its IPC channel), playwright-core kills Chromium on exit, and
// the scratch directory goes last, once Chromium is gone.
for (const [signal, status] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
] as const) {
  process.on(signal, () => {
    process.off('exit', removeScratch);
    process.on('exit', removeScratch);
    process.exit(status);
  });
}

const groups: BenchGroup[] = [];
for (const file of files.sort()) {
  const group = (await import(join(here, 'benches', file))).default as BenchGroup;
  if (only.length === 0 || only.includes(group.name)) groups.push(group);
}

const format = (n: number) =>
  Math.abs(n) >= 100 ? Math.round(n).toLocaleString('en-US') : n.toLocaleString('en-US', { maximumFractionDigits: 2 });

const all: Array<BenchResult & { group: string; ratio?: number; pass: boolean }> = [];
for (const group of groups) {
  console.error(`\n> ${group.name}: ${group.description}`);
  const results = await group.run({ quick, progress: (m) => console.error(`  ${m}`) });
  for (const r of results) {
    const ratio = r.baseline ? r.value / r.baseline.value : undefined;
    all.push({ ...r, group: group.name, ...(ratio === undefined ? {} : { ratio }), pass: passes(r) });
  }
}

/** Two decimals, or as many more as it takes not to round a miss up to its target (0.4996x, not 0.50x). */
function ratioText(ratio: number, minRatio: number | undefined): string {
  let digits = 2;
  let text = ratio.toFixed(digits);
  while (minRatio !== undefined && ratio < minRatio && Number(text) >= minRatio && digits < 6) {
    text = ratio.toFixed(++digits);
  }
  return text;
}

const rows = all.map((r) => {
  const t = r.target;
  const target = t
    ? [
        t.minRatio !== undefined ? `>= ${t.minRatio}x` : '',
        t.min !== undefined ? `>= ${format(t.min)}` : '',
        t.max !== undefined ? `<= ${format(t.max)}` : '',
      ]
        .filter(Boolean)
        .join(', ')
    : '';
  return [
    r.group,
    r.name,
    `${format(r.value)} ${r.unit}`,
    r.baseline ? `${format(r.baseline.value)} (${r.baseline.name})` : '',
    r.ratio === undefined ? '' : `${ratioText(r.ratio, t?.minRatio)}x`,
    target,
    r.target ? (r.pass ? 'ok' : 'MISS') : '',
  ];
});
const header = ['group', 'benchmark', 'result', 'baseline', 'ratio', 'target', ''];
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] as string).length)));
const line = (cells: string[]) =>
  cells
    .map((c, i) => c.padEnd(widths[i] as number))
    .join('  ')
    .trimEnd();
console.log(`\n${line(header)}\n${widths.map((w) => '-'.repeat(w)).join('  ')}`);
for (const row of rows) console.log(line(row));

const out = join(here, '..', 'results');
mkdirSync(out, { recursive: true });
writeFileSync(
  join(out, 'latest.json'),
  `${JSON.stringify({ date: new Date().toISOString(), node: process.version, results: all }, null, 2)}\n`,
);
console.error(`\nwrote ${join('apps/bench/results/latest.json')}`);
process.exitCode = all.every((r) => r.pass) ? 0 : 1;
