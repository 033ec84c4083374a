"""How a plan and a run are shown to people and CI: text, markdown, GitHub annotations, JSON, exit codes.

Used by the CLI only; the pure core knows nothing of it (an import-linter contract keeps it so).
"""
