-- Forward-only. Runs — the remote CLI (src/protocol/runs.ts): a provider's CLI run with a stored
-- credential in a sandbox with no desktop. The output lives in run_events beside the timeline, with
-- the credential's secrets already replaced by [redacted].
CREATE TABLE runs (
  id           text PRIMARY KEY,
  session_id   text NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
  provider     text NOT NULL,
  api_key_id   text,
  state        text NOT NULL CHECK (state IN ('starting', 'running', 'succeeded', 'failed', 'timed_out')),
  args         jsonb NOT NULL,
  timeout_ms   integer NOT NULL,
  sandbox_id   text,
  exit_code    integer,
  reason       text,
  detail       text,
  created_at   timestamptz NOT NULL DEFAULT now(),
  finished_at  timestamptz
);
CREATE INDEX runs_api_key_idx ON runs (api_key_id, created_at DESC);

CREATE TABLE run_events (
  seq      bigserial PRIMARY KEY,
  run_id   text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  type     text NOT NULL,
  stream   text CHECK (stream IN ('stdout', 'stderr')),
  data     text,
  details  jsonb NOT NULL DEFAULT '{}',
  at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX run_events_run_idx ON run_events (run_id, seq);
