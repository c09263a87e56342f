-- Forward-only. Apps: API keys that see only what they created, webhooks, and the firehose.

-- An admin key sees every session; an app key only those it created. Keys made before this
-- migration could read everything, so they stay admin.
ALTER TABLE api_keys ADD COLUMN admin boolean NOT NULL DEFAULT true;
ALTER TABLE api_keys ALTER COLUMN admin DROP DEFAULT;
ALTER TABLE api_keys ADD COLUMN revoked_at timestamptz;
-- A key's own webhook: its URL, and its signing secret sealed by the server like a credential
-- (AES-256-GCM under the master key, the key id as associated data).
ALTER TABLE api_keys ADD COLUMN webhook_url text;
ALTER TABLE api_keys ADD COLUMN webhook_secret_key_id text;
ALTER TABLE api_keys ADD COLUMN webhook_secret_nonce bytea;
ALTER TABLE api_keys ADD COLUMN webhook_secret_ciphertext bytea;
ALTER TABLE api_keys ADD COLUMN webhook_secret_tag bytea;

-- The key that created the session ('env' for PORTHOLE_API_KEY); null for the dashboard.
ALTER TABLE sessions ADD COLUMN api_key_id text;
CREATE INDEX sessions_api_key_idx ON sessions (api_key_id, created_at DESC);
CREATE INDEX sessions_user_idx ON sessions (user_id, created_at DESC);

-- One webhook request to send: its id is the `webhook-id` header, the same on every retry, so a
-- receiver drops duplicates. `target` is 'env' (PORTHOLE_WEBHOOK_URL) or the id of the key whose
-- webhook it is; one row per target and event.
CREATE TABLE webhook_deliveries (
  id               text PRIMARY KEY,
  target           text NOT NULL,
  url              text NOT NULL,
  session_id       text NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
  event_seq        bigint NOT NULL,
  type             text NOT NULL,
  payload          jsonb NOT NULL,
  state            text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
  attempts         integer NOT NULL DEFAULT 0,
  next_attempt_at  timestamptz NOT NULL DEFAULT now(),
  -- A server sending it holds it until then; another server takes it over after.
  leased_until     timestamptz,
  last_status      integer,
  last_error       text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  delivered_at     timestamptz,
  UNIQUE (target, event_seq)
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_session_idx ON webhook_deliveries (session_id, created_at);

-- How far the webhook fan-out has read session_events: one row. It starts at the events already
-- there, so turning webhooks on does not replay history.
CREATE TABLE webhook_cursor (
  id         boolean PRIMARY KEY DEFAULT true CHECK (id),
  after_seq  bigint NOT NULL
);
INSERT INTO webhook_cursor (after_seq) SELECT coalesce(max(seq), 0) FROM session_events;
