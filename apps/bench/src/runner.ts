/**
 * The benchmark contract. Each file in `src/benches/` default-exports a `BenchGroup`; `pnpm bench`
 * runs them all, `pnpm bench <name>` one. Results are ratios against a baseline measured in the
 * same process, so they mean the same on any machine.
 */

export interface BenchResult {
  /** What was measured, e.g. `decode delivery frame (100 B body)`. */
  name: string;
  /** The measured value. */
  value: number;
  /** Its unit, e.g. `frames/s`, `ms`, `%`. */
  unit: string;
  /** The baseline measured in the same run, when the target is a ratio. */
  baseline?: { name: string; value: number };
  /** Pass/fail criteria from the issue. Omit for report-only rows. */
  target?: {
    /** value / baseline.value must be at least this. */
    minRatio?: number;
    /** value must be at least this. */
    min?: number;
    /** value must be at most this. */
    max?: number;
  };
  /** Free-form extra facts for the JSON output. */
  details?: Record<string, unknown>;
}

export interface BenchContext {
  /** Reports progress on long runs (printed on stderr as it happens). */
  progress(message: string): void;
  /** Shorter runs for smoke checks (`--quick`). */
  quick: boolean;
}

export interface BenchGroup {
  name: string;
  description: string;
  run(context: BenchContext): Promise<BenchResult[]>;
}

/** Runs `fn` repeatedly for about `ms` milliseconds after a warm-up; returns operations per second. */
export function measureRate(fn: () => number, ms = 1000): number {
  const warmUntil = performance.now() + Math.min(300, ms / 3);
  while (performance.now() < warmUntil) fn();
  let ops = 0;
  const start = performance.now();
  let elapsed = 0;
  while (elapsed < ms) {
    ops += fn();
    elapsed = performance.now() - start;
  }
  return (ops * 1000) / elapsed;
}

/** Whether a result meets its target (true when it has none). */
export function passes(result: BenchResult): boolean {
  const t = result.target;
  if (!t) return true;
  // A measurement that came out NaN or infinite is broken: every comparison with NaN is false,
  // so without this it would meet any target.
  if (!Number.isFinite(result.value)) return false;
  if (t.minRatio !== undefined) {
    const base = result.baseline?.value;
    if (base === undefined || !Number.isFinite(base) || base <= 0 || result.value / base < t.minRatio) return false;
  }
  if (t.min !== undefined && result.value < t.min) return false;
  if (t.max !== undefined && result.value > t.max) return false;
  return true;
}

/** How long a run may go without one more message arriving before it fails instead of waiting. */
export const STALL_MS = 30_000;

/**
 * Waits for `done`, and fails with an error naming how many of `expected` messages arrived once
 * `arrived()` has not grown for `stallMs`: a run that lost messages would otherwise wait for ever.
 */
export async function unlessStalled(
  done: Promise<unknown>,
  what: string,
  expected: number,
  arrived: () => number | Promise<number>,
  stallMs = STALL_MS,
): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let over = false;
  const stalled = new Promise<never>((_, reject) => {
    let last = -1;
    const check = async () => {
      const count = await arrived();
      if (over) return;
      if (count === last) {
        reject(new Error(`${what}: ${count} of ${expected} messages arrived, none in the last ${stallMs / 1000} s`));
        return;
      }
      last = count;
      timer = setTimeout(check, stallMs);
    };
    void check();
  });
  try {
    await Promise.race([done, stalled]);
  } finally {
    over = true;
    clearTimeout(timer);
  }
}
