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
 * `visible`/`hidden` (`visibilitychange`), `pagehide` (the page is being left or frozen) and
 * `pageshow` (the page restored from the back/forward cache, which may not fire
 * `visibilitychange`). Returns `onHint`; the page is listened to only while someone listens to it.
 */
export function pageHints(page: PageEventSource | undefined): (listener: (hint: TransportHint) => void) => () => void {
  const listeners = new Set<(hint: TransportHint) => void>();
  let detach: (() => void) | undefined;

  const emit = (hint: TransportHint) => {
    for (const listener of [...listeners]) {
      try {
        listener(hint);
      } catch (error) {
        // One faulty listener must not starve the others; the error still surfaces.
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  };

  const attach = () => {
    const { window, document } = page ?? defaultPage();
    const onEvent = (event: Event) => {
      const type = event.type;
      // A first load shows the page too: only a restore follows a `pagehide`.
      if (type === 'pageshow' && (event as Event & { persisted?: boolean }).persisted !== true) return;
      emit(
        type === 'visibilitychange'
          ? document?.visibilityState === 'hidden'
            ? 'hidden'
            : 'visible'
          : (type as TransportHint),
      );
    };
    const events = [
      [window, 'online'],
      [window, 'offline'],
      [window, 'pagehide'],
      [window, 'pageshow'],
      [document, 'visibilitychange'],
    ] as const;
    for (const [target, type] of events) target?.addEventListener(type, onEvent);
    detach = () => {
      for (const [target, type] of events) target?.removeEventListener(type, onEvent);
    };
  };

  return (listener) => {
    // A wrapper per subscription, so subscribing one function twice needs two unsubscribes.
    const entry = (hint: TransportHint) => listener(hint);
    listeners.add(entry);
    if (listeners.size === 1) attach();
    return () => {
      if (listeners.delete(entry) && listeners.size === 0) detach?.();
    };
  };
}
