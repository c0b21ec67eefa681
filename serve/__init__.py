"""Servers over the runtime Memory API of an exported policy: REST (FastAPI) and MCP (imports are lazy)."""
