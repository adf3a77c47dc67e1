export declare const chromiumPath: string;
export declare const chromiumArgs: string[];
export interface ChromiumStatus {
  /** Whether browser tests should run. */
  run: boolean;
  /** Why they are skipped, when they are. */
  reason: string | undefined;
  /** A describe title that says when (and why) the tests are skipped. */
  title(name: string): string;
}
export declare function chromiumStatus(label: string): ChromiumStatus;
