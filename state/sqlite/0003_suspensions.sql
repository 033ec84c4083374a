-- The same as state/postgres/0003: environments suspended by `reconciler suspend`, seen by every process
-- on this file (a daemon and the `apply`/`plan` commands alike).

CREATE TABLE IF NOT EXISTS mcp_reconciler_suspensions (
    environment_id TEXT PRIMARY KEY REFERENCES account_tool_environments (id) ON DELETE CASCADE,
    reason TEXT NOT NULL,
    suspended_by TEXT NOT NULL,
    suspended_at TEXT NOT NULL
);
