import { randomBytes } from 'node:crypto';
import {
  apiKeySchema,
  createdKeySchema,
  createKeyBody,
  deliveryListResponse,
  keyIdParams,
  keyListResponse,
  loginLinkResponse,
  loginLinkTtlMs,
  type ApiKey,
} from '../../protocol/apps.js';
import { AppError } from '../../protocol/errors.js';
import { sessionIdSchema } from '../../protocol/ids.js';
import { errorResponse } from '../../protocol/session.js';
import type { ApiKeyRecord, Store } from '../../store/store.js';
import type { Vault } from '../credentials/vault.js';
import type { TicketSigner } from '../tickets.js';
import { hashApiKey, newApiKey, ownerScope } from './auth.js';
import type { TrustedOrigins } from './origin.js';
import { defineRoute, type RouteDef } from './routes.js';
import { z } from 'zod';

// Apps and their keys: an admin makes a key per app (optionally with its own webhook), lists and
// revokes them; an app reads the log of its webhooks. A new dashboard login link needs an admin.

export interface KeyRouteDeps {
  store: Store;
  vault: Vault;
  tickets: TicketSigner;
  origins: Pick<TrustedOrigins, 'baseUrl'>;
}

const common = { 400: errorResponse, 401: errorResponse, 403: errorResponse, 503: errorResponse };

export function keyView(record: ApiKeyRecord): ApiKey {
  return { id: record.id, name: record.name, admin: record.admin, webhookUrl: record.webhookUrl, createdAt: record.createdAt, revokedAt: record.revokedAt };
}

/** A Standard Webhooks secret: `whsec_` and 24 random bytes in base64. */
export function newWebhookSecret(): string {
  return `whsec_${randomBytes(24).toString('base64')}`;
}

const deliveriesQuery = z.object({
  sessionId: sessionIdSchema.optional(),
  limit: z.coerce.number().int().min(1).max(500).default(100),
});

export function keyRoutes(deps: KeyRouteDeps): RouteDef[] {
  return [
    defineRoute({
      method: 'POST',
      url: '/v1/keys',
      operationId: 'createKey',
      summary:
        'A new API key (admin only). An app key sees only the sessions it creates; `webhookUrl` sends those sessions’ webhooks there. The key and the webhook secret are in this answer only.',
      auth: 'admin',
      body: createKeyBody,
      status: 201,
      responses: { 201: createdKeySchema, ...common },
      handler: async ({ body, request }) => {
        const { id, key } = newApiKey();
        const webhookSecret = body.webhookUrl ? newWebhookSecret() : null;
        const record = await deps.store.addApiKey({
          id,
          name: body.name,
          keyHash: hashApiKey(key),
          admin: body.admin,
          webhookUrl: body.webhookUrl ?? null,
          webhookSecret: webhookSecret ? deps.vault.sealWebhookSecret(id, webhookSecret) : null,
        });
        request.log.info({ apiKeyId: id, name: body.name, admin: body.admin, hasWebhook: webhookSecret !== null }, 'api key created');
        return { ...keyView(record), key, webhookSecret };
      },
    }),
    defineRoute({
      method: 'GET',
      url: '/v1/keys',
      operationId: 'listKeys',
      summary: 'Every API key, oldest first, revoked ones included (admin only). Never the key itself.',
      auth: 'admin',
      responses: { 200: keyListResponse, ...common },
      handler: async () => ({ keys: (await deps.store.listApiKeys()).map(keyView) }),
    }),
    defineRoute({
      method: 'DELETE',
      url: '/v1/keys/:keyId',
      operationId: 'revokeKey',
      summary: 'Revoke an API key (admin only): from now on it authenticates nothing. Idempotent.',
      auth: 'admin',
      params: keyIdParams,
      responses: { 200: apiKeySchema, ...common, 404: errorResponse },
      handler: async ({ params, request }) => {
        const record = await deps.store.revokeApiKey(params.keyId);
        if (!record) throw new AppError('ROUTE_NOT_FOUND', { message: `No API key has the id ${params.keyId}.` });
        request.log.info({ apiKeyId: record.id }, 'api key revoked');
        return keyView(record);
      },
    }),
    defineRoute({
      method: 'GET',
      url: '/v1/webhooks/deliveries',
      operationId: 'listWebhookDeliveries',
      summary: 'The webhook delivery log, newest first: each request’s state, attempts and last answer. An app key sees those to its own webhook.',
      auth: 'api',
      query: deliveriesQuery,
      responses: { 200: deliveryListResponse, ...common },
      handler: async ({ query, principal }) => {
        const deliveries = await deps.store.listDeliveries({ sessionId: query.sessionId, apiKeyId: ownerScope(principal), limit: query.limit });
        return {
          deliveries: deliveries.map((d) => ({
            id: d.id,
            sessionId: d.sessionId,
            type: d.type,
            url: d.url,
            state: d.state,
            attempts: d.attempts,
            lastStatus: d.lastStatus,
            lastError: d.lastError,
            nextAttemptAt: d.state === 'pending' ? d.nextAttemptAt : null,
            createdAt: d.createdAt,
            deliveredAt: d.deliveredAt,
          })),
        };
      },
    }),
    defineRoute({
      method: 'POST',
      url: '/v1/login-links',
      operationId: 'createLoginLink',
      summary: `A one-time dashboard login link, valid ${loginLinkTtlMs / 60_000} minutes (admin API key only).`,
      auth: 'admin',
      status: 201,
      responses: { 201: loginLinkResponse, ...common },
      handler: async ({ principal, request }) => {
        if (principal?.kind !== 'api-key') throw new AppError('API_KEY_REQUIRED');
        const { token, expiresAt } = deps.tickets.issueLoginLink(loginLinkTtlMs);
        request.log.info({ apiKeyId: principal.keyId }, 'login link issued');
        return { url: `${deps.origins.baseUrl}/login?token=${encodeURIComponent(token)}`, expiresAt: expiresAt.toISOString() };
      },
    }),
  ];
}
