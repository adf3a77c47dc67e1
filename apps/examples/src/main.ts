/**
 * Runs one example: `pnpm --filter @amps-ts/examples start <name>`. Without a name, lists them.
 * Each example is also a standalone script: `tsx --conditions=@amps-ts/source src/<name>.ts`.
 */
import { readdirSync } from 'node:fs';

const examples = readdirSync(import.meta.dirname)
  .filter((file) => file.endsWith('.ts') && file !== 'main.ts')
  .map((file) => file.slice(0, -'.ts'.length))
  .sort();

// `pnpm ... start -- <name>` passes the `--` on.
const args = process.argv.slice(2);
if (args[0] === '--') args.shift();
const name = args[0];
if (name === undefined || !examples.includes(name) || args.length > 1) {
  if (args.length > 1) console.error(`one example at a time, got ${args.join(' ')}\n`);
  else if (name !== undefined) console.error(`no example named '${name}'\n`);
  console.log(`usage: pnpm --filter @amps-ts/examples start <name>\n\n${examples.map((e) => `  ${e}`).join('\n')}`);
  process.exit(name === undefined ? 0 : 2);
}

// An example that hangs has failed (its process would exit on its own once cleaned up).
setTimeout(() => {
  console.error(`${name}: did not finish within 20 s`);
  process.exit(1);
}, 20_000).unref();

await import(`./${name}.ts`);
