-- Forward-only. How far the server could check each credential before storing it: 'verified' (the
-- provider confirmed its tokens and named the account) or 'offline-checks-only' (shape, token
-- formats and issuer; the account is what the file claims). Credentials stored before this
-- migration were never asked about at all, so they take the weaker of the two.

ALTER TABLE credentials
  ADD COLUMN verification text NOT NULL DEFAULT 'offline-checks-only'
    CHECK (verification IN ('verified', 'offline-checks-only'));

-- New rows always say which: no default hides a caller that forgot.
ALTER TABLE credentials ALTER COLUMN verification DROP DEFAULT;
