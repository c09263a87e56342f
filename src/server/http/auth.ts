import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { AppError } from '../../protocol/errors.js';
import type { SessionId } from '../../protocol/ids.js';
import type { Store } from '../../store/store.js';
import type { Secret } from '../secret.js';
import { hashAgentToken } from '../sessions/agent-token.js';
import type { TicketSigner } from '../tickets.js';
import { isOriginAllowed, type OriginList } from './origin.js';

/**
 * Who is calling. A viewer (ticket) may only act on its own session, on the routes that allow it;
 * `chainStartedAt` is when its chain of renewed tickets began (see tickets.ts).
 */
export type Principal =
  /** `admin` sees every session; an app key only those it created. `keyId` is 'env' for PORTHOLE_API_KEY. */
  | { kind: 'api-key'; keyId: string; keyName: string; admin: boolean }
  | { kind: 'dashboard' }
  | { kind: 'viewer'; sessionId: SessionId; chainStartedAt: number }
  | { kind: 'agent'; sessionId: SessionId };

export const loginCookie = 'porthole_login';

export function hashApiKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

/** A new key's id and secret: `key_<12 hex>`, `ph_<32 base64url>`. */
export function newApiKey(): { id: string; key: string } {
  return { id: `key_${randomBytes(6).toString('hex')}`, key: `ph_${randomBytes(24).toString('base64url')}` };
}

export function sameSecret(a: string, b: string): boolean {
  const x = createHash('sha256').update(a).digest();
  const y = createHash('sha256').update(b).digest();
  return timingSafeEqual(x, y);
}

export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** PORTHOLE_API_KEY: the operator's own key, admin. */
const envKeyPrincipal: Principal = { kind: 'api-key', keyId: 'env', keyName: 'PORTHOLE_API_KEY', admin: true };

/** Sees every session: an admin key or the dashboard. An app key sees its own; a viewer its one. */
export function isAdmin(principal: Principal | null): boolean {
  return principal?.kind === 'dashboard' || (principal?.kind === 'api-key' && principal.admin);
}

/** The key a listing is narrowed to: an app key's own id, or undefined for those who see all. */
export function ownerScope(principal: Principal | null): string | undefined {
  return principal?.kind === 'api-key' && !principal.admin ? principal.keyId : undefined;
}

/** Throws SESSION_FORBIDDEN when an app key acts on a session another key created. */
export function assertCanSee(principal: Principal | null, session: { id: SessionId; apiKeyId: string | null }): void {
  const scope = ownerScope(principal);
  if (scope !== undefined && session.apiKeyId !== scope) throw new AppError('SESSION_FORBIDDEN', { details: { sessionId: session.id } });
}

export interface Authenticator {
  /** Throws UNAUTHENTICATED / API_KEY_INVALID / TICKET_* / CSRF_REJECTED. */
  authenticate(request: FastifyRequest, options: { ticketFor?: SessionId }): Promise<Principal>;
  /** The principal of an API key; throws API_KEY_INVALID (unknown or revoked). */
  apiKey(value: string): Promise<Principal>;
}

export function createAuthenticator(deps: { store: Store; configuredKey: Secret | null; tickets: TicketSigner; origins: OriginList }): Authenticator {
  const apiKey = async (value: string): Promise<Principal> => {
    if (deps.configuredKey && sameSecret(value, deps.configuredKey.reveal())) return envKeyPrincipal;
    const record = value.length > 0 && value.length <= 256 ? await deps.store.findApiKey(hashApiKey(value)) : null;
    if (!record || record.revokedAt !== null) throw new AppError('API_KEY_INVALID');
    return { kind: 'api-key', keyId: record.id, keyName: record.name, admin: record.admin };
  };
  return {
    apiKey,
    async authenticate(request, { ticketFor }) {
      const header = request.headers.authorization;
      if (header !== undefined) {
        const [scheme, value = ''] = header.split(/\s+/, 2);
        if (scheme?.toLowerCase() === 'bearer') return apiKey(value);
        if (scheme?.toLowerCase() === 'ticket' && ticketFor) {
          const { chainStartedAt } = deps.tickets.verify(value, ticketFor);
          return { kind: 'viewer', sessionId: ticketFor, chainStartedAt };
        }
        throw new AppError('UNAUTHENTICATED', { message: 'The Authorization header must be "Bearer <API key>".' });
      }
      if (deps.tickets.isValidLogin(readCookie(request.headers.cookie, loginCookie))) {
        // The cookie is SameSite=Strict; an Origin from elsewhere on a change is refused all the same.
        if (request.method !== 'GET' && !isOriginAllowed(request.headers.origin, deps.origins)) {
          throw new AppError('CSRF_REJECTED');
        }
        return { kind: 'dashboard' };
      }
      throw new AppError('UNAUTHENTICATED');
    },
  };
}

/**
 * The in-sandbox agent: `Authorization: Bearer <sandbox token>`, whose SHA-256 must equal the one
 * the server stored for this session at start. A missing token, a wrong one, or another sandbox's
 * all get the same AGENT_TOKEN_INVALID (401).
 */
export async function authenticateAgent(store: Store, request: FastifyRequest, sessionId: SessionId): Promise<Principal> {
  const [scheme, token] = (request.headers.authorization ?? '').split(' ', 2);
  const expected = await store.getAgentTokenHash(sessionId);
  if (scheme?.toLowerCase() !== 'bearer' || !token || !expected) throw new AppError('AGENT_TOKEN_INVALID');
  if (!sameSecret(hashAgentToken(token), expected)) throw new AppError('AGENT_TOKEN_INVALID');
  return { kind: 'agent', sessionId };
}
