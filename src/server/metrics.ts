import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { SessionState } from '../protocol/session.js';

// Prometheus metrics, one registry per server (tests run several servers in one process).
// Components receive the Metrics object; nothing reaches for a global.

export interface Metrics {
  readonly registry: Registry;
  readonly transitions: Counter<'to' | 'reason'>;
  readonly startStepSeconds: Histogram<'step' | 'outcome'>;
  readonly relayBytes: Counter<'direction'>;
  readonly relayConnections: Gauge;
  readonly relayConnectionsTotal: Counter;
  readonly errors: Counter<'code' | 'surface'>;
  readonly reconcilerActions: Counter<'action'>;
  readonly warmPoolReady: Gauge;
  readonly warmPoolTakes: Counter<'outcome'>;
  readonly warmPoolRefillSeconds: Histogram<'outcome'>;
  readonly warmPoolDiscards: Counter<'reason'>;
  readonly webhookAttempts: Counter<'outcome'>;
  readonly credentialRefreshes: Histogram<'provider' | 'outcome'>;
}

export function createMetrics(countSessions: () => Promise<Record<SessionState, number>>): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'porthole_process_' });
  new Gauge({
    name: 'porthole_sessions',
    help: 'Sessions by state, read from the store at scrape time.',
    labelNames: ['state'],
    registers: [registry],
    async collect() {
      const counts = await countSessions();
      for (const [state, n] of Object.entries(counts)) this.set({ state }, n);
    },
  });
  return {
    registry,
    transitions: new Counter({
      name: 'porthole_session_transitions_total',
      help: 'Session state changes by target state and reason.',
      labelNames: ['to', 'reason'],
      registers: [registry],
    }),
    startStepSeconds: new Histogram({
      name: 'porthole_start_step_seconds',
      help: 'Duration of each start-up step (sandbox, agent, vnc), by outcome.',
      labelNames: ['step', 'outcome'],
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
    relayBytes: new Counter({
      name: 'porthole_relay_bytes_total',
      help: 'Bytes relayed, by direction (to_viewer, to_sandbox).',
      labelNames: ['direction'],
      registers: [registry],
    }),
    relayConnections: new Gauge({ name: 'porthole_relay_connections', help: 'Viewer connections open now.', registers: [registry] }),
    relayConnectionsTotal: new Counter({
      name: 'porthole_relay_connections_total',
      help: 'Viewer connections piped to a sandbox since start.',
      registers: [registry],
    }),
    errors: new Counter({
      name: 'porthole_errors_total',
      help: 'Errors reported, by registry code and surface (http, relay, session).',
      labelNames: ['code', 'surface'],
      registers: [registry],
    }),
    reconcilerActions: new Counter({
      name: 'porthole_reconciler_actions_total',
      help: 'What the reconciler did: ended, destroyed, adopted, idle_timeout, max_lifetime, limit_reached.',
      labelNames: ['action'],
      registers: [registry],
    }),
    warmPoolReady: new Gauge({ name: 'porthole_warm_pool_ready', help: 'Pooled desktops checked and ready to hand out.', registers: [registry] }),
    warmPoolTakes: new Counter({
      name: 'porthole_warm_pool_takes_total',
      help: 'Sessions that found a pooled desktop (hit) or started their own (miss).',
      labelNames: ['outcome'],
      registers: [registry],
    }),
    warmPoolRefillSeconds: new Histogram({
      name: 'porthole_warm_pool_refill_seconds',
      help: 'Time to start one pooled desktop until it answers, by outcome (ok, failed).',
      labelNames: ['outcome'],
      buckets: [0.25, 0.5, 1, 2, 4, 8, 16, 32],
      registers: [registry],
    }),
    warmPoolDiscards: new Counter({
      name: 'porthole_warm_pool_discarded_total',
      help: 'Pooled desktops destroyed unused, by reason (failed_check, recycled, gone, start_failed, no_room).',
      labelNames: ['reason'],
      registers: [registry],
    }),
    credentialRefreshes: new Histogram({
      name: 'porthole_credential_refresh_seconds',
      help: 'Refresh grants porthole made, by provider and outcome (refreshed, failed: tried again later, refused: needs a new sign-in).',
      labelNames: ['provider', 'outcome'],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30],
      registers: [registry],
    }),
    webhookAttempts: new Counter({
      name: 'porthole_webhook_attempts_total',
      help: 'Webhook requests sent, by what became of the delivery (delivered, pending: retried later, failed: given up).',
      labelNames: ['outcome'],
      registers: [registry],
    }),
  };
}
