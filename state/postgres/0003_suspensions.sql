-- `reconciler suspend ENV`: environments the daemon and `apply` leave alone until `reconciler resume ENV`.
-- In the database, not in a replica's memory, so that every replica on it sees the same suspensions. The
-- reconciler's own table (prefixed like mcp_reconciler_meta); guarded like the others.

CREATE TABLE IF NOT EXISTS mcp_reconciler_suspensions (
    environment_id uuid PRIMARY KEY REFERENCES account_tool_environments (id) ON DELETE CASCADE,
    reason text NOT NULL,
    suspended_by text NOT NULL,
    suspended_at timestamptz NOT NULL DEFAULT now()
);
