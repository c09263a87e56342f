import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { AppError } from '../protocol/errors.js';
import type { SessionId } from '../protocol/ids.js';

// Viewer tickets: short-lived, HMAC-signed, bound to one session. They ride in a URL (the viewer
// page, the WebSocket) because browsers cannot set headers on a WebSocket, so they must expire fast;
// the viewer renews its ticket at half-life to reconnect for the session's whole life.
// Format: <purpose>.<subject>.<expiresAtMs base36>.<nonce>.<hmac base64url>

/** vt: a viewer; vp: the server's own diagnosis probe (relay only, never counted as a viewer); dash: the dashboard. */
type Purpose = 'vt' | 'vp' | 'dash';

export interface TicketSigner {
  issue(sessionId: SessionId): { ticket: string; expiresAt: Date };
  /** A ticket for the diagnosis's relay hop: opens the relay like a viewer's but is not counted as one. */
  issueProbe(sessionId: SessionId): { ticket: string; expiresAt: Date };
  /**
   * Throws TICKET_MISSING/TICKET_INVALID/TICKET_EXPIRED/TICKET_WRONG_SESSION. A probe ticket is
   * accepted only where `options.allowProbe` says so (the relay); the result says which it was.
   */
  verify(ticket: string | null | undefined, sessionId: SessionId, options?: { allowProbe?: boolean }): { isProbe: boolean };
  /** A dashboard login cookie value, valid for `ttlMs`. */
  issueLogin(ttlMs: number): string;
  isValidLogin(value: string | undefined): boolean;
}

export function createTicketSigner(key: Buffer, ttlMs: number, now: () => number = Date.now): TicketSigner {
  const mac = (text: string) => createHmac('sha256', key).update(text).digest('base64url');

  function sign(purpose: Purpose, subject: string, lifetimeMs: number): { value: string; expiresAt: number } {
    const expiresAt = now() + lifetimeMs;
    const body = `${purpose}.${subject}.${expiresAt.toString(36)}.${randomBytes(9).toString('base64url')}`;
    return { value: `${body}.${mac(body)}`, expiresAt };
  }

  /** Returns the parts of a well-signed value of that purpose, or null. Expiry is checked by callers. */
  function open(purpose: Purpose, value: string): { subject: string; expiresAt: number } | null {
    if (value.length > 256) return null;
    const parts = value.split('.');
    if (parts.length !== 5 || parts[0] !== purpose) return null;
    const body = parts.slice(0, 4).join('.');
    // Only the canonical spelling: Buffer.from(…, 'base64url') skips characters outside the
    // alphabet and ignores the unused low bits of the last one, so `ab*c` or a sibling last
    // character would otherwise verify too, and any list keyed on the ticket string (revocation,
    // replay) could be sidestepped. A strict decode is one that encodes back to the same text.
    const spelled = parts[4] ?? '';
    const given = Buffer.from(spelled, 'base64url');
    if (given.toString('base64url') !== spelled) return null;
    const expected = Buffer.from(mac(body), 'base64url');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return null;
    const expiresAt = parseInt(parts[2] ?? '', 36);
    if (!Number.isSafeInteger(expiresAt)) return null;
    return { subject: parts[1] ?? '', expiresAt };
  }

  return {
    issue(sessionId) {
      const { value, expiresAt } = sign('vt', sessionId, ttlMs);
      return { ticket: value, expiresAt: new Date(expiresAt) };
    },
    issueProbe(sessionId) {
      const { value, expiresAt } = sign('vp', sessionId, ttlMs);
      return { ticket: value, expiresAt: new Date(expiresAt) };
    },
    verify(ticket, sessionId, options = {}) {
      if (!ticket) throw new AppError('TICKET_MISSING');
      const probe = options.allowProbe ? open('vp', ticket) : null;
      const opened = probe ?? open('vt', ticket);
      if (!opened) throw new AppError('TICKET_INVALID');
      if (opened.expiresAt <= now()) throw new AppError('TICKET_EXPIRED');
      if (opened.subject !== sessionId) throw new AppError('TICKET_WRONG_SESSION');
      return { isProbe: probe !== null };
    },
    issueLogin(lifetimeMs) {
      return sign('dash', 'admin', lifetimeMs).value;
    },
    isValidLogin(value) {
      if (!value) return false;
      const opened = open('dash', value);
      return opened !== null && opened.expiresAt > now();
    },
  };
}
