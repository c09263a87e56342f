-- Forward-only. The state and event strings are pinned by src/protocol/session.ts; changing one
-- is a new migration.

CREATE TABLE sessions (
  id          text PRIMARY KEY,
  state       text NOT NULL CHECK (state IN ('starting', 'ready', 'authenticating', 'completed', 'failed', 'ended')),
  provider    text,
  user_id     text,
  reason      text,
  detail      text,
  sandbox_id  text,
  version     integer NOT NULL DEFAULT 1,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Listing is newest first, often filtered to the live states (the reconciler).
CREATE INDEX sessions_created_at_idx ON sessions (created_at DESC);
CREATE INDEX sessions_state_idx ON sessions (state);

CREATE TABLE session_events (
  seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  session_id  text NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
  type        text NOT NULL,
  from_state  text,
  to_state    text,
  reason      text,
  details     jsonb NOT NULL DEFAULT '{}'::jsonb,
  at          timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX session_events_session_seq_idx ON session_events (session_id, seq);

CREATE TABLE api_keys (
  id          text PRIMARY KEY,
  name        text NOT NULL,
  key_hash    text NOT NULL UNIQUE,
  created_at  timestamptz NOT NULL DEFAULT now()
);
