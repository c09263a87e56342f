import type { Logger } from 'pino';
import type { NodeRecord, ReaperLock, Store } from '../../store/store.js';

// The one reaper among all servers: whoever holds the PostgreSQL advisory lock (Store.tryReaperLock,
// on a connection of its own) marks nodes whose heartbeat is older than their lease dead and fails
// their live sessions with NODE_LOST. The lock lives with its holder's connection: when that server
// dies, PostgreSQL drops the connection and the lock, and the next server to try takes over.

export interface ReaperOptions {
  store: Store;
  log: Logger;
  /** How often to try for the lock, and to reap while holding it. */
  intervalMs: number;
  /** After a pass that could not reach the store, how long to reap nothing (a node lease): nodes beat again first. */
  graceMs: number;
  /** Told about every node it declared lost (the viewers of its sessions close with NODE_LOST). */
  onReaped?(node: NodeRecord, failed: readonly string[]): void;
}

/** The sentence a session lost with its host gets: names the host and what was last heard of it. */
export function nodeLostDetail(node: NodeRecord): string {
  const silentS = Math.round(node.heartbeatAgeMs / 100) / 10;
  return `The host ${node.id}${node.url ? ` (${node.url})` : ''} stopped answering: no heartbeat for ${silentS} s, past its ${node.leaseMs / 1000} s lease. This session's desktop was on it and is gone; start a new session.`;
}

export class Reaper {
  readonly #o: ReaperOptions;
  #lock: ReaperLock | null = null;
  #timer: NodeJS.Timeout | null = null;
  #tick: Promise<void> | null = null;
  #stopped = false;
  /** performance.now() before which nothing is reaped: the store was just back (see pass()). */
  #graceUntil = 0;

  constructor(options: ReaperOptions) {
    this.#o = options;
  }

  /** Whether this server holds the reaper lock just now. */
  get isLeader(): boolean {
    return this.#lock !== null;
  }

  start(): void {
    const tick = () => {
      this.#tick = this.pass().finally(() => {
        this.#tick = null;
        if (!this.#stopped) this.#timer = setTimeout(tick, this.#o.intervalMs).unref();
      });
    };
    tick();
  }

  /** One try: take the lock if free, then reap. Never throws. */
  async pass(): Promise<void> {
    const o = this.#o;
    try {
      if (!this.#lock) {
        this.#lock = await o.store.tryReaperLock();
        if (this.#lock) o.log.info('reaper: this server holds the reaper lock');
      }
      if (!this.#lock) return;
      // Just back from a store outage: every node's heartbeat is old for the same reason, so each
      // gets a lease to beat again before any is judged (else a lone all-in-one would reap itself).
      if (performance.now() < this.#graceUntil) return;
      for (const { node, failed } of await this.#lock.reap(nodeLostDetail)) {
        o.log.warn(
          { nodeId: node.id, url: node.url, heartbeatAgeMs: node.heartbeatAgeMs, generation: node.generation, failed: failed.length },
          'reaper: node lost',
        );
        o.onReaped?.(node, failed);
      }
    } catch (error) {
      this.#graceUntil = performance.now() + o.graceMs;
      o.log.warn({ err: error }, 'reaper: pass failed; letting go of the lock');
      await this.#lock?.release().catch(() => {});
      this.#lock = null;
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    await this.#tick;
    await this.#lock?.release().catch(() => {});
    this.#lock = null;
  }
}
