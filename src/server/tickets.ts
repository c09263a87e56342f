import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { AppError } from '../protocol/errors.js';
import type { SessionId } from '../protocol/ids.js';

// Viewer tickets: short-lived, HMAC-signed, bound to one session. They ride in a URL (the viewer
// page, the WebSocket) because browsers cannot set headers on a WebSocket, so they must expire fast;
// the viewer renews its ticket at half-life to reconnect for the session's whole life. A renewal
// keeps the time its chain began (the ticket an API key or the dashboard issued), so a ticket that
// leaked cannot be renewed forever: the chain ends after maxChainMs.
// Format: <purpose>.<subject>.<expiresAtMs base36>.<chainStartedAtMs base36>.<nonce>.<hmac base64url>
// A viewer's subject names its session and, once placed, the node (host) that runs it and that
// node's generation: <sessionId>~<nodeId base64url>~<generation>. Any server relays it to that node,
// which checks the ticket again and refuses one for a generation it no longer has.

/** The node (host) a session runs on and its generation, as a ticket names them. */
export interface TicketNode {
  id: string;
  generation: number;
}

/**
 * vt: a viewer; vp: the server's own diagnosis probe (relay only, never counted as a viewer); dash:
 * the dashboard's login cookie; lk: a one-time dashboard login link (`porthole login-link`).
 */
type Purpose = 'vt' | 'vp' | 'dash' | 'lk';

/** However long sessions may live, a chain of renewed viewer tickets ends after this. */
export const maxTicketChainMs = 12 * 3600_000;

export interface TicketSigner {
  /** A ticket that starts a new chain: for an API key or the dashboard. */
  issue(sessionId: SessionId, node?: TicketNode | null): { ticket: string; expiresAt: Date };
  /**
   * The next ticket of a chain that began at `chainStartedAt` (from `verify`); throws
   * TICKET_RENEWAL_LIMIT once the chain is maxChainMs old. The last ticket still lives its TTL: a
   * viewer learns the end from this refusal, not from a ticket that expired early.
   */
  renew(sessionId: SessionId, chainStartedAt: number, node?: TicketNode | null): { ticket: string; expiresAt: Date };
  /** A ticket for the diagnosis's relay hop: opens the relay like a viewer's but is not counted as one. */
  issueProbe(sessionId: SessionId, node?: TicketNode | null): { ticket: string; expiresAt: Date };
  /**
   * Throws TICKET_MISSING/TICKET_INVALID/TICKET_EXPIRED/TICKET_WRONG_SESSION. A probe ticket is
   * accepted only where `options.allowProbe` says so (the relay); the result says which it was.
   */
  verify(
    ticket: string | null | undefined,
    sessionId: SessionId,
    options?: { allowProbe?: boolean },
  ): { isProbe: boolean; chainStartedAt: number; node: TicketNode | null };
  /** A dashboard login cookie value, valid for `ttlMs`. */
  issueLogin(ttlMs: number): string;
  /** Signed, unexpired and not revoked. */
  isValidLogin(value: string | undefined): boolean;
  /**
   * Refuses this login cookie value from now on (logout), until it expires or the server restarts:
   * the list is in memory. Idempotent; an invalid value is ignored.
   */
  revokeLogin(value: string | undefined): void;
  /**
   * A one-time login link's token, valid for `ttlMs`. Anyone holding the signing key can make one
   * (the CLI, with local access to the data directory), so the server needs no state to issue it.
   */
  issueLoginLink(ttlMs: number): { token: string; expiresAt: Date };
  /**
   * True once per signed, unexpired link token; false after (used), expired, or not one. The used
   * list is in memory: after a restart a link still within its TTL works once more.
   */
  redeemLoginLink(value: string | undefined): boolean;
}

export interface TicketSignerOptions {
  /** How long a chain of renewals may last; capped at maxTicketChainMs. */
  maxChainMs?: number;
  now?: () => number;
}

export function createTicketSigner(key: Buffer, ttlMs: number, options: TicketSignerOptions = {}): TicketSigner {
  const now = options.now ?? Date.now;
  const maxChainMs = Math.min(options.maxChainMs ?? maxTicketChainMs, maxTicketChainMs);
  const mac = (text: string) => createHmac('sha256', key).update(text).digest('base64url');
  /** Revoked login values → their expiry, so the list forgets them once they could not be used anyway. */
  const revokedLogins = new Map<string, number>();
  /** Login links already used → their expiry. */
  const usedLinks = new Map<string, number>();

  function sign(purpose: Purpose, subject: string, expiresAt: number, chainStartedAt: number): string {
    const body = `${purpose}.${subject}.${expiresAt.toString(36)}.${chainStartedAt.toString(36)}.${randomBytes(9).toString('base64url')}`;
    return `${body}.${mac(body)}`;
  }

  /** Returns the parts of a well-signed value of that purpose, or null. Expiry is checked by callers. */
  function open(purpose: Purpose, value: string): { subject: string; expiresAt: number; chainStartedAt: number } | null {
    if (value.length > 256) return null;
    const parts = value.split('.');
    if (parts.length !== 6 || parts[0] !== purpose) return null;
    const body = parts.slice(0, 5).join('.');
    // Only the canonical spelling: Buffer.from(…, 'base64url') skips characters outside the
    // alphabet and ignores the unused low bits of the last one, so `ab*c` or a sibling last
    // character would otherwise verify too, and any list keyed on the ticket string (revocation,
    // replay) could be sidestepped. A strict decode is one that encodes back to the same text.
    const spelled = parts[5] ?? '';
    const given = Buffer.from(spelled, 'base64url');
    if (given.toString('base64url') !== spelled) return null;
    const expected = Buffer.from(mac(body), 'base64url');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return null;
    const expiresAt = parseInt(parts[2] ?? '', 36);
    const chainStartedAt = parseInt(parts[3] ?? '', 36);
    if (!Number.isSafeInteger(expiresAt) || !Number.isSafeInteger(chainStartedAt)) return null;
    return { subject: parts[1] ?? '', expiresAt, chainStartedAt };
  }

  const viewerTicket = (purpose: Purpose, sessionId: SessionId, expiresAt: number, chainStartedAt: number, node: TicketNode | null | undefined) => ({
    ticket: sign(purpose, node ? `${sessionId}~${Buffer.from(node.id).toString('base64url')}~${node.generation}` : sessionId, expiresAt, chainStartedAt),
    expiresAt: new Date(expiresAt),
  });

  /** A viewer subject's session id and node. */
  function parseSubject(subject: string): { sessionId: string; node: TicketNode | null } {
    const [sessionId = '', nodeId, generation] = subject.split('~');
    if (nodeId === undefined || generation === undefined) return { sessionId, node: null };
    return { sessionId, node: { id: Buffer.from(nodeId, 'base64url').toString(), generation: Number(generation) } };
  }

  return {
    issue(sessionId, node) {
      const at = now();
      return viewerTicket('vt', sessionId, at + ttlMs, at, node);
    },
    renew(sessionId, chainStartedAt, node) {
      const at = now();
      if (at - chainStartedAt >= maxChainMs) {
        throw new AppError('TICKET_RENEWAL_LIMIT', { details: { chainStartedAt: new Date(chainStartedAt).toISOString(), maxChainMs } });
      }
      return viewerTicket('vt', sessionId, at + ttlMs, chainStartedAt, node);
    },
    issueProbe(sessionId, node) {
      const at = now();
      return viewerTicket('vp', sessionId, at + ttlMs, at, node);
    },
    verify(ticket, sessionId, options = {}) {
      if (!ticket) throw new AppError('TICKET_MISSING');
      const probe = options.allowProbe ? open('vp', ticket) : null;
      const opened = probe ?? open('vt', ticket);
      if (!opened) throw new AppError('TICKET_INVALID');
      if (opened.expiresAt <= now()) throw new AppError('TICKET_EXPIRED');
      const subject = parseSubject(opened.subject);
      if (subject.sessionId !== sessionId) throw new AppError('TICKET_WRONG_SESSION');
      return { isProbe: probe !== null, chainStartedAt: opened.chainStartedAt, node: subject.node };
    },
    issueLogin(lifetimeMs) {
      const at = now();
      return sign('dash', 'admin', at + lifetimeMs, at);
    },
    isValidLogin(value) {
      if (!value) return false;
      const opened = open('dash', value);
      return opened !== null && opened.expiresAt > now() && !revokedLogins.has(value);
    },
    issueLoginLink(ttlMs) {
      const at = now();
      return { token: sign('lk', 'admin', at + ttlMs, at), expiresAt: new Date(at + ttlMs) };
    },
    redeemLoginLink(value) {
      const opened = value ? open('lk', value) : null;
      const at = now();
      if (!value || !opened || opened.expiresAt <= at || usedLinks.has(value)) return false;
      for (const [used, expiresAt] of usedLinks) if (expiresAt <= at) usedLinks.delete(used);
      usedLinks.set(value, opened.expiresAt);
      return true;
    },
    revokeLogin(value) {
      const opened = value ? open('dash', value) : null;
      if (!value || !opened) return;
      const at = now();
      for (const [revoked, expiresAt] of revokedLogins) if (expiresAt <= at) revokedLogins.delete(revoked);
      if (opened.expiresAt > at) revokedLogins.set(value, opened.expiresAt);
    },
  };
}
