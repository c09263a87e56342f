import type { Session } from '../../src/protocol/session.js';

// What the cluster tests read of the nodes API (src/protocol/nodes.ts, issue 12's contract).

/** The node (host) a session was placed on; undefined before placement. */
export function nodeIdOf(session: Session): string | undefined {
  return (session as Session & { node?: { id: string; generation: number } | null }).node?.id;
}

/** The generation of that node the session was placed under. */
export function nodeGenerationOf(session: Session): number | undefined {
  return (session as Session & { node?: { id: string; generation: number } | null }).node?.generation;
}

/** GET /v1/nodes's entries. */
export interface NodeView {
  readonly id: string;
  readonly url: string | null;
  readonly state: 'active' | 'draining' | 'dead';
  readonly generation: number;
  readonly capacity: number;
  readonly load: number;
  readonly heartbeatAgeMs: number;
  readonly note: string | null;
}
