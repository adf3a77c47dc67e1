import type { TransportHint } from '@amps-ts/core-protocol';
import type { PageEventSource } from './options.js';

/** The page itself, when there is one (a worker has a global scope but no document). */
function defaultPage(): PageEventSource {
  const scope = globalThis as { addEventListener?: unknown; document?: PageEventSource['document'] };
  return {
    window: typeof scope.addEventListener === 'function' ? (globalThis as unknown as EventTarget) : undefined,
    document: scope.document,
  };
}

/**
 * Turns page-lifecycle events into reconnect hints: `online`/`offline` (the network),
 * `visible`/`hidden` (`visibilitychange`) and `pagehide` (the page is being left or frozen).
 * Listens to the page only while someone listens to it.
 */
export class PageHints {
  readonly #page: PageEventSource | undefined;
  readonly #listeners = new Set<(hint: TransportHint) => void>();
  #detach: (() => void) | undefined;

  constructor(page: PageEventSource | undefined) {
    this.#page = page;
  }

  subscribe(listener: (hint: TransportHint) => void): () => void {
    // A wrapper per subscription, so subscribing one function twice needs two unsubscribes.
    const entry = (hint: TransportHint) => listener(hint);
    this.#listeners.add(entry);
    if (this.#listeners.size === 1) this.#attach();
    return () => {
      if (!this.#listeners.delete(entry)) return;
      if (this.#listeners.size === 0) {
        this.#detach?.();
        this.#detach = undefined;
      }
    };
  }

  #attach(): void {
    const { window, document } = this.#page ?? defaultPage();
    const online = () => this.#emit('online');
    const offline = () => this.#emit('offline');
    const pagehide = () => this.#emit('pagehide');
    const visibility = () => this.#emit(document?.visibilityState === 'hidden' ? 'hidden' : 'visible');
    window?.addEventListener('online', online);
    window?.addEventListener('offline', offline);
    window?.addEventListener('pagehide', pagehide);
    document?.addEventListener('visibilitychange', visibility);
    this.#detach = () => {
      window?.removeEventListener('online', online);
      window?.removeEventListener('offline', offline);
      window?.removeEventListener('pagehide', pagehide);
      document?.removeEventListener('visibilitychange', visibility);
    };
  }

  #emit(hint: TransportHint): void {
    for (const listener of [...this.#listeners]) {
      try {
        listener(hint);
      } catch (error) {
        // One faulty listener must not starve the others; the error still surfaces.
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }
}
