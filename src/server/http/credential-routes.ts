import { accessTokenResponse, credentialResponse, keyRotationResponse } from '../../protocol/credentials.js';
import { AppError } from '../../protocol/errors.js';
import { errorResponse, sessionSchema } from '../../protocol/session.js';
import type { Store } from '../../store/store.js';
import type { Refresher } from '../credentials/refresher.js';
import type { Vault } from '../credentials/vault.js';
import type { SessionService } from '../sessions/session-manager.js';
import { isAdmin, type Principal } from './auth.js';
import { defineRoute, sessionParams, type RouteDef } from './routes.js';

// Handing credentials out, and rotating the key that seals them. Both need an API key (`api-key`):
// a dashboard cookie or a viewer ticket is refused with API_KEY_REQUIRED, so that a browser tab
// never holds a refresh token. The content never reaches a log line or a URL.

export interface CredentialRouteDeps {
  vault: Vault;
  store: Store;
  refresher: Refresher;
  sessions: SessionService;
}

const common = { 400: errorResponse, 401: errorResponse, 403: errorResponse, 500: errorResponse, 503: errorResponse };

export function credentialRoutes(deps: CredentialRouteDeps): RouteDef[] {
  const keyOf = (principal: Principal | null) =>
    principal?.kind === 'api-key' ? { apiKeyId: principal.keyId, apiKeyName: principal.keyName } : { apiKeyId: null, apiKeyName: null };
  return [
    defineRoute({
      method: 'GET',
      url: '/v1/sessions/:id/credentials',
      operationId: 'getSessionCredentials',
      summary: 'The credential file captured for the session (API key only). Every read is a `credentials.read` event on the session’s timeline.',
      auth: 'api-key',
      params: sessionParams,
      responses: { 200: credentialResponse, ...common, 404: errorResponse },
      handler: async ({ params, principal, request }) => {
        const id = params.id;
        const credential = await deps.vault.get(id);
        if (!credential) {
          if (!(await deps.store.getSession(id))) throw new AppError('SESSION_NOT_FOUND', { details: { sessionId: id } });
          throw new AppError('CREDENTIALS_NOT_FOUND', { details: { sessionId: id } });
        }
        const key = keyOf(principal);
        // Recorded before the content leaves: a read that cannot be audited does not happen.
        await deps.store.appendEvent(id, { type: 'credentials.read', details: { requestId: request.id, ...key } });
        request.log.info({ sessionId: id, ...key, keyId: credential.keyId }, 'credentials read');
        return {
          sessionId: id,
          provider: credential.provider,
          file: credential.content,
          capturedAt: credential.capturedAt,
          expiresAt: credential.expiresAt,
          account: credential.account,
          verification: credential.verification,
        };
      },
    }),
    defineRoute({
      method: 'GET',
      url: '/v1/sessions/:id/credentials/access-token',
      operationId: 'getSessionAccessToken',
      summary:
        'A fresh access token for the provider’s API, without the refresh token (API key only): porthole refreshes the grant first when its refresh is due or the token has expired. 409 CREDENTIAL_NEEDS_LOGIN when the provider refused the refresh. Every read is a `credentials.read` event (`part: access-token`).',
      auth: 'api-key',
      params: sessionParams,
      responses: { 200: accessTokenResponse, ...common, 404: errorResponse, 409: errorResponse },
      handler: async ({ params, principal, request }) => {
        const id = params.id;
        if (!(await deps.store.getSession(id))) throw new AppError('SESSION_NOT_FOUND', { details: { sessionId: id } });
        const { token, provider, account } = await deps.refresher.accessToken(id);
        const key = keyOf(principal);
        await deps.store.appendEvent(id, { type: 'credentials.read', details: { requestId: request.id, part: 'access-token', ...key } });
        request.log.info({ sessionId: id, ...key }, 'access token read');
        return { sessionId: id, provider, accessToken: token.accessToken, tokenType: token.tokenType, expiresAt: token.expiresAt, account };
      },
    }),
    defineRoute({
      method: 'POST',
      url: '/v1/sessions/:id/sign-in-again',
      operationId: 'signInAgain',
      summary:
        'A new session for the same user and provider, owned by the same API key: what to start when a credential needs a new sign-in (`needs_login`). The old session and its credential stay as they are.',
      auth: 'api',
      params: sessionParams,
      status: 201,
      responses: { 201: sessionSchema, ...common, 404: errorResponse, 409: errorResponse, 429: errorResponse },
      handler: async ({ params, request }) => {
        const old = await deps.sessions.get(params.id);
        if (old.provider === null) {
          throw new AppError('VALIDATION_FAILED', { message: 'That session has no provider to sign in to again.', details: { sessionId: old.id } });
        }
        const fresh = await deps.sessions.create({ provider: old.provider, userId: old.userId ?? undefined }, old.apiKeyId);
        request.log.info({ sessionId: fresh.id, replaces: old.id }, 'sign-in started again');
        return fresh;
      },
    }),
    defineRoute({
      method: 'POST',
      url: '/v1/keys/rotate',
      operationId: 'rotateMasterKey',
      summary:
        'Re-encrypt every stored credential and webhook secret under a new master key, then forget the old one (admin API key only). Needs the keyring in the data directory: a key from PORTHOLE_MASTER_KEY gets 409 KEY_ROTATION_UNAVAILABLE.',
      auth: 'api-key',
      responses: { 200: keyRotationResponse, ...common, 409: errorResponse },
      handler: async ({ principal, request }) => {
        if (!isAdmin(principal)) throw new AppError('API_KEY_ADMIN_REQUIRED');
        request.log.info(keyOf(principal), 'master key rotation requested');
        return deps.vault.rotate();
      },
    }),
  ];
}
