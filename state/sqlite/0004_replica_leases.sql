-- The same tables as state/postgres/0004. A SQLite file serves one daemon (it refuses a second), which owns
-- every environment, so nothing writes them there; they exist so that both schemas stay alike.

CREATE TABLE IF NOT EXISTS mcp_reconciler_replicas (
    replica_id TEXT PRIMARY KEY,
    last_seen TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS mcp_reconciler_leases (
    environment_id TEXT PRIMARY KEY REFERENCES account_tool_environments (id) ON DELETE CASCADE,
    owner TEXT NOT NULL,
    expires_at TEXT NOT NULL
);

CREATE INDEX IF NOT EXISTS mcp_reconciler_leases_owner_idx ON mcp_reconciler_leases (owner);
