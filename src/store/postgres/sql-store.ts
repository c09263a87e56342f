import type { CredentialState, CredentialVerification } from '../../protocol/credentials.js';
import { AppError } from '../../protocol/errors.js';
import type { RunId, SandboxId, SessionId } from '../../protocol/ids.js';
import type { Run, RunEvent, RunEventType, RunState } from '../../protocol/runs.js';
import type { ProviderName } from '../../protocol/session-states.js';
import {
  canTransition,
  isTerminal,
  sessionStates,
  terminalStates,
  transitions,
  type EventType,
  type Session,
  type SessionEvent,
  type SessionState,
} from '../../protocol/session.js';
import type { Database, HeldLock, Queryable } from './database.js';
import { runMigrations } from './migrate.js';
import type {
  ApiKeyRecord,
  CredentialListing,
  DeliveryState,
  NewApiKey,
  NewCredential,
  NewRun,
  NewRunEvent,
  RefreshRecord,
  RunUpdate,
  NewDelivery,
  NewEvent,
  NewSession,
  NodeFence,
  NodeRecord,
  NodeRegistration,
  OwnedEvent,
  ReapedNode,
  ReaperLock,
  PooledSandbox,
  SealedCredential,
  SessionFilter,
  Store,
  StoredCredential,
  TransitionRequest,
  WebhookDelivery,
} from '../store.js';

/**
 * Taken by every transaction that inserts events, so events commit in seq order across sessions and
 * servers: the firehose and the webhook fan-out resume after the last seq they saw and miss none.
 * (An identity hands out seqs in order, but two transactions could commit the other way round.)
 */
const eventOrderLock = 'SELECT pg_advisory_xact_lock(7468253)';
/** The reaper's session-level advisory lock: one holder among all servers (Store.tryReaperLock). */
const reaperLockKey = 7468254;
const liveStateList = ['starting', 'ready', 'authenticating'];

interface NodeRow {
  id: string;
  url: string | null;
  capacity: number;
  state: NodeRecord['state'];
  generation: number;
  lease_ms: number;
  heartbeat_at: Date | string;
  registered_at: Date | string;
  note: string | null;
  // From nodeSelect: int8 counts and ages come back as strings from node-postgres.
  age_ms: number | string;
  load: number | string;
}

/** Every node column, its heartbeat's age by the database clock, and its live sessions. */
const nodeSelect = `SELECT n.*, (extract(epoch FROM (clock_timestamp() - n.heartbeat_at)) * 1000)::bigint AS age_ms,
    (SELECT count(*) FROM sessions s WHERE s.node_id = n.id AND s.state IN ('starting', 'ready', 'authenticating')) AS load
  FROM nodes n`;

function toNode(row: NodeRow): NodeRecord {
  return {
    id: row.id,
    url: row.url,
    capacity: row.capacity,
    state: row.state,
    generation: row.generation,
    leaseMs: row.lease_ms,
    heartbeatAt: iso(row.heartbeat_at),
    registeredAt: iso(row.registered_at),
    heartbeatAgeMs: Math.max(0, Number(row.age_ms)),
    load: Number(row.load),
    note: row.note,
  };
}

/**
 * Fails the node's live sessions of generations before `generation` with NODE_LOST, each with its
 * `session.failed` event, inside the caller's transaction (which has taken eventOrderLock).
 */
async function failOrphans(tx: Queryable, nodeId: string, generation: number, detail: string, details: Record<string, unknown>): Promise<SessionId[]> {
  const { rows } = await tx.query<{ id: SessionId; old_state: SessionState }>(
    `UPDATE sessions s SET state = 'failed', version = s.version + 1, reason = 'NODE_LOST', detail = $3, updated_at = now()
       FROM (SELECT id, state AS old_state FROM sessions WHERE node_id = $1 AND state = ANY($4::text[])
               AND (node_generation IS NULL OR node_generation < $2) FOR UPDATE) o
      WHERE s.id = o.id RETURNING s.id, o.old_state`,
    [nodeId, generation, detail, liveStateList],
  );
  for (const row of rows) {
    await tx.query(
      `INSERT INTO session_events (session_id, type, from_state, to_state, reason, details) VALUES ($1, 'session.failed', $2, 'failed', 'NODE_LOST', $3::jsonb)`,
      [row.id, row.old_state, JSON.stringify(details)],
    );
  }
  return rows.map((row) => row.id);
}

interface ApiKeyRow {
  id: string;
  name: string;
  admin: boolean;
  webhook_url: string | null;
  webhook_secret_key_id: string | null;
  webhook_secret_nonce: Uint8Array | null;
  webhook_secret_ciphertext: Uint8Array | null;
  webhook_secret_tag: Uint8Array | null;
  created_at: Date | string;
  revoked_at: Date | string | null;
}

function toApiKey(row: ApiKeyRow): ApiKeyRecord {
  const sealed =
    row.webhook_secret_key_id && row.webhook_secret_nonce && row.webhook_secret_ciphertext && row.webhook_secret_tag
      ? {
          keyId: row.webhook_secret_key_id,
          nonce: Buffer.from(row.webhook_secret_nonce),
          ciphertext: Buffer.from(row.webhook_secret_ciphertext),
          tag: Buffer.from(row.webhook_secret_tag),
        }
      : null;
  return {
    id: row.id,
    name: row.name,
    admin: row.admin,
    webhookUrl: row.webhook_url,
    webhookSecret: sealed,
    createdAt: iso(row.created_at),
    revokedAt: row.revoked_at === null ? null : iso(row.revoked_at),
  };
}

interface DeliveryRow {
  id: string;
  target: string;
  url: string;
  session_id: SessionId;
  event_seq: number | string;
  type: string;
  payload: Record<string, unknown>;
  state: DeliveryState;
  attempts: number;
  next_attempt_at: Date | string;
  created_at: Date | string;
  delivered_at: Date | string | null;
  last_status: number | null;
  last_error: string | null;
}

function toDelivery(row: DeliveryRow): WebhookDelivery {
  return {
    id: row.id,
    target: row.target,
    url: row.url,
    sessionId: row.session_id,
    eventSeq: Number(row.event_seq),
    type: row.type,
    payload: row.payload,
    state: row.state,
    attempts: row.attempts,
    nextAttemptAt: iso(row.next_attempt_at),
    createdAt: iso(row.created_at),
    deliveredAt: row.delivered_at === null ? null : iso(row.delivered_at),
    lastStatus: row.last_status,
    lastError: row.last_error,
  };
}

// Ids as the schemas brand them: only ids that passed them (newSessionId, the routes' params) are stored.
interface SessionRow {
  id: SessionId;
  state: SessionState;
  provider: string | null;
  user_id: string | null;
  api_key_id: string | null;
  reason: string | null;
  detail: string | null;
  sandbox_id: SandboxId | null;
  node_id: string | null;
  node_generation: number | null;
  version: number;
  created_at: Date | string;
  updated_at: Date | string;
  // From the LEFT JOIN of withCredential(); absent on a plain INSERT … RETURNING (a new session has none).
  credential_provider?: string | null;
  credential_account?: string | null;
  credential_captured_at?: Date | string | null;
  credential_expires_at?: Date | string | null;
  credential_verification?: CredentialVerification | null;
  credential_state?: CredentialState | null;
  credential_refreshed_at?: Date | string | null;
  credential_refresh_error?: string | null;
}

interface CredentialRow {
  session_id: SessionId;
  provider: string;
  key_id: string;
  nonce: Uint8Array;
  ciphertext: Uint8Array;
  tag: Uint8Array;
  account: string | null;
  captured_at: Date | string;
  expires_at: Date | string | null;
  verification: CredentialVerification;
  state: CredentialState;
  version: number;
  refresh_due_at: Date | string | null;
  refreshed_at: Date | string | null;
  refresh_count: number;
  refresh_failures: number;
  refresh_error: string | null;
}

/**
 * Wraps a statement yielding session rows (a SELECT, or an UPDATE … RETURNING *) so that each row
 * also carries its credential's summary. Ordering must be applied to the result, as `s`.
 */
function withCredential(sql: string): string {
  return `WITH s AS (${sql})
    SELECT s.*, c.provider AS credential_provider, c.account AS credential_account,
           c.captured_at AS credential_captured_at, c.expires_at AS credential_expires_at,
           c.verification AS credential_verification, c.state AS credential_state,
           c.refreshed_at AS credential_refreshed_at, c.refresh_error AS credential_refresh_error
      FROM s LEFT JOIN credentials c ON c.session_id = s.id`;
}

interface EventRow {
  // int8: node-postgres returns a string, PGlite a number.
  seq: number | string;
  session_id: SessionId;
  type: EventType;
  from_state: SessionState | null;
  to_state: SessionState | null;
  reason: string | null;
  details: Record<string, unknown>;
  at: Date | string;
}

function iso(value: Date | string): string {
  return (value instanceof Date ? value : new Date(value)).toISOString();
}

function toSession(row: SessionRow): Session {
  return {
    id: row.id,
    state: row.state,
    provider: row.provider,
    userId: row.user_id,
    apiKeyId: row.api_key_id,
    reason: row.reason,
    detail: row.detail,
    sandboxId: row.sandbox_id,
    node: row.node_id ? { id: row.node_id, generation: row.node_generation ?? 0 } : null,
    version: row.version,
    createdAt: iso(row.created_at),
    updatedAt: iso(row.updated_at),
    credential: row.credential_provider
      ? {
          provider: row.credential_provider,
          account: row.credential_account ?? null,
          capturedAt: iso(row.credential_captured_at!),
          expiresAt: row.credential_expires_at ? iso(row.credential_expires_at) : null,
          verification: row.credential_verification ?? 'offline-checks-only',
          state: row.credential_state ?? 'active',
          refreshedAt: row.credential_refreshed_at ? iso(row.credential_refreshed_at) : null,
          refreshError: row.credential_refresh_error ?? null,
        }
      : null,
  };
}

function toCredential(row: CredentialRow): StoredCredential {
  return {
    sessionId: row.session_id,
    provider: row.provider,
    keyId: row.key_id,
    // bytea: node-postgres returns a Buffer, PGlite a Uint8Array.
    nonce: Buffer.from(row.nonce),
    ciphertext: Buffer.from(row.ciphertext),
    tag: Buffer.from(row.tag),
    account: row.account,
    capturedAt: iso(row.captured_at),
    expiresAt: row.expires_at === null ? null : iso(row.expires_at),
    verification: row.verification,
    state: row.state,
    version: row.version,
    refreshDueAt: row.refresh_due_at === null ? null : iso(row.refresh_due_at),
    refreshedAt: row.refreshed_at === null ? null : iso(row.refreshed_at),
    refreshCount: row.refresh_count,
    refreshFailures: row.refresh_failures,
    refreshError: row.refresh_error,
  };
}

function toEvent(row: EventRow): SessionEvent {
  return {
    seq: Number(row.seq),
    sessionId: row.session_id,
    type: row.type,
    from: row.from_state,
    to: row.to_state,
    reason: row.reason,
    details: row.details,
    at: iso(row.at),
  };
}

interface RunRow {
  id: RunId;
  session_id: SessionId;
  provider: ProviderName;
  api_key_id: string | null;
  state: RunState;
  args: string[];
  timeout_ms: number;
  exit_code: number | null;
  reason: string | null;
  detail: string | null;
  created_at: Date | string;
  finished_at: Date | string | null;
}

function toRun(row: RunRow): Run {
  return {
    id: row.id,
    sessionId: row.session_id,
    provider: row.provider,
    apiKeyId: row.api_key_id,
    state: row.state,
    args: row.args,
    timeoutMs: row.timeout_ms,
    exitCode: row.exit_code,
    reason: row.reason,
    detail: row.detail,
    createdAt: iso(row.created_at),
    finishedAt: row.finished_at === null ? null : iso(row.finished_at),
  };
}

interface RunEventRow {
  seq: number | string;
  run_id: RunId;
  type: RunEventType;
  stream: 'stdout' | 'stderr' | null;
  data: string | null;
  details: Record<string, unknown>;
  at: Date | string;
}

/** The one Store implementation; PGlite and node-postgres differ only in their `Database`. */
export class SqlStore implements Store {
  #closing: Promise<void> | undefined;

  constructor(private readonly db: Database) {}

  async migrate(): Promise<void> {
    await runMigrations(this.db);
  }

  createSession(input: NewSession): Promise<Session> {
    return this.db.transaction(async (tx) => {
      const node = input.placement ? await place(tx, input.placement.only) : null;
      await tx.query(eventOrderLock);
      const { rows } = await tx.query<SessionRow>(
        `INSERT INTO sessions (id, state, provider, user_id, api_key_id, node_id, node_generation)
         VALUES ($1, 'starting', $2, $3, $4, $5, $6) RETURNING *`,
        [input.id, input.provider, input.userId, input.apiKeyId ?? null, node?.id ?? null, node?.generation ?? null],
      );
      await tx.query(`INSERT INTO session_events (session_id, type, to_state) VALUES ($1, 'session.created', 'starting')`, [input.id]);
      return toSession(rows[0]!);
    });
  }

  async getSession(id: SessionId): Promise<Session | null> {
    const { rows } = await this.db.query<SessionRow>(withCredential('SELECT * FROM sessions WHERE id = $1'), [id]);
    return rows[0] ? toSession(rows[0]) : null;
  }

  async listSessions(filter: SessionFilter = {}): Promise<Session[]> {
    // A NULL filter or limit means "all" (LIMIT NULL is LIMIT ALL).
    const { rows } = await this.db.query<SessionRow>(
      `${withCredential(
        `SELECT * FROM sessions WHERE ($1::text[] IS NULL OR state = ANY($1::text[]))
           AND ($3::text IS NULL OR user_id = $3) AND ($4::text IS NULL OR api_key_id = $4)
           AND ($5::text IS NULL OR node_id = $5 OR node_id IS NULL)
          ORDER BY created_at DESC, id DESC LIMIT $2`,
      )} ORDER BY s.created_at DESC, s.id DESC`,
      [filter.states ?? null, filter.limit ?? null, filter.userId ?? null, filter.apiKeyId ?? null, filter.nodeId ?? null],
    );
    return rows.map(toSession);
  }

  async countSessions(): Promise<Record<SessionState, number>> {
    const { rows } = await this.db.query<{ state: SessionState; n: string | number }>('SELECT state, count(*) AS n FROM sessions GROUP BY state');
    const counts = Object.fromEntries(sessionStates.map((state) => [state, 0])) as Record<SessionState, number>;
    for (const row of rows) counts[row.state] = Number(row.n);
    return counts;
  }

  async transition(id: SessionId, request: TransitionRequest): Promise<Session> {
    const { from, to, expectVersion } = request;
    if (!canTransition(from, to)) {
      throw new AppError('SESSION_STATE_CONFLICT', {
        message: `A session cannot move from ${from} to ${to}.`,
        details: { sessionId: id, from, to, allowed: transitions[from] },
      });
    }
    // reason/detail describe how a session ended; a live session has none.
    const ending = isTerminal(to);
    return this.db.transaction(async (tx) => {
      await tx.query(eventOrderLock);
      const fence = request.fence ?? null;
      const { rows } = await tx.query<SessionRow>(
        withCredential(`UPDATE sessions SET state = $4, version = version + 1, reason = $5, detail = $6, updated_at = now()
          WHERE id = $1 AND state = $2 AND version = $3
            AND ($7::text IS NULL OR node_id IS NULL OR (node_id = $7 AND node_generation = $8
              AND EXISTS (SELECT 1 FROM nodes WHERE id = $7 AND generation = $8 AND state <> 'dead')))
          RETURNING *`),
        [
          id,
          from,
          expectVersion,
          to,
          ending ? request.reason : null,
          ending ? (request.detail ?? null) : null,
          fence?.nodeId ?? null,
          fence?.generation ?? null,
        ],
      );
      if (!rows[0]) {
        if (fence && (await isFenced(tx, id, fence))) {
          throw new AppError('NODE_FENCED', { details: { sessionId: id, nodeId: fence.nodeId, generation: fence.generation } });
        }
        throw await conflictOrMissing(tx, id, { state: from, version: expectVersion });
      }
      await tx.query(
        `INSERT INTO session_events (session_id, type, from_state, to_state, reason, details)
         VALUES ($1, $2, $3, $4, $5, $6::jsonb)`,
        [id, `session.${to}`, from, to, request.reason, JSON.stringify(request.details ?? {})],
      );
      return toSession(rows[0]);
    });
  }

  async setSandbox(id: SessionId, sandboxId: string): Promise<Session> {
    const { rows } = await this.db.query<SessionRow>(
      withCredential(`UPDATE sessions SET sandbox_id = $2, version = version + 1, updated_at = now()
        WHERE id = $1 AND NOT (state = ANY($3::text[])) RETURNING *`),
      [id, sandboxId, terminalStates],
    );
    if (!rows[0]) throw await conflictOrMissing(this.db, id);
    return toSession(rows[0]);
  }

  async appendEvent(id: SessionId, event: NewEvent): Promise<SessionEvent> {
    // The order lock makes events commit in seq order, so a reader polling with `afterSeq` cannot
    // skip one that was still uncommitted when it read.
    const { rows } = await this.db.transaction(async (tx) => {
      await tx.query(eventOrderLock);
      return tx.query<EventRow>(
        `INSERT INTO session_events (session_id, type, reason, details)
         SELECT id, $2::text, $3::text, $4::jsonb FROM sessions WHERE id = $1
         RETURNING *`,
        [id, event.type, event.reason ?? null, JSON.stringify(event.details ?? {})],
      );
    });
    if (!rows[0]) throw new AppError('SESSION_NOT_FOUND', { details: { sessionId: id } });
    return toEvent(rows[0]);
  }

  async listEvents(id: SessionId, options: { afterSeq?: number; limit?: number } = {}): Promise<SessionEvent[]> {
    // LIMIT NULL is LIMIT ALL.
    const { rows } = await this.db.query<EventRow>('SELECT * FROM session_events WHERE session_id = $1 AND seq > $2 ORDER BY seq LIMIT $3', [
      id,
      options.afterSeq ?? 0,
      options.limit ?? null,
    ]);
    return rows.map(toEvent);
  }

  async listAllEvents(options: { afterSeq: number; apiKeyId?: string; limit: number }): Promise<SessionEvent[]> {
    const { rows } = await this.db.query<EventRow>(
      `SELECT e.* FROM session_events e
        WHERE e.seq > $1 AND ($2::text IS NULL OR e.session_id IN (SELECT id FROM sessions WHERE api_key_id = $2))
        ORDER BY e.seq LIMIT $3`,
      [options.afterSeq, options.apiKeyId ?? null, options.limit],
    );
    return rows.map(toEvent);
  }

  async lastEventSeq(): Promise<number> {
    const { rows } = await this.db.query<{ seq: number | string | null }>('SELECT max(seq) AS seq FROM session_events');
    return Number(rows[0]?.seq ?? 0);
  }

  async countEvents(id: SessionId, types: readonly EventType[]): Promise<number> {
    const { rows } = await this.db.query<{ n: number | string }>('SELECT count(*) AS n FROM session_events WHERE session_id = $1 AND type = ANY($2::text[])', [
      id,
      types,
    ]);
    return Number(rows[0]!.n);
  }

  async addApiKey(input: NewApiKey): Promise<ApiKeyRecord> {
    const secret = input.webhookSecret ?? null;
    const { rows } = await this.db.query<ApiKeyRow>(
      `INSERT INTO api_keys (id, name, key_hash, admin, webhook_url, webhook_secret_key_id, webhook_secret_nonce, webhook_secret_ciphertext, webhook_secret_tag)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *`,
      [
        input.id,
        input.name,
        input.keyHash,
        input.admin,
        input.webhookUrl ?? null,
        secret?.keyId ?? null,
        secret?.nonce ?? null,
        secret?.ciphertext ?? null,
        secret?.tag ?? null,
      ],
    );
    return toApiKey(rows[0]!);
  }

  async findApiKey(keyHash: string): Promise<ApiKeyRecord | null> {
    const { rows } = await this.db.query<ApiKeyRow>('SELECT * FROM api_keys WHERE key_hash = $1', [keyHash]);
    return rows[0] ? toApiKey(rows[0]) : null;
  }

  async getApiKey(id: string): Promise<ApiKeyRecord | null> {
    const { rows } = await this.db.query<ApiKeyRow>('SELECT * FROM api_keys WHERE id = $1', [id]);
    return rows[0] ? toApiKey(rows[0]) : null;
  }

  async listApiKeys(): Promise<ApiKeyRecord[]> {
    const { rows } = await this.db.query<ApiKeyRow>('SELECT * FROM api_keys ORDER BY created_at, id');
    return rows.map(toApiKey);
  }

  async revokeApiKey(id: string): Promise<ApiKeyRecord | null> {
    const { rows } = await this.db.query<ApiKeyRow>('UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 RETURNING *', [id]);
    return rows[0] ? toApiKey(rows[0]) : null;
  }

  async countApiKeys(): Promise<number> {
    const { rows } = await this.db.query<{ count: number | string }>('SELECT count(*) AS count FROM api_keys WHERE revoked_at IS NULL');
    return Number(rows[0]!.count);
  }

  fanOutEvents(limit: number, plan: (events: OwnedEvent[]) => NewDelivery[]): Promise<number> {
    return this.db.transaction(async (tx) => {
      const cursor = await tx.query<{ after_seq: number | string }>('SELECT after_seq FROM webhook_cursor FOR UPDATE');
      const afterSeq = Number(cursor.rows[0]?.after_seq ?? 0);
      const { rows } = await tx.query<EventRow & { api_key_id: string | null; key_webhook_url: string | null }>(
        `SELECT e.*, s.api_key_id, k.webhook_url AS key_webhook_url
           FROM session_events e JOIN sessions s ON s.id = e.session_id
           LEFT JOIN api_keys k ON k.id = s.api_key_id AND k.revoked_at IS NULL
          WHERE e.seq > $1 ORDER BY e.seq LIMIT $2`,
        [afterSeq, limit],
      );
      if (rows.length === 0) return 0;
      const sessionRows = await tx.query<SessionRow>(withCredential('SELECT * FROM sessions WHERE id = ANY($1::text[])'), [
        [...new Set(rows.map((r) => r.session_id))],
      ]);
      const sessions = new Map(sessionRows.rows.map((row) => [row.id, toSession(row)]));
      const deliveries = plan(
        rows.map((row) => ({ ...toEvent(row), session: sessions.get(row.session_id)!, apiKeyId: row.api_key_id, keyWebhookUrl: row.key_webhook_url })),
      );
      for (const d of deliveries) {
        await tx.query(
          `INSERT INTO webhook_deliveries (id, target, url, session_id, event_seq, type, payload)
           VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb) ON CONFLICT DO NOTHING`,
          [d.id, d.target, d.url, d.sessionId, d.eventSeq, d.type, JSON.stringify(d.payload)],
        );
      }
      await tx.query('UPDATE webhook_cursor SET after_seq = $1', [Number(rows.at(-1)!.seq)]);
      return rows.length;
    });
  }

  async leaseDueDeliveries(limit: number, leaseMs: number): Promise<WebhookDelivery[]> {
    const { rows } = await this.db.query<DeliveryRow>(
      `UPDATE webhook_deliveries SET leased_until = now() + make_interval(secs => $2::double precision / 1000)
        WHERE id IN (SELECT id FROM webhook_deliveries
                      WHERE state = 'pending' AND next_attempt_at <= now() AND (leased_until IS NULL OR leased_until < now())
                      ORDER BY next_attempt_at, id LIMIT $1 FOR UPDATE SKIP LOCKED)
        RETURNING *`,
      [limit, leaseMs],
    );
    return rows.map(toDelivery).sort((a, b) => a.nextAttemptAt.localeCompare(b.nextAttemptAt) || a.id.localeCompare(b.id));
  }

  async recordDeliveryAttempt(
    id: string,
    outcome: { state: DeliveryState; status: number | null; error: string | null; nextAttemptAt?: string },
  ): Promise<void> {
    await this.db.query(
      `UPDATE webhook_deliveries SET state = $2, attempts = attempts + 1, last_status = $3, last_error = $4,
              next_attempt_at = coalesce($5::timestamptz, next_attempt_at), leased_until = NULL,
              delivered_at = CASE WHEN $2 = 'delivered' THEN now() ELSE delivered_at END
        WHERE id = $1`,
      [id, outcome.state, outcome.status, outcome.error, outcome.nextAttemptAt ?? null],
    );
  }

  async listDeliveries(filter: { sessionId?: SessionId; apiKeyId?: string; limit: number }): Promise<WebhookDelivery[]> {
    const { rows } = await this.db.query<DeliveryRow>(
      `SELECT d.* FROM webhook_deliveries d
        WHERE ($1::text IS NULL OR d.session_id = $1)
          AND ($2::text IS NULL OR d.target = $2)
        ORDER BY d.created_at DESC, d.id DESC LIMIT $3`,
      [filter.sessionId ?? null, filter.apiKeyId ?? null, filter.limit],
    );
    return rows.map(toDelivery);
  }

  resealWebhookSecrets(reseal: (keyId: string, sealed: SealedCredential) => SealedCredential): Promise<number> {
    return this.db.transaction(async (tx) => {
      const { rows } = await tx.query<ApiKeyRow>('SELECT * FROM api_keys WHERE webhook_secret_key_id IS NOT NULL ORDER BY id FOR UPDATE');
      let count = 0;
      for (const row of rows) {
        const record = toApiKey(row);
        if (!record.webhookSecret) continue;
        const sealed = reseal(record.id, record.webhookSecret);
        await tx.query(
          'UPDATE api_keys SET webhook_secret_key_id = $2, webhook_secret_nonce = $3, webhook_secret_ciphertext = $4, webhook_secret_tag = $5 WHERE id = $1',
          [row.id, sealed.keyId, sealed.nonce, sealed.ciphertext, sealed.tag],
        );
        count++;
      }
      return count;
    });
  }

  async putCredential(credential: NewCredential): Promise<{ created: boolean }> {
    // INSERT … SELECT FROM sessions: an unknown session inserts nothing instead of raising a
    // foreign-key error; ON CONFLICT keeps the first credential of a session.
    const { rows } = await this.db.query<{ session_id: string }>(
      `INSERT INTO credentials (session_id, provider, key_id, nonce, ciphertext, tag, account, expires_at, verification, refresh_due_at)
       SELECT id, $2, $3, $4, $5, $6, $7, $8, $9, $10 FROM sessions WHERE id = $1
       ON CONFLICT (session_id) DO NOTHING RETURNING session_id`,
      [
        credential.sessionId,
        credential.provider,
        credential.keyId,
        credential.nonce,
        credential.ciphertext,
        credential.tag,
        credential.account,
        credential.expiresAt,
        credential.verification,
        credential.refreshDueAt,
      ],
    );
    if (rows[0]) return { created: true };
    if (!(await this.getSession(credential.sessionId))) throw new AppError('SESSION_NOT_FOUND', { details: { sessionId: credential.sessionId } });
    return { created: false };
  }

  async getCredential(sessionId: SessionId): Promise<StoredCredential | null> {
    const { rows } = await this.db.query<CredentialRow>('SELECT * FROM credentials WHERE session_id = $1', [sessionId]);
    return rows[0] ? toCredential(rows[0]) : null;
  }

  async createRun(run: NewRun): Promise<Run> {
    return this.db.transaction(async (tx) => {
      const { rows } = await tx.query<RunRow>(
        `INSERT INTO runs (id, session_id, provider, api_key_id, state, args, timeout_ms)
         SELECT $1, id, $3, $4, 'starting', $5::jsonb, $6 FROM sessions WHERE id = $2 RETURNING *`,
        [run.id, run.sessionId, run.provider, run.apiKeyId, JSON.stringify(run.args), run.timeoutMs],
      );
      if (!rows[0]) throw new AppError('SESSION_NOT_FOUND', { details: { sessionId: run.sessionId } });
      await tx.query(`INSERT INTO run_events (run_id, type, details) VALUES ($1, 'run.created', '{}'::jsonb)`, [run.id]);
      return toRun(rows[0]);
    });
  }

  async updateRun(id: RunId, update: RunUpdate): Promise<Run> {
    const { rows } = await this.db.query<RunRow>(
      `UPDATE runs SET state = $2,
              sandbox_id = CASE WHEN $3::boolean THEN $4 ELSE sandbox_id END,
              exit_code = CASE WHEN $5::boolean THEN $6::integer ELSE exit_code END,
              reason = CASE WHEN $7::boolean THEN $8 ELSE reason END,
              detail = CASE WHEN $9::boolean THEN $10 ELSE detail END,
              finished_at = CASE WHEN $11::boolean THEN now() ELSE finished_at END
        WHERE id = $1 RETURNING *`,
      [
        id,
        update.state,
        update.sandboxId !== undefined,
        update.sandboxId ?? null,
        update.exitCode !== undefined,
        update.exitCode ?? null,
        update.reason !== undefined,
        update.reason ?? null,
        update.detail !== undefined,
        update.detail ?? null,
        update.finished === true,
      ],
    );
    if (!rows[0]) throw new AppError('RUN_NOT_FOUND', { details: { runId: id } });
    return toRun(rows[0]);
  }

  async getRun(id: RunId): Promise<Run | null> {
    const { rows } = await this.db.query<RunRow>('SELECT * FROM runs WHERE id = $1', [id]);
    return rows[0] ? toRun(rows[0]) : null;
  }

  async listRuns(filter: { apiKeyId?: string; limit: number }): Promise<Run[]> {
    const { rows } = await this.db.query<RunRow>('SELECT * FROM runs WHERE ($1::text IS NULL OR api_key_id = $1) ORDER BY created_at DESC, id DESC LIMIT $2', [
      filter.apiKeyId ?? null,
      filter.limit,
    ]);
    return rows.map(toRun);
  }

  async appendRunEvents(id: RunId, events: readonly NewRunEvent[]): Promise<void> {
    if (events.length === 0) return;
    // One statement: the rows take their seqs in the array's order.
    await this.db.query(
      `INSERT INTO run_events (run_id, type, stream, data, details)
       SELECT $1, e.value->>'type', e.value->>'stream', e.value->>'data', e.value->'details'
         FROM jsonb_array_elements($2::jsonb) WITH ORDINALITY AS e(value, n)
        ORDER BY e.n`,
      [id, JSON.stringify(events.map((e) => ({ type: e.type, stream: e.stream ?? null, data: e.data ?? null, details: e.details ?? {} })))],
    );
  }

  async listRunEvents(id: RunId, options: { afterSeq: number; limit: number }): Promise<RunEvent[]> {
    const { rows } = await this.db.query<RunEventRow>('SELECT * FROM run_events WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3', [
      id,
      options.afterSeq,
      options.limit,
    ]);
    return rows.map((row) => ({
      seq: Number(row.seq),
      runId: row.run_id,
      type: row.type,
      stream: row.stream,
      data: row.data,
      details: row.details,
      at: iso(row.at),
    }));
  }

  async listCredentials(): Promise<CredentialListing[]> {
    const { rows } = await this.db.query<CredentialRow>('SELECT * FROM credentials ORDER BY captured_at, session_id');
    return rows.map((row) => {
      const { nonce: _nonce, ciphertext: _ciphertext, tag: _tag, ...listing } = toCredential(row);
      return listing;
    });
  }

  async leaseRefreshes(options: {
    limit: number;
    leaseMs: number;
    providers: readonly string[];
    sessionId?: SessionId;
    evenIfNotDue?: boolean;
  }): Promise<StoredCredential[]> {
    // One statement: the row lock of the UPDATE makes a second server's claim of the same row wait,
    // then see the lease and skip it. SKIP LOCKED lets servers claim different rows side by side.
    const { rows } = await this.db.query<CredentialRow>(
      `UPDATE credentials SET refresh_leased_until = now() + make_interval(secs => $2::double precision / 1000)
        WHERE session_id IN (
          SELECT session_id FROM credentials
           WHERE state = 'active' AND provider = ANY($4::text[])
             AND (refresh_leased_until IS NULL OR refresh_leased_until < now())
             AND ($3::text IS NULL OR session_id = $3::text)
             AND ($5::boolean OR refresh_due_at <= now())
           ORDER BY refresh_due_at NULLS LAST
           LIMIT $1
           FOR UPDATE SKIP LOCKED)
        RETURNING *`,
      [options.limit, options.leaseMs, options.sessionId ?? null, [...options.providers], options.evenIfNotDue === true],
    );
    return rows.map(toCredential);
  }

  async finishRefresh(sessionId: SessionId, version: number, record: RefreshRecord): Promise<boolean> {
    return this.db.transaction(async (tx) => {
      await tx.query(eventOrderLock);
      let updated: { rows: { version: number; refresh_count: number; refresh_failures: number }[] };
      let event: { type: string; details: Record<string, unknown> };
      if (record.kind === 'refreshed') {
        updated = await tx.query(
          `UPDATE credentials SET key_id = $3, nonce = $4, ciphertext = $5, tag = $6, expires_at = $7, refresh_due_at = $8,
                  version = version + 1, refreshed_at = now(), refresh_count = refresh_count + 1, refresh_failures = 0,
                  refresh_error = NULL, refresh_leased_until = NULL
            WHERE session_id = $1 AND version = $2 RETURNING version, refresh_count, refresh_failures`,
          [sessionId, version, record.sealed.keyId, record.sealed.nonce, record.sealed.ciphertext, record.sealed.tag, record.expiresAt, record.refreshDueAt],
        );
        event = { type: 'credential.refreshed', details: { expiresAt: record.expiresAt, refreshCount: updated.rows[0]?.refresh_count ?? null } };
      } else if (record.kind === 'failed') {
        updated = await tx.query(
          `UPDATE credentials SET refresh_due_at = $3, refresh_failures = refresh_failures + 1, refresh_error = $4, refresh_leased_until = NULL
            WHERE session_id = $1 AND version = $2 RETURNING version, refresh_count, refresh_failures`,
          [sessionId, version, record.refreshDueAt, record.reason],
        );
        event = {
          type: 'credential.refresh_failed',
          details: { reason: record.reason, failures: updated.rows[0]?.refresh_failures ?? null, nextAttemptAt: record.refreshDueAt },
        };
      } else if (record.kind === 'released') {
        const released = await tx.query<{ version: number }>(
          'UPDATE credentials SET refresh_leased_until = NULL WHERE session_id = $1 AND version = $2 RETURNING version',
          [sessionId, version],
        );
        return released.rows.length > 0;
      } else {
        updated = await tx.query(
          `UPDATE credentials SET state = 'needs_login', refresh_due_at = NULL, refresh_error = $3, refresh_leased_until = NULL
            WHERE session_id = $1 AND version = $2 RETURNING version, refresh_count, refresh_failures`,
          [sessionId, version, record.reason],
        );
        event = { type: 'credential.needs_login', details: { reason: record.reason } };
      }
      if (!updated.rows[0]) return false;
      await tx.query(`INSERT INTO session_events (session_id, type, details) VALUES ($1, $2, $3::jsonb)`, [
        sessionId,
        event.type,
        JSON.stringify(event.details),
      ]);
      return true;
    });
  }

  resealCredentials(reseal: (credential: StoredCredential) => SealedCredential): Promise<number> {
    return this.db.transaction(async (tx) => {
      // EXCLUSIVE still lets readers read, but makes a put from another server wait, so that no
      // record sealed under the old key can slip in while the old key is being retired.
      await tx.query('LOCK TABLE credentials IN EXCLUSIVE MODE');
      const { rows } = await tx.query<CredentialRow>('SELECT * FROM credentials ORDER BY session_id');
      for (const row of rows) {
        const sealed = reseal(toCredential(row));
        await tx.query('UPDATE credentials SET key_id = $2, nonce = $3, ciphertext = $4, tag = $5 WHERE session_id = $1', [
          row.session_id,
          sealed.keyId,
          sealed.nonce,
          sealed.ciphertext,
          sealed.tag,
        ]);
      }
      return rows.length;
    });
  }

  async setAgentTokenHash(id: SessionId, hash: string): Promise<void> {
    const { rows } = await this.db.query('UPDATE sessions SET agent_token_hash = $2 WHERE id = $1 RETURNING id', [id, hash]);
    if (!rows[0]) throw new AppError('SESSION_NOT_FOUND', { details: { sessionId: id } });
  }

  async getAgentTokenHash(id: SessionId): Promise<string | null> {
    const { rows } = await this.db.query<{ agent_token_hash: string | null }>('SELECT agent_token_hash FROM sessions WHERE id = $1', [id]);
    return rows[0]?.agent_token_hash ?? null;
  }

  async addPooledSandbox(sandboxId: SandboxId, nodeId?: string): Promise<void> {
    await this.db.query('INSERT INTO pool_sandboxes (sandbox_id, node_id) VALUES ($1, $2) ON CONFLICT DO NOTHING', [sandboxId, nodeId ?? null]);
  }

  async listPooledSandboxes(nodeId?: string): Promise<PooledSandbox[]> {
    const { rows } = await this.db.query<{ sandbox_id: SandboxId; created_at: Date | string }>(
      'SELECT sandbox_id, created_at FROM pool_sandboxes WHERE $1::text IS NULL OR node_id = $1 OR node_id IS NULL ORDER BY created_at, sandbox_id',
      [nodeId ?? null],
    );
    return rows.map((row) => ({ sandboxId: row.sandbox_id, createdAt: iso(row.created_at) }));
  }

  takePooledSandbox(id: SessionId, sandboxId: SandboxId): Promise<Session | null> {
    // The session row locked first: a concurrent end waits, so the mark goes only to a live session.
    return this.db.transaction(async (tx) => {
      const live = await tx.query('SELECT 1 FROM sessions WHERE id = $1 AND NOT (state = ANY($2::text[])) FOR UPDATE', [id, terminalStates]);
      if (live.rows.length === 0) return null;
      const taken = await tx.query('DELETE FROM pool_sandboxes WHERE sandbox_id = $1 RETURNING sandbox_id', [sandboxId]);
      if (taken.rows.length === 0) return null;
      const { rows } = await tx.query<SessionRow>(
        withCredential('UPDATE sessions SET sandbox_id = $2, version = version + 1, updated_at = now() WHERE id = $1 RETURNING *'),
        [id, sandboxId],
      );
      return rows[0] ? toSession(rows[0]) : null;
    });
  }

  async removePooledSandbox(sandboxId: SandboxId): Promise<void> {
    await this.db.query('DELETE FROM pool_sandboxes WHERE sandbox_id = $1', [sandboxId]);
  }

  registerNode(r: NodeRegistration): Promise<ReapedNode> {
    return this.db.transaction(async (tx) => {
      await tx.query(eventOrderLock);
      const { rows } = await tx.query<{ id: string; generation: number }>(
        `INSERT INTO nodes (id, url, capacity, state, lease_ms) VALUES ($1, $2, $3, 'active', $4)
         ON CONFLICT (id) DO UPDATE SET url = $2, capacity = $3, lease_ms = $4, heartbeat_at = now(),
           registered_at = CASE WHEN nodes.state = 'dead' OR $5 THEN now() ELSE nodes.registered_at END,
           generation = CASE WHEN nodes.state = 'dead' OR $5 THEN nodes.generation + 1 ELSE nodes.generation END,
           state = CASE WHEN nodes.state = 'draining' THEN 'draining' ELSE 'active' END,
           note = CASE WHEN nodes.state = 'draining' THEN nodes.note ELSE NULL END
         RETURNING id, generation`,
        [r.id, r.url, r.capacity, r.leaseMs, r.newGeneration],
      );
      const { generation } = rows[0]!;
      const failed = await failOrphans(tx, r.id, generation, r.lostDetail, { nodeId: r.id, generation, cause: 'node re-registered with a new generation' });
      const node = await tx.query<NodeRow>(`${nodeSelect} WHERE n.id = $1`, [r.id]);
      return { node: toNode(node.rows[0]!), failed };
    });
  }

  async heartbeatNode(fence: NodeFence): Promise<NodeRecord | null> {
    const { rows } = await this.db.query<NodeRow>(
      `WITH beat AS (UPDATE nodes SET heartbeat_at = now() WHERE id = $1 AND generation = $2 AND state <> 'dead' RETURNING id)
       ${nodeSelect} JOIN beat ON beat.id = n.id`,
      [fence.nodeId, fence.generation],
    );
    return rows[0] ? toNode(rows[0]) : null;
  }

  async getNode(id: string): Promise<NodeRecord | null> {
    const { rows } = await this.db.query<NodeRow>(`${nodeSelect} WHERE n.id = $1`, [id]);
    return rows[0] ? toNode(rows[0]) : null;
  }

  async listNodes(): Promise<NodeRecord[]> {
    const { rows } = await this.db.query<NodeRow>(`${nodeSelect} ORDER BY n.id`);
    return rows.map(toNode);
  }

  async setNodeDraining(id: string, draining: boolean, note: string | null = null): Promise<NodeRecord | null> {
    await this.db.query(`UPDATE nodes SET state = $2, note = $3 WHERE id = $1 AND state <> 'dead'`, [
      id,
      draining ? 'draining' : 'active',
      draining ? note : null,
    ]);
    return this.getNode(id);
  }

  async tryReaperLock(): Promise<ReaperLock | null> {
    const held: HeldLock | null = await this.db.holdLock(reaperLockKey);
    if (!held) return null;
    return {
      reap: async (detail) => {
        const { rows } = await held.db.query<NodeRow>(
          `${nodeSelect} WHERE n.state <> 'dead' AND n.heartbeat_at < clock_timestamp() - n.lease_ms * interval '1 millisecond' ORDER BY n.id`,
        );
        const reaped: ReapedNode[] = [];
        for (const stale of rows.map(toNode)) {
          const done = await held.db.transaction(async (tx) => {
            await tx.query(eventOrderLock);
            // Checked again under the row's lock: a heartbeat may have come in since.
            const { rows: dead } = await tx.query<{ generation: number }>(
              `UPDATE nodes SET state = 'dead', generation = generation + 1, note = $2
                WHERE id = $1 AND state <> 'dead' AND heartbeat_at < clock_timestamp() - lease_ms * interval '1 millisecond'
                RETURNING generation`,
              [stale.id, `no heartbeat for ${Math.round(stale.heartbeatAgeMs / 100) / 10} s (lease ${stale.leaseMs / 1000} s)`],
            );
            if (!dead[0]) return null;
            const node = { ...stale, state: 'dead' as const, generation: dead[0].generation };
            const failed = await failOrphans(tx, stale.id, dead[0].generation, detail(stale), {
              nodeId: stale.id,
              nodeUrl: stale.url,
              heartbeatAgeMs: stale.heartbeatAgeMs,
              leaseMs: stale.leaseMs,
            });
            return { node, failed };
          });
          if (done) reaped.push(done);
        }
        return reaped;
      },
      release: () => held.release(),
    };
  }

  /** Idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.db.close();
    return this.#closing;
  }
}

/**
 * Placement: locks the live nodes (so concurrent creates queue here and each counts the others'
 * sessions), then picks the active one with room that has a warm desktop, then the least loaded by
 * share of capacity. `only`: that node or none (an all-in-one).
 */
async function place(tx: Queryable, only: string | undefined): Promise<{ id: string; generation: number }> {
  const { rows: locked } = await tx.query<{ id: string }>(
    `SELECT id FROM nodes WHERE state = 'active' AND heartbeat_at > clock_timestamp() - lease_ms * interval '1 millisecond'
        AND ($1::text IS NULL OR id = $1) ORDER BY id FOR UPDATE`,
    [only ?? null],
  );
  const { rows } = await tx.query<NodeRow & { warm: number | string }>(
    `${nodeSelect.replace('FROM nodes n', ', (SELECT count(*) FROM pool_sandboxes p WHERE p.node_id = n.id) AS warm FROM nodes n')}
      WHERE n.id = ANY($1::text[])`,
    [locked.map((row) => row.id)],
  );
  const candidates = rows
    .map((row) => ({ node: toNode(row), warm: Number(row.warm) }))
    .filter(({ node }) => node.load < node.capacity)
    .sort(
      (a, b) =>
        Number(b.warm > 0) - Number(a.warm > 0) ||
        a.node.load / a.node.capacity - b.node.load / b.node.capacity ||
        a.node.load - b.node.load ||
        a.node.id.localeCompare(b.node.id),
    );
  const chosen = candidates[0]?.node;
  if (!chosen) {
    const { rows: all } = await tx.query<NodeRow>(nodeSelect);
    const nodes = all.map(toNode).map((n) => ({ id: n.id, state: n.state, load: n.load, capacity: n.capacity, heartbeatAgeMs: n.heartbeatAgeMs }));
    throw new AppError('NO_CAPACITY', { details: { nodes, ...(only ? { only } : {}) } });
  }
  return { id: chosen.id, generation: chosen.generation };
}

/** Whether a fenced transition failed because of the fence (not a plain conflict). */
async function isFenced(q: Queryable, id: SessionId, fence: NodeFence): Promise<boolean> {
  const { rows } = await q.query<{ node_id: string | null; node_generation: number | null }>('SELECT node_id, node_generation FROM sessions WHERE id = $1', [
    id,
  ]);
  const session = rows[0];
  if (!session || session.node_id === null) return false;
  if (session.node_id !== fence.nodeId || session.node_generation !== fence.generation) return true;
  const node = await q.query("SELECT 1 FROM nodes WHERE id = $1 AND generation = $2 AND state <> 'dead'", [fence.nodeId, fence.generation]);
  return node.rows.length === 0;
}

/** Why a conditional UPDATE matched no row: the session is missing, or not where the caller thought. */
async function conflictOrMissing(q: Queryable, id: SessionId, expected?: { state: SessionState; version: number }): Promise<AppError> {
  const { rows } = await q.query<{ state: SessionState; version: number }>('SELECT state, version FROM sessions WHERE id = $1', [id]);
  const current = rows[0];
  if (!current) return new AppError('SESSION_NOT_FOUND', { details: { sessionId: id } });
  return new AppError('SESSION_STATE_CONFLICT', {
    details: { sessionId: id, ...(expected && { expected }), current: { state: current.state, version: current.version } },
  });
}
