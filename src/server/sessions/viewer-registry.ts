import type { SessionId } from '../../protocol/ids.js';

/** A live viewer connection as the session layer sees it: something it can close with a code. */
export interface ViewerConnection {
  close(code: number, reason: string): void;
}

// Each relay connection is registered with its session so that ending the session closes it with
// the session's close code, and so the session knows whether anyone is watching.
export class ViewerRegistry {
  readonly #bySession = new Map<SessionId, Set<ViewerConnection>>();

  add(sessionId: SessionId, connection: ViewerConnection): number {
    let set = this.#bySession.get(sessionId);
    if (!set) {
      set = new Set();
      this.#bySession.set(sessionId, set);
    }
    set.add(connection);
    return set.size;
  }

  /** Returns how many viewers remain on the session. */
  remove(sessionId: SessionId, connection: ViewerConnection): number {
    const set = this.#bySession.get(sessionId);
    if (!set) return 0;
    set.delete(connection);
    if (set.size === 0) this.#bySession.delete(sessionId);
    return set.size;
  }

  count(sessionId: SessionId): number {
    return this.#bySession.get(sessionId)?.size ?? 0;
  }

  closeAll(sessionId: SessionId, code: number, reason: string): number {
    const set = this.#bySession.get(sessionId);
    if (!set) return 0;
    for (const connection of [...set]) connection.close(code, reason);
    return set.size;
  }

  closeEverything(code: number, reason: string): void {
    for (const [sessionId] of this.#bySession) this.closeAll(sessionId, code, reason);
  }
}
