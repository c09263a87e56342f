import type { NodeFence } from '../../store/store.js';

/** The node this manager runs sessions on (src/server/cluster/membership.ts). */
export interface LocalNode {
  readonly id: string;
  /** Its id and current generation: every state change it makes carries them. */
  fence(): NodeFence;
  /** Throws NODE_FENCED while fenced or not heartbeating: it takes on no session then. */
  assertInGoodStanding(): void;
  isInGoodStanding(): boolean;
}
