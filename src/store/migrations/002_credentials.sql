-- Forward-only. Captured credentials, encrypted by the server (AES-256-GCM) before they reach the
-- database: the store holds only ciphertext, the nonce, the tag and the id of the master key that
-- sealed it. One credential per session; the first delivery wins.

CREATE TABLE credentials (
  session_id  text PRIMARY KEY REFERENCES sessions (id) ON DELETE CASCADE,
  provider    text NOT NULL,
  key_id      text NOT NULL,
  nonce       bytea NOT NULL,
  ciphertext  bytea NOT NULL,
  tag         bytea NOT NULL,
  -- Shown as "Connected as …"; not secret, so kept in clear for listing.
  account     text,
  captured_at timestamptz NOT NULL DEFAULT now(),
  expires_at  timestamptz
);

-- The per-sandbox agent token, as the SHA-256 hex of the token: the server never stores the token.
ALTER TABLE sessions ADD COLUMN agent_token_hash text CHECK (agent_token_hash ~ '^[0-9a-f]{64}$');
