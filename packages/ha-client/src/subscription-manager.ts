import type { Command, ManagedSubscription, SubscriptionManager } from '@amps-ts/core-protocol';

export interface MemorySubscriptionManagerOptions {
  /**
   * A subscription failed to resubscribe. Return `true` to drop it and carry on with the rest;
   * `false` (the default) makes the whole recovery fail, so the client tries another server.
   */
  onFailedResubscribe?: (subscription: ManagedSubscription, error: Error) => boolean;
}

/**
 * Remembers subscriptions by `subId`, so a reconnect re-enters each exactly once: adding an id
 * again replaces the entry, never a second handler.
 */
export class MemorySubscriptionManager implements SubscriptionManager {
  readonly #subscriptions = new Map<string, ManagedSubscription>();
  readonly #onFailed: MemorySubscriptionManagerOptions['onFailedResubscribe'];

  constructor(options: MemorySubscriptionManagerOptions = {}) {
    this.#onFailed = options.onFailedResubscribe;
  }

  add(subscription: ManagedSubscription): void {
    this.#subscriptions.set(subscription.subId, subscription);
  }

  remove(subId: string): void {
    this.#subscriptions.delete(subId);
  }

  clear(): void {
    this.#subscriptions.clear();
  }

  list(): readonly ManagedSubscription[] {
    return [...this.#subscriptions.values()];
  }

  async resubscribe(execute: (command: Command) => Promise<void>): Promise<void> {
    for (const subscription of this.list()) {
      if (!this.#subscriptions.has(subscription.subId)) continue;
      try {
        await execute(subscription.command);
      } catch (error) {
        const err = error instanceof Error ? error : new Error(String(error));
        if (this.#onFailed?.(subscription, err)) {
          this.remove(subscription.subId);
          continue;
        }
        throw err;
      }
    }
  }
}
