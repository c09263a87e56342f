-- Forward-only. More than one host (docs/ARCHITECTURE.md, "Nodes"): every porthole node — the
-- all-in-one `porthole start` included — registers here, and each session records the node that
-- runs its sandbox and that node's generation. A node's heartbeat is database time, so no two
-- hosts' clocks are ever compared. The reaper (whoever holds the advisory lock) marks a node dead
-- once its heartbeat is older than its own lease, bumps its generation, and fails its live
-- sessions with NODE_LOST in the same transaction; a node whose generation moved on can change
-- none of its old sessions (the fence in SqlStore.transition).

CREATE TABLE nodes (
  id             text PRIMARY KEY,
  -- How servers reach the node's relay and internal routes; null for an all-in-one (only it reaches itself).
  url            text,
  capacity       integer NOT NULL CHECK (capacity >= 0),
  state          text NOT NULL CHECK (state IN ('active', 'draining', 'dead')),
  generation     integer NOT NULL DEFAULT 1,
  lease_ms       integer NOT NULL CHECK (lease_ms > 0),
  heartbeat_at   timestamptz NOT NULL DEFAULT now(),
  registered_at  timestamptz NOT NULL DEFAULT now(),
  -- Why it is dead or draining (a sentence), for `porthole nodes list`.
  note           text
);

ALTER TABLE sessions ADD COLUMN node_id text REFERENCES nodes (id);
ALTER TABLE sessions ADD COLUMN node_generation integer;
CREATE INDEX sessions_node_live_idx ON sessions (node_id) WHERE state IN ('starting', 'ready', 'authenticating');

-- The warm pool is per node: each node keeps and hands out its own desktops.
ALTER TABLE pool_sandboxes ADD COLUMN node_id text REFERENCES nodes (id);
