// Keeps the viewer's ticket fresh. Tickets live about a minute because they ride in URLs; the page
// must still be able to reconnect an hour later, so it trades its ticket for a new one at each
// half-life. The first trade happens at once: the ticket the page was opened with says nothing
// readable about when it expires, and it has sat in an address bar.

import type { TicketResponse } from '../../protocol/session.js';
import { ApiError, requestJson } from './api-client.js';

const minDelayMs = 500;
const maxDelayMs = 10 * 60_000;
const retryDelayMs = 3_000;

export interface TicketRenewerHooks {
  /** A fresh ticket arrived (to remember it across a reload). */
  onRenewed?(ticket: string, expiresAt: string): void;
  /** The server refused to renew for good (ticket rejected, session gone); renewal has stopped. */
  onRefused?(error: ApiError): void;
}

export class TicketRenewer {
  private ticket: string;
  private timer: number | undefined;
  private isStopped = false;

  /** `ticketPath`: the session's ticket route under the page's API base (`<prefix>/v1/sessions/<id>/ticket`). */
  constructor(
    private readonly ticketPath: string,
    initialTicket: string,
    private readonly hooks: TicketRenewerHooks = {},
  ) {
    this.ticket = initialTicket;
  }

  /** The newest ticket: what the next request or WebSocket must use. */
  get current(): string {
    return this.ticket;
  }

  /** Idempotent. */
  start(): void {
    if (this.timer !== undefined || this.isStopped) return;
    this.schedule(0);
  }

  /** Idempotent; after it, no more renewals. */
  stop(): void {
    this.isStopped = true;
    window.clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(delayMs: number): void {
    if (this.isStopped) return;
    this.timer = window.setTimeout(() => void this.renew(), delayMs);
  }

  private async renew(): Promise<void> {
    try {
      const fresh = await requestJson<TicketResponse>(this.ticketPath, {
        method: 'POST',
        auth: { ticket: this.ticket },
        body: {},
      });
      if (this.isStopped) return;
      this.ticket = fresh.ticket;
      this.hooks.onRenewed?.(fresh.ticket, fresh.expiresAt);
      const lifetimeMs = Date.parse(fresh.expiresAt) - Date.now();
      const delay = Number.isFinite(lifetimeMs) ? lifetimeMs / 2 : 20_000;
      this.schedule(Math.min(maxDelayMs, Math.max(minDelayMs, delay)));
    } catch (error) {
      if (this.isStopped) return;
      // No answer, or a server error: the current ticket may still be good, so try again soon.
      if (error instanceof ApiError && !error.isUnreachable && error.status >= 400 && error.status < 500) {
        this.stop();
        this.hooks.onRefused?.(error);
        return;
      }
      this.schedule(retryDelayMs);
    }
  }
}
