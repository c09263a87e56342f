import { credentialResponse, keyRotationResponse } from '../../protocol/credentials.js';
import { AppError } from '../../protocol/errors.js';
import { errorResponse } from '../../protocol/session.js';
import type { Store } from '../../store/store.js';
import type { Vault } from '../credentials/vault.js';
import { isAdmin, type Principal } from './auth.js';
import { defineRoute, sessionParams, type RouteDef } from './routes.js';

// Handing credentials out, and rotating the key that seals them. Both need an API key (`api-key`):
// a dashboard cookie or a viewer ticket is refused with API_KEY_REQUIRED, so that a browser tab
// never holds a refresh token. The content never reaches a log line or a URL.

export interface CredentialRouteDeps {
  vault: Vault;
  store: Store;
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
