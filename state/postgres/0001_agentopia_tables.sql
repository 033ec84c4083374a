-- The parts of Agentopia's schema the reconciler touches (DESIGN section 7), for databases the reconciler
-- creates itself (tests, staging). Every statement is guarded so that a forced run on an existing
-- Agentopia database adds nothing it already has and replaces none of its objects.

CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

DO $$ BEGIN
    CREATE TYPE account_tool_environment_status_enum AS ENUM (
        'inactive', 'pending_creation', 'creating', 'active', 'error_creation', 'pending_deletion',
        'deleting', 'error_deletion', 'unresponsive', 'scaling', 'pending_provision', 'provisioning',
        'error_provisioning', 'pending_deprovision', 'deprovisioning', 'deprovisioned',
        'error_deprovisioning', 'awaiting_heartbeat'
    );
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;

DO $$ BEGIN
    CREATE TYPE account_tool_installation_status_enum AS ENUM (
        'pending_install', 'installing', 'active', 'error_install', 'pending_uninstall', 'uninstalling',
        'uninstalled', 'error_uninstall', 'pending_config', 'stopped', 'starting', 'stopping',
        'error_runtime', 'disabled', 'pending_deploy', 'deploying', 'running', 'error', 'pending_delete',
        'deleting'
    );
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;

DO $$ BEGIN
    CREATE TYPE tool_packaging_type_enum AS ENUM ('docker_image');
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;

DO $$ BEGIN
    CREATE TYPE catalog_tool_status_enum AS ENUM ('available', 'beta', 'experimental', 'deprecated', 'archived');
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;

-- Named for the reconciler so that it never replaces a function of Agentopia's.
CREATE OR REPLACE FUNCTION mcp_reconciler_set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at = now();
    RETURN NEW;
END $$;

CREATE TABLE IF NOT EXISTS account_tool_environments (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL,
    name text,
    public_ip_address inet,
    status account_tool_environment_status_enum NOT NULL DEFAULT 'inactive',
    region_slug text NOT NULL,
    size_slug text NOT NULL,
    image_slug text NOT NULL,
    do_droplet_id bigint UNIQUE,
    do_droplet_name text,
    last_heartbeat_at timestamptz,
    dtma_bearer_token text UNIQUE,
    dtma_last_known_version text,
    dtma_health_details_json jsonb,
    provisioning_error_message text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS tool_catalog (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tool_name text NOT NULL UNIQUE,
    name text NOT NULL UNIQUE,
    description text,
    package_identifier text NOT NULL,
    docker_image_url text NOT NULL,
    packaging_type tool_packaging_type_enum NOT NULL DEFAULT 'docker_image',
    status catalog_tool_status_enum NOT NULL DEFAULT 'available',
    version_info jsonb NOT NULL DEFAULT '{}'::jsonb,
    version text NOT NULL DEFAULT '1.0.0',
    category text,
    default_config_template jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS account_tool_instances (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_tool_environment_id uuid NOT NULL
        REFERENCES account_tool_environments (id) ON DELETE CASCADE,
    tool_catalog_id uuid NOT NULL REFERENCES tool_catalog (id) ON DELETE RESTRICT,
    instance_name_on_toolbox text,
    status_on_toolbox account_tool_installation_status_enum NOT NULL DEFAULT 'pending_install',
    base_config_override_json jsonb,
    config_values jsonb,
    port_mapping_json jsonb,
    version text,
    instance_error_message text,
    last_heartbeat_from_dtma timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    mcp_server_type text CHECK (mcp_server_type IN ('standard_tool', 'mcp_server')),
    mcp_endpoint_path text,
    mcp_transport_type text CHECK (mcp_transport_type IN ('stdio', 'sse', 'websocket')),
    mcp_server_capabilities jsonb,
    mcp_discovery_metadata jsonb,
    CONSTRAINT account_tool_instances_env_catalog_key UNIQUE (account_tool_environment_id, tool_catalog_id)
);

CREATE INDEX IF NOT EXISTS account_tool_instances_environment_idx
    ON account_tool_instances (account_tool_environment_id);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['account_tool_environments', 'tool_catalog', 'account_tool_instances'] LOOP
        IF NOT EXISTS (
            SELECT 1 FROM pg_trigger WHERE tgrelid = t::regclass AND tgname = t || '_mcpr_updated_at'
        ) THEN
            EXECUTE format(
                'CREATE TRIGGER %I BEFORE UPDATE ON %I FOR EACH ROW EXECUTE FUNCTION mcp_reconciler_set_updated_at()',
                t || '_mcpr_updated_at', t
            );
        END IF;
    END LOOP;
END $$;

-- The generic MCP catalog row Agentopia ships.
INSERT INTO tool_catalog (id, tool_name, name, description, package_identifier, docker_image_url,
                          packaging_type, status, version_info, category)
VALUES ('00000000-0000-0000-0000-000000000001', 'mcp_server', 'MCP Server', 'Generic MCP server',
        'mcpserver/generic:latest', 'mcpserver/generic:latest', 'docker_image', 'available',
        '{"current_version": "latest"}'::jsonb, 'mcp')
ON CONFLICT DO NOTHING;

-- The reconciler's own bookkeeping. The migration runner writes the created_by row only when it found
-- no Agentopia tables before this migration: that row is how a database made by the reconciler is told
-- apart from Agentopia's production database.
CREATE TABLE IF NOT EXISTS mcp_reconciler_meta (
    key text PRIMARY KEY,
    value text NOT NULL,
    set_at timestamptz NOT NULL DEFAULT now()
);
