import { z } from 'zod';
import { agentEventBody, agentEventLimits, agentEventSizeProblem, agentEventTypes, credentialDelivery } from '../../protocol/agent.js';
import { AppError } from '../../protocol/errors.js';
import { errorResponse, isTerminal } from '../../protocol/session.js';
import { defineRoute, sessionParams, type RouteDef, type RouteDeps } from './routes.js';
import { TokenBuckets } from './token-buckets.js';

// The agent channel, server side: the in-sandbox agent reports its login's progress and delivers
// the credential file, each authenticated with the sandbox's own token (auth 'agent'). The person
// in the sandbox can reach that token, so events are bounded (agentEventLimits): size, rate per
// session, and a count per session. Delivery is not rate-limited: it completes or fails the session.

const deliveryResponse = z.object({ stored: z.boolean(), state: z.string() });
const common = { 400: errorResponse, 401: errorResponse, 503: errorResponse };

export function agentRoutes(deps: Pick<RouteDeps, 'sessions' | 'store'>): RouteDef[] {
  const buckets = new TokenBuckets(agentEventLimits.burst, agentEventLimits.perSecond);
  return [
    defineRoute({
      method: 'POST',
      url: '/v1/agent/sessions/:id/events',
      operationId: 'agentEvent',
      summary: `The agent reports the login’s progress (for the timeline). Sandbox token only. Details of at most ${agentEventLimits.maxDetailsBytes} bytes; per session a burst of ${agentEventLimits.burst}, then ${agentEventLimits.perSecond}/s, and ${agentEventLimits.maxPerSession} events in all.`,
      auth: 'agent',
      params: sessionParams,
      body: agentEventBody,
      status: 204,
      responses: { 204: z.null(), 410: errorResponse, 429: errorResponse, ...common },
      async handler({ params, body, reply }) {
        const id = params.id;
        const session = await deps.sessions.get(id);
        if (isTerminal(session.state)) {
          buckets.forget(id);
          throw new AppError('SESSION_ENDED', { details: { state: session.state } });
        }
        // Every request costs a token, a refused one too: the bucket bounds the work, not just the rows.
        const waitMs = buckets.take(id);
        if (waitMs > 0) {
          reply.header('retry-after', String(Math.ceil(waitMs / 1000)));
          throw new AppError('AGENT_EVENTS_RATE_LIMITED', {
            details: { retryAfterMs: waitMs, burst: agentEventLimits.burst, perSecond: agentEventLimits.perSecond },
          });
        }
        const tooLarge = agentEventSizeProblem(body.details);
        if (tooLarge) throw new AppError('AGENT_EVENT_TOO_LARGE', { details: tooLarge });
        // Concurrent requests may pass this check together; the bucket keeps that to a burst.
        if ((await deps.store.countEvents(id, agentEventTypes)) >= agentEventLimits.maxPerSession) {
          throw new AppError('AGENT_EVENTS_LIMIT_REACHED', { details: { maxPerSession: agentEventLimits.maxPerSession } });
        }
        await deps.store.appendEvent(id, { type: body.type, details: body.details });
        return null;
      },
    }),
    defineRoute({
      method: 'POST',
      url: '/v1/agent/sessions/:id/credentials',
      operationId: 'agentDeliverCredentials',
      summary:
        'The agent delivers the credential file; the server verifies it (with the provider for demo, offline for the others), seals it and completes the session. 201 stored, 200 stored before; 422 CREDENTIAL_UNVERIFIED fails the session; 503 CREDENTIAL_VERIFY_UNAVAILABLE: deliver again. Sandbox token only.',
      auth: 'agent',
      params: sessionParams,
      body: credentialDelivery,
      responses: { 200: deliveryResponse, 201: deliveryResponse, 409: errorResponse, 410: errorResponse, 422: errorResponse, ...common },
      async handler({ params, body, reply }) {
        const { created, session } = await deps.sessions.complete(params.id, body);
        reply.status(created ? 201 : 200);
        return { stored: created, state: session.state };
      },
    }),
  ];
}
