-- Forward-only. porthole refreshes each stored grant itself, as its one refresher (issue 11).
--
-- A credential is `active` (porthole keeps it fresh) or `needs_login` (the provider refused the
-- refresh grant: only a new sign-in helps). `refresh_due_at` is when the next refresh should
-- happen (ahead of expiry, jittered; after a failure, the backoff's next try); a server claims a
-- due row by setting `refresh_leased_until` in one conditional UPDATE, so one server at a time
-- refreshes a grant, and a server that died mid-refresh loses its claim when the lease ends.
-- `version` goes up with every new content: a refresh stores its result only over the version it read.
ALTER TABLE credentials ADD COLUMN state text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'needs_login'));
ALTER TABLE credentials ADD COLUMN version integer NOT NULL DEFAULT 1;
ALTER TABLE credentials ADD COLUMN refresh_due_at timestamptz;
ALTER TABLE credentials ADD COLUMN refresh_leased_until timestamptz;
ALTER TABLE credentials ADD COLUMN refreshed_at timestamptz;
ALTER TABLE credentials ADD COLUMN refresh_count integer NOT NULL DEFAULT 0;
ALTER TABLE credentials ADD COLUMN refresh_failures integer NOT NULL DEFAULT 0;
ALTER TABLE credentials ADD COLUMN refresh_error text;

-- Credentials stored before this migration: due five minutes before their expiry.
UPDATE credentials SET refresh_due_at = expires_at - interval '5 minutes' WHERE expires_at IS NOT NULL;

CREATE INDEX credentials_refresh_due_idx ON credentials (refresh_due_at) WHERE state = 'active';
