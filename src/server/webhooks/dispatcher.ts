import type { Logger } from 'pino';
import { webhookEventTypes, type WebhookEventType, type WebhookPayload } from '../../protocol/apps.js';
import type { NewDelivery, OwnedEvent, Store, WebhookDelivery } from '../../store/store.js';
import type { Vault } from '../credentials/vault.js';
import type { Metrics } from '../metrics.js';
import type { Secret } from '../secret.js';
import type { EventFeed } from '../sessions/event-feed.js';
import { webhookHeaders } from './signature.js';

// Webhooks: an outbox in the store. The fan-out reads new session events after a cursor (one
// transaction, cursor row locked, so two servers never plan the same events) and stores one
// delivery per target; the sender leases due deliveries, POSTs them signed, and records each
// attempt — delivered, retried later by the schedule, or given up. Everything lives in the store,
// so a restart (or another server) carries on where this one stopped: a receiver that is down
// loses nothing while the schedule lasts.

export interface WebhookDispatcherOptions {
  store: Store;
  vault: Vault;
  feed: EventFeed;
  log: Logger;
  metrics: Metrics;
  /** PORTHOLE_WEBHOOK_URL and its secrets, or null. */
  envTarget: { url: string; secrets: readonly Secret[] } | null;
  retryScheduleMs: readonly number[];
  /** How long a receiver may take to answer one attempt. */
  requestTimeoutMs?: number;
  pollMs?: number;
}

const fanOutPage = 200;
const sendBatch = 8;

export class WebhookDispatcher {
  readonly #o: WebhookDispatcherOptions;
  readonly #stop = new AbortController();
  #loop: Promise<void> | null = null;

  constructor(options: WebhookDispatcherOptions) {
    this.#o = options;
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  /** Stops after the attempts in flight; their outcomes are recorded. */
  async close(): Promise<void> {
    this.#stop.abort();
    await this.#loop;
  }

  async #run(): Promise<void> {
    const { feed, log } = this.#o;
    while (!this.#stop.signal.aborted) {
      try {
        while ((await this.#o.store.fanOutEvents(fanOutPage, (events) => this.#plan(events))) === fanOutPage) {}
        const due = await this.#o.store.leaseDueDeliveries(sendBatch, 2 * this.#timeoutMs + 5_000);
        await Promise.all(due.map((delivery) => this.#attempt(delivery)));
        if (due.length === sendBatch) continue;
      } catch (error) {
        // The store is down: the deliveries wait in it; try again at the next tick.
        log.warn({ err: error }, 'webhook dispatch failed; retrying');
      }
      await feed.next(this.#o.pollMs ?? 1_000, this.#stop.signal);
    }
  }

  get #timeoutMs(): number {
    return this.#o.requestTimeoutMs ?? 10_000;
  }

  /** The deliveries of a page of events: which are webhooks, and to whom each goes. Pure: it runs inside the fan-out's transaction. */
  #plan(events: OwnedEvent[]): NewDelivery[] {
    const deliveries: NewDelivery[] = [];
    for (const event of events) {
      const type = event.type as WebhookEventType;
      if (!webhookEventTypes.includes(type)) continue;
      // `ready` is news once: later returns from authenticating to ready are the viewer coming and going.
      if (type === 'session.ready' && event.from !== 'starting') continue;
      const targets: { target: string; url: string }[] = [];
      if (this.#o.envTarget) targets.push({ target: 'env', url: this.#o.envTarget.url });
      if (event.apiKeyId && event.keyWebhookUrl) targets.push({ target: event.apiKeyId, url: event.keyWebhookUrl });
      const payload: WebhookPayload = { type, timestamp: event.at, data: { session: event.session, eventSeq: event.seq } };
      for (const { target, url } of targets) {
        deliveries.push({
          id: `msg_${event.seq}_${target}`,
          target,
          url,
          sessionId: event.sessionId,
          eventSeq: event.seq,
          type,
          payload: payload as unknown as Record<string, unknown>,
        });
      }
    }
    return deliveries;
  }

  async #secretsOf(delivery: WebhookDelivery): Promise<string[] | string> {
    if (delivery.target === 'env') {
      return this.#o.envTarget ? this.#o.envTarget.secrets.map((s) => s.reveal()) : 'PORTHOLE_WEBHOOK_URL is no longer configured';
    }
    const key = await this.#o.store.getApiKey(delivery.target);
    if (!key || key.revokedAt !== null) return 'the API key of this webhook was revoked';
    if (!key.webhookSecret) return 'the API key no longer has a webhook';
    return [this.#o.vault.openWebhookSecret(key.id, key.webhookSecret)];
  }

  async #attempt(delivery: WebhookDelivery): Promise<void> {
    const { store, log, metrics } = this.#o;
    const secrets = await this.#secretsOf(delivery);
    if (typeof secrets === 'string') {
      await store.recordDeliveryAttempt(delivery.id, { state: 'failed', status: null, error: secrets });
      return;
    }
    const body = JSON.stringify(delivery.payload);
    let status: number | null = null;
    let error: string | null = null;
    try {
      const response = await fetch(delivery.url, {
        method: 'POST',
        headers: webhookHeaders(secrets, delivery.id, body),
        body,
        redirect: 'manual',
        signal: AbortSignal.any([AbortSignal.timeout(this.#timeoutMs), this.#stop.signal]),
      });
      status = response.status;
      await response.body?.cancel();
      if (status < 200 || status > 299) error = `the receiver answered HTTP ${status}`;
    } catch (cause) {
      const reason = cause instanceof Error ? ((cause.cause as Error | undefined)?.message ?? cause.message) : String(cause);
      error = `the receiver could not be reached: ${reason}`;
    }
    const attempts = delivery.attempts + 1;
    const delay = this.#o.retryScheduleMs[attempts - 1];
    const state = error === null ? 'delivered' : delay === undefined ? 'failed' : 'pending';
    await store.recordDeliveryAttempt(delivery.id, {
      state,
      status,
      error,
      ...(state === 'pending' ? { nextAttemptAt: new Date(Date.now() + delay!).toISOString() } : {}),
    });
    metrics.webhookAttempts.inc({ outcome: state });
    const fields = { deliveryId: delivery.id, sessionId: delivery.sessionId, type: delivery.type, attempts, status };
    if (state === 'delivered') log.info(fields, 'webhook delivered');
    else log.warn({ ...fields, error, nextInMs: delay ?? null }, state === 'failed' ? 'webhook given up' : 'webhook attempt failed; will retry');
  }
}
