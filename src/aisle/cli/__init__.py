"""The `aisle` command line: one module per command group."""
