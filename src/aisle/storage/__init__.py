"""Storage: the embedded DuckDB store, its migrations and Parquet snapshots."""

from aisle.storage.store import Store

__all__ = ["Store"]
