import { type Command, type ManagedSubscription, type SubscriptionManager, toError } from '@amps-ts/core-protocol';
import { isRefusal } from './refusal.js';

export interface MemorySubscriptionManagerOptions {
  /**
   * The server refused to resubscribe a subscription. Return `true` to drop it and carry on with
   * the rest; `false` (the default) makes the whole recovery fail, so the client tries another
   * server. A lost connection or a timeout is not asked about: the recovery fails and is retried.
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

  async resubscribe(
    execute: (command: Command) => Promise<void>,
    options: { signal?: AbortSignal } = {},
  ): Promise<void> {
    for (const subscription of this.list()) {
      options.signal?.throwIfAborted();
      if (!this.#subscriptions.has(subscription.subId)) continue;
      try {
        await execute(subscription.command);
      } catch (error) {
        const err = toError(error);
        if (isRefusal(err) && this.#onFailed?.(subscription, err)) {
          this.remove(subscription.subId);
          continue;
        }
        throw err;
      }
    }
  }
}
