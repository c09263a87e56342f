import type { CredentialState, CredentialVerification } from '../protocol/credentials.js';
import type { EndReason, EventType, Session, SessionEvent, SessionState } from '../protocol/session.js';
import type { RunId, SandboxId, SessionId } from '../protocol/ids.js';
import type { Run, RunEvent, RunState } from '../protocol/runs.js';
import type { ProviderName } from '../protocol/session-states.js';

export interface NewSession {
  id: SessionId;
  /**
   * Where it runs: on `only` (an all-in-one places on itself), else on the least loaded live,
   * active node with room, chosen in the same transaction as the insert (placement below). Throws
   * AppError('NO_CAPACITY') when no node qualifies. Absent: no node (store tests only).
   */
  placement?: { only?: string };
  provider: string | null;
  userId: string | null;
  /** The API key that asked for it ('env' for PORTHOLE_API_KEY); null for the dashboard. */
  apiKeyId?: string | null;
}

/** Which sessions a listing returns; every field narrows it. */
export interface SessionFilter {
  states?: readonly SessionState[];
  userId?: string;
  /** Only those this key created (an app key's view). */
  apiKeyId?: string;
  /** Only those on this node (and those from before nodes, which have none): a node's reconcile. */
  nodeId?: string;
  limit?: number;
}

export interface TransitionRequest {
  from: SessionState;
  to: SessionState;
  /** Compare-and-set: the version the caller read. */
  expectVersion: number;
  /** End reason, error code, or a short word for non-terminal moves. */
  reason: string | null;
  /** Human sentence for failures. Stored on the session for terminal states. */
  detail?: string | null;
  details?: Record<string, unknown>;
  /**
   * A node's change: applies only while the session is this node's and its generation is still
   * the node's current one (not moved on by the reaper or a re-registration); else
   * AppError('NODE_FENCED') and nothing changes.
   */
  fence?: NodeFence;
}

/** A node and the generation it believes it has. */
export interface NodeFence {
  nodeId: string;
  generation: number;
}

export type NodeState = 'active' | 'draining' | 'dead';

/** A node as the catalog has it (the `nodes` table), with its load. */
export interface NodeRecord {
  id: string;
  /** How servers reach it; null for an all-in-one. */
  url: string | null;
  capacity: number;
  state: NodeState;
  generation: number;
  leaseMs: number;
  /** ISO times (database clock). */
  heartbeatAt: string;
  registeredAt: string;
  /** Milliseconds since its last heartbeat, by the database's clock. */
  heartbeatAgeMs: number;
  /** Its live sessions. */
  load: number;
  /** Why it is dead or draining. */
  note: string | null;
}

export interface NodeRegistration {
  id: string;
  url: string | null;
  capacity: number;
  leaseMs: number;
  /**
   * Start a new generation (a node that fenced itself): its live sessions of older generations
   * fail with NODE_LOST and `lostDetail`. Without it a node that is not dead keeps its generation,
   * and so its sessions (a restart adopts them); a dead one always starts a new one.
   */
  newGeneration: boolean;
  lostDetail: string;
}

/** A node the reaper found dead, and the live sessions it failed with NODE_LOST. */
export interface ReapedNode {
  node: NodeRecord;
  failed: SessionId[];
}

/** The reaper's lease on its job (Store.tryReaperLock): only its holder reaps. */
export interface ReaperLock {
  /**
   * Marks every node whose heartbeat is older than its lease dead, bumps its generation, and fails
   * its live sessions with NODE_LOST (with their events) in one transaction per node. Runs on the
   * lock's own connection: throws STORE_UNAVAILABLE once that (and so the lock) is gone.
   */
  reap(detail: (node: NodeRecord) => string): Promise<ReapedNode[]>;
  release(): Promise<void>;
}

export interface NewEvent {
  type: EventType;
  reason?: string | null;
  details?: Record<string, unknown>;
}

export interface ApiKeyRecord {
  id: string;
  name: string;
  /** Sees every session; an app key sees only those it created. */
  admin: boolean;
  webhookUrl: string | null;
  /** The webhook's signing secret as the vault sealed it (the key id as associated data); null without a webhook. */
  webhookSecret: SealedCredential | null;
  createdAt: string;
  /** ISO time; a revoked key authenticates nothing. */
  revokedAt: string | null;
}

export interface NewApiKey {
  id: string;
  name: string;
  /** SHA-256 hex of the key: the key itself is never stored. */
  keyHash: string;
  admin: boolean;
  webhookUrl?: string | null;
  webhookSecret?: SealedCredential | null;
}

/** Where webhooks go: PORTHOLE_WEBHOOK_URL ('env') or a key's own webhook. */
export type WebhookTarget = 'env' | (string & {});

export interface NewDelivery {
  /** `msg_…`: the webhook-id header. */
  id: string;
  target: WebhookTarget;
  url: string;
  sessionId: SessionId;
  eventSeq: number;
  type: string;
  payload: Record<string, unknown>;
}

export type DeliveryState = 'pending' | 'delivered' | 'failed';

export interface WebhookDelivery extends NewDelivery {
  state: DeliveryState;
  attempts: number;
  /** ISO times. */
  nextAttemptAt: string;
  createdAt: string;
  deliveredAt: string | null;
  lastStatus: number | null;
  lastError: string | null;
}

/** An event as the webhook fan-out reads it: with its session (as it is now) and that session's key's webhook. */
export interface OwnedEvent extends SessionEvent {
  session: Session;
  /** The key that created the session, and its webhook URL when it has one and is not revoked. */
  apiKeyId: string | null;
  keyWebhookUrl: string | null;
}

/** A credential as the server's vault sealed it (AES-256-GCM); the store never sees plaintext. */
export interface SealedCredential {
  /** The master key that sealed it. */
  keyId: string;
  nonce: Buffer;
  ciphertext: Buffer;
  tag: Buffer;
}

export interface NewCredential extends SealedCredential {
  sessionId: SessionId;
  provider: string;
  account: string | null;
  /** ISO time. */
  expiresAt: string | null;
  /** Whether the provider confirmed it, or only offline checks passed. */
  verification: CredentialVerification;
  /** When porthole should refresh it first (ISO); null: never (no expiry known). */
  refreshDueAt: string | null;
}

export interface StoredCredential extends NewCredential {
  capturedAt: string;
  state: CredentialState;
  /** Goes up with every new content (a refresh): a refresh stores its result only over the version it read. */
  version: number;
  refreshedAt: string | null;
  refreshCount: number;
  /** Refreshes that failed in a row (reset by a success). */
  refreshFailures: number;
  refreshError: string | null;
}

/** What a refresh came to, as the store records it (with its event, in one transaction). */
export type RefreshRecord =
  | { kind: 'refreshed'; sealed: SealedCredential; expiresAt: string | null; refreshDueAt: string | null }
  | { kind: 'failed'; reason: string; refreshDueAt: string }
  | { kind: 'refused'; reason: string }
  /** A run held the grant and gives it back unchanged: the lease ends, nothing else (no event). */
  | { kind: 'released' };

/** A run as first stored (state `starting`). */
export interface NewRun {
  id: RunId;
  sessionId: SessionId;
  provider: ProviderName;
  apiKeyId: string | null;
  args: readonly string[];
  timeoutMs: number;
}

/** What a run's move changes; `finished` stamps finished_at. */
export interface RunUpdate {
  state: RunState;
  sandboxId?: string | null;
  exitCode?: number | null;
  reason?: string | null;
  detail?: string | null;
  finished?: boolean;
}

export type NewRunEvent = Pick<RunEvent, 'type'> & { stream?: 'stdout' | 'stderr'; data?: string; details?: Record<string, unknown> };

/** A sandbox of the warm pool (src/server/sessions/warm-pool.ts). */
export interface PooledSandbox {
  sandboxId: SandboxId;
  /** ISO time. */
  createdAt: string;
}

/** A stored credential without its sealed content. */
export type CredentialListing = Omit<StoredCredential, 'nonce' | 'ciphertext' | 'tag'>;

/**
 * The persistence seam. Both implementations (PGlite, PostgreSQL) pass src/store/conformance.ts.
 * Every method throws AppError('STORE_UNAVAILABLE') when the database cannot be reached.
 */
export interface Store {
  /** Runs pending numbered migrations. Idempotent. */
  migrate(): Promise<void>;
  /** Inserts a session in `starting` (version 1) with its `session.created` event. Throws on a duplicate id. */
  createSession(input: NewSession): Promise<Session>;
  /** null when unknown. */
  getSession(id: SessionId): Promise<Session | null>;
  /** Newest first, narrowed by the filter; without `limit`, all of them. */
  listSessions(filter?: SessionFilter): Promise<Session[]>;
  /** How many sessions are in each state (every state present, 0 when none). */
  countSessions(): Promise<Record<SessionState, number>>;
  /**
   * Compare-and-set state change, checked against the transition table; writes the event
   * `session.<to>` in the same transaction. Throws AppError('SESSION_STATE_CONFLICT') when the
   * session is not at `from`/`expectVersion` or the move is not in the table, and
   * AppError('SESSION_NOT_FOUND') for an unknown id. Returns the updated session.
   */
  transition(id: SessionId, request: TransitionRequest): Promise<Session>;
  /** Sets the sandbox id of a non-terminal session (bumps version). */
  setSandbox(id: SessionId, sandboxId: string): Promise<Session>;
  /** Appends a non-transition event (a start-up step, a viewer connect). Returns it with its seq. */
  appendEvent(id: SessionId, event: NewEvent): Promise<SessionEvent>;
  /** Events in order; `afterSeq` returns only later ones, `limit` at most that many (default: all). [] for an unknown id. */
  listEvents(id: SessionId, options?: { afterSeq?: number; limit?: number }): Promise<SessionEvent[]>;
  /**
   * Every session's events after `afterSeq` in seq order (the firehose), narrowed to the sessions
   * `apiKeyId` created. Events commit in seq order (each insert takes one advisory lock), so a
   * reader that resumes after the last seq it saw misses none.
   */
  listAllEvents(options: { afterSeq: number; apiKeyId?: string; limit: number }): Promise<SessionEvent[]>;
  /** The newest event's seq; 0 when there is none. */
  lastEventSeq(): Promise<number>;
  /** How many of the session's events have one of `types`; 0 for an unknown id. */
  countEvents(id: SessionId, types: readonly EventType[]): Promise<number>;
  /** Stores only the SHA-256 hash of the key. */
  addApiKey(input: NewApiKey): Promise<ApiKeyRecord>;
  /** The key's record when a key with that hash exists, revoked or not. */
  findApiKey(keyHash: string): Promise<ApiKeyRecord | null>;
  getApiKey(id: string): Promise<ApiKeyRecord | null>;
  /** Oldest first, revoked ones included. */
  listApiKeys(): Promise<ApiKeyRecord[]>;
  /** Sets revokedAt (the first time only); null for an unknown id. */
  revokeApiKey(id: string): Promise<ApiKeyRecord | null>;
  /** Keys not revoked. */
  countApiKeys(): Promise<number>;
  /**
   * The webhook fan-out, in one transaction: reads the events after the stored cursor (at most
   * `limit`, each with its session and its key's webhook), stores the deliveries `plan` makes of
   * them (one per target and event: a repeat is ignored) and moves the cursor past them. Two
   * servers never plan the same events: the cursor row is locked. `plan` must not use the store
   * (the transaction holds PGlite's one connection). Returns how many events it read.
   */
  fanOutEvents(limit: number, plan: (events: OwnedEvent[]) => NewDelivery[]): Promise<number>;
  /**
   * Due pending deliveries (next attempt reached, not held by a live lease), oldest first, each
   * leased to the caller for `leaseMs`; concurrent callers never get the same one.
   */
  leaseDueDeliveries(limit: number, leaseMs: number): Promise<WebhookDelivery[]>;
  /**
   * The outcome of one attempt: `delivered`, or `pending` again at `nextAttemptAt`, or `failed`
   * (given up). Counts the attempt and ends the lease.
   */
  recordDeliveryAttempt(id: string, outcome: { state: DeliveryState; status: number | null; error: string | null; nextAttemptAt?: string }): Promise<void>;
  /** Newest first; `apiKeyId`: only the deliveries to that key's own webhook. */
  listDeliveries(filter: { sessionId?: SessionId; apiKeyId?: string; limit: number }): Promise<WebhookDelivery[]>;
  /** The key's webhook secrets re-sealed under a new master key, in one transaction (see resealCredentials). */
  resealWebhookSecrets(reseal: (keyId: string, sealed: SealedCredential) => SealedCredential): Promise<number>;
  /**
   * Stores a session's sealed credential unless it has one: idempotent, the first one stays and
   * `created` says whether this call stored it. Throws AppError('SESSION_NOT_FOUND').
   */
  putCredential(credential: NewCredential): Promise<{ created: boolean }>;
  /** The session's sealed credential; null when it has none or the session is unknown. */
  getCredential(sessionId: SessionId): Promise<StoredCredential | null>;
  /**
   * Claims credentials whose refresh is due (active, `refreshDueAt` passed, no live lease) for
   * `leaseMs` of database time, in one statement: no two servers claim the same grant. `sessionId`:
   * claims that one only (if due; with `evenIfNotDue`, whether due or not: a run holds the grant);
   * none when another server holds it or it is not active. Only credentials of `providers` (the
   * ones this server refreshes).
   */
  leaseRefreshes(options: {
    limit: number;
    leaseMs: number;
    providers: readonly string[];
    sessionId?: SessionId;
    evenIfNotDue?: boolean;
  }): Promise<StoredCredential[]>;
  /**
   * Records a claimed refresh's outcome and its event (`credential.refreshed`, `…refresh_failed`,
   * `…needs_login`) in one transaction, and ends the lease. Applies only over `version` (the one
   * claimed); false when the credential changed meanwhile (nothing is written then).
   */
  finishRefresh(sessionId: SessionId, version: number, record: RefreshRecord): Promise<boolean>;
  /** Stores a run in `starting` with its run.created event. Throws SESSION_NOT_FOUND. */
  createRun(run: NewRun): Promise<Run>;
  /** Moves a run; throws RUN_NOT_FOUND. */
  updateRun(id: RunId, update: RunUpdate): Promise<Run>;
  getRun(id: RunId): Promise<Run | null>;
  /** Newest first; `apiKeyId`: only that key's. */
  listRuns(filter: { apiKeyId?: string; limit: number }): Promise<Run[]>;
  /** Appends events to a run's timeline, in order, in one statement. */
  appendRunEvents(id: RunId, events: readonly NewRunEvent[]): Promise<void>;
  listRunEvents(id: RunId, options: { afterSeq: number; limit: number }): Promise<RunEvent[]>;
  /** Every stored credential without its sealed content, oldest first. */
  listCredentials(): Promise<CredentialListing[]>;
  /**
   * Replaces every stored credential's sealed form in one transaction (key rotation): `reseal`
   * gets each record and returns it sealed anew. Concurrent puts wait until it commits; if `reseal`
   * throws, nothing changes and the error is rethrown. Returns how many it re-sealed.
   */
  resealCredentials(reseal: (credential: StoredCredential) => SealedCredential): Promise<number>;
  /** Sets the SHA-256 (lowercase hex) of the session's agent token; replaces an earlier one. Throws AppError('SESSION_NOT_FOUND'). */
  setAgentTokenHash(id: SessionId, hash: string): Promise<void>;
  /** null when the session is unknown or has no agent token. */
  getAgentTokenHash(id: SessionId): Promise<string | null>;
  /** Marks a sandbox as pooled on `nodeId`: started ahead, never given to a session. */
  addPooledSandbox(sandboxId: SandboxId, nodeId?: string): Promise<void>;
  /** The pooled sandboxes (of `nodeId`, and those from before nodes), oldest first. */
  listPooledSandboxes(nodeId?: string): Promise<PooledSandbox[]>;
  /**
   * Gives a pooled sandbox to a live session, in one statement: its pool mark goes as the session
   * takes its id, so no two sessions can take the same one. null when it is no longer pooled (taken,
   * discarded) or the session is no longer live; nothing changes then.
   */
  takePooledSandbox(id: SessionId, sandboxId: SandboxId): Promise<Session | null>;
  /** Forgets a pooled sandbox (discarded, recycled, gone). Idempotent. */
  removePooledSandbox(sandboxId: SandboxId): Promise<void>;
  /**
   * Registers a node (or the same node again after a restart), heartbeat now, in one transaction
   * with the failing of its sessions a new generation orphans (NodeRegistration). A draining node
   * stays draining. Returns the node and the sessions failed.
   */
  registerNode(registration: NodeRegistration): Promise<ReapedNode>;
  /** The node's heartbeat (database time); null when it is dead or its generation moved on: fenced. */
  heartbeatNode(fence: NodeFence): Promise<NodeRecord | null>;
  getNode(id: string): Promise<NodeRecord | null>;
  /** Every node with its load, by id. */
  listNodes(): Promise<NodeRecord[]>;
  /** Drain (no new sessions) or undrain a node that is not dead; null for an unknown id. A dead node is returned unchanged. */
  setNodeDraining(id: string, draining: boolean, note?: string | null): Promise<NodeRecord | null>;
  /** The reaper's advisory lock, or null while another server holds it. */
  tryReaperLock(): Promise<ReaperLock | null>;
  close(): Promise<void>;
}

export type { EndReason };
