import { z } from 'zod';

// porthole nodes (hosts) as the API shows them: GET /v1/nodes, `porthole nodes list`.

export const nodeStates = ['active', 'draining', 'dead'] as const;

export const nodeSchema = z.object({
  id: z.string(),
  /** How servers reach it; null for an all-in-one. */
  url: z.string().nullable(),
  state: z.enum(nodeStates),
  generation: z.number().int(),
  capacity: z.number().int(),
  /** Its live sessions. */
  load: z.number().int(),
  leaseMs: z.number().int(),
  heartbeatAt: z.string(),
  /** Milliseconds since its last heartbeat, by the catalog's clock. */
  heartbeatAgeMs: z.number().int(),
  registeredAt: z.string(),
  /** Why it is dead or draining. */
  note: z.string().nullable(),
});
export type NodeView = z.infer<typeof nodeSchema>;

export const nodeListResponse = z.object({ nodes: z.array(nodeSchema) });

export const readinessResponse = z.object({
  ok: z.boolean(),
  version: z.string(),
  role: z.enum(['all-in-one', 'server', 'node']),
  /** For a node: its id, generation and standing. */
  node: z.object({ id: z.string(), generation: z.number().int(), state: z.string(), fenced: z.string().nullable() }).nullable(),
});
export type Readiness = z.infer<typeof readinessResponse>;
