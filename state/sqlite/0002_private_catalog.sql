-- The same as state/postgres/0002 where SQLite can express it: private catalog rows, and the rows written
-- before in the shapes the stores write now. (SQLite cannot add a table CHECK to an existing table; the
-- stores write the MCP columns in the combination Agentopia's chk_mcp_server_required_fields accepts anyway.)

ALTER TABLE tool_catalog ADD COLUMN is_public INTEGER NOT NULL DEFAULT 1 CHECK (is_public IN (0, 1));
ALTER TABLE tool_catalog ADD COLUMN created_by TEXT;

UPDATE tool_catalog SET is_public = 0 WHERE CASE WHEN json_valid(version_info) THEN json_extract(version_info, '$.managed_by') END = 'mcp-reconciler';
UPDATE account_tool_instances SET mcp_transport_type = 'sse'
    WHERE mcp_server_type = 'mcp_server' AND mcp_transport_type IS NULL;
UPDATE account_tool_instances SET port_mapping_json = CASE
        WHEN json_type(base_config_override_json, '$.port') = 'integer' THEN json_object(
            'container_port', json_extract(base_config_override_json, '$.port'),
            'host_port', CAST(json_extract(base_config_override_json,
                '$.HostConfig.PortBindings."' || json_extract(base_config_override_json, '$.port')
                || '/tcp"[0].HostPort') AS INTEGER))
        ELSE NULL END
    WHERE CASE WHEN json_valid(base_config_override_json)
        THEN json_extract(base_config_override_json, '$.managed_by') END = 'mcp-reconciler';
