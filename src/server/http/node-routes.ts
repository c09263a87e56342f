import { z } from 'zod';
import { AppError } from '../../protocol/errors.js';
import { nodeListResponse, nodeSchema } from '../../protocol/nodes.js';
import { errorResponse } from '../../protocol/session.js';
import type { Store } from '../../store/store.js';
import { defineRoute, type RouteDef } from './routes.js';

// The hosts: `porthole nodes list|drain|undrain`. Admin only: a drain changes where everyone's
// sessions go. A draining node takes no new session and its live ones finish; a node's own SIGTERM
// drains it the same way (src/cli/main.ts, `porthole node`).

export interface NodeRouteDeps {
  store: Store;
}

const common = { 401: errorResponse, 403: errorResponse, 500: errorResponse, 503: errorResponse };
const nodeParams = z.object({ id: z.string().min(1).max(63) });

export function nodeRoutes(deps: NodeRouteDeps): RouteDef[] {
  const setDraining = async (id: string, draining: boolean) => {
    const node = await deps.store.setNodeDraining(id, draining, draining ? 'drained by an operator (porthole nodes drain)' : null);
    if (!node) throw new AppError('NODE_NOT_FOUND', { details: { nodeId: id } });
    return node;
  };
  return [
    defineRoute({
      method: 'GET',
      url: '/v1/nodes',
      operationId: 'listNodes',
      summary: 'The porthole nodes (hosts) in the catalog: state, generation, load against capacity, heartbeat age.',
      auth: 'admin',
      responses: { 200: nodeListResponse, ...common },
      handler: async () => ({ nodes: await deps.store.listNodes() }),
    }),
    defineRoute({
      method: 'POST',
      url: '/v1/nodes/:id/drain',
      operationId: 'drainNode',
      summary: 'Drains a node: it takes no new sessions; its live ones finish. A dead node stays dead.',
      auth: 'admin',
      params: nodeParams,
      responses: { 200: nodeSchema, 404: errorResponse, ...common },
      handler: async ({ params }) => setDraining(params.id, true),
    }),
    defineRoute({
      method: 'POST',
      url: '/v1/nodes/:id/undrain',
      operationId: 'undrainNode',
      summary: 'Undrains a node: it takes new sessions again.',
      auth: 'admin',
      params: nodeParams,
      responses: { 200: nodeSchema, 404: errorResponse, ...common },
      handler: async ({ params }) => setDraining(params.id, false),
    }),
  ];
}
