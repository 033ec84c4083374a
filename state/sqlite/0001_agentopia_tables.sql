-- The same tables as state/postgres/0001 in SQLite types: uuids and timestamps as text (ISO 8601, UTC),
-- JSON as text, and each PostgreSQL enum as a CHECK constraint with exactly the same values.

CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE IF NOT EXISTS account_tool_environments (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    name TEXT,
    public_ip_address TEXT,
    status TEXT NOT NULL DEFAULT 'inactive' CHECK (status IN (
        'inactive', 'pending_creation', 'creating', 'active', 'error_creation', 'pending_deletion',
        'deleting', 'error_deletion', 'unresponsive', 'scaling', 'pending_provision', 'provisioning',
        'error_provisioning', 'pending_deprovision', 'deprovisioning', 'deprovisioned',
        'error_deprovisioning', 'awaiting_heartbeat'
    )),
    region_slug TEXT NOT NULL,
    size_slug TEXT NOT NULL,
    image_slug TEXT NOT NULL,
    do_droplet_id INTEGER UNIQUE,
    do_droplet_name TEXT,
    last_heartbeat_at TEXT,
    dtma_bearer_token TEXT UNIQUE,
    dtma_last_known_version TEXT,
    dtma_health_details_json TEXT,
    provisioning_error_message TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE IF NOT EXISTS tool_catalog (
    id TEXT PRIMARY KEY,
    tool_name TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    description TEXT,
    package_identifier TEXT NOT NULL,
    docker_image_url TEXT NOT NULL,
    packaging_type TEXT NOT NULL DEFAULT 'docker_image' CHECK (packaging_type IN ('docker_image')),
    status TEXT NOT NULL DEFAULT 'available'
        CHECK (status IN ('available', 'beta', 'experimental', 'deprecated', 'archived')),
    version_info TEXT NOT NULL DEFAULT '{}',
    version TEXT NOT NULL DEFAULT '1.0.0',
    category TEXT,
    default_config_template TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE IF NOT EXISTS account_tool_instances (
    id TEXT PRIMARY KEY,
    account_tool_environment_id TEXT NOT NULL
        REFERENCES account_tool_environments (id) ON DELETE CASCADE,
    tool_catalog_id TEXT NOT NULL REFERENCES tool_catalog (id) ON DELETE RESTRICT,
    instance_name_on_toolbox TEXT,
    status_on_toolbox TEXT NOT NULL DEFAULT 'pending_install' CHECK (status_on_toolbox IN (
        'pending_install', 'installing', 'active', 'error_install', 'pending_uninstall', 'uninstalling',
        'uninstalled', 'error_uninstall', 'pending_config', 'stopped', 'starting', 'stopping',
        'error_runtime', 'disabled', 'pending_deploy', 'deploying', 'running', 'error', 'pending_delete',
        'deleting'
    )),
    base_config_override_json TEXT,
    config_values TEXT,
    port_mapping_json TEXT,
    version TEXT,
    instance_error_message TEXT,
    last_heartbeat_from_dtma TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    mcp_server_type TEXT CHECK (mcp_server_type IN ('standard_tool', 'mcp_server')),
    mcp_endpoint_path TEXT,
    mcp_transport_type TEXT CHECK (mcp_transport_type IN ('stdio', 'sse', 'websocket')),
    mcp_server_capabilities TEXT,
    mcp_discovery_metadata TEXT,
    UNIQUE (account_tool_environment_id, tool_catalog_id)
);

CREATE INDEX IF NOT EXISTS account_tool_instances_environment_idx
    ON account_tool_instances (account_tool_environment_id);

-- updated_at on every update that did not set it itself. The second condition stops the inner UPDATE from
-- firing the trigger again when a connection has recursive_triggers on (sqlite-utils turns it on).
CREATE TRIGGER IF NOT EXISTS account_tool_environments_mcpr_updated_at
AFTER UPDATE ON account_tool_environments FOR EACH ROW
    WHEN NEW.updated_at = OLD.updated_at AND OLD.updated_at <> strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
BEGIN
    UPDATE account_tool_environments SET updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = NEW.id;
END;

CREATE TRIGGER IF NOT EXISTS tool_catalog_mcpr_updated_at
AFTER UPDATE ON tool_catalog FOR EACH ROW
    WHEN NEW.updated_at = OLD.updated_at AND OLD.updated_at <> strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
BEGIN
    UPDATE tool_catalog SET updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = NEW.id;
END;

CREATE TRIGGER IF NOT EXISTS account_tool_instances_mcpr_updated_at
AFTER UPDATE ON account_tool_instances FOR EACH ROW
    WHEN NEW.updated_at = OLD.updated_at AND OLD.updated_at <> strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
BEGIN
    UPDATE account_tool_instances SET updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = NEW.id;
END;

INSERT INTO tool_catalog (id, tool_name, name, description, package_identifier, docker_image_url,
                          packaging_type, status, version_info, category)
VALUES ('00000000-0000-0000-0000-000000000001', 'mcp_server', 'MCP Server', 'Generic MCP server',
        'mcpserver/generic:latest', 'mcpserver/generic:latest', 'docker_image', 'available',
        '{"current_version": "latest"}', 'mcp')
ON CONFLICT DO NOTHING;

CREATE TABLE IF NOT EXISTS mcp_reconciler_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    set_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
