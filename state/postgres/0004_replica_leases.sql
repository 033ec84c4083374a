-- Daemon replicas sharing the work (docs/architecture.md, "One writer at a time"): each replica beats a
-- heartbeat row every cycle, and each environment is owned by one replica through a lease renewed every
-- cycle. A replica that stops beating loses its leases when they expire, and the others take them over.

CREATE TABLE IF NOT EXISTS mcp_reconciler_replicas (
    replica_id text PRIMARY KEY,
    last_seen timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS mcp_reconciler_leases (
    environment_id uuid PRIMARY KEY REFERENCES account_tool_environments (id) ON DELETE CASCADE,
    owner text NOT NULL,
    expires_at timestamptz NOT NULL
);

CREATE INDEX IF NOT EXISTS mcp_reconciler_leases_owner_idx ON mcp_reconciler_leases (owner);
