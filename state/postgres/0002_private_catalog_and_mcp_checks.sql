-- What Agentopia's own schema has and 0001 lacked: private catalog rows, the CHECK that an MCP server names
-- its transport, and the documented shape of port_mapping_json. Guarded like 0001, so that a forced run on
-- an Agentopia database changes nothing it already has.

ALTER TABLE tool_catalog ADD COLUMN IF NOT EXISTS is_public boolean NOT NULL DEFAULT true;
ALTER TABLE tool_catalog ADD COLUMN IF NOT EXISTS created_by uuid;

-- Rows the reconciler wrote before this migration: catalog rows private, streamable-http servers on the
-- closest transport the column accepts, and port mappings in the documented shape.
UPDATE tool_catalog SET is_public = false WHERE version_info->>'managed_by' = 'mcp-reconciler';
UPDATE account_tool_instances SET mcp_transport_type = 'sse'
    WHERE mcp_server_type = 'mcp_server' AND mcp_transport_type IS NULL;
UPDATE account_tool_instances SET port_mapping_json = CASE
        WHEN jsonb_typeof(base_config_override_json->'port') = 'number' THEN jsonb_build_object(
            'container_port', (base_config_override_json->>'port')::integer,
            'host_port', (base_config_override_json->'HostConfig'->'PortBindings'
                          ->((base_config_override_json->>'port') || '/tcp')->0->>'HostPort')::integer)
        ELSE NULL END
    WHERE base_config_override_json->>'managed_by' = 'mcp-reconciler';

DO $$ BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conrelid = 'account_tool_instances'::regclass AND conname = 'chk_mcp_server_required_fields'
    ) THEN
        ALTER TABLE account_tool_instances ADD CONSTRAINT chk_mcp_server_required_fields
            CHECK (mcp_server_type IS DISTINCT FROM 'mcp_server' OR mcp_transport_type IS NOT NULL);
    END IF;
END $$;

DO $$ BEGIN
    IF col_description('account_tool_instances'::regclass, (
        SELECT attnum FROM pg_attribute
        WHERE attrelid = 'account_tool_instances'::regclass AND attname = 'port_mapping_json'
    )) IS NULL THEN
        COMMENT ON COLUMN account_tool_instances.port_mapping_json IS
            'Port mapping for the tool instance container, e.g., {"container_port": 8080, "host_port": 49152}.';
    END IF;
END $$;
