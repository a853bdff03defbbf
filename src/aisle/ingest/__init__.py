"""Ingest: read source files, adapt them to the canonical schema, and check their quality."""
