import { z } from 'zod';
import { agentEventBody, credentialDelivery } from '../../protocol/agent.js';
import { AppError } from '../../protocol/errors.js';
import { sessionIdPattern, type SessionId } from '../../protocol/ids.js';
import { errorResponse, isTerminal } from '../../protocol/session.js';
import type { RouteDef, RouteDeps } from './routes.js';

// The agent channel, server side: the in-sandbox agent reports its login's progress and delivers
// the credential file, each authenticated with the sandbox's own token (auth 'agent').

const idParams = z.object({ id: z.string().regex(sessionIdPattern, 'must be a session id (ses_…)') });
const deliveryResponse = z.object({ stored: z.boolean(), state: z.string() });
const common = { 400: errorResponse, 401: errorResponse, 503: errorResponse };

export function agentRoutes(deps: Pick<RouteDeps, 'sessions' | 'store'>): RouteDef[] {
  return [
    {
      method: 'POST',
      url: '/v1/agent/sessions/:id/events',
      operationId: 'agentEvent',
      summary: 'The agent reports the login’s progress (for the timeline). Sandbox token only.',
      auth: 'agent',
      params: idParams,
      body: agentEventBody,
      status: 204,
      responses: { 204: z.null(), 410: errorResponse, ...common },
      async handler({ params, body }) {
        const id = params.id as SessionId;
        const session = await deps.sessions.get(id);
        if (isTerminal(session.state)) throw new AppError('SESSION_ENDED', { details: { state: session.state } });
        const event = body as z.infer<typeof agentEventBody>;
        await deps.store.appendEvent(id, { type: event.type, details: event.details });
        return null;
      },
    },
    {
      method: 'POST',
      url: '/v1/agent/sessions/:id/credentials',
      operationId: 'agentDeliverCredentials',
      summary: 'The agent delivers the credential file; the server seals it and completes the session. 201 stored, 200 stored before. Sandbox token only.',
      auth: 'agent',
      params: idParams,
      body: credentialDelivery,
      responses: { 200: deliveryResponse, 201: deliveryResponse, 409: errorResponse, 410: errorResponse, 422: errorResponse, ...common },
      async handler({ params, body, reply }) {
        const { created, session } = await deps.sessions.complete(params.id as SessionId, body as z.infer<typeof credentialDelivery>);
        reply.status(created ? 201 : 200);
        return { stored: created, state: session.state };
      },
    },
  ];
}
