import type { Logger } from 'pino';
import { AppError } from '../../protocol/errors.js';
import type { NodeFence, NodeRecord, Store } from '../../store/store.js';

// A node's membership in the catalog (the `nodes` table): it registers, beats every lease/5 by
// database time, and fences itself when it cannot. The rules (docs/ARCHITECTURE.md, "Nodes"):
// - the reaper declares a node dead once its heartbeat is older than its lease;
// - a node that has had no successful heartbeat for `fenceAfter` of its lease (less than the whole)
//   ends its sandboxes on its own first: they may hold secrets, and once the reaper fires their
//   sessions are failed and nobody may reach them;
// - a heartbeat the catalog refuses (dead, or the generation moved on) fences it too;
// - a fenced node registers again with a new generation, which fails any of its sessions still
//   live under the old one, so an old generation can touch nothing (Store.transition's fence).

/** Share of the lease after which a node that could not beat fences itself: before the reaper fires. */
export const fenceAfter = 0.6;

export interface NodeMembershipOptions {
  store: Store;
  log: Logger;
  id: string;
  /** How servers reach it; null for an all-in-one. */
  url: string | null;
  capacity: number;
  leaseMs: number;
  /** Ends every sandbox on this node at once, writing nothing to the store (it may be unreachable). */
  fence(why: string): Promise<void>;
  /**
   * Whether silence alone fences (a `porthole node`, which a server's reaper watches). The
   * all-in-one keeps its desktops through a store outage, as it always has: it fences only when the
   * catalog refuses its heartbeat (another all-in-one's reaper declared it lost).
   */
  fenceOnSilence: boolean;
}

export class NodeMembership {
  readonly #o: NodeMembershipOptions;
  #generation = 0;
  /**
   * performance.now() when the last heartbeat the catalog took was sent: the catalog's time of it is
   * no earlier, so a fence counted from here comes no later than the reaper's count allows.
   */
  #lastBeatAt = 0;
  #fenced: string | null = null;
  /** The fence in progress: no heartbeat or new registration until it has ended every sandbox. */
  #fencing: Promise<void> | null = null;
  #timer: NodeJS.Timeout | null = null;
  /** A fenced node's registration under way (it may outlive the beat that started it). */
  #registering: Promise<NodeRecord> | null = null;
  /** Fires `fenceAfter` of a lease after the last heartbeat the catalog took, unless another one resets it. */
  #deadman: NodeJS.Timeout | null = null;
  #beat: Promise<void> | null = null;
  #stopped = false;
  #record: NodeRecord | null = null;

  constructor(options: NodeMembershipOptions) {
    this.#o = options;
  }

  get id(): string {
    return this.#o.id;
  }

  get generation(): number {
    return this.#generation;
  }

  /** What this node's writes carry: its id and the generation it holds. */
  fence(): NodeFence {
    return { nodeId: this.#o.id, generation: this.#generation };
  }

  /** Why it is fenced (a sentence); null while it is a member in good standing. */
  get fencedBecause(): string | null {
    return this.#fenced;
  }

  /** The catalog's record as of the last heartbeat. */
  get record(): NodeRecord | null {
    return this.#record;
  }

  /** Registered, not fenced, and (for a node) its last heartbeat recent enough that the reaper cannot have fired. */
  isInGoodStanding(): boolean {
    if (this.#fenced !== null || this.#generation === 0) return false;
    return !this.#o.fenceOnSilence || performance.now() - this.#lastBeatAt < this.#o.leaseMs * fenceAfter;
  }

  /** Throws NODE_FENCED unless in good standing: a node that may be declared lost takes on nothing. */
  assertInGoodStanding(): void {
    if (this.isInGoodStanding()) return;
    throw new AppError('NODE_FENCED', {
      message: `This node (${this.#o.id}) is fenced: ${this.#fenced ?? 'its heartbeat is not current'}.`,
      details: { nodeId: this.#o.id, generation: this.#generation },
    });
  }

  /**
   * Registers (a restart keeps its generation and so adopts its sandboxes; a dead node or
   * `newGeneration` starts a new one). Throws what the store throws.
   */
  async register(newGeneration = false): Promise<NodeRecord> {
    const o = this.#o;
    const sentAt = performance.now();
    const { node, failed } = await o.store.registerNode({
      id: o.id,
      url: o.url,
      capacity: o.capacity,
      leaseMs: o.leaseMs,
      newGeneration,
      lostDetail: `The host ${o.id} lost its connection to the catalog and ended its desktops (fenced); this session's desktop is gone. Start a new session.`,
    });
    const previous = this.#generation;
    this.#generation = node.generation;
    this.#lastBeatAt = sentAt;
    this.#record = node;
    this.#fenced = null;
    this.#armDeadman();
    o.log.info(
      { nodeId: o.id, generation: node.generation, previousGeneration: previous || null, state: node.state, failed: failed.length },
      'node registered',
    );
    return node;
  }

  /** Heartbeats every lease/5 until stop(). */
  start(): void {
    const beatMs = Math.max(50, Math.floor(this.#o.leaseMs / 5));
    // One beat every beatMs from start to start, however long one took: a beat that timed out
    // does not push the next one (and the fence) later.
    const tick = () => {
      const started = performance.now();
      this.#beat = this.#heartbeat().finally(() => {
        this.#beat = null;
        if (!this.#stopped) this.#timer = setTimeout(tick, Math.max(0, beatMs - (performance.now() - started))).unref();
      });
    };
    this.#timer = setTimeout(tick, Math.max(50, Math.floor(this.#o.leaseMs / 5))).unref();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#deadman) clearTimeout(this.#deadman);
    await this.#beat;
    await this.#fencing;
  }

  /**
   * Silence fences on time, not at the next failed beat: a timer due `fenceAfter` of a lease after
   * the last heartbeat the catalog took (a failed beat is only known once it has timed out, which
   * would put the fence up to a beat later, close to the reaper).
   */
  #armDeadman(): void {
    if (!this.#o.fenceOnSilence || this.#stopped || this.#fenced !== null) return;
    if (this.#deadman) clearTimeout(this.#deadman);
    const dueMs = this.#lastBeatAt + this.#o.leaseMs * fenceAfter - performance.now();
    this.#deadman = setTimeout(
      () => {
        this.#deadman = null;
        if (this.#stopped || this.#fenced !== null) return;
        const silentMs = Math.round(performance.now() - this.#lastBeatAt);
        void this.#fenceSelf(`no heartbeat reached the catalog for ${silentMs} ms (lease ${this.#o.leaseMs} ms)`);
      },
      Math.max(0, dueMs),
    ).unref();
  }

  /**
   * A store call bounded by one beat: a catalog behind a dead network does not refuse, it hangs
   * (until the driver's query timeout, longer than a short lease), and the fence must not wait for it.
   */
  #bounded<T>(call: Promise<T>): Promise<T> {
    const beatMs = Math.max(50, Math.floor(this.#o.leaseMs / 5));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new AppError('STORE_UNAVAILABLE', { message: `The catalog did not answer within ${beatMs} ms.` })), beatMs);
    });
    call.catch(() => {}); // it may still fail after the timeout: nobody waits for it then
    return Promise.race([call, timeout]).finally(() => clearTimeout(timer));
  }

  async #heartbeat(): Promise<void> {
    const o = this.#o;
    await this.#fencing;
    if (this.#fenced !== null) {
      // Back as a new generation once the catalog answers. One registration at a time: one that
      // outlives its beat (a connection to the catalog being made again) goes on, and the next
      // beat waits for it rather than register yet another generation.
      this.#registering ??= this.register(true).finally(() => {
        this.#registering = null;
      });
      await this.#bounded(this.#registering).catch((error: unknown) => o.log.debug({ err: error }, 'fenced node: catalog still unreachable'));
      return;
    }
    try {
      const sentAt = performance.now();
      const record = await this.#bounded(o.store.heartbeatNode(this.fence()));
      // Fenced meanwhile (the deadman fired while this beat was on its way): the next beat registers anew.
      if (this.#fenced !== null) return;
      if (record) {
        this.#lastBeatAt = sentAt;
        this.#record = record;
        this.#armDeadman();
        return;
      }
      await this.#fenceSelf('the catalog no longer has this generation (the node was declared lost)');
    } catch (error) {
      // Silence fences through the deadman (#armDeadman), on time.
      o.log.warn({ err: error, nodeId: o.id, silentMs: Math.round(performance.now() - this.#lastBeatAt) }, 'node heartbeat failed');
    }
  }

  #fenceSelf(why: string): Promise<void> {
    if (this.#fenced !== null) return this.#fencing ?? Promise.resolve();
    this.#fenced = why;
    if (this.#deadman) clearTimeout(this.#deadman);
    this.#o.log.error({ nodeId: this.#o.id, generation: this.#generation, why }, 'node fenced itself: ending its sandboxes');
    const fencing = this.#o
      .fence(why)
      .catch((error: unknown) => this.#o.log.error({ err: error }, 'fencing: could not end every sandbox'))
      .finally(() => {
        if (this.#fencing === fencing) this.#fencing = null;
      });
    this.#fencing = fencing;
    return fencing;
  }
}
