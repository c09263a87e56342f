-- Forward-only. The warm pool: sandboxes started ahead with no session, no provider, no user and no
-- secret inside. A row here is the only mark that a running sandbox never served anyone: taking
-- one deletes its row in the same statement that gives its id to a session, so a sandbox is handed
-- out once, and one whose row is gone is never pooled again (after a restart it is destroyed).

CREATE TABLE pool_sandboxes (
  sandbox_id text PRIMARY KEY,
  created_at timestamptz NOT NULL DEFAULT now()
);
