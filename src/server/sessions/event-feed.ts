import type { Store } from '../../store/store.js';

// Wakes the live readers of events (SSE streams, the webhook fan-out) when this server writes one,
// so they answer at once instead of at their next poll. Events another server writes (several
// servers on one PostgreSQL) reach them by that poll.

export class EventFeed {
  #waiters = new Set<() => void>();

  /** An event was written. */
  notify(): void {
    const waiters = [...this.#waiters];
    this.#waiters.clear();
    for (const wake of waiters) wake();
  }

  /** Resolves at the next notify(), after `pollMs`, or when `signal` aborts, whichever is first. */
  next(pollMs: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal?.aborted) return resolve();
      const done = () => {
        clearTimeout(timer);
        this.#waiters.delete(done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, pollMs);
      this.#waiters.add(done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }
}

/** The store, with `feed.notify()` after each call that writes an event. */
export function notifyingStore(store: Store, feed: EventFeed): Store {
  const writesEvents = new Set<PropertyKey>(['createSession', 'transition', 'appendEvent', 'finishRefresh']);
  return new Proxy(store, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (typeof value !== 'function') return value;
      if (!writesEvents.has(property)) return value.bind(target);
      return async (...args: unknown[]) => {
        const result = await value.apply(target, args);
        feed.notify();
        return result;
      };
    },
  });
}
