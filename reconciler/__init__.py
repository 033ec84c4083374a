"""mcp-reconciler: keeps the MCP servers on Agentopia toolboxes as a git-committed manifest says."""

__version__ = "0.1.0"
